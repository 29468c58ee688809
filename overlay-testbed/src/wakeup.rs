//! How long a thread blocked in a read takes to run again after another thread writes to it,
//! when the machine has been idle: the cost every sleeping packet thread pays per packet that
//! finds it asleep (a ping, for instance).
//!
//! The blocked thread waits in `recv(2)` on a UDP socket bound to the loopback of a namespace;
//! the measuring thread sleeps for the idle time, takes the time, and sends one datagram to it
//! from a second socket there. The blocked thread takes the time as soon as its `recv` returns.
//! Both times come from `Instant` (`CLOCK_MONOTONIC`), which is the same clock on every CPU.

use crate::netns::Netns;
use anyhow::{bail, Context};
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest a sample may take before the measurement fails.
const LIMIT: Duration = Duration::from_secs(2);

/// Measures `samples` wake-ups in `ns`, each after `idle` without traffic; returns each
/// one's delay from just before the send to the return of the blocked `recv`.
pub fn latencies(ns: &Netns, samples: usize, idle: Duration) -> anyhow::Result<Vec<Duration>> {
    let (rx, tx) = ns.run(|| -> std::io::Result<(UdpSocket, UdpSocket)> {
        let rx = UdpSocket::bind("127.0.0.1:0")?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        tx.connect(rx.local_addr()?)?;
        Ok((rx, tx))
    })??;
    rx.set_read_timeout(Some(LIMIT))?;
    let (woke, woken) = mpsc::channel();
    let sleeper = std::thread::Builder::new()
        .name("wakeup-probe".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 16];
            for _ in 0..samples {
                let r = rx.recv(&mut buf).map(|_| Instant::now());
                let failed = r.is_err();
                if woke.send(r).is_err() || failed {
                    return;
                }
            }
        })?;
    let mut out = Vec::with_capacity(samples);
    let mut result = Ok(());
    for i in 0..samples {
        std::thread::sleep(idle);
        let sent = Instant::now();
        if let Err(e) = tx.send(&[i as u8]) {
            result = Err(anyhow::Error::new(e).context("sending the wake-up datagram"));
            break;
        }
        match woken.recv_timeout(LIMIT + Duration::from_secs(1)) {
            Ok(Ok(at)) => out.push(at.saturating_duration_since(sent)),
            Ok(Err(e)) => {
                result = Err(anyhow::Error::new(e).context("the blocked recv failed"));
                break;
            }
            Err(_) => {
                result = Err(anyhow::anyhow!("the blocked thread never reported"));
                break;
            }
        }
    }
    // A failed sample ends the sleeper too (its recv times out within LIMIT).
    drop(woken);
    sleeper
        .join()
        .map_err(|_| anyhow::anyhow!("the blocked thread panicked"))?;
    result.with_context(|| format!("wake-up latency in {}", ns.name()))?;
    if out.len() != samples {
        bail!("{} of {samples} wake-ups measured", out.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_thread_wakes_within_a_bound() {
        if !crate::require_root("a_blocked_thread_wakes_within_a_bound") {
            return;
        }
        let ns = Netns::create(&format!("{}w", crate::unique_prefix("wk"))).expect("netns");
        let v = latencies(&ns, 5, Duration::from_millis(10)).expect("measured");
        assert_eq!(v.len(), 5);
        assert!(v.iter().all(|d| *d < LIMIT), "{v:?}");
    }
}
