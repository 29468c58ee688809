//! The bounded active view in the deterministic simulation: clusters larger than a node's view
//! converge with few connections per node, stay quiet when nothing changes, heal partitions,
//! and survive a fifth of their nodes crashing at once.
//!
//! Run with `cargo test -p overlay-sim --test active_view -- --nocapture` for the figures.

use overlay_sim::{Conditions, Sim};
use std::collections::BTreeSet;
use std::time::Duration;

/// `n` agents seeded with the first three, all started at once.
fn cluster(seed: u64, n: usize) -> Sim {
    let mut s = Sim::new(seed, Conditions::default());
    for i in 0..n {
        let seeds: Vec<usize> = (0..3).filter(|&x| x != i).collect();
        s.add_node(&seeds);
    }
    for i in 0..n {
        s.start(i);
    }
    s
}

fn converge(s: &mut Sim, limit: Duration, what: &str) -> Duration {
    s.run_until_true(limit, Sim::converged).unwrap_or_else(|| {
        let alive = s.alive();
        let min_routes = alive.iter().map(|&i| s.node(i).routes().len()).min();
        panic!(
            "{what}: {} agents not converged within {limit:?} simulated (min reachable {min_routes:?})",
            alive.len()
        )
    })
}

/// (most, mean) connections per running node.
fn connections(s: &Sim) -> (usize, f64) {
    let counts: Vec<usize> = s
        .alive()
        .iter()
        .map(|&i| s.node(i).connections().len())
        .collect();
    let most = counts.iter().copied().max().unwrap_or(0);
    (
        most,
        counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
    )
}

#[test]
fn a_cluster_ten_times_the_view_converges_with_few_connections_and_no_churn() {
    let n = 150;
    let mut s = cluster(11, n);
    let view = s.view;
    let t = converge(&mut s, Duration::from_secs(60), "start");
    // Connections made to join (to the seeds) are released after the grace period.
    s.run_for(Duration::from_secs(30));
    let closes_before = s.closes.clone();
    let messages_before = s.messages;
    s.run_for(Duration::from_secs(60));
    let (most, mean) = connections(&s);
    println!(
        "{n} agents: converged in {:.1} s simulated; {most} connections at most, {mean:.1} on average; \
         {} messages per node per second at idle",
        t.as_secs_f64(),
        (s.messages - messages_before) as f64 / n as f64 / 60.0
    );
    assert!(s.converged(), "still converged after a minute of idle");
    assert!(
        most <= view.max_connections,
        "{most} connections on one node, more than the room of {}",
        view.max_connections
    );
    assert!(
        mean <= 3.0 * view.preferred as f64,
        "{mean:.1} connections per node on average with {} preferred",
        view.preferred
    );
    let idle_closes: Vec<(&String, u64)> = s
        .closes
        .iter()
        .map(|(why, count)| (why, count - closes_before.get(why).copied().unwrap_or(0)))
        .filter(|(_, count)| *count > 0)
        .collect();
    assert!(
        idle_closes.is_empty(),
        "connections closed at idle: {idle_closes:?}"
    );
}

#[test]
fn a_partition_heals_once_the_cut_is_repaired() {
    let n = 60;
    let mut s = cluster(12, n);
    converge(&mut s, Duration::from_secs(60), "start");
    let (left, right): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| i < n / 2);
    for &a in &left {
        for &b in &right {
            s.cut_link(a, b);
        }
    }
    let split = s.run_until_true(Duration::from_secs(60), |s| {
        left.iter()
            .all(|&a| !s.node(a).routes().is_reachable(&s.nodes[right[0]].name))
            && right
                .iter()
                .all(|&b| !s.node(b).routes().is_reachable(&s.nodes[left[0]].name))
    });
    assert!(split.is_some(), "the two sides never saw each other gone");
    for &a in &left {
        for &b in &right {
            s.heal_link(a, b);
        }
    }
    // Each side dials a random unreachable peer every 15–45 s: healed within a few rounds.
    let t = converge(
        &mut s,
        Duration::from_secs(180),
        "after the cut was repaired",
    );
    println!("partition healed {:.1} s after the repair", t.as_secs_f64());
}

#[test]
fn a_fifth_of_the_nodes_crashing_at_once_is_seen_within_15s_and_the_rest_stays_converged() {
    let n = 100;
    let mut s = cluster(13, n);
    converge(&mut s, Duration::from_secs(60), "start");
    s.run_for(Duration::from_secs(10));
    let mut rng = overlay_sim::Rng::new(13);
    let mut dead = BTreeSet::new();
    while dead.len() < n / 5 {
        dead.insert(rng.below(n as u64) as usize);
    }
    for &d in &dead {
        s.kill_silently(d);
    }
    let names: Vec<_> = dead.iter().map(|&d| s.nodes[d].name.clone()).collect();
    let seen = s.run_until_true(Duration::from_secs(15), |s| {
        s.alive().iter().all(|&i| {
            names
                .iter()
                .all(|name| !s.node(i).routes().is_reachable(name))
        })
    });
    assert!(
        seen.is_some(),
        "some of the {} crashed nodes still reachable somewhere after 15 s",
        dead.len()
    );
    let t = converge(&mut s, Duration::from_secs(60), "after the crash");
    println!(
        "{} of {n} crashed: unreachable everywhere after {:.1} s, the rest converged after {:.1} s",
        dead.len(),
        seen.unwrap_or_default().as_secs_f64(),
        t.as_secs_f64()
    );
}
