//! Addresses found at start: the default advertised IP and the seed peers' addresses.

use super::PeerAddr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// The default advertised IP: the local address the kernel picks towards `first_seed`, else
/// the first non-loopback IPv4 address of an interface that is up.
pub fn default_advertise_ip(first_seed: Option<SocketAddr>) -> Option<IpAddr> {
    first_seed
        .and_then(source_address_towards)
        .or_else(|| first_ipv4_of_up_interface().map(IpAddr::V4))
}

/// The source address of packets to `dest` (a UDP "connect" sends nothing).
fn source_address_towards(dest: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(dest).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn first_ipv4_of_up_interface() -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs stores a pointer to a list it allocates in `list`; it is freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list from getifaddrs, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        if up && !loopback && !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` is non-null and points to a sockaddr owned by the list.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_unspecified() {
                    found = Some(ip);
                    break;
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Why a seed peer has no address (yet).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver did not answer within [`RESOLVE_TIMEOUT`].
    #[error("resolving {0} timed out")]
    Timeout(PeerAddr),
    /// The resolver answered with an error.
    #[error("cannot resolve {peer}: {source}")]
    Lookup {
        /// The peer as given.
        peer: PeerAddr,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The name exists but has no address.
    #[error("{0} resolves to no address")]
    NoAddress(PeerAddr),
}

/// How long [`resolve_peer`] waits for the resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves a seed peer to one address (IPv4 preferred), within [`RESOLVE_TIMEOUT`].
pub async fn resolve_peer(peer: &PeerAddr) -> Result<SocketAddr, ResolveError> {
    let lookup = tokio::net::lookup_host((peer.host.as_str(), peer.port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| ResolveError::Timeout(peer.clone()))?
        .map_err(|source| ResolveError::Lookup {
            peer: peer.clone(),
            source,
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(peer.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_towards_loopback_is_not_advertised() {
        assert_eq!(source_address_towards(([127, 0, 0, 1], 6783).into()), None);
    }

    #[tokio::test]
    async fn literal_and_localhost_seeds_resolve() {
        let p = PeerAddr {
            host: "10.1.2.3".into(),
            port: 7,
        };
        assert_eq!(resolve_peer(&p).await.ok(), Some(([10, 1, 2, 3], 7).into()));
        let p = PeerAddr {
            host: "localhost".into(),
            port: 7,
        };
        assert!(resolve_peer(&p).await.is_ok_and(|a| a.ip().is_loopback()));
        let p = PeerAddr {
            host: "no-such-host.invalid".into(),
            port: 7,
        };
        assert!(resolve_peer(&p).await.is_err());
    }
}
