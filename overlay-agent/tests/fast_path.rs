//! The fast path end to end, as root, in namespaces (the bed: `datapath_bed`): super-packets
//! are really read, split, sent with GSO, received with GRO and coalesced; relays keep them
//! batched; packets of every size (and fragments, and UDP segmentation from applications)
//! arrive intact; every combination of `OVERLAY_DATAPATH_DISABLE` switches, and peers with
//! different switches, carry checksummed traffic. (Throughput is measured by the benchmark,
//! `examples/src/bin/bench.rs`, not here.)

mod datapath_bed;

use datapath_bed::*;
use overlay_agent::datapath::{CountersSnapshot, Disabled, Offloads};
use overlay_proto::peer::PeerId;
use overlay_testbed::require_root;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

fn peer_counters(s: &CountersSnapshot, peer: PeerId) -> (u64, u64, u64, u64) {
    s.peers
        .iter()
        .find(|p| p.peer == peer)
        .map_or((0, 0, 0, 0), |p| {
            (p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes)
        })
}

fn assert_no_drops(c: &Cluster, what: &str) {
    for (i, node) in NAMES.iter().enumerate() {
        let n = c.counters(i);
        assert_eq!(n.total_drops(), 0, "{what}: no drops on {node}: {n:?}");
    }
}

fn all_on() -> Offloads {
    Offloads {
        tun_vnet_hdr: true,
        tun_tso: true,
        tun_uso: true,
        udp_gso: true,
        udp_gro: true,
        coalesce_tcp: true,
        coalesce_udp: true,
    }
}

/// Sizes of a ping/UDP mix: every size up to 64 bytes, then every 97th up to `max`, `max`,
/// and sizes that only fit as fragments, up to the largest UDP datagram.
fn mixed_sizes(max: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..=64).chain((65..max).step_by(97)).collect();
    sizes.extend([
        max,
        max + 1,
        2000,
        2 * max + 1,
        4096,
        8192,
        16_384,
        32_768,
        65_507,
    ]);
    sizes
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn tcp_64_mib_travels_as_super_packets_and_coalesced_frames() {
    require_root();
    let c = Cluster::start_with("fp64", 0, [Disabled::default(); PEERS]);
    for dp in &c.datapaths {
        assert_eq!(dp.offloads(), all_on(), "Linux ≥ 6.2 accepts every offload");
    }
    let bytes = 64 << 20;
    let t = tcp_transfer(&c, 0, 1, bytes, 5001);
    println!(
        "a → b: 64 MiB in {t:?} = {:.0} Mbit/s",
        mbit_per_s(bytes, t)
    );
    let (a, b) = (c.counters(0), c.counters(1));
    println!("a: {a:?}\nb: {b:?}");
    assert!(a.tx_super_packets > 0, "a read super-packets: {a:?}");
    assert!(
        a.tx_packets >= 8 * a.tx_super_packets,
        "a split them into many segments each: {a:?}"
    );
    assert!(
        a.gso_sends > 0 && a.gso_sends * 4 < a.tx_packets,
        "a sent several datagrams per send: {a:?}"
    );
    assert!(
        b.gro_batches > 0 && b.gro_batches * 4 < b.rx_packets,
        "b received several datagrams per receive: {b:?}"
    );
    assert!(
        b.rx_coalesced_frames > 0 && b.rx_tun_writes * 4 < b.rx_packets,
        "b wrote coalesced super-packets: {b:?}"
    );
    // Per peer: the stream is a's traffic to b and b's from a.
    let (tx_p, tx_b, _, _) = peer_counters(&a, name(1).id());
    assert!(tx_b as usize > bytes && tx_p > 0, "a → b per peer: {a:?}");
    let (_, _, rx_p, rx_b) = peer_counters(&b, name(0).id());
    assert!(rx_b as usize > bytes && rx_p > 0, "b ← a per peer: {b:?}");
    assert_eq!(
        (tx_p, tx_b),
        (a.tx_packets, a.tx_bytes),
        "all of a's traffic went to b"
    );
    assert_eq!(
        (rx_p, rx_b),
        (b.rx_packets, b.rx_bytes),
        "all of b's came from a"
    );
    assert_no_drops(&c, "64 MiB");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn relay_keeps_tcp_and_udp_batched_and_intact() {
    require_root();
    let c = Cluster::start_with("fprl", 0, [Disabled::default(); PEERS]);
    c.bed.blackhole(0, 1).expect("blackhole a-b");
    c.route(VIA_C);
    let before = c.counters(2);
    let bytes = 32 << 20;
    let t = tcp_transfer(&c, 0, 1, bytes, 5001);
    println!(
        "a → c → b: 32 MiB in {t:?} = {:.0} Mbit/s",
        mbit_per_s(bytes, t)
    );
    let after = c.counters(2);
    let relayed = after.relayed_packets - before.relayed_packets;
    let min_segments = (bytes / (c.mtu as usize - 40)) as u64;
    assert!(
        relayed >= min_segments,
        "c relayed: {relayed} < {min_segments}"
    );
    assert!(
        after.gro_batches > before.gro_batches
            && (after.gso_sends - before.gso_sends) * 4 < relayed,
        "c relayed batches with GSO: {after:?}"
    );
    assert_eq!(after.rx_packets, 0, "nothing for c's own TUN");

    // UDP both ways through c: a mix of sizes, fragments included.
    let echo = Echo::start(&c, 1, SocketAddr::from((node_ip(1), 7001)));
    let client = c.udp(0, SocketAddr::from((node_ip(0), 0)));
    let retries = echo_sizes(
        &client,
        echo.addr,
        mixed_sizes(c.mtu as usize - 28).into_iter(),
    );
    println!("UDP mix through c ({retries} retries)");
    // UDP segmentation from an application, through c.
    let uso = uso_round(&c, 0, 1, 7002);
    println!("USO through c: {uso:?}");
    assert!(c.counters(2).relayed_packets > after.relayed_packets);
    assert_eq!(c.counters(2).rx_packets, 0);
    assert_no_drops(&c, "relay");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn udp_and_ping_of_every_size_and_fragments_arrive_intact() {
    require_root();
    let c = Cluster::start_with("fpmx", 0, [Disabled::default(); PEERS]);
    let max = c.mtu as usize - 28;
    let echo = Echo::start(&c, 1, SocketAddr::from((node_ip(1), 7001)));
    let client = c.udp(0, SocketAddr::from((node_ip(0), 0)));
    let retries = echo_sizes(&client, echo.addr, mixed_sizes(max).into_iter());
    println!("UDP mix a ↔ b ({retries} retries)");
    // ICMP echo with payloads from 0 to past the MTU (fragmented) and the largest.
    let dst = node_ip(1).to_string();
    for size in mixed_sizes(max) {
        let size = size.min(65_507);
        let out = c.bed.nodes[0]
            .exec(
                "ping",
                &["-c", "1", "-W", "2", "-s", &size.to_string(), &dst],
            )
            .expect("ping runs");
        if !out.status.success() {
            // One retry: a single lost echo is not a failure of the overlay.
            let again = c.bed.nodes[0]
                .exec(
                    "ping",
                    &["-c", "1", "-W", "2", "-s", &size.to_string(), &dst],
                )
                .expect("ping runs");
            assert!(
                again.status.success(),
                "ping -s {size}: {}",
                String::from_utf8_lossy(&again.stdout)
            );
        }
    }
    assert_no_drops(&c, "mix");
}

/// Sends 3 rounds of 40 datagrams of 1000 bytes (+ one of 333) from node `from` to node `to`
/// with `UDP_SEGMENT` (one send each) and checks every datagram arrives intact. Returns
/// `from`'s super-packet count.
fn uso_round(c: &Cluster, from: usize, to: usize, port: u16) -> u64 {
    let rx = c.udp(to, SocketAddr::from((node_ip(to), port)));
    rx.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let tx = c.udp(from, SocketAddr::from((node_ip(from), 0)));
    let segment: libc::c_int = 1000;
    // SAFETY: setsockopt reads one c_int from a live local; the fd is an open socket.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&segment as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let before = c.counters(from).tx_super_packets;
    let mut buf = vec![0u8; 65536];
    for round in 0..3u8 {
        let mut data = Vec::new();
        for i in 0..41u8 {
            let len = if i == 40 { 333 } else { 1000 };
            data.extend(std::iter::repeat_n(i ^ round, len));
        }
        let mut got = 0;
        for attempt in 0..3 {
            tx.send_to(&data, SocketAddr::from((node_ip(to), port)))
                .expect("USO send");
            got = 0;
            while got < 41 {
                match rx.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let first = buf[0];
                        let i = first ^ round;
                        assert!(i < 41, "round {round}: unexpected datagram");
                        let want = if i == 40 { 333 } else { 1000 };
                        assert_eq!(n, want, "datagram {i} whole");
                        assert!(buf[..n].iter().all(|&b| b == first), "datagram {i} intact");
                        got += 1;
                    }
                    Err(e) => {
                        eprintln!("USO round {round} attempt {attempt}: {got}/41 ({e})");
                        break;
                    }
                }
            }
            if got == 41 {
                break;
            }
            // Drain what is left of a partial round before retrying.
            rx.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            while rx.recv_from(&mut buf).is_ok() {}
            rx.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        assert_eq!(
            got, 41,
            "round {round}: every datagram of the USO send arrived"
        );
    }
    c.counters(from).tx_super_packets - before
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn udp_segmentation_from_applications_crosses_as_super_packets() {
    require_root();
    let c = Cluster::start_with("fpus", 0, [Disabled::default(); PEERS]);
    let supers = uso_round(&c, 0, 1, 7003);
    assert!(
        supers >= 3,
        "a read the USO sends as super-packets: {supers}"
    );
    let b = c.counters(1);
    assert!(b.rx_coalesced_frames > 0, "b coalesced UDP too: {b:?}");
    assert_no_drops(&c, "USO");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn every_switch_combination_carries_a_checksummed_transfer() {
    require_root();
    for d in Disabled::all_combinations() {
        let c = Cluster::start_with("fpsw", 0, [d; PEERS]);
        let bytes = 4 << 20;
        let t = tcp_transfer(&c, 0, 1, bytes, 5001);
        let echo = Echo::start(&c, 1, SocketAddr::from((node_ip(1), 7001)));
        let client = c.udp(0, SocketAddr::from((node_ip(0), 0)));
        let max = c.mtu as usize - 28;
        echo_sizes(
            &client,
            echo.addr,
            [0, 1, 100, max, max + 1, 9000, 65_507].into_iter(),
        );
        let (a, b) = (c.counters(0), c.counters(1));
        let o = c.datapaths[0].offloads();
        println!(
            "disabled [{d}]: {:.0} Mbit/s; super-packets {}, GSO sends {}, GRO batches {}, coalesced {}",
            mbit_per_s(bytes, t),
            a.tx_super_packets,
            a.gso_sends,
            b.gro_batches,
            b.rx_coalesced_frames
        );
        let want = Offloads {
            tun_vnet_hdr: !d.tun_offload,
            tun_tso: !d.tun_offload,
            tun_uso: !d.tun_offload,
            udp_gso: !d.udp_gso,
            udp_gro: !d.udp_gro,
            coalesce_tcp: !d.tun_offload && !d.coalesce,
            coalesce_udp: !d.tun_offload && !d.coalesce,
        };
        assert_eq!(o, want, "[{d}]");
        assert_eq!(a.tx_super_packets > 0, !d.tun_offload, "[{d}] {a:?}");
        assert_eq!(a.gso_sends > 0, !d.udp_gso && !d.tun_offload, "[{d}] {a:?}");
        if d.udp_gro {
            assert_eq!(b.gro_batches, 0, "[{d}] {b:?}");
        } else if !d.udp_gso && !d.tun_offload {
            assert!(b.gro_batches > 0, "[{d}] {b:?}");
        }
        assert_eq!(
            b.rx_coalesced_frames > 0,
            !d.tun_offload && !d.coalesce,
            "[{d}] {b:?}"
        );
        assert_no_drops(&c, &format!("[{d}]"));
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn peers_with_different_switches_interoperate() {
    require_root();
    let plain: Disabled = "tun-offload".parse().expect("switch");
    let no_batching: Disabled = "udp-gro,coalesce".parse().expect("switch");
    let c = Cluster::start_with("fpmi", 0, [Disabled::default(), plain, no_batching]);
    // a sends partial checksums to b, whose plain TUN needs them completed; and back.
    for (from, to, port) in [(0, 1, 5001), (1, 0, 5002), (0, 2, 5003), (2, 1, 5004)] {
        tcp_transfer(&c, from, to, 4 << 20, port);
    }
    let echo = Echo::start(&c, 1, SocketAddr::from((node_ip(1), 7001)));
    let client = c.udp(0, SocketAddr::from((node_ip(0), 0)));
    echo_sizes(
        &client,
        echo.addr,
        mixed_sizes(c.mtu as usize - 28).into_iter(),
    );
    uso_round(&c, 0, 1, 7002);
    uso_round(&c, 0, 2, 7003);
    assert_no_drops(&c, "mixed switches");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn gso_switched_off_sends_datagram_by_datagram() {
    require_root();
    let no_gso: Disabled = "udp-gso".parse().expect("switch");
    let c = Cluster::start_with(
        "fpgs",
        0,
        [no_gso, Disabled::default(), Disabled::default()],
    );
    assert!(!c.datapaths[0].offloads().udp_gso);
    tcp_transfer(&c, 0, 1, 16 << 20, 5001);
    tcp_transfer(&c, 1, 0, 4 << 20, 5002);
    let (a, b) = (c.counters(0), c.counters(1));
    assert!(a.tx_super_packets > 0, "a still reads super-packets: {a:?}");
    assert_eq!(a.gso_sends, 0, "but sends each datagram alone: {a:?}");
    assert!(b.gso_sends > 0, "b still uses GSO: {b:?}");
    assert_no_drops(&c, "no GSO on a");
}
