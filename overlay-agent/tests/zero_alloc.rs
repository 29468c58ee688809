//! Zero allocations per packet: the counting global allocator (`overlay_testkit::counting`)
//! counts every allocation made on a data-path thread
//! (`overlay_agent::datapath::on_datapath_thread`), and the data paths of a namespace cluster
//! (the bed: `datapath_bed`) carry a second of heavy TCP and UDP traffic, through a relay
//! too, while their forwarding tables are swapped: after warm-up, the packet threads allocate
//! nothing.

mod datapath_bed;

use datapath_bed::*;
use overlay_agent::datapath::{on_datapath_thread, Disabled};
use overlay_testbed::require_root;
use overlay_testkit::counting::{allocations, count_threads_where, Counting};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A TCP stream from node `from` to node `to` until `stop`, with buffers allocated up front.
fn tcp_flood(
    c: &Cluster,
    from: usize,
    to: usize,
    port: u16,
    stop: &Arc<AtomicBool>,
) -> [JoinHandle<()>; 2] {
    let addr = SocketAddr::from((node_ip(to), port));
    let listener = c.bed.nodes[to]
        .run(move || TcpListener::bind(addr))
        .expect("thread in node")
        .expect("listen");
    let stop_rx = stop.clone();
    listener.set_nonblocking(true).expect("nonblocking");
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept on {addr}: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = vec![0u8; 1 << 16];
        while !stop_rx.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("server read: {e}"),
            }
        }
    });
    let stop_tx = stop.clone();
    let client = c.bed.nodes[from]
        .spawn(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let buf = vec![0x5au8; 1 << 16];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop_tx.load(Ordering::Relaxed) && Instant::now() < deadline {
                match s.write(&buf) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // The server may close first once asked to stop.
                    Err(_) if stop_tx.load(Ordering::Relaxed) => break,
                    Err(e) => panic!("client write: {e}"),
                }
            }
        })
        .expect("thread in node");
    [server, client]
}

/// UDP datagrams of many sizes (fragmented ones too) from `from` to a sink on `to` until
/// `stop`.
fn udp_flood(
    c: &Cluster,
    from: usize,
    to: usize,
    port: u16,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let sink = c.udp(to, SocketAddr::from((node_ip(to), port)));
    let src: UdpSocket = c.udp(from, SocketAddr::from((node_ip(from), 0)));
    let stop = stop.clone();
    let max = c.mtu as usize - 28;
    std::thread::spawn(move || {
        sink.set_nonblocking(true).expect("nonblocking");
        let payload = vec![0xa5u8; 20_000];
        let mut buf = vec![0u8; 65536];
        let sizes = [0, 1, 64, 500, max, max + 1, 3000, 20_000];
        let to = sink.local_addr().expect("addr");
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = src.send_to(&payload[..sizes[i % sizes.len()]], to);
            i += 1;
            while sink.recv_from(&mut buf).is_ok() {}
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

/// Runs TCP both ways a ↔ b and c → b, and UDP, for `secs`: the first half with a ↔ b routed
/// through c, the second half direct.
fn traffic(c: &Cluster, secs: f64, ports: u16) {
    c.route(VIA_C);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    threads.extend(tcp_flood(c, 0, 1, ports, &stop));
    threads.extend(tcp_flood(c, 1, 0, ports + 1, &stop));
    threads.extend(tcp_flood(c, 2, 1, ports + 2, &stop));
    threads.push(udp_flood(c, 0, 1, ports + 3, &stop));
    threads.push(udp_flood(c, 1, 2, ports + 4, &stop));
    std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
    // A routing change mid-flow: the threads pick up the new table without allocating.
    c.route(FULL_MESH);
    std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("traffic thread");
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn the_data_path_threads_allocate_nothing_under_load() {
    require_root();
    count_threads_where(on_datapath_thread);
    let c = Cluster::start_with("zall", 0, [Disabled::default(); PEERS]);
    measure(&c, "plain");
    drop(c);
    // The same with a sealed data path (`--encrypt`): sealers and openers are built on the
    // first packet of each peer (warm-up), then sealing and opening allocate nothing either.
    // (One test, not two: the allocation counter is global to the process.)
    let c = Cluster::start_sealed("zals");
    measure(&c, "sealed");
    let drops = c.counters(1).drops;
    assert_eq!(
        (drops.no_key, drops.bad_tag, drops.unsealed),
        (0, 0, 0),
        "every datagram sealed and opened: {drops:?}"
    );
}

/// Most one-second rounds of traffic [`measure`] runs to see a super-packet and a relay.
const MAX_ROUNDS: u16 = 8;

/// Warms `c` up, then measures the data-path threads' allocations under load.
fn measure(c: &Cluster, what: &str) {
    assert!(
        allocations() > 0,
        "the allocator sees the data-path threads (their buffers are allocated at start)"
    );
    // Warm-up: every path once (direct, relayed, UDP, fragments).
    tcp_transfer(c, 0, 1, 4 << 20, 5000);
    traffic(c, 1.0, 6000);

    let before: Vec<_> = (0..PEERS).map(|i| c.counters(i)).collect();
    let before_allocations = allocations();
    // Rounds of traffic until the measurement covers both the split path (a super-packet
    // read from the TUN) and a relay; on a busy machine TCP may not build super-packets in
    // the first second.
    for round in 0..MAX_ROUNDS {
        traffic(c, 1.0, 6100 + 10 * round);
        let split = c.counters(0).tx_super_packets > before[0].tx_super_packets;
        let relayed = c.counters(2).relayed_packets > before[2].relayed_packets;
        if split && relayed {
            break;
        }
    }
    let allocated = allocations() - before_allocations;
    let moved: u64 = (0..PEERS)
        .map(|i| c.counters(i).tx_bytes - before[i].tx_bytes)
        .sum();
    println!(
        "{what}: {} MiB moved, {allocated} allocations on data-path threads",
        moved >> 20
    );
    assert!(moved > 32 << 20, "heavy traffic flowed: {moved} bytes");
    assert!(
        c.counters(0).tx_super_packets > before[0].tx_super_packets,
        "the fast path was in use: {:?} then {:?}",
        before[0],
        c.counters(0)
    );
    assert!(
        c.counters(2).relayed_packets > before[2].relayed_packets,
        "c relayed during the measurement"
    );
    assert_eq!(
        allocated, 0,
        "{what}: no allocation on the packet threads under load"
    );
}
