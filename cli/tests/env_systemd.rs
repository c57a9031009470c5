//! `kawrap env` for shells and for services as a newcomer uses it: every
//! shell name accepted, `--shell` refused where it means nothing, and the
//! systemd drop-in: advice that fits the unit, a preload the unit already
//! has kept, and `--write` safe as root in a directory someone else owns.
mod testenv;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use testenv::{TestEnv, have, is_root, kawrap_bin, skip_unless};

/// The `[Service]` body of a drop-in: its lines without the comments.
fn body(text: &str) -> Vec<String> {
    text.lines().filter(|line| !line.starts_with('#')).map(str::to_owned).collect()
}

// ---- --shell ----

#[test]
fn every_shell_name_is_accepted() {
    let env = TestEnv::new();
    let lib = env.fake_lib();
    for shell in ["sh", "bash", "zsh"] {
        let out = env.kawrap().args(["env", "--shell", shell, "-p", "ssh"]).lib(&lib).run().code(0);
        assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("60/60/5"), "{shell}");
    }
    let out = env.kawrap().args(["env", "--shell", "fish", "-p", "ssh"]).lib(&lib).run().code(0);
    assert!(out.stdout().contains("set -gx KAWRAP_PROFILE '60/60/5';"), "{}", out.stdout());
    let out = env.kawrap().args(["env", "--shell", "csh"]).lib(&lib).run().code(125);
    assert!(out.stderr().contains("csh") && out.stderr().contains("bash"), "{}", out.stderr());
}

#[test]
fn shell_with_systemd_is_a_usage_error() {
    let env = TestEnv::new();
    let out = env.kawrap().args(["env", "--systemd", "--shell", "fish"]).lib(&env.fake_lib()).run().code(125);
    assert!(out.stderr().contains("--shell") && out.stderr().contains("--systemd"), "{}", out.stderr());
    assert!(out.stdout().is_empty());
}

// ---- the drop-in's advice and the unit's own preload ----

/// A unit directory with `unit` as backup.service (and `drop_ins` in
/// backup.service.d/), and the drop-in `kawrap env --systemd … --write`
/// writes there, with what kawrap said.
struct Service {
    env: TestEnv,
    dir: PathBuf,
}

impl Service {
    fn new(unit: &str, drop_ins: &[(&str, &str)]) -> Service {
        let env = TestEnv::new();
        env.write_file("units/backup.service", unit, 0o644);
        for (name, text) in drop_ins {
            env.write_file(&format!("units/backup.service.d/{name}"), text, 0o644);
        }
        let dir = env.root().join("units");
        Service { env, dir }
    }

    /// `kawrap env --systemd -p 300/30/5 --unit backup --unit-dir DIR ARGS…`.
    fn kawrap(&self, args: &[&str]) -> testenv::Outcome {
        self.env
            .kawrap()
            .args(["env", "--systemd", "-p", "300/30/5", "--unit", "backup", "--unit-dir"])
            .args([&self.dir])
            .args(args)
            .lib(&self.env.fake_lib())
            .run()
    }

    fn drop_in(&self) -> String {
        fs::read_to_string(self.dir.join("backup.service.d/50-kawrap.conf")).expect("the drop-in")
    }
}

const ONESHOT: &str = "[Unit]\nDescription=nightly dump\n[Service]\nType=oneshot\n\
                       ExecStart=/bin/sh -c 'pg_dump app > /var/backups/app.sql'\n";

#[test]
fn a_oneshot_service_is_not_told_to_restart() {
    let service = Service::new(ONESHOT, &[]);
    let out = service.kawrap(&["--write"]).code(0);
    for text in [out.stderr(), service.drop_in()] {
        assert!(text.contains("systemctl daemon-reload"), "{text}");
        assert!(!text.contains("systemctl restart"), "a oneshot unit is told to restart:\n{text}");
        assert!(text.contains("next run"), "{text}");
    }
    // A long-running service is, when it suits the person.
    let service = Service::new("[Service]\nExecStart=/usr/bin/sleep infinity\n", &[]);
    let out = service.kawrap(&["--write"]).code(0);
    assert!(out.stderr().contains("systemctl restart backup.service"), "{}", out.stderr());
    // Printing without a unit to read says when each kind takes it.
    let out = service.env.kawrap().args(["env", "--systemd"]).lib(&service.env.fake_lib()).run().code(0);
    let text = out.stdout();
    assert!(text.contains("daemon-reload") && text.contains("Type=oneshot"), "{text}");
}

#[test]
fn the_unit_own_ld_preload_is_kept_in_the_drop_in() {
    let jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    let service = Service::new(
        &format!(
            "[Service]\nType=simple\nEnvironment=\"LD_PRELOAD={jemalloc}\" MALLOC_CONF=narenas:2\nExecStart=/bin/true\n"
        ),
        &[],
    );
    let out = service.kawrap(&["--write"]).code(0);
    let lib = service.env.fake_lib();
    let body = body(&service.drop_in());
    assert_eq!(body[1], format!("Environment=\"LD_PRELOAD={}:{jemalloc}\"", lib.display()), "{body:?}");
    let stderr = out.stderr();
    assert!(stderr.contains(jemalloc) && stderr.contains("backup.service:3"), "not said:\n{stderr}");

    // A drop-in sorting before kawrap's that sets it: kept the same way;
    // one sorting after it, which would replace kawrap's: named.
    let service = Service::new(
        "[Service]\nExecStart=/bin/true\n",
        &[
            ("10-jemalloc.conf", &format!("[Service]\nEnvironment=LD_PRELOAD={jemalloc}\n")),
            ("override.conf", "[Service]\nEnvironment=LD_PRELOAD=/opt/trace.so\n"),
        ],
    );
    let out = service.kawrap(&["--write"]).code(0);
    let lib = service.env.fake_lib();
    let text = service.drop_in();
    assert!(text.contains(&format!("LD_PRELOAD={}:{jemalloc}\"", lib.display())), "{text}");
    let stderr = out.stderr();
    assert!(stderr.contains("override.conf:2") && stderr.contains("REPLACES"), "{stderr}");
    assert!(stderr.contains(&format!("LD_PRELOAD={}:/opt/trace.so", lib.display())), "{stderr}");
}

#[test]
fn the_advice_and_the_kept_preload_pass_systemd_analyze_verify() {
    if !skip_unless(have("systemd-analyze"), "needs systemd-analyze (package systemd)") {
        return;
    }
    let service = Service::new(
        "[Unit]\nDescription=nightly dump\n[Service]\nType=oneshot\n\
         Environment=\"LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libc.so.6\"\nExecStart=/bin/true\n",
        &[],
    );
    service.kawrap(&["--write"]).code(0);
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(service.dir.join("backup.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", service.dir.display()))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("50-kawrap.conf"), "systemd complains about the drop-in:\n{stderr}");
}

// ---- --write as root, in a directory another user owns ----

/// Mode bits of a path, not following a link.
fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn write_never_follows_or_installs_a_link_and_sets_its_own_modes() {
    if !skip_unless(is_root() && have("unshare"), "needs root and unshare (util-linux)") {
        return;
    }
    let env = TestEnv::new();
    let units = env.root().join("units");
    let drop_ins = units.join("backup.service.d");
    fs::create_dir_all(&drop_ins).unwrap();
    // nobody owns the unit directory and plants links at every name the
    // temporary file could have had: kawrap runs as PID 1 of a new PID
    // namespace, so its PID is known.
    let victim = env.write_file("victim", "root's own\n", 0o600);
    for pid in 1..=64 {
        symlink(&victim, drop_ins.join(format!(".50-kawrap.conf.kawrap-{pid}"))).unwrap();
    }
    for path in [&units, &drop_ins] {
        std::os::unix::fs::lchown(path, Some(65534), Some(65534)).unwrap();
    }
    let write = |umask: &str, extra: &[&str]| {
        let script = format!("umask {umask}; exec \"$@\"");
        let output = Command::new("unshare")
            .args(["--pid", "--fork", "sh", "-c", &script, "sh"])
            .arg(kawrap_bin())
            .args(["env", "--systemd", "-p", "ssh", "--unit", "backup", "--write", "--unit-dir"])
            .arg(&units)
            .args(["--lib"])
            .arg(env.fake_lib())
            .args(extra)
            .output()
            .expect("run kawrap");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = write("000", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's own\n", "the link was followed");
    let installed = drop_ins.join("50-kawrap.conf");
    assert!(fs::symlink_metadata(&installed).unwrap().file_type().is_file());
    assert_eq!(mode(&installed), 0o644, "the drop-in's mode follows the umask");
    assert!(fs::read_to_string(&installed).unwrap().contains("KAWRAP_PROFILE=60/60/5"));

    // A link at the drop-in's own name is not written through, nor replaced.
    fs::remove_file(&installed).unwrap();
    symlink(&victim, &installed).unwrap();
    let (code, stderr) = write("022", &["--force"]);
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's own\n");
    assert!(fs::symlink_metadata(&installed).unwrap().file_type().is_symlink());

    // The drop-in directory as a link to a directory of root's: refused.
    let elsewhere = env.root().join("root-only");
    fs::create_dir(&elsewhere).unwrap();
    let other_units = env.root().join("other-units");
    fs::create_dir(&other_units).unwrap();
    symlink(&elsewhere, other_units.join("backup.service.d")).unwrap();
    let output = env
        .kawrap()
        .args(["env", "--systemd", "--unit", "backup", "--write", "--unit-dir"])
        .args([&other_units])
        .lib(&env.fake_lib())
        .run()
        .code(125);
    assert!(output.stderr().contains("symbolic link"), "{}", output.stderr());
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A new directory gets 0755 whatever the umask.
    fs::remove_file(&installed).unwrap();
    fs::remove_dir_all(&drop_ins).unwrap();
    let (code, stderr) = write("000", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(mode(&drop_ins), 0o755);
    assert_eq!(fs::metadata(&drop_ins).unwrap().uid(), 0);
}

#[test]
fn write_refuses_a_unit_directory_others_may_write() {
    let env = TestEnv::new();
    let units = env.root().join("units");
    fs::create_dir(&units).unwrap();
    fs::set_permissions(&units, fs::Permissions::from_mode(0o777)).unwrap();
    let out = env
        .kawrap()
        .args(["env", "--systemd", "--unit", "backup", "--write", "--unit-dir"])
        .args([&units])
        .lib(&env.fake_lib())
        .run()
        .code(125);
    assert!(
        out.stderr().contains(&format!(
            "{}: writable by others than its owner and root (mode 0777)",
            units.display()
        )),
        "{}",
        out.stderr()
    );
    assert_eq!(fs::read_dir(&units).unwrap().count(), 0);
}
