//! Forwarding table lookup with 1000 peers, each owning a /24 of 10.32.0.0/12
//! (target: ≤ 30 ns per lookup).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_benches::{addresses_in_blocks, cluster, peer_name, ring_topology, SUBNET_PREFIX};
use overlay_proto::forwarding::{ForwardingTable, Lookup};
use overlay_proto::routing::compute_routes;
use std::hint::black_box;
use std::net::Ipv4Addr;

const PEERS: usize = 1000;

fn lookup(c: &mut Criterion) {
    let topology = ring_topology(PEERS);
    let me = peer_name(0);
    let routes = compute_routes(&topology, &me);
    let table = ForwardingTable::build(&me, &topology, &routes, cluster(), SUBNET_PREFIX, &[]);
    assert_eq!(table.peer_count(), PEERS - 1);
    // Destinations spread over every peer's block, so the branch predictor cannot learn one.
    let addrs = addresses_in_blocks(4096, PEERS);
    let remote = addrs
        .iter()
        .filter(|a| matches!(table.lookup(**a), Lookup::Remote { .. }))
        .count();
    assert!(remote > addrs.len() * 9 / 10, "almost all remote: {remote}");
    let mask = addrs.len() - 1;
    assert!(addrs.len().is_power_of_two());

    let mut g = c.benchmark_group("forwarding");
    g.throughput(Throughput::Elements(1));
    // Many flows: each lookup for another random peer's block.
    g.bench_function("lookup_1000_peers", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            table.lookup(black_box(addrs[i]))
        })
    });
    // One flow: the same destination every time (one lookup per super-packet of a stream).
    let one = addrs[0];
    g.bench_function("lookup_1000_peers_one_flow", |b| {
        b.iter(|| table.lookup(black_box(one)))
    });
    g.bench_function("lookup_outside_cluster", |b| {
        b.iter(|| table.lookup(black_box(Ipv4Addr::new(8, 8, 8, 8))))
    });
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
