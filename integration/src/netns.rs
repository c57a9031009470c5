//! A client and a server in two network namespaces joined by a veth pair,
//! and a switch that makes the server vanish without a FIN or RST.
//!
//! The machine has no netem, so a dead peer is simulated with nftables: a
//! `table inet kawrap_test` in the server's namespace drops every packet from
//! and to the client. The client's packets still leave its namespace and
//! its kernel sees nothing but silence — exactly what a crashed host, a
//! pulled cable or a firewall that forgot the connection looks like.
//!
//! Two namespaces rather than one `unshare -rn`: nothing the test does can
//! reach the host's interfaces (the only addresses are 10.200.0.1/.2 on the
//! veth, no routes out), the drop rule is not in the client's own output
//! path (where netfilter would hand `EPERM` back to the client's TCP and
//! change its retry timing), and each test gets its own pair, so tests run
//! concurrently without sharing ports or rules.
//!
//! Names are `kw<pid>x<n>c` / `kw<pid>x<n>s`; [`NetnsPair`] deletes both on drop,
//! including during a panic, and [`NetnsPair::new`] first sweeps pairs left
//! behind by test processes that were killed before their destructors ran.
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The client's address on the veth (inside the client namespace).
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The server's address on the veth (inside the server namespace).
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// Every namespace this module creates starts with this prefix.
const PREFIX: &str = "kw";
/// The nftables table the drop rules live in (inside the server namespace only).
const TABLE: &str = "kawrap_test";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why namespaced tests cannot run here, or `None` when they can: root,
/// `ip` (iproute2) and `nft` (nftables) are needed.
pub fn unavailable_reason() -> Option<String> {
    if !crate::is_root() {
        return Some("needs root (network namespaces, nftables)".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("needs `{tool}` ({package})"));
        }
    }
    None
}

/// Runs a command to completion and fails with its stderr if it does not succeed.
fn run(cmd: &mut Command) -> io::Result<Output> {
    let output = cmd.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// One named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    fn add(name: String) -> io::Result<Self> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Namespace { name };
        run(&mut ns.ip(&["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: `ip` execs the program (no extra
    /// process), so the child's pid is the program's. The child gets its
    /// own process group, so [`crate::process::KillOnDrop`] also reaches what it forks.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program).process_group(0);
        cmd
    }

    /// `ip -n NAME args…`.
    fn ip(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        cmd
    }

    /// Feeds an nftables script to `nft -f -` inside this namespace.
    pub fn nft(&self, script: &str) -> io::Result<()> {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("piped stdin").write_all(script.as_bytes())?;
        let output = child.wait_with_output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "nft in {} failed ({}): {}\nscript:\n{script}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace also destroys its end of the veth (and so
        // the pair) and any nftables tables in it. Processes still inside
        // keep the kernel object alive but not the name; callers kill theirs.
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A client namespace and a server namespace joined by a veth pair:
/// `CLIENT_ADDR/30` ↔ `SERVER_ADDR/30`, no default route in either.
#[derive(Debug)]
pub struct NetnsPair {
    // Field order is drop order: both are deleted either way.
    client: Namespace,
    server: Namespace,
}

impl NetnsPair {
    /// Creates the pair with names unique to this process and call.
    pub fn new() -> io::Result<Self> {
        sweep_orphans();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let client = Namespace::add(format!("{PREFIX}{pid}x{n}c"))?;
        let server = Namespace::add(format!("{PREFIX}{pid}x{n}s"))?;
        // Both ends are created directly inside their namespaces, so the
        // fixed interface names never meet in the host namespace.
        run(Command::new("ip").args([
            "link",
            "add",
            "name",
            "kwc0",
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "name",
            "kws0",
            "netns",
            server.name(),
        ]))?;
        for (ns, dev, addr) in [(&client, "kwc0", CLIENT_ADDR), (&server, "kws0", SERVER_ADDR)] {
            run(&mut ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", dev]))?;
            run(&mut ns.ip(&["link", "set", dev, "up"]))?;
        }
        let pair = NetnsPair { client, server };
        pair.wait_until_reachable()?;
        Ok(pair)
    }

    /// The namespace the program under test runs in.
    pub fn client(&self) -> &Namespace {
        &self.client
    }

    /// The namespace the server runs in.
    pub fn server(&self) -> &Namespace {
        &self.server
    }

    /// The server vanishes: from now on every packet between the two
    /// addresses is dropped in the server's namespace, silently (no RST,
    /// no ICMP), in both directions.
    pub fn cut(&self) -> io::Result<()> {
        self.server.nft(&format!(
            "table inet {TABLE} {{\n\
             \tchain input {{ type filter hook input priority 0; policy accept; ip saddr {CLIENT_ADDR} drop; }}\n\
             \tchain output {{ type filter hook output priority 0; policy accept; ip daddr {CLIENT_ADDR} drop; }}\n\
             }}\n"
        ))
    }

    /// Undoes [`NetnsPair::cut`].
    pub fn restore(&self) -> io::Result<()> {
        self.server.nft(&format!("delete table inet {TABLE}\n"))
    }

    /// Whether the drop rule is installed (read back from nftables itself).
    pub fn is_cut(&self) -> bool {
        self.server
            .command("nft")
            .args(["list", "table", "inet", TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The veth needs a moment after `up` (carrier, duplicate address
    /// detection is IPv6-only): wait until the client namespace has a route
    /// to the server, checked with the kernel's own route lookup.
    fn wait_until_reachable(&self) -> io::Result<()> {
        let dest = SERVER_ADDR.to_string();
        let ready = crate::poll(Duration::from_secs(5), || {
            let out = self.client.ip(&["route", "get", &dest]).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("kwc0")).then_some(())
        });
        ready.ok_or_else(|| io::Error::other(format!("no route to {dest} in {}", self.client.name())))
    }
}

/// Deletes `kw<pid>x…` namespaces whose creating process is gone (a test
/// binary killed by SIGKILL never runs its destructors).
fn sweep_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, tail)) = rest.split_once('x') else {
            continue;
        };
        let ours = pid.parse::<u32>().is_ok()
            && tail.strip_suffix(['c', 's']).is_some_and(|n| n.parse::<u32>().is_ok());
        if ours && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).stderr(Stdio::null()).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_is_created_cut_restored_and_deleted() {
        if crate::skip_unless(unavailable_reason().is_none(), &unavailable_reason().unwrap_or_default()) {
            return;
        }
        let names;
        {
            let pair = NetnsPair::new().expect("create namespace pair");
            names = (pair.client().name().to_string(), pair.server().name().to_string());
            assert!(!pair.is_cut());
            pair.cut().expect("cut");
            assert!(pair.is_cut());
            pair.restore().expect("restore");
            assert!(!pair.is_cut());
            // Nothing leaks into the host namespace.
            let host = Command::new("ip").args(["-o", "link"]).output().unwrap();
            assert!(!String::from_utf8_lossy(&host.stdout).contains("kwc0"));
        }
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(!list.contains(&names.0) && !list.contains(&names.1), "left behind: {list}");
    }

    #[test]
    fn pair_is_deleted_when_a_test_panics() {
        if crate::skip_unless(unavailable_reason().is_none(), &unavailable_reason().unwrap_or_default()) {
            return;
        }
        let name = std::sync::Mutex::new(String::new());
        let result = std::panic::catch_unwind(|| {
            let pair = NetnsPair::new().expect("create namespace pair");
            *name.lock().unwrap() = pair.client().name().to_string();
            panic!("test failure inside the namespaces");
        });
        assert!(result.is_err());
        let name = name.into_inner().unwrap();
        assert!(!name.is_empty());
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
