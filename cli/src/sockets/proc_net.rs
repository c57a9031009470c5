//! The fallback listing: `/proc/net/tcp` and `/proc/net/tcp6` (or the same
//! files under `/proc/PID/net/` for another process's network namespace).
//!
//! Each line is `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`:
//! addresses are the in-memory bytes of the network-order address printed
//! as native-endian 32-bit hex words, ports are plain hex, `tr` is the
//! timer kind (the same numbers as sock_diag's `idiag_timer`) and `when` the
//! time left in clock ticks (USER_HZ), also hex.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{TcpSocket, TcpState, Timer};

/// Reads both files of the directory `dir`: `/proc/net` (our network
/// namespace), `/proc/PID/net` (a process's), or `/proc/thread-self/net`
/// (that of the calling thread).
pub fn read_tcp(dir: &str) -> io::Result<Vec<TcpSocket>> {
    let ticks_per_sec = clock_ticks();
    let mut sockets = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("{dir}/{file}");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // tcp6 is missing when IPv6 is disabled.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "tcp6" => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read {path}: {e}"))),
        };
        sockets.extend(text.lines().skip(1).filter_map(|line| parse_line(line, ticks_per_sec)));
    }
    Ok(sockets)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Parses one line; `None` for a line in an unexpected format.
fn parse_line(line: &str, ticks_per_sec: u64) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 {
        return None;
    }
    let local = parse_addr(fields[1])?;
    let remote = parse_addr(fields[2])?;
    let state = u8::from_str_radix(fields[3], 16).ok()?;
    let (kind, when) = fields[5].split_once(':')?;
    let kind = u8::from_str_radix(kind, 16).ok()?;
    let when = u64::from_str_radix(when, 16).ok()?;
    let remaining = Duration::from_millis(when.saturating_mul(1000) / ticks_per_sec);
    Some(TcpSocket {
        state: TcpState(state),
        local,
        remote,
        timer: Timer::from_kernel(kind, remaining),
        uid: fields[7].parse().ok()?,
        inode: fields[9].parse().ok()?,
    })
}

/// `0100007F:1F90` → 127.0.0.1:8080; 32 hex digits for IPv6.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (chunk, out) in addr.as_bytes().chunks(8).zip(bytes.chunks_mut(4)) {
                out.copy_from_slice(&word(std::str::from_utf8(chunk).ok()?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One word as the kernel printed it (`%08X` of the bytes read as a native
/// u32) back to the bytes.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_an_ipv4_line_with_a_keepalive_timer() {
        let line = "   3: 0100007F:A0F4 0100007F:1B58 01 00000000:00000000 02:00007530 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1";
        let socket = parse_line(line, 100).unwrap();
        assert_eq!(socket.local, "127.0.0.1:41204".parse().unwrap());
        assert_eq!(socket.remote, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(socket.state, TcpState::ESTABLISHED);
        // 0x7530 = 30000 ticks at 100 Hz = 300 s.
        assert_eq!(socket.timer, Some(Timer::Keepalive(Duration::from_secs(300))));
        assert_eq!(socket.inode, 123456);
        assert_eq!(socket.uid, 0);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_an_ipv6_line() {
        let line = "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0";
        let socket = parse_line(line, 100).unwrap();
        assert_eq!(socket.local, "[::1]:22".parse().unwrap());
        assert_eq!(socket.state.name(), "LISTEN");
        assert_eq!(socket.timer, None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_line("sl local_address rem_address", 100), None);
        assert_eq!(parse_line("0: zz:1 00:0 01 0:0 00:0 0 0 0 1", 100), None);
    }

    #[test]
    fn our_own_listing_parses() {
        // Every line of this machine's file is in the format we expect.
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        for line in text.lines().skip(1) {
            assert!(parse_line(line, 100).is_some(), "unparsed: {line}");
        }
    }
}
