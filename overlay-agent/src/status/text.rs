//! The text view of [`Status`] printed by `overlay-agent status`.

use super::{connections, PeerStatus, Status, TargetState};
use crate::datapath::{CountersSnapshot, Offloads};
use std::fmt::Write;

/// Renders `s` for a person: a header of `Key: value` lines (the layout of `weave status`),
/// then the peer table and the failing targets.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let dash = || "-".to_owned();
    let line = |out: &mut String, key: &str, value: String| {
        let _ = writeln!(out, "{key:>14}: {value}");
    };
    line(
        &mut out,
        "Name",
        format!("{} (instance {})", s.name, s.instance),
    );
    line(&mut out, "Advertised", s.advertise.to_string());
    let encryption = match &s.auth {
        None => "disabled".to_owned(),
        Some(a) => {
            let mut e = format!("control plane (Noise, secret {}", a.secret_current);
            if let Some(next) = &a.secret_next {
                let _ = write!(e, ", next {next}");
            }
            match &s.encryption {
                Some(d) => {
                    let _ = write!(e, "); data path ({})", d.suite);
                }
                None => e.push_str("); data path not encrypted"),
            }
            e
        }
    };
    line(&mut out, "Encryption", encryption);
    line(&mut out, "PeerDiscovery", "enabled".to_owned());
    let targets = s
        .targets
        .iter()
        .filter(|t| t.state != TargetState::IsSelf)
        .count();
    line(&mut out, "Targets", targets.to_string());
    line(
        &mut out,
        "Connections",
        connections::summary(&connections::connections(s)),
    );
    let reachable = s.peers.iter().filter(|p| p.reachable).count();
    line(
        &mut out,
        "Peers",
        format!("{} ({reachable} reachable)", s.peers.len()),
    );
    line(&mut out, "Range", s.cluster.to_string());
    line(
        &mut out,
        "Subnet",
        s.subnet.map_or_else(dash, |n| n.to_string()),
    );
    line(
        &mut out,
        "Address",
        s.address.map_or_else(dash, |a| a.to_string()),
    );
    let device = if s.iface.is_empty() { "?" } else { &s.iface };
    line(&mut out, "Device", format!("{device} (MTU {})", s.mtu));
    line(
        &mut out,
        "Ready",
        if s.ready { "yes" } else { "no" }.to_owned(),
    );
    line(
        &mut out,
        "Gossip",
        format!(
            "sent {} messages ({}), received {} ({})",
            s.control.gossip_sent,
            bytes(s.control_traffic.gossip_sent_bytes),
            s.control.gossip_received,
            bytes(s.control_traffic.gossip_received_bytes)
        ),
    );
    line(&mut out, "Data path", datapath_summary(&s.datapath));
    line(&mut out, "Offloads", offloads_summary(&s.offloads));
    if s.rejected_connections > 0 {
        line(
            &mut out,
            "Rejected",
            format!(
                "{} connections (too many in handshake)",
                s.rejected_connections
            ),
        );
    }
    if let Some(auth) = &s.auth {
        let next = auth
            .secret_next
            .as_ref()
            .map(|n| format!(", next {n}"))
            .unwrap_or_default();
        line(
            &mut out,
            "Secret",
            format!(
                "current {}{next} (identity {})",
                auth.secret_current, auth.identity
            ),
        );
    }
    let refused: Vec<String> = s
        .control_traffic
        .handshakes_refused
        .by_reason()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    if !refused.is_empty() {
        line(
            &mut out,
            "Refused",
            format!("handshakes: {}", refused.join(", ")),
        );
    }

    if !s.peers.is_empty() {
        out.push('\n');
        out.push_str(&render_peers(&s.peers));
    }

    let failing: Vec<_> = s.targets.iter().filter(|t| t.failures > 0).collect();
    if !failing.is_empty() {
        out.push_str("\nFailing targets:\n");
        for t in failing {
            let _ = write!(out, "  {} ({} failures", t.address, t.failures);
            if let Some(secs) = t.retry_in_secs {
                let _ = write!(out, ", retry in {secs}s");
            }
            let _ = writeln!(
                out,
                "): {}",
                t.last_error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    out
}

/// The peer table: one line per peer with its state, next hop and traffic.
pub fn render_peers(peers: &[PeerStatus]) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 8]> = peers
        .iter()
        .map(|p| {
            let state = match (p.reachable, p.left) {
                (true, _) => "reachable",
                (false, true) => "left",
                (false, false) => "unreachable",
            };
            [
                p.name.clone(),
                p.address.to_string(),
                p.subnet.map_or_else(dash, |n| n.to_string()),
                state.to_owned(),
                p.next_hop.clone().unwrap_or_else(dash),
                p.hops.to_string(),
                bytes(p.tx_bytes),
                bytes(p.rx_bytes),
            ]
        })
        .collect();
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no other peers known\n");
        return out;
    }
    table(
        &mut out,
        [
            "PEER", "ADDRESS", "SUBNET", "STATE", "NEXT HOP", "HOPS", "SENT", "RECEIVED",
        ],
        &rows,
    );
    out
}

/// Appends `rows` under `header`, columns padded to their widest cell.
pub(super) fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut print = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    print(header);
    for row in rows {
        print(std::array::from_fn(|i| row[i].as_str()));
    }
}

fn offloads_summary(o: &Offloads) -> String {
    let on: Vec<&str> = [
        (o.tun_tso, "tun-tso"),
        (o.tun_uso, "tun-uso"),
        (o.udp_gso, "udp-gso"),
        (o.udp_gro, "udp-gro"),
        (o.coalesce_tcp, "coalesce-tcp"),
        (o.coalesce_udp, "coalesce-udp"),
    ]
    .into_iter()
    .filter_map(|(used, name)| used.then_some(name))
    .collect();
    if on.is_empty() {
        "none (one packet per system call)".to_owned()
    } else {
        on.join(", ")
    }
}

fn datapath_summary(d: &CountersSnapshot) -> String {
    format!(
        "tx {} packets ({}), rx {} packets ({}), relayed {}, dropped {}",
        d.tx_packets,
        bytes(d.tx_bytes),
        d.rx_packets,
        bytes(d.rx_bytes),
        d.relayed_packets,
        d.total_drops()
    )
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::datapath::DropCounters;
    use crate::status::{ConnectionStatus, Direction, PeerStatus, TargetStatus};

    pub(crate) fn sample() -> Status {
        Status {
            name: "node-a".into(),
            instance: "00000000000000ff".into(),
            ready: true,
            cluster: "10.32.0.0/12".parse().expect("cidr"),
            subnet: Some("10.32.5.0/24".parse().expect("cidr")),
            address: Some([10, 32, 5, 1].into()),
            advertise: ([192, 168, 1, 10], 6783).into(),
            mtu: 1418,
            iface: "ovl0".into(),
            peers: vec![
                PeerStatus {
                    name: "node-b".into(),
                    address: ([192, 168, 1, 11], 6783).into(),
                    subnet: Some("10.32.7.0/24".parse().expect("cidr")),
                    reachable: true,
                    next_hop: Some("node-c".into()),
                    hops: 2,
                    connected: false,
                    left: false,
                    instance: "0000000000000001".into(),
                    tx_packets: 40,
                    tx_bytes: 3 << 20,
                    rx_packets: 30,
                    rx_bytes: 1500,
                    data_key: None,
                },
                PeerStatus {
                    name: "node-c".into(),
                    address: ([192, 168, 1, 12], 6783).into(),
                    subnet: None,
                    reachable: false,
                    next_hop: None,
                    hops: 0,
                    connected: false,
                    left: false,
                    instance: "0000000000000002".into(),
                    tx_packets: 0,
                    tx_bytes: 0,
                    rx_packets: 0,
                    rx_bytes: 0,
                    data_key: None,
                },
            ],
            connections: vec![ConnectionStatus {
                peer: "node-c".into(),
                direction: Direction::Outbound,
                remote: ([192, 168, 1, 12], 6783).into(),
                rtt_ms: Some(0.4),
                established_secs: 12,
                identity: None,
            }],
            targets: vec![TargetStatus {
                address: ([192, 168, 1, 11], 6783).into(),
                seed: true,
                state: TargetState::Waiting,
                peer: None,
                failures: 3,
                last_error: Some("connection refused".into()),
                retry_in_secs: Some(8),
            }],
            rejected_connections: 0,
            control: overlay_proto::node::NodeStats {
                gossip_sent: 12,
                gossip_received: 10,
                ..Default::default()
            },
            control_traffic: crate::status::ControlTraffic {
                gossip_sent_bytes: 3500,
                gossip_received_bytes: 2900,
                terminations: 0,
                ..Default::default()
            },
            auth: None,
            encryption: None,
            offloads: Offloads {
                tun_vnet_hdr: true,
                tun_tso: true,
                udp_gso: true,
                udp_gro: true,
                coalesce_tcp: true,
                ..Default::default()
            },
            datapath: CountersSnapshot {
                tx_packets: 10,
                tx_bytes: 2048,
                rx_packets: 9,
                rx_bytes: 100,
                relayed_packets: 1,
                drops: DropCounters {
                    not_peer: 2,
                    spoofed: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn text_view_has_the_weave_style_summary_and_a_line_per_peer() {
        let text = render(&sample());
        let expected = r"          Name: node-a (instance 00000000000000ff)
    Advertised: 192.168.1.10:6783
    Encryption: disabled
 PeerDiscovery: enabled
       Targets: 1
   Connections: 2 (1 established, 1 failed)
         Peers: 2 (1 reachable)
         Range: 10.32.0.0/12
        Subnet: 10.32.5.0/24
       Address: 10.32.5.1
        Device: ovl0 (MTU 1418)
         Ready: yes
        Gossip: sent 12 messages (3.4 KiB), received 10 (2.8 KiB)
     Data path: tx 10 packets (2.0 KiB), rx 9 packets (100 B), relayed 1, dropped 3
      Offloads: tun-tso, udp-gso, udp-gro, coalesce-tcp

PEER    ADDRESS            SUBNET        STATE        NEXT HOP  HOPS  SENT     RECEIVED
node-b  192.168.1.11:6783  10.32.7.0/24  reachable    node-c    2     3.0 MiB  1.5 KiB
node-c  192.168.1.12:6783  -             unreachable  -         0     0 B      0 B

Failing targets:
  192.168.1.11:6783 (3 failures, retry in 8s): connection refused
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_keeps_the_contract_fields_and_round_trips() {
        let s = sample();
        let v = serde_json::to_value(&s).expect("serialize");
        assert_eq!(v["name"], "node-a");
        assert_eq!(v["subnet"], "10.32.5.0/24");
        assert_eq!(v["address"], "10.32.5.1");
        let p = &v["peers"][0];
        assert_eq!(p["address"], "192.168.1.11:6783");
        assert_eq!(p["reachable"], true);
        assert_eq!(p["next_hop"], "node-c");
        assert_eq!(p["hops"], 2);
        assert_eq!(v["peers"][1]["subnet"], serde_json::Value::Null);
        assert_eq!(v["connections"][0]["direction"], "outbound");
        assert_eq!(v["targets"][0]["state"], "waiting");
        let back: Status = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, s);
    }

    #[test]
    fn a_cluster_secret_shows_as_control_plane_encryption() {
        let mut s = sample();
        s.auth = Some(crate::auth::AuthStatus {
            identity: "ab".repeat(32),
            secret_current: "1a2b3c4d".into(),
            secret_next: Some("5e6f7a8b".into()),
        });
        assert!(render(&s).contains(
            "    Encryption: control plane (Noise, secret 1a2b3c4d, next 5e6f7a8b); data path not encrypted\n"
        ));
    }

    #[test]
    fn encrypt_shows_the_data_path_suite() {
        let mut s = sample();
        s.auth = Some(crate::auth::AuthStatus {
            identity: "ab".repeat(32),
            secret_current: "1a2b3c4d".into(),
            secret_next: None,
        });
        s.encryption = Some(crate::status::EncryptionStatus {
            suite: "aes-256-gcm".into(),
            peers_with_key: 1,
            identity_mismatches: 0,
        });
        assert!(render(&s).contains(
            "    Encryption: control plane (Noise, secret 1a2b3c4d); data path (aes-256-gcm)\n"
        ));
        let conns = crate::status::connections::connections(&s);
        assert_eq!(conns[0].path.as_deref(), Some("udp+aes-256-gcm"));
    }

    #[test]
    fn node_without_a_block_shows_dashes() {
        let mut s = sample();
        s.subnet = None;
        s.address = None;
        s.ready = false;
        s.peers.clear();
        s.targets.clear();
        let text = render(&s);
        assert!(text.contains("        Subnet: -\n"));
        assert!(text.contains("         Ready: no\n"));
        assert!(text.contains("         Peers: 0 (0 reachable)\n"));
        assert!(!text.contains("PEER"));
    }
}
