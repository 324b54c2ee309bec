//! `basphere-server`: the HTTP API, web pages and background workers.
//!
//! Not built yet. Until it is, this binary says so and exits with status 2 instead of
//! pretending to serve; `basphere demo` runs the platform in-process.

fn main() {
    eprintln!(
        "basphere-server: the HTTP server is not built yet; run `basphere demo` to see the platform work in-process"
    );
    std::process::exit(2);
}
