//! Unit tests of the node, driven by hand.

use super::gossip::{GRAFT_AFTER, SUMMARY_SETTLE};
use super::*;
use crate::message::Beat;
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
    // A peer of this build gets beats (heartbeats that carry announcements).
    let beats: Vec<u64> = drain(&mut a)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(1, Message::Beat(b)) => Some(b.seq),
            _ => None,
        })
        .collect();
    assert_eq!(beats.len(), 1);
    let sent = Heartbeat { seq: beats[0] };
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
    // Even over a lazy link (b pruned it), the departure is pushed, not announced.
    a.handle_message(1, Message::Prune, now);
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

/// A record of a peer that is not connected to anyone (enough for gossip tests).
fn lone_record(n: &str, version: u64) -> PeerRecord {
    PeerRecord {
        name: name(n),
        version,
        instance: 7,
        advertise: addr(200),
        claim: None,
        connections: vec![],
        left: false,
        identity: None,
    }
}

fn push(node: &mut Node, conn: ConnId, records: Vec<PeerRecord>, now: Instant) {
    node.handle_message(
        conn,
        Message::Gossip(Gossip {
            full: false,
            records,
        }),
        now,
    );
}

/// `a` with connections 1 (to b) and 2 (to c); `c` speaks protocol `c_version` at most.
fn a_between_b_and_c(c_version: u16, now: Instant) -> Node {
    let mut a = Node::new(config("a", 1, &[]), now);
    let mut hc = hello_of("c", 3);
    hc.proto_max = c_version;
    a.handle_connection_up(1, Direction::Inbound, None, addr(2), &hello_of("b", 2), now)
        .expect("up");
    a.handle_connection_up(2, Direction::Inbound, None, addr(3), &hc, now)
        .expect("up");
    drain(&mut a);
    a
}

/// What was sent on `conn`, heartbeats aside.
fn sent_to(out: &[Output], conn: ConnId) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(c, m) if *c == conn => Some(m),
            _ => None,
        })
        .filter(|m| match m {
            Message::Heartbeat(_) | Message::HeartbeatAck(_) => false,
            Message::Beat(b) => !b.have.is_empty(),
            _ => true,
        })
        .collect()
}

#[test]
fn a_redundant_push_prunes_the_link_and_later_changes_are_only_announced_on_it() {
    let t0 = Instant::now();
    let mut a = a_between_b_and_c(crate::message::PROTOCOL_MAX, t0);
    // x arrives from b, is new, and is pushed on to c.
    push(&mut a, 1, vec![lone_record("x", 1)], t0);
    let t1 = t0 + a.config().timing.gossip_delay;
    a.handle_timeout(t1);
    let out = drain(&mut a);
    assert!(sent_to(&out, 2)
        .iter()
        .any(|m| matches!(m, Message::Gossip(g) if g.records.iter().any(|r| r.name == name("x")))));
    // The same x from c: two paths lead here, so the link to c becomes lazy.
    push(&mut a, 2, vec![lone_record("x", 1)], t1);
    let out = drain(&mut a);
    assert_eq!(sent_to(&out, 2), vec![&Message::Prune]);
    assert_eq!(a.stats().prunes_sent, 1);
    // y from b now goes to c as an announcement on the next heartbeat, not pushed.
    let beat_at = t0 + a.config().timing.heartbeat_interval;
    push(&mut a, 1, vec![lone_record("y", 4)], t1);
    let t2 = t1 + a.config().timing.gossip_delay;
    a.handle_timeout(t2);
    assert!(sent_to(&drain(&mut a), 2).is_empty());
    a.handle_timeout(beat_at);
    let out = drain(&mut a);
    let announced = sent_to(&out, 2);
    assert!(
        matches!(announced.as_slice(), [Message::Beat(b)] if b.have.len() == 1 && b.have[0].name == name("y") && b.have[0].version == 4),
        "{announced:?}"
    );
    // c grafts y: the link is eager again and y is pushed.
    a.handle_message(2, Message::Graft(vec![name("y")]), beat_at);
    a.handle_timeout(beat_at + a.config().timing.gossip_delay);
    let out = drain(&mut a);
    assert!(sent_to(&out, 2)
        .iter()
        .any(|m| matches!(m, Message::Gossip(g) if g.records.iter().any(|r| r.name == name("y")))));
    let later = beat_at + Duration::from_millis(500);
    push(&mut a, 1, vec![lone_record("z", 1)], later);
    a.handle_timeout(later + a.config().timing.gossip_delay);
    assert!(sent_to(&drain(&mut a), 2)
        .iter()
        .any(|m| matches!(m, Message::Gossip(g) if g.records.iter().any(|r| r.name == name("z")))));
}

#[test]
fn a_peer_older_than_protocol_3_is_never_pruned_and_always_pushed() {
    let t0 = Instant::now();
    let mut a = a_between_b_and_c(2, t0);
    push(&mut a, 1, vec![lone_record("x", 1)], t0);
    push(&mut a, 2, vec![lone_record("x", 1)], t0);
    // A duplicate from the old peer: no prune (it would not understand it).
    let out = drain(&mut a);
    assert!(!sent_to(&out, 2).contains(&&Message::Prune));
    push(&mut a, 1, vec![lone_record("y", 1)], t0);
    a.handle_timeout(t0 + a.config().timing.heartbeat_interval);
    let out = drain(&mut a);
    let to_c = sent_to(&out, 2);
    assert!(to_c
        .iter()
        .any(|m| matches!(m, Message::Gossip(g) if g.records.iter().any(|r| r.name == name("y")))));
    assert!(!to_c.iter().any(|m| matches!(m, Message::Beat(_))));
    assert!(out.contains(&Output::Send(2, Message::Heartbeat(Heartbeat { seq: 1 }))));
}

#[test]
fn an_announced_record_not_pushed_in_time_is_grafted_from_the_announcer() {
    let t0 = Instant::now();
    let mut a = a_between_b_and_c(crate::message::PROTOCOL_MAX, t0);
    let announce = |n: &str, version| {
        Message::Beat(Beat {
            seq: 1,
            have: vec![crate::message::DigestEntry {
                name: name(n),
                version,
                instance: 7,
            }],
        })
    };
    // x is announced by c and then pushed by b in time: no graft.
    a.handle_message(2, announce("x", 3), t0);
    push(&mut a, 1, vec![lone_record("x", 3)], t0 + GRAFT_AFTER / 2);
    // y is announced by c and never pushed: grafted from c after GRAFT_AFTER.
    a.handle_message(2, announce("y", 5), t0);
    // A version a holds already is not wanted.
    a.handle_message(2, announce("a", 0), t0);
    drain(&mut a);
    assert!(a.poll_timeout().is_some_and(|t| t <= t0 + GRAFT_AFTER));
    a.handle_timeout(t0 + GRAFT_AFTER);
    let out = drain(&mut a);
    let grafts: Vec<&Message> = sent_to(&out, 2)
        .into_iter()
        .filter(|m| matches!(m, Message::Graft(_)))
        .collect();
    assert_eq!(grafts, vec![&Message::Graft(vec![name("y")])]);
    assert_eq!(a.stats().grafts_sent, 1);
    assert!(sent_to(&out, 1)
        .iter()
        .all(|m| !matches!(m, Message::Graft(_))));
    // Delivered now: nothing more is asked.
    push(&mut a, 2, vec![lone_record("y", 5)], t0 + GRAFT_AFTER);
    a.handle_timeout(t0 + GRAFT_AFTER * 3);
    assert!(drain(&mut a)
        .iter()
        .all(|o| !matches!(o, Output::Send(_, Message::Graft(_)))));
}

#[test]
fn differing_summaries_wait_then_digest_only_the_buckets_that_still_differ() {
    let t0 = Instant::now();
    let mut a = a_between_b_and_c(crate::message::PROTOCOL_MAX, t0);
    let mut b = Node::new(config("b", 2, &[]), t0);
    b.handle_connection_up(1, Direction::Inbound, None, addr(1), &a.hello(), t0)
        .expect("up");
    drain(&mut b);
    // Both hold the same 40 records, then b learns one more version of one of them.
    let many: Vec<PeerRecord> = (0..40).map(|i| lone_record(&format!("p{i}"), 1)).collect();
    push(&mut a, 1, many.clone(), t0);
    push(&mut b, 1, many, t0);
    let (of_a, of_b): (Vec<PeerRecord>, Vec<PeerRecord>) = (
        a.topology().iter().cloned().collect(),
        b.topology().iter().cloned().collect(),
    );
    push(&mut a, 1, of_b, t0);
    push(&mut b, 1, of_a, t0);
    assert_eq!(a.topology().summary(), b.topology().summary());
    push(&mut b, 1, vec![lone_record("p7", 2)], t0);
    drain(&mut a);
    drain(&mut b);
    // b's summary differs from a's, but no digest goes out at once.
    a.handle_message(1, Message::Summary(b.topology().summary()), t0);
    let out = drain(&mut a);
    assert!(
        sent_to(&out, 1).is_empty(),
        "a waits for changes in flight: {out:?}"
    );
    // Once equal again, a check would be answered with nothing.
    let mut same = Node::new(config("b", 2, &[]), t0);
    same.handle_connection_up(1, Direction::Inbound, None, addr(1), &a.hello(), t0)
        .expect("up");
    drain(&mut same);
    same.handle_message(1, Message::SummaryCheck(same.topology().summary()), t0);
    assert!(sent_to(&drain(&mut same), 1).is_empty());
    // (b and c stay alive meanwhile.)
    for conn in [1, 2] {
        let beat = Message::Heartbeat(Heartbeat { seq: 1 });
        a.handle_message(conn, beat, t0 + SUMMARY_SETTLE - Duration::from_secs(1));
    }
    a.handle_timeout(t0 + SUMMARY_SETTLE);
    let out = drain(&mut a);
    let check = sent_to(&out, 1)
        .into_iter()
        .find_map(|m| match m {
            Message::SummaryCheck(s) => Some(*s),
            _ => None,
        })
        .expect("the summary again after the settle time");
    // Still different at b: b sends its bucket fingerprints.
    let settled = t0 + SUMMARY_SETTLE;
    b.handle_message(1, Message::SummaryCheck(check), settled);
    let first = |out: &[Output], want: fn(&Message) -> bool| -> Message {
        sent_to(out, 1)
            .into_iter()
            .find(|m| want(m))
            .cloned()
            .expect("answered")
    };
    let buckets = first(&drain(&mut b), |m| matches!(m, Message::Buckets(_)));
    // a digests p7's bucket only.
    a.handle_message(1, buckets, settled);
    let Message::RangeDigest(range) =
        first(&drain(&mut a), |m| matches!(m, Message::RangeDigest(_)))
    else {
        unreachable!()
    };
    assert_eq!(range.mask, 1 << crate::topology::bucket_of(&name("p7")));
    assert!(range.entries.len() < 42, "{} entries", range.entries.len());
    // b sends what a lacks: p7 only.
    b.handle_message(1, Message::RangeDigest(range), settled);
    let out = drain(&mut b);
    let records: Vec<&PeerRecord> = sent_to(&out, 1)
        .into_iter()
        .filter_map(|m| match m {
            Message::Gossip(g) => Some(&g.records),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(records, vec![&lone_record("p7", 2)]);
}

#[test]
fn a_node_far_behind_sends_its_whole_digest_at_once() {
    let t0 = Instant::now();
    let mut a = a_between_b_and_c(crate::message::PROTOCOL_MAX, t0);
    let many: Vec<PeerRecord> = (0..40).map(|i| lone_record(&format!("p{i}"), 1)).collect();
    let mut b = Node::new(config("b", 2, &[]), t0);
    push(&mut b, 1, many, t0);
    // a holds 3 records, b 41: a is joining.
    a.handle_message(1, Message::Summary(b.topology().summary()), t0);
    let out = drain(&mut a);
    assert!(sent_to(&out, 1)
        .iter()
        .any(|m| matches!(m, Message::Digest(_))));
}
