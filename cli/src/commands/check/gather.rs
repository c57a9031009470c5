//! Finding the sockets `kawrap check` looks at, and reading each one.
//!
//! Without a process selection: every TCP socket of kawrap's own network
//! namespace, as `ss` lists them. With one: every TCP socket the selected
//! processes hold a descriptor for, wherever it lives — the namespaces the
//! processes are in now are listed first; a socket found in none of them
//! (its owner moved on with `unshare` or `setns`) is asked for its own
//! namespace through a copy (`SIOCGSKNS`), which is then listed too. A
//! socket that cannot be found either way is kept, as not found, so that
//! it is reported rather than dropped.
//!
//! The copies (`pidfd_getfd`) are taken one owner at a time and closed at
//! once: kawrap never holds more than a pidfd and a copy, however many
//! processes own sockets.
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use crate::bpf_mode::Attachments;
use crate::error::Error;
use crate::processes;
use crate::sockets::netns::{Netns, NetnsId};
use crate::sockets::owners::{self, Owner, OwnerMap};
use crate::sockets::remote::{self, AccessError, KeepaliveOptions, Pidfd};
use crate::sockets::{self, Listing, Source, TcpSocket, TcpState, Timer};

/// Which sockets to keep, besides the process selection.
#[derive(Debug, Default)]
pub struct Filter {
    /// `--port`: either end.
    pub port: Option<u16>,
    /// `--dst`: the peer's address.
    pub dst: Option<Network>,
}

impl Filter {
    /// Whether `socket` passes; a socket not found (`None`) always does:
    /// nobody can tell it does not match.
    fn keeps(&self, socket: Option<&TcpSocket>) -> bool {
        let Some(socket) = socket else { return true };
        self.port.is_none_or(|port| socket.local.port() == port || socket.remote.port() == port)
            && self.dst.as_ref().is_none_or(|net| net.contains(socket.remote.ip()))
    }
}

/// Why a socket's options are not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unread {
    /// No process holds it (TIME-WAIT, not yet accepted, orphaned).
    NoOwner,
    /// No copy may be taken: the owner is another user's and kawrap has no
    /// ptrace rights over it. The timer is the kernel's view all the same.
    Denied(String),
    /// A copy could not be taken or read for another reason (the process
    /// ended, kawrap ran out of descriptors…).
    Failed(String),
}

impl Unread {
    /// The reason, for a person.
    pub fn reason(&self) -> &str {
        match self {
            Unread::NoOwner => "no process holds it",
            Unread::Denied(reason) | Unread::Failed(reason) => reason,
        }
    }
}

/// One socket with everything known about it.
#[derive(Debug)]
pub struct Row {
    /// As a listing showed it, or as read from a copy; `None` when the
    /// socket was found in no listing and no copy could be taken.
    pub socket: Option<TcpSocket>,
    /// The socket's inode: what its owners' descriptors link to.
    pub inode: u64,
    /// Where it was listed; `None` when known from a copy only (then its
    /// timer is unknown).
    pub listed_by: Option<Source>,
    /// The descriptors that refer to it.
    pub owners: Vec<Owner>,
    /// getsockopt on a copy, or why there is none.
    pub options: Result<KeepaliveOptions, Unread>,
}

/// What `--expect` and `--keep-under` can judge an established socket by.
#[derive(Debug)]
pub enum Evidence<'a> {
    /// Its options, read from a copy, and the kernel's timer.
    Options(&'a KeepaliveOptions, Option<Timer>),
    /// The kernel's timer alone: the socket was listed, but no copy of it
    /// may be taken (or no process holds it); the reason is why.
    Timer(Option<Timer>, &'a str),
    /// Nothing: not found, or its options unreadable for a reason the
    /// timer cannot make up for. The text says which, and why.
    Nothing(String),
}

impl Row {
    /// What this socket can be judged by; `None` for one that is not
    /// established, which is not judged.
    pub fn evidence(&self) -> Option<Evidence<'_>> {
        let Some(socket) = &self.socket else {
            return Some(Evidence::Nothing(format!("not found: {}", self.options.as_ref().err()?.reason())));
        };
        if socket.state != TcpState::ESTABLISHED {
            return None;
        }
        Some(match &self.options {
            Ok(options) => Evidence::Options(options, socket.timer),
            // Listed, so the kernel's timer is known.
            Err(unread @ (Unread::NoOwner | Unread::Denied(_))) if self.listed_by.is_some() => {
                Evidence::Timer(socket.timer, unread.reason())
            }
            Err(unread) => Evidence::Nothing(format!("options not readable: {}", unread.reason())),
        })
    }
}

/// Whether kawrap reaches a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    /// libkawrap.so is mapped (`None`: its maps cannot be read).
    pub preload: Option<bool>,
    /// Its cgroup is covered by kawrap's eBPF program (`None`: unknown).
    pub bpf: Option<bool>,
}

/// Everything `kawrap check` found.
#[derive(Debug)]
pub struct Gathered {
    /// The sockets, in listing order; sockets found through a copy last.
    pub rows: Vec<Row>,
    /// For each owning process, whether kawrap is loaded there.
    pub loaded: HashMap<u32, Loaded>,
    /// Where the sockets were read from (sock_diag unless it failed).
    pub source: Source,
    /// Things a person should know: a fallback, processes that could not
    /// be looked into, an unknown eBPF coverage.
    pub notes: Vec<String>,
}

/// Finds and reads the sockets: of `selected` processes, or all of our
/// network namespace.
pub fn gather(
    selected: Option<&[u32]>,
    filter: &Filter,
    attachments: &Attachments,
) -> Result<Gathered, Error> {
    // Owners first: a --pid that does not exist, or may not be looked
    // into, fails here with its own reason, before any listing is tried.
    let (owner_map, unreadable) = owners::scan(selected).map_err(|(pid, error)| match pid {
        Some(pid) => Error::from(AccessError::from_proc(pid, error)),
        None => Error::io("cannot read /proc", error),
    })?;
    let mut notes = Vec::new();
    if unreadable > 0 && selected.is_none() {
        notes.push(format!(
            "{unreadable} processes of other users could not be looked into, so their sockets show no owner: \
             run as root."
        ));
    }
    let mut listings = Listings::default();
    let ours = Netns::ours().map_err(|error| Error::io("cannot open /proc/self/ns/net", error))?;
    listings
        .list(&ours)
        .map_err(|error| Error::io("cannot list TCP sockets (sock_diag and /proc/net/tcp)", error))?;
    for &pid in selected.unwrap_or_default() {
        // A process that ended meanwhile has no namespace left to list.
        if let Ok(netns) = Netns::of_process(pid) {
            if let Err(error) = listings.list(&netns) {
                notes.push(format!("the network namespace of process {pid} cannot be listed: {error}"));
            }
        }
    }

    let mut rows = Vec::new();
    let mut listed = HashSet::new();
    for (source, socket) in listings.sockets() {
        let owners = owner_map.get(&socket.inode).filter(|_| socket.inode != 0).cloned().unwrap_or_default();
        // With a selection, only the selected processes' sockets (the map
        // holds nothing else).
        if (selected.is_some() && owners.is_empty())
            || !listed.insert((socket.inode, socket.local, socket.remote))
        {
            continue;
        }
        rows.push(Row {
            socket: Some(socket.clone()),
            inode: socket.inode,
            listed_by: Some(source),
            owners,
            options: Err(Unread::NoOwner),
        });
    }
    if selected.is_some() {
        let listed: HashSet<u64> = rows.iter().map(|row| row.inode).collect();
        rows.extend(unlisted_tcp(&owner_map, &listed));
    }
    rows.retain(|row| filter.keeps(row.socket.as_ref()));
    read_options(&mut rows, &mut listings);
    rows.retain(|row| filter.keeps(row.socket.as_ref()));

    if let Some(reason) = &listings.fallback_reason {
        notes.push(format!("read from {} (sock_diag unavailable: {reason})", Source::ProcNet.name()));
    }
    let (loaded, bpf_unknown) = loaded(&rows, attachments);
    if let Some(reason) = bpf_unknown.filter(|_| !rows.is_empty()) {
        notes.push(format!("whether kawrap's eBPF mode covers these processes is unknown: {reason}"));
    }
    Ok(Gathered { rows, loaded, source: listings.source, notes })
}

/// The TCP sockets of the listed network namespaces, each namespace once.
#[derive(Default)]
struct Listings {
    done: HashSet<NetnsId>,
    sockets: Vec<(Source, TcpSocket)>,
    source: Source,
    fallback_reason: Option<String>,
}

impl Listings {
    /// Lists `netns` unless it was listed already.
    fn list(&mut self, netns: &Netns) -> std::io::Result<()> {
        if self.done.contains(&netns.id()) {
            return Ok(());
        }
        let Listing { sockets, source, fallback_reason } = sockets::list_tcp(netns)?;
        self.done.insert(netns.id());
        if fallback_reason.is_some() {
            self.source = source;
            self.fallback_reason = fallback_reason;
        }
        self.sockets.extend(sockets.into_iter().map(|socket| (source, socket)));
        Ok(())
    }

    fn sockets(&self) -> impl Iterator<Item = (Source, &TcpSocket)> {
        self.sockets.iter().map(|(source, socket)| (*source, socket))
    }

    fn find(&self, inode: u64) -> Option<(Source, &TcpSocket)> {
        self.sockets().find(|(_, socket)| socket.inode == inode)
    }
}

/// The TCP sockets in `owner_map` that no listing showed: rows to be
/// found through a copy, or reported as not found.
fn unlisted_tcp(owner_map: &OwnerMap, listed: &HashSet<u64>) -> Vec<Row> {
    let mut rows: Vec<Row> = owner_map
        .iter()
        .filter(|(inode, _)| !listed.contains(inode))
        .filter(|(_, owners)| {
            // Most unlisted sockets are unix or UDP ones: the kernel names
            // the protocol of each descriptor without a copy.
            owners.first().is_some_and(|o| owners::protocol(o.pid, o.fd).is_ok_and(|p| owners::is_tcp(&p)))
        })
        .map(|(&inode, owners)| Row {
            socket: None,
            inode,
            listed_by: None,
            owners: owners.clone(),
            options: Err(Unread::Failed(
                "it lives in a network namespace none of its owners is in, and no copy of it could be taken to \
                 find that namespace"
                    .to_owned(),
            )),
        })
        .collect();
    rows.sort_by_key(|row| (row.owners[0].pid, row.owners[0].fd));
    rows
}

/// Takes a copy of each owned socket (pidfd_getfd), reads its options and
/// closes it. One owner at a time: its pidfd is closed before the next
/// one is opened. A socket no listing showed is looked for in its own
/// network namespace.
fn read_options(rows: &mut [Row], listings: &mut Listings) {
    let mut by_owner: Vec<(u32, Vec<usize>)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let Some(owner) = row.owners.first() else { continue };
        match by_owner.iter_mut().find(|(pid, _)| *pid == owner.pid) {
            Some((_, indices)) => indices.push(index),
            None => by_owner.push((owner.pid, vec![index])),
        }
    }
    for (pid, indices) in by_owner {
        let pidfd = match Pidfd::open(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                let unread = unread(&error);
                for index in indices {
                    keep_first_reason(&mut rows[index], unread.clone());
                }
                continue;
            }
        };
        for index in indices {
            let row = &mut rows[index];
            match pidfd.dup(row.owners[0].fd) {
                Ok(copy) => read_copy(row, copy, listings),
                Err(error) => keep_first_reason(row, unread(&error)),
            }
        }
        // The pidfd is closed here, before the next owner's is opened.
    }
}

/// A row's reason, unless it already has a more telling one (a socket not
/// found keeps saying so when no copy could be taken either).
fn keep_first_reason(row: &mut Row, unread: Unread) {
    row.options = match (row.socket.is_some(), &row.options) {
        (false, Err(Unread::Failed(why))) => Err(Unread::Failed(format!("{why} ({})", unread.reason()))),
        _ => Err(unread),
    };
}

fn unread(error: &AccessError) -> Unread {
    match error {
        AccessError::Permission { .. } => Unread::Denied(error.to_string()),
        _ => Unread::Failed(error.to_string()),
    }
}

/// Reads the options of a copy, after making sure it is still the socket
/// that was listed (the descriptor may have been closed and reused since);
/// fills in a socket no listing showed. The copy is closed on return.
fn read_copy(row: &mut Row, copy: OwnedFd, listings: &mut Listings) {
    let copy = File::from(copy);
    match copy.metadata() {
        Ok(meta) if meta.ino() == row.inode => {}
        Ok(_) => {
            return row.options =
                Err(Unread::Failed("the descriptor now refers to another socket".to_owned()));
        }
        Err(error) => return row.options = Err(Unread::Failed(format!("fstat: {error}"))),
    }
    if row.socket.is_none() {
        locate(row, &copy, listings);
    }
    row.options = KeepaliveOptions::read(&copy).map_err(|e| Unread::Failed(format!("getsockopt: {e}")));
}

/// A socket no listing showed: list the namespace it lives in; failing
/// that, describe it from the copy alone (its timer then stays unknown).
fn locate(row: &mut Row, copy: &File, listings: &mut Listings) {
    if let Ok(netns) = Netns::of_socket(copy) {
        if listings.list(&netns).is_ok() {
            if let Some((source, socket)) = listings.find(row.inode) {
                row.socket = Some(socket.clone());
                row.listed_by = Some(source);
                return;
            }
        }
    }
    if let Some(endpoint) = remote::tcp_endpoint(copy) {
        let unspecified = std::net::SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        row.socket = Some(TcpSocket {
            state: endpoint.state,
            local: endpoint.local.unwrap_or(unspecified),
            remote: endpoint.remote.unwrap_or(unspecified),
            timer: None,
            uid: copy.metadata().map(|m| m.uid()).unwrap_or_default(),
            inode: row.inode,
        });
    }
}

/// Whether kawrap is loaded in each owning process, and why eBPF coverage
/// is unknown, if it is.
fn loaded(rows: &[Row], attachments: &Attachments) -> (HashMap<u32, Loaded>, Option<String>) {
    let pids: HashSet<u32> = rows.iter().flat_map(|row| row.owners.iter().map(|o| o.pid)).collect();
    if pids.is_empty() {
        return (HashMap::new(), None);
    }
    let covered = attachments.covered_processes(&pids.iter().copied().collect::<Vec<_>>());
    let loaded = pids
        .into_iter()
        .map(|pid| {
            let preload = processes::maps_file_named(pid, "libkawrap.so").ok();
            let bpf = covered.as_ref().ok().map(|covered| covered.contains(&pid));
            (pid, Loaded { preload, bpf })
        })
        .collect();
    (loaded, covered.err())
}

/// `--dst`: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    len: u8,
}

impl Network {
    /// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`; an IPv4-mapped IPv6
    /// network (`::ffff:10.1.2.3`, as ss prints a dual-stack socket's
    /// peer) means the IPv4 one.
    pub fn parse(text: &str) -> Result<Network, Error> {
        let invalid = |reason: String| Error::Invalid {
            message: format!("--dst {text:?}: {reason}"),
            hint: "accepted: an address or a network, e.g. 192.0.2.7, 10.0.0.0/8, 2001:db8::/32, \
                   ::ffff:192.0.2.7"
                .to_owned(),
        };
        let (addr, len) = match text.trim().split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid(format!("{addr:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => match len.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(invalid(format!("prefix length {len:?} is out of range 0..={max}"))),
            },
        };
        Ok(match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Network { addr: IpAddr::V4(v4), len: len - 96 },
                None => Network { addr, len },
            },
            _ => Network { addr, len },
        })
    }

    /// Whether `ip` is inside; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// An established socket 127.0.0.1:40000 -> 127.0.0.1:5432, listed by
/// sock_diag: what the judging and metrics tests start from.
#[cfg(test)]
pub fn established_row(
    options: Result<KeepaliveOptions, Unread>,
    timer: Option<Timer>,
    owners: Vec<Owner>,
) -> Row {
    Row {
        socket: Some(TcpSocket {
            state: TcpState::ESTABLISHED,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:5432".parse().unwrap(),
            timer,
            uid: 0,
            inode: 1,
        }),
        inode: 1,
        listed_by: Some(Source::SockDiag),
        owners,
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.0.2".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Network::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").unwrap_err().to_string().contains("out of range 0..=32"));
        assert!(Network::parse("db").unwrap_err().to_string().contains("not an IP address"));
    }

    #[test]
    fn an_ipv4_mapped_network_is_the_ipv4_one() {
        assert_eq!(Network::parse("::ffff:127.0.0.1").unwrap(), Network::parse("127.0.0.1").unwrap());
        assert_eq!(Network::parse("::ffff:10.0.0.0/104").unwrap(), Network::parse("10.0.0.0/8").unwrap());
        let mapped = Network::parse("::ffff:127.0.0.1").unwrap();
        assert!(mapped.contains("127.0.0.1".parse().unwrap()));
        assert!(mapped.contains("::ffff:127.0.0.1".parse().unwrap()));
        // Shorter than the mapped prefix: an IPv6 network like any other.
        assert!(!Network::parse("::ffff:0:0/95").unwrap().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_socket_not_found_passes_every_filter() {
        let filter = Filter { port: Some(1), dst: Some(Network::parse("10.0.0.0/8").unwrap()) };
        assert!(filter.keeps(None));
    }
}
