//! The operator's language, as a user types it: `--keep-under` and the
//! middlebox names for the launcher, `kawrap env`, `kawrap profiles` and
//! profiles.toml; `kawrap check --keep-under` and `--format prometheus
//! --output` for what needs no privileges. (Real sockets judged as root,
//! and node_exporter reading the metrics: integration/tests/middlebox.rs.)
mod testenv;

use std::os::unix::fs::PermissionsExt;

use testenv::TestEnv;

fn exported_profile(env: &TestEnv, args: &[&str]) -> Option<String> {
    let lib = env.fake_lib();
    env.kawrap().lib(&lib).dry_run(args).run().code(0).exported("KAWRAP_PROFILE")
}

#[test]
fn keep_under_and_middlebox_names_become_the_numbers_of_the_formula() {
    let env = TestEnv::new();
    for args in [
        &["--keep-under", "240s"][..],
        &["--keep-under", "4m"],
        &["--keep-under", "240"],
        &["--keep-under", "azure-lb"],
        &["--profile", "under:240s"],
        &["--profile", "Azure-NAT"],
    ] {
        assert_eq!(exported_profile(&env, args).as_deref(), Some("180/24/5"), "{args:?}");
    }
    assert_eq!(exported_profile(&env, &["--keep-under", "aws-nlb"]).as_deref(), Some("262/30/5"));
    assert_eq!(exported_profile(&env, &["--keep-under", "20min"]).as_deref(), Some("300/30/5"));
    // The user timeout and rules combine with it as with any profile.
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .lib(&lib)
        .dry_run(&["--keep-under", "240s", "--user-timeout", "auto", "--rule", ":3306=under:350s"])
        .run()
        .code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("180/24/5/300000"));
    assert_eq!(out.exported("KAWRAP_RULES").as_deref(), Some(":3306=262/30/5"));
    // kawrap env and kawrap bpf attach share the option.
    let out = env.kawrap().args(["env", "--keep-under", "gcp-nat"]).lib(&lib).run().code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("300/30/5"));
}

#[test]
fn bad_timeouts_name_the_value_and_the_accepted_range() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    let out = env.kawrap().lib(&lib).dry_run(&["--keep-under", "5s"]).run().code(125);
    out.stderr_starts_with(&[
        "kawrap: keep-under \"5s\": idle timeout 5s is out of range 10..=604800 s (10 s to 7 days)",
        "  accepted: the box's idle timeout from 10 to 604800 s, as a duration (240s, 4m, 20min, 1h; a plain \
         number is seconds), or a middlebox name: aws-nlb (350 s), aws-nat (350 s), azure-lb (240 s), azure-nat \
         (240 s), gcp-firewall (600 s), gcp-nat (1200 s), ipvs (900 s)",
    ]);
    env.kawrap()
        .lib(&lib)
        .dry_run(&["--keep-under", "8d"])
        .run()
        .code(125)
        .stderr_contains("is neither a duration");
    env.kawrap()
        .lib(&lib)
        .dry_run(&["--profile", "under:700000s"])
        .run()
        .code(125)
        .stderr_contains("idle timeout 700000s is out of range 10..=604800 s");
    // A choice between two ways of giving the profile, not both.
    env.kawrap()
        .lib(&lib)
        .dry_run(&["--keep-under", "240s", "--profile", "ssh"])
        .run()
        .code(125)
        .stderr_contains("cannot be used with");
    env.kawrap()
        .args(["check", "--keep-under", "soon"])
        .run()
        .code(125)
        .stderr_contains("keep-under \"soon\"");
}

#[test]
fn a_layer7_proxy_is_refused_with_the_reason_everywhere() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    for args in [&["--keep-under", "aws-alb"][..], &["--profile", "aws-alb"], &["--profile", "under:AWS-ALB"]]
    {
        let out = env.kawrap().lib(&lib).dry_run(args).run().code(125);
        let stderr = out.stderr();
        assert!(
            stderr.contains("layer-7 proxy")
                && stderr.contains("counts only data")
                && stderr.contains("carry none"),
            "{args:?}: {stderr}"
        );
    }
    env.kawrap().args(["check", "--keep-under", "aws-alb"]).run().code(125).stderr_contains("layer-7 proxy");
}

#[test]
fn profiles_lists_each_middlebox_with_the_timeout_it_is_for() {
    let env = TestEnv::new();
    let config = env.root().join("no-config");
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run().code(0);
    let stdout = out.stdout();
    for (name, numbers, timeout) in [
        ("aws-nlb", "262/30/5", "350 s"),
        ("aws-nat", "262/30/5", "350 s"),
        ("azure-lb", "180/24/5", "240 s"),
        ("azure-nat", "180/24/5", "240 s"),
        ("gcp-firewall", "300/30/5", "600 s"),
        ("gcp-nat", "300/30/5", "1200 s"),
        ("ipvs", "300/30/5", "900 s"),
    ] {
        let line =
            stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(line.split_whitespace().nth(1), Some(numbers), "{line}");
        assert!(line.ends_with(&format!("idle timeout {timeout}")), "{line}");
    }
    // The general profiles keep their values.
    let recommended = stdout.lines().find(|l| l.starts_with("recommended ")).unwrap();
    assert_eq!(recommended.split_whitespace().nth(1), Some("300/30/5"));
    assert!(!stdout.contains("aws-alb"), "a layer-7 proxy is no profile:\n{stdout}");
}

#[test]
fn a_profiles_toml_entry_may_give_a_middlebox_timeout() {
    let env = TestEnv::new();
    env.write_file(
        "config/kawrap/profiles.toml",
        "[profiles.office-nat]\nkeep-under = \"4m\"\ndescription = \"the office's NAT\"\n",
        0o644,
    );
    let config = env.root().join("config");
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "office-nat"])
        .run()
        .code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("180/24/5"));
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles", "--json"]).run().code(0);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let entry = list.as_array().unwrap().iter().find(|p| p["name"] == "office-nat").unwrap();
    assert_eq!((entry["idle_secs"].as_u64(), entry["idle_timeout_secs"].as_u64()), (Some(180), Some(240)));
    assert_eq!(entry["purpose"], "the office's NAT");
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run().code(0);
    let line = out.stdout().lines().find(|l| l.starts_with("office-nat ")).map(str::to_owned).unwrap();
    assert!(line.contains("the office's NAT: idle timeout 240 s ("), "{line}");
}

#[test]
fn help_teaches_the_formula_and_the_layer7_caveat() {
    let env = TestEnv::new();
    let help = env.kawrap().args(["--help"]).run().code(0).stdout();
    for needle in
        ["--keep-under <TIMEOUT>", "IDLE = min(T − ⌈T/4⌉, 300)", "layer-7", "azure-lb", "idle timeout 240 s"]
    {
        assert!(help.contains(needle), "{needle:?} not in kawrap --help");
    }
    let help = env.kawrap().args(["check", "--help"]).run().code(0).stdout();
    for needle in ["--keep-under <TIMEOUT>", "--format <FORMAT>", "prometheus", "--output <FILE>", "layer-7"]
    {
        assert!(help.contains(needle), "{needle:?} not in kawrap check --help");
    }
}

#[test]
fn check_writes_prometheus_text_to_a_file_atomically_with_mode_0644() {
    let env = TestEnv::new();
    let dir = env.root().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("kawrap.prom");
    std::fs::write(&file, "old contents\n").unwrap();
    // Nothing listens there: no socket is selected, which is no failure
    // for --keep-under (none would be dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    // Under umask 077 the file must still be readable by node_exporter's user.
    let out = env
        .run_binary(std::path::Path::new("sh"))
        .args(["-c", "umask 077 && exec \"$0\" \"$@\""])
        .args([testenv::kawrap_bin().as_os_str()])
        .args(["check", "--port", &port, "--keep-under", "240s", "--format", "prometheus", "--output"])
        .args([&file])
        .run()
        .code(0);
    assert_eq!(out.stdout(), "", "with --output nothing goes to stdout");
    let text = std::fs::read_to_string(&file).unwrap();
    for line in [
        "# TYPE kawrap_tcp_established_sockets gauge",
        "kawrap_tcp_established_sockets{keepalive=\"on\"} 0",
        "kawrap_tcp_established_sockets{keepalive=\"off\"} 0",
        "kawrap_keep_under_sockets{idle_timeout_seconds=\"240\",verdict=\"dropped\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["kawrap.prom"], "no temporary file is left behind");
    // A directory that does not exist is kawrap's own error, naming it.
    env.kawrap()
        .args(["check", "--port", &port, "--format", "prometheus", "--output"])
        .args([&env.root().join("missing/kawrap.prom")])
        .run()
        .code(125)
        .stderr_contains("cannot write ");
}
