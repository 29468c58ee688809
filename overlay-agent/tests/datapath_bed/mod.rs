//! The data-path test bed, shared by the data-path test binaries: three nodes on an underlay
//! bridge (`overlay_testbed::Underlay`), a [`Datapath`] in each node namespace with a block per
//! node (10.32.{1,2,3}.0/24, node address .1), the TUN configured through
//! [`netlink::configure_tun`], and forwarding tables built by hand from an `overlay_proto`
//! topology. Traffic only flows between the test's own namespaces.
//!
//! [`Cluster::start`] uses the switches in `OVERLAY_DATAPATH_DISABLE` on every node (none by
//! default: the fast path), so the whole suite can be rerun with any offload switched off.

#![allow(dead_code)]

use overlay_agent::datapath::{
    CountersSnapshot, Datapath, DatapathConfig, Disabled, Encryption, KeyTable, PeerKey,
};
use overlay_agent::netlink;
/// `header` followed by `payload` (the data plane's fixture; not every test file uses it).
#[allow(unused_imports)]
pub use overlay_proto::dataplane::fixtures::datagram;
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::peer::PeerName;
use overlay_proto::routing::compute_routes;
use overlay_proto::topology::{Claim, PeerRecord, Topology};
use overlay_testbed::{unique_prefix, wait, Underlay};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Data-path UDP port on every node.
pub const PORT: u16 = 6783;
/// Port of a socket on node a that the tables also accept as a sender (`extra_senders`): the
/// tests craft datagrams "from a" with it.
pub const CRAFT_PORT: u16 = 6999;
/// The TUN device name in every node.
pub const TUN: &str = "ovl0";
/// Nodes running a data path (a, b, c); an underlay may have more (outsiders).
pub const PEERS: usize = 3;
pub const NAMES: [&str; PEERS] = ["a", "b", "c"];
pub const FULL_MESH: &[(usize, usize)] = &[(0, 1), (0, 2), (1, 2)];
/// a–b broken: c relays.
pub const VIA_C: &[(usize, usize)] = &[(0, 2), (1, 2)];

pub fn cluster_net() -> ipnet::Ipv4Net {
    "10.32.0.0/12".parse().expect("cluster")
}

/// Node address (first host of the block) of node `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, i as u8 + 1, 1)
}

/// Another address inside node `i`'s block.
pub fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, i as u8 + 1, 5)
}

pub fn underlay(i: usize) -> SocketAddr {
    SocketAddr::from((Underlay::node_addr(i), PORT))
}

pub fn name(i: usize) -> PeerName {
    PeerName::new(NAMES[i]).expect("name")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The topology of a, b and c with their blocks and the given (bidirectional) connections.
pub fn topology(links: &[(usize, usize)]) -> Topology {
    let mut t = Topology::new();
    for i in 0..PEERS {
        let mut connections: Vec<PeerName> = links
            .iter()
            .filter_map(|&(x, y)| match (x == i, y == i) {
                (true, _) => Some(name(y)),
                (_, true) => Some(name(x)),
                _ => None,
            })
            .collect();
        connections.sort();
        t.merge(PeerRecord {
            name: name(i),
            version: 1,
            instance: 1,
            advertise: underlay(i),
            claim: Some(Claim {
                block: format!("10.32.{}.0/24", i + 1).parse().expect("block"),
                epoch: 0,
            }),
            connections,
            left: false,
            identity: None,
        });
    }
    t
}

/// Node `me`'s forwarding table; a's crafting socket is accepted as a sender everywhere.
pub fn table(me: usize, topology: &Topology) -> ForwardingTable {
    let routes = compute_routes(topology, &name(me));
    let craft = SocketAddr::from((Underlay::node_addr(0), CRAFT_PORT));
    ForwardingTable::build(&name(me), topology, &routes, cluster_net(), 24, &[craft])
}

/// Nodes a, b, c with data paths (plus `outsiders` namespaces on the same underlay with none).
pub struct Cluster {
    // Declared first: dropped (threads stopped) before the namespaces go.
    pub datapaths: Vec<Datapath>,
    pub bed: Underlay,
    /// Overlay MTU set on every TUN.
    pub mtu: u32,
}

/// The switches of `OVERLAY_DATAPATH_DISABLE` (none when unset).
pub fn env_switches() -> Disabled {
    Disabled::from_env().unwrap_or_else(|e| panic!("{e}"))
}

impl Cluster {
    /// Starts a, b and c with the switches of `OVERLAY_DATAPATH_DISABLE`.
    pub fn start(tag: &str, outsiders: usize) -> Cluster {
        Cluster::start_with(tag, outsiders, [env_switches(); PEERS])
    }

    /// Starts a, b and c, node `i` with offloads `disabled[i]` switched off.
    pub fn start_with(tag: &str, outsiders: usize, disabled: [Disabled; PEERS]) -> Cluster {
        Cluster::start_inner(tag, outsiders, disabled, false)
    }

    /// Starts a, b and c with every offload and a sealed data path (`--encrypt`): each node
    /// holds a data key for both others (a fixed secret per pair, published as the control
    /// driver would), and the overlay MTU is 28 bytes smaller.
    pub fn start_sealed(tag: &str) -> Cluster {
        Cluster::start_inner(tag, 0, [Disabled::default(); PEERS], true)
    }

    fn start_inner(
        tag: &str,
        outsiders: usize,
        disabled: [Disabled; PEERS],
        sealed: bool,
    ) -> Cluster {
        let bed = Underlay::new(&unique_prefix(tag), PEERS + outsiders).expect("underlay");
        let underlay_mtu = bed.nodes[0]
            .run(|| runtime().block_on(netlink::underlay_mtu(IpAddr::V4(Underlay::node_addr(0)))))
            .expect("thread in node a")
            .expect("underlay MTU of eth0");
        assert_eq!(underlay_mtu, 1500, "veth default MTU");
        let mtu = netlink::overlay_mtu(underlay_mtu)
            - if sealed {
                overlay_proto::seal::OVERHEAD as u32
            } else {
                0
            };
        let topo = topology(FULL_MESH);
        let mut datapaths = Vec::new();
        for (i, node) in NAMES.iter().enumerate() {
            let table = table(i, &topo);
            let encryption = sealed.then(|| {
                let e = Encryption::new(name(i).id(), overlay_proto::seal::Suite::detect());
                let keys = (0..PEERS)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let pair = (i.min(j) * PEERS + i.max(j)) as u8;
                        let key = PeerKey {
                            generation: 1,
                            secret: [pair; 32],
                        };
                        (name(j).id(), key)
                    })
                    .collect();
                e.publish(KeyTable { version: 1, keys });
                e
            });
            let dp = bed.nodes[i]
                .run(move || -> Result<Datapath, String> {
                    let config = DatapathConfig {
                        iface: TUN.into(),
                        listen: SocketAddr::from(([0, 0, 0, 0], PORT)),
                        mtu,
                        disabled: disabled[i],
                    };
                    let dp = Datapath::start_with(config, table, encryption)
                        .map_err(|e| e.to_string())?;
                    runtime()
                        .block_on(netlink::configure_tun(
                            TUN,
                            mtu,
                            Some(node_ip(i)),
                            cluster_net(),
                        ))
                        .map_err(|e| e.to_string())?;
                    Ok(dp)
                })
                .expect("thread in node")
                .unwrap_or_else(|e| panic!("starting node {node}: {e}"));
            datapaths.push(dp);
        }
        Cluster {
            datapaths,
            bed,
            mtu,
        }
    }

    pub fn counters(&self, i: usize) -> CountersSnapshot {
        self.datapaths[i].counters()
    }

    /// Installs tables computed from a topology with these connections on every node.
    pub fn route(&self, links: &[(usize, usize)]) {
        let topo = topology(links);
        for (i, dp) in self.datapaths.iter().enumerate() {
            dp.set_table(table(i, &topo));
        }
    }

    /// Waits (bounded) until node `i`'s counters satisfy `ok`.
    pub fn wait_counters(
        &self,
        i: usize,
        what: &str,
        ok: impl Fn(&CountersSnapshot) -> bool,
    ) -> CountersSnapshot {
        wait::until(
            &format!("{what} on node {}", NAMES[i]),
            Duration::from_secs(10),
            Duration::from_millis(10),
            || {
                let c = self.counters(i);
                if ok(&c) {
                    Ok(Some(c))
                } else {
                    Err(format!("{c:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Binds a UDP socket in node `i`'s namespace.
    pub fn udp(&self, i: usize, addr: SocketAddr) -> UdpSocket {
        let sock = self.bed.nodes[i]
            .run(move || UdpSocket::bind(addr))
            .expect("thread in node")
            .unwrap_or_else(|e| panic!("binding {addr} in node {i}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        sock
    }
}

/// Deterministic pseudo-random bytes.
pub struct Bytes(pub u64);

impl Bytes {
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let n = chunk.len();
            chunk.copy_from_slice(&self.0.to_le_bytes()[..n]);
        }
    }
}

/// Streams `bytes` pseudo-random bytes over TCP from node `from` to node `to` (node addresses,
/// through the overlay) and checks the SHA-256 on both ends. Returns the transfer time.
pub fn tcp_transfer(c: &Cluster, from: usize, to: usize, bytes: usize, port: u16) -> Duration {
    let server_addr = SocketAddr::from((node_ip(to), port));
    let listener = c.bed.nodes[to]
        .run(move || TcpListener::bind(server_addr))
        .expect("thread in node")
        .unwrap_or_else(|e| panic!("listening on {server_addr}: {e}"));
    listener.set_nonblocking(true).expect("nonblocking");
    let server = std::thread::spawn(move || -> Result<(Vec<u8>, usize, SocketAddr), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept on {server_addr}: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut hash = Sha256::new();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n;
                }
                Err(e) => return Err(format!("reading after {total} bytes: {e}")),
            }
        }
        let digest = hash.finalize().to_vec();
        stream.write_all(&digest).map_err(|e| e.to_string())?;
        Ok((digest, total, peer))
    });
    let start = Instant::now();
    let client = c.bed.nodes[from]
        .run(move || -> Result<(Vec<u8>, Vec<u8>), String> {
            let mut stream = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5))
                .map_err(|e| format!("connecting to {server_addr}: {e}"))?;
            stream
                .set_write_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let mut gen = Bytes(0x5eed ^ bytes as u64);
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(buf.len());
                gen.fill(&mut buf[..n]);
                hash.update(&buf[..n]);
                stream
                    .write_all(&buf[..n])
                    .map_err(|e| format!("writing with {left} bytes left: {e}"))?;
                left -= n;
            }
            stream
                .shutdown(Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let mut echoed = Vec::new();
            stream
                .read_to_end(&mut echoed)
                .map_err(|e| format!("reading the server's digest: {e}"))?;
            Ok((hash.finalize().to_vec(), echoed))
        })
        .expect("thread in node");
    let elapsed = start.elapsed();
    let server = server.join().expect("server thread");
    let (sent_digest, echoed) = client.unwrap_or_else(|e| panic!("client: {e}"));
    let (received_digest, received, peer) = server.unwrap_or_else(|e| panic!("server: {e}"));
    assert_eq!(received, bytes, "every byte arrived");
    assert_eq!(received_digest, sent_digest, "the bytes arrived intact");
    assert_eq!(echoed, sent_digest, "the server's digest came back");
    assert_eq!(
        peer.ip(),
        IpAddr::V4(node_ip(from)),
        "the client used its node address (route src)"
    );
    elapsed
}

pub fn mbit_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 * 8.0 / t.as_secs_f64() / 1e6
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0 = none).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    overlay_testkit::packet::ipv4_udp(src, dst, 4000, dport, payload)
}

pub fn send(sock: &UdpSocket, d: &[u8], to: SocketAddr) {
    sock.send_to(d, to)
        .unwrap_or_else(|e| panic!("sending {} bytes to {to}: {e}", d.len()));
}

/// Next datagram on `sock` (bounded by its read timeout).
pub fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no datagram on {:?}: {e}", sock.local_addr()));
    buf.truncate(n);
    (buf, from)
}

/// A UDP echo server on `addr` in node `node`'s namespace, until dropped.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start(c: &Cluster, node: usize, addr: SocketAddr) -> Echo {
        let sock = c.udp(node, addr);
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_echo = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut buf = vec![0u8; 65536];
            while !stop_echo.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends a datagram of each size in `sizes` (pseudo-random bytes) to `echo` from `client` and
/// checks each comes back intact (up to 3 tries each, as UDP may lose one). Returns the
/// number of retries.
pub fn echo_sizes(
    client: &UdpSocket,
    echo: SocketAddr,
    sizes: impl Iterator<Item = usize>,
) -> usize {
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut gen = Bytes(7);
    let mut payload = vec![0u8; 65536];
    let mut buf = vec![0u8; 65536];
    let mut retries = 0;
    for size in sizes {
        gen.fill(&mut payload[..size]);
        let mut attempts = 0;
        loop {
            attempts += 1;
            send(client, &payload[..size], echo);
            match client.recv_from(&mut buf) {
                Ok((n, from)) if from == echo && buf[..n] == payload[..size] => break,
                Ok((n, _)) if n != size => {} // a late echo of an earlier size
                Ok(_) => panic!("datagram of {size} bytes came back altered"),
                Err(e) if attempts < 3 => {
                    retries += 1;
                    eprintln!("size {size}: no echo yet ({e}), retrying");
                }
                Err(e) => panic!("datagram of {size} bytes lost 3 times: {e}"),
            }
        }
    }
    retries
}
