//! How long a thread blocked in a read takes to run again after another thread writes to it,
//! when the machine has been idle: the cost every sleeping packet thread pays for a packet
//! that finds it asleep (a ping, for instance).
//!
//! Two UDP sockets on the loopback of a namespace, one per thread. The measuring thread sleeps
//! for the idle time, takes the time, sends a datagram to the other thread, which is blocked
//! in `recv(2)`, and blocks in its own `recv(2)` at once (as ping does). The woken thread takes
//! the time as soon as its `recv` returns and answers at once. Each sample is a pair: the
//! wake-up after idle (send → the woken `recv` returns) and the wake-up of the writer that
//! just went to sleep (the answer → the writer's `recv` returns). All times come from
//! `Instant` (`CLOCK_MONOTONIC`), the same clock on every CPU.

use crate::netns::Netns;
use anyhow::{bail, Context};
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest a sample may take before the measurement fails.
const LIMIT: Duration = Duration::from_secs(2);

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    /// From just before the send to the return of the `recv` blocked through the idle time.
    pub after_idle: Duration,
    /// From the woken thread's answer (its `recv` returning) to the return of the writer's
    /// `recv`, which it entered right after its send.
    pub back: Duration,
}

/// Measures `samples` wake-ups in `ns`, each after `idle` without traffic.
pub fn latencies(ns: &Netns, samples: usize, idle: Duration) -> anyhow::Result<Vec<Wakeup>> {
    let (mine, theirs) = ns.run(|| -> std::io::Result<(UdpSocket, UdpSocket)> {
        let a = UdpSocket::bind("127.0.0.1:0")?;
        let b = UdpSocket::bind("127.0.0.1:0")?;
        a.connect(b.local_addr()?)?;
        b.connect(a.local_addr()?)?;
        Ok((a, b))
    })??;
    mine.set_read_timeout(Some(LIMIT))?;
    theirs.set_read_timeout(Some(LIMIT))?;
    let (woke, woken) = mpsc::channel();
    let sleeper = std::thread::Builder::new()
        .name("wakeup-probe".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 16];
            for _ in 0..samples {
                let r = theirs.recv(&mut buf).map(|_| Instant::now());
                // Answer first, report after: the writer's wake-up is not delayed.
                let r = r.and_then(|at| theirs.send(&buf[..1]).map(|_| at));
                let failed = r.is_err();
                if woke.send(r).is_err() || failed {
                    return;
                }
            }
        })?;
    let mut out = Vec::with_capacity(samples);
    let mut result = Ok(());
    let mut buf = [0u8; 16];
    for i in 0..samples {
        std::thread::sleep(idle);
        let sent = Instant::now();
        let answered = mine
            .send(&[i as u8])
            .and_then(|_| mine.recv(&mut buf))
            .map(|_| Instant::now());
        let back_at = match answered {
            Ok(at) => at,
            Err(e) => {
                result = Err(anyhow::Error::new(e).context("no answer from the blocked thread"));
                break;
            }
        };
        match woken.recv_timeout(LIMIT) {
            Ok(Ok(at)) => out.push(Wakeup {
                after_idle: at.saturating_duration_since(sent),
                back: back_at.saturating_duration_since(at),
            }),
            Ok(Err(e)) => {
                result = Err(anyhow::Error::new(e).context("the blocked thread failed"));
                break;
            }
            Err(_) => {
                result = Err(anyhow::anyhow!("the blocked thread never reported"));
                break;
            }
        }
    }
    // On failure the sleeper ends too (its recv times out within LIMIT).
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
    #[cfg_attr(no_root, ignore = "needs root")]
    fn a_blocked_thread_wakes_within_a_bound() {
        crate::require_root();
        let ns = Netns::create(&format!("{}w", crate::unique_prefix("wk"))).expect("netns");
        let v = latencies(&ns, 5, Duration::from_millis(10)).expect("measured");
        assert_eq!(v.len(), 5);
        assert!(
            v.iter()
                .all(|w| w.after_idle > Duration::ZERO && w.after_idle < LIMIT && w.back < LIMIT),
            "{v:?}"
        );
    }
}
