//! profiles.toml as people get it wrong: names that differ only in case,
//! several bad entries at once, a FIFO in its place, and (for root) a file
//! others may write. The good entries and the built-ins stay usable, and
//! every problem is named by file and line.
mod testenv;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{TestEnv, is_root, skip_unless};

/// A TestEnv whose XDG_CONFIG_HOME holds `profiles` as kawrap/profiles.toml,
/// and that file's path.
fn with_profiles(profiles: &str) -> (TestEnv, String, String) {
    let env = TestEnv::new();
    env.write_file("config/kawrap/profiles.toml", profiles, 0o644);
    let config = env.root().join("config").to_string_lossy().into_owned();
    let file = format!("{config}/kawrap/profiles.toml");
    (env, config, file)
}

#[test]
fn names_differing_only_in_case_are_one_name_and_the_collision_is_an_error() {
    let (env, config, file) = with_profiles(
        "[profiles.backup]\nkeepalive = \"120/20/6\"\n\n[profiles.BACKUP]\nkeepalive = \"60/10/6\"\n\n\
         [profiles.vpn]\nkeepalive = \"45/15/4\"\n",
    );
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run().code(125);
    let stdout = out.stdout();
    // Neither spelling is listed: which one was meant is anybody's guess.
    assert!(!stdout.to_lowercase().lines().any(|l| l.starts_with("backup ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("vpn ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("recommended ")), "{stdout}");
    assert!(
        out.stderr().contains(&format!(
            "{file}:4: profile \"BACKUP\": also defined as \"backup\" at line 1; profile names are \
             case-insensitive, like the built-ins: keep one"
        )),
        "{}",
        out.stderr()
    );
    // Using either spelling is refused with the same reason; the other names still work.
    let lib = env.fake_lib();
    for name in ["backup", "Backup", "BACKUP"] {
        env.kawrap()
            .env("XDG_CONFIG_HOME", &config)
            .lib(&lib)
            .dry_run(&["--profile", name])
            .run()
            .code(125)
            .stderr_contains(&format!("{file}:4: profile \"BACKUP\": also defined"));
    }
    let out =
        env.kawrap().env("XDG_CONFIG_HOME", &config).lib(&lib).dry_run(&["--profile", "vpn"]).run().code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("45/15/4"));
}

#[test]
fn bad_entries_do_not_hide_the_good_ones_and_every_error_is_reported() {
    let (env, config, file) = with_profiles(
        "[profiles.ok]\nkeepalive = \"1/1/1\"\n\
         [profiles.nightly]\nkeepalive = \"120/20/600\"\n\
         [profiles.quoted]\nkeepalive = 120/20/6\n\
         [profiles.extra]\nkeepalive = \"2/2/2\"\nidle = 3\n\
         [profiles.\"a/b\"]\nkeepalive = \"3/3/3\"\n\
         [profiles.vpn]\nkeepalive = \"45/15/4\"\n",
    );
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run().code(125);
    let stdout = out.stdout();
    for listed in ["recommended ", "linux-default ", "ok ", "vpn "] {
        assert!(stdout.lines().any(|l| l.starts_with(listed)), "{listed} missing:\n{stdout}");
    }
    for hidden in ["nightly", "quoted", "extra", "a/b"] {
        assert!(!stdout.contains(hidden), "{hidden} listed:\n{stdout}");
    }
    let stderr = out.stderr();
    for line in [4, 6, 9, 10] {
        assert!(stderr.contains(&format!("{file}:{line}: ")), "no error for line {line}:\n{stderr}");
    }
    assert!(stderr.contains("count 600 is out of range 1..=127"), "{stderr}");
    assert!(stderr.contains("idle"), "{stderr}");
    assert!(stderr.contains("a `/` would read as"), "{stderr}");

    // --json lists the same, and still fails.
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles", "--json"]).run().code(125);
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert!(list.as_array().unwrap().iter().any(|p| p["name"] == "vpn"));

    // A good name runs, with a warning about the rest; a bad one is refused.
    let lib = env.fake_lib();
    let out =
        env.kawrap().env("XDG_CONFIG_HOME", &config).lib(&lib).dry_run(&["--profile", "ok"]).run().code(0);
    assert_eq!(out.exported("KAWRAP_PROFILE").as_deref(), Some("1/1/1"));
    assert!(out.stderr().contains(&format!("kawrap: warning: {file}:4: ")), "{}", out.stderr());
    env.kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "quoted"])
        .run()
        .code(125)
        .stderr_contains(&format!("kawrap: {file}:6: profile \"quoted\": string values must be quoted"));
}

#[test]
fn a_fifo_in_place_of_the_file_is_refused_without_hanging() {
    let env = TestEnv::new();
    let dir = env.root().join("config/kawrap");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("profiles.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if !skip_unless(made, "mkfifo (coreutils) is needed") {
        return;
    }
    let config = env.root().join("config");
    let started = Instant::now();
    let out = env.kawrap().env("XDG_CONFIG_HOME", &config).args(["profiles"]).run();
    assert!(started.elapsed() < Duration::from_secs(5), "kawrap waited on the FIFO");
    let out = out.code(125);
    assert!(
        out.stderr().contains(&format!("{}: not a regular file (a FIFO)", fifo.display())),
        "{}",
        out.stderr()
    );
    assert!(out.stdout().lines().any(|l| l.starts_with("recommended ")), "{}", out.stdout());
}

#[test]
fn root_refuses_a_profile_file_others_may_write() {
    if !skip_unless(is_root(), "needs root: the check is root's") {
        return;
    }
    let (env, config, file) = with_profiles("[profiles.mine]\nkeepalive = \"1/1/1\"\n");
    let lib = env.fake_lib();
    let run = || env.kawrap().env("XDG_CONFIG_HOME", &config).lib(&lib).dry_run(&["--profile", "mine"]).run();
    run().code(0);
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    chmod(Path::new(&file), 0o666);
    run().code(125).stderr_contains(&format!(
        "kawrap: {file}: writable by others than its owner and root (mode 0666); \
         as root, kawrap reads only profile files no one else can change"
    ));
    // Group-writable is fine when the group is root's, not otherwise.
    chmod(Path::new(&file), 0o664);
    std::os::unix::fs::chown(&file, None, Some(0)).unwrap();
    run().code(0);
    std::os::unix::fs::chown(&file, None, Some(65534)).unwrap();
    run().code(125).stderr_contains("(mode 0664)");
    std::os::unix::fs::chown(&file, None, Some(0)).unwrap();
    // A directory on the way that others may write lets them replace the file.
    let dir = env.root().join("config/kawrap");
    chmod(&dir, 0o777);
    run().code(125).stderr_contains(&format!(
        "{file} is in {}, which is writable by others than its owner and root (mode 0777)",
        dir.display()
    ));
    // The sticky bit (as on /tmp) stops others from replacing what is not theirs.
    chmod(&dir, 0o1777);
    run().code(0);
}

#[test]
fn root_refuses_a_profile_file_reached_through_a_link_into_a_directory_others_may_write() {
    if !skip_unless(is_root(), "needs root: the check is root's") {
        return;
    }
    let env = TestEnv::new();
    // The file others may replace, in a directory of their own…
    let shared = env.root().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = shared.join("profiles.toml");
    std::fs::write(&target, "[profiles.mine]\nkeepalive = \"1/1/1\"\n").unwrap();
    // …reached through a link from a directory no one else may write.
    let dir = env.root().join("config/kawrap");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("profiles.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let config = env.root().join("config");
    let lib = env.fake_lib();
    env.kawrap()
        .env("XDG_CONFIG_HOME", &config)
        .lib(&lib)
        .dry_run(&["--profile", "mine"])
        .run()
        .code(125)
        .stderr_contains(&format!(
            "is in {}, which is writable by others than its owner and root (mode 0777)",
            std::fs::canonicalize(&shared).unwrap().display()
        ));
}
