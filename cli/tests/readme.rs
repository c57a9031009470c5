//! The README's examples for newcomers, run: the service example is what
//! `kawrap env --systemd --write` writes and says for that unit, and it
//! passes `systemd-analyze verify`; the check of a unit kept outside /etc
//! works as written; the metrics service and timer pass `systemd-analyze
//! verify`; the synopsis and `--help` say what they should.
mod testenv;

use std::fs;
use std::path::Path;
use std::process::Command;

use testenv::{TestEnv, have, skip_unless};

/// The README's fenced code blocks: (language, lines).
fn blocks() -> Vec<(String, Vec<String>)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = fs::read_to_string(readme).expect("README.md");
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.to_owned(), Vec::new())),
            (Some(block), Some(_)) => blocks.push(block),
            (Some((language, mut lines)), None) => {
                lines.push(line.to_owned());
                open = Some((language, lines));
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The block whose first line is `first`.
fn block(first: &str) -> Vec<String> {
    blocks()
        .into_iter()
        .map(|(_, lines)| lines)
        .find(|lines| lines.first().is_some_and(|line| line == first))
        .unwrap_or_else(|| panic!("no README block starts with {first:?}"))
}

const INSTALLED_LIB: &str = "/usr/local/lib/kawrap/libkawrap.so";
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// `systemd-analyze verify UNIT` with the unit's directory searched first;
/// its complaints.
fn verify(unit: &Path) -> String {
    let dir = unit.parent().unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("run systemd-analyze");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_synopsis_has_quiet_and_help_points_to_bpf() {
    let usage = block(
        "kawrap [--profile P | --keep-under T] [--rule DEST=P]… [--policy respect|force] [--user-timeout UT] \\",
    );
    assert!(usage[1].contains("[-v|-q]"), "{usage:?}");
    let env = TestEnv::new();
    let help = env.kawrap().args(["--help"]).run().code(0).stdout();
    let reach =
        help.split("What kawrap cannot reach").nth(1).expect("the section").split("\n\n").next().unwrap();
    let reach = reach.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(reach.contains("`kawrap --bpf [OPTIONS] -- COMMAND`"), "{reach}");
    assert!(reach.contains("`kawrap bpf attach --cgroup DIR`"), "{reach}");
}

#[test]
fn the_service_example_is_what_kawrap_writes_and_systemd_accepts() {
    let env = TestEnv::new();
    let unit = block("# /etc/systemd/system/backup.service");
    let console = block("$ sudo kawrap env --systemd --profile firewall --unit backup --write");
    let drop_in =
        block("# kawrap: TCP keepalive profile 60/10/6 for backup.service: a dead peer is noticed in 2 min.");
    let units = env.root().join("units");
    // Its first line names the file, as `systemctl cat` does: not in the file.
    env.write_file("units/backup.service", &format!("{}\n", unit[1..].join("\n")), 0o644);

    let command = console[0].strip_prefix("$ sudo kawrap ").unwrap();
    let out = env
        .kawrap()
        .args(command.split(' '))
        .args(["--unit-dir".as_ref(), units.as_os_str()])
        .lib(&env.fake_lib())
        .run()
        .code(0);
    // What it says and writes, with this test's paths in the README's places.
    let ours = |text: &str| {
        text.replace(&env.fake_lib().display().to_string(), INSTALLED_LIB)
            .replace(&units.display().to_string(), SYSTEM_UNIT_DIR)
    };
    assert_eq!(ours(&out.stderr()).lines().collect::<Vec<_>>(), console[1..], "kawrap's messages");
    let written = fs::read_to_string(units.join("backup.service.d/50-kawrap.conf")).unwrap();
    assert_eq!(ours(&written).lines().collect::<Vec<_>>(), drop_in, "the drop-in");

    if !skip_unless(have("systemd-analyze"), "needs systemd-analyze (package systemd)") {
        return;
    }
    let complaints = verify(&units.join("backup.service"));
    assert!(
        !complaints.contains("50-kawrap.conf") && !complaints.contains("backup.service:"),
        "{complaints}"
    );
}

#[test]
fn the_check_of_a_unit_outside_etc_works_as_written() {
    if !skip_unless(have("systemd-analyze") && have("sh"), "needs systemd-analyze (package systemd)") {
        return;
    }
    let env = TestEnv::new();
    let commands =
        block("kawrap env --systemd --profile firewall --unit backup --unit-dir /srv/units --write");
    let srv = env.root().join("srv/units");
    env.write_file("srv/units/backup.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n", 0o644);
    let lib = env.fake_lib();
    // A `kawrap` line runs the binary under test, anything else sh; what
    // the command said on stderr.
    let run = |line: &str| {
        let line = line.replace("/srv/units", &srv.display().to_string());
        match line.strip_prefix("kawrap ") {
            Some(args) => {
                env.kawrap().args(args.split(' ')).lib(&lib).run().code(0);
                String::new()
            }
            None => {
                let output = Command::new("sh").args(["-c", &line]).output().expect("run sh");
                String::from_utf8_lossy(&output.stderr).into_owned()
            }
        }
    };
    run(&commands[0]);
    let complaints = run(&commands[1]);
    assert!(!complaints.contains("50-kawrap.conf"), "{complaints}");
    // The same command notices a broken drop-in, so it can fail.
    let drop_in = srv.join("backup.service.d/50-kawrap.conf");
    let text = fs::read_to_string(&drop_in).unwrap();
    fs::write(&drop_in, format!("{text}NoSuchSetting=1\n")).unwrap();
    assert!(run(&commands[1]).contains("50-kawrap.conf"), "a broken drop-in went unnoticed");
}

#[test]
fn the_metrics_service_and_timer_pass_systemd_analyze_verify() {
    if !skip_unless(have("systemd-analyze"), "needs systemd-analyze (package systemd)") {
        return;
    }
    let env = TestEnv::new();
    // systemd checks that ExecStart's program exists: the one under test.
    let service = block("# /etc/systemd/system/kawrap-metrics.service")[1..]
        .join("\n")
        .replace("/usr/local/bin/kawrap", &testenv::kawrap_bin().display().to_string());
    assert!(service.contains("check --format prometheus") && service.contains("--output "), "{service}");
    let timer = block("# /etc/systemd/system/kawrap-metrics.timer")[1..].join("\n");
    let service_file = env.write_file("units/kawrap-metrics.service", &format!("{service}\n"), 0o644);
    let timer_file = env.write_file("units/kawrap-metrics.timer", &format!("{timer}\n"), 0o644);
    for unit in [&service_file, &timer_file] {
        let complaints = verify(unit);
        assert!(!complaints.contains("kawrap-metrics"), "{}: {complaints}", unit.display());
    }
    // The same check notices a broken unit, so it can fail.
    fs::write(&service_file, format!("{service}\nExecStart=relative/kawrap\n")).unwrap();
    assert!(verify(&service_file).contains("kawrap-metrics.service"), "a broken unit went unnoticed");
}
