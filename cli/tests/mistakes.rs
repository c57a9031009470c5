//! Mistakes a newcomer makes, and what kawrap says about them: a `--rule`
//! that does not mean what it seems to, a subcommand's name mistyped.
mod testenv;

use testenv::TestEnv;

/// `kawrap --lib <fake lib> --dry-run ARGS... true`.
fn dry_run(env: &TestEnv, args: &[&str]) -> testenv::Outcome {
    env.kawrap().lib(&env.fake_lib()).dry_run(args).run()
}

// ---- --rule ----

#[test]
fn an_ipv6_address_and_port_without_brackets_is_refused_with_the_bracketed_spelling() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--rule", "::1:22=ssh"]).code(125);
    assert!(out.stderr().contains("write [::1]:22 for port 22 of ::1"), "{}", out.stderr());
    assert!(out.stdout().is_empty(), "{}", out.stdout());
}

#[test]
fn host_bits_and_dead_rules_are_warned_about_and_the_run_goes_on() {
    let env = TestEnv::new();
    let out = dry_run(&env, &["--rule", "10.1.2.3/8=ssh", "--rule", "10.0.0.0/8:5432=firewall"]).code(0);
    assert_eq!(out.exported("KAWRAP_RULES").as_deref(), Some("10.0.0.0/8=60/60/5,10.0.0.0/8:5432=60/10/6"));
    let stderr = out.stderr();
    assert!(
        stderr.contains(
            "kawrap: warning: rule \"10.1.2.3/8=ssh\": 10.1.2.3/8 has bits set past the prefix: it covers 10.0.0.0/8"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kawrap: warning: rule 2 \"10.0.0.0/8:5432=firewall\" never applies: rule 1"),
        "{stderr}"
    );
    // -q silences warnings, not errors.
    let out = dry_run(&env, &["-q", "--rule", "10.1.2.3/8=ssh"]).code(0);
    assert_eq!(out.stderr(), "");
    // `kawrap env` warns too, on stderr: what `eval` reads stays clean.
    let out = env.kawrap().args(["env", "--rule", "10.1.2.3/8=ssh"]).lib(&env.fake_lib()).run().code(0);
    assert!(out.stderr().contains("has bits set past the prefix"), "{}", out.stderr());
    assert!(!out.stdout().contains("warning"), "{}", out.stdout());
}

// ---- a subcommand's name mistyped ----

#[test]
fn a_mistyped_subcommand_is_suggested_instead_of_the_path() {
    let env = TestEnv::new();
    let empty = env.root().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (typed, meant) in [("profile", "profiles"), ("chek", "check"), ("atach", "attach"), ("evn", "env")] {
        let out = env.kawrap().env("PATH", &empty).lib(&env.fake_lib()).args([typed]).run().code(127);
        let stderr = out.stderr();
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            [
                format!("kawrap: {typed}: command not found"),
                format!("  did you mean `kawrap {meant}`? (there is no program `{typed}` in PATH either)"),
            ],
            "{stderr}"
        );
    }
    // Nothing like a subcommand: where kawrap looked, as before.
    env.kawrap()
        .env("PATH", &empty)
        .lib(&env.fake_lib())
        .args(["psqll"])
        .run()
        .code(127)
        .stderr_contains("looked in PATH=");
}

#[test]
fn a_program_named_like_a_typo_still_runs() {
    let env = TestEnv::new();
    env.write_file("bin/chek", "#!/bin/sh\nexit 4\n", 0o755);
    let lib = testenv::harmless_preload();
    env.kawrap().env("PATH", env.root().join("bin")).lib(&lib).args(["chek"]).run().code(4);
}
