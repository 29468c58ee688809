//! Real drivers over loopback TCP with a stand-in host: convergence, garbage connections,
//! protocol errors, leaving.

use super::host::SetAddressError;
use super::*;
use crate::datapath::{CountersSnapshot, Offloads};
use crate::ipam_store::IpamStore;
use crate::state::StateDir;
use crate::status::{Status, TargetState};
use overlay_proto::codec;
use overlay_proto::forwarding::{ForwardingTable, Lookup};
use overlay_proto::message::{Hello, HelloBody, Message};
use overlay_proto::node::{Node, NodeConfig, Timing};
use overlay_proto::PeerName;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct FakeHost {
    tables: Mutex<Vec<ForwardingTable>>,
    address: Mutex<Option<Ipv4Addr>>,
}

impl Host for FakeHost {
    fn set_table(&self, table: ForwardingTable) {
        self.tables.lock().expect("lock").push(table);
    }
    fn counters(&self) -> CountersSnapshot {
        CountersSnapshot::default()
    }
    fn offloads(&self) -> Offloads {
        Offloads::default()
    }
    fn device(&self) -> String {
        "ovl-test".to_owned()
    }
    async fn set_node_address(&self, address: Option<Ipv4Addr>) -> Result<(), SetAddressError> {
        *self.address.lock().expect("lock") = address;
        Ok(())
    }
}

struct Agent {
    addr: SocketAddr,
    control: ControlHandle,
    host: Arc<FakeHost>,
    ready: Readiness,
    ipam: Arc<IpamStore>,
    state: StateDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

const CLUSTER: &str = "10.32.0.0/12";

fn hello_of(name: &str, advertise: SocketAddr, range: (u16, u16)) -> Hello {
    Hello {
        proto_min: range.0,
        proto_max: range.1,
        body: HelloBody {
            name: PeerName::new(name).expect("name"),
            instance: 7,
            advertise,
            cluster: CLUSTER.parse().expect("cidr"),
            subnet_prefix: 24,
        },
    }
}

async fn agent(name: &str, seeds: Vec<SocketAddr>) -> Agent {
    agent_with(name, seeds, None).await
}

/// An agent holding the secrets of `secret_file` (its content).
async fn secret_agent(name: &str, seeds: Vec<SocketAddr>, secret_file: &str) -> Agent {
    let secrets = crate::auth::SecretSet::parse(secret_file).expect("secrets");
    let auth = crate::auth::Auth::new(crate::auth::Identity::generate(), secrets);
    agent_with(name, seeds, Some(auth)).await
}

async fn agent_with(name: &str, seeds: Vec<SocketAddr>, auth: Option<crate::auth::Auth>) -> Agent {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(tmp.path()).expect("state");
    let ipam = Arc::new(IpamStore::open(&state).expect("ipam"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let node = Node::new(
        NodeConfig {
            name: PeerName::new(name).expect("name"),
            instance: rand::random(),
            advertise: addr,
            cluster: CLUSTER.parse().expect("cidr"),
            subnet_prefix: 24,
            seeds,
            claim: None,
            initial_version: 1,
            timing: Timing {
                claim_wait: Duration::from_millis(300),
                ..Timing::default()
            },
            rng_seed: 1,
            view: Default::default(),
            identity: auth.as_ref().map(|a| *a.identity.public()),
        },
        Instant::now(),
    );
    let host = Arc::new(FakeHost::default());
    let ready = Readiness::default();
    let (tx, commands) = mpsc::channel(8);
    let driver = Driver::new(DriverConfig {
        node,
        host: host.clone(),
        state: state.clone(),
        ipam: ipam.clone(),
        ready: ready.clone(),
        mtu: 1400,
        listener,
        commands,
        auth,
        data_keys: None,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    Agent {
        addr,
        control: ControlHandle::new(tx),
        host,
        ready,
        ipam,
        state,
        stop: Some(stop),
        task,
        _tmp: tmp,
    }
}

impl Agent {
    async fn status(&self) -> Status {
        self.control
            .status(Duration::from_secs(2))
            .await
            .expect("the driver answers")
    }

    /// Waits up to `secs` for `pred` to hold on this agent's status.
    async fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .expect("the driver stops within 3 s")
            .expect("the driver does not panic");
    }
}

fn reachable(s: &Status, peer: &str) -> bool {
    s.peers.iter().any(|p| p.name == peer && p.reachable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_connect_claim_distinct_blocks_and_route_directly() {
    let a = agent("a", vec![]).await;
    let b = agent("b", vec![a.addr]).await;
    let sa = a
        .wait_for("a to reach b with a block", 10, |s| {
            reachable(s, "b") && s.subnet.is_some() && s.peers[0].subnet.is_some()
        })
        .await;
    let sb = b
        .wait_for("b to reach a with a block", 10, |s| {
            reachable(s, "a") && s.subnet.is_some()
        })
        .await;
    assert_ne!(sa.subnet, sb.subnet);
    let peer_b = &sa.peers[0];
    assert_eq!(peer_b.name, "b");
    assert_eq!(peer_b.address, b.addr);
    assert_eq!(peer_b.next_hop.as_deref(), Some("b"));
    assert_eq!(peer_b.hops, 1);
    assert!(peer_b.connected);
    assert_eq!(peer_b.subnet, sb.subnet);
    assert_eq!(sa.connections.len(), 1);
    assert_eq!(sb.targets[0].state, TargetState::Connected);

    // The claim is applied: persisted, handed to the allocator, on the TUN, ready.
    for (agent, status) in [(&a, &sa), (&b, &sb)] {
        let block = status.subnet.expect("block");
        assert_eq!(
            agent.state.load_claim().expect("claim").map(|c| c.block),
            Some(block)
        );
        assert_eq!(agent.ipam.block(), Some(block));
        assert_eq!(*agent.host.address.lock().expect("lock"), status.address);
        assert!(agent.ready.get());
        let tables = agent.host.tables.lock().expect("lock");
        assert_eq!(tables.last().and_then(|t| t.local_block()), Some(block));
        assert_eq!(tables.last().map(|t| t.peer_count()), Some(1));
    }
    // Each data path routes the other's block to it (the table follows the status within
    // the recompute hold-down).
    for (agent, other) in [(&a, &sb), (&b, &sa)] {
        let peer_address = other.address.expect("address");
        let dst = PeerName::new(other.name.as_str()).expect("name").id();
        let mut lookup = None;
        for _ in 0..50 {
            let table = agent.host.tables.lock().expect("lock").last().cloned();
            lookup = table.map(|t| t.lookup(peer_address));
            if matches!(lookup, Some(Lookup::Remote { dst: d, .. }) if d == dst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            matches!(lookup, Some(Lookup::Remote { dst: d, .. }) if d == dst),
            "{} routes {peer_address} as {lookup:?} after 5 s",
            agent.addr
        );
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_agent_tells_its_neighbours() {
    let a = agent("a", vec![]).await;
    let b = agent("b", vec![a.addr]).await;
    a.wait_for("a to reach b", 10, |s| reachable(s, "b")).await;
    let started = Instant::now();
    b.stop().await;
    let s = a
        .wait_for("a to see b leave", 3, |s| {
            s.peers
                .iter()
                .any(|p| p.name == "b" && p.left && !p.reachable)
        })
        .await;
    assert!(s.connections.is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_idle_connections_do_not_stop_the_agent() {
    let a = agent("a", vec![]).await;
    let b = agent("b", vec![a.addr]).await;
    a.wait_for("a to reach b", 10, |s| reachable(s, "b")).await;

    // Garbage that is not a hello, an oversized hello, an HTTP request.
    for bytes in [
        &b"\x00\x00\x00\x05hello"[..],
        &[0xff; 64][..],
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
    ] {
        let mut s = TcpStream::connect(a.addr).await.expect("connect");
        let _ = s.write_all(bytes).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "a garbage connection was not closed");
    }

    // More idle connections than may be in handshake at once: the excess is closed at once.
    let mut idle = Vec::new();
    for _ in 0..driver::MAX_HANDSHAKES + 20 {
        idle.push(TcpStream::connect(a.addr).await.expect("connect"));
    }
    let s = a
        .wait_for("excess connections to be counted", 5, |s| {
            s.rejected_connections >= 20
        })
        .await;
    assert!(reachable(&s, "b"), "the cluster still works");
    drop(idle);

    // A new peer can still join.
    let c = agent("c", vec![a.addr]).await;
    a.wait_for("a to reach c", 15, |s| reachable(s, "c")).await;
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_the_connection() {
    let a = agent("a", vec![]).await;
    a.wait_for("a to claim", 5, |s| s.subnet.is_some()).await;

    // No common version: the agent answers its hello and closes.
    let mut s = TcpStream::connect(a.addr).await.expect("connect");
    let mut frame = Vec::new();
    codec::encode_hello(
        &hello_of("z", "127.0.0.1:9".parse().expect("addr"), (90, 99)),
        &mut frame,
    );
    s.write_all(&frame).await.expect("send hello");
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut sink))
        .await
        .expect("closed")
        .expect("read");
    assert!(a.status().await.connections.is_empty());

    // A good handshake, then a frame over the size cap: connected, then closed.
    let mut s = TcpStream::connect(a.addr).await.expect("connect");
    let mut frame = Vec::new();
    codec::encode_hello(
        &hello_of("x", "127.0.0.1:9".parse().expect("addr"), (1, 1)),
        &mut frame,
    );
    s.write_all(&frame).await.expect("send hello");
    a.wait_for("x to connect", 5, |s| s.connections.len() == 1)
        .await;
    s.write_all(&[0xff, 0xff, 0xff, 0xff])
        .await
        .expect("send prefix");
    a.wait_for("x to be dropped", 5, |s| s.connections.is_empty())
        .await;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut sink))
        .await
        .expect("closed")
        .ok();
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_peer_is_spoken_to_in_version_1() {
    let a = agent("a", vec![]).await;
    a.wait_for("a to claim", 5, |s| s.subnet.is_some()).await;
    let x_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let mut s = TcpStream::connect(a.addr).await.expect("connect");
    let mut out = Vec::new();
    codec::encode_hello(&hello_of("x", x_addr, (1, 1)), &mut out);
    // x's own record, as a build speaking only version 1 encodes it.
    let record = overlay_proto::topology::PeerRecord {
        name: PeerName::new("x").expect("name"),
        version: 1,
        instance: 7,
        advertise: x_addr,
        claim: None,
        connections: vec![PeerName::new("a").expect("name")],
        left: false,
        identity: None,
    };
    let gossip = Message::Gossip(overlay_proto::message::Gossip {
        full: false,
        records: vec![record],
    });
    codec::encode_message_in(&gossip, 1, &mut out).expect("fits");
    s.write_all(&out).await.expect("send hello and gossip");

    // The agent's gossip decodes as version 1 (its records would have a byte more in 2).
    let mut frames = codec::FrameBuffer::new(codec::MAX_HELLO_LEN);
    let mut buf = [0u8; 4096];
    let mut hello_seen = false;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the agent closed the connection");
            frames.push(&buf[..n]).expect("frames within the limit");
            while let Some(body) = frames.next_frame().expect("frame") {
                if !hello_seen {
                    hello_seen = true;
                    frames.set_limit(codec::MAX_FRAME_LEN);
                    continue;
                }
                let msg = codec::decode_message_in(&body, 1).expect("a version 1 message");
                if let Some(Message::Gossip(g)) = msg {
                    if let Some(r) = g.records.into_iter().find(|r| r.name.as_str() == "a") {
                        return r;
                    }
                }
            }
        }
    })
    .await
    .expect("a gossips its record to x within 5 s");
    assert_eq!(got.identity, None);
    // And it read x's version 1 record.
    a.wait_for("x's record to be merged", 5, |s| {
        s.peers.iter().any(|p| p.name == "x")
    })
    .await;
    drop(s);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_come_and_go_through_the_handle() {
    let a = agent("a", vec![]).await;
    // Nothing listens there: the dial fails and the target waits for its next attempt.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    assert!(a.control.add_target(gone).await);
    a.wait_for("a failed target", 5, |s| {
        s.targets
            .iter()
            .any(|t| t.address == gone && t.seed && t.failures > 0)
    })
    .await;
    assert!(a.control.remove_target(gone).await);
    a.wait_for("the target gone", 5, |s| {
        s.targets.iter().all(|t| t.address != gone)
    })
    .await;
    a.stop().await;
}

const SECRET: &str = "the-cluster-secret-0123456789";
const OTHER: &str = "another-cluster-secret-987654";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_the_secret_join_and_strangers_are_counted() {
    let a = secret_agent("a", vec![], SECRET).await;
    let b = secret_agent("b", vec![a.addr], SECRET).await;
    let wrong = secret_agent("wrong", vec![a.addr, b.addr], OTHER).await;
    let plain = agent("plain", vec![a.addr]).await;
    let sa = a
        .wait_for("a to reach b and refuse both strangers", 10, |s| {
            reachable(s, "b") && s.control_traffic.handshakes_refused.bad_secret >= 2
        })
        .await;
    let auth = sa.auth.expect("auth shown");
    assert_eq!(auth.identity.len(), 64);
    assert_eq!(
        auth.secret_current,
        crate::auth::Secret::new(SECRET.as_bytes()).fingerprint()
    );
    b.wait_for("b to refuse the wrong secret", 10, |s| {
        s.control_traffic.handshakes_refused.bad_secret >= 1
    })
    .await;
    // Keep going a while: the strangers redial, and never get in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for s in [a.status().await, b.status().await] {
        let names: Vec<_> = s.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b"]
                .into_iter()
                .filter(|n| *n != s.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(s.connections.len(), 1, "{:?}", s.connections);
    }
    for s in [wrong.status().await, plain.status().await] {
        assert!(s.peers.is_empty(), "{}: {:?}", s.name, s.peers);
        assert!(s.connections.is_empty());
    }
    for x in [wrong, plain, b, a] {
        x.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_secret_is_accepted_and_a_flood_is_rate_limited() {
    // a is at step 2 (new, old), b still at step 0 (old): b starts with old, a accepts it.
    let a = secret_agent("a", vec![], &format!("{OTHER}\n{SECRET}")).await;
    let b = secret_agent("b", vec![a.addr], SECRET).await;
    a.wait_for("a to reach b", 10, |s| reachable(s, "b")).await;
    b.wait_for("b to reach a", 10, |s| reachable(s, "a")).await;
    // A burst of connections that send nothing from one address: past the bucket, closed at
    // once and counted.
    let mut idle = Vec::new();
    for _ in 0..(crate::auth::RATE_BURST as usize + 10) {
        if let Ok(c) = TcpStream::connect(a.addr).await {
            idle.push(c);
        }
    }
    let s = a
        .wait_for("the flood to be rate limited", 10, |s| {
            s.control_traffic.handshakes_refused.rate_limited >= 5
        })
        .await;
    assert!(reachable(&s, "b"), "the established peer stays");
    drop(idle);
    b.stop().await;
    a.stop().await;
}
