//! Hostile conditions: a program under libkawrap.so must never notice the
//! shim. Every test runs the same program without kawrap and with it and
//! compares everything the program itself shows — exit status, stdout,
//! stderr, each call's result and errno. Only option read-outs
//! (`keepalive=` lines) may differ, and where the shim is expected to have
//! acted they are checked too, so a test cannot pass with the shim silently
//! not loaded.
//!
//! The hostile programs are small C files in `tests/hostile/`, compiled
//! with `cc` into a private temporary directory by each test (C, because
//! constructors, vfork, seccomp and duplicated environment entries are what
//! real C programs do and Rust's runtime would hide).
//!
//! Seven of these tests were written against defects they found in the shim
//! (a FIFO log, `ulimit -f`, a bad connect() pointer, force hiding the
//! kernel's refusals, vfork children, errno during a lazy load, listen() on
//! a connected socket); each failed before its fix.
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kawrap_core::{Config, Destination, KeepaliveProfile, Policy};
use kawrap_integration::loopback_listener as listener;
use kawrap_integration::probe::{options_line, sysctl};
use kawrap_integration::servers::have_program as on_path;
use kawrap_integration::{is_root, shim_path, skip_unless, without_kawrap_env};

const KAWRAP_VARIABLES: [&str; 5] =
    ["KAWRAP_PROFILE", "KAWRAP_RULES", "KAWRAP_POLICY", "KAWRAP_LOG", "KAWRAP_DISABLE"];

/// Longest any single program run may take before it counts as hung.
const HANG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A private directory holding the compiled C helpers, a copy of the shim
/// and the kaprobe binary, world-readable so `nobody` can run them too.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    /// `None` (after printing SKIP) when there is no C compiler.
    fn new() -> Option<Lab> {
        if skip_unless(on_path("cc"), "no C compiler (cc) to build the hostile programs") {
            return None;
        }
        let dir = kawrap_integration::temp_dir("hostile");
        set_mode(dir.path(), 0o755);
        Some(Lab { dir })
    }

    fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }

    fn compile(&self, source: &str, output: &Path, shared: bool) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile").join(source);
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-Wall", "-pthread"]);
        if shared {
            cc.args(["-shared", "-fPIC"]);
        }
        cc.arg("-o").arg(output).arg(&source).arg("-ldl");
        let result = cc.output().expect("run cc");
        assert!(
            result.status.success(),
            "cc {} failed:\n{}",
            source.display(),
            String::from_utf8_lossy(&result.stderr)
        );
    }

    /// Compiles `tests/hostile/NAME.c` into an executable.
    fn program(&self, name: &str) -> PathBuf {
        let output = self.path(name);
        if !output.exists() {
            self.compile(&format!("{name}.c"), &output, false);
        }
        output
    }

    /// Compiles `tests/hostile/NAME.c` into `NAME.so`.
    fn library(&self, name: &str) -> PathBuf {
        let output = self.path(format!("{name}.so"));
        if !output.exists() {
            self.compile(&format!("{name}.c"), &output, true);
        }
        output
    }

    /// A copy of the release shim that any user can read.
    fn shim(&self) -> PathBuf {
        let copy = self.path("libkawrap.so");
        if !copy.exists() {
            std::fs::copy(shim_path(), &copy).expect("copy libkawrap.so");
            set_mode(&copy, 0o644);
        }
        copy
    }

    /// A copy of kaprobe that any user can run.
    fn kaprobe(&self) -> PathBuf {
        let copy = self.path("kaprobe");
        if !copy.exists() {
            self.executable_copy(Path::new(env!("CARGO_BIN_EXE_kaprobe")), &copy);
        }
        copy
    }

    /// Copies `from` to `to`, mode 0755, with cp(1) rather than in this
    /// process: a file this (multi-threaded) test process had open for
    /// writing stays open in any child another test thread forks meanwhile,
    /// until that child execs — and exec of it fails with ETXTBSY.
    fn executable_copy(&self, from: &Path, to: &Path) {
        let status = Command::new("cp").arg(from).arg(to).status().expect("run cp");
        assert!(status.success(), "cp {} {}", from.display(), to.display());
        set_mode(to, 0o755);
    }

    /// A fresh subdirectory with `mode`.
    fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir(&dir).expect("create dir");
        set_mode(&dir, mode);
        dir
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One way to run a program: the command line, and the environment it gets
/// on top of the test's own (minus LD_PRELOAD and KAWRAP_*). The same
/// KAWRAP_* variables are given with and without the shim, so the only
/// difference between the two runs is LD_PRELOAD.
#[derive(Clone, Default)]
struct Host {
    /// A command prefix that is not part of the program (`setpriv …`,
    /// `unshare …`): it runs without the shim, which is handed on to the
    /// program with `env LD_PRELOAD=…` (a root `setpriv` under the shim
    /// would itself write the log the test expects nobody to write).
    wrapper: Vec<OsString>,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
}

impl Host {
    fn new<S: AsRef<OsStr>>(argv: impl IntoIterator<Item = S>) -> Host {
        Host { argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect(), ..Host::default() }
    }

    fn wrapped<S: AsRef<OsStr>>(mut self, wrapper: impl IntoIterator<Item = S>) -> Host {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Host {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    fn in_dir(mut self, dir: &Path) -> Host {
        self.dir = Some(dir.to_owned());
        self
    }

    /// The command, with `preload` as LD_PRELOAD if given.
    fn command(&self, preload: Option<&OsStr>) -> Command {
        let mut command = match self.wrapper.split_first() {
            None => {
                let mut command = Command::new(&self.argv[0]);
                command.args(&self.argv[1..]);
                command
            }
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest);
                if let Some(preload) = preload {
                    let mut setting = OsString::from("LD_PRELOAD=");
                    setting.push(preload);
                    command.arg("env").arg(setting);
                }
                command.args(&self.argv);
                command
            }
        };
        without_kawrap_env(&mut command).stdin(Stdio::null());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let (Some(preload), true) = (preload, self.wrapper.is_empty()) {
            command.env("LD_PRELOAD", preload);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    fn bare(&self) -> Outcome {
        Outcome::of(self.command(None))
    }

    fn shimmed(&self, shim: &Path) -> Outcome {
        Outcome::of(self.command(Some(shim.as_os_str())))
    }

    /// Runs without and with the shim and asserts the program saw exactly
    /// the same; returns both runs' option read-outs for the caller.
    fn same_both_ways(&self, shim: &Path) -> Readouts {
        let bare = self.bare();
        let shimmed = self.shimmed(shim);
        assert_same(&bare, &shimmed, &self.describe());
        Readouts { bare: bare.readouts(), shimmed: shimmed.readouts() }
    }

    fn describe(&self) -> String {
        let env: Vec<String> =
            self.env.iter().map(|(k, v)| format!("{}={}", k.to_string_lossy(), shorten(v))).collect();
        format!("{env:?} {:?} {:?}", self.wrapper, self.argv)
    }
}

/// A value as it can be shown in a message: lossy, at most 40 characters.
fn shorten(value: &OsStr) -> String {
    let text = value.to_string_lossy();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…({} bytes)", &text[..cut], value.len()),
        None => text.into_owned(),
    }
}

/// Option read-out lines of a run without and with the shim.
#[derive(Debug)]
struct Readouts {
    bare: Vec<String>,
    shimmed: Vec<String>,
}

/// Everything a program run showed to the outside.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// `exit N` or `signal N`; `hung` if it outlived [`HANG`].
    status: String,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn of(command: Command) -> Outcome {
        Outcome::within(command, HANG)
    }

    /// Runs `command`, killing it after `limit`.
    fn within(mut command: Command, limit: Duration) -> Outcome {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stdout = child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>);
        let stderr = child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>);
        let pipes = [stdout, stderr];
        let readers: Vec<_> = pipes
            .into_iter()
            .map(|pipe| {
                std::thread::spawn(move || {
                    let mut bytes = Vec::new();
                    if let Some(mut pipe) = pipe {
                        pipe.read_to_end(&mut bytes).ok();
                    }
                    String::from_utf8_lossy(&bytes).into_owned()
                })
            })
            .collect();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break describe_status(status);
            }
            if Instant::now() >= deadline {
                // By pid: only the process this call started.
                child.kill().ok();
                child.wait().ok();
                break "hung".to_owned();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut texts = readers.into_iter().map(|r| r.join().unwrap_or_default());
        Outcome { status, stdout: texts.next().unwrap_or_default(), stderr: texts.next().unwrap_or_default() }
    }

    /// The stdout lines that read socket options back (they differ by
    /// design under the shim).
    fn readouts(&self) -> Vec<String> {
        self.stdout.lines().filter(|l| is_readout(l)).map(str::to_owned).collect()
    }

    /// Everything else the program printed.
    fn results(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| !is_readout(l)).collect()
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status}"),
    }
}

/// `keepalive=1 idle=…` (kaprobe, C helpers), `early keepalive=…`,
/// `keepalive children=…` (forkstorm).
fn is_readout(line: &str) -> bool {
    line.starts_with("keepalive ") || line.split_whitespace().any(|word| word.starts_with("keepalive="))
}

/// Asserts the program saw the same without and with the shim: status,
/// stderr and every non-read-out line of stdout.
fn assert_same(bare: &Outcome, shimmed: &Outcome, what: &str) {
    assert_eq!(bare.status, "exit 0", "{what}: the program itself failed without kawrap: {bare:#?}");
    assert_eq!(shimmed.status, bare.status, "{what}: exit status differs under the shim: {shimmed:#?}");
    assert_eq!(shimmed.stderr, bare.stderr, "{what}: stderr differs under the shim");
    assert_eq!(shimmed.results(), bare.results(), "{what}: results differ under the shim");
}

/// kaprobe's `print` line for a TCP socket under `profile` (kernel defaults
/// without one), with the program's own TCP_KEEPIDLE where it set one and
/// the policy lets it stand.
fn tcp_line(config: Option<&Config>, dest: Option<Destination>, own_idle: Option<i32>) -> String {
    match config {
        None => options_line(
            0,
            own_idle.unwrap_or_else(|| sysctl("tcp_keepalive_time")),
            sysctl("tcp_keepalive_intvl"),
            sysctl("tcp_keepalive_probes"),
            0,
        ),
        Some(config) => {
            let (_, profile) = config.profile_for(dest.as_ref());
            let idle = match (config.policy, own_idle) {
                (Policy::Respect, Some(own)) => own,
                _ => i32::from(profile.idle_secs()),
            };
            let (intvl, cnt) = (i32::from(profile.interval_secs()), i32::from(profile.count()));
            let ut = i32::try_from(profile.user_timeout_ms().unwrap_or(0)).expect("user timeout fits an int");
            options_line(1, idle, intvl, cnt, ut)
        }
    }
}

fn profile_line(profile: &KeepaliveProfile) -> String {
    format!(
        "keepalive=1 idle={} intvl={} cnt={}",
        profile.idle_secs(),
        profile.interval_secs(),
        profile.count()
    )
}

/// What the shim makes of these variables, by kawrap-core's own rules (the
/// shim and the CLI share them): `None` when it stays out of the way.
fn config_from(env: &[(OsString, OsString)]) -> Option<Config> {
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes());
    if kawrap_core::env::is_disabled(get("KAWRAP_DISABLE")) {
        return None;
    }
    let text = |name| get(name).map(std::str::from_utf8);
    let (profile, rules, policy) = (text("KAWRAP_PROFILE"), text("KAWRAP_RULES"), text("KAWRAP_POLICY"));
    if [profile, rules, policy].iter().any(|v| matches!(v, Some(Err(_)))) {
        return None;
    }
    Config::from_values(profile.and_then(Result::ok), rules.and_then(Result::ok), policy.and_then(Result::ok))
        .ok()
}

fn destination(addr: &str) -> Destination {
    let addr: std::net::SocketAddr = addr.parse().expect("socket address");
    Destination { ip: addr.ip(), port: addr.port() }
}

/// The `=== NAME` sections of a script's output.
fn sections(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix("=== ") {
            Some(name) => out.push((name.to_owned(), String::new())),
            None => {
                if let Some((_, text)) = out.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

/// Values no variable should ever make the program notice.
fn hostile_values() -> Vec<(&'static str, OsString)> {
    let junk: Vec<u8> = (0..4096u32).map(|i| (i % 255 + 1) as u8).collect();
    vec![
        ("empty", "".into()),
        ("spaces", "   ".into()),
        ("negative", "-1".into()),
        ("zero", "0".into()),
        ("32768", "32768".into()),
        ("2^64", "18446744073709551616".into()),
        ("non-UTF-8", OsString::from_vec(b"\xff\xfe\x80kawrap\xc3".to_vec())),
        ("4 KB of bytes 1..=255", OsString::from_vec(junk)),
        ("4 KB near-profile", "300/30/5,".repeat(455).into()),
    ]
}

/// Values shaped like each variable's grammar but out of range.
fn hostile_values_for(variable: &str) -> Vec<(&'static str, OsString)> {
    let values: &[&str] = match variable {
        "KAWRAP_PROFILE" => &[
            "32768/1/1",
            "1/32768/1",
            "1/1/128",
            "-1/1/1",
            "0/0/0",
            "4294967296/1/1",
            "18446744073709551616/1/1",
            "1/1/1/18446744073709551616",
            "1/1/1/99999999999999999999ms",
            "1/1/1/auto/extra",
            "firewall ",
        ],
        "KAWRAP_RULES" => {
            &[":65536=ssh", ":-1=ssh", "0.0.0.0/33=ssh", "::/129=ssh", "127.0.0.1=", "=ssh", ",,,"]
        }
        "KAWRAP_POLICY" => &["FORCE", "respect,force", "forced"],
        "KAWRAP_DISABLE" => &["1", "false", "00"],
        _ => &[],
    };
    let mut values: Vec<(&'static str, OsString)> = values.iter().map(|v| ("shaped", (*v).into())).collect();
    if variable == "KAWRAP_RULES" {
        // More rules than the shim can hold (it keeps 32).
        let many = (1..=40).map(|p| format!(":{p}=ssh")).collect::<Vec<_>>().join(",");
        values.push(("40 rules", many.into()));
    }
    values
}

/// Steps whose results (not options) must be the same whatever the
/// environment: sockets of each kind, the program's own option, a
/// connection, a refused one, a non-blocking one, errors, fds.
fn matrix_steps(addr: &str) -> Vec<String> {
    [
        "socket:inet:stream",
        "print",
        "set:idle=61",
        &format!("connect:{addr}"),
        "print",
        &format!("connect:{addr}"),
        "close",
        "socket:inet:stream:nonblock",
        "connect:127.0.0.1:1",
        "close",
        "socket:inet:dgram",
        "set:keepalive=1",
        "print",
        "socket:unix:stream",
        "print",
        "socket:9999:stream",
        "close",
        "fds",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The read-outs `matrix_steps` must produce under `config`.
fn matrix_readouts(bare: &[String], config: Option<&Config>, addr: &str) -> Vec<String> {
    vec![
        tcp_line(config, None, None),
        tcp_line(config, Some(destination(addr)), Some(61)),
        // UDP and unix sockets: whatever the kernel says without kawrap.
        bare[2].clone(),
        bare[3].clone(),
    ]
}

#[test]
fn bad_values_in_any_kawrap_variable_never_reach_the_program() {
    let Some(lab) = Lab::new() else { return };
    let (shim, probe) = (lab.shim(), lab.kaprobe());
    // Relative KAWRAP_LOG values ("0", "-1", …) would land here (the shim
    // ignores them; tests/shim_log.rs checks that nothing is created).
    let cwd = lab.subdir("cwd", 0o755);
    let (_listener, addr) = listener();
    let steps = matrix_steps(&addr);
    let base = Host::new(std::iter::once(probe.as_os_str()).chain(steps.iter().map(OsStr::new))).in_dir(&cwd);
    let bare = base.bare();
    let bare_readouts = bare.readouts();
    assert_eq!(bare_readouts.len(), 4, "{bare:#?}");
    let mut checked = 0;
    for variable in KAWRAP_VARIABLES {
        for (label, value) in hostile_values().into_iter().chain(hostile_values_for(variable)) {
            let mut host = base.clone();
            // A valid profile alongside, so "ignored" and "applied" differ.
            if variable != "KAWRAP_PROFILE" {
                host = host.env("KAWRAP_PROFILE", "firewall");
            }
            host = host.env(variable, &value);
            let what = format!("{variable} = {label} {:?}", shorten(&value));
            let shimmed = host.shimmed(&shim);
            assert_same(&bare, &shimmed, &what);
            let config = config_from(&host.env);
            assert_eq!(
                shimmed.readouts(),
                matrix_readouts(&bare_readouts, config.as_ref(), &addr),
                "{what}: options are not what kawrap-core says this value means"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} combinations ran");
}

#[test]
fn duplicated_variables_and_a_doubly_listed_shim_change_nothing() {
    let Some(lab) = Lab::new() else { return };
    let (shim, probe, envexec) = (lab.shim(), lab.kaprobe(), lab.program("envexec"));
    let (_listener, addr) = listener();
    let steps = matrix_steps(&addr);
    let shim_text = shim.to_str().expect("UTF-8 temp path");
    let bare = Host::new(std::iter::once(probe.as_os_str()).chain(steps.iter().map(OsStr::new))).bare();
    let bare_readouts = bare.readouts();
    let firewall = Config::from_values(Some("firewall"), None, None).expect("firewall");
    // (environment entries, in order; the configuration glibc's getenv — the
    // first entry — gives).
    let cases: Vec<(Vec<String>, Option<&Config>)> = vec![
        (vec!["KAWRAP_PROFILE=bogus".into(), "KAWRAP_PROFILE=firewall".into()], None),
        (vec!["KAWRAP_PROFILE=firewall".into(), "KAWRAP_PROFILE=bogus".into()], Some(&firewall)),
        (
            vec!["KAWRAP_PROFILE=firewall".into(), "KAWRAP_DISABLE=0".into(), "KAWRAP_DISABLE=1".into()],
            Some(&firewall),
        ),
        (vec!["KAWRAP_PROFILE=firewall".into(), "KAWRAP_DISABLE=1".into(), "KAWRAP_DISABLE=0".into()], None),
        (
            vec![
                "KAWRAP_PROFILE=firewall".into(),
                "KAWRAP_LOG=".into(),
                "KAWRAP_LOG=/nonexistent/kawrap.log".into(),
            ],
            Some(&firewall),
        ),
        (
            vec!["KAWRAP_PROFILE=firewall".into(), "KAWRAP_POLICY=respect".into(), "KAWRAP_POLICY=x".into()],
            Some(&firewall),
        ),
        (
            vec!["KAWRAP_PROFILE".into(), "KAWRAP_PROFILE=firewall".into(), "=".into(), "junk".into()],
            Some(&firewall),
        ),
    ];
    for preload in
        [shim_text.to_owned(), format!("{shim_text}:{shim_text}"), format!("{shim_text} {shim_text}")]
    {
        for (entries, config) in &cases {
            let mut argv: Vec<OsString> = vec![envexec.clone().into()];
            argv.push(format!("LD_PRELOAD={preload}").into());
            argv.extend(entries.iter().map(OsString::from));
            argv.push("--".into());
            argv.push(probe.clone().into());
            argv.extend(steps.iter().map(OsString::from));
            let shimmed = Host::new(&argv).bare();
            let what = format!("LD_PRELOAD={preload} {entries:?}");
            assert_same(&bare, &shimmed, &what);
            // "KAWRAP_PROFILE" without "=" is invisible to getenv; the
            // second entry is then the first one that counts.
            assert_eq!(shimmed.readouts(), matrix_readouts(&bare_readouts, *config, &addr), "{what}");
        }
    }
}

// ---------------------------------------------------------------------------
// Standard streams and the log file
// ---------------------------------------------------------------------------

/// A pipe whose read end is already closed: a write to it raises SIGPIPE,
/// which kills a C program — so a single stray byte on it is fatal.
fn broken_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: both descriptors were just created and are owned only here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Environments under which the shim has something to say (a complaint at
/// load time, a line per socket) and nowhere it may say it.
fn talkative_environments(lab: &Lab) -> Vec<Vec<(&'static str, OsString)>> {
    vec![
        vec![("KAWRAP_PROFILE", "firewall".into())],
        vec![("KAWRAP_PROFILE", "bogus".into())],
        vec![("KAWRAP_PROFILE", OsString::from_vec(b"\xff".to_vec()))],
        vec![("KAWRAP_PROFILE", "bogus".into()), ("KAWRAP_LOG", "/nonexistent/kawrap.log".into())],
        vec![("KAWRAP_PROFILE", "firewall".into()), ("KAWRAP_LOG", lab.path("talk.log").into_os_string())],
    ]
}

#[test]
fn a_broken_or_full_stderr_and_a_closed_stdin_go_unnoticed() {
    let Some(lab) = Lab::new() else { return };
    let (shim, errnos, closestd) = (lab.shim(), lab.program("errnos"), lab.program("closestd"));
    for env in talkative_environments(&lab) {
        let mut host = Host::new([&closestd, Path::new("0"), &errnos]);
        for (k, v) in &env {
            host = host.env(k, v);
        }
        let what = host.describe();
        // stderr: a broken pipe (any write is SIGPIPE), then /dev/full.
        let run = |preload: Option<&OsStr>, stderr: Stdio| {
            let mut command = host.command(preload);
            command.stderr(stderr);
            // Outcome::of pipes stderr; use stdout only and keep our stderr.
            command.stdout(Stdio::piped());
            let output = command.output().expect("run errnos");
            (describe_status(output.status), String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let bare = run(None, Stdio::from(broken_pipe()));
        assert_eq!(bare.0, "exit 0", "{what}: {bare:?}");
        assert!(bare.1.contains("close_ebadf_huge"), "{what}: errnos did not run to the end: {bare:?}");
        let shimmed = run(Some(shim.as_os_str()), Stdio::from(broken_pipe()));
        assert_eq!(shimmed, bare, "{what}: stderr was a broken pipe");
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let shimmed = run(Some(shim.as_os_str()), Stdio::from(full));
        assert_eq!(shimmed, bare, "{what}: stderr was /dev/full");
        // And with stderr captured: not one byte from the shim.
        assert_same(&host.bare(), &host.shimmed(&shim), &what);
    }
}

#[test]
fn with_stdin_stdout_and_stderr_closed_nothing_lands_on_their_numbers() {
    let Some(lab) = Lab::new() else { return };
    let (shim, stdhost, closestd) = (lab.shim(), lab.program("stdhost"), lab.program("closestd"));
    for (n, env) in talkative_environments(&lab).into_iter().enumerate() {
        let report = |name: &str| lab.path(format!("report-{n}-{name}"));
        let run = |preload: Option<&OsStr>, name: &str| {
            let mut host = Host::new([&closestd, Path::new("012"), &stdhost, &report(name)]);
            for (k, v) in &env {
                host = host.env(k, v);
            }
            let outcome = Outcome::of(host.command(preload));
            // The program has no stdout or stderr: nothing may arrive here.
            assert_eq!(outcome, Outcome { status: "exit 0".into(), stdout: "".into(), stderr: "".into() });
            std::fs::read_to_string(report(name)).expect("report")
        };
        let bare = run(None, "bare");
        let shimmed = run(Some(shim.as_os_str()), "shim");
        let split = |text: &str| -> (Vec<String>, Vec<String>) {
            text.lines().map(str::to_owned).partition(|l| !is_readout(l))
        };
        let (bare_results, bare_readouts) = split(&bare);
        let (results, readouts) = split(&shimmed);
        assert_eq!(results, bare_results, "{env:?}");
        // The sockets really took 0, 1 and 2, and nothing extra crossed.
        assert!(bare.contains("fd0_open=0\nfd1_open=0\nfd2_open=0\nlistener=0\n"), "{bare}");
        assert!(bare.contains("client=1\n") && bare.contains("accepted=2\n"), "{bare}");
        assert!(bare.contains("recv=4 ping\nextra_at_accepted=0 extra_at_client=0\n"), "{bare}");
        assert_eq!(bare_readouts, ["keepalive=0"]);
        let applies = env.iter().any(|(k, v)| *k == "KAWRAP_PROFILE" && v == "firewall");
        assert_eq!(readouts, [if applies { "keepalive=1" } else { "keepalive=0" }], "{env:?}");
    }
}

#[test]
fn with_the_standard_streams_closed_the_log_still_gets_its_lines() {
    let Some(lab) = Lab::new() else { return };
    let (shim, stdhost, closestd) = (lab.shim(), lab.program("stdhost"), lab.program("closestd"));
    let log = lab.path("closed.log");
    let report = lab.path("closed.report");
    let host = Host::new([&closestd, Path::new("012"), &stdhost, &report])
        .env("KAWRAP_PROFILE", "firewall")
        .env("KAWRAP_LOG", &log);
    let outcome = host.shimmed(&shim);
    assert_eq!(outcome.status, "exit 0", "{outcome:?}");
    let text = std::fs::read_to_string(&log).expect("log written");
    // Opened while 0, 1 and 2 were free: the shim's own descriptor briefly
    // took one of those numbers, and still the lines went only to the file.
    assert!(text.contains(" fd=0 event=socket ") && text.contains(" fd=1 event=socket "), "{text}");
    assert!(
        std::fs::read_to_string(&report).expect("report").contains("extra_at_accepted=0 extra_at_client=0")
    );
}

/// Runs `errnos` without and with the shim under `wrapper` (a command
/// prefix such as `setpriv …` or `unshare …`), KAWRAP_LOG = `log`.
fn log_destination_case(lab: &Lab, wrapper: &[&OsStr], log: &Path, what: &str) {
    let host = Host::new([lab.program("errnos")])
        .wrapped(wrapper)
        .env("KAWRAP_PROFILE", "firewall")
        .env("KAWRAP_LOG", log);
    host.same_both_ways(&lab.shim());
    // And with an invalid profile, so the load-time complaint is tried too.
    let host = Host { env: vec![], ..host }.env("KAWRAP_PROFILE", "bogus").env("KAWRAP_LOG", log);
    let (bare, shimmed) = (host.bare(), host.shimmed(&lab.shim()));
    assert_same(&bare, &shimmed, what);
}

#[test]
fn an_unusable_log_destination_goes_unnoticed() {
    let Some(lab) = Lab::new() else { return };
    let dir = lab.subdir("logdir", 0o755);
    for (log, what) in [
        (dir.clone(), "a directory"),
        (dir.join("missing/kawrap.log"), "in a missing directory"),
        (PathBuf::from("/dev/full"), "/dev/full"),
        (PathBuf::from("/proc/self/status"), "a read-only procfs file"),
        (PathBuf::from(format!("{}/{}", dir.display(), "x".repeat(300))), "a name too long"),
    ] {
        log_destination_case(&lab, &[], &log, what);
    }
    assert!(dir.read_dir().expect("read dir").next().is_none(), "nothing was created in {}", dir.display());
}

#[test]
fn a_log_directory_the_user_may_not_write_goes_unnoticed() {
    let Some(lab) = Lab::new() else { return };
    if skip_unless(is_root() && on_path("setpriv"), "needs root and setpriv to run as nobody") {
        return;
    }
    // Root bypasses permissions: run the program as nobody.
    let locked = lab.subdir("locked", 0o000);
    let log = locked.join("kawrap.log");
    let nobody: Vec<&OsStr> =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"].map(OsStr::new).to_vec();
    log_destination_case(&lab, &nobody, &log, "chmod 000 directory, as nobody");
    assert!(!log.exists(), "the log was created despite chmod 000");
    // The same run into a directory nobody may write does log: the case
    // above really exercised a failing open().
    let open = lab.subdir("open", 0o777);
    log_destination_case(&lab, &nobody, &open.join("kawrap.log"), "writable directory, as nobody");
    assert!(open.join("kawrap.log").exists(), "control run did not log");
}

#[test]
fn a_log_on_a_full_or_read_only_filesystem_goes_unnoticed() {
    let Some(lab) = Lab::new() else { return };
    if skip_unless(is_root() && on_path("unshare"), "needs root and unshare to mount a small tmpfs") {
        return;
    }
    let mount = lab.subdir("mnt", 0o755);
    let sizes = lab.path("sizes");
    // Inside a private mount namespace: mount, fill, run, report the log's
    // size (the mount disappears with the namespace).
    let script = r#"
        dir=$1 options=$2 report=$3; shift 3
        mount -t tmpfs -o "$options" kawrap-test "$dir" || exit 99
        [ "${options#*ro}" = "$options" ] && { dd if=/dev/zero of="$dir/fill" bs=4096 2>/dev/null; : > "$dir/kawrap.log"; }
        "$@"; rc=$?
        stat -c %s "$dir/kawrap.log" >> "$report" 2>/dev/null || echo none >> "$report"
        exit $rc
    "#;
    for (options, what) in [("size=16k", "full tmpfs"), ("size=16k,ro", "read-only tmpfs")] {
        let wrapper: Vec<&OsStr> = vec![
            "unshare".as_ref(),
            "-m".as_ref(),
            "--propagation".as_ref(),
            "private".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
            "sh".as_ref(),
            mount.as_os_str(),
            options.as_ref(),
            sizes.as_os_str(),
        ];
        std::fs::write(&sizes, "").expect("reset sizes");
        log_destination_case(&lab, &wrapper, &mount.join("kawrap.log"), what);
        let sizes = std::fs::read_to_string(&sizes).expect("sizes");
        let want = if options.contains("ro") { "none\n" } else { "0\n" };
        assert_eq!(sizes, want.repeat(4), "{what}: the log must exist and stay empty (writes failed)");
    }
}

// ---------------------------------------------------------------------------
// Processes: fork, vfork, spawn, exec, constructors, plugins, sandboxes
// ---------------------------------------------------------------------------

#[test]
fn a_thousand_forks_of_a_threaded_program_that_connects_all_along() {
    let Some(lab) = Lab::new() else { return };
    let (shim, forkstorm) = (lab.shim(), lab.program("forkstorm"));
    let log = lab.path("forkstorm.log");
    let host = Host::new([forkstorm.as_os_str(), "1000".as_ref()]).env("KAWRAP_PROFILE", "firewall");
    let started = Instant::now();
    let readouts = host.same_both_ways(&shim);
    assert_eq!(readouts.bare, ["keepalive children=0 parent=0"]);
    assert_eq!(readouts.shimmed, ["keepalive children=1000 parent=300"], "every socket got the profile");
    let logged = host.clone().env("KAWRAP_LOG", &log);
    let readouts = logged.same_both_ways(&shim);
    assert_eq!(readouts.shimmed, ["keepalive children=1000 parent=300"]);
    // One whole line per socket from ~1000 processes appending at once:
    // the listener, 2 per child, 300 from the parent's threads.
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 2000 + 300, "log lines");
    assert!(lines.iter().all(|l| l.contains(" kawrap pid=") && l.contains(" event=socket ")));
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
}

#[test]
fn vfork_and_posix_spawn_children_leave_the_parents_sockets_alone() {
    let Some(lab) = Lab::new() else { return };
    let (shim, spawnhost, probe) = (lab.shim(), lab.program("spawnhost"), lab.kaprobe());
    let (_listener, addr) = listener();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    let child: [&OsStr; 3] = [probe.as_os_str(), "socket:inet:stream".as_ref(), "print".as_ref()];
    for mode in ["plain", "spawn-close", "vfork-exec", "spawn"] {
        let mut argv: Vec<&OsStr> = vec![spawnhost.as_os_str(), mode.as_ref(), port.as_ref()];
        argv.extend(child);
        // Not a profile with idle 60: the program's own value must be told apart.
        let host = Host::new(argv).env("KAWRAP_PROFILE", "recommended");
        let readouts = host.same_both_ways(&shim);
        // The program's own TCP_KEEPIDLE=60 stands (respect); the rest is
        // the profile's. Children that exec kaprobe get the profile.
        let parent_bare = format!(
            "keepalive=0 idle=60 intvl={} cnt={}",
            sysctl("tcp_keepalive_intvl"),
            sysctl("tcp_keepalive_probes")
        );
        let (children_bare, children_shim) = if mode.ends_with("exec") || mode == "spawn" {
            (vec![tcp_line(None, None, None)], vec![tcp_line(config_from(&host.env).as_ref(), None, None)])
        } else {
            (vec![], vec![])
        };
        assert_eq!(readouts.bare, [children_bare, vec![parent_bare]].concat(), "{mode}");
        assert_eq!(
            readouts.shimmed,
            [children_shim, vec!["keepalive=1 idle=60 intvl=30 cnt=5".to_owned()]].concat(),
            "{mode}"
        );
    }
}

#[test]
fn a_vfork_child_closing_a_descriptor_does_not_undo_respect_in_the_parent() {
    let Some(lab) = Lab::new() else { return };
    let (shim, spawnhost) = (lab.shim(), lab.program("spawnhost"));
    let (_listener, addr) = listener();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    let host = Host::new([spawnhost.as_os_str(), "vfork-close".as_ref(), port.as_ref()])
        .env("KAWRAP_PROFILE", "recommended");
    let readouts = host.same_both_ways(&shim);
    assert_eq!(readouts.shimmed, ["keepalive=1 idle=60 intvl=30 cnt=5"], "the program's idle=60 must stand");
}

#[test]
fn exec_chains_through_sh_and_a_perl_wrapper_keep_results_and_the_shim() {
    let Some(lab) = Lab::new() else { return };
    if skip_unless(Path::new("/usr/bin/perl").exists(), "no /usr/bin/perl for the wrapper script") {
        return;
    }
    let (shim, probe) = (lab.shim(), lab.kaprobe());
    // Like Debian's pg_wrapper in front of psql: a Perl script that execs
    // the real client.
    let source = lab.path("wrapper.pl.in");
    std::fs::write(&source, "#!/usr/bin/perl\nexec { $ARGV[0] } @ARGV or die \"exec: $!\";\n")
        .expect("write");
    let wrapper = lab.path("wrapper.pl");
    lab.executable_copy(&source, &wrapper);
    let (_listener, addr) = listener();
    let steps = matrix_steps(&addr);
    let exec_sh = r#"exec sh -c 'exec "$0" "$@"' "$0" "$@""#;
    let chains: [Vec<&OsStr>; 3] = [
        vec!["sh".as_ref(), "-c".as_ref(), exec_sh.as_ref()],
        vec![wrapper.as_os_str()],
        vec![wrapper.as_os_str(), "/bin/sh".as_ref(), "-c".as_ref(), exec_sh.as_ref()],
    ];
    for chain in chains {
        let argv = chain.iter().copied().chain([probe.as_os_str()]).chain(steps.iter().map(OsStr::new));
        let host = Host::new(argv).env("KAWRAP_PROFILE", "firewall");
        let readouts = host.same_both_ways(&shim);
        let config = config_from(&host.env);
        assert_eq!(readouts.shimmed, matrix_readouts(&readouts.bare, config.as_ref(), &addr), "{chain:?}");
    }
}

/// `LD_DEBUG=files` order of initializers for `preload`.
fn init_order(preload: &str) -> Vec<String> {
    let output = Command::new("/bin/true")
        .env("LD_PRELOAD", preload)
        .env("LD_DEBUG", "files")
        .output()
        .expect("run /bin/true");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|l| l.split_once("calling init: ").map(|(_, path)| path.trim().to_owned()))
        .collect()
}

#[test]
fn sockets_from_a_constructor_that_runs_before_the_shims() {
    let Some(lab) = Lab::new() else { return };
    let (shim, early, probe) = (lab.shim(), lab.library("early"), lab.kaprobe());
    let (shim_text, early_text) = (shim.to_str().expect("path"), early.to_str().expect("path"));
    // ld.so runs initializers in reverse load order: listed after the shim,
    // early.so's constructor runs first. Checked, not assumed.
    let after = format!("{shim_text} {early_text}");
    let order = init_order(&after);
    let position = |name: &str| order.iter().position(|p| p.ends_with(name));
    assert!(position("early.so") < position("libkawrap.so"), "init order {order:?}");
    assert!(position("early.so").is_some(), "init order {order:?}");
    let (_listener, addr) = listener();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    for preload in [after.clone(), format!("{early_text} {shim_text}")] {
        for first in ["socket", "connect", "close", "setsockopt"] {
            for profile in ["firewall", "bogus"] {
                let host = Host::new([probe.as_os_str(), "socket:inet:stream".as_ref(), "print".as_ref()])
                    .env("EARLY_FIRST", first)
                    .env("EARLY_PORT", &port)
                    .env("KAWRAP_PROFILE", profile);
                let what = format!("{preload} EARLY_FIRST={first} {}", host.describe());
                // Without kawrap: only early.so preloaded.
                let bare = Outcome::of(host.command(Some(early.as_os_str())));
                let shimmed = Outcome::of(host.command(Some(OsStr::new(&preload))));
                assert_same(&bare, &shimmed, &what);
                assert!(bare.stdout.contains("early socket=1 errno=33"), "{what}: {bare:?}");
                // Sockets made (or connected) in the constructor got the
                // profile too: the shim was loaded lazily, from the hook.
                let config = config_from(&host.env);
                let early_line = match &config {
                    Some(config) => format!("early keepalive=1 idle={}", config.profile.idle_secs()),
                    None => format!("early keepalive=0 idle={}", sysctl("tcp_keepalive_time")),
                };
                let readouts = shimmed.readouts();
                let (early_readouts, main_readouts): (Vec<&String>, Vec<&String>) =
                    readouts.iter().partition(|l| l.starts_with("early "));
                let want = if first == "connect" { 2 } else { 1 };
                assert_eq!(early_readouts, vec![&early_line; want], "{what}");
                assert_eq!(main_readouts, [&tcp_line(config.as_ref(), None, None)], "{what}");
            }
        }
    }
}

#[test]
fn a_lazy_configuration_load_inside_setsockopt_keeps_errno() {
    let Some(lab) = Lab::new() else { return };
    let (shim, early, probe) = (lab.shim(), lab.library("early"), lab.kaprobe());
    let preload = format!("{} {}", shim.display(), early.display());
    let host = Host::new([probe.as_os_str(), "socket:inet:stream".as_ref()])
        .env("EARLY_FIRST", "setsockopt")
        .env("KAWRAP_PROFILE", "bogus")
        .env("KAWRAP_LOG", "/nonexistent/kawrap.log");
    let bare = Outcome::of(host.command(Some(early.as_os_str())));
    let shimmed = Outcome::of(host.command(Some(OsStr::new(&preload))));
    assert!(bare.stdout.contains("early setsockopt=0 errno=33"), "{bare:?}");
    assert_same(&bare, &shimmed, "setsockopt first, invalid profile, unwritable log");
}

#[test]
fn a_plugin_loaded_and_unloaded_a_hundred_times() {
    let Some(lab) = Lab::new() else { return };
    let (shim, dlhost, plugin) = (lab.shim(), lab.program("dlhost"), lab.library("dlsock"));
    let host =
        Host::new([dlhost.as_os_str(), plugin.as_os_str(), "100".as_ref()]).env("KAWRAP_PROFILE", "ssh");
    let readouts = host.same_both_ways(&shim);
    assert_eq!(readouts.bare, ["keepalive=0"]);
    assert_eq!(readouts.shimmed, ["keepalive=100"], "the plugin's sockets went through the shim");
}

#[test]
fn a_seccomp_filter_that_refuses_setsockopt() {
    let Some(lab) = Lab::new() else { return };
    let (shim, seccomp) = (lab.shim(), lab.program("seccomp"));
    let (_listener, addr) = listener();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    // Without rules the shim works at socket(), and again at connect() and
    // listen() wherever the kernel still shows keepalive off — here at
    // each: 2 + 2 for the sockets it created, 1 + 1 for the 2 it did not.
    // With a rule for the destination the connects apply the rule: the
    // same 6 attempts.
    for (rules, attempts) in [("", 6), ("127.0.0.0/8=ssh", 6)] {
        let log = lab.path(format!("seccomp-{}.log", rules.len()));
        let host = Host::new([seccomp.as_os_str(), port.as_ref()])
            .env("KAWRAP_PROFILE", "firewall")
            .env("KAWRAP_RULES", rules)
            .env("KAWRAP_LOG", &log);
        let readouts = host.same_both_ways(&shim);
        // Every option stays the kernel's: the shim could set nothing.
        assert_eq!(readouts.shimmed, readouts.bare);
        // …but it tried (so the filter really was in its way), and said so.
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(text.matches("error=SO_KEEPALIVE:EPERM").count(), attempts, "{text}");
    }
}

// ---------------------------------------------------------------------------
// errno, descriptors, socket kinds
// ---------------------------------------------------------------------------

#[test]
fn errno_after_every_hooked_call_is_the_kernels() {
    let Some(lab) = Lab::new() else { return };
    let (shim, errnos) = (lab.shim(), lab.program("errnos"));
    let log = lab.path("errnos.log");
    let base = Host::new([&errnos]);
    let bare = base.bare();
    for case in
        ["socket_emfile rc=-1 errno=24", "connect_einprogress rc=-1 errno=115", "close_ebadf rc=-1 errno=9"]
    {
        assert!(bare.stdout.contains(case), "errnos did not produce {case}: {bare:#?}");
    }
    for host in [
        base.clone().env("KAWRAP_PROFILE", "firewall"),
        base.clone().env("KAWRAP_PROFILE", "firewall").env("KAWRAP_LOG", &log),
        base.clone().env("KAWRAP_PROFILE", "300/30/5/auto").env("KAWRAP_RULES", "127.0.0.0/8=ssh"),
        base.clone().env("KAWRAP_PROFILE", "bogus").env("KAWRAP_LOG", &log),
    ] {
        host.same_both_ways(&shim);
    }
    assert!(std::fs::read_to_string(&log).expect("log").contains("event=socket"), "the shim was active");
}

#[test]
fn errno_when_there_is_no_route_is_the_kernels() {
    let Some(lab) = Lab::new() else { return };
    if skip_unless(is_root() && on_path("unshare"), "needs root and unshare for an empty network namespace") {
        return;
    }
    let (shim, errnos) = (lab.shim(), lab.program("errnos"));
    let host = Host::new([errnos.as_os_str(), "unreachable".as_ref()])
        .wrapped(["unshare", "-n"])
        .env("KAWRAP_PROFILE", "firewall");
    let bare = host.bare();
    assert!(bare.stdout.contains("connect_enetunreach rc=-1 errno=101"), "{bare:#?}");
    host.same_both_ways(&shim);
}

#[test]
fn an_invalid_address_pointer_fails_with_efault() {
    let Some(lab) = Lab::new() else { return };
    let host = Host::new([lab.program("errnos").as_os_str(), "efault-connect".as_ref()])
        .env("KAWRAP_PROFILE", "firewall");
    host.same_both_ways(&lab.shim());
}

#[test]
fn force_keeps_the_kernels_refusals() {
    let Some(lab) = Lab::new() else { return };
    let errnos = lab.program("errnos");
    for mode in [None, Some("efault-setsockopt")] {
        let argv: Vec<&OsStr> =
            [Some(errnos.as_os_str()), mode.map(OsStr::new)].into_iter().flatten().collect();
        let host = Host::new(argv).env("KAWRAP_PROFILE", "firewall").env("KAWRAP_POLICY", "force");
        host.same_both_ways(&lab.shim());
    }
}

#[test]
fn a_refused_listen_leaves_a_connections_options_alone() {
    let Some(lab) = Lab::new() else { return };
    let (_listener, addr) = listener();
    let steps = ["socket:inet:stream", &format!("connect:{addr}"), "print", "listen", "print"];
    let host = Host::new(std::iter::once(lab.kaprobe().as_os_str()).chain(steps.iter().map(OsStr::new)))
        .env("KAWRAP_PROFILE", "firewall")
        .env("KAWRAP_RULES", "127.0.0.0/8=ssh");
    let readouts = host.same_both_ways(&lab.shim());
    assert!(host.bare().stdout.contains("listen=-1 errno=22"));
    let ssh = "keepalive=1 idle=60 intvl=60 cnt=5 ut=0";
    assert_eq!(readouts.shimmed, [ssh, ssh], "the failed listen() changed the connection's options");
}

#[test]
fn no_descriptor_is_leaked() {
    let Some(lab) = Lab::new() else { return };
    let (shim, probe) = (lab.shim(), lab.kaprobe());
    let (_listener, addr) = listener();
    let mut steps = vec!["fds".to_owned()];
    for round in 0..40 {
        steps.push(["socket:inet:stream", "socket:inet6:stream", "socket:inet:dgram"][round % 3].to_owned());
        steps.push(format!("connect:{addr}"));
        steps.push("listen".to_owned());
        steps.push("close".to_owned());
        if round % 10 == 9 {
            steps.push("fds".to_owned());
        }
    }
    steps.push("socket:inet:stream".to_owned());
    steps.push("fds".to_owned());
    let base = Host::new(std::iter::once(probe.as_os_str()).chain(steps.iter().map(OsStr::new)));
    let bare = base.bare();
    let counts: Vec<&str> = bare.results().into_iter().filter(|l| l.starts_with("fds=")).collect();
    assert_eq!(counts.len(), 6, "{bare:#?}");
    let log = lab.path("fds.log");
    for host in [
        base.clone().env("KAWRAP_PROFILE", "firewall"),
        base.clone().env("KAWRAP_PROFILE", "firewall").env("KAWRAP_LOG", &log),
        base.clone().env("KAWRAP_PROFILE", "firewall").env("KAWRAP_POLICY", "force").env("KAWRAP_LOG", &log),
        base.clone().env("KAWRAP_PROFILE", "bogus").env("KAWRAP_LOG", &log),
    ] {
        // fds= lines are among the results: identical counts throughout.
        host.same_both_ways(&shim);
    }
    let lines = std::fs::read_to_string(&log).expect("log").lines().count();
    assert!(lines > 40, "the shim logged ({lines} lines), so its log descriptor was opened and closed");
}

#[test]
fn udp_unix_raw_sctp_and_mptcp_sockets_are_exactly_as_without_kawrap() {
    let Some(lab) = Lab::new() else { return };
    let (shim, probe) = (lab.shim(), lab.kaprobe());
    let (_listener, addr) = listener();
    let mut sockets = vec![
        "socket:inet:dgram",
        "socket:inet6:dgram",
        "socket:inet:dgram:-:17",
        "socket:unix:stream",
        "socket:unix:dgram",
        "socket:unix:5",
        // SCTP, one-to-one and one-to-many (EPROTONOSUPPORT without the module).
        "socket:inet:stream:-:132",
        "socket:inet:5:-:132",
        "socket:inet6:stream:-:132",
        // MPTCP: a stream socket that is not plain TCP.
        "socket:inet:stream:-:262",
        "socket:inet6:stream:cloexec,nonblock:262",
    ];
    if is_root() {
        sockets.extend([
            "socket:inet:raw:-:6",
            "socket:inet:raw:-:1",
            "socket:inet6:raw:-:6",
            "socket:17:raw",
        ]);
    }
    for socket in sockets {
        let steps = [
            socket,
            "print",
            "set:keepalive=1",
            "set:idle=45",
            "set:cnt=3",
            "set:ut=1000",
            &format!("connect:{addr}"),
            "print",
            "listen",
            "set:keepalive=0",
            "print",
        ];
        let argv = std::iter::once(probe.as_os_str()).chain(steps.iter().map(OsStr::new));
        for policy in ["respect", "force"] {
            let host = Host::new(argv.clone()).env("KAWRAP_PROFILE", "firewall").env("KAWRAP_POLICY", policy);
            let readouts = host.same_both_ways(&shim);
            assert_eq!(readouts.shimmed, readouts.bare, "{socket} {policy}: an option differs");
        }
    }
}

// ---------------------------------------------------------------------------
// Log destinations that block or signal
// ---------------------------------------------------------------------------

#[test]
fn a_log_fifo_without_a_reader_does_not_block_the_program() {
    let Some(lab) = Lab::new() else { return };
    let fifo = lab.path("kawrap.fifo");
    let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: path is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let host = Host::new([lab.kaprobe().as_os_str(), "socket:inet:stream".as_ref()])
        .env("KAWRAP_PROFILE", "firewall")
        .env("KAWRAP_LOG", &fifo);
    let bare = host.bare();
    let shimmed = Outcome::within(host.command(Some(lab.shim().as_os_str())), Duration::from_secs(3));
    assert_same(&bare, &shimmed, "KAWRAP_LOG is a FIFO without a reader");
}

#[test]
fn a_file_size_limit_does_not_kill_the_program() {
    let Some(lab) = Lab::new() else { return };
    let log = lab.path("limited.log");
    std::fs::write(&log, "x".repeat(2048)).expect("write log");
    // ulimit -f counts 512-byte blocks: 1 block, and the log is already bigger.
    let host = Host::new([lab.program("errnos")])
        .wrapped(["sh", "-c", r#"ulimit -f 1 && exec "$@""#, "sh"])
        .env("KAWRAP_PROFILE", "firewall")
        .env("KAWRAP_LOG", &log);
    host.same_both_ways(&lab.shim());
}

// ---------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------

/// Is the filesystem holding `path` mounted nosuid?
fn nosuid(path: &Path) -> bool {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: statvfs is plain old data; an all-zero value is valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated, stat is a live out-parameter.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    rc != 0 || stat.f_flag & libc::ST_NOSUID != 0
}

#[test]
fn a_setuid_program_ignores_kawrap_variables_and_never_opens_the_log() {
    let Some(lab) = Lab::new() else { return };
    let overlay = std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("overlay");
    if skip_unless(
        is_root() && on_path("unshare") && on_path("setpriv") && overlay && !nosuid(lab.path("").as_path()),
        "needs root, unshare, setpriv, overlayfs and a temp dir that allows setuid",
    ) {
        return;
    }
    let preload_before = std::fs::read("/etc/ld.so.preload").ok();
    let shim = lab.shim();
    let setuid = lab.program("secure");
    let plain = lab.path("plain");
    lab.executable_copy(&setuid, &plain);
    set_mode(&setuid, 0o4755); // owned by root: we are root
    let logs = lab.subdir("logs", 0o1777);
    let upper = lab.subdir("overlay", 0o755);
    // /etc/ld.so.preload is honoured for setuid programs (LD_PRELOAD paths
    // are not). It is provided only inside a private mount namespace, as an
    // overlay on /etc, so the real system never sees it.
    let script = r#"
        set -e
        upper=$1 shim=$2 logs=$3; shift 3
        mount -t tmpfs kawrap-test "$upper"
        mkdir "$upper/upper" "$upper/work"
        echo "$shim" > "$upper/upper/ld.so.preload"
        mount -t overlay kawrap-test -o "lowerdir=/etc,upperdir=$upper/upper,workdir=$upper/work" /etc
        for program in "$@"; do
            for env in "KAWRAP_PROFILE=60/10/6" "KAWRAP_PROFILE=bogus" "KAWRAP_DISABLE=1"; do
                name=$(basename "$program")-${env%%/*}
                echo "=== $name"
                setpriv --reuid=65534 --regid=65534 --clear-groups -- \
                    env "$env" KAWRAP_POLICY=force "KAWRAP_LOG=$logs/$name.log" "$program"
            done
        done
    "#;
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args([&upper, &shim, &logs, &setuid, &plain]);
    without_kawrap_env(&mut command);
    let outcome = Outcome::of(command);
    assert_eq!(
        std::fs::read("/etc/ld.so.preload").ok(),
        preload_before,
        "the real /etc/ld.so.preload changed"
    );
    assert_eq!(outcome.status, "exit 0", "{outcome:#?}");
    let sections = sections(&outcome.stdout);
    assert_eq!(sections.len(), 6, "{outcome:#?}");
    let firewall_like = Config::from_values(Some("60/10/6"), None, None).expect("60/10/6");
    for (name, text) in &sections {
        let secure = name.starts_with("secure");
        let (auxv, euid) = if secure { (1, 0) } else { (0, 65534) };
        assert!(
            text.starts_with(&format!("secure={auxv} euid={euid} shim_mapped=1 socket=1 errno=33\n")),
            "{name}: the shim must really be loaded (and the program AT_SECURE or not): {text}"
        );
        let readout = text.lines().nth(1).expect("readout");
        let log = logs.join(format!("{name}.log"));
        if secure {
            // No variable counts: the same options whatever they say (not
            // the 60/10/6 asked for, not disabled, no complaint about
            // "bogus"), and no file.
            assert_eq!(readout, sections[0].1.lines().nth(1).expect("readout"), "{name}");
            assert_ne!(readout, profile_line(&firewall_like.profile), "{name}");
            assert!(!log.exists(), "{name}: the setuid program opened KAWRAP_LOG");
        } else {
            // The same program without setuid honours them: the setup above
            // would have exposed a shim that read them in the setuid one.
            let want = match name.as_str() {
                "plain-KAWRAP_PROFILE=60" => profile_line(&firewall_like.profile),
                _ => tcp_line(None, None, None).split(" ut=").next().expect("line").to_owned(),
            };
            assert_eq!(readout, want, "{name}");
            assert_eq!(log.exists(), name != "plain-KAWRAP_DISABLE=1", "{name}: log file");
        }
    }
}
