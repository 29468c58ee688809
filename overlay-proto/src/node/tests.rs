//! Unit tests of the node, driven by hand.

use super::*;
use crate::message::{Gossip, Heartbeat};
use crate::topology::PeerRecord;

fn name(s: &str) -> PeerName {
    PeerName::new(s).expect("valid name")
}

fn addr(host: u8) -> SocketAddr {
    SocketAddr::from(([10, 99, 0, host], 6783))
}

fn config(n: &str, host: u8, seeds: &[u8]) -> NodeConfig {
    NodeConfig {
        name: name(n),
        instance: u64::from(host) * 1000,
        advertise: addr(host),
        cluster: "10.32.0.0/12".parse().expect("cidr"),
        subnet_prefix: 24,
        seeds: seeds.iter().map(|&h| addr(h)).collect(),
        claim: None,
        initial_version: 1,
        timing: Timing::default(),
        rng_seed: u64::from(host),
        view: ActiveView::default(),
        identity: None,
    }
}

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn hello_of(n: &str, host: u8) -> Hello {
    Node::new(config(n, host, &[]), Instant::now()).hello()
}

#[test]
fn a_node_without_seeds_claims_at_once_and_reports_it() {
    let now = Instant::now();
    let mut node = Node::new(config("a", 1, &[]), now);
    let out = drain(&mut node);
    let claim = node.claim().expect("claimed");
    assert!(out.contains(&Output::ClaimChanged(Some(claim))));
    assert!(out.contains(&Output::RoutesChanged));
    assert_eq!(node.forwarding_table().local_block(), Some(claim.block));
}

#[test]
fn a_node_with_seeds_waits_for_the_topology_before_claiming() {
    let now = Instant::now();
    let mut node = Node::new(config("b", 2, &[1]), now);
    let out = drain(&mut node);
    assert!(out.contains(&Output::Dial(addr(1))));
    assert_eq!(node.claim(), None);
    node.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(node.claim(), None);
    node.handle_timeout(now + node.config().timing.claim_wait);
    assert!(
        node.claim().is_some(),
        "claims after claim_wait without any peer"
    );
}

#[test]
fn a_persisted_claim_is_asserted_at_start() {
    let now = Instant::now();
    let mut cfg = config("c", 3, &[1]);
    let claim = Claim {
        block: "10.32.9.0/24".parse().expect("cidr"),
        epoch: 2,
    };
    cfg.claim = Some(claim);
    let node = Node::new(cfg, now);
    assert_eq!(node.claim(), Some(claim));
    let mut bad = config("d", 4, &[]);
    bad.claim = Some(Claim {
        block: "192.168.0.0/24".parse().expect("cidr"),
        epoch: 0,
    });
    let node = Node::new(bad, now);
    assert_ne!(
        node.claim().map(|c| c.block),
        Some("192.168.0.0/24".parse().expect("cidr"))
    );
}

#[test]
fn handshakes_refuse_self_other_clusters_and_name_collisions() {
    let now = Instant::now();
    let mut node = Node::new(config("a", 1, &[1]), now);
    let own = node.hello();
    assert_eq!(
        node.handle_connection_up(1, Direction::Outbound, Some(addr(1)), addr(1), &own, now),
        Err(Refusal::SelfConnection)
    );
    let mut other = hello_of("b", 2);
    other.body.cluster = "10.64.0.0/12".parse().expect("cidr");
    let refusal = node
        .handle_connection_up(2, Direction::Inbound, None, addr(2), &other, now)
        .expect_err("another cluster");
    assert!(matches!(refusal, Refusal::ClusterMismatch { .. }));
    assert_eq!(
        refusal.to_string(),
        "peer b uses cluster 10.64.0.0/12 with /24 blocks, this node 10.32.0.0/12 with /24"
    );
    let mut clone = own.clone();
    clone.body.instance += 1;
    assert!(matches!(
        node.handle_connection_up(3, Direction::Inbound, None, addr(9), &clone, now),
        Err(Refusal::NameClash { .. })
    ));
    assert!(node.connections().is_empty());
    assert!(node
        .targets()
        .iter()
        .any(|t| t.addr == addr(1) && t.state == TargetState::IsSelf));
}

#[test]
fn duplicate_connections_keep_the_one_dialed_by_the_smaller_name() {
    let now = Instant::now();
    // "a" < "b": both keep the connection a dialed.
    let mut a = Node::new(config("a", 1, &[]), now);
    let mut b = Node::new(config("b", 2, &[]), now);
    let (ha, hb) = (a.hello(), b.hello());
    // conn 10: a dialed b. conn 20: b dialed a. Each side sees them in a different order.
    assert_eq!(
        a.handle_connection_up(20, Direction::Inbound, None, addr(2), &hb, now),
        Ok(())
    );
    assert_eq!(
        a.handle_connection_up(10, Direction::Outbound, Some(addr(2)), addr(2), &hb, now),
        Ok(())
    );
    assert!(drain(&mut a).contains(&Output::Close(20, CloseReason::Replaced)));
    assert_eq!(
        b.handle_connection_up(10, Direction::Inbound, None, addr(1), &ha, now),
        Ok(())
    );
    assert_eq!(
        b.handle_connection_up(20, Direction::Outbound, Some(addr(1)), addr(1), &ha, now),
        Err(Refusal::Duplicate(name("a")))
    );
    assert_eq!(
        a.connections().iter().map(|c| c.conn).collect::<Vec<_>>(),
        vec![10]
    );
    assert_eq!(
        b.connections().iter().map(|c| c.conn).collect::<Vec<_>>(),
        vec![10]
    );
}

#[test]
fn a_new_instance_replaces_the_old_connection() {
    let now = Instant::now();
    let mut a = Node::new(config("a", 1, &[]), now);
    let hb = hello_of("b", 2);
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hb, now)
        .expect("up");
    let mut restarted = hb.clone();
    restarted.body.instance += 7;
    a.handle_connection_up(2, Direction::Inbound, None, addr(2), &restarted, now)
        .expect("up");
    assert!(drain(&mut a).contains(&Output::Close(1, CloseReason::Replaced)));
    assert_eq!(a.connections().len(), 1);
}

#[test]
fn silent_connections_are_closed_and_heartbeats_answered() {
    let t0 = Instant::now();
    let mut a = Node::new(config("a", 1, &[]), t0);
    let hb = hello_of("b", 2);
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hb, t0)
        .expect("up");
    drain(&mut a);
    a.handle_message(1, Message::Heartbeat(Heartbeat { seq: 5 }), t0);
    assert!(drain(&mut a).contains(&Output::Send(
        1,
        Message::HeartbeatAck(Heartbeat { seq: 5 })
    )));
    let t1 = t0 + Duration::from_secs(1);
    a.handle_timeout(t1);
    let beats: Vec<Output> = drain(&mut a)
        .into_iter()
        .filter(|o| matches!(o, Output::Send(1, Message::Heartbeat(_))))
        .collect();
    assert_eq!(beats.len(), 1);
    let Output::Send(_, Message::Heartbeat(sent)) = beats[0].clone() else {
        unreachable!()
    };
    a.handle_message(
        1,
        Message::HeartbeatAck(sent),
        t1 + Duration::from_millis(3),
    );
    assert_eq!(a.connections()[0].rtt, Some(Duration::from_millis(3)));
    assert!(a.routes().is_empty(), "b's record does not list a yet");
    let dead = t1 + Duration::from_millis(3) + a.config().timing.dead_after;
    assert!(a.poll_timeout().is_some_and(|t| t <= dead));
    a.handle_timeout(dead);
    assert!(drain(&mut a)
        .iter()
        .any(|o| matches!(o, Output::Close(1, CloseReason::Timeout(_)))));
    assert!(a.connections().is_empty());
    assert_eq!(a.stats().heartbeat_timeouts, 1);
}

#[test]
fn gossip_makes_peers_reachable_and_is_forwarded_to_other_neighbours() {
    let now = Instant::now();
    let mut a = Node::new(config("a", 1, &[]), now);
    let (hb, hc) = (hello_of("b", 2), hello_of("c", 3));
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hb, now)
        .expect("up");
    a.handle_connection_up(2, Direction::Inbound, None, addr(3), &hc, now)
        .expect("up");
    drain(&mut a);
    let b_record = PeerRecord {
        name: name("b"),
        version: 9,
        instance: hb.body.instance,
        advertise: addr(2),
        claim: Some(Claim {
            block: "10.32.2.0/24".parse().expect("cidr"),
            epoch: 0,
        }),
        connections: vec![name("a")],
        left: false,
        identity: None,
    };
    a.handle_message(
        1,
        Message::Gossip(Gossip {
            full: false,
            records: vec![b_record.clone()],
        }),
        now,
    );
    // Recomputed once the hold-down after the connection's own change has passed.
    let settled = now + a.config().timing.recompute_holddown;
    a.handle_timeout(settled);
    assert_eq!(a.routes().get(&name("b")).map(|r| r.hops), Some(1));
    let later = settled + a.config().timing.gossip_delay;
    a.handle_timeout(later);
    let out = drain(&mut a);
    let forwarded = out.iter().any(|o| match o {
        Output::Send(2, Message::Gossip(g)) => g.records.contains(&b_record),
        _ => false,
    });
    assert!(forwarded, "b's record goes on to c: {out:?}");
    let echoed = out.iter().any(|o| match o {
        Output::Send(1, Message::Gossip(g)) => g.records.contains(&b_record),
        _ => false,
    });
    assert!(!echoed, "not back to b");
    // Invalid records are dropped and counted.
    let mut bad = b_record.clone();
    bad.version = 10;
    bad.connections = vec![name("z"), name("a")];
    a.handle_message(
        1,
        Message::Gossip(Gossip {
            full: false,
            records: vec![bad],
        }),
        later,
    );
    assert_eq!(a.stats().records_rejected, 1);
    assert_eq!(a.topology().get(&name("b")).map(|r| r.version), Some(9));
}

#[test]
fn an_older_run_of_this_node_is_refuted() {
    let now = Instant::now();
    let mut a = Node::new(config("a", 1, &[]), now);
    let hb = hello_of("b", 2);
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hb, now)
        .expect("up");
    let mut stale = a.topology().get(&name("a")).expect("own").clone();
    stale.version += 100;
    stale.instance = 1;
    stale.connections = vec![];
    a.handle_message(
        1,
        Message::Gossip(Gossip {
            full: false,
            records: vec![stale.clone()],
        }),
        now,
    );
    let own = a.topology().get(&name("a")).expect("own");
    assert!(own.version > stale.version);
    assert_eq!(own.instance, a.config().instance);
    assert_eq!(own.connections, vec![name("b")]);
}

#[test]
fn failed_dials_back_off_exponentially_with_jitter() {
    let t0 = Instant::now();
    let mut a = Node::new(config("a", 1, &[2]), t0);
    assert!(drain(&mut a).contains(&Output::Dial(addr(2))));
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        a.handle_dial_failed(addr(2), "refused".into(), now);
        let retry = a
            .targets()
            .iter()
            .find_map(|t| match t.state {
                TargetState::Waiting { retry_at } if t.addr == addr(2) => Some(retry_at),
                _ => None,
            })
            .expect("waiting");
        delays.push(retry - now);
        now = retry;
        a.handle_timeout(now);
        assert!(drain(&mut a).contains(&Output::Dial(addr(2))));
    }
    let t = Timing::default();
    assert!(delays[0] >= t.dial_backoff_initial.mul_f64(0.75));
    assert!(delays[0] <= t.dial_backoff_initial.mul_f64(1.25));
    assert!(delays[3] > delays[0] * 4, "grows: {delays:?}");
    assert!(
        delays
            .iter()
            .all(|d| *d <= t.dial_backoff_max.mul_f64(1.25)),
        "capped: {delays:?}"
    );
    let info = a
        .targets()
        .into_iter()
        .find(|t| t.addr == addr(2))
        .expect("target");
    assert_eq!(info.failures, 8);
    assert_eq!(info.last_error.as_deref(), Some("refused"));
}

#[test]
fn leaving_tells_every_neighbour_and_closes() {
    let now = Instant::now();
    let mut a = Node::new(config("a", 1, &[]), now);
    let hb = hello_of("b", 2);
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hb, now)
        .expect("up");
    drain(&mut a);
    a.leave(now);
    let out = drain(&mut a);
    let pos = |want: &dyn Fn(&Output) -> bool| out.iter().position(want).expect("present");
    let gossip = pos(
        &|o| matches!(o, Output::Send(1, Message::Gossip(g)) if g.records.iter().any(|r| r.left)),
    );
    let leave = pos(&|o| *o == Output::Send(1, Message::Leave));
    let close = pos(&|o| *o == Output::Close(1, CloseReason::Leaving));
    assert!(gossip < leave && leave < close, "{out:?}");
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_peer_that_left_is_redialed_quickly_for_a_while_then_with_backoff() {
    let t0 = Instant::now();
    let mut a = Node::new(config("a", 1, &[2]), t0);
    assert!(drain(&mut a).contains(&Output::Dial(addr(2))));
    let hb = hello_of("b", 2);
    a.handle_connection_up(1, Direction::Outbound, Some(addr(2)), addr(2), &hb, t0)
        .expect("up");
    drain(&mut a);
    a.handle_message(1, Message::Leave, t0);
    assert!(drain(&mut a).contains(&Output::Close(1, CloseReason::PeerLeft)));
    let retry_at = |a: &Node| {
        a.targets()
            .iter()
            .find_map(|t| match t.state {
                TargetState::Waiting { retry_at } if t.addr == addr(2) => Some(retry_at),
                _ => None,
            })
            .expect("waiting")
    };
    // It is restarting: dialed again every REDIAL_AFTER_LEAVE, not after 1 s, 2 s, ...
    let mut now = t0;
    for _ in 0..5 {
        assert_eq!(retry_at(&a) - now, targets::REDIAL_AFTER_LEAVE);
        now = retry_at(&a);
        a.handle_timeout(now);
        assert!(drain(&mut a).contains(&Output::Dial(addr(2))));
        a.handle_dial_failed(addr(2), "refused".into(), now);
    }
    // Gone for longer: the usual backoff.
    let late = t0 + targets::QUICK_REDIAL_FOR;
    a.handle_timeout(retry_at(&a).max(late));
    drain(&mut a);
    a.handle_dial_failed(addr(2), "refused".into(), late);
    assert!(retry_at(&a) - late > targets::REDIAL_AFTER_LEAVE * 2);
}
