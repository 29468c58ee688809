//! Rate-limited warnings for data-path drops. The packet threads never log; this task reads
//! their drop counters every [`WINDOW`] and writes at most one warning per window, naming
//! each reason that grew and by how much (the counters themselves are in `/status` and
//! `/metrics`).

use crate::control::Host;
use crate::datapath::DropCounters;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often drops are summed up into one warning.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Watches `host`'s drop counters until the returned task is aborted.
pub fn spawn(host: Arc<impl Host>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = host.counters().drops;
        let mut tick = tokio::time::interval(WINDOW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = host.counters().drops;
            if let Some(line) = summary(&last, &now, WINDOW) {
                tracing::warn!("{line}");
            }
            last = now;
        }
    })
}

/// The warning for the drops between `before` and `after` (`None` when none grew).
pub fn summary(before: &DropCounters, after: &DropCounters, window: Duration) -> Option<String> {
    let grown: Vec<(&str, u64)> = before
        .by_reason()
        .iter()
        .zip(after.by_reason())
        .filter(|((_, b), (_, a))| a > b)
        .map(|((_, b), (reason, a))| (reason, a - b))
        .collect();
    if grown.is_empty() {
        return None;
    }
    let total: u64 = grown.iter().map(|(_, n)| n).sum();
    let reasons: Vec<String> = grown.iter().map(|(r, n)| format!("{r}={n}")).collect();
    Some(format!(
        "the data path dropped {total} packet{} in the last {} s: {} (see overlay_datapath_drops_total)",
        if total == 1 { "" } else { "s" },
        window.as_secs(),
        reasons.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_naming_each_reason_that_grew() {
        let before = DropCounters {
            not_peer: 5,
            spoofed: 1,
            ..DropCounters::default()
        };
        assert_eq!(summary(&before, &before, WINDOW), None);
        let after = DropCounters {
            not_peer: 15,
            spoofed: 1,
            no_route: 2,
            ..DropCounters::default()
        };
        assert_eq!(
            summary(&before, &after, WINDOW).as_deref(),
            Some("the data path dropped 12 packets in the last 10 s: not_peer=10, no_route=2 (see overlay_datapath_drops_total)")
        );
    }
}
