//! Parsers of single values; each says why, for a person, when the value is invalid.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Port of a peer given without one.
pub const DEFAULT_PEER_PORT: u16 = 6783;

/// A seed peer as given: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// Host name or IP address literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The advertised address as given: the IP may be left to discovery at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertiseSpec {
    /// The IP address, `None` to use the address of the outgoing interface.
    pub ip: Option<IpAddr>,
    /// The port (the listen port unless given).
    pub port: u16,
}

/// Why a configuration value is invalid. The message is written for the person who gave it
/// (the field and the value are named by [`super::ConfigError::Invalid`] around it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not `IP:PORT`.
    #[error("expected IP:PORT, e.g. 127.0.0.1:6784")]
    SocketAddr,
    /// A port that is not 1 to 65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    /// Not `IP` or `IP:PORT`.
    #[error("expected IP or IP:PORT, e.g. 192.168.1.10")]
    Advertise,
    /// Unspecified, multicast, or port 0.
    #[error("must be an address other peers can dial")]
    NotDialable,
    /// Not `HOST[:PORT]`.
    #[error("expected HOST[:PORT] with a host name or IP address")]
    Peer,
    /// Not a Linux interface name.
    #[error("must be 1 to 15 printable characters without '/', ':' or spaces")]
    Ifname,
    /// Not a boolean.
    #[error("expected true or false")]
    Boolean,
    /// Not a duration.
    #[error("expected a duration such as 24h, 90m, 1h30m or 45s")]
    Duration,
    /// A duration of zero where time must pass.
    #[error("must be longer than zero")]
    ZeroDuration,
    /// Not an IPv4 CIDR.
    #[error("expected an IPv4 CIDR, e.g. 10.32.0.0/12")]
    Cidr,
    /// A CIDR with host bits set.
    #[error("not a network address (did you mean {0}?)")]
    NotNetworkAddress(Ipv4Net),
    /// A block size the cluster range cannot be divided into.
    #[error("must be from {} (the prefix of the cluster range {cluster}) to {max}", cluster.prefix_len())]
    SubnetPrefix {
        /// The cluster range.
        cluster: Ipv4Net,
        /// The longest prefix allowed.
        max: u8,
    },
    /// An empty value where one is needed.
    #[error("must not be empty")]
    Empty,
    /// A count outside its range.
    #[error("expected a whole number from {min} to {max}")]
    Count {
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Not a log format.
    #[error("expected text or json")]
    LogFormat,
    /// Not a peer name.
    #[error(transparent)]
    PeerName(#[from] overlay_proto::peer::NameError),
}

/// A whole number from `min` to `max`.
pub fn count(s: &str, min: usize, max: usize) -> Result<usize, Invalid> {
    match s.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Invalid::Count { min, max }),
    }
}

/// `IP:PORT`.
pub fn socket_addr(s: &str) -> Result<SocketAddr, Invalid> {
    s.trim().parse().map_err(|_| Invalid::SocketAddr)
}

fn port(s: &str) -> Result<u16, Invalid> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(Invalid::Port(s.to_owned())),
        Ok(p) => Ok(p),
    }
}

/// `IP[:PORT]`, an address peers can reach.
pub fn advertise(s: &str, default_port: u16) -> Result<AdvertiseSpec, Invalid> {
    let s = s.trim();
    let (ip, port) = if let Ok(sa) = s.parse::<SocketAddr>() {
        (sa.ip(), sa.port())
    } else if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
        (ip, default_port)
    } else {
        return Err(Invalid::Advertise);
    };
    if ip.is_unspecified() || ip.is_multicast() || port == 0 {
        return Err(Invalid::NotDialable);
    }
    Ok(AdvertiseSpec { ip: Some(ip), port })
}

/// `HOST[:PORT]` (IPv6 literals in brackets when a port is given).
pub fn peer(s: &str) -> Result<PeerAddr, Invalid> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(PeerAddr {
            host: sa.ip().to_string(),
            port: sa.port(),
        });
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(PeerAddr {
            host: ip.to_string(),
            port: DEFAULT_PEER_PORT,
        });
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (s, DEFAULT_PEER_PORT),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(Invalid::Peer);
    }
    Ok(PeerAddr {
        host: host.to_owned(),
        port: p,
    })
}

/// A Linux network interface name.
pub fn ifname(s: &str) -> Result<String, Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Invalid::Ifname)
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn boolean(s: &str) -> Result<bool, Invalid> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Invalid::Boolean),
    }
}

/// A duration such as `24h`, `90m`, `1h30m`, `45s`, `500ms`, `2d`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, Invalid> {
    let s = s.trim();
    let bad = || Invalid::Duration;
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_ms: u64 = match &rest[digits..digits + unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(bad)?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// The hostname of this machine, if it can be read.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "10x", "1.5h", "-1h", "99999999999999999999d"] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn peers() {
        let p = |h: &str, port| {
            Ok(PeerAddr {
                host: h.into(),
                port,
            })
        };
        assert_eq!(peer("10.0.0.1"), p("10.0.0.1", 6783));
        assert_eq!(peer("10.0.0.1:7000"), p("10.0.0.1", 7000));
        assert_eq!(peer("node-2.example"), p("node-2.example", 6783));
        assert_eq!(peer("node-2:1"), p("node-2", 1));
        assert_eq!(peer("[::1]:9"), p("::1", 9));
        assert_eq!(peer("::1"), p("::1", 6783));
        for bad in [
            "",
            "a b",
            "node:0",
            "node:x",
            "node:70000",
            "a..b",
            "http://x",
        ] {
            assert!(peer(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(peer("[::1]:9").map(|p| p.to_string()), Ok("[::1]:9".into()));
    }

    #[test]
    fn advertise_addresses() {
        let a = advertise("192.168.1.5", 6783).expect("valid");
        assert_eq!((a.ip, a.port), (Some([192, 168, 1, 5].into()), 6783));
        let a = advertise("192.168.1.5:7000", 6783).expect("valid");
        assert_eq!(a.port, 7000);
        for bad in ["0.0.0.0", "224.0.0.1", "host", "1.2.3.4:0", ""] {
            assert!(advertise(bad, 6783).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_names() {
        assert!(ifname("ovl0").is_ok());
        for bad in ["", "a/b", "a b", "sixteen-chars-xx", "..", "eth0:1"] {
            assert!(ifname(bad).is_err(), "{bad:?} accepted");
        }
    }
}
