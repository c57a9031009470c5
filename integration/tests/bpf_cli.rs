//! `kawrap --bpf` and `kawrap bpf attach|status|detach` through the real
//! launcher, on a statically linked program that makes raw system calls —
//! the kind LD_PRELOAD can never reach. The kernel's answer (getsockopt
//! inside the program) is what is asserted.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kawrap_integration::{is_root, kawrap_bin, skip_unless};

/// socket/connect through syscall(2), then prints `SO_KEEPALIVE TCP_KEEPIDLE
/// TCP_KEEPINTVL TCP_KEEPCNT` of its connection and exits 7.
const RAW_CLIENT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
int main(int argc, char **argv) {
    int fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (syscall(SYS_connect, fd, &a, sizeof a)) { perror("connect"); return 3; }
    int v[4]; socklen_t l = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v[0], &l);
    getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v[1], &l);
    getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v[2], &l);
    getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v[3], &l);
    printf("%d %d %d %d\n", v[0], v[1], v[2], v[3]);
    return 7;
}
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    client: PathBuf,
    listener: TcpListener,
}

/// `None` (after printing why) when the eBPF mode cannot be tested here.
fn fixture(name: &str) -> Option<Fixture> {
    if skip_unless(is_root(), "the eBPF mode needs root") {
        return None;
    }
    let help = Command::new(kawrap_bin()).args(["bpf", "status"]).output().expect("run kawrap");
    let built = !String::from_utf8_lossy(&help.stderr).contains("built without the eBPF mode");
    if skip_unless(built, "kawrap was built without the eBPF mode (`make` builds it when clang is installed)")
    {
        return None;
    }
    let dir = kawrap_integration::temp_dir(&format!("bpf-cli-{name}"));
    let source = dir.path().join("raw_client.c");
    std::fs::write(&source, RAW_CLIENT).unwrap();
    let client = dir.path().join("raw_client");
    let cc = Command::new("cc").args(["-static", "-O1", "-o"]).arg(&client).arg(&source).output();
    let compiled = cc.as_ref().is_ok_and(|o| o.status.success());
    if skip_unless(compiled, "cannot build a static program (cc -static; needs gcc and libc6-dev)") {
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Some(Fixture { _dir: dir, client, listener })
}

impl Fixture {
    fn port(&self) -> String {
        self.listener.local_addr().unwrap().port().to_string()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn bpf_mode_reaches_a_static_raw_syscall_program_and_leaves_nothing_behind() {
    let Some(fx) = fixture("launch") else { return };
    let port = fx.port();
    let bare = Command::new(&fx.client).arg(&port).output().unwrap();
    assert_eq!(stdout(&bare), "0 7200 75 9", "without kawrap");

    // LD_PRELOAD cannot reach it, and kawrap says so but runs it.
    let preload = Command::new(kawrap_bin())
        .args(["--profile", "firewall"])
        .arg(&fx.client)
        .arg(&port)
        .output()
        .unwrap();
    assert_eq!(stdout(&preload), "0 7200 75 9");
    assert!(String::from_utf8_lossy(&preload.stderr).contains("--bpf"), "the warning points to --bpf");

    let launched = Command::new(kawrap_bin())
        .args(["--bpf", "--profile", "firewall", "--"])
        .arg(&fx.client)
        .arg(&port)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // kawrap names its transient cgroup kawrap-<its pid>-<n>.
    let scope_prefix = format!("kawrap-{}-", launched.id());
    let bpf = launched.wait_with_output().unwrap();
    assert_eq!(stdout(&bpf), "1 60 10 6", "{}", String::from_utf8_lossy(&bpf.stderr));
    assert_eq!(bpf.status.code(), Some(7), "the program's own exit status");

    // A per-port rule applies to its port only.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port().to_string();
    for (target, want) in [(&port, "1 5 2 3"), (&other_port, "1 300 30 5")] {
        let ruled = Command::new(kawrap_bin())
            .args(["--bpf", "--rule", &format!(":{port}=5/2/3"), "--"])
            .arg(&fx.client)
            .arg(target)
            .output()
            .unwrap();
        assert_eq!(stdout(&ruled), want, "port {target}");
    }

    // Nothing of that run stays: not attached (other runs on this machine
    // may be), and its cgroup directory is gone.
    let status = Command::new(kawrap_bin()).args(["bpf", "status"]).output().unwrap();
    assert!(!stdout(&status).contains(&scope_prefix), "nothing stays attached: {}", stdout(&status));
    let root = cgroup2_root().expect("a cgroup2 mount: --bpf just ran in one");
    let left: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|dir| dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&scope_prefix)))
        .collect();
    assert!(left.is_empty(), "the transient cgroup is removed: {left:?}");
}

/// Where cgroup v2 is mounted (kawrap mounts it at /run/kawrap/cgroup2
/// when the system has not).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

/// Every directory below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push(entry.path());
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[test]
fn bpf_attach_covers_an_existing_cgroup_until_detached() {
    let Some(fx) = fixture("attach") else { return };
    let Some(root) = cgroup2_root() else {
        skip_unless(false, "no cgroup2 mount to create a test cgroup in");
        return;
    };
    let cgroup = root.join(format!("kawrap-cli-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("create a test cgroup");
    let run_in_cgroup = |cgroup: &Path| {
        use std::os::unix::process::CommandExt;
        let procs = cgroup.join("cgroup.procs");
        let mut command = Command::new(&fx.client);
        command.arg(fx.port());
        // SAFETY: only async-signal-safe work between fork and exec: one
        // write of the child's pid ("0" means the writer) to cgroup.procs.
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        stdout(&command.output().unwrap())
    };
    let kawrap = |args: &[&str]| Command::new(kawrap_bin()).args(args).output().unwrap();
    let path = cgroup.to_str().unwrap();

    let attached = kawrap(&["bpf", "attach", "--cgroup", path, "--profile", "ssh"]);
    assert!(attached.status.success(), "{}", String::from_utf8_lossy(&attached.stderr));
    assert_eq!(run_in_cgroup(&cgroup), "1 60 60 5");
    let status = stdout(&kawrap(&["bpf", "status"]));
    assert!(status.contains(path) && status.contains("profile 60/60/5"), "{status}");

    // Attaching again changes the values live.
    assert!(kawrap(&["bpf", "attach", "--cgroup", path, "--profile", "30/30/10"]).status.success());
    assert_eq!(run_in_cgroup(&cgroup), "1 30 30 10");

    let detached = kawrap(&["bpf", "detach", "--cgroup", path]);
    assert!(detached.status.success(), "{}", String::from_utf8_lossy(&detached.stderr));
    assert_eq!(run_in_cgroup(&cgroup), "0 7200 75 9");
    assert!(!stdout(&kawrap(&["bpf", "status"])).contains(path));

    // A cgroup removed while attached stays pinned: status says so, and
    // detach --cgroup-id (the id attach printed) removes it.
    let attached = kawrap(&["bpf", "attach", "--cgroup", path]);
    let id = stdout(&attached)
        .split("(cgroup id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(str::to_owned)
        .expect("attach prints the cgroup id");
    std::fs::remove_dir(&cgroup).expect("remove the empty cgroup");
    let status = stdout(&kawrap(&["bpf", "status"]));
    assert!(status.contains(&format!("(cgroup removed) (cgroup id {id}")), "{status}");
    let detached = kawrap(&["bpf", "detach", "--cgroup-id", &id]);
    assert!(detached.status.success(), "{}", String::from_utf8_lossy(&detached.stderr));
    assert!(!stdout(&kawrap(&["bpf", "status"])).contains(&format!("cgroup id {id}")));
}

#[test]
fn without_privileges_the_bpf_mode_says_what_to_do_instead() {
    use std::os::unix::fs::PermissionsExt;
    let Some(fx) = fixture("unprivileged") else { return };
    let have = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if skip_unless(have, "needs setpriv (util-linux) to drop root") {
        return;
    }
    // A copy the user nobody can reach (the checkout may be under /root).
    let dir = fx.client.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kawrap = dir.join("kawrap");
    // With cp, not in-process: a parallel test's fork could otherwise inherit
    // our write descriptor and make the exec below fail with ETXTBSY.
    assert!(Command::new("cp").arg(kawrap_bin()).arg(&kawrap).status().unwrap().success());
    for args in [&["--bpf", "--profile", "ssh", "--", "true"][..], &["bpf", "status"][..]] {
        let output = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&kawrap)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{args:?}: {stderr}");
        assert!(stderr.contains("permission denied") && stderr.contains("needs root"), "{args:?}: {stderr}");
        assert!(stderr.contains("LD_PRELOAD mode"), "points to the mode that needs no privileges: {stderr}");
    }
}
