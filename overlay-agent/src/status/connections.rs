//! The connections view (`GET /status/connections`, `overlay-agent status connections`):
//! every established control connection and every address being dialed, one line each,
//! Weave style.
//!
//! ```text
//! -> 10.99.0.2:6783   established  node1  udp  mtu=1452  rtt=0.41ms  up 12s
//! <- 10.99.0.3:40312  established  node2  udp  mtu=1452  rtt=0.38ms  up 11s
//! -> 10.99.0.9:6783   failed       connection refused (3 failures), retry in 8s
//! ```

use super::{Direction, Status, TargetState};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::SocketAddr;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Handshake done, heartbeats flowing.
    Established,
    /// A dial is under way.
    Dialing,
    /// Waiting for its first attempt.
    Pending,
    /// The last attempts failed; waiting to retry.
    Failed,
}

impl ConnectionState {
    fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Established => "established",
            ConnectionState::Dialing => "dialing",
            ConnectionState::Pending => "pending",
            ConnectionState::Failed => "failed",
        }
    }
}

/// One connection or dial target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// Who dialed (`outbound` for every target not yet connected).
    pub direction: Direction,
    /// The remote address (for a target, the address dialed).
    pub address: SocketAddr,
    /// Where it is.
    pub state: ConnectionState,
    /// The peer at the other end, once known.
    pub peer: Option<String>,
    /// How data to that peer travels when established: `udp` (overlay header in UDP, in the
    /// clear), or with `--encrypt` `udp+<suite>` (e.g. `udp+aes-256-gcm`: sealed).
    pub path: Option<String>,
    /// The overlay MTU towards the peer, when established.
    pub mtu: Option<u32>,
    /// Last heartbeat round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since it was established.
    pub established_secs: Option<u64>,
    /// Given as a seed or with `overlay-agent connect` (rather than learnt by gossip).
    pub seed: bool,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Seconds until the next attempt.
    pub retry_in_secs: Option<u64>,
}

/// The data path's type towards every peer: the overlay header in UDP (followed by `+suite`
/// when sealed).
const PATH_TYPE: &str = "udp";

/// The connections and pending targets of `s`: established ones first (by peer), then the
/// targets not connected (by address). A target connected through an inbound connection is
/// listed once, as that connection.
pub fn connections(s: &Status) -> Vec<ConnectionView> {
    let mut out: Vec<ConnectionView> = s
        .connections
        .iter()
        .map(|c| {
            let target = s.targets.iter().find(|t| {
                t.state == TargetState::Connected && t.peer.as_deref() == Some(c.peer.as_str())
            });
            ConnectionView {
                direction: c.direction,
                address: c.remote,
                state: ConnectionState::Established,
                peer: Some(c.peer.clone()),
                path: Some(match &s.encryption {
                    Some(e) => format!("{PATH_TYPE}+{}", e.suite),
                    None => PATH_TYPE.to_owned(),
                }),
                mtu: Some(s.mtu),
                rtt_ms: c.rtt_ms,
                established_secs: Some(c.established_secs),
                seed: target.is_some_and(|t| t.seed),
                failures: 0,
                last_error: None,
                retry_in_secs: None,
            }
        })
        .collect();
    out.sort_by(|a, b| a.peer.cmp(&b.peer));
    let mut waiting: Vec<ConnectionView> = s
        .targets
        .iter()
        .filter_map(|t| {
            let state = match t.state {
                TargetState::Connected | TargetState::IsSelf => return None,
                TargetState::Dialing => ConnectionState::Dialing,
                TargetState::Waiting if t.failures > 0 => ConnectionState::Failed,
                TargetState::Waiting => ConnectionState::Pending,
            };
            Some(ConnectionView {
                direction: Direction::Outbound,
                address: t.address,
                state,
                peer: None,
                path: None,
                mtu: None,
                rtt_ms: None,
                established_secs: None,
                seed: t.seed,
                failures: t.failures,
                last_error: t.last_error.clone(),
                retry_in_secs: t.retry_in_secs,
            })
        })
        .collect();
    waiting.sort_by_key(|c| c.address);
    out.extend(waiting);
    out
}

/// Counts for the summary line "N (k established, f failed)".
pub fn summary(view: &[ConnectionView]) -> String {
    let count = |state| view.iter().filter(|c| c.state == state).count();
    format!(
        "{} ({} established, {} failed)",
        view.len(),
        count(ConnectionState::Established),
        count(ConnectionState::Failed)
    )
}

/// One line per entry, addresses aligned.
pub fn render(view: &[ConnectionView]) -> String {
    let width = view
        .iter()
        .map(|c| c.address.to_string().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in view {
        let arrow = match c.direction {
            Direction::Outbound => "->",
            Direction::Inbound => "<-",
        };
        let mut line = format!(
            "{arrow} {:<width$}  {:<11}",
            c.address.to_string(),
            c.state.as_str()
        );
        match c.state {
            ConnectionState::Established => {
                let _ = write!(line, "  {}", c.peer.as_deref().unwrap_or("?"));
                if let Some(path) = &c.path {
                    let _ = write!(line, "  {path}");
                }
                if let Some(mtu) = c.mtu {
                    let _ = write!(line, "  mtu={mtu}");
                }
                if let Some(rtt) = c.rtt_ms {
                    let _ = write!(line, "  rtt={rtt:.2}ms");
                }
                if let Some(secs) = c.established_secs {
                    let _ = write!(line, "  up {secs}s");
                }
            }
            ConnectionState::Failed => {
                let _ = write!(
                    line,
                    "  {} ({} failure{})",
                    c.last_error.as_deref().unwrap_or("unknown error"),
                    c.failures,
                    if c.failures == 1 { "" } else { "s" }
                );
                if let Some(secs) = c.retry_in_secs {
                    let _ = write!(line, ", retry in {secs}s");
                }
            }
            ConnectionState::Pending => {
                if let Some(secs) = c.retry_in_secs {
                    let _ = write!(line, "  first attempt in {secs}s");
                }
            }
            ConnectionState::Dialing => {}
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if view.is_empty() {
        out.push_str("no connections and no targets\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::text::tests::sample;
    use crate::status::{ConnectionStatus, TargetStatus};

    #[test]
    fn established_then_failing_with_error_and_retry() {
        let mut s = sample();
        s.connections.push(ConnectionStatus {
            peer: "node-b".into(),
            direction: Direction::Inbound,
            remote: ([192, 168, 1, 11], 40312).into(),
            rtt_ms: None,
            established_secs: 3,
            identity: None,
        });
        s.targets.push(TargetStatus {
            address: ([192, 168, 1, 12], 6783).into(),
            seed: false,
            state: TargetState::Connected,
            peer: Some("node-c".into()),
            failures: 0,
            last_error: None,
            retry_in_secs: None,
        });
        s.targets.push(TargetStatus {
            address: ([192, 168, 1, 20], 6783).into(),
            seed: false,
            state: TargetState::Dialing,
            peer: None,
            failures: 0,
            last_error: None,
            retry_in_secs: None,
        });
        let view = connections(&s);
        assert_eq!(view.len(), 4);
        assert_eq!(summary(&view), "4 (2 established, 1 failed)");
        assert_eq!(
            render(&view),
            "\
<- 192.168.1.11:40312  established  node-b  udp  mtu=1418  up 3s
-> 192.168.1.12:6783   established  node-c  udp  mtu=1418  rtt=0.40ms  up 12s
-> 192.168.1.11:6783   failed       connection refused (3 failures), retry in 8s
-> 192.168.1.20:6783   dialing
"
        );
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json[0]["state"], "established");
        assert_eq!(json[0]["direction"], "inbound");
        assert_eq!(json[2]["state"], "failed");
        assert_eq!(json[2]["last_error"], "connection refused");
        assert_eq!(json[2]["retry_in_secs"], 8);
    }

    #[test]
    fn nothing_to_show_says_so() {
        let mut s = sample();
        s.connections.clear();
        s.targets.clear();
        assert_eq!(render(&connections(&s)), "no connections and no targets\n");
    }
}
