//! `kawrap env`, `check`, `attach` and user-defined profiles, as a user runs
//! them: the real binary, a temporary XDG_CONFIG_HOME, real sockets of this
//! test process read back by the kernel.
mod testenv;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use testenv::TestEnv;

const BACKUP: &str = "\
# profiles for this machine
[profiles.backup]
keepalive = \"120/20/6/auto\"
description = \"nightly backups over the VPN\"

[profiles.vpn]
keepalive = \"45/15/4\"
";

/// A TestEnv whose XDG_CONFIG_HOME holds `profiles` as kawrap/profiles.toml.
fn with_profiles(profiles: &str) -> (TestEnv, String) {
    let env = TestEnv::new();
    env.write_file("config/kawrap/profiles.toml", profiles, 0o644);
    let config = env.root().join("config").to_string_lossy().into_owned();
    (env, config)
}

// ---- user-defined profiles ----

#[test]
fn profiles_lists_user_profiles_with_their_file() {
    let (env, config) = with_profiles(BACKUP);
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run().code(0);
    let stdout = out.stdout();
    let file = format!("{config}/kawrap/profiles.toml");
    let backup = stdout.lines().find(|l| l.starts_with("backup ")).unwrap_or_else(|| panic!("{stdout}"));
    let words: Vec<&str> = backup.split_whitespace().collect();
    assert_eq!(words[1], "120/20/6/240000", "{backup}");
    assert!(backup.contains("nightly backups over the VPN") && backup.contains(&file), "{backup}");
    assert!(stdout.lines().any(|l| l.starts_with("vpn ") && l.contains("45/15/4")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("recommended ")), "{stdout}");

    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles", "--json"]).run().code(0);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let list = list.as_array().unwrap();
    let backup = list.iter().find(|p| p["name"] == "backup").unwrap();
    assert_eq!(backup["idle_secs"], 120);
    assert_eq!(backup["user_timeout_ms"], 240000);
    assert_eq!(backup["source"], file.as_str());
    assert_eq!(list.iter().find(|p| p["name"] == "ssh").unwrap()["source"], "built-in");
}

#[test]
fn a_user_name_becomes_numbers_for_the_launcher_and_env() {
    let (env, config) = with_profiles(BACKUP);
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "Backup"])
        .run()
        .code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("120/20/6/240000"));

    let out = env
        .kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .args(["env", "--profile", "vpn"])
        .lib(&lib)
        .run()
        .code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("45/15/4"));
}

#[test]
fn a_bad_profile_file_says_file_and_line() {
    let (env, config) = with_profiles(
        "[profiles.backup]\ndescription = \"x\"\n\n[profiles.nightly]\nkeepalive = \"120/20/600\"\n",
    );
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "nightly"])
        .run()
        .code(125);
    let file = format!("{config}/kawrap/profiles.toml");
    let first = out.stderr().lines().next().unwrap_or_default().to_owned();
    assert!(first.starts_with(&format!("kawrap: {file}:")), "{first}");

    let (env, config) = with_profiles("[profiles.nightly]\nkeepalive = \"120/20/600\"\n");
    env.kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "nightly"])
        .run()
        .code(125)
        .stderr_starts_with(&[&format!(
            "kawrap: {config}/kawrap/profiles.toml:2: profile \"nightly\": keepalive profile \"120/20/600\": \
             count 600 is out of range 1..=127"
        )]);
    // Built-in names and numbers never read the files, so a broken file does not stop them.
    env.kawrap().env("XDG_CONFIG_HOME", &config).lib(&lib).dry_run(&["--profile", "firewall"]).run().code(0);
}

#[test]
fn an_unknown_name_points_to_the_profile_file() {
    let env = TestEnv::new();
    let config = env.root().join("empty-config");
    let lib = env.fake_lib();
    env.kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "nightly"])
        .run()
        .code(125)
        .stderr_contains("kawrap/profiles.toml as [profiles.NAME]");
}

// ---- kawrap env ----

#[test]
fn env_prepends_the_library_once_and_writes_numbers() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    let existing = format!("/opt/other.so:{}", lib.display());
    let out = env
        .kawrap()
        .env("LD_PRELOAD", &existing)
        .args(["env", "--profile", "firewall", "--rule", ":3306=ssh"])
        .lib(&lib)
        .run()
        .code(0);
    assert_eq!(out.exported("LD_PRELOAD"), Some(format!("{}:/opt/other.so", lib.display())));
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("60/10/6"));
    assert_eq!(out.exported("KAWRAP_RULES").as_deref(), Some(":3306=60/60/5"));
    assert_eq!(out.exported("KAWRAP_POLICY").as_deref(), Some("respect"));
    assert!(out.stdout().contains("unset KAWRAP_DISABLE"), "{}", out.stdout());

    let out = env.kawrap().args(["env", "--shell", "fish", "-p", "ssh"]).lib(&lib).run().code(0);
    assert!(out.stdout().contains("set -gx KAWRAP_PROFILE '60/60/5';\n"), "{}", out.stdout());
}

#[test]
fn env_unset_keeps_other_preloads() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .env("LD_PRELOAD", format!("{}:/opt/other.so", lib.display()))
        .args(["env", "--unset"])
        .lib(&lib)
        .run()
        .code(0);
    assert_eq!(out.exported("LD_PRELOAD").as_deref(), Some("/opt/other.so"));
    for var in ["KAWRAP_PROFILE", "KAWRAP_RULES", "KAWRAP_POLICY", "KAWRAP_LOG", "KAWRAP_DISABLE"] {
        assert!(out.stdout().contains(&format!("unset {var}\n")), "{var}: {}", out.stdout());
    }
    let out = env.kawrap().env("LD_PRELOAD", &lib).args(["env", "--unset"]).run().code(0);
    assert!(out.stdout().starts_with("unset LD_PRELOAD\n"), "{}", out.stdout());
    // Settings make no sense with --unset.
    env.kawrap().args(["env", "--unset", "--profile", "ssh"]).run().code(125);
    env.kawrap()
        .args(["env", "--unset", "--keep-under", "240s"])
        .run()
        .code(125)
        .stderr_contains("'--unset' cannot be used with '--keep-under <TIMEOUT>'");
}

#[test]
fn env_systemd_prints_and_writes_a_drop_in() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    let out = env
        .kawrap()
        .args(["env", "--systemd", "-p", "recommended", "--unit", "backup"])
        .lib(&lib)
        .run()
        .code(0);
    let text = out.stdout();
    assert!(text.contains("/etc/systemd/system/backup.service.d/50-kawrap.conf"), "{text}");
    assert!(text.contains("#   systemctl daemon-reload\n"), "{text}");
    assert!(text.contains("REPLACES"), "{text}");
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body[0], "[Service]");
    assert_eq!(body[1], format!("Environment=\"LD_PRELOAD={}\"", lib.display()));
    assert_eq!(body[2], "Environment=\"KAWRAP_PROFILE=300/30/5\"");

    let units = env.root().join("units");
    let write = |profile: &str, force: bool| {
        let mut run = env
            .kawrap()
            .args(["env", "--systemd", "-p", profile, "--unit", "backup.service", "--write", "--unit-dir"])
            .args([&units])
            .lib(&lib);
        if force {
            run = run.args(["--force"]);
        }
        run.run()
    };
    write("ssh", false).code(0).stderr_contains("systemctl daemon-reload");
    let path = units.join("backup.service.d/50-kawrap.conf");
    assert!(std::fs::read_to_string(&path).unwrap().contains("KAWRAP_PROFILE=60/60/5"));
    write("ssh", false).code(0);
    write("firewall", false).code(125).stderr_contains("exists with different content");
    assert!(std::fs::read_to_string(&path).unwrap().contains("KAWRAP_PROFILE=60/60/5"));
    write("firewall", true).code(0);
    assert!(std::fs::read_to_string(&path).unwrap().contains("KAWRAP_PROFILE=60/10/6"));
}

// ---- kawrap check / attach on this test process's own sockets ----

fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn check_json_reports_this_process_sockets() {
    // Both ends: --port selects the accepted socket too.
    let (client, server) = connected_pair();
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(3))
        .with_interval(Duration::from_secs(2))
        .with_retries(1);
    SockRef::from(&client).set_tcp_keepalive(&keepalive).unwrap();
    SockRef::from(&server).set_tcp_keepalive(&keepalive).unwrap();
    let (bare, _bare_server) = connected_pair();

    let env = TestEnv::new();
    let port = client.local_addr().unwrap().port().to_string();
    let out = env
        .kawrap()
        .args([
            "check",
            "--pid",
            &std::process::id().to_string(),
            "--port",
            &port,
            "--json",
            "--expect",
            "3/2/1",
        ])
        .run()
        .code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["expect"]["passed"], true, "{report:#}");
    let sockets = report["sockets"].as_array().unwrap();
    assert_eq!(report["expect"]["checked"], 2, "{report:#}");
    let ours = sockets.iter().find(|s| s["local"] == client.local_addr().unwrap().to_string()).unwrap();
    assert_eq!(ours["owners"][0]["fd"], client.as_raw_fd());
    assert_eq!(ours["timer"]["kind"], "keepalive");
    assert!(ours["timer"]["remaining_ms"].as_u64().unwrap() <= 3000, "{ours:#}");
    // The options themselves when kawrap may copy the socket from us (no Yama restriction).
    if !ours["options"].is_null() {
        assert_eq!(ours["options"]["idle_secs"], 3);
        assert_eq!(ours["options"]["count"], 1);
    }

    let bare_port = bare.local_addr().unwrap().port().to_string();
    let out = env
        .kawrap()
        .args(["check", "--pid", &std::process::id().to_string(), "--port", &bare_port, "--expect", "3/2/1"])
        .run()
        .code(1);
    assert!(out.stdout().contains(&format!("127.0.0.1:{bare_port} -> ")), "{}", out.stdout());
}

#[test]
fn check_and_attach_reject_bad_input() {
    let env = TestEnv::new();
    env.kawrap()
        .args(["check", "--dst", "10.0.0.0/40"])
        .run()
        .code(125)
        .stderr_contains("out of range 0..=32");
    env.kawrap().args(["check", "--expect", "7/7"]).run().code(125).stderr_contains("count is missing");
    env.kawrap()
        .args(["check", "--pid", "4194305"])
        .run()
        .code(125)
        .stderr_contains("no such process: 4194305");
    env.kawrap().args(["attach", "4194305"]).run().code(125).stderr_contains("no such process: 4194305");
    env.kawrap().args(["attach"]).run().code(125);
}

#[test]
fn check_help_tells_what_ss_shows() {
    let env = TestEnv::new();
    let out = env.kawrap().args(["check", "--help"]).run().code(0);
    let help = out.stdout().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "`ss -o` shows the same timer as `timer:(keepalive,4min59sec,0)`: that is the 'ka' you look for"
        ),
        "{help}"
    );
    let out = env.kawrap().args(["attach", "--help"]).run().code(0);
    assert!(out.stdout().contains("pidfd_getfd(2)"), "{}", out.stdout());
}
