//! Node namespaces joined by a bridge that lives in a "switch" namespace of its own.
//!
//! Node `i` (0-based) has interface `eth0` with address `10.99.0.(i+1)/24` and forwarding on
//! (it routes for its pods). The addresses only exist inside this bed's namespaces.

use crate::netns::Netns;
use std::net::Ipv4Addr;

/// Several nodes on one underlay bridge.
#[derive(Debug)]
pub struct Underlay {
    prefix: String,
    /// The node namespaces, in order.
    pub nodes: Vec<Netns>,
    /// The namespace holding the bridge (dropped last).
    pub switch: Netns,
}

impl Underlay {
    /// Creates `count` node namespaces named `<prefix>n<i>` on a bridge in `<prefix>sw`.
    pub fn new(prefix: &str, count: usize) -> anyhow::Result<Underlay> {
        let switch = Netns::create(&format!("{prefix}sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let mut bed = Underlay {
            prefix: prefix.to_owned(),
            nodes: Vec::new(),
            switch,
        };
        for i in 0..count {
            let node = Netns::create(&format!("{prefix}n{i}"))?;
            let port = format!("p{i}");
            node.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                bed.switch.name(),
            ])?;
            bed.switch
                .ip(&["link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", Self::node_addr(i));
            node.ip(&["addr", "add", &addr, "dev", "eth0"])?;
            node.ip(&["link", "set", "eth0", "up"])?;
            node.sysctl("net.ipv4.ip_forward", "1")?;
            bed.nodes.push(node);
        }
        Ok(bed)
    }

    /// The prefix every name of this bed starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Underlay address of node `i`.
    pub fn node_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, 0, u8::try_from(i + 1).unwrap_or(254))
    }

    /// Adds a host on the underlay that is no node: namespace `<prefix>h<last octet>` with
    /// `eth0` at `addr`/24 on the bridge and no other route (in particular none to the pod
    /// range), like a machine beyond the cluster. Dropping it removes it.
    pub fn add_outside_host(&self, addr: Ipv4Addr) -> anyhow::Result<Netns> {
        let last = addr.octets()[3];
        let host = Netns::create(&format!("{}h{last}", self.prefix))?;
        let port = format!("h{last}");
        host.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            self.switch.name(),
        ])?;
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        host.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        host.ip(&["link", "set", "eth0", "up"])?;
        Ok(host)
    }

    /// Drops all traffic between nodes `a` and `b` (blackhole routes on both sides).
    pub fn blackhole(&self, a: usize, b: usize) -> anyhow::Result<()> {
        let (ra, rb) = (
            format!("{}/32", Self::node_addr(b)),
            format!("{}/32", Self::node_addr(a)),
        );
        self.nodes[a].ip(&["route", "add", "blackhole", &ra])?;
        self.nodes[b].ip(&["route", "add", "blackhole", &rb])?;
        Ok(())
    }

    /// Undoes [`Underlay::blackhole`].
    pub fn heal(&self, a: usize, b: usize) -> anyhow::Result<()> {
        let (ra, rb) = (
            format!("{}/32", Self::node_addr(b)),
            format!("{}/32", Self::node_addr(a)),
        );
        self.nodes[a].ip(&["route", "del", "blackhole", &ra])?;
        self.nodes[b].ip(&["route", "del", "blackhole", &rb])?;
        Ok(())
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        self.nodes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    #[cfg_attr(no_root, ignore = "needs root")]
    fn nodes_reach_each_other_and_blackholes_cut_them() {
        crate::require_root();
        let bed = Underlay::new(&crate::unique_prefix("tb"), 2).expect("bed");
        let listener = bed.nodes[1]
            .run(|| TcpListener::bind("10.99.0.2:7000"))
            .expect("thread")
            .expect("bind");
        let connect = || {
            bed.nodes[0]
                .run(|| {
                    TcpStream::connect_timeout(
                        &"10.99.0.2:7000".parse().expect("addr"),
                        std::time::Duration::from_millis(500),
                    )
                    .is_ok()
                })
                .expect("thread")
        };
        assert!(connect(), "node 0 reaches node 1");
        bed.blackhole(0, 1).expect("blackhole");
        assert!(!connect(), "blackholed");
        bed.heal(0, 1).expect("heal");
        assert!(connect(), "healed");
        drop(listener);
        let names: Vec<String> = bed.nodes.iter().map(|n| n.name().to_owned()).collect();
        drop(bed);
        let list = crate::netns::run("ip", &["netns", "list"]).expect("list");
        for n in names {
            assert!(!list.contains(&n), "{n} removed");
        }
    }
}
