//! Authenticated membership (`--secret-file`): who may open a control connection.
//!
//! # Design
//! With a secret file, every control connection starts with the Noise handshake
//! [`NOISE_PATTERN`] (`Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`, the sans-IO
//! [`overlay_proto::noise`] driven by [`crate::control::noise`]):
//! - **psk0**: the pre-shared key (a SHA-256 derivation of the cluster secret) is mixed in
//!   before the first message, so the initiator's very first message carries an AEAD tag
//!   under it. The responder tries it against each secret it accepts (current, then next) on
//!   a fresh handshake state each; a peer without any of them fails there, before any
//!   Diffie-Hellman, before anything about us is sent, and is counted as `bad_secret`.
//! - **XX**: both sides send their persistent static key ([`identity`]), encrypted, and prove
//!   they hold it; each side learns the other's public key (shown in `/status`).
//! - After the handshake every control frame, the hello with names and versions included, is
//!   encrypted and authenticated with the Noise transport keys (ChaCha20-Poly1305, a counter
//!   nonce per direction): an outsider learns nothing from and injects nothing into the
//!   control plane. The data path (UDP) is not encrypted by this.
//!
//! # Secret rotation
//! The file holds a current and an optional next secret ([`secret`]). The agent re-reads it
//! every [`RELOAD_INTERVAL`] (a Kubernetes Secret mounted as a file is updated in place, so
//! nothing needs a restart); a file that no longer parses is reported and the last good
//! secrets are kept. New handshakes use the new set; established connections are kept
//! (their keys come from ephemeral Diffie-Hellman, not from the secret). Rolling the cluster
//! from `old` to `new` never partitions it:
//! 1. every node gets `old` then `new` (starts with old, accepts both);
//! 2. every node gets `new` then `old` (starts with new, accepts both);
//! 3. every node gets `new` alone.
//!
//! At any moment of a step, what any node starts with is accepted by every node.
//!
//! # Refusals
//! Inbound handshakes that fail are counted by reason ([`Refusals`]); sources are
//! rate-limited per IP address ([`RateLimiter`]) before any cryptography is done.

pub mod identity;
pub mod secret;

pub use identity::Identity;
pub use secret::{Secret, SecretError, SecretSet};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub use overlay_proto::noise::NOISE_PATTERN;
/// How often the secret file is re-read.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Handshakes a source may start at once (the bucket size).
pub const RATE_BURST: f64 = 20.0;
/// Handshakes a source may start per second, sustained.
pub const RATE_PER_SEC: f64 = 5.0;
/// Most sources tracked by the rate limiter.
pub const RATE_TABLE: usize = 4096;

/// What authenticated membership needs: this agent's identity and the secrets it holds.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The static key pair.
    pub identity: Arc<Identity>,
    secrets: Arc<ArcSwap<SecretSet>>,
}

impl Auth {
    /// Holds `secrets` for `identity`.
    pub fn new(identity: Identity, secrets: SecretSet) -> Auth {
        Auth {
            identity: Arc::new(identity),
            secrets: Arc::new(ArcSwap::from_pointee(secrets)),
        }
    }

    /// The secrets in force now.
    pub fn secrets(&self) -> Arc<SecretSet> {
        self.secrets.load_full()
    }

    /// Replaces the secrets (a reload).
    pub fn set_secrets(&self, secrets: SecretSet) {
        self.secrets.store(Arc::new(secrets));
    }

    /// Re-reads `path` every [`RELOAD_INTERVAL`] and applies a changed content; runs until
    /// the runtime stops.
    pub fn spawn_reload(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut last_error = None;
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let loaded = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || SecretSet::load(&path)).await
                };
                match loaded {
                    Ok(Ok((set, _))) => {
                        last_error = None;
                        if *auth.secrets() != set {
                            info!(
                                current = set.current.fingerprint(),
                                next = set.next.as_ref().map(Secret::fingerprint),
                                "cluster secrets reloaded from --secret-file"
                            );
                            auth.set_secrets(set);
                        }
                    }
                    Ok(Err(e)) => {
                        // Logged once per distinct message, not every interval.
                        let e = e.to_string();
                        if last_error.as_ref() != Some(&e) {
                            warn!(
                                "--secret-file {}: {e}; keeping the secrets loaded before",
                                path.display()
                            );
                            last_error = Some(e);
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// What `/status` shows of it.
    pub fn status(&self) -> AuthStatus {
        let secrets = self.secrets();
        AuthStatus {
            identity: self.identity.public_hex(),
            secret_current: secrets.current.fingerprint().to_owned(),
            secret_next: secrets.next.as_ref().map(|s| s.fingerprint().to_owned()),
        }
    }
}

/// Authenticated membership as `/status` shows it (`auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStatus {
    /// This agent's public key (hex).
    pub identity: String,
    /// Fingerprint of the current secret.
    pub secret_current: String,
    /// Fingerprint of the next secret, during a rotation.
    pub secret_next: Option<String>,
}

/// Why an inbound handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The first message does not authenticate under any accepted secret.
    BadSecret,
    /// The handshake did not complete in time.
    Timeout,
    /// The source started too many handshakes.
    RateLimited,
    /// A handshake message was malformed, or the connection failed or closed in the middle.
    Malformed,
    /// No protocol version in common.
    Version,
}

/// Inbound handshake refusals by reason, shared by the accepting tasks.
#[derive(Debug, Default)]
pub struct Refusals {
    bad_secret: AtomicU64,
    timeout: AtomicU64,
    rate_limited: AtomicU64,
    malformed: AtomicU64,
    version: AtomicU64,
}

impl Refusals {
    /// Counts one refusal; returns the new total of that reason.
    pub fn count(&self, reason: RefusalReason) -> u64 {
        let counter = match reason {
            RefusalReason::BadSecret => &self.bad_secret,
            RefusalReason::Timeout => &self.timeout,
            RefusalReason::RateLimited => &self.rate_limited,
            RefusalReason::Malformed => &self.malformed,
            RefusalReason::Version => &self.version,
        };
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The counts now.
    pub fn snapshot(&self) -> RefusalCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RefusalCounts {
            bad_secret: get(&self.bad_secret),
            timeout: get(&self.timeout),
            rate_limited: get(&self.rate_limited),
            malformed: get(&self.malformed),
            version: get(&self.version),
        }
    }
}

/// Inbound control handshakes refused, by reason (`/status` `control_traffic.handshakes_refused`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefusalCounts {
    /// Not holding any secret this agent accepts.
    pub bad_secret: u64,
    /// Too slow.
    pub timeout: u64,
    /// Too many handshakes from one source address.
    pub rate_limited: u64,
    /// Malformed messages, or closed in the middle.
    pub malformed: u64,
    /// No protocol version in common.
    pub version: u64,
}

impl RefusalCounts {
    /// `(reason label, count)` for every reason.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("bad_secret", self.bad_secret),
            ("timeout", self.timeout),
            ("rate_limited", self.rate_limited),
            ("malformed", self.malformed),
            ("version", self.version),
        ]
    }
}

/// A token bucket per source address, in a table of at most [`RATE_TABLE`] entries.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// Whether `source` may start a handshake at `now` (takes a token if so).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= RATE_TABLE && !self.buckets.contains_key(&source) {
            // Forget the sources whose bucket refilled (they lose nothing); if that frees
            // nothing, forget all: the table stays bounded whatever the sources do.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * RATE_PER_SEC
                    < RATE_BURST
            });
            if self.buckets.len() >= RATE_TABLE {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(source).or_insert((RATE_BURST, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * RATE_PER_SEC)
            .min(RATE_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_source_gets_its_burst_then_the_sustained_rate() {
        let mut rl = RateLimiter::default();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| rl.allow(a, t0)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        assert!(rl.allow(b, t0), "another source is not affected");
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| rl.allow(a, t1)).count();
        assert_eq!(allowed, RATE_PER_SEC as usize);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..(3 * RATE_TABLE as u32) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rl.allow(ip, t0));
            assert!(rl.len() <= RATE_TABLE);
        }
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let r = Refusals::default();
        r.count(RefusalReason::BadSecret);
        r.count(RefusalReason::BadSecret);
        r.count(RefusalReason::RateLimited);
        let s = r.snapshot();
        assert_eq!((s.bad_secret, s.rate_limited, s.timeout), (2, 1, 0));
        assert_eq!(s.by_reason()[0], ("bad_secret", 2));
    }
}
