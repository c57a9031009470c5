//! The release artifacts `make dist` leaves in `dist/`, unpacked for a test,
//! and what their ELF files ask of the C library (read with `readelf`, as a
//! person checking a binary would).
use std::path::{Path, PathBuf};
use std::process::Command;

/// The version in the artifacts' names: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `dist/` in the workspace.
pub fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").join("dist")
}

/// `dist/kawrap-VERSION-x86_64-linux.tar.gz`.
pub fn tarball() -> PathBuf {
    dist_dir().join(format!("kawrap-{VERSION}-x86_64-linux.tar.gz"))
}

/// `dist/kawrap_VERSION_amd64.deb`.
pub fn deb() -> PathBuf {
    dist_dir().join(format!("kawrap_{VERSION}_amd64.deb"))
}

/// Why the dist artifacts cannot be checked, or `None` when they can.
pub fn unavailable_reason() -> Option<String> {
    for artifact in [tarball(), deb()] {
        if !artifact.is_file() {
            return Some(format!(
                "{} is missing: run `make dist` (needs cargo-zigbuild: pip install ziglang cargo-zigbuild)",
                artifact.display()
            ));
        }
    }
    for (tool, package) in [("readelf", "binutils"), ("dpkg-deb", "dpkg"), ("tar", "tar")] {
        if !crate::servers::have_program(tool) {
            return Some(format!("needs `{tool}` ({package})"));
        }
    }
    None
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Unpacks the tarball into `dir` as the README says to install it under a
/// prefix (`tar -C PREFIX --strip-components=1 -xzf …`); returns `dir`.
pub fn unpack_tarball(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the unpack directory");
    run(Command::new("tar").arg("-C").arg(dir).args(["--strip-components=1", "-xzf"]).arg(tarball()));
    dir.to_owned()
}

/// Unpacks the .deb's files into `dir` (`dpkg-deb -x`); returns `dir`.
pub fn unpack_deb(dir: &Path) -> PathBuf {
    run(Command::new("dpkg-deb").arg("-x").arg(deb()).arg(dir));
    dir.to_owned()
}

/// A glibc symbol version, `GLIBC_2.17` as (2, 17, 0).
pub type GlibcVersion = (u32, u32, u32);

/// `GLIBC_2.17` → (2, 17, 0); `None` for anything else (`GLIBC_PRIVATE`).
pub fn glibc_version(name: &str) -> Option<GlibcVersion> {
    let mut numbers = name.strip_prefix("GLIBC_")?.split('.').map(|part| part.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().map_or(Some(0), |part| part)?;
    Some((major, minor, patch))
}

/// One symbol version the file needs from a library: what the loader
/// checks before it runs anything ("version `GLIBC_2.34' not found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNeed {
    /// The library, `libc.so.6`.
    pub library: String,
    /// The version, `GLIBC_2.17`.
    pub version: String,
}

/// The file's version-needs section (`readelf -V`).
pub fn version_needs(elf: &Path) -> Vec<VersionNeed> {
    let text = run(Command::new("readelf").args(["-V", "-W"]).arg(elf));
    let needs = text.split("Version needs section").nth(1).unwrap_or_default();
    let mut library = String::new();
    let mut found = Vec::new();
    for line in needs.lines() {
        if let Some(file) = line.split("File: ").nth(1) {
            library = file.split_whitespace().next().unwrap_or_default().to_owned();
        } else if let Some(name) = line.split("Name: ").nth(1).and_then(|rest| rest.split_whitespace().next())
        {
            found.push(VersionNeed { library: library.clone(), version: name.to_owned() });
        }
    }
    found
}

/// The file's DT_NEEDED libraries (`readelf -d`).
pub fn needed_libraries(elf: &Path) -> Vec<String> {
    let text = run(Command::new("readelf").args(["-d", "-W"]).arg(elf));
    text.lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| Some(line.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

/// One entry of the dynamic symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicSymbol {
    /// The name without its `@VERSION`.
    pub name: String,
    /// Defined in this file (not `UND`).
    pub defined: bool,
    /// A weak binding: a missing definition is not an error.
    pub weak: bool,
}

/// The file's dynamic symbols (`readelf --dyn-syms`).
pub fn dynamic_symbols(elf: &Path) -> Vec<DynamicSymbol> {
    let text = run(Command::new("readelf").args(["--dyn-syms", "-W"]).arg(elf));
    text.lines()
        .filter_map(|line| {
            // Num: Value Size Type Bind Vis Ndx Name
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[0].ends_with(':') {
                return None;
            }
            let name = fields[7].split('@').next().unwrap_or_default();
            (!name.is_empty()).then(|| DynamicSymbol {
                name: name.to_owned(),
                defined: fields[6] != "UND",
                weak: fields[4] == "WEAK",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_read_like_the_loader() {
        assert_eq!(glibc_version("GLIBC_2.17"), Some((2, 17, 0)));
        assert_eq!(glibc_version("GLIBC_2.2.5"), Some((2, 2, 5)));
        assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version("GCC_3.0"), None);
        assert!(glibc_version("GLIBC_2.2.5") < glibc_version("GLIBC_2.17"));
    }
}
