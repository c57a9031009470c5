//! Compiles `src/bpf/kawrap.bpf.c` into two BPF objects with clang — the
//! programs every run reuses (`kawrap.bpf.o`) and the copy pinned for
//! systemd (`kawrap-pinned.bpf.o`, `-DKAWRAP_PINNED_COPY`) — and names the
//! build: `KAWRAP_BPF_BUILD` is a hash of both, so that programs pinned by
//! one build are never taken for another's.
//!
//! Only this crate needs clang, and it is not a default workspace member,
//! so a plain `cargo build` of the workspace never runs this.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "src/bpf/kawrap.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=KAWRAP_CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut hash = FNV_OFFSET;
    for (name, defines) in [("kawrap.bpf.o", &[][..]), ("kawrap-pinned.bpf.o", &["-DKAWRAP_PINNED_COPY"][..])]
    {
        let object = out.join(name);
        compile(&object, defines);
        hash = fnv1a(hash, &std::fs::read(&object).expect("clang wrote the object"));
    }
    println!("cargo:rustc-env=KAWRAP_BPF_BUILD={hash:016x}");
}

fn compile(object: &Path, defines: &[&str]) {
    let clang = env::var("KAWRAP_CLANG").unwrap_or_else(|_| "clang".to_string());
    // <linux/bpf.h> pulls in <asm/types.h>, which Debian keeps under the
    // multiarch directory; the bpf target does not search it by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", env::consts::ARCH);
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .args(defines)
        .args(["-c", SOURCE, "-o"])
        .arg(object)
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

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, continued from `hash`: stable across Rust versions,
/// unlike `DefaultHasher`.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}
