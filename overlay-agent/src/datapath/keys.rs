//! Data keys of the sealed data path (`--encrypt`): the table the control plane publishes and
//! the per-thread sealers and openers built from it.
//!
//! The control driver holds, for every peer whose identity key it knows (proven in an
//! authenticated handshake, or gossiped in the peer's topology record), a 32-byte pair secret ([`overlay_proto::seal::session_secret`], see
//! `crate::control::keys`) and a generation that changes whenever that secret does. It
//! publishes them as an immutable [`KeyTable`] through an [`ArcSwap`], like the forwarding
//! table. Each packet thread reads the table through an [`arc_swap::Cache`] (a pointer
//! comparison per batch) and keeps its own [`Sealer`] (tx) or [`Opener`]s (rx) per peer: when
//! the table's version changes, entries whose peer is gone or whose generation changed are
//! forgotten, and a sealer or opener is (re)built the first time a peer is used after that.
//! Building one allocates (key schedule, a map slot); steady-state traffic does not.
//!
//! The sender seals with its own suite ([`Suite::detect`]); the receiver keeps one opener per
//! suite it sees for a peer (the suite is the first nonce byte), so peers with and without
//! AES instructions interoperate.

use arc_swap::ArcSwap;
use overlay_proto::dataplane::DropReason;
use overlay_proto::header::HEADER_LEN;
use overlay_proto::peer::PeerId;
use overlay_proto::seal::{Opener, RekeyPolicy, Sealer, Suite};
use overlay_proto::segment::SplitLayout;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One peer's data-path secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey {
    /// Changes whenever `secret` does (never reused for a peer within one agent run).
    pub generation: u64,
    /// The pair secret ([`overlay_proto::seal::session_secret`]).
    pub secret: [u8; 32],
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerKey")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The data keys the control plane holds now: an immutable snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    /// Changes with every publication, so threads re-check their cached keys only then.
    pub version: u64,
    /// Per peer.
    pub keys: HashMap<PeerId, PeerKey>,
}

/// What the data path needs to seal and open: this node, its suite and the published keys.
#[derive(Debug, Clone)]
pub struct Encryption {
    /// This node's peer id.
    pub me: PeerId,
    /// The suite this node seals with.
    pub suite: Suite,
    /// The keys, replaced atomically by the control plane.
    pub keys: Arc<ArcSwap<KeyTable>>,
}

impl Encryption {
    /// An empty key table for `me`, sealing with `suite`.
    pub fn new(me: PeerId, suite: Suite) -> Encryption {
        Encryption {
            me,
            suite,
            keys: Arc::new(ArcSwap::from_pointee(KeyTable::default())),
        }
    }

    /// Publishes `table` to the packet threads.
    pub fn publish(&self, table: KeyTable) {
        self.keys.store(Arc::new(table));
    }
}

/// Monotonic nanoseconds since the thread started (the clock of sealers and openers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock(Instant::now())
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The tx half's sealers, one per destination peer.
#[derive(Debug)]
pub(crate) struct Sealers {
    me: PeerId,
    suite: Suite,
    version: Option<u64>,
    sealers: HashMap<PeerId, (u64, Sealer)>,
}

impl Sealers {
    pub(crate) fn new(me: PeerId, suite: Suite) -> Sealers {
        Sealers {
            me,
            suite,
            version: None,
            sealers: HashMap::new(),
        }
    }

    /// Forgets the sealers whose key changed or went, when `table` is a new publication.
    #[inline]
    fn sync(&mut self, table: &KeyTable) {
        if self.version == Some(table.version) {
            return;
        }
        self.version = Some(table.version);
        self.sealers.retain(|peer, (generation, _)| {
            table
                .keys
                .get(peer)
                .is_some_and(|k| k.generation == *generation)
        });
    }

    /// The sealer for `peer`, built on first use of its current key; `None` without a key.
    #[inline]
    pub(crate) fn get(&mut self, table: &KeyTable, peer: PeerId, now: u64) -> Option<&mut Sealer> {
        self.sync(table);
        if !self.sealers.contains_key(&peer) {
            self.build(table, peer, now)?;
        }
        self.sealers.get_mut(&peer).map(|(_, s)| s)
    }

    #[cold]
    #[inline(never)]
    fn build(&mut self, table: &KeyTable, peer: PeerId, now: u64) -> Option<()> {
        let key = table.keys.get(&peer)?;
        let sealer = Sealer::new(
            self.suite,
            &key.secret,
            self.me,
            peer,
            RekeyPolicy::default(),
            now,
        );
        self.sealers.insert(peer, (key.generation, sealer));
        Some(())
    }

    /// Seals the batch `plain` in `buf` for `peer`: the sealed layout, or why it is dropped.
    #[inline]
    pub(crate) fn seal(
        &mut self,
        table: &KeyTable,
        peer: PeerId,
        now: u64,
        buf: &mut [u8],
        plain: SplitLayout,
    ) -> Result<SplitLayout, DropReason> {
        let sealer = self.get(table, peer, now).ok_or(DropReason::NoKey)?;
        Ok(sealer.seal(now, buf, plain)?)
    }
}

/// Index of a suite among a peer's openers.
#[inline]
fn suite_index(byte: u8) -> Option<(usize, Suite)> {
    match byte {
        b if b == Suite::Aes256Gcm as u8 => Some((0, Suite::Aes256Gcm)),
        b if b == Suite::ChaCha20Poly1305 as u8 => Some((1, Suite::ChaCha20Poly1305)),
        _ => None,
    }
}

/// One peer's openers, one per suite seen, under one generation of its key.
#[derive(Debug)]
struct PeerOpeners {
    generation: u64,
    openers: [Option<Opener>; 2],
}

/// The rx half's openers, per originating peer and suite.
#[derive(Debug)]
pub(crate) struct Openers {
    me: PeerId,
    version: Option<u64>,
    peers: HashMap<PeerId, PeerOpeners>,
}

impl Openers {
    pub(crate) fn new(me: PeerId) -> Openers {
        Openers {
            me,
            version: None,
            peers: HashMap::new(),
        }
    }

    /// Forgets the openers whose key changed or went, when `table` is a new publication
    /// (once per receive batch: a pointer-sized comparison unless it changed).
    #[inline]
    pub(crate) fn sync(&mut self, table: &KeyTable) {
        if self.version == Some(table.version) {
            return;
        }
        self.version = Some(table.version);
        self.peers.retain(|peer, p| {
            table
                .keys
                .get(peer)
                .is_some_and(|k| k.generation == p.generation)
        });
    }

    /// Opens the sealed datagram `d` from `src` in place (see [`Opener::open`]): the plain
    /// datagram's length, or why it is dropped. Call [`Openers::sync`] first.
    #[inline]
    pub(crate) fn open(
        &mut self,
        table: &KeyTable,
        src: PeerId,
        now: u64,
        d: &mut [u8],
    ) -> Result<usize, DropReason> {
        let Some(&byte) = d.get(HEADER_LEN) else {
            return Err(DropReason::SealTruncated);
        };
        let (index, suite) = suite_index(byte).ok_or(DropReason::BadSuite)?;
        let built = self
            .peers
            .get(&src)
            .is_some_and(|p| p.openers[index].is_some());
        if !built {
            self.build(table, src, index, suite)?;
        }
        let opener = self
            .peers
            .get_mut(&src)
            .and_then(|p| p.openers[index].as_mut())
            .ok_or(DropReason::NoKey)?;
        Ok(opener.open(now, d)?)
    }

    #[cold]
    #[inline(never)]
    fn build(
        &mut self,
        table: &KeyTable,
        src: PeerId,
        index: usize,
        suite: Suite,
    ) -> Result<(), DropReason> {
        let key = table.keys.get(&src).ok_or(DropReason::NoKey)?;
        let opener = Opener::new(suite, &key.secret, self.me, src, RekeyPolicy::default());
        let entry = self.peers.entry(src).or_insert_with(|| PeerOpeners {
            generation: key.generation,
            openers: [None, None],
        });
        entry.openers[index] = Some(opener);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::header::Header;
    use overlay_proto::seal;

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    fn table(version: u64, keys: &[(PeerId, u64, u8)]) -> KeyTable {
        KeyTable {
            version,
            keys: keys
                .iter()
                .map(|&(p, generation, s)| {
                    (
                        p,
                        PeerKey {
                            generation,
                            secret: [s; 32],
                        },
                    )
                })
                .collect(),
        }
    }

    /// A sealed datagram from `from` to `to` with `payload`.
    fn sealed(
        s: &mut Sealers,
        t: &KeyTable,
        to: PeerId,
        payload: &[u8],
    ) -> Result<Vec<u8>, DropReason> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len() + seal::OVERHEAD];
        let _ = Header::ip(s.me, to).emit(&mut buf);
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let layout = s.seal(t, to, 0, &mut buf, seal::single(HEADER_LEN + payload.len()))?;
        buf.truncate(layout.total_len);
        Ok(buf)
    }

    #[test]
    fn keys_follow_their_generation_and_vanish_with_the_peer() {
        let mut tx = Sealers::new(A, Suite::ChaCha20Poly1305);
        let mut rx = Openers::new(B);
        let t1 = table(1, &[(B, 1, 7)]);
        let r1 = table(1, &[(A, 1, 7)]);
        assert_eq!(
            sealed(&mut tx, &t1, PeerId(9), b"x"),
            Err(DropReason::NoKey)
        );
        let mut d = sealed(&mut tx, &t1, B, b"hello").expect("sealed");
        assert!(Header::parse(&d).expect("header").is_sealed());
        rx.sync(&r1);
        assert_eq!(rx.open(&r1, A, 0, &mut d), Ok(HEADER_LEN + 5));
        assert_eq!(&d[HEADER_LEN..HEADER_LEN + 5], b"hello");

        // A new generation with another secret: both sides rebuild; the counter restarts
        // under the new key and is accepted.
        let t2 = table(2, &[(B, 2, 8)]);
        let r2 = table(2, &[(A, 2, 8)]);
        let mut d = sealed(&mut tx, &t2, B, b"again").expect("sealed");
        // The receiver still on the old table cannot open it (its counter 0 was seen under
        // the old key: refused as a replay before the tag is even checked).
        assert_eq!(rx.open(&r1, A, 0, &mut d.clone()), Err(DropReason::Replay));
        rx.sync(&r2);
        assert_eq!(rx.open(&r2, A, 0, &mut d), Ok(HEADER_LEN + 5));

        // Same version published again: nothing rebuilt, the replay window is kept.
        let mut d = sealed(&mut tx, &t2, B, b"once").expect("sealed");
        let mut copy = d.clone();
        assert!(rx.open(&r2, A, 0, &mut d).is_ok());
        rx.sync(&r2);
        assert_eq!(rx.open(&r2, A, 0, &mut copy), Err(DropReason::Replay));

        // The peer is gone: no key either way.
        let t3 = table(3, &[]);
        assert_eq!(sealed(&mut tx, &t3, B, b"x"), Err(DropReason::NoKey));
        let mut d = sealed(&mut tx, &t2, B, b"late").expect("sealed");
        rx.sync(&t3);
        assert_eq!(rx.open(&t3, A, 0, &mut d), Err(DropReason::NoKey));
    }

    #[test]
    fn peers_with_different_suites_interoperate() {
        let t = table(1, &[(B, 1, 3)]);
        let r = table(1, &[(A, 1, 3)]);
        let mut rx = Openers::new(B);
        rx.sync(&r);
        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let mut tx = Sealers::new(A, suite);
            let mut d = sealed(&mut tx, &t, B, b"data").expect("sealed");
            assert_eq!(d[HEADER_LEN], suite as u8);
            assert_eq!(rx.open(&r, A, 0, &mut d), Ok(HEADER_LEN + 4), "{suite:?}");
        }
        let mut tx = Sealers::new(A, Suite::Aes256Gcm);
        let mut d = sealed(&mut tx, &t, B, b"data").expect("sealed");
        d[HEADER_LEN] = 9;
        assert_eq!(rx.open(&r, A, 0, &mut d), Err(DropReason::BadSuite));
        assert_eq!(
            rx.open(&r, A, 0, &mut [0u8; 5]),
            Err(DropReason::SealTruncated)
        );
    }
}
