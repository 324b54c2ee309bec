//! The `linux` tenant router on this machine, as root, in network namespaces the tests make
//! (their names start with `bt<pid>`; each test removes everything it made): the conformance
//! suite, and the proof with real packets; and the same router on a router host reached over
//! SSH, through its helper, with a real sshd on loopback.

mod lab;
mod linux;
mod ssh;
