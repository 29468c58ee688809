//! Gratuitous ARP: a new pod announces its address, so neighbours (the node, other pods on
//! the bridge) that cached the address under a previous pod's MAC update their entry.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The ARP request "who has `ip`? tell `ip`" from `mac`, without the Ethernet header.
pub fn packet(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p[4] = 6; // hardware address length
    p[5] = 4; // protocol address length
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac); // sender MAC
    p[14..18].copy_from_slice(&ip.octets()); // sender IP
                                             // target MAC stays zero
    p[24..28].copy_from_slice(&ip.octets()); // target IP = sender IP
    p
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Broadcasts one gratuitous ARP for `ip` from `mac` on device `ifindex` (in the calling
/// thread's namespace).
pub fn announce(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket() takes no pointers; it returns a new descriptor or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just created and nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let ifindex = i32::try_from(ifindex)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let to = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    let payload = packet(mac, ip);
    // SAFETY: `payload` and `to` are live for the call and their lengths are passed with them.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_bytes() {
        let p = packet([0x0a, 1, 2, 3, 4, 5], Ipv4Addr::new(10, 32, 1, 2));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths, request
                0x0a, 1, 2, 3, 4, 5, 10, 32, 1, 2, // sender
                0, 0, 0, 0, 0, 0, 10, 32, 1, 2, // target
            ]
        );
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("0a:ff:00:01:20:ab"),
            Some([0x0a, 0xff, 0, 1, 0x20, 0xab])
        );
        assert_eq!(parse_mac("0a:ff:00:01:20"), None);
        assert_eq!(parse_mac("0a:ff:00:01:20:ab:cd"), None);
        assert_eq!(parse_mac("zz:ff:00:01:20:ab"), None);
    }
}
