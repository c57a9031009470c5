//! Link-level decisions for libkawrap.so, which is loaded into programs
//! built against any glibc from 2.17 on, and into musl programs.
//!
//! - libc.so.6 is not linked (see the `std` feature of `libc` in
//!   Cargo.toml): linked on a glibc ≥ 2.34 build machine, it binds `dlsym`
//!   to the symbol version GLIBC_2.34, and every older glibc then refuses
//!   to load the shim ("version `GLIBC_2.34' not found") — the host program
//!   dies at start. Unlinked, the shim's references stay unversioned and
//!   bind to whatever the running libc defines (a process has its libc
//!   loaded before any preload).
//! - libdl.so.2 is a DT_NEEDED entry although nothing is resolved from it
//!   here: before glibc 2.34 `dlsym` lives there, not in libc.so.6, and a
//!   program that does not link libdl itself would otherwise die with
//!   "undefined symbol: dlsym". Since 2.34 it is an empty stub, and musl's
//!   loader maps the name to itself.
//! - The release build is stripped completely: the workspace's
//!   `strip = true` leaves `.symtab` in this cdylib (~9 KB of a ~56 KB file),
//!   and nothing but the exported hooks needs a name.
//!
//! `make dist` links with `cargo zigbuild` against glibc 2.17's own stub
//! libraries instead, which name libc, libdl and libpthread themselves and
//! record 2.17's symbol versions; zig's linker knows neither `-l:FILE` nor
//! a library outside its own set.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ZIGBUILD_TARGET");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--strip-all");
    }
    if std::env::var_os("CARGO_ZIGBUILD_TARGET").is_none() {
        // rustc links with --as-needed, which drops a library nothing is
        // resolved from.
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-cdylib-link-arg=-l:libdl.so.2");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--as-needed");
    }
}
