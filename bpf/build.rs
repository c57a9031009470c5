//! Compiles `src/bpf/kawrap.bpf.c` into a BPF object with clang.
//!
//! Only this crate needs clang, and it is not a default workspace member,
//! so a plain `cargo build` of the workspace never runs this.
use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/bpf/kawrap.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=KAWRAP_CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("kawrap.bpf.o");
    let clang = env::var("KAWRAP_CLANG").unwrap_or_else(|_| "clang".to_string());
    // <linux/bpf.h> pulls in <asm/types.h>, which Debian keeps under the
    // multiarch directory; the bpf target does not search it by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", env::consts::ARCH);
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&object)
        .status();
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "{clang} failed ({status}) compiling {SOURCE}; it needs the kernel and libbpf headers \
             (Debian: apt-get install -y clang libbpf-dev linux-libc-dev)"
        ),
        Err(error) => panic!(
            "cannot run {clang:?} ({error}): building kawrap-bpf needs clang with the BPF target \
             (Debian: apt-get install -y clang libbpf-dev; or set KAWRAP_CLANG to a clang binary)"
        ),
    }
}
