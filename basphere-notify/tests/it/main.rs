//! basphere-notify's integration tests: the texts, the configuration, and both notifiers against
//! real receivers on 127.0.0.1 (an HTTP server in the test, an SMTP server from aiosmtpd).

mod common;
mod config;
mod email;
mod fanout;
mod texts;
mod webhook;
