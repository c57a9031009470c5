//! The `kawrap` binary as a user runs it: what it prints, what it puts in
//! the program's environment, and which exit status it ends with.
mod testenv;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;

use kawrap_core::BUILTIN_PROFILES;
use testenv::{TestEnv, harmless_preload, real_shim, skip_unless};

/// `kawrap --lib <fake lib> --dry-run ARGS... true`.
fn dry_run(env: &TestEnv, args: &[&str]) -> testenv::Outcome {
    env.kawrap().lib(&env.fake_lib()).dry_run(args).run()
}

// ---- kawrap profiles ----

#[test]
fn profiles_lists_every_builtin_with_numbers_and_detection_time() {
    let env = TestEnv::new();
    let out = env.kawrap().args(["profiles"]).run().code(0);
    let rows: Vec<Vec<String>> = out
        .stdout()
        .lines()
        .map(|line| line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "I/V/C", "DETECTS A DEAD PEER IN", "PURPOSE"]);
    assert!(rows.contains(&vec![
        "linux-default".to_owned(),
        "7200/75/9".to_owned(),
        "2 h 11 min".to_owned(),
        "what Linux does without kawrap".to_owned()
    ]));
    assert!(rows.iter().any(|row| row[..3] == ["recommended", "300/30/5", "7 min 30 s"]));
    assert_eq!(rows.len(), 1 + BUILTIN_PROFILES.len());
}

#[test]
fn profiles_json_is_machine_readable() {
    let env = TestEnv::new();
    let out = env.kawrap().args(["profiles", "--json"]).run().code(0);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).expect("valid JSON");
    let firewall = list.as_array().unwrap().iter().find(|p| p["name"] == "firewall").unwrap();
    assert_eq!(firewall["idle_secs"], 60);
    assert_eq!(firewall["interval_secs"], 10);
    assert_eq!(firewall["count"], 6);
    assert_eq!(firewall["detection_secs"], 120);
    assert_eq!(firewall["detection_time"], "2 min");
}

#[test]
fn a_program_called_profiles_runs_after_dashes() {
    let env = TestEnv::new();
    env.write_file("bin/profiles", "#!/bin/sh\nexit 3\n", 0o755);
    let lib = harmless_preload();
    env.kawrap().env("PATH", env.root().join("bin")).lib(&lib).args(["--", "profiles"]).run().code(3);
}

#[test]
fn a_missing_program_named_like_a_subcommand_gets_a_hint() {
    let env = TestEnv::new();
    env.kawrap()
        .env("PATH", env.root())
        .lib(&env.fake_lib())
        .args(["--", "profiles"])
        .run()
        .code(127)
        .stderr_contains("`profiles` is also a kawrap subcommand");
}

// ---- --dry-run: what goes into the environment ----

#[test]
fn profile_names_become_numbers() {
    let env = TestEnv::new();
    for named in BUILTIN_PROFILES {
        let out = dry_run(&env, &["--profile", named.name]).code(0);
        assert_eq!(out.exported("KAWRAP_PROFILE"), Some(named.profile.to_string()), "{}", named.name);
    }
    let out = dry_run(&env, &["--profile", "FireWall"]).code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("60/10/6"));
}

#[test]
fn the_default_is_recommended_and_respect() {
    let env = TestEnv::new();
    let out = dry_run(&env, &[]).code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("300/30/5"));
    assert_eq!(out.exported("KAWRAP_POLICY").as_deref(), Some("respect"));
    assert_eq!(out.exported("KAWRAP_RULES"), None);
    assert_eq!(out.unset(), ["KAWRAP_RULES", "KAWRAP_LOG", "KAWRAP_DISABLE"]);
}

#[test]
fn user_timeout_is_written_in_milliseconds() {
    let env = TestEnv::new();
    let cases = [
        (&["--profile", "300/30/5/450s"][..], "300/30/5/450000"),
        (&["--profile", "300/30/5/auto"], "300/30/5/450000"),
        (&["--profile", "ssh", "--user-timeout", "7m30s"], "60/60/5/450000"),
        (&["--profile", "firewall", "--user-timeout", "auto"], "60/10/6/120000"),
        (&["--profile", "300/30/5/1000", "--user-timeout", "2500"], "300/30/5/2500"),
    ];
    for (args, expected) in cases {
        let out = dry_run(&env, args).code(0);
        assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some(expected), "{args:?}");
    }
}

#[test]
fn user_timeout_leaves_the_rules_alone() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--user-timeout", "auto", "--rule", ":22=ssh"]).code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("300/30/5/450000"));
    assert_eq!(out.exported("KAWRAP_RULES").as_deref(), Some(":22=60/60/5"));
}

#[test]
fn rules_are_canonical_and_one_list() {
    let env = TestEnv::new();
    let out = dry_run(
        &env,
        &["--rule", ":3306=firewall", "-r", " 10.1.2.3/8 = ssh ,[2001:db8::1]/32:5432=1/1/1/auto,"],
    )
    .code(0);
    assert_eq!(
        out.exported("KAWRAP_RULES").as_deref(),
        Some("':3306=60/10/6,10.0.0.0/8=60/60/5,[2001:db8::]/32:5432=1/1/1/2000'")
    );
    assert!(!out.unset().contains(&"KAWRAP_RULES".to_owned()));
}

#[test]
fn policy_is_canonical() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--policy", "FORCE"]).code(0);
    assert_eq!(out.exported("KAWRAP_POLICY").as_deref(), Some("force"));
}

#[test]
fn log_path_is_made_absolute_and_dry_run_does_not_create_it() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--log", "logs/k.log"]).code(0);
    let expected = env.root().join("logs/k.log");
    assert_eq!(out.exported("KAWRAP_LOG"), Some(expected.display().to_string()));
    assert!(!expected.exists());
}

#[test]
fn the_shim_goes_first_in_ld_preload_once() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    let link = env.root().join("link.so");
    symlink(&lib, &link).unwrap();
    let existing = format!("/opt/a.so {}:/opt/b.so  {} :c.so", lib.display(), link.display());
    let out = env.kawrap().env("LD_PRELOAD", existing).lib(&lib).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(format!("{}:/opt/a.so:/opt/b.so:c.so", lib.display())));
}

#[test]
fn ld_preload_keeps_bytes_that_are_not_utf8() {
    let env = TestEnv::new();
    let out = env
        .kawrap()
        .env("LD_PRELOAD", OsStr::from_bytes(b"/opt/\xff.so"))
        .lib(&env.fake_lib())
        .dry_run(&[])
        .run()
        .code(0);
    let expected =
        [b"export LD_PRELOAD='".as_slice(), env.fake_lib().as_os_str().as_bytes(), b":/opt/\xff.so'\n"]
            .concat();
    assert!(out.stdout_bytes().starts_with(&expected), "{:?}", out.stdout());
}

#[test]
fn a_relative_lib_is_resolved_against_the_current_directory() {
    let env = TestEnv::new();
    let out = env.kawrap().args(["--lib", "fake/../fake/libkawrap.so"]).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(env.fake_lib().display().to_string()));
}

#[test]
fn kawrap_lib_names_the_library_too() {
    let env = TestEnv::new();
    let out = env.kawrap().env("KAWRAP_LIB", env.fake_lib()).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(env.fake_lib().display().to_string()));
}

#[test]
fn variables_exported_before_are_replaced_or_removed() {
    let env = TestEnv::new();
    let out = env
        .kawrap()
        .env("KAWRAP_PROFILE", "1/1/1")
        .env("KAWRAP_RULES", ":1=ssh")
        .env("KAWRAP_LOG", "/tmp/old.log")
        .env("KAWRAP_DISABLE", "1")
        .lib(&env.fake_lib())
        .dry_run(&[])
        .run()
        .code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("300/30/5"));
    assert_eq!(out.unset(), ["KAWRAP_RULES", "KAWRAP_LOG", "KAWRAP_DISABLE"]);
}

#[test]
fn dry_run_prints_the_command_shell_quoted() {
    let env = TestEnv::new();
    let out = env
        .kawrap()
        .lib(&env.fake_lib())
        .args(["--dry-run", "sh", "-c", "echo \"it's $HOME\"", "--profile"])
        .run()
        .code(0);
    assert_eq!(out.stdout().lines().last(), Some(r#"exec sh -c 'echo "it'\''s $HOME"' --profile"#));
}

#[test]
fn dry_run_output_is_a_script_with_the_same_effect() {
    let env = TestEnv::new();
    let lib = harmless_preload();
    let out = env
        .kawrap()
        .lib(&lib)
        .args(["--dry-run", "--profile", "ssh", "-r", "[::1]:22=firewall", "sh", "-c"])
        .args([r#"printf '%s|%s|%s|%s' "$KAWRAP_PROFILE" "$KAWRAP_RULES" "$KAWRAP_POLICY" "$LD_PRELOAD""#])
        .run()
        .code(0);
    let script = std::process::Command::new("sh").args(["-c", &out.stdout()]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&script.stdout),
        format!("60/60/5|[::1]/128:22=60/10/6|respect|{}", lib.display())
    );
}

// ---- finding libkawrap.so ----

#[test]
fn the_library_next_to_kawrap_is_found() {
    let env = TestEnv::new();
    let kawrap = env.install_kawrap("build/kawrap");
    let lib = env.write_file("build/libkawrap.so", "", 0o644);
    let out = env.run_binary(&kawrap).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(lib.display().to_string()));
}

#[test]
fn the_installed_layout_is_found_also_through_a_symlink() {
    let env = TestEnv::new();
    let kawrap = env.install_kawrap("prefix/bin/kawrap");
    let lib = env.write_file("prefix/lib/kawrap/libkawrap.so", "", 0o644);
    let out = env.run_binary(&kawrap).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(lib.display().to_string()));

    let link = env.root().join("elsewhere/kawrap");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(&kawrap, &link).unwrap();
    let out = env.run_binary(&link).dry_run(&[]).run().code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(lib.display().to_string()));
}

#[test]
fn no_library_anywhere_lists_where_kawrap_looked() {
    let env = TestEnv::new();
    let kawrap = env.install_kawrap("lonely/bin/kawrap");
    let root = env.root();
    env.run_binary(&kawrap).dry_run(&[]).run().code(125).stderr_starts_with(&[
        "kawrap: cannot find libkawrap.so, the library kawrap preloads into the program",
        &format!("  not in {}/lonely/bin/libkawrap.so", root.display()),
        &format!("  not in {}/lonely/lib/kawrap/libkawrap.so", root.display()),
    ]);
}

// ---- exit statuses ----

#[test]
fn bad_profile_is_125_with_what_is_accepted() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--profile", "300/30/500"])
        .code(125)
        .stderr_starts_with(&[r#"kawrap: profile "300/30/500": count 500 is out of range 1..=127"#]);
    let second = out.stderr().lines().nth(1).unwrap_or_default().to_owned();
    assert!(second.contains("IDLE/INTVL/CNT[/UT]") && second.contains("linux-default"), "{second}");
    assert!(out.stdout().is_empty());
}

#[test]
fn bad_rule_policy_and_user_timeout_are_125() {
    let env = TestEnv::new();
    dry_run(&env, &["--rule", "db.example=ssh"]).code(125).stderr_contains(r#"rule "db.example=ssh""#);
    dry_run(&env, &["--rule", ":3306"]).code(125).stderr_contains("DEST=PROFILE");
    dry_run(&env, &["--rule", ":3306=1/1/0"]).code(125).stderr_contains("count 0 is out of range 1..=127");
    dry_run(&env, &["--policy", "sometimes"]).code(125).stderr_contains(r#"policy "sometimes""#);
    dry_run(&env, &["--user-timeout", "soon"]).code(125).stderr_contains(r#"user timeout "soon""#);
}

#[test]
fn missing_library_is_125() {
    let env = TestEnv::new();
    env.kawrap()
        .args(["--lib", "/nonexistent/libkawrap.so", "true"])
        .run()
        .code(125)
        .stderr_contains("/nonexistent/libkawrap.so does not exist");
    env.kawrap()
        .args(["--lib", "nowhere/libkawrap.so", "true"])
        .run()
        .code(125)
        .stderr_contains(&format!("{}/nowhere/libkawrap.so does not exist", env.root().display()));
    env.kawrap().args(["--lib", "fake", "true"]).run().code(125).stderr_contains("is not a regular file");
}

#[test]
fn usage_errors_are_125_and_help_is_0() {
    let env = TestEnv::new();
    env.kawrap().args(["--no-such-option", "true"]).run().code(125);
    env.kawrap().args(["--profile", "ssh"]).run().code(125);
    env.kawrap().run().code(125).stderr_contains("Usage: kawrap");
    let help = env.kawrap().args(["--help"]).run().code(0).stdout();
    assert!(help.contains("timer:(keepalive,4min59sec,0)") && help.contains("kawrap -- profiles"));
    env.kawrap().args(["--version"]).run().code(0);
}

#[test]
fn an_unwritable_log_is_125_before_the_program_runs() {
    let env = TestEnv::new();
    env.kawrap()
        .lib(&env.fake_lib())
        .args(["--log", "no/such/dir/k.log", "true"])
        .run()
        .code(125)
        .stderr_contains("--log: cannot open");
}

#[test]
fn not_found_is_127() {
    let env = TestEnv::new();
    env.kawrap()
        .env("PATH", "/nonexistent:/also-not")
        .lib(&env.fake_lib()).args(["nosuchprog"])
        .run()
        .code(127)
        .stderr_starts_with(&[
            "kawrap: nosuchprog: command not found",
            "  looked in PATH=/nonexistent:/also-not; give a path (./nosuchprog) to run a program from elsewhere",
        ]);
    env.kawrap()
        .lib(&env.fake_lib())
        .args(["./nosuchprog"])
        .run()
        .code(127)
        .stderr_starts_with(&["kawrap: ./nosuchprog: no such file or directory"]);
}

#[test]
fn found_but_not_executable_is_126() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    env.write_file("bin/script", "#!/bin/sh\n", 0o644);
    env.kawrap()
        .lib(&lib)
        .args(["./bin/script"])
        .run()
        .code(126)
        .stderr_starts_with(&["kawrap: ./bin/script: cannot execute: permission denied"]);
    env.kawrap()
        .lib(&lib)
        .args(["./bin"])
        .run()
        .code(126)
        .stderr_starts_with(&["kawrap: ./bin: cannot execute: is a directory"]);
    // Found in PATH, but only as a file nobody may execute.
    env.kawrap()
        .env("PATH", env.root().join("bin"))
        .lib(&lib)
        .args(["script"])
        .run()
        .code(126)
        .stderr_contains("bin/script: cannot execute: permission denied");
}

#[test]
fn the_first_executable_in_path_wins() {
    let env = TestEnv::new();
    env.write_file("a/prog", "#!/bin/sh\nexit 1\n", 0o644);
    env.write_file("b/prog", "#!/bin/sh\nexit 4\n", 0o755);
    env.write_file("c/prog", "#!/bin/sh\nexit 5\n", 0o755);
    let path = format!("{0}/a:{0}/b:{0}/c", env.root().display());
    let lib = harmless_preload();
    env.kawrap().env("PATH", path).lib(&lib).args(["prog"]).run().code(4);
}

#[test]
fn a_missing_interpreter_is_127_like_a_shell() {
    let env = TestEnv::new();
    env.write_file("bin/orphan", "#!/nonexistent/interpreter\n", 0o755);
    let lib = harmless_preload();
    env.kawrap().lib(&lib).args(["./bin/orphan"]).run().code(127).stderr_contains("interpreter");
}

// ---- the program really runs, with the environment ----

#[test]
fn the_program_exit_status_is_kawraps() {
    let env = TestEnv::new();
    let lib = harmless_preload();
    env.kawrap().lib(&lib).args(["sh", "-c", "exit 7"]).run().code(7);
    env.kawrap().lib(&lib).args(["true"]).run().code(0);
}

#[test]
fn the_program_receives_the_environment() {
    let env = TestEnv::new();
    let lib = harmless_preload();
    let out = env
        .kawrap()
        .env("KAWRAP_DISABLE", "1")
        .env("KEPT", OsStr::from_bytes(b"caf\xe9"))
        .lib(&lib)
        .args(["--profile", "firewall", "--policy", "force", "--log", "k.log", "-r", ":5432=ssh"])
        .args(["sh", "-c", r#"printf '%s\n' "$KAWRAP_PROFILE" "$KAWRAP_RULES" "$KAWRAP_POLICY" "$KAWRAP_LOG" "${KAWRAP_DISABLE-unset}" "$LD_PRELOAD" "$KEPT" "$0""#])
        .run()
        .code(0);
    let expected = [
        "60/10/6".as_bytes(),
        b":5432=60/60/5",
        b"force",
        env.root().join("k.log").as_os_str().as_bytes(),
        b"unset",
        lib.as_os_str().as_bytes(),
        b"caf\xe9",
        b"sh",
    ]
    .join(&b'\n');
    assert_eq!(out.stdout_bytes(), [expected, b"\n".to_vec()].concat(), "{}", out.stdout());
    assert!(env.root().join("k.log").is_file(), "kawrap creates the log file");
}

#[test]
fn verbose_says_what_is_applied_and_quiet_is_quiet() {
    let env = TestEnv::new();
    let lib = harmless_preload();
    let out = env.kawrap().lib(&lib).args(["-v", "--profile", "60/10/6/auto", "true"]).run().code(0);
    let stderr = out.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in ["60/10/6/120000", "2 min", lib.to_str().unwrap()] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    let out = env.kawrap().lib(&lib).args(["-q", "true"]).run().code(0);
    assert_eq!(out.stderr(), "");
}

#[test]
fn with_the_real_shim_the_kernel_sees_the_profile() {
    let Some(shim) = real_shim() else {
        skip_unless(
            false,
            "libkawrap.so not built in this target directory (cargo build --release -p kawrap-shim)",
        );
        return;
    };
    let python =
        std::process::Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success());
    if !skip_unless(python, "python3 is needed to open a socket and read its options back") {
        return;
    }
    let env = TestEnv::new();
    // A loopback connection, then what getsockopt says about the client side.
    let program = "import socket\n\
        l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
        c = socket.create_connection(l.getsockname())\n\
        print(c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),\n\
              c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),\n\
              c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),\n\
              c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),\n\
              c.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))\n";
    let out = env
        .kawrap()
        .lib(&shim)
        .args(["--profile", "firewall", "--user-timeout", "7s", "python3", "-c", program])
        .run()
        .code(0);
    assert_eq!(out.stdout(), "1 60 10 6 7000\n", "stderr: {}", out.stderr());
    assert_eq!(out.stderr(), "", "the loader took the shim without complaint");

    let out = env.kawrap().lib(&shim).args(["sh", "-c", "exit 7"]).run().code(7);
    assert_eq!(out.stderr(), "");
}

#[test]
fn a_setuid_program_gets_a_warning_unless_quiet() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    // A real executable: the kernel ignores setuid on `#!` scripts.
    let program = env.root().join("bin/suid");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::copy("/bin/true", &program).unwrap();
    // Owned by another user (nobody), as setuid programs that matter are.
    let owned = std::os::unix::fs::chown(&program, Some(65534), None).is_ok();
    if !skip_unless(owned, "changing a file's owner needs root") {
        return;
    }
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let lib = env.fake_lib();
    env.kawrap()
        .lib(&lib)
        .args(["--dry-run".as_ref(), program.as_os_str()])
        .run()
        .code(0)
        .stderr_contains("is setuid: the loader ignores LD_PRELOAD");
    let out =
        env.kawrap().lib(&lib).args(["-q".as_ref(), "--dry-run".as_ref(), program.as_os_str()]).run().code(0);
    assert_eq!(out.stderr(), "");
}
