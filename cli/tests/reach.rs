//! Programs LD_PRELOAD cannot reach: kawrap says so once, says what to do
//! instead, and runs them all the same. Every case is a real executable
//! built or changed here (static, Go, setuid, file capabilities, scripts;
//! and musl, which it does reach), run through the real kawrap binary.
mod testenv;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{Outcome, TestEnv, harmless_preload, have, kawrap_bin, real_shim, skip_unless};

const NO_LIBC_ADVICE: &str = "  instead: use `kawrap --bpf` (root) or `kawrap attach PID` after it starts, or set \
                              sysctl net.ipv4.tcp_keepalive_* for the whole system";
const KEEPS: &str = "so its sockets keep the kernel's keepalive settings";

/// A library that really loads, so the programs really run: the shim when
/// it has been built, else the C library itself (preloading it changes
/// nothing).
fn lib() -> PathBuf {
    real_shim().unwrap_or_else(harmless_preload)
}

/// Compiles a C program that exits with `code` (plus `extra` C source),
/// with `cc` (or another compiler) and its extra flags.
fn compile(
    env: &TestEnv,
    compiler: &str,
    name: &str,
    code: i32,
    extra: &str,
    flags: &[&str],
) -> Option<PathBuf> {
    if !skip_unless(
        have(compiler),
        &format!("{compiler} is not installed (Debian: gcc libc6-dev musl-tools)"),
    ) {
        return None;
    }
    let source = env.write_file(
        &format!("src/{name}.c"),
        &format!("{extra}\nint main(void) {{ return {code}; }}\n"),
        0o644,
    );
    let output = env.root().join("bin").join(name);
    fs::create_dir_all(output.parent().unwrap()).unwrap();
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&output)
        .arg(&source)
        .status()
        .expect("run the compiler");
    assert!(status.success(), "{compiler} {flags:?} {name} failed");
    Some(output)
}

/// Runs `kawrap [-q] --lib LIB PROGRAM` and checks the exit status is the
/// program's own.
fn run(env: &TestEnv, quiet: bool, program: &Path, code: i32) -> Outcome {
    let lib = lib();
    let mut args: Vec<&OsStr> = vec!["--lib".as_ref(), lib.as_os_str()];
    if quiet {
        args.push("--quiet".as_ref());
    }
    args.push(program.as_os_str());
    env.kawrap().args(args).run().code(code)
}

/// The warning is there once, with its advice on the next line; with
/// `--quiet` stderr is empty and the program still runs.
fn assert_warns(env: &TestEnv, program: &Path, code: i32, problem: &str, advice: &str) {
    let out = run(env, false, program, code);
    let stderr = out.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one warning of two lines:\n{stderr}");
    assert!(lines[0].starts_with("kawrap: warning: "), "{stderr}");
    assert!(lines[0].contains(problem), "{problem:?} not in:\n{stderr}");
    assert!(lines[0].ends_with(KEEPS) || problem.contains(KEEPS), "{stderr}");
    assert_eq!(lines[1], advice, "{stderr}");
    assert_eq!(run(env, true, program, code).stderr(), "");
}

fn assert_silent(env: &TestEnv, program: &Path, code: i32) {
    assert_eq!(run(env, false, program, code).stderr(), "");
}

#[test]
fn a_dynamic_glibc_program_runs_without_a_word() {
    let env = TestEnv::new();
    let Some(program) = compile(&env, "cc", "plain", 3, "", &[]) else { return };
    assert_silent(&env, &program, 3);
}

#[test]
fn a_static_program_is_named_and_still_runs() {
    let env = TestEnv::new();
    let Some(program) = compile(&env, "cc", "static", 5, "", &["-static"]) else { return };
    let problem =
        format!("{} is statically linked: no dynamic loader runs to preload libkawrap.so", program.display());
    assert_warns(&env, &program, 5, &problem, NO_LIBC_ADVICE);
}

#[test]
fn a_static_pie_is_static_too() {
    let env = TestEnv::new();
    let Some(program) = compile(&env, "cc", "static-pie", 6, "", &["-static-pie", "-fPIE"]) else { return };
    assert_warns(&env, &program, 6, "is statically linked", NO_LIBC_ADVICE);
}

/// Go's marker in an initialised, writable array, as Go's linker places it.
const GO_MARKER_C: &str = r#"
__attribute__((used, aligned(16))) char go_buildinfo[32] = "\xff Go buildinf:\x08\x02";
"#;

#[test]
fn gos_marker_alone_is_enough() {
    let env = TestEnv::new();
    let Some(program) = compile(&env, "cc", "go-marker", 7, GO_MARKER_C, &[]) else { return };
    // No section headers at all (e_shoff, e_shnum, e_shstrndx = 0): only the
    // marker in the data segment can tell. The loader never reads them, so
    // the program still runs.
    let mut file = fs::OpenOptions::new().write(true).open(&program).unwrap();
    file.seek(SeekFrom::Start(40)).unwrap();
    file.write_all(&[0; 8]).unwrap();
    file.seek(SeekFrom::Start(60)).unwrap();
    file.write_all(&[0; 4]).unwrap();
    drop(file);
    let readelf = Command::new("readelf").arg("-S").arg(&program).output();
    if let Ok(readelf) = readelf {
        assert!(
            String::from_utf8_lossy(&readelf.stdout).contains("no sections"),
            "section headers still there"
        );
    }
    assert_warns(
        &env,
        &program,
        7,
        "is a Go program: Go programs make their own system calls; LD_PRELOAD cannot reach them",
        NO_LIBC_ADVICE,
    );
}

#[test]
fn a_go_buildinfo_section_is_enough() {
    let env = TestEnv::new();
    let section = r#"__attribute__((used, section(".go.buildinfo"))) char info[16] = "not the marker";"#;
    let Some(program) = compile(&env, "cc", "go-section", 8, section, &[]) else { return };
    assert_warns(&env, &program, 8, "is a Go program", NO_LIBC_ADVICE);
}

/// A real Go program, built here: `main.go` in its own directory.
fn go_build(env: &TestEnv, name: &str, source: &str, cgo: bool) -> Option<PathBuf> {
    if !skip_unless(have("go"), "go is not installed (Debian: golang-go)") {
        return None;
    }
    let dir = env.root().join("go").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("main.go"), source).unwrap();
    let output = env.root().join("bin").join(name);
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&output)
        .arg("main.go")
        .current_dir(&dir)
        .env("GOCACHE", env.root().join("go/cache"))
        .env("GOPATH", env.root().join("go/path"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .status()
        .expect("run go build");
    assert!(status.success(), "go build {name} failed");
    Some(output)
}

#[test]
fn real_go_programs_static_and_with_cgo() {
    let env = TestEnv::new();
    let Some(plain) =
        go_build(&env, "gostatic", "package main\nimport \"os\"\nfunc main() { os.Exit(9) }\n", false)
    else {
        return;
    };
    assert_warns(&env, &plain, 9, "is a Go program", NO_LIBC_ADVICE);
    // With cgo the binary has a dynamic loader and links glibc, yet its
    // sockets are still Go's own system calls: still a Go program.
    let source = "package main\nimport (\"net\"; \"os\")\nfunc main() { _, _ = net.LookupPort(\"tcp\", \"80\"); os.Exit(10) }\n";
    let Some(cgo) = go_build(&env, "gocgo", source, true) else { return };
    let interp = Command::new("readelf").arg("-l").arg(&cgo).output().expect("readelf");
    assert!(
        String::from_utf8_lossy(&interp.stdout).contains("program interpreter"),
        "cgo build has no PT_INTERP"
    );
    assert_warns(&env, &cgo, 10, "is a Go program", NO_LIBC_ADVICE);
}

#[test]
fn a_musl_program_runs_without_a_word() {
    // libkawrap.so loads into musl programs (musl's loader answers its
    // libc/libdl requests itself): nothing to warn about. That the profile
    // really arrives is integration/tests/portability.rs's musl test.
    let env = TestEnv::new();
    let Some(program) = compile(&env, "musl-gcc", "musl", 11, "", &[]) else { return };
    assert_silent(&env, &program, 11);
}

const SECURE_ADVICE: &str = "  instead: run it with `kawrap attach PID` after it starts (as root), or set sysctl \
                             net.ipv4.tcp_keepalive_* for the whole system";

fn is_root() -> bool {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    unsafe { libc::getuid() == 0 }
}

#[test]
fn setuid_and_setgid_programs_to_another_user() {
    let env = TestEnv::new();
    if !skip_unless(is_root(), "giving a file to another user needs root") {
        return;
    }
    if !skip_unless(!nosuid(&env.root()), "the target directory is on a nosuid mount") {
        return;
    }
    let Some(program) = compile(&env, "cc", "suid", 12, "", &[]) else { return };
    let setgid = env.root().join("bin/sgid");
    fs::copy(&program, &setgid).unwrap();

    std::os::unix::fs::chown(&program, Some(65534), None).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_warns(&env, &program, 12, "is setuid: the loader ignores LD_PRELOAD for it", SECURE_ADVICE);

    std::os::unix::fs::chown(&setgid, None, Some(65534)).unwrap();
    fs::set_permissions(&setgid, fs::Permissions::from_mode(0o2755)).unwrap();
    assert_warns(&env, &setgid, 12, "is setgid: the loader ignores LD_PRELOAD for it", SECURE_ADVICE);

    // Setuid to oneself changes nothing: no warning.
    let own = env.root().join("bin/own");
    fs::copy(&program, &own).unwrap();
    fs::set_permissions(&own, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_silent(&env, &own, 12);
}

#[test]
fn a_setuid_script_is_judged_by_its_interpreter() {
    // Linux ignores setuid on scripts: the interpreter runs as the caller
    // and honours LD_PRELOAD, so there is nothing to warn about.
    let env = TestEnv::new();
    if !skip_unless(is_root(), "giving a file to another user needs root") {
        return;
    }
    let script = env.write_file("bin/suid.sh", "#!/bin/sh\nexit 13\n", 0o755);
    std::os::unix::fs::chown(&script, Some(65534), None).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_silent(&env, &script, 13);
}

/// Whether the file system holding `path` ignores setuid, setgid and file
/// capabilities (mounted nosuid).
fn nosuid(path: &Path) -> bool {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a valid C string and a statvfs to fill in.
    assert_eq!(unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) }, 0, "statvfs {}", path.display());
    // SAFETY: filled in by the successful call.
    unsafe { stat.assume_init() }.f_flag & libc::ST_NOSUID != 0
}

/// kawrap (copied into `dir`) run as `nobody`, real and effective.
fn run_as_nobody(env: &TestEnv, dir: &Path, quiet: bool, program: &Path) -> Outcome {
    let mut args: Vec<OsString> =
        ["--reuid=65534", "--regid=65534", "--clear-groups", "--"].map(OsString::from).to_vec();
    args.extend([dir.join("kawrap").into(), "--lib".into(), dir.join("lib.so").into()]);
    if quiet {
        args.push("-q".into());
    }
    args.push(program.into());
    env.run_binary(Path::new("setpriv")).current_dir(dir).args(args).run()
}

#[test]
fn file_capabilities_for_a_caller_that_is_not_root() {
    let env = TestEnv::new();
    if !skip_unless(
        is_root() && have("setcap") && have("setpriv"),
        "needs root, setcap (libcap2-bin) and setpriv",
    ) {
        return;
    }
    let Some(built) = compile(&env, "cc", "caps", 14, "", &[]) else { return };
    // Everything nobody runs sits in a directory nobody can reach (the
    // target directory may be under a private home).
    let dir = tempfile::Builder::new().prefix("kawrap-reach-").tempdir().unwrap();
    let dir = dir.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    if !skip_unless(!nosuid(dir), "the temporary directory is on a nosuid mount") {
        return;
    }
    fs::copy(kawrap_bin(), dir.join("kawrap")).unwrap();
    fs::copy(lib(), dir.join("lib.so")).unwrap();
    let program = dir.join("caps");
    fs::copy(&built, &program).unwrap();
    let status = Command::new("setcap").arg("cap_net_raw+ep").arg(&program).status().unwrap();
    if !skip_unless(status.success(), "this file system does not keep security.capability") {
        return;
    }

    // Root already holds every capability: the kernel does not switch the
    // loader to secure mode, and kawrap says nothing.
    assert_silent(&env, &program, 14);

    let out = run_as_nobody(&env, dir, false, &program).code(14);
    let stderr = out.stderr();
    assert_eq!(
        stderr,
        format!(
            "kawrap: warning: {} has file capabilities (security.capability): the loader ignores LD_PRELOAD \
             for it, {KEEPS}\n{SECURE_ADVICE}\n",
            program.display()
        )
    );
    assert_eq!(run_as_nobody(&env, dir, true, &program).code(14).stderr(), "");

    // The same rule for setuid: a root-owned setuid file changes nobody's
    // user, root's not.
    let suid = dir.join("suid-root");
    fs::copy(&built, &suid).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_silent(&env, &suid, 14);
    run_as_nobody(&env, dir, false, &suid)
        .code(14)
        .stderr_contains("is setuid: the loader ignores LD_PRELOAD");
}

#[test]
fn a_nosuid_mount_makes_setuid_harmless() {
    let env = TestEnv::new();
    if !skip_unless(is_root() && have("unshare"), "mounting a file system needs root and unshare") {
        return;
    }
    let Some(program) = compile(&env, "cc", "nosuid", 18, "", &[]) else { return };
    let mount_point = env.root().join("mnt");
    fs::create_dir_all(&mount_point).unwrap();
    let lib = lib();
    // In a private mount namespace: a tmpfs with or without nosuid, a
    // setuid copy of the program on it, and kawrap running it.
    let script = r#"mount -t tmpfs -o "$1" kawrap-reach "$2" && cp "$3" "$2/p" && chown 65534 "$2/p" \
                    && chmod 4755 "$2/p" && exec "$4" --lib "$5" "$2/p""#;
    for (options, warns) in [("nosuid", false), ("suid", true)] {
        let out = env
            .run_binary(Path::new("unshare"))
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh", options].map(OsStr::new))
            .args([mount_point.as_os_str(), program.as_os_str(), kawrap_bin().as_os_str(), lib.as_os_str()])
            .run()
            .code(18);
        assert_eq!(
            out.stderr().contains("is setuid: the loader ignores LD_PRELOAD"),
            warns,
            "{options}: {}",
            out.stderr()
        );
    }
}

#[test]
fn sudo_and_doas_are_told_to_come_first() {
    // The warning goes by the command's name; stand-ins that run their
    // arguments show that the command still runs.
    let env = TestEnv::new();
    let stand_in = "#!/bin/sh\nexec \"$@\"\n";
    let sudo = env.write_file("fake-bin/sudo", stand_in, 0o755);
    env.write_file("fake-bin/doas", stand_in, 0o755);
    let lib = lib();
    for wrapper in ["sudo", "doas"] {
        let path =
            format!("{}:{}", sudo.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let out = env
            .kawrap()
            .env("PATH", &path)
            .args([
                "--lib".as_ref(),
                lib.as_os_str(),
                wrapper.as_ref(),
                "sh".as_ref(),
                "-c".as_ref(),
                "exit 15".as_ref(),
            ])
            .run()
            .code(15);
        assert_eq!(
            out.stderr(),
            format!(
                "kawrap: warning: {wrapper} starts the program with a cleaned environment: it removes LD_PRELOAD \
                 and KAWRAP_*, {KEEPS}\n  instead: put kawrap after {wrapper}: {wrapper} kawrap … CMD\n"
            )
        );
        let quiet = env
            .kawrap()
            .env("PATH", &path)
            .args(["-q".as_ref(), "--lib".as_ref(), lib.as_os_str(), wrapper.as_ref(), "true".as_ref()])
            .run()
            .code(0);
        assert_eq!(quiet.stderr(), "");
    }
    // By path too.
    run(&env, false, &sudo, 0).stderr_contains("kawrap: warning: sudo starts the program");
}

#[test]
fn scripts_are_judged_by_their_interpreter() {
    let env = TestEnv::new();
    let Some(static_program) = compile(&env, "cc", "static-interp", 0, "", &["-static"]) else { return };
    // A shell script: the shell is a dynamic glibc program.
    let shell = env.write_file("bin/shell.sh", "#!/bin/sh\nexit 16\n", 0o755);
    assert_silent(&env, &shell, 16);
    let via_env = env.write_file("bin/env-sh", "#!/usr/bin/env sh\nexit 17\n", 0o755);
    assert_silent(&env, &via_env, 17);

    // An interpreter named by path, and one found by env in PATH; the
    // static "interpreter" ignores the script and exits 0.
    let direct = env.write_file("bin/direct", &format!("#!{}\n", static_program.display()), 0o755);
    let problem = format!("{} (run by {}) is statically linked", direct.display(), static_program.display());
    assert_warns(&env, &direct, 0, &problem, NO_LIBC_ADVICE);

    let by_name = env.write_file("bin/by-name", "#!/usr/bin/env -S static-interp --flag\n", 0o755);
    let path = format!(
        "{}:{}",
        static_program.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let lib = lib();
    let out = env.kawrap().env("PATH", path).lib(&lib).args([by_name.as_os_str()]).run().code(0);
    assert!(
        out.stderr().starts_with(&format!(
            "kawrap: warning: {} (run by {}) is statically linked",
            by_name.display(),
            static_program.display()
        )),
        "{}",
        out.stderr()
    );
}

#[test]
fn garbage_and_huge_files_get_no_claim_and_no_wait() {
    let env = TestEnv::new();
    // Starts like an ELF file, then nothing that holds together: no
    // warning (whatever the kernel then makes of it).
    let mut garbage = b"\x7fELF\x02\x01\x01".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let path = env.root().join("bin/garbage");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &garbage).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let lib = lib();
    let out = env.kawrap().lib(&lib).args(["--dry-run".as_ref(), path.as_os_str()]).run().code(0);
    assert!(!out.stderr().contains("warning"), "{}", out.stderr());

    // A static program made 64 GiB long (sparse): only its headers are read.
    let Some(program) = compile(&env, "cc", "huge", 0, "", &["-static"]) else { return };
    fs::OpenOptions::new().write(true).open(&program).unwrap().set_len(64 << 30).unwrap();
    let started = Instant::now();
    env.kawrap()
        .lib(&lib)
        .args(["--dry-run".as_ref(), program.as_os_str()])
        .run()
        .code(0)
        .stderr_contains("is statically linked");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
