//! `make install DESTDIR=… PREFIX=/usr/local` as a packager runs it: the
//! installed launcher finds its installed shim, the man pages render, the
//! completions load, and `make uninstall` takes it all away again.
mod testenv;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testenv::{TestEnv, have, kawrap_bin, skip_unless};

/// How `make` is run: as the person who built kawrap (cargo in PATH), or as
/// `sudo make install` runs it: sudo's PATH has no cargo, and here the
/// `cargo` it finds fails loudly.
#[derive(Clone, Copy, PartialEq)]
enum Toolchain {
    InPath,
    Absent,
}

/// A directory holding a `cargo` that says it must not run, and fails.
fn forbidden_cargo() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("kawrap-no-cargo-").tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    fs::write(&cargo, "#!/bin/sh\necho \"cargo must not run here: $*\" >&2\nexit 99\n").unwrap();
    fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// `make ARGS…` in the workspace, building into the target directory these
/// tests were built in (so nothing is rebuilt from scratch).
fn run_make(args: &[String], toolchain: Toolchain) -> Output {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    // …/target-dir/debug/kawrap → …/target-dir
    let target_dir = kawrap_bin().parent().and_then(Path::parent).expect("a target directory").to_owned();
    let mut command = Command::new("make");
    command
        .current_dir(workspace)
        .args(args)
        .env("CARGO_TARGET_DIR", &target_dir)
        // Not a sub-make of whatever started the tests.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let no_cargo = forbidden_cargo();
    match toolchain {
        Toolchain::InPath => command.env("CARGO", option_env!("CARGO").unwrap_or("cargo")),
        Toolchain::Absent => command
            .env_remove("CARGO")
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", no_cargo.path().display())),
    };
    command.output().expect("run make")
}

fn describe(args: &[String], output: &Output) -> String {
    format!(
        "make {args:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// [`run_make`], which must succeed.
fn make(args: &[String], toolchain: Toolchain) -> Output {
    let output = run_make(args, toolchain);
    assert!(output.status.success(), "{}", describe(args, &output));
    output
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

#[test]
fn make_install_then_uninstall() {
    if !skip_unless(have("make") && have("install"), "make and install (coreutils) are needed") {
        return;
    }
    let env = TestEnv::new();
    let dest = env.root().join("dest");
    let destdir = format!("DESTDIR={}", dest.display());
    let prefix = "PREFIX=/usr/local".to_owned();
    // `make`, then `sudo make install`: installing what is built needs no
    // toolchain.
    make(&["build".to_owned()], Toolchain::InPath);
    make(&["install".to_owned(), destdir.clone(), prefix.clone()], Toolchain::Absent);
    let usr = dest.join("usr/local");

    // The installed launcher finds the installed shim (../lib/kawrap/).
    let kawrap = usr.join("bin/kawrap");
    let out = env.run_binary(&kawrap).args(["--dry-run", "--", "true"]).run().code(0);
    let lib = fs::canonicalize(usr.join("lib/kawrap/libkawrap.so")).expect("the shim is installed");
    assert_eq!(out.exported("LD_PRELOAD"), Some(lib.display().to_string()), "{}", out.stdout());
    // And really runs a program with it, whose status it passes on.
    env.run_binary(&kawrap).args(["sh", "-c", "exit 3"]).run().code(3);
    let version = env.run_binary(&kawrap).args(["--version"]).run().code(0);
    assert_eq!(version.stdout(), format!("kawrap {}\n", env!("CARGO_PKG_VERSION")));

    // A man page for kawrap and one per subcommand, that man can render.
    let man1 = usr.join("share/man/man1");
    for page in ["kawrap.1", "kawrap-profiles.1", "kawrap-check.1", "kawrap-attach.1", "kawrap-env.1"] {
        let path = man1.join(page);
        let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(text.contains(".TH kawrap"), "{page} has no title line");
    }
    let page = man1.join("kawrap.1");
    if have("man") {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(rendered.status.success(), "man -l: {}", String::from_utf8_lossy(&rendered.stderr));
        for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "KEEPALIVE SETTINGS", "SUBCOMMANDS"] {
            assert!(text.lines().any(|line| line == heading), "{heading} missing from:\n{text}");
        }
        assert!(text.contains("--profile"), "{text}");
        assert!(text.contains("WHAT KAWRAP CANNOT REACH"), "{text}");
    } else {
        eprintln!("SKIP (part): man is not installed; checked the roff source only");
    }

    // Completions where each shell looks for them.
    let bash = usr.join("share/bash-completion/completions/kawrap");
    let zsh = usr.join("share/zsh/site-functions/_kawrap");
    let fish = usr.join("share/fish/vendor_completions.d/kawrap.fish");
    for path in [&bash, &zsh, &fish] {
        let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(text.contains("--profile") && text.contains("profiles"), "{}", path.display());
    }
    assert!(fs::read_to_string(&zsh).unwrap().starts_with("#compdef kawrap"));
    if have("bash") {
        // bash loads it and then completes `kawrap` with it.
        let script = format!("source '{}' && complete -p kawrap", bash.display());
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("kawrap"), "complete -p says nothing");
    }

    make(&["uninstall".to_owned(), destdir, prefix], Toolchain::Absent);
    let left = files_under(&dest);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn make_install_without_a_build_says_to_run_make_and_builds_nothing() {
    if !skip_unless(have("make"), "make is needed") {
        return;
    }
    let env = TestEnv::new();
    let dest = env.root().join("dest");
    let empty = env.root().join("nothing-built");
    fs::create_dir_all(&empty).unwrap();
    let args =
        ["install".to_owned(), format!("RELEASE={}", empty.display()), format!("DESTDIR={}", dest.display())];
    let output = run_make(&args, Toolchain::Absent);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&args, &output));
    assert!(
        stderr.contains(&format!("{}/kawrap is missing: run `make` first", empty.display())),
        "{}",
        describe(&args, &output)
    );
    assert!(!dest.exists(), "installed something: {:?}", files_under(&dest));
}
