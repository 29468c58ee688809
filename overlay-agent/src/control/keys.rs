//! The data keys the control driver derives and publishes with `--encrypt`.
//!
//! For every peer P whose static public key this agent knows — proven in an authenticated
//! (Noise) handshake with P, or gossiped in P's topology record
//! ([`PeerRecord::identity`](overlay_proto::topology::PeerRecord::identity)) — for P's
//! current run:
//!
//! ```text
//! secret = seal::session_secret(dh, DATA_PSK, (me, nonce(my instance)), (P, nonce(P's instance)))
//! dh     = X25519(this agent's identity private key, P's static public key)
//! ```
//!
//! - `dh` is static-static: the same for every connection between the same two agent runs,
//!   so a reconnect or a cluster secret rotation leaves the keys as they are and no traffic
//!   is lost while a connection is replaced.
//! - It needs no connection: two agents that never handshake (most pairs, once each agent
//!   keeps only a few neighbours) derive the same secret from each other's gossiped keys,
//!   and the same one a handshake between them would give. Sealing is end to end between
//!   the two; relays see only sealed datagrams.
//! - [`DATA_PSK`] is a fixed context constant, not the cluster secret: during a rotation two
//!   nodes may hold different current secrets, yet must derive the same data key. (The
//!   cluster secret still gates who can prove an identity key to us, or gossip one, at all.)
//! - The nonces are the two agents' random per-run instance ids (from the hello, which with
//!   `--secret-file` crosses the Noise channel, bound to the proven key; or from the record,
//!   next to the gossiped key): every pair of agent runs gets a fresh secret, so counters
//!   restarting with an agent never reuse a nonce.
//!
//! A key proven in a handshake is preferred to a gossiped one: if P's record for the same run
//! carries another key than P proved, the proven key is kept and the disagreement counted
//! ([`DataKeys::identity_mismatches`]) and logged.
//!
//! The secret for P is kept after its control connection closes, as long as P's instance is
//! unchanged; it is replaced when P handshakes as, or the topology shows, a new instance, and
//! dropped when the topology shows P left or runs another instance without a key. Each change
//! gets a new generation; the whole table is published to the data path atomically
//! ([`Encryption::publish`]), so the packet path takes neither a lock nor an allocation.

use crate::auth::Identity;
use crate::datapath::{Encryption, KeyTable, PeerKey};
use overlay_proto::peer::PeerId;
use overlay_proto::seal;
use overlay_proto::topology::Topology;
use overlay_proto::PeerName;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{debug, warn};

/// The pre-shared input of the data-key schedule: a fixed context constant (see the module
/// docs for why not the cluster secret).
pub const DATA_PSK: [u8; 32] = *b"overlay data path pair key v1\0\0\0";

/// The 16-byte session nonce of an agent run: its instance id, big-endian, zero-padded.
pub fn instance_nonce(instance: u64) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&instance.to_be_bytes());
    n
}

/// X25519 of `identity`'s private key and `remote` (a public key); `None` if the result is
/// all zeros (a low-order point: no shared secret).
pub fn static_dh(identity: &Identity, remote: &[u8; 32]) -> Option<[u8; 32]> {
    let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519)?;
    dh.set(identity.private());
    let mut out = [0u8; 32];
    dh.dh(remote, &mut out).ok()?;
    (out != [0u8; 32]).then_some(out)
}

/// One peer's key as the driver holds it.
#[derive(Debug, Clone)]
struct Entry {
    name: PeerName,
    instance: u64,
    /// The instance the topology showed for the peer when a handshake made this entry, if
    /// another (a record of the previous run not yet replaced): not a reason to drop the key.
    stale_instance: Option<u64>,
    /// The peer's static public key the secret comes from.
    remote: [u8; 32],
    /// `remote` was proven in a handshake with this run of the peer (else it was gossiped).
    proven: bool,
    /// The last gossiped key seen to disagree with the proven `remote` (counted once).
    disputed: Option<[u8; 32]>,
    key: PeerKey,
}

/// The driver's data keys: derives, prunes and publishes them.
#[derive(Debug)]
pub struct DataKeys {
    encryption: Encryption,
    identity: Arc<Identity>,
    me: PeerId,
    instance: u64,
    entries: HashMap<PeerId, Entry>,
    next_generation: u64,
    version: u64,
    identity_mismatches: u64,
}

impl DataKeys {
    /// Keys of this agent run (`instance`, holding `identity`), published to `encryption`'s
    /// data path.
    pub fn new(encryption: Encryption, identity: Arc<Identity>, instance: u64) -> DataKeys {
        DataKeys {
            me: encryption.me,
            encryption,
            identity,
            instance,
            entries: HashMap::new(),
            next_generation: 1,
            version: 0,
            identity_mismatches: 0,
        }
    }

    /// The suite this node seals with.
    pub fn suite(&self) -> seal::Suite {
        self.encryption.suite
    }

    /// Whether a data key for `peer` is held.
    pub fn has_key(&self, peer: PeerId) -> bool {
        self.entries.contains_key(&peer)
    }

    /// How many times a peer's gossiped identity key disagreed with the one it proved in a
    /// handshake (the proven one is used).
    pub fn identity_mismatches(&self) -> u64 {
        self.identity_mismatches
    }

    /// A handshake with `name` (instance `instance`) proved the static key `remote`: (re)keys
    /// the peer if its secret changed, or — when `replace` is false (a duplicate connection
    /// the node did not keep) — only if no key for it is held, so a connection that was
    /// refused cannot change the key in use. Returns true if the published table changed.
    pub fn handshaked(
        &mut self,
        name: &PeerName,
        instance: u64,
        remote: &[u8; 32],
        topology: &Topology,
        replace: bool,
    ) -> bool {
        let peer = name.id();
        if peer == self.me {
            return false;
        }
        if let Some(e) = self.entries.get_mut(&peer) {
            if e.instance == instance && e.remote == *remote {
                // The key held (perhaps from gossip) is the one proven: the same secret.
                e.proven = true;
                return false;
            }
            if !replace {
                return false;
            }
        }
        let Some(secret) = self.secret(peer, instance, remote) else {
            warn!(peer = %name, "the peer's identity key gives no shared secret: no data key");
            return false;
        };
        let record = topology.get(name);
        let disputed = record
            .filter(|r| r.instance == instance)
            .and_then(|r| r.identity)
            .filter(|gossiped| gossiped != remote);
        if disputed.is_some() {
            self.count_mismatch(name);
        }
        let stale_instance = record.map(|r| r.instance).filter(|i| *i != instance);
        self.insert(Entry {
            name: name.clone(),
            instance,
            stale_instance,
            remote: *remote,
            proven: true,
            disputed,
            key: PeerKey {
                generation: 0,
                secret,
            },
        });
        self.publish();
        true
    }

    /// Brings the keys up to date with `topology` (after it changed): derives the key of
    /// every peer whose record carries an identity key and that did not leave, and drops the
    /// keys of peers that left or run another instance than the one keyed. Returns true if
    /// the published table changed.
    pub fn sync(&mut self, topology: &Topology) -> bool {
        let mut changed = false;
        for r in topology.iter() {
            let peer = r.name.id();
            let Some(gossiped) = r.identity else {
                continue;
            };
            if peer == self.me || r.left {
                continue;
            }
            match self.entries.get_mut(&peer) {
                Some(e) if e.instance == r.instance && e.remote == gossiped => continue,
                Some(e) if e.instance == r.instance && e.proven => {
                    if e.disputed != Some(gossiped) {
                        e.disputed = Some(gossiped);
                        let name = e.name.clone();
                        self.count_mismatch(&name);
                    }
                    continue;
                }
                // A handshake with a run newer than the record.
                Some(e) if e.stale_instance == Some(r.instance) => continue,
                // None, another run, or another gossiped key for this run: derive.
                _ => {}
            }
            let Some(secret) = self.secret(peer, r.instance, &gossiped) else {
                debug!(peer = %r.name, "the gossiped identity key gives no shared secret");
                continue;
            };
            self.insert(Entry {
                name: r.name.clone(),
                instance: r.instance,
                stale_instance: None,
                remote: gossiped,
                proven: false,
                disputed: None,
                key: PeerKey {
                    generation: 0,
                    secret,
                },
            });
            changed = true;
        }
        let before = self.entries.len();
        self.entries.retain(|_, e| match topology.get(&e.name) {
            // Not (yet) in the topology: keep.
            None => true,
            Some(r) if r.instance == e.instance => !r.left,
            Some(r) => e.stale_instance == Some(r.instance),
        });
        changed |= self.entries.len() != before;
        if changed {
            self.publish();
        }
        changed
    }

    /// The pair secret with `peer`'s run `instance` holding the static key `remote`.
    fn secret(&self, peer: PeerId, instance: u64, remote: &[u8; 32]) -> Option<[u8; 32]> {
        let dh = static_dh(&self.identity, remote)?;
        Some(seal::session_secret(
            &dh,
            &DATA_PSK,
            (self.me, &instance_nonce(self.instance)),
            (peer, &instance_nonce(instance)),
        ))
    }

    /// Holds `entry`, with a new generation.
    fn insert(&mut self, mut entry: Entry) {
        entry.key.generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(entry.name.id(), entry);
    }

    fn count_mismatch(&mut self, peer: &PeerName) {
        self.identity_mismatches += 1;
        let total = self.identity_mismatches;
        if total.is_power_of_two() {
            warn!(
                %peer,
                total,
                "the gossiped identity key of the peer differs from the one it proved in a handshake: keeping the proven one"
            );
        }
    }

    fn publish(&mut self) {
        self.version += 1;
        let keys = self
            .entries
            .iter()
            .map(|(p, e)| (*p, e.key.clone()))
            .collect();
        self.encryption.publish(KeyTable {
            version: self.version,
            keys,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::topology::PeerRecord;

    fn name(s: &str) -> PeerName {
        PeerName::new(s).expect("name")
    }

    fn record(n: &str, instance: u64, left: bool, identity: Option<&Identity>) -> PeerRecord {
        PeerRecord {
            name: name(n),
            version: 1,
            instance,
            advertise: "10.0.0.1:6783".parse().expect("addr"),
            claim: None,
            connections: vec![],
            left,
            identity: identity.map(|i| *i.public()),
        }
    }

    fn topo(records: &[PeerRecord]) -> Topology {
        let mut t = Topology::new();
        for r in records {
            t.merge(r.clone());
        }
        t
    }

    fn published(e: &Encryption) -> std::sync::Arc<KeyTable> {
        e.keys.load_full()
    }

    /// The keys of agent `n` holding `identity`, in run `instance`, and where they go.
    fn keys(n: &str, identity: &Identity, instance: u64) -> (DataKeys, Encryption) {
        let e = Encryption::new(name(n).id(), seal::Suite::ChaCha20Poly1305);
        let k = DataKeys::new(e.clone(), Arc::new(identity.clone()), instance);
        (k, e)
    }

    fn secret(e: &Encryption, peer: &str) -> Option<[u8; 32]> {
        published(e).keys.get(&name(peer).id()).map(|k| k.secret)
    }

    #[test]
    fn both_sides_derive_the_same_secret_from_static_keys() {
        let (ia, ib) = (Identity::generate(), Identity::generate());
        let dh_a = static_dh(&ia, ib.public()).expect("dh");
        let dh_b = static_dh(&ib, ia.public()).expect("dh");
        assert_eq!(dh_a, dh_b);
        assert_eq!(static_dh(&ia, &[0u8; 32]), None, "low-order point refused");
        let (a, b) = (name("a"), name("b"));
        let (mut ka, ea) = keys("a", &ia, 11);
        let (mut kb, eb) = keys("b", &ib, 22);
        let t = Topology::new();
        assert!(ka.handshaked(&b, 22, ib.public(), &t, true));
        assert!(kb.handshaked(&a, 11, ia.public(), &t, true));
        assert_eq!(secret(&ea, "b"), secret(&eb, "a"));
        assert!(secret(&ea, "b").is_some());
        // Another run of b: another secret.
        let (mut kb2, eb2) = keys("b", &ib, 23);
        kb2.handshaked(&a, 11, ia.public(), &t, true);
        assert_ne!(secret(&ea, "b"), secret(&eb2, "a"));
        // A low-order key proven: no key.
        assert!(!ka.handshaked(&name("c"), 1, &[0u8; 32], &t, true));
    }

    #[test]
    fn a_peer_known_only_from_gossip_gets_the_key_its_handshake_would_give() {
        let (ia, ib) = (Identity::generate(), Identity::generate());
        // a and b never connect: each learns the other from the topology.
        let (mut ka, ea) = keys("a", &ia, 11);
        let (mut kb, eb) = keys("b", &ib, 22);
        let t = topo(&[
            record("a", 11, false, Some(&ia)),
            record("b", 22, false, Some(&ib)),
        ]);
        assert!(ka.sync(&t));
        assert!(kb.sync(&t));
        assert!(!ka.sync(&t), "nothing new the second time");
        let gossiped = secret(&ea, "b").expect("a holds a key for b");
        assert_eq!(Some(gossiped), secret(&eb, "a"), "both ends agree");
        assert!(secret(&ea, "a").is_none(), "never a key for oneself");

        // A handshake between the same runs gives the very same secret...
        let (mut ka2, ea2) = keys("a", &ia, 11);
        assert!(ka2.handshaked(&name("b"), 22, ib.public(), &t, true));
        assert_eq!(secret(&ea2, "b"), Some(gossiped));
        // ...and when it comes after the gossip, nothing changes: same generation, no
        // publication, no mismatch.
        let before = published(&ea);
        assert!(!ka.handshaked(&name("b"), 22, ib.public(), &t, true));
        assert!(std::sync::Arc::ptr_eq(&before, &published(&ea)));
        assert_eq!(ka.identity_mismatches(), 0);

        // Records without an identity key (no secret, or through a v1 hop) key nothing.
        let (mut kc, ec) = keys("c", &Identity::generate(), 33);
        assert!(!kc.sync(&topo(&[record("a", 11, false, None)])));
        assert!(published(&ec).keys.is_empty());
    }

    #[test]
    fn gossiped_keys_follow_the_peer_s_run_and_go_when_it_leaves() {
        let (ia, ib) = (Identity::generate(), Identity::generate());
        let (mut ka, ea) = keys("a", &ia, 11);
        let (mut kb, eb) = keys("b", &ib, 22);
        assert!(ka.sync(&topo(&[record("b", 22, false, Some(&ib))])));
        let first = published(&ea).keys[&name("b").id()].clone();

        // b restarts as run 23: a new secret, a new generation, and b's new run agrees.
        assert!(ka.sync(&topo(&[record("b", 23, false, Some(&ib))])));
        let second = published(&ea).keys[&name("b").id()].clone();
        assert!(second.generation > first.generation);
        assert_ne!(second.secret, first.secret);
        let (mut kb23, eb23) = keys("b", &ib, 23);
        assert!(kb23.sync(&topo(&[record("a", 11, false, Some(&ia))])));
        assert_eq!(secret(&eb23, "a"), Some(second.secret));
        assert!(kb.sync(&topo(&[record("a", 11, false, Some(&ia))])));
        assert_ne!(
            secret(&eb, "a"),
            Some(second.secret),
            "the old run of b has another"
        );

        // b leaves: its key goes, and is not derived again from the left record.
        assert!(ka.sync(&topo(&[record("b", 23, true, Some(&ib))])));
        assert!(!ka.has_key(name("b").id()));
        assert!(!ka.sync(&topo(&[record("b", 23, true, Some(&ib))])));
        // b comes back as run 24 without a secret: still no key.
        assert!(!ka.sync(&topo(&[record("b", 24, false, None)])));
        assert!(published(&ea).keys.is_empty());
    }

    #[test]
    fn a_proven_key_wins_over_a_gossiped_one_that_disagrees() {
        let (ia, ib, forged) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let b = name("b");
        let (mut ka, ea) = keys("a", &ia, 11);
        let (mut kb, eb) = keys("b", &ib, 22);
        kb.handshaked(&name("a"), 11, ia.public(), &Topology::new(), true);
        let real = secret(&eb, "a");

        // Gossip first claims another key for b's run: a uses it until b proves its own.
        let lying = topo(&[record("b", 22, false, Some(&forged))]);
        assert!(ka.sync(&lying));
        assert_ne!(secret(&ea, "b"), real);
        assert!(ka.handshaked(&b, 22, ib.public(), &lying, true));
        assert_eq!(secret(&ea, "b"), real);
        assert_eq!(ka.identity_mismatches(), 1);
        // Later topology changes do not bring the gossiped key back, nor count again.
        assert!(!ka.sync(&lying));
        assert_eq!(secret(&ea, "b"), real);
        assert_eq!(ka.identity_mismatches(), 1);

        // Handshake first, then a disagreeing record: counted once, the proven key kept.
        let (mut ka2, ea2) = keys("a", &ia, 11);
        assert!(ka2.handshaked(&b, 22, ib.public(), &Topology::new(), true));
        assert!(!ka2.sync(&lying));
        assert!(!ka2.sync(&lying));
        assert_eq!(ka2.identity_mismatches(), 1);
        assert_eq!(secret(&ea2, "b"), real);
        // The record agreeing again changes nothing either.
        assert!(!ka2.sync(&topo(&[record("b", 22, false, Some(&ib))])));
        assert_eq!(ka2.identity_mismatches(), 1);
    }

    #[test]
    fn generations_change_only_with_the_secret_and_keys_go_with_the_peer() {
        let (me, b) = (name("me"), name("b"));
        let (ib, other) = (Identity::generate(), Identity::generate());
        let (mut k, e) = keys("me", &Identity::generate(), 1);
        let t = topo(&[record("b", 7, false, None)]);
        assert_eq!(published(&e).version, 0);
        assert!(k.handshaked(&b, 7, ib.public(), &t, true));
        let first = published(&e);
        assert_eq!(first.version, 1);
        let g1 = first.keys[&b.id()].generation;
        // A reconnect of the same run (even after a secret rotation): nothing changes.
        assert!(!k.handshaked(&b, 7, ib.public(), &t, true));
        assert_eq!(published(&e).version, 1);
        // The connection closing changes nothing either; the topology keeps a live peer.
        assert!(!k.sync(&t));
        assert!(k.has_key(b.id()));
        // A duplicate connection that was not kept cannot change the key in use.
        assert!(!k.handshaked(&b, 7, other.public(), &t, false));
        assert_eq!(published(&e).version, 1);
        // Ourselves: never keyed.
        assert!(!k.handshaked(&me, 1, ib.public(), &t, true));

        // b restarts: its new run handshakes before its new record arrives (the topology
        // still shows run 7): a new generation, and the stale record does not drop it.
        assert!(k.handshaked(&b, 8, ib.public(), &t, true));
        let second = published(&e);
        let g2 = second.keys[&b.id()].generation;
        assert!(g2 > g1);
        assert_ne!(second.keys[&b.id()].secret, first.keys[&b.id()].secret);
        assert!(!k.sync(&t));
        // Not even with b's identity in the stale record.
        assert!(!k.sync(&topo(&[record("b", 7, false, Some(&ib))])));
        assert!(!k.sync(&topo(&[record("b", 8, false, None)])));
        // Then a third run shows up in gossip only, without a key: the key of run 8 goes.
        assert!(k.sync(&topo(&[record("b", 9, false, None)])));
        assert!(!k.has_key(b.id()));
        assert!(published(&e).keys.is_empty());

        // A peer that left: its key goes.
        assert!(k.handshaked(&b, 9, ib.public(), &t, true));
        assert!(!k.sync(&topo(&[record("b", 9, false, None)])));
        assert!(k.sync(&topo(&[record("b", 9, true, None)])));
        assert!(!k.has_key(b.id()));
    }
}
