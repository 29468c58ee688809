//! The data path end to end, as root, in network namespaces this test creates and removes
//! (the bed: `datapath_bed`). Runs with the fast path on; `OVERLAY_DATAPATH_DISABLE=...`
//! reruns it with offloads switched off.

mod datapath_bed;

use datapath_bed::*;
use overlay_agent::datapath::{CountersSnapshot, Datapath, DatapathConfig, DatapathError};
use overlay_agent::netlink::{self, NetlinkError};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::header::{Header, HEADER_LEN, VERSION};
use overlay_testbed::{require_root, unique_prefix, Netns, Underlay};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn tcp_stream_crosses_the_overlay_intact() {
    require_root();
    let c = Cluster::start("dtcp", 0);
    // OVERLAY_TEST_MIB=<n> streams more, for a rough throughput figure (run with --release).
    let mib: usize = std::env::var("OVERLAY_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let bytes = mib << 20;
    let t = tcp_transfer(&c, 0, 1, bytes, 5001);
    println!(
        "a → b: {} MiB in {t:?} = {:.0} Mbit/s",
        bytes >> 20,
        mbit_per_s(bytes, t)
    );
    let t = tcp_transfer(&c, 2, 0, 4 << 20, 5002);
    println!(
        "c → a: 4 MiB in {t:?} = {:.0} Mbit/s",
        mbit_per_s(4 << 20, t)
    );
    let (a, b) = (c.counters(0), c.counters(1));
    assert!(a.tx_bytes as usize > bytes, "a sent the stream: {a:?}");
    assert!(b.rx_bytes as usize > bytes, "b delivered the stream: {b:?}");
    assert!(b.tx_packets > 0 && a.rx_packets > 0, "acks went back");
    for (i, node) in NAMES.iter().enumerate() {
        let n = c.counters(i);
        println!("{node}: {n:?}");
        assert_eq!(n.relayed_packets, 0, "full mesh: nothing relayed");
        let d = &n.drops;
        assert_eq!(
            (
                d.not_peer,
                d.malformed,
                d.spoofed,
                d.not_local,
                d.hop_limit,
                d.too_big,
                d.unsupported,
            ),
            (0, 0, 0, 0, 0, 0, 0),
            "no drops of good traffic on {node}: {n:?}"
        );
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn udp_datagrams_of_every_size_up_to_the_overlay_mtu_arrive() {
    require_root();
    let c = Cluster::start("dudp", 0);
    let echo = Echo::start(&c, 1, SocketAddr::from((node_ip(1), 7001)));
    let client = c.udp(0, SocketAddr::from((node_ip(0), 0)));
    let max = c.mtu as usize - 28;
    let retries = echo_sizes(&client, echo.addr, 0..=max);
    println!("sizes 0..={max} echoed through the overlay ({retries} retries)");
    let (a, b) = (c.counters(0), c.counters(1));
    assert!(
        a.tx_packets > max as u64 && b.rx_packets > max as u64,
        "{a:?} {b:?}"
    );
    assert_eq!(
        a.drops.too_big + b.drops.too_big,
        0,
        "nothing exceeded the path MTU"
    );
    // One byte more does not fit one overlay packet: the kernel fragments the inner packet
    // before the TUN, and the fragments still arrive and reassemble.
    echo_sizes(&client, echo.addr, [max + 1].into_iter());
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn relay_carries_traffic_when_the_direct_path_is_blackholed() {
    require_root();
    let c = Cluster::start("drel", 0);
    tcp_transfer(&c, 0, 1, 1 << 20, 5001);
    assert_eq!(c.counters(2).relayed_packets, 0, "direct at first");

    c.bed.blackhole(0, 1).expect("blackhole a-b");
    c.route(VIA_C);
    let before = c.counters(2);
    let bytes = 8 << 20;
    let t = tcp_transfer(&c, 0, 1, bytes, 5002);
    let after = c.counters(2);
    println!(
        "a → c → b: {} MiB in {t:?} = {:.0} Mbit/s",
        bytes >> 20,
        mbit_per_s(bytes, t)
    );
    let relayed = after.relayed_packets - before.relayed_packets;
    let min_segments = (bytes / (c.mtu as usize - 40)) as u64;
    assert!(
        relayed >= min_segments,
        "c relayed every data segment: {relayed} < {min_segments}"
    );
    assert_eq!(
        after.rx_packets, before.rx_packets,
        "relayed traffic is not written to c's own TUN"
    );
    assert_eq!(after.drops.hop_limit, 0);

    // Back to direct once the path heals and the tables say so.
    c.bed.heal(0, 1).expect("heal");
    c.route(FULL_MESH);
    let before = c.counters(2).relayed_packets;
    tcp_transfer(&c, 1, 0, 1 << 20, 5003);
    assert_eq!(c.counters(2).relayed_packets, before, "direct again");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn hostile_datagrams_are_counted_and_traffic_keeps_flowing() {
    require_root();
    // Node 3 is on the underlay but not a peer.
    let c = Cluster::start("dhos", 1);
    // No traffic before this point, so any delivery would show in rx_packets.
    let before: Vec<CountersSnapshot> = (0..PEERS).map(|i| c.counters(i)).collect();
    assert_eq!(
        before[0].rx_packets + before[1].rx_packets,
        0,
        "quiet so far"
    );

    // Garbage (and one well-formed datagram) from a namespace that is not a peer.
    let outsider = c.udp(3, SocketAddr::from((Underlay::node_addr(3), 0)));
    let mut gen = Bytes(99);
    for len in 0..49 {
        let mut d = vec![0u8; len * 31];
        gen.fill(&mut d);
        send(&outsider, &d, underlay(0));
    }
    let good = ipv4_udp(pod_ip(1), pod_ip(0), 9, b"looks legit");
    send(
        &outsider,
        &datagram(Header::ip(name(1).id(), name(0).id()), &good),
        underlay(0),
    );
    let a = c.wait_counters(0, "50 datagrams from a non-peer", |n| {
        n.drops.not_peer == before[0].drops.not_peer + 50
    });
    assert_eq!(a.rx_packets, before[0].rx_packets, "none delivered");

    // From a's crafting socket (an accepted sender) to b: broken headers and inner packets.
    let craft = c.udp(0, SocketAddr::from((Underlay::node_addr(0), CRAFT_PORT)));
    let a_to_b = Header::ip(name(0).id(), name(1).id());
    let target = SocketAddr::from((node_ip(1), 7002));
    let ok_packet = ipv4_udp(pod_ip(0), node_ip(1), 7002, b"legit");
    for len in 0..HEADER_LEN {
        send(&craft, &datagram(a_to_b, &ok_packet)[..len], underlay(1));
    }
    let mut d = datagram(a_to_b, &ok_packet);
    d[0] = VERSION + 1;
    send(&craft, &d, underlay(1));
    let mut d = datagram(a_to_b, &ok_packet);
    d[1] = 0x7f;
    send(&craft, &d, underlay(1));
    send(&craft, &datagram(a_to_b, &[0x45; 10]), underlay(1));
    send(
        &craft,
        &datagram(a_to_b, &ok_packet[..ok_packet.len() - 1]),
        underlay(1),
    );
    let b = c.wait_counters(1, "broken headers and inner packets", |n| {
        n.drops.malformed == before[1].drops.malformed + HEADER_LEN as u64 + 2
            && n.drops.bad_version == before[1].drops.bad_version + 1
            && n.drops.bad_kind == before[1].drops.bad_kind + 1
    });
    assert_eq!(b.rx_packets, before[1].rx_packets, "none delivered");

    // A correct header with a spoofed inner source (c's block), then one for an address
    // outside b's block, then the same packet with a true source: only the last arrives.
    let listener = c.udp(1, target);
    let spoofed = ipv4_udp(pod_ip(2), node_ip(1), 7002, b"spoofed");
    send(&craft, &datagram(a_to_b, &spoofed), underlay(1));
    let elsewhere = ipv4_udp(pod_ip(0), pod_ip(2), 7002, b"not for b");
    send(&craft, &datagram(a_to_b, &elsewhere), underlay(1));
    send(&craft, &datagram(a_to_b, &ok_packet), underlay(1));
    let (got, from) = recv(&listener);
    assert_eq!(
        (got.as_slice(), from),
        (&b"legit"[..], SocketAddr::from((pod_ip(0), 4000))),
        "the spoofed datagram was not delivered; the true one was"
    );
    // Counted at the end of the receive, which may be after the listener got it.
    c.wait_counters(1, "spoofed and not-local drops, one delivery", |n| {
        n.drops.spoofed == before[1].drops.spoofed + 1
            && n.drops.not_local == before[1].drops.not_local + 1
            && n.rx_packets == before[1].rx_packets + 1
    });

    // Relayed through c: hop limit 1 is dropped there, hop limit 2 goes on to b.
    let mut last_hop = a_to_b;
    last_hop.hop_limit = 1;
    let hop1 = ipv4_udp(pod_ip(0), node_ip(1), 7002, b"hop limit 1");
    send(&craft, &datagram(last_hop, &hop1), underlay(2));
    let c_counters = c.wait_counters(2, "hop-limit drop", |n| {
        n.drops.hop_limit == before[2].drops.hop_limit + 1
    });
    assert_eq!(c_counters.relayed_packets, before[2].relayed_packets);
    last_hop.hop_limit = 2;
    let hop2 = ipv4_udp(pod_ip(0), node_ip(1), 7002, b"hop limit 2");
    send(&craft, &datagram(last_hop, &hop2), underlay(2));
    let (got, _) = recv(&listener);
    assert_eq!(
        got, b"hop limit 2",
        "the hop-limit-1 datagram never arrived"
    );
    // Counted once the send returned, which may be after b got it.
    c.wait_counters(2, "one relayed", |n| {
        n.relayed_packets == before[2].relayed_packets + 1
    });

    // Traffic keeps flowing, and the good traffic after all that adds no drops.
    let marks: Vec<CountersSnapshot> = (0..PEERS).map(|i| c.counters(i)).collect();
    tcp_transfer(&c, 0, 1, 4 << 20, 5001);
    tcp_transfer(&c, 2, 1, 1 << 20, 5002);
    for (i, mark) in marks.iter().enumerate() {
        assert_eq!(
            c.counters(i).total_drops(),
            mark.total_drops(),
            "good traffic is not dropped on {}",
            NAMES[i]
        );
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn shutdown_is_prompt_under_load_frees_the_socket_and_keeps_the_device() {
    require_root();
    let mut c = Cluster::start("dstp", 0);
    // Keep a UDP flood a → b going while a and b shut down.
    let flood = c.udp(0, SocketAddr::from((node_ip(0), 0)));
    let sink = SocketAddr::from((node_ip(1), 9));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flood = stop.clone();
    let payload = vec![0x5a; c.mtu as usize - 28];
    let flooder = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop_flood.load(Ordering::Relaxed) && Instant::now() < deadline {
            let _ = flood.send_to(&payload, sink);
        }
    });
    c.wait_counters(0, "flood under way", |n| n.tx_packets > 1000);
    for i in [0, 1] {
        let dp = c.datapaths.remove(0);
        let start = Instant::now();
        dp.shutdown();
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "node {i} shut down in {took:?}"
        );
        // The TUN device stays (it is persistent, for hitless restarts) and the UDP port is
        // free again; `remove_device` (`overlay-agent reset`) deletes the device. (Bounded
        // retries: a child process that another test thread is forking may hold a copy of
        // the TUN fd and the socket until its exec closes them.)
        let node = &c.bed.nodes[i];
        let links = node.ip(&["-o", "link", "show"]).expect("links");
        assert!(links.contains(TUN), "{TUN} kept after shutdown: {links}");
        overlay_testbed::wait::until(
            &format!("{TUN} to be removed from node {i}"),
            Duration::from_secs(2),
            Duration::from_millis(20),
            || {
                let removed = node
                    .run(|| overlay_agent::datapath::remove_device(TUN))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let links = node
                    .ip(&["-o", "link", "show"])
                    .map_err(|e| e.to_string())?;
                if !removed || links.contains(TUN) {
                    Err(format!("removed: {removed}, links: {links}"))
                } else {
                    Ok(Some(()))
                }
            },
        )
        .expect("TUN device removed by remove_device");
        overlay_testbed::wait::until(
            &format!("port {PORT} to be free in node {i}"),
            Duration::from_secs(2),
            Duration::from_millis(20),
            || {
                let bound = node
                    .run(move || UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], PORT))))
                    .map_err(|e| e.to_string())?;
                Ok(bound.ok().map(drop))
            },
        )
        .expect("socket closed by shutdown");
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flooder");
    // An idle data path (c) too.
    let dp = c.datapaths.remove(0);
    let start = Instant::now();
    dp.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "idle shutdown took {:?}",
        start.elapsed()
    );
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn configure_tun_is_idempotent_and_follows_a_claim_change() {
    require_root();
    let ns = Netns::create(&unique_prefix("dcfg")).expect("netns");
    let me = name(0).id();
    let dp = ns
        .run(move || {
            let config = DatapathConfig {
                iface: TUN.into(),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                mtu: 1400,
                disabled: env_switches(),
            };
            Datapath::start(config, ForwardingTable::empty(me, cluster_net(), 24))
        })
        .expect("thread")
        .expect("data path");
    assert_eq!(dp.iface(), TUN);
    assert_ne!(dp.local_addr().port(), 0, "bound port reported");
    let configure = |addr: Option<Ipv4Addr>, mtu: u32| {
        ns.run(move || runtime().block_on(netlink::configure_tun(TUN, mtu, addr, cluster_net())))
            .expect("thread")
            .unwrap_or_else(|e| panic!("configure_tun({addr:?}): {e}"));
    };
    let show = |what: &[&str]| ns.ip(what).expect("ip");
    configure(Some(node_ip(0)), 1400);
    configure(Some(node_ip(0)), 1400);
    let addrs = show(&["-4", "-o", "addr", "show", "dev", TUN]);
    assert_eq!(
        addrs.lines().count(),
        1,
        "one address after two calls: {addrs}"
    );
    assert!(addrs.contains("10.32.1.1/32"), "{addrs}");
    let v6 = show(&["-6", "-o", "addr", "show", "dev", TUN]);
    assert_eq!(v6.trim(), "", "no IPv6 (link-local) address on the TUN");
    let link = show(&["-o", "link", "show", TUN]);
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    assert!(link.contains("qlen 5000"), "txqueuelen raised: {link}");
    let details = show(&["-d", "-o", "link", "show", TUN]);
    assert!(
        details.contains("gso_max_segs 128"),
        "super-packets fit one split: {details}"
    );
    let routes = show(&["-4", "route", "show", "10.32.0.0/12"]);
    assert_eq!(
        routes.trim(),
        format!("10.32.0.0/12 dev {TUN} proto static scope link src 10.32.1.1"),
    );

    // The claim moved: new address, the old one gone, the route follows; new MTU.
    configure(Some(node_ip(2)), 1300);
    let addrs = show(&["-4", "-o", "addr", "show", "dev", TUN]);
    assert!(
        addrs.contains("10.32.3.1/32") && !addrs.contains("10.32.1.1"),
        "{addrs}"
    );
    let routes = show(&["-4", "route", "show", "10.32.0.0/12"]);
    assert_eq!(
        routes.trim(),
        format!("10.32.0.0/12 dev {TUN} proto static scope link src 10.32.3.1"),
    );
    assert!(show(&["-o", "link", "show", TUN]).contains("mtu 1300"));

    // No claim: no address, the route stays (without a source).
    configure(None, 1300);
    assert_eq!(show(&["-4", "-o", "addr", "show", "dev", TUN]).trim(), "");
    let routes = show(&["-4", "route", "show", "10.32.0.0/12"]);
    assert_eq!(
        routes.trim(),
        format!("10.32.0.0/12 dev {TUN} proto static scope link")
    );
    dp.shutdown();
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn errors_say_what_failed() {
    require_root();
    let ns = Netns::create(&unique_prefix("derr")).expect("netns");
    ns.ip(&["link", "add", "br9", "type", "bridge"])
        .expect("bridge link");
    let me = name(0).id();
    let start = move |iface: &str, listen: &str| {
        let config = DatapathConfig {
            iface: iface.into(),
            listen: listen.parse().expect("addr"),
            mtu: 1400,
            disabled: env_switches(),
        };
        Datapath::start(config, ForwardingTable::empty(me, cluster_net(), 24))
    };
    let results = ns
        .run(move || {
            (
                start("ovl0", "10.1.2.3:6783").map(drop),
                start("a-name-too-long0", "127.0.0.1:0").map(drop),
                start("br9", "127.0.0.1:0").map(drop),
                runtime().block_on(netlink::configure_tun("nope0", 1400, None, cluster_net())),
                runtime().block_on(netlink::underlay_mtu(IpAddr::from([10, 1, 2, 3]))),
            )
        })
        .expect("thread");
    let (bind, long, not_tun, no_link, no_addr) = results;
    let bind = bind.expect_err("address not on this host");
    assert!(matches!(bind, DatapathError::Bind { .. }), "{bind:?}");
    assert!(bind.to_string().contains("10.1.2.3:6783"), "{bind}");
    let long = long.expect_err("name too long");
    assert!(
        matches!(long, DatapathError::InvalidName { .. }),
        "{long:?}"
    );
    let not_tun = not_tun.expect_err("br9 is not a TUN device");
    assert!(
        matches!(not_tun, DatapathError::TunNotTun { .. }),
        "{not_tun:?}"
    );
    let said = not_tun.to_string();
    assert!(said.contains("br9") && said.contains("not a TUN"), "{said}");
    let no_link = no_link.expect_err("no such link");
    assert!(
        matches!(no_link, NetlinkError::NoSuchLink { .. }),
        "{no_link:?}"
    );
    let no_addr = no_addr.expect_err("no interface holds it");
    assert!(
        matches!(no_addr, NetlinkError::NoInterfaceWithAddress { .. }),
        "{no_addr:?}"
    );
}
