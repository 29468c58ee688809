//! End to end, as root: the sealed data path (`--secret-file` + `--encrypt`).
//!
//! - Three agents with `--encrypt`: a 64 MiB checksummed pod-to-pod transfer, UDP datagrams
//!   and pings up to the (28 bytes smaller) overlay MTU, `/status` showing the suite and a
//!   data key for every peer.
//! - Confidentiality on the underlay: a marker sent over TCP between pods is sniffed for on
//!   the underlay bridge (an `AF_PACKET` socket in the switch namespace). Without `--encrypt`
//!   it is found there (so the check can fail); with it, never.
//! - Relaying: with the direct path blackholed, traffic goes through the third node, sealed
//!   end to end; the transfer still checksums and the relay counts what it forwarded.
//! - Replay and forgery: a captured sealed datagram replayed from the sender's address is
//!   dropped as `replay`; one with its counter and ciphertext altered as `bad_tag`; an
//!   unsealed data datagram forged from a peer's address as `unsealed`.
//! - Keys without a connection: two agents whose underlay path is blackholed from the start
//!   never handshake, yet derive the same data key from each other's gossiped identity and
//!   exchange traffic sealed end to end through the third.

mod common;

use common::{converge, counter, transfer};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::peer::PeerId;
use overlay_testbed::{traffic, wait, Binaries, Cluster, Underlay};
use overlay_testkit::packet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "encrypt-test-cluster-secret-0123";
const DATA_PORT: u16 = 6783;
/// What the pods send to each other in the confidentiality check.
const MARKER: &[u8] = b"OVERLAY-MARKER-7f3a9c-plaintext-must-not-leak";

/// A cluster of `nodes` agents, with the secret file and `--encrypt` when `encrypt`.
fn cluster(tag: &str, nodes: usize, encrypt: bool) -> Cluster {
    let mut c = configured(tag, nodes, encrypt);
    start(&mut c, nodes);
    c
}

/// Starts every agent, waits for convergence and attaches a pod on every node.
fn start(c: &mut Cluster, nodes: usize) {
    c.start_all().expect("agents start");
    converge(c, Duration::from_secs(30));
    for node in 0..nodes {
        c.add_pod(node).expect("pod attached");
    }
}

/// The cluster of [`cluster`], agents not started yet.
fn configured(tag: &str, nodes: usize, encrypt: bool) -> Cluster {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    let mut c = Cluster::new(&overlay_testbed::unique_prefix(tag), nodes, bins).expect("cluster");
    let path = c.workdir.join("cluster.secret");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&path, format!("{SECRET}\n")).expect("secret written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    c.agent_args = vec!["--secret-file".into(), path.to_string_lossy().into_owned()];
    if encrypt {
        c.agent_args.push("--encrypt".into());
    }
    c
}

/// Waits until every agent holds a data key for every other node.
fn wait_keys(c: &Cluster, nodes: usize) {
    wait::until(
        "every agent to hold a data key for every peer",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            for i in 0..nodes {
                let s = c.status(i).map_err(|e| e.to_string())?;
                let keyed = s["peers"]
                    .as_array()
                    .map_or(0, |ps| ps.iter().filter(|p| p["data_key"] == true).count());
                if keyed != nodes - 1 {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
}

fn drops(c: &Cluster, i: usize, reason: &str) -> u64 {
    counter(c, i, &["drops", reason])
}

/// A frame seen on the underlay: the IPv4 source and destination and, for UDP, the ports and
/// the payload.
#[derive(Debug, Clone)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    udp: Option<(u16, u16, Vec<u8>)>,
}

/// Everything an `AF_PACKET` socket in the switch namespace sees until stopped: whether
/// `MARKER` appeared in any frame, and the small UDP datagrams (single, not GSO batches).
struct Sniffer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(bool, Vec<Seen>)>,
}

impl Sniffer {
    fn start(c: &Cluster) -> Sniffer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = c
            .underlay
            .switch
            .spawn(move || sniff(&flag, &ready_tx))
            .expect("thread in the switch namespace");
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("sniffer ready");
        Sniffer { stop, handle }
    }

    fn stop(self) -> (bool, Vec<Seen>) {
        // Frames still in flight on the bridge.
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sniffer")
    }
}

fn sniff(stop: &AtomicBool, ready: &std::sync::mpsc::Sender<()>) -> (bool, Vec<Seen>) {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket() with constant arguments; the fd is owned by `fd` below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: raw is a valid descriptor we own; OwnedFd closes it once.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: fd is valid; tv is a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO");
    let _ = ready.send(());
    let mut buf = vec![0u8; 1 << 17];
    let mut found = false;
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            continue; // timeout (or EINTR): check the stop flag
        };
        let frame = &buf[..n];
        if !found && frame.windows(MARKER.len()).any(|w| w == MARKER) {
            found = true;
        }
        // Ethernet II, IPv4 without options, UDP.
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 {
            continue;
        }
        let ip = &frame[14..];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = (ip[9] == 17 && (28..=512).contains(&total)).then(|| {
            let u = &ip[20..total];
            let sport = u16::from_be_bytes([u[0], u[1]]);
            let dport = u16::from_be_bytes([u[2], u[3]]);
            (sport, dport, u[8..].to_vec())
        });
        if udp.is_some() && seen.len() < 10_000 {
            seen.push(Seen { src, dst, udp });
        }
    }
    (found, seen)
}

/// Sends `MARKER` (many times) over TCP from the pod on node `from` to the pod on node `to`.
fn send_marker(c: &Cluster, from: usize, to: usize, port: u16) {
    let addr = SocketAddr::from((c.pods[to].ip, port));
    let listener = c.pods[to]
        .netns
        .run(move || TcpListener::bind(addr))
        .expect("thread in pod")
        .expect("listen");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    c.pods[from]
        .netns
        .run(move || {
            let mut s =
                TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
            for _ in 0..200 {
                s.write_all(MARKER).expect("write");
                s.write_all(b"\n").expect("write");
            }
        })
        .expect("thread in pod");
    let got = server.join().expect("server");
    assert_eq!(got.len(), 200 * (MARKER.len() + 1), "the marker arrived");
}

/// Pings of `sizes` (payload bytes, don't fragment) from the pod on `from` to the one on `to`.
fn ping(c: &Cluster, from: usize, to: usize, size: usize) -> bool {
    let ip = c.pods[to].ip.to_string();
    let size = size.to_string();
    c.pods[from]
        .netns
        .exec(
            "ping",
            &["-c", "1", "-W", "2", "-M", "do", "-s", &size, "-q", &ip],
        )
        .is_ok_and(|o| o.status.success())
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn without_encrypt_the_marker_is_in_clear_on_the_underlay() {
    let c = cluster("ecp", 2, false);
    let sniffer = Sniffer::start(&c);
    send_marker(&c, 0, 1, 7001);
    let (found, _) = sniffer.stop();
    assert!(
        found,
        "without --encrypt the marker is readable on the underlay"
    );
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn encrypted_cluster_carries_traffic_sealed_relays_and_refuses_replays() {
    let c = cluster("enc", 3, true);
    wait_keys(&c, 3);
    let s = c.status(0).expect("status");
    let mtu = s["mtu"].as_u64().expect("mtu") as usize;
    assert_eq!(
        mtu,
        1500 - 20 - 8 - HEADER_LEN - 28,
        "overlay MTU 28 bytes smaller"
    );
    let suite = s["encryption"]["suite"].as_str().expect("suite").to_owned();
    assert!(
        suite == "aes-256-gcm" || suite == "chacha20-poly1305",
        "{s}"
    );

    // (a) A 64 MiB checksummed transfer, UDP and pings up to the overlay MTU.
    let t = transfer(&c, 0, 1, 64);
    eprintln!("64 MiB sealed ({suite}) at {:.0} Mbit/s", t.mbit_per_s());
    let max_udp = mtu - 28;
    traffic::udp_echo(
        &c.pods[1].netns,
        c.pods[1].ip,
        &c.pods[0].netns,
        &[
            0,
            1,
            100,
            1000,
            max_udp - 1,
            max_udp,
            max_udp + 1,
            4000,
            20_000,
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.all_logs()));
    assert!(ping(&c, 0, 2, 56), "ping");
    assert!(ping(&c, 0, 2, max_udp), "ping of the overlay MTU");
    assert!(
        !ping(&c, 0, 2, max_udp + 1),
        "a ping past the overlay MTU does not fit"
    );

    // (b) The marker is never in clear on the underlay; keep the small sealed datagrams
    // seen meanwhile for (d).
    let sniffer = Sniffer::start(&c);
    send_marker(&c, 0, 1, 7002);
    assert!(ping(&c, 0, 1, 56), "ping while sniffing");
    let (found, seen) = sniffer.stop();
    assert!(
        !found,
        "with --encrypt the marker never crosses the underlay in clear"
    );
    for i in 0..3 {
        assert_eq!(
            drops(&c, i, "no_key"),
            0,
            "node{i}: no datagram without a key"
        );
        assert_eq!(
            drops(&c, i, "bad_tag"),
            0,
            "node{i}: nothing failed to open"
        );
    }

    // (d) Replay, tampering, unsealed forgery from node0's address to node1.
    let (n0, n1) = (Underlay::node_addr(0), Underlay::node_addr(1));
    let id0 = PeerId::from_name(&Cluster::node_name(0));
    let id1 = PeerId::from_name(&Cluster::node_name(1));
    let captured = seen
        .iter()
        .filter(|s| s.src == n0 && s.dst == n1)
        .filter_map(|s| s.udp.as_ref())
        .filter(|(sp, dp, _)| *sp == DATA_PORT && *dp == DATA_PORT)
        .map(|(_, _, p)| p.clone())
        .find(|p| Header::parse(p).is_ok_and(|h| h.is_sealed() && h.src == id0 && h.dst == id1))
        .unwrap_or_else(|| {
            panic!(
                "a sealed datagram node0 -> node1 was captured ({} seen)",
                seen.len()
            )
        });
    let from = SocketAddrV4::new(n0, DATA_PORT);
    let to = SocketAddrV4::new(n1, DATA_PORT);
    let before: Vec<u64> = ["replay", "bad_tag", "unsealed"]
        .iter()
        .map(|r| drops(&c, 1, r))
        .collect();
    // Replayed as captured.
    traffic::udp_forged(c.node(0), from, to, vec![captured.clone()]).expect("replay sent");
    // Tampered: a fresh counter (so the replay window passes) and a flipped ciphertext bit.
    let mut tampered = captured.clone();
    tampered[HEADER_LEN + 4..HEADER_LEN + 12].copy_from_slice(&(1u64 << 40).to_be_bytes());
    let last = tampered.len() - 20;
    tampered[last] ^= 0x01;
    traffic::udp_forged(c.node(0), from, to, vec![tampered]).expect("tampered sent");
    // An unsealed data datagram from node0's address: a valid inner packet pod0 -> pod1.
    let inner = packet::ipv4_udp(c.pods[0].ip, c.pods[1].ip, 9999, 9999, b"forged");
    let mut forged = vec![0u8; HEADER_LEN];
    Header::ip(id0, id1).emit(&mut forged).expect("header");
    forged.extend_from_slice(&inner);
    traffic::udp_forged(c.node(0), from, to, vec![forged]).expect("forged sent");
    let want = [1, 1, 1];
    wait::until(
        "node1 to count the replay, the tampered and the unsealed datagram",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let now: Vec<u64> = ["replay", "bad_tag", "unsealed"]
                .iter()
                .map(|r| drops(&c, 1, r))
                .collect();
            let delta: Vec<u64> = now.iter().zip(&before).map(|(a, b)| a - b).collect();
            Ok((delta == want).then_some(()).or_else(|| {
                eprintln!("drops (replay, bad_tag, unsealed) so far: {delta:?}");
                None
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.status(1).expect("status")["datapath"]));

    // (c) Relayed through node2 with the direct path 0-1 blackholed: still sealed end to end.
    c.underlay.blackhole(0, 1).expect("blackhole");
    let blackholed = Instant::now();
    for (a, b) in [(0, 1), (1, 0)] {
        wait::until(
            &format!("node{a} to route to node{b} through node2"),
            Duration::from_secs(45),
            Duration::from_millis(200),
            || {
                let p = c.peer_status(a, b).map_err(|e| e.to_string())?;
                Ok((p["next_hop"] == "node2" && p["reachable"] == true).then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    }
    eprintln!(
        "re-routed through node2 {:.1} s after the blackhole",
        blackholed.elapsed().as_secs_f64()
    );
    // The keys of the direct pair outlive its control connection.
    let p = c.peer_status(0, 1).expect("status");
    assert_eq!(p["data_key"], true, "{p}");
    let relayed_before = counter(&c, 2, &["relayed_packets"]);
    transfer(&c, 0, 1, 16);
    transfer(&c, 1, 0, 4);
    let relayed = counter(&c, 2, &["relayed_packets"]) - relayed_before;
    assert!(
        relayed > (20 << 20) / 1500,
        "node2 relayed {relayed} datagrams"
    );
    for i in 0..3 {
        assert_eq!(
            drops(&c, i, "no_key"),
            0,
            "node{i}: no datagram without a key"
        );
    }
    let s = c.status(2).expect("status");
    assert_eq!(
        s["datapath"]["drops"]["bad_tag"], 0,
        "the relay opened nothing"
    );
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn agents_that_never_connect_still_seal_end_to_end_through_a_relay() {
    let mut c = configured("enk", 3, true);
    // node0 and node2 cannot reach each other from the start: no control connection, no
    // handshake between them, ever. (Seeds are chained: node2 -> node1 -> node0.)
    c.underlay.blackhole(0, 2).expect("blackhole");
    start(&mut c, 3);
    // Each holds a key for the other all the same: from the identity in its record.
    wait_keys(&c, 3);
    for (a, b) in [(0, 2), (2, 0)] {
        let p = c.peer_status(a, b).expect("status");
        assert_eq!(p["connected"], false, "node{a} -> node{b}: {p}");
        assert_eq!(p["next_hop"], "node1", "node{a} -> node{b}: {p}");
        assert_eq!(p["data_key"], true, "node{a} -> node{b}: {p}");
    }
    let relayed_before = counter(&c, 1, &["relayed_packets"]);
    transfer(&c, 0, 2, 8);
    transfer(&c, 2, 0, 2);
    traffic::udp_echo(&c.pods[0].netns, c.pods[0].ip, &c.pods[2].netns, &[1, 1000])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.all_logs()));
    let relayed = counter(&c, 1, &["relayed_packets"]) - relayed_before;
    assert!(
        relayed > (10 << 20) / 1500,
        "node1 relayed {relayed} datagrams"
    );
    for i in 0..3 {
        for reason in ["no_key", "bad_tag", "unsealed"] {
            assert_eq!(drops(&c, i, reason), 0, "node{i} {reason}");
        }
        let s = c.status(i).expect("status");
        assert_eq!(s["encryption"]["identity_mismatches"], 0, "node{i}: {s}");
    }
}
