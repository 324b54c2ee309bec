//! The `linux` tenant router on this machine, as root, in network namespaces the tests make
//! (their names start with `bt<pid>`; each test removes everything it made): the conformance
//! suite, and the proof with real packets.

mod lab;
mod linux;
