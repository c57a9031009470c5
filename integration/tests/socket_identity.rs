//! Decisions follow the socket, not the descriptor number: duplicates,
//! numbers closed and refilled behind libc's back, Fast Open, short IPv6
//! addresses, sandboxes, threads, a plugin unloaded before a fork, and
//! listeners inherited from a parent. Every case runs `tests/identity/
//! sockid.c` without and with libkawrap.so: the program must see the same
//! results either way, and the options the kernel holds afterwards (read
//! with getsockopt inside the program) must be what the policy promises.
//! Each test here failed against the shim that trusted descriptor numbers.
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kawrap_integration::probe::{options_line, sysctl};
use kawrap_integration::servers::have_program;
use kawrap_integration::{shim_path, skip_unless, without_kawrap_env};

/// The rule the loopback listener of every case falls under, with a second
/// rule so the shim really consults a list.
const RULES: &str = "127.0.0.0/8=20/10/6,:1=ssh";
const RULE: (i32, i32, i32) = (20, 10, 6);
const PROFILE: &str = "300/30/5";
const MAIN: (i32, i32, i32) = (300, 30, 5);

/// The compiled helper, in a private directory removed at the end.
struct Lab {
    _dir: tempfile::TempDir,
    sockid: PathBuf,
}

impl Lab {
    /// `None` (after printing SKIP) when there is no C compiler.
    fn new() -> Option<Lab> {
        if skip_unless(have_program("cc"), "no C compiler (cc) to build tests/identity/sockid.c") {
            return None;
        }
        let dir = kawrap_integration::temp_dir("identity");
        let sockid = dir.path().join("sockid");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/identity/sockid.c");
        let cc = Command::new("cc")
            .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
            .arg(&sockid)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("run cc");
        assert!(cc.status.success(), "cc sockid.c: {}", String::from_utf8_lossy(&cc.stderr));
        Some(Lab { _dir: dir, sockid })
    }

    /// Runs `sockid ARGS` with `env`, under the shim or not.
    fn run(&self, args: &[&str], env: &[(&str, &str)], shim: bool) -> Run {
        let mut command = Command::new(&self.sockid);
        command.args(args);
        self.output(command, env, shim)
    }

    fn output(&self, mut command: Command, env: &[(&str, &str)], shim: bool) -> Run {
        without_kawrap_env(&mut command).stdin(Stdio::null()).envs(env.iter().copied());
        if shim {
            command.env("LD_PRELOAD", shim_path());
        }
        let output = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the case without and with the shim, asserts the program saw
    /// the same, and returns the read-outs under the shim.
    fn compare(&self, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        let bare = self.run(args, env, false);
        let shimmed = self.run(args, env, true);
        assert_same(&bare, &shimmed, &format!("{args:?} {env:?}"));
        shimmed.readouts()
    }
}

#[derive(Debug)]
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn readouts(&self) -> Vec<String> {
        self.stdout.lines().filter(|l| l.starts_with("keepalive")).map(str::to_owned).collect()
    }

    fn results(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| !l.starts_with("keepalive")).collect()
    }
}

fn assert_same(bare: &Run, shimmed: &Run, what: &str) {
    assert!(bare.status.success(), "{what}: the program failed without kawrap: {bare:#?}");
    assert_eq!(shimmed.status, bare.status, "{what}: status under the shim: {shimmed:#?}");
    assert_eq!(shimmed.results(), bare.results(), "{what}: results differ under the shim");
    assert_eq!(shimmed.stderr, bare.stderr, "{what}: stderr differs under the shim");
    assert!(!bare.results().iter().any(|l| l.ends_with("=0") && l.starts_with("landed")), "{bare:#?}");
}

/// The read-out of a TCP socket with keepalive `on` and these timers.
fn line(keepalive: i32, (idle, intvl, cnt): (i32, i32, i32)) -> String {
    options_line(keepalive, idle, intvl, cnt, 0)
}

fn env<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.to_vec()
}

const DUPLICATES: [&str; 7] =
    ["dup", "dup2", "dup3", "dupfd-cloexec", "scm-rights", "dup-close", "dup-close-reuse"];

#[test]
fn respect_follows_the_socket_through_every_duplicate() {
    let Some(lab) = Lab::new() else { return };
    for method in DUPLICATES {
        // The program turned keepalive off and chose its idle time on the
        // original number, then connects through another one.
        let no_rules = lab.compare(&["dup", method], &env(&[("KAWRAP_PROFILE", PROFILE)]));
        assert_eq!(no_rules, [line(0, (60, MAIN.1, MAIN.2))], "{method}, no rules");
        let rules =
            lab.compare(&["dup", method], &env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)]));
        assert_eq!(rules, [line(0, (60, RULE.1, RULE.2))], "{method}, with rules");
    }
}

/// A duplicate can land on a number where the shim once made a socket that
/// was closed since: what the program sets through the duplicate and
/// through the original is still one socket's choice.
#[test]
fn respect_follows_the_socket_through_a_duplicate_on_a_used_number() {
    let Some(lab) = Lab::new() else { return };
    let no_rules = lab.compare(&["dup-split"], &env(&[("KAWRAP_PROFILE", PROFILE)]));
    assert_eq!(no_rules, [line(0, (60, MAIN.1, MAIN.2))], "no rules");
    let rules = lab.compare(&["dup-split"], &env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)]));
    assert_eq!(rules, [line(0, (60, RULE.1, RULE.2))], "with rules");
}

#[test]
fn python_socket_dup_keeps_the_programs_choice() {
    if skip_unless(have_program("python3"), "python3 not found") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let (listener, addr) = kawrap_integration::loopback_listener();
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_KEEPALIVE,0)\n\
         s.setsockopt(6,socket.TCP_KEEPIDLE,60)\nd=s.dup()\nd.connect(('127.0.0.1',{port}))\n\
         print('keepalive=%d idle=%d intvl=%d cnt=%d ut=%d'%(d.getsockopt(socket.SOL_SOCKET,\
         socket.SO_KEEPALIVE),d.getsockopt(6,socket.TCP_KEEPIDLE),d.getsockopt(6,socket.TCP_KEEPINTVL),\
         d.getsockopt(6,socket.TCP_KEEPCNT),d.getsockopt(6,socket.TCP_USER_TIMEOUT)))\n"
    );
    let python = || {
        let mut command = Command::new("python3");
        command.args(["-c", &script]);
        command
    };
    let env = [("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)];
    let bare = lab.output(python(), &env, false);
    let shimmed = lab.output(python(), &env, true);
    assert_same(&bare, &shimmed, &format!("python3 socket.dup to {addr}"));
    assert_eq!(shimmed.readouts(), [line(0, (60, RULE.1, RULE.2))]);
}

#[test]
fn force_gives_a_duplicate_the_rule_its_socket_got() {
    let Some(lab) = Lab::new() else { return };
    let force = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES), ("KAWRAP_POLICY", "force")]);
    for method in DUPLICATES.iter().filter(|m| !m.starts_with("dup-close")) {
        assert_eq!(lab.compare(&["force-dup", method], &force), [line(1, RULE)], "{method}");
    }
    // The usual close-then-exec in a vfork child must not make the parent
    // forget which rule its socket got.
    assert_eq!(lab.compare(&["vfork-close"], &force), [line(1, RULE)], "vfork child closed it");
}

const CLOSERS: [&str; 6] = ["close-range", "closefrom", "fclose", "__close", "syscall", "dup2"];

#[test]
fn a_number_closed_and_refilled_behind_libcs_back_is_never_trusted() {
    let Some(lab) = Lab::new() else { return };
    let profile = env(&[("KAWRAP_PROFILE", PROFILE)]);
    let rules = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)]);
    let force = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_POLICY", "force")]);
    for closer in CLOSERS {
        for (mark, env, want) in [
            // A raw-syscall socket where a unix socket was: it is TCP.
            ("notcp-raw", &profile, line(1, MAIN)),
            ("notcp-raw", &rules, line(1, RULE)),
            // A raw-syscall socket where a configured TCP socket was: it
            // has nothing yet.
            ("applied-raw", &profile, line(1, MAIN)),
            ("applied-raw", &rules, line(1, RULE)),
            // An accepted TCP socket where a unix socket was: force holds.
            ("notcp-accept", &force, line(1, MAIN)),
        ] {
            let readouts = lab.compare(&["stale", closer, mark], env);
            assert_eq!(readouts, [want], "{closer} {mark} {env:?}");
        }
    }
}

#[test]
fn fast_open_gets_its_destinations_rule() {
    let Some(lab) = Lab::new() else { return };
    let rules = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)]);
    for how in ["sendto", "sendmsg"] {
        assert_eq!(lab.compare(&["tfo", how], &rules), [line(1, RULE)], "MSG_FASTOPEN through {how}");
    }
}

#[test]
fn an_ipv6_address_of_24_bytes_gets_its_rule() {
    if skip_unless(std::net::TcpListener::bind("[::1]:0").is_ok(), "no IPv6 loopback") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let rules = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", "[::1]/128=20/10/6,:1=ssh")]);
    assert_eq!(lab.compare(&["v6-len24"], &rules), [line(1, RULE)]);
}

#[test]
fn a_bad_address_pointer_is_efault_also_where_process_vm_readv_is_denied() {
    let Some(lab) = Lab::new() else { return };
    for case in ["efault", "seccomp-eperm"] {
        for policy in ["respect", "force"] {
            let env = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES), ("KAWRAP_POLICY", policy)]);
            lab.compare(&[case], &env);
            let bare = lab.run(&[case], &env, false);
            assert!(bare.stdout.contains("connect_bad_pointer=-1 errno=14"), "{bare:#?}");
        }
    }
}

#[test]
fn a_hardened_service_with_a_kill_by_default_syscall_filter_gets_its_rule() {
    let Some(lab) = Lab::new() else { return };
    // The program sets TCP_KEEPIDLE=61 after connecting: respect keeps it,
    // force puts the rule's back.
    for (policy, rules, want) in [
        ("respect", RULES, line(1, (61, RULE.1, RULE.2))),
        ("force", RULES, line(1, RULE)),
        ("respect", "", line(1, (61, MAIN.1, MAIN.2))),
        ("force", "", line(1, MAIN)),
    ] {
        let env = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", rules), ("KAWRAP_POLICY", policy)]);
        assert_eq!(lab.compare(&["seccomp-kill"], &env), [want], "{policy} {rules:?}");
    }
}

#[test]
fn fork_after_the_shim_was_dlopened_and_dlclosed() {
    let Some(lab) = Lab::new() else { return };
    let shim = shim_path();
    let shim = shim.to_str().expect("UTF-8 path");
    for env in [vec![], env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_POLICY", "force")])] {
        let run = lab.run(&["dlclose-fork", shim], &env, false);
        assert!(run.status.success(), "{run:#?}");
        assert_eq!(run.results(), ["loaded=1", "unloaded=1", "child=exit 7"], "{env:?}");
    }
}

#[test]
fn no_update_is_lost_between_a_connect_and_a_setsockopt_in_another_thread() {
    let Some(lab) = Lab::new() else { return };
    let rules = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_RULES", RULES)]);
    assert_eq!(lab.compare(&["race", "8000"], &rules), ["keepalive lost=0"]);
}

/// `sockid listen-exec [ka] -- sockid accept-inherited`, the server under
/// the shim (or not), its parent never. Two connections: the shim meets the
/// listener at the first accept, and knows it at the second.
fn inherited(lab: &Lab, configured: bool, env: &[(&str, &str)], shim: bool) -> Run {
    let mut command = Command::new(&lab.sockid);
    command.arg("listen-exec");
    if configured {
        command.arg("ka");
    }
    command.arg("--");
    if shim {
        let mut preload = OsString::from("LD_PRELOAD=");
        preload.push(shim_path());
        command.args([OsStr::new("env"), &preload]);
    }
    command.arg(&lab.sockid).arg("accept-inherited");
    lab.output(command, env, false)
}

#[test]
fn connections_accepted_from_an_inherited_listener_get_the_profile() {
    let Some(lab) = Lab::new() else { return };
    let kernel =
        (sysctl("tcp_keepalive_time"), sysctl("tcp_keepalive_intvl"), sysctl("tcp_keepalive_probes"));
    for (policy, rules) in [("respect", ""), ("respect", RULES), ("force", "")] {
        let env = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_POLICY", policy), ("KAWRAP_RULES", rules)]);
        // Socket activation, inetd: the server never called listen().
        let bare = inherited(&lab, false, &env, false);
        let shimmed = inherited(&lab, false, &env, true);
        assert_same(&bare, &shimmed, "inherited listener");
        assert_eq!(bare.readouts(), [line(0, kernel), line(0, kernel)]);
        assert_eq!(shimmed.readouts(), [line(1, MAIN), line(1, MAIN)], "{policy} {rules}");
        // A listener its maker configured (systemd's KeepAlive=,
        // KeepAliveTimeSec=45): respect keeps that, force does not.
        let bare = inherited(&lab, true, &env, false);
        let shimmed = inherited(&lab, true, &env, true);
        assert_same(&bare, &shimmed, "configured inherited listener");
        let configured = line(1, (45, kernel.1, kernel.2));
        assert_eq!(bare.readouts(), [configured.clone(), configured.clone()]);
        let want = if policy == "force" { line(1, MAIN) } else { configured };
        assert_eq!(shimmed.readouts(), [want.clone(), want], "{policy} {rules}");
        // The program's own listener with keepalive turned off: respect
        // keeps it off for its connections.
        let want = if policy == "force" { line(1, MAIN) } else { line(0, MAIN) };
        assert_eq!(lab.compare(&["listener-off"], &env), [want], "{policy} {rules}");
    }
}

/// Under `respect`, keepalive the program turned off on its listener stays
/// off on the connections it accepts, also once the program sets another
/// keepalive option on one of them.
#[test]
fn keepalive_turned_off_on_a_listener_stays_off_on_its_connections() {
    let Some(lab) = Lab::new() else { return };
    for (policy, rules) in [("respect", ""), ("respect", RULES), ("force", "")] {
        let env = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_POLICY", policy), ("KAWRAP_RULES", rules)]);
        let want = if policy == "force" { line(1, MAIN) } else { line(0, (60, MAIN.1, MAIN.2)) };
        assert_eq!(lab.compare(&["listener-off", "idle"], &env), [want], "{policy} {rules}");
    }
}

/// A listener's record is asked of the kernel at every accept, like any
/// other: one the shim configured, then replaced on its number behind
/// libc's back by an unconfigured one, must not pass its "configured" mark
/// on to the newcomer's connections.
#[test]
fn a_listener_replaced_behind_libcs_back_is_never_trusted() {
    let Some(lab) = Lab::new() else { return };
    for (policy, rules) in [("respect", ""), ("respect", RULES), ("force", "")] {
        let env = env(&[("KAWRAP_PROFILE", PROFILE), ("KAWRAP_POLICY", policy), ("KAWRAP_RULES", rules)]);
        let readouts = lab.compare(&["listener-swap"], &env);
        assert_eq!(readouts, [line(1, MAIN), line(1, MAIN)], "{policy} {rules}");
    }
}
