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
