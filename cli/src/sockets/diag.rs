//! Listing TCP sockets through sock_diag netlink (`NETLINK_SOCK_DIAG`,
//! `SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`), the interface `ss`
//! uses: one dump per address family, millisecond timers.
//!
//! The messages are built and parsed by `netlink-packet-sock-diag` (the
//! rust-netlink project's maintained crate); this module only sends the two
//! requests and collects the answers. The one field read by hand is the
//! time left on a TIME-WAIT timer, which the crate drops.
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{self, ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::netns::Netns;
use super::{TcpSocket, TcpState, Timer};

/// Dumps every TCP socket (all states, IPv4 and IPv6) of `netns`.
pub fn dump_tcp(netns: &Netns) -> io::Result<Vec<TcpSocket>> {
    // A netlink socket answers for the namespace it was created in, and
    // keeps it after the thread that created it is gone.
    let socket = netns.run_in(open)?;
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

fn dump_family(socket: &Socket, family: u8) -> io::Result<Vec<TcpSocket>> {
    let mut sockets = Vec::new();
    for_each_answer(socket, family, |header, message| sockets.push(convert(header, expires(message))))?;
    Ok(sockets)
}

/// Asks for every TCP socket of `family`, and calls `each` with each
/// socket the kernel lists: as the crate parsed it, and the raw message.
fn for_each_answer(
    socket: &Socket,
    family: u8,
    mut each: impl FnMut(&inet::InetResponseHeader, &[u8]),
) -> io::Result<()> {
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
                    each(&response.header, &datagram[offset..]);
                }
                NetlinkPayload::Done(_) => return Ok(()),
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

/// Where `idiag_expires` is in one message: after the 16-byte netlink
/// header, `struct inet_diag_msg` (<linux/inet_diag.h>) has family, state,
/// timer and retrans (one byte each), then the 48-byte `inet_diag_sockid`.
const EXPIRES_OFFSET: usize = 16 + 4 + 48;

/// `idiag_expires` (milliseconds) of the message at the start of `message`.
///
/// The crate parses it for every timer but TIME-WAIT's, whose time left it
/// drops; the kernel fills it in for TIME-WAIT sockets too.
fn expires(message: &[u8]) -> Option<Duration> {
    let bytes = message.get(EXPIRES_OFFSET..EXPIRES_OFFSET + 4)?;
    let millis = u32::from_ne_bytes(bytes.try_into().ok()?);
    Some(Duration::from_millis(millis.into()))
}

fn convert(header: &inet::InetResponseHeader, expires: Option<Duration>) -> TcpSocket {
    let id = &header.socket_id;
    let timer = header.timer.as_ref().map(|timer| match *timer {
        inet::Timer::Retransmit(d, _) => Timer::Retransmit(d),
        inet::Timer::KeepAlive(d) => Timer::Keepalive(d),
        inet::Timer::TimeWait => Timer::TimeWait(expires.unwrap_or_default()),
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

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use socket2::{SockRef, TcpKeepalive};

    use super::*;

    /// The raw `idiag_expires` read at [`EXPIRES_OFFSET`] is the very field
    /// the crate parses for a keepalive timer.
    #[test]
    fn expires_is_read_where_the_crate_reads_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        SockRef::from(&client)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(77)))
            .unwrap();
        // Both ends: a TIME-WAIT socket of an earlier connection may share
        // the local port.
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let mut checked = false;
        for_each_answer(&open().unwrap(), AF_INET, |header, message| {
            let id = &header.socket_id;
            if SocketAddr::new(id.source_address, id.source_port) != local
                || SocketAddr::new(id.destination_address, id.destination_port) != remote
            {
                return;
            }
            let Some(inet::Timer::KeepAlive(parsed)) = header.timer else {
                panic!("no keepalive timer: {header:?}")
            };
            assert_eq!(expires(message), Some(parsed));
            assert!(parsed > Duration::from_secs(70), "{parsed:?}");
            checked = true;
        })
        .unwrap();
        assert!(checked, "our socket was not listed");
    }
}
