//! The destination of a connection, from the address a program gave
//! `connect`, `sendto` or `sendmsg`.
use core::ffi::c_void;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kawrap_core::Destination;

use crate::sys;

/// The shortest IPv6 address the kernel accepts: `sockaddr_in6` without
/// `sin6_scope_id` (SIN6_LEN_RFC2133).
const SOCKADDR_IN6_RFC2133: usize = 24;
const SOCKADDR_IN: usize = core::mem::size_of::<libc::sockaddr_in>();

/// The IPv4/IPv6 destination in the program's `length` bytes at `address`.
///
/// # Safety
/// Only after the kernel accepted this address in the program's own call
/// (it returned success or EINPROGRESS): it copied those bytes itself, so
/// they are readable. Never before — a bad pointer must get the kernel's
/// EFAULT, not a crash in the shim.
pub(crate) unsafe fn destination(address: *const c_void, length: usize) -> Option<Destination> {
    if address.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    let (bytes, length) = unsafe { sys::copy_accepted::<28>(address, length) };
    parse(&bytes[..length])
}

fn parse(bytes: &[u8]) -> Option<Destination> {
    let family = libc::sa_family_t::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    // sockaddr_in: family, port (big-endian), address; sockaddr_in6:
    // family, port, flowinfo, address[, scope id].
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    let ip = match libc::c_int::from(family) {
        libc::AF_INET if bytes.len() >= SOCKADDR_IN => {
            IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]))
        }
        libc::AF_INET6 if bytes.len() >= SOCKADDR_IN6_RFC2133 => {
            let octets: [u8; 16] = bytes[8..24].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(Destination { ip, port })
}
