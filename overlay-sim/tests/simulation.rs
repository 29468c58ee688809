//! Deterministic simulations of many agents (no sockets, simulated time, seeded loss).
//!
//! Run with `cargo test -p overlay-proto --test simulation -- --nocapture` to see the
//! simulated convergence times.

use overlay_sim as sim;

use sim::{Conditions, Sim};
use std::collections::BTreeSet;
use std::time::Duration;

const NODES: usize = 50;

/// `n` agents seeded in a chain (each knows only the previous one), all started at once, with
/// 1% message loss and 5% failed dials.
fn chained_cluster(seed: u64, n: usize) -> (Sim, Duration) {
    let mut s = Sim::new(seed, Conditions::default());
    for i in 0..n {
        let seeds: Vec<usize> = if i == 0 { vec![] } else { vec![i - 1] };
        s.add_node(&seeds);
    }
    for i in 0..n {
        s.start(i);
    }
    let t = s
        .run_until_true(Duration::from_secs(120), Sim::converged)
        .unwrap_or_else(|| {
            panic!(
                "{n} chained agents did not converge in 120 s simulated ({})",
                describe(&s)
            )
        });
    (s, t)
}

fn describe(s: &Sim) -> String {
    let alive = s.alive();
    let claims = alive
        .iter()
        .filter(|&&i| s.node(i).claim().is_some())
        .count();
    let min_routes = alive
        .iter()
        .map(|&i| s.node(i).routes().len())
        .min()
        .unwrap_or(0);
    let topo_sizes: BTreeSet<usize> = alive.iter().map(|&i| s.node(i).topology().len()).collect();
    format!("{} alive, {claims} with a block, min reachable {min_routes}, topology sizes {topo_sizes:?}", alive.len())
}

#[test]
fn fifty_chained_agents_converge_with_unique_blocks() {
    let (mut s, t) = chained_cluster(1, NODES);
    println!(
        "simulated convergence of {NODES} chained agents: {:.1} s ({} messages, {} KiB)",
        t.as_secs_f64(),
        s.messages,
        s.bytes / 1024
    );
    // Stays converged: nothing flaps afterwards.
    s.run_for(Duration::from_secs(60));
    assert!(
        s.converged(),
        "still converged a minute later: {}",
        describe(&s)
    );
}

#[test]
fn convergence_does_not_depend_on_start_order_or_seeds() {
    for seed in [2u64, 3, 4] {
        let mut s = Sim::new(seed, Conditions::default());
        let mut rng = sim::Rng::new(seed);
        // Random seeds among the other nodes, random start times over 10 s.
        for i in 0..NODES {
            let a = rng.below(NODES as u64) as usize;
            let b = rng.below(NODES as u64) as usize;
            let seeds: Vec<usize> = [a, b].into_iter().filter(|&x| x != i).collect();
            s.add_node(&seeds);
        }
        let mut order: Vec<usize> = (0..NODES).collect();
        for i in (1..NODES).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            s.start(i);
            let gap = Duration::from_millis(rng.below(200));
            s.run_for(gap);
        }
        let t = s
            .run_until_true(Duration::from_secs(120), Sim::converged)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence ({})", describe(&s)));
        println!(
            "seed {seed}: random order and seeds converged {:.1} s after the last start",
            t.as_secs_f64()
        );
    }
}

#[test]
fn same_seed_same_run() {
    let (a, ta) = chained_cluster(9, 20);
    let (b, tb) = chained_cluster(9, 20);
    assert_eq!(ta, tb);
    assert_eq!(a.messages, b.messages);
    let claims = |s: &Sim| -> Vec<_> { s.alive().iter().map(|&i| s.node(i).claim()).collect() };
    assert_eq!(claims(&a), claims(&b));
}

#[test]
fn dead_agent_is_unreachable_everywhere_within_15s_and_returns_with_its_block() {
    let (mut s, _) = chained_cluster(5, NODES);
    let victim = 17;
    let block = s.node(victim).claim().expect("victim has a block");
    let victim_name = sim::name(victim);

    // Silent death (as a power cut: no FIN reaches anyone), detected by heartbeats.
    s.kill_silently(victim);
    let detect = s
        .run_until_true(Duration::from_secs(15), |s| {
            s.alive()
                .iter()
                .all(|&i| !s.node(i).routes().is_reachable(&victim_name))
        })
        .unwrap_or_else(|| panic!("victim still reachable somewhere after 15 s"));
    println!(
        "silent death detected by all {} agents in {:.1} s",
        NODES - 1,
        detect.as_secs_f64()
    );

    // It comes back at the same address with its persisted claim.
    s.start(victim);
    let back = s
        .run_until_true(Duration::from_secs(60), Sim::converged)
        .unwrap_or_else(|| panic!("no convergence after the restart ({})", describe(&s)));
    println!(
        "restarted agent re-converged in {:.1} s",
        back.as_secs_f64()
    );
    assert_eq!(
        s.node(victim).claim().map(|c| c.block),
        Some(block.block),
        "kept its block"
    );
}

#[test]
fn broken_direct_path_routes_through_a_third_agent() {
    let mut s = Sim::new(6, Conditions::default());
    s.add_node(&[]);
    s.add_node(&[0]);
    s.add_node(&[1]);
    for i in 0..3 {
        s.start(i);
    }
    s.run_until_true(Duration::from_secs(30), Sim::converged)
        .expect("converged");
    s.cut_link(0, 2);
    let t = s
        .run_until_true(Duration::from_secs(30), |s| {
            s.node(0)
                .routes()
                .get(&sim::name(2))
                .is_some_and(|r| r.next_hop == sim::name(1) && r.hops == 2)
        })
        .expect("0 routes to 2 through 1");
    println!("re-routed around a cut link in {:.1} s", t.as_secs_f64());
    s.heal_link(0, 2);
    s.run_until_true(Duration::from_secs(90), |s| {
        s.node(0)
            .routes()
            .get(&sim::name(2))
            .is_some_and(|r| r.hops == 1)
    })
    .expect("direct again after healing");
}

#[test]
fn split_brain_claims_on_one_block_are_settled_when_partitions_meet() {
    // Two halves that cannot see each other both start with the same persisted block.
    let mut s = Sim::new(7, Conditions::default());
    for i in 0..10 {
        let seeds = if i == 0 || i == 5 {
            vec![]
        } else if i < 5 {
            vec![0]
        } else {
            vec![5]
        };
        s.add_node(&seeds);
    }
    for a in 0..5 {
        for b in 5..10 {
            s.cut_link(a, b);
        }
    }
    let block = overlay_proto::topology::Claim {
        block: "10.32.77.0/24".parse().expect("cidr"),
        epoch: 0,
    };
    s.nodes[3].persisted = Some(block);
    s.nodes[8].persisted = Some(block);
    for i in 0..10 {
        s.start(i);
    }
    s.run_for(Duration::from_secs(10));
    assert_eq!(s.node(3).claim(), Some(block));
    assert_eq!(s.node(8).claim(), Some(block));
    // A seed across the partition, then heal: one of them keeps the block, the other moves.
    s.nodes[7].seeds.push(sim::addr(2));
    for a in 0..5 {
        for b in 5..10 {
            s.heal_link(a, b);
        }
    }
    s.kill(7);
    s.start(7);
    s.run_until_true(Duration::from_secs(90), Sim::converged)
        .unwrap_or_else(|| panic!("halves did not merge ({})", describe(&s)));
    let winner = [3, 8]
        .into_iter()
        .filter(|&i| s.node(i).claim() == Some(block))
        .count();
    assert_eq!(winner, 1, "exactly one keeps 10.32.77.0/24");
    assert_eq!(
        s.node(3).claim(),
        Some(block),
        "node-003 < node-008 wins equal epochs"
    );
}

#[test]
fn a_block_gone_for_good_is_reused_only_when_the_range_is_full_and_wins_over_its_old_owner() {
    let mut s = Sim::new(8, Conditions::default());
    // Four /24 blocks in all.
    s.cluster = "10.32.0.0/22".parse().expect("cidr");
    s.timing.reclaim_after = Duration::from_secs(120);
    for i in 0..4 {
        s.add_node(if i == 0 { &[] } else { &[0] });
    }
    for i in 0..4 {
        s.start(i);
    }
    s.run_until_true(Duration::from_secs(30), Sim::converged)
        .unwrap_or_else(|| panic!("four agents did not converge ({})", describe(&s)));
    let gone = s.node(3).claim().expect("node 3 has a block");

    // Node 3 disappears for good; node 4 arrives and finds the range full.
    s.kill(3);
    s.add_node(&[0]);
    s.start(4);
    s.run_for(Duration::from_secs(60));
    assert_eq!(
        s.node(4).claim(),
        None,
        "no block is taken over before the reclaim delay"
    );
    let took = s
        .run_until_true(Duration::from_secs(120), |s| s.node(4).claim().is_some())
        .expect("node 4 takes the block of the peer gone for good");
    let taken = s.node(4).claim().expect("claim");
    assert_eq!(taken.block, gone.block);
    assert_eq!(taken.epoch, gone.epoch + 1);
    println!(
        "block of a peer gone for good reused {:.0} s after it was free to take",
        took.as_secs_f64()
    );

    // The old owner returns with its persisted claim: the newer epoch wins, and with no free
    // block left it stays without one instead of taking anyone else's.
    s.start(3);
    s.run_for(Duration::from_secs(30));
    assert_eq!(s.node(4).claim(), Some(taken), "the taker keeps the block");
    assert_eq!(s.node(3).claim(), None, "the returning owner has no block");
    let blocks: BTreeSet<_> = s
        .alive()
        .iter()
        .filter_map(|&i| s.node(i).claim())
        .map(|c| c.block)
        .collect();
    assert_eq!(blocks.len(), 4, "every block has exactly one owner");
}
