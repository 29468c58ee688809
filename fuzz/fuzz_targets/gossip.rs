//! Gossip payloads into a real node: the input is a sequence of message bodies (each a
//! 2-byte big-endian length and the body, in protocol version 2 or else 1, the version of the
//! older seeds) arriving on one established connection. Decoding
//! and handling never panic; afterwards every record the node holds is valid for the
//! cluster, the node's own record is intact, the records equal a reference merge of the same
//! valid records delivered in reverse order (merge is order-independent), and every message
//! the node sends re-encodes and decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::codec::{decode_message, decode_message_in, encode_message, LEN_PREFIX};
use overlay_proto::message::{Hello, HelloBody, Message, PROTOCOL_MAX, PROTOCOL_MIN};
use overlay_proto::node::{Direction, Node, NodeConfig, Output, Timing};
use overlay_proto::topology::{PeerRecord, Topology, MAX_PEERS};
use overlay_proto::PeerName;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CONN: u64 = 7;

fn name(s: &str) -> PeerName {
    PeerName::new(s).expect("valid name")
}

fn drain(node: &mut Node, closed: &mut bool) {
    while let Some(out) = node.poll_output() {
        match out {
            Output::Send(_, msg) => {
                let mut buf = Vec::new();
                encode_message(&msg, &mut buf).expect("the node's messages fit a frame");
                assert_eq!(decode_message(&buf[LEN_PREFIX..]), Ok(Some(msg)));
            }
            Output::Close(CONN, _) => *closed = true,
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let cluster = "10.32.0.0/12".parse().expect("cidr");
    let start = Instant::now();
    let me = name("a");
    let mut node = Node::new(
        NodeConfig {
            name: me.clone(),
            instance: 1,
            advertise: SocketAddr::from(([192, 168, 0, 1], 6783)),
            cluster,
            subnet_prefix: 24,
            seeds: Vec::new(),
            claim: None,
            initial_version: 1,
            timing: Timing::default(),
            rng_seed: 1,
            view: Default::default(),
            identity: None,
        },
        start,
    );
    let hello = Hello {
        proto_min: PROTOCOL_MIN,
        proto_max: PROTOCOL_MAX,
        body: HelloBody {
            name: name("b"),
            instance: 2,
            advertise: SocketAddr::from(([192, 168, 0, 2], 6783)),
            cluster,
            subnet_prefix: 24,
        },
    };
    let remote = SocketAddr::from(([192, 168, 0, 2], 40000));
    node.handle_connection_up(CONN, Direction::Inbound, None, remote, &hello, start)
        .expect("a matching hello is accepted");
    let mut closed = false;
    drain(&mut node, &mut closed);

    let mut valid: Vec<PeerRecord> = Vec::new();
    let mut now = start;
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        let decoded = decode_message(body).or_else(|_| decode_message_in(body, 1));
        let Ok(Some(msg)) = decoded else {
            continue;
        };
        if closed || matches!(msg, Message::Leave) {
            break;
        }
        if let Message::Gossip(g) = &msg {
            valid.extend(
                g.records
                    .iter()
                    .filter(|r| r.validate(cluster, 24).is_ok() && r.name != me)
                    .cloned(),
            );
        }
        now += Duration::from_millis(10);
        node.handle_message(CONN, msg, now);
        drain(&mut node, &mut closed);
        node.handle_timeout(now);
        drain(&mut node, &mut closed);
    }

    let topo = node.topology();
    assert!(topo.len() <= MAX_PEERS);
    let own = topo.get(&me).expect("own record");
    assert_eq!(own.instance, 1);
    let mut reference = Topology::new();
    for r in valid.into_iter().rev() {
        reference.merge(r);
    }
    for r in topo.iter() {
        assert!(
            r.validate(cluster, 24).is_ok(),
            "invalid record held: {r:?}"
        );
        if r.name != me {
            assert_eq!(reference.get(&r.name), Some(r), "merge depends on order");
        }
    }
    assert_eq!(topo.len(), reference.len() + 1, "records lost or invented");
    let _ = node.forwarding_table();
    let _ = node.routes();
});
