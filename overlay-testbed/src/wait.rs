//! Bounded waiting.

use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some`, or fails after `timeout` with an error
/// saying what was awaited and what the last check saw.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_owned(),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what} (last check: {last})");
        }
        std::thread::sleep(every);
    }
}
