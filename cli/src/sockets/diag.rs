//! Listing TCP sockets through sock_diag netlink (`NETLINK_SOCK_DIAG`,
//! `SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`), the interface `ss`
//! uses: one dump per address family, millisecond timers.
//!
//! The messages are built and parsed by `netlink-packet-sock-diag` (the
//! rust-netlink project's maintained crate), so no struct layout is
//! written by hand here; this module only sends the two requests and
//! collects the answers.
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{self, ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::{TcpSocket, TcpState, Timer};

/// Dumps every TCP socket (all states, IPv4 and IPv6) of the network
/// namespace `pid` is in, or of ours.
pub fn dump_tcp(pid: Option<u32>) -> io::Result<Vec<TcpSocket>> {
    let socket = match pid {
        Some(pid) if !same_netns(pid)? => socket_in_netns_of(pid)?,
        _ => open()?,
    };
    let mut sockets = dump_family(&socket, AF_INET)?;
    sockets.extend(dump_family(&socket, AF_INET6)?);
    Ok(sockets)
}

fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open a sock_diag netlink socket: {e}")))?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    Ok(socket)
}

/// Whether process `pid` shares our network namespace (same nsfs inode).
fn same_netns(pid: u32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    let ours = std::fs::metadata("/proc/self/ns/net")?;
    Ok(theirs.ino() == ours.ino() && theirs.dev() == ours.dev())
}

/// A sock_diag socket that lives in `pid`'s network namespace.
///
/// A netlink socket answers for the namespace it was created in, so it is
/// created on a short-lived thread that first joins that namespace
/// (`setns(CLONE_NEWNET)` changes only the calling thread, and needs
/// CAP_SYS_ADMIN). The socket keeps that namespace after the thread ends.
fn socket_in_netns_of(pid: u32) -> io::Result<Socket> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: `ns` is an open nsfs file; setns only changes this
                // thread's network namespace, and the thread ends right after.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let error = io::Error::last_os_error();
                    return Err(io::Error::new(
                        error.kind(),
                        format!("cannot enter the network namespace of process {pid}: {error}"),
                    ));
                }
                open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

fn dump_family(socket: &Socket, family: u8) -> io::Result<Vec<TcpSocket>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id,
    });
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut sockets = Vec::new();
    loop {
        // One datagram may hold many messages; recv_from_full peeks at the
        // size first, so no message is ever truncated.
        let (datagram, _) = socket.recv_from_full()?;
        if datagram.is_empty() {
            return Err(io::Error::other("sock_diag: empty answer"));
        }
        let mut offset = 0;
        while offset < datagram.len() {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&datagram[offset..])
                .map_err(|e| io::Error::other(format!("sock_diag: cannot parse the kernel's answer: {e}")))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    sockets.push(convert(&response.header));
                }
                NetlinkPayload::Done(_) => return Ok(sockets),
                NetlinkPayload::Error(error) => {
                    let code = error.code.map_or(0, |c| -c.get());
                    return Err(io::Error::from_raw_os_error(code));
                }
                _ => {}
            }
            if length == 0 {
                return Err(io::Error::other("sock_diag: zero-length message"));
            }
            // Messages are 4-byte aligned inside a datagram.
            offset += (length + 3) & !3;
        }
    }
}

fn convert(header: &inet::InetResponseHeader) -> TcpSocket {
    let id = &header.socket_id;
    let timer = header.timer.as_ref().map(|timer| match *timer {
        inet::Timer::Retransmit(d, _) => Timer::Retransmit(d),
        inet::Timer::KeepAlive(d) => Timer::Keepalive(d),
        // The crate drops the time left on a TIME-WAIT timer.
        inet::Timer::TimeWait => Timer::TimeWait(Duration::ZERO),
        inet::Timer::Probe(d) => Timer::ZeroWindowProbe(d),
    });
    TcpSocket {
        state: TcpState(header.state),
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        timer,
        uid: header.uid,
        inode: u64::from(header.inode),
    }
}
