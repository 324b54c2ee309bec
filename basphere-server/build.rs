//! Link options of the server's binary.

fn main() {
    // Tables of pointers (trait objects' vtables, the dependencies' static tables) are
    // relocated by the loader at start. As classic relocation records they
    // take megabytes of the file, all read (and so resident) at every start; packed (DT_RELR,
    // glibc 2.36 and later: Debian 12 on) they take a few kilobytes.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
