//! The traceroute-style text view of a [`TraceResult`].

use super::model::{HopAction, Outcome, TraceHop, TraceResult};
use std::fmt::Write;

/// Renders `r` for a person: a title line, one line per hop, and a summary line.
pub fn render(r: &TraceResult) -> String {
    let mut out = String::new();
    let what = match (&r.owner, r.node_address) {
        (Some(owner), true) => format!("node address of {owner}"),
        (Some(owner), false) => format!("pod on {owner}"),
        (None, _) => "no owner".to_owned(),
    };
    let hops = r.hops.len();
    let _ = writeln!(
        out,
        "trace to {} ({what}), {hops} hop{}",
        r.destination,
        if hops == 1 { "" } else { "s" }
    );
    let width = r
        .hops
        .iter()
        .map(|h| h.node.as_deref().unwrap_or("*").len())
        .max()
        .unwrap_or(1);
    for h in &r.hops {
        let node = h.node.as_deref().unwrap_or("*");
        let text = describe(h);
        let rtt = h
            .rtt_ms
            .map_or_else(String::new, |ms| format!("   {ms:.2} ms"));
        let _ = writeln!(out, "{:>2}  {node:<width$}   {text}{rtt}", h.hop);
    }
    let summary = match r.outcome {
        Outcome::Delivered => "delivered".to_owned(),
        Outcome::Dropped => match r.hops.iter().find(|h| h.action == HopAction::Drop) {
            Some(h) => format!(
                "dropped at hop {} ({}): {}",
                h.hop,
                h.node.as_deref().unwrap_or("*"),
                h.reason.as_deref().unwrap_or("no reason given")
            ),
            None => "dropped".to_owned(),
        },
        Outcome::NoAnswer => match r.hops.iter().find(|h| h.action == HopAction::NoAnswer) {
            Some(h) => format!("no answer from hop {}", h.hop),
            None => "no answer".to_owned(),
        },
    };
    let _ = writeln!(out, "{summary}");
    out
}

fn device(h: &TraceHop) -> String {
    let name = h.device.as_deref().unwrap_or("?");
    match h.device_up {
        Some(true) => format!("{name} (up)"),
        Some(false) => format!("{name} (DOWN)"),
        None => name.to_owned(),
    }
}

fn next(h: &TraceHop) -> String {
    let via = h.via.as_deref().unwrap_or("?");
    match h.underlay {
        Some(a) => format!("{via} ({a})"),
        None => via.to_owned(),
    }
}

fn route(h: &TraceHop) -> String {
    match (&h.route, &h.device) {
        (Some(r), Some(d)) => format!("route {r} dev {d}"),
        (Some(r), None) => format!("route {r}"),
        (None, Some(d)) => format!("dev {d}"),
        (None, None) => "no kernel route".to_owned(),
    }
}

fn describe(h: &TraceHop) -> String {
    let reason = h.reason.as_deref().unwrap_or("no reason given");
    match h.action {
        HopAction::Encapsulate => {
            let to = h.to.as_deref().unwrap_or("?");
            if h.via.as_deref() == Some(to) {
                format!("{} → encapsulate to {}", route(h), next(h))
            } else {
                format!("{} → encapsulate to {to} via {}", route(h), next(h))
            }
        }
        HopAction::Local => format!(
            "{} → local: in this node's block, delivered to {} without encapsulation",
            route(h),
            device(h)
        ),
        HopAction::Relay => format!("relay → {}", next(h)),
        HopAction::Deliver => match &h.bridge {
            Some(b) => format!("decapsulate → bridge {b} → deliver to {}", device(h)),
            None => format!("decapsulate → deliver to {}", device(h)),
        },
        HopAction::Drop if h.hop == 0 => format!("{} → dropped: {reason}", route(h)),
        HopAction::Drop => format!("dropped: {reason}"),
        HopAction::NoAnswer => "* no answer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn hop(n: u8, node: &str, action: HopAction) -> TraceHop {
        TraceHop::new(n, Some(node.into()), action)
    }

    #[test]
    fn a_relayed_path_reads_like_traceroute() {
        let r = TraceResult {
            destination: Ipv4Addr::new(10, 32, 2, 5),
            owner: Some("node2".into()),
            node_address: false,
            outcome: Outcome::Delivered,
            hops: vec![
                TraceHop {
                    route: Some("10.32.0.0/12".into()),
                    device: Some("ovl0".into()),
                    to: Some("node2".into()),
                    via: Some("node1".into()),
                    underlay: Some("10.99.0.2:6783".parse().expect("addr")),
                    rtt_ms: Some(0.0),
                    ..hop(0, "node0", HopAction::Encapsulate)
                },
                TraceHop {
                    via: Some("node2".into()),
                    underlay: Some("10.99.0.3:6783".parse().expect("addr")),
                    rtt_ms: Some(0.414),
                    ..hop(1, "node1", HopAction::Relay)
                },
                TraceHop {
                    device: Some("veth-abc".into()),
                    device_up: Some(true),
                    bridge: Some("ovlbr0".into()),
                    rtt_ms: Some(0.73),
                    ..hop(2, "node2", HopAction::Deliver)
                },
            ],
        };
        assert_eq!(
            render(&r),
            "trace to 10.32.2.5 (pod on node2), 3 hops\n\
             \x200  node0   route 10.32.0.0/12 dev ovl0 → encapsulate to node2 via node1 (10.99.0.2:6783)   0.00 ms\n\
             \x201  node1   relay → node2 (10.99.0.3:6783)   0.41 ms\n\
             \x202  node2   decapsulate → bridge ovlbr0 → deliver to veth-abc (up)   0.73 ms\n\
             delivered\n"
        );
    }

    #[test]
    fn direct_drops_and_silence_are_spelled_out() {
        let mut r = TraceResult {
            destination: Ipv4Addr::new(10, 32, 2, 1),
            owner: Some("node2".into()),
            node_address: true,
            outcome: Outcome::NoAnswer,
            hops: vec![
                TraceHop {
                    route: Some("10.32.0.0/12".into()),
                    device: Some("ovl0".into()),
                    to: Some("node2".into()),
                    via: Some("node2".into()),
                    underlay: Some("10.99.0.3:6783".parse().expect("addr")),
                    rtt_ms: Some(0.0),
                    ..hop(0, "node0", HopAction::Encapsulate)
                },
                TraceHop::new(1, None, HopAction::NoAnswer),
            ],
        };
        let text = render(&r);
        assert!(text.starts_with("trace to 10.32.2.1 (node address of node2), 2 hops\n"));
        assert!(text.contains("dev ovl0 → encapsulate to node2 (10.99.0.3:6783)   0.00 ms\n"));
        assert!(text.contains(" 1  *       * no answer\n"), "{text}");
        assert!(text.ends_with("no answer from hop 1\n"));

        r.owner = None;
        r.outcome = Outcome::Dropped;
        r.hops = vec![TraceHop {
            route: Some("10.32.0.0/12".into()),
            device: Some("ovl0".into()),
            reason: Some("no node owns the block of this address".into()),
            rtt_ms: Some(0.0),
            ..hop(0, "node0", HopAction::Drop)
        }];
        assert_eq!(
            render(&r),
            "trace to 10.32.2.1 (no owner), 1 hop\n\
             \x200  node0   route 10.32.0.0/12 dev ovl0 → dropped: no node owns the block of this address   0.00 ms\n\
             dropped at hop 0 (node0): no node owns the block of this address\n"
        );
    }
}
