//! Which offloads the data path uses: the measurement switches that turn them off
//! ([`Disabled`], from `OVERLAY_DATAPATH_DISABLE`) and what the kernel accepted ([`Offloads`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The environment variable holding the switches: a comma-separated list of
/// [`Disabled::NAMES`].
pub const DISABLE_ENV: &str = "OVERLAY_DATAPATH_DISABLE";

/// Offloads switched off for measurement (the benchmark's ablation). All `false` (the
/// default) is the fast path; every combination carries traffic correctly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disabled {
    /// `tun-offload`: a plain TUN (no `IFF_VNET_HDR`, no `TUNSETOFFLOAD`): one IP packet per
    /// read and write, no super-packets, no coalescing.
    pub tun_offload: bool,
    /// `udp-gso`: one `sendmsg` per datagram instead of one per super-packet (`UDP_SEGMENT`).
    pub udp_gso: bool,
    /// `udp-gro`: one datagram per receive instead of a batch (`UDP_GRO`).
    pub udp_gro: bool,
    /// `coalesce`: one TUN write per received packet instead of per coalesced super-packet.
    pub coalesce: bool,
}

/// A name in `OVERLAY_DATAPATH_DISABLE` that is not a switch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{DISABLE_ENV}: unknown data-path switch {name:?} (known: tun-offload, udp-gso, udp-gro, coalesce)")]
pub struct UnknownSwitch {
    /// The name given.
    pub name: String,
}

impl Disabled {
    /// The switch names, in the order of the fields.
    pub const NAMES: [&'static str; 4] = ["tun-offload", "udp-gso", "udp-gro", "coalesce"];

    /// Every combination of switches (16), starting with none.
    pub fn all_combinations() -> impl Iterator<Item = Disabled> {
        (0u8..16).map(|bits| Disabled {
            tun_offload: bits & 1 != 0,
            udp_gso: bits & 2 != 0,
            udp_gro: bits & 4 != 0,
            coalesce: bits & 8 != 0,
        })
    }

    /// Reads [`DISABLE_ENV`] (unset or empty: nothing disabled).
    pub fn from_env() -> Result<Disabled, UnknownSwitch> {
        match std::env::var(DISABLE_ENV) {
            Ok(list) => list.parse(),
            Err(_) => Ok(Disabled::default()),
        }
    }

    fn flags(&self) -> [bool; 4] {
        [self.tun_offload, self.udp_gso, self.udp_gro, self.coalesce]
    }
}

impl FromStr for Disabled {
    type Err = UnknownSwitch;

    /// Parses a comma-separated list of [`Disabled::NAMES`]; blanks around names and empty
    /// items are ignored.
    fn from_str(list: &str) -> Result<Disabled, UnknownSwitch> {
        let mut d = Disabled::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let flag = match name {
                "tun-offload" => &mut d.tun_offload,
                "udp-gso" => &mut d.udp_gso,
                "udp-gro" => &mut d.udp_gro,
                "coalesce" => &mut d.coalesce,
                _ => {
                    return Err(UnknownSwitch {
                        name: name.to_owned(),
                    })
                }
            };
            *flag = true;
        }
        Ok(d)
    }
}

impl fmt::Display for Disabled {
    /// The comma-separated list that parses back to `self` (empty when nothing is disabled).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, on) in Disabled::NAMES.iter().zip(self.flags()) {
            if on {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The offloads a running data path uses: what was asked for, as far as the kernel accepted
/// it. `udp_gso` turns false for good if the kernel refuses a GSO send (`EIO`/`EINVAL`
/// while the same datagrams go out one by one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Offloads {
    /// The TUN carries a virtio-net header (`IFF_VNET_HDR`).
    pub tun_vnet_hdr: bool,
    /// The TUN hands us TCP super-packets and takes them (TSO4/TSO6/TSO_ECN).
    pub tun_tso: bool,
    /// The TUN hands us UDP super-packets and takes them (USO4/USO6, Linux ≥ 6.2).
    pub tun_uso: bool,
    /// Several datagrams per UDP send (`UDP_SEGMENT`).
    pub udp_gso: bool,
    /// Several datagrams per UDP receive (`UDP_GRO`).
    pub udp_gro: bool,
    /// Received TCP segments are coalesced before the TUN write.
    pub coalesce_tcp: bool,
    /// Received UDP datagrams are coalesced before the TUN write.
    pub coalesce_udp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_and_print_back() {
        assert_eq!("".parse(), Ok(Disabled::default()));
        assert_eq!(" , ".parse(), Ok(Disabled::default()));
        let all: Disabled = "tun-offload, udp-gso,udp-gro,coalesce,"
            .parse()
            .expect("all");
        assert_eq!(all.flags(), [true; 4]);
        for d in Disabled::all_combinations() {
            assert_eq!(d.to_string().parse(), Ok(d), "{d}");
        }
        assert_eq!(Disabled::all_combinations().count(), 16);
        assert_eq!(
            "udp-gso".parse::<Disabled>(),
            Ok(Disabled {
                udp_gso: true,
                ..Disabled::default()
            })
        );
    }

    #[test]
    fn unknown_switches_are_refused_by_name() {
        let e = "udp-gso,gro".parse::<Disabled>().expect_err("unknown");
        assert_eq!(e.name, "gro");
        let msg = e.to_string();
        assert!(
            msg.contains(DISABLE_ENV) && msg.contains("\"gro\"") && msg.contains("udp-gro"),
            "{msg}"
        );
        assert!("UDP-GSO".parse::<Disabled>().is_err(), "names are exact");
    }
}
