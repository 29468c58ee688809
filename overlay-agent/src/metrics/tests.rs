use super::*;
use crate::control::Command;
use crate::state::StateDir;
use crate::status::Status;
use serde_json::json;
use tokio::sync::mpsc;

/// A node with two peers: node-b reachable through node-c (2 hops), node-c direct with a
/// heartbeat RTT; three dial targets in three states.
fn sample_status() -> Status {
    // Built apart: the whole status in one `json!` passes the macro recursion limit.
    let drops = json!({
        "not_peer": 2, "malformed": 3, "bad_version": 4, "bad_kind": 5, "hop_limit": 6,
        "spoofed": 7, "no_route": 8, "unsupported": 9, "not_local": 10, "io_error": 11,
        "too_big": 12, "no_key": 13, "unsealed": 14, "sealed_unexpected": 15,
        "seal_truncated": 16, "bad_suite": 17, "unknown_epoch": 18, "replay": 19,
        "too_old": 20, "bad_tag": 21
    });
    serde_json::from_value(json!({
        "name": "node-a", "instance": "00000000000000ff", "ready": true,
        "cluster": "10.32.0.0/12", "subnet": "10.32.3.0/24", "address": "10.32.3.1",
        "advertise": "192.168.1.10:6783", "mtu": 1418,
        "peers": [
            {"name": "node-b", "address": "192.168.1.11:6783", "subnet": "10.32.7.0/24",
             "reachable": true, "next_hop": "node-c", "hops": 2, "connected": false,
             "left": false, "instance": "0000000000000001",
             "tx_packets": 40, "tx_bytes": 3145728, "rx_packets": 30, "rx_bytes": 1500},
            {"name": "node-c", "address": "192.168.1.12:6783", "subnet": "10.32.9.0/24",
             "reachable": true, "next_hop": "node-c", "hops": 1, "connected": true,
             "left": false, "instance": "0000000000000002"},
            {"name": "node-d", "address": "192.168.1.13:6783", "subnet": null,
             "reachable": false, "next_hop": null, "hops": 0, "connected": false,
             "left": false, "instance": "0000000000000003"}
        ],
        "connections": [{"peer": "node-c", "direction": "outbound",
                         "remote": "192.168.1.12:6783", "rtt_ms": 0.5, "established_secs": 12}],
        "targets": [
            {"address": "192.168.1.12:6783", "seed": true, "state": "connected",
             "peer": "node-c", "failures": 0, "last_error": null, "retry_in_secs": null},
            {"address": "192.168.1.13:6783", "seed": false, "state": "waiting",
             "peer": null, "failures": 3, "last_error": "refused", "retry_in_secs": 4},
            {"address": "192.168.1.14:6783", "seed": false, "state": "dialing",
             "peer": null, "failures": 0, "last_error": null, "retry_in_secs": null}
        ],
        "rejected_connections": 4,
        "control": {"gossip_sent": 11, "gossip_received": 12, "records_merged": 5,
                    "records_rejected": 1, "heartbeat_timeouts": 2, "refused": 6,
                    "claim_conflicts": 1, "grafts_sent": 8, "prunes_sent": 9},
        "control_traffic": {"gossip_sent_bytes": 1100, "gossip_received_bytes": 1200,
                            "terminations": 3,
                            "handshakes_refused": {"bad_secret": 7, "rate_limited": 2}},
        "datapath": {"tx_packets": 10, "tx_bytes": 2048, "rx_packets": 9, "rx_bytes": 100,
                     "relayed_packets": 1, "tx_super_packets": 2, "gso_sends": 3,
                     "gro_batches": 4, "rx_tun_writes": 5, "rx_coalesced_frames": 6,
                     "drops": drops}
    }))
    .expect("valid status")
}

fn sample() -> Snapshot {
    Snapshot {
        status: sample_status(),
        ipam: IpamUsage {
            allocated: 2,
            capacity: 253,
        },
    }
}

/// The value of the series `series` (name with its labels, exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

fn expect(text: &str, series: &str, want: f64) {
    assert_eq!(value(text, series), Some(want), "{series} in\n{text}");
}

#[test]
fn every_family_carries_the_snapshot_values() {
    let text = encode(&sample()).expect("encode");
    assert!(text.ends_with("# EOF\n"), "{text}");
    expect(
        &text,
        &format!(
            r#"overlay_build_info{{version="{}",protocol_min="1",protocol_max="3"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    expect(&text, "overlay_ready", 1.0);
    for (state, n) in [
        ("established", 1.0),
        ("dialing", 1.0),
        ("waiting", 0.0),
        ("failed", 1.0),
    ] {
        expect(
            &text,
            &format!(r#"overlay_connections{{state="{state}"}}"#),
            n,
        );
    }
    expect(&text, "overlay_connection_terminations_total", 3.0);
    expect(&text, "overlay_connections_rejected_total", 4.0);
    expect(&text, "overlay_handshakes_refused_total", 6.0);
    expect(&text, "overlay_heartbeat_timeouts_total", 2.0);
    for (reason, n) in [("bad_secret", 7.0), ("rate_limited", 2.0), ("timeout", 0.0)] {
        expect(
            &text,
            &format!(r#"overlay_control_handshakes_refused_total{{reason="{reason}"}}"#),
            n,
        );
    }

    let b = r#"{peer="node-b"}"#;
    expect(&text, &format!("overlay_peer_sent_packets_total{b}"), 40.0);
    expect(
        &text,
        &format!("overlay_peer_sent_bytes_total{b}"),
        3_145_728.0,
    );
    expect(
        &text,
        &format!("overlay_peer_received_packets_total{b}"),
        30.0,
    );
    expect(
        &text,
        &format!("overlay_peer_received_bytes_total{b}"),
        1500.0,
    );
    expect(&text, &format!("overlay_peer_reachable{b}"), 1.0);
    expect(&text, &format!("overlay_peer_connected{b}"), 0.0);
    expect(&text, &format!("overlay_peer_hops{b}"), 2.0);
    expect(&text, &format!("overlay_peer_path_mtu_bytes{b}"), 1418.0);
    expect(
        &text,
        r#"overlay_peer_next_hop{peer="node-b",next_hop="node-c"}"#,
        1.0,
    );
    expect(
        &text,
        r#"overlay_peer_next_hop{peer="node-c",next_hop="node-c"}"#,
        1.0,
    );
    expect(&text, r#"overlay_peer_rtt_seconds{peer="node-c"}"#, 0.0005);
    assert_eq!(value(&text, &format!("overlay_peer_rtt_seconds{b}")), None);
    // An unreachable peer: traffic at zero, no next hop, no MTU.
    let d = r#"{peer="node-d"}"#;
    expect(&text, &format!("overlay_peer_sent_packets_total{d}"), 0.0);
    expect(&text, &format!("overlay_peer_reachable{d}"), 0.0);
    assert!(
        !text.contains(r#"overlay_peer_next_hop{peer="node-d""#),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("overlay_peer_path_mtu_bytes{d}")),
        None
    );

    for (name, v) in [
        ("overlay_datapath_sent_packets_total", 10.0),
        ("overlay_datapath_sent_bytes_total", 2048.0),
        ("overlay_datapath_received_packets_total", 9.0),
        ("overlay_datapath_received_bytes_total", 100.0),
        ("overlay_datapath_relayed_packets_total", 1.0),
        ("overlay_datapath_super_packets_total", 2.0),
        ("overlay_datapath_gso_sends_total", 3.0),
        ("overlay_datapath_gro_batches_total", 4.0),
        ("overlay_datapath_tun_writes_total", 5.0),
        ("overlay_datapath_coalesced_writes_total", 6.0),
    ] {
        expect(&text, name, v);
    }
    let reasons = [
        "not_peer",
        "malformed",
        "bad_version",
        "bad_kind",
        "hop_limit",
        "spoofed",
        "no_route",
        "unsupported",
        "not_local",
        "io_error",
        "too_big",
        "no_key",
        "unsealed",
        "sealed_unexpected",
        "seal_truncated",
        "bad_suite",
        "unknown_epoch",
        "replay",
        "too_old",
        "bad_tag",
    ];
    for (i, reason) in reasons.iter().enumerate() {
        expect(
            &text,
            &format!(r#"overlay_datapath_drops_total{{reason="{reason}"}}"#),
            (i + 2) as f64,
        );
    }
    assert_eq!(
        text.matches("overlay_datapath_drops_total{").count(),
        reasons.len(),
        "one series per drop reason"
    );

    expect(
        &text,
        r#"overlay_gossip_messages_total{direction="sent"}"#,
        11.0,
    );
    expect(
        &text,
        r#"overlay_gossip_messages_total{direction="received"}"#,
        12.0,
    );
    expect(
        &text,
        r#"overlay_gossip_bytes_total{direction="sent"}"#,
        1100.0,
    );
    expect(
        &text,
        r#"overlay_gossip_bytes_total{direction="received"}"#,
        1200.0,
    );
    expect(&text, "overlay_gossip_records_merged_total", 5.0);
    expect(&text, "overlay_gossip_tree_grafts_total", 8.0);
    expect(&text, "overlay_gossip_tree_prunes_total", 9.0);
    expect(&text, "overlay_gossip_records_rejected_total", 1.0);
    expect(&text, "overlay_ipam_claim_conflicts_total", 1.0);
    expect(&text, "overlay_ipam_addresses_allocated", 2.0);
    expect(&text, "overlay_ipam_addresses_capacity", 253.0);
}

#[test]
fn families_are_typed_and_documented() {
    let text = encode(&sample()).expect("encode");
    for (family, kind) in [
        ("overlay_connections", "gauge"),
        ("overlay_peer_sent_bytes", "counter"),
        ("overlay_peer_rtt_seconds", "gauge"),
        ("overlay_datapath_drops", "counter"),
        ("overlay_build", "info"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind} in\n{text}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
    }
    assert!(text.contains("# UNIT overlay_peer_sent_bytes bytes\n"));
    assert!(text.contains("# UNIT overlay_peer_rtt_seconds seconds\n"));
}

#[test]
fn an_empty_node_still_shows_every_family() {
    let mut status = sample_status();
    status.peers.clear();
    status.connections.clear();
    status.targets.clear();
    status.datapath = Default::default();
    let text = encode(&Snapshot {
        status,
        ipam: IpamUsage::default(),
    })
    .expect("encode");
    expect(&text, r#"overlay_connections{state="established"}"#, 0.0);
    expect(
        &text,
        r#"overlay_datapath_drops_total{reason="too_big"}"#,
        0.0,
    );
    expect(&text, "overlay_ipam_addresses_capacity", 0.0);
    assert!(!text.contains("peer=\""), "no peer series: {text}");
}

#[test]
fn label_values_cannot_break_the_format() {
    let mut status = sample_status();
    status.peers[0].name = "evil\"} 1\nfake_metric 2\\".into();
    let text = encode(&Snapshot {
        status,
        ipam: IpamUsage::default(),
    })
    .expect("encode");
    assert!(
        !text.lines().any(|l| l.starts_with("fake_metric")),
        "{text}"
    );
    assert!(
        text.contains(r#"{peer="evil\"} 1\nfake_metric 2\\"}"#),
        "{text}"
    );
}

/// Starts the metrics server on a free port; `driver` says whether a stand-in driver answers.
async fn start(driver: bool) -> (String, tempfile::TempDir, MetricsServer) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(tmp.path()).expect("state dir");
    let ipam = Arc::new(IpamStore::open(&dir).expect("store"));
    ipam.set_block(Some("10.32.3.0/24".parse().expect("cidr")))
        .expect("block");
    ipam.allocate("pod/eth0").expect("allocate");
    let (tx, mut rx) = mpsc::channel::<Command>(8);
    if driver {
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let Command::Status(reply) = cmd {
                    let _ = reply.send(sample_status());
                }
            }
        });
    } else {
        drop(rx);
    }
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let state = MetricsState {
        control: ControlHandle::new(tx),
        ipam,
    };
    let server = MetricsServer::start(addr, state).await.expect("start");
    (format!("http://{addr}"), tmp, server)
}

/// GET `url`: status code, content type, body.
async fn get(url: String) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let res = match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{url}: {e}"),
        };
        let code = res.status();
        let kind = res.header("content-type").unwrap_or_default().to_owned();
        (code, kind, res.into_string().expect("body"))
    })
    .await
    .expect("request thread")
}

#[tokio::test]
async fn get_metrics_answers_openmetrics_text_with_the_ipam_usage() {
    let (base, _tmp, server) = start(true).await;
    let (code, kind, body) = get(format!("{base}/metrics")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(kind, CONTENT_TYPE);
    expect(&body, "overlay_ipam_addresses_allocated", 1.0);
    expect(&body, "overlay_ipam_addresses_capacity", 253.0);
    expect(&body, r#"overlay_connections{state="established"}"#, 1.0);
    let (code, _, _) = get(format!("{base}/status")).await;
    assert_eq!(code, 404);
    server.stop(Duration::from_secs(1)).await;
    assert!(
        std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err(),
        "stopped"
    );
}

#[tokio::test]
async fn a_silent_control_plane_is_a_503_not_a_hang() {
    let (base, _tmp, server) = start(false).await;
    let (code, _, body) = get(format!("{base}/metrics")).await;
    assert_eq!(code, 503, "{body}");
    server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_taken_address_is_an_error_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(tmp.path()).expect("state dir");
    let (tx, _rx) = mpsc::channel::<Command>(1);
    let state = MetricsState {
        control: ControlHandle::new(tx),
        ipam: Arc::new(IpamStore::open(&dir).expect("store")),
    };
    let err = MetricsServer::start(addr, state)
        .await
        .expect_err("address in use");
    let msg = err.to_string();
    assert!(
        msg.contains("--metrics") && msg.contains(&addr.to_string()),
        "{msg}"
    );
}
