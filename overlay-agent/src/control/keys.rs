//! The data keys the control driver derives and publishes with `--encrypt`.
//!
//! For every peer P this agent completed an authenticated (Noise) handshake with:
//!
//! ```text
//! secret = seal::session_secret(dh, DATA_PSK, (me, nonce(my instance)), (P, nonce(P's instance)))
//! dh     = X25519(this agent's identity private key, P's static public key proven in the handshake)
//! ```
//!
//! - `dh` is static-static: the same for every connection between the same two agent runs,
//!   so a reconnect or a cluster secret rotation leaves the keys as they are and no traffic
//!   is lost while a connection is replaced.
//! - [`DATA_PSK`] is a fixed context constant, not the cluster secret: during a rotation two
//!   nodes may hold different current secrets, yet must derive the same data key. (The
//!   cluster secret still gates who can prove an identity key to us at all.)
//! - The nonces are the two agents' random per-run instance ids (from the hello, which with
//!   `--secret-file` crosses the Noise channel, bound to the proven key): every pair of agent
//!   runs gets a fresh secret, so counters restarting with an agent never reuse a nonce.
//!
//! The secret for P is kept after its control connection closes, as long as P's instance is
//! unchanged (traffic relayed around a broken direct path stays sealed); it is replaced when
//! P handshakes as a new instance, and dropped when the topology shows P left or runs another
//! instance. Each change gets a new generation; the whole table is published to the data path
//! atomically ([`Encryption::publish`]).

use crate::auth::Identity;
use crate::datapath::{Encryption, KeyTable, PeerKey};
use overlay_proto::peer::PeerId;
use overlay_proto::seal;
use overlay_proto::topology::Topology;
use overlay_proto::PeerName;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use std::collections::HashMap;

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
    /// The instance the topology showed for the peer when this entry was made, if another
    /// (a record of the previous run not yet replaced): not a reason to drop the key.
    stale_instance: Option<u64>,
    key: PeerKey,
}

/// The driver's data keys: derives, prunes and publishes them.
#[derive(Debug)]
pub struct DataKeys {
    encryption: Encryption,
    me: PeerId,
    instance: u64,
    entries: HashMap<PeerId, Entry>,
    next_generation: u64,
    version: u64,
}

impl DataKeys {
    /// Keys of this agent run (`instance`), published to `encryption`'s data path.
    pub fn new(encryption: Encryption, instance: u64) -> DataKeys {
        DataKeys {
            me: encryption.me,
            encryption,
            instance,
            entries: HashMap::new(),
            next_generation: 1,
            version: 0,
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

    /// A handshake with `name` (instance `instance`) proved the static key whose
    /// [`static_dh`] with ours is `dh`: (re)keys the peer if its secret changed, or — when
    /// `replace` is false (a duplicate connection the node did not keep) — only if no key for
    /// it is held, so a connection that was refused cannot change the key in use. Returns
    /// true if the published table changed.
    pub fn handshaked(
        &mut self,
        name: &PeerName,
        instance: u64,
        dh: &[u8; 32],
        topology: &Topology,
        replace: bool,
    ) -> bool {
        let peer = name.id();
        if peer == self.me || (!replace && self.entries.contains_key(&peer)) {
            return false;
        }
        let secret = seal::session_secret(
            dh,
            &DATA_PSK,
            (self.me, &instance_nonce(self.instance)),
            (peer, &instance_nonce(instance)),
        );
        if self
            .entries
            .get(&peer)
            .is_some_and(|e| e.instance == instance && e.key.secret == secret)
        {
            return false;
        }
        let stale_instance = topology
            .get(name)
            .map(|r| r.instance)
            .filter(|i| *i != instance);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            peer,
            Entry {
                name: name.clone(),
                instance,
                stale_instance,
                key: PeerKey { generation, secret },
            },
        );
        self.publish();
        true
    }

    /// Drops the keys of peers the topology shows left, or running another instance than
    /// the one keyed. Returns true if the published table changed.
    pub fn prune(&mut self, topology: &Topology) -> bool {
        let before = self.entries.len();
        self.entries.retain(|_, e| match topology.get(&e.name) {
            // Not (yet) in the topology: keep.
            None => true,
            Some(r) if r.instance == e.instance => !r.left,
            Some(r) => e.stale_instance == Some(r.instance),
        });
        if self.entries.len() == before {
            return false;
        }
        self.publish();
        true
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

    fn record(n: &str, instance: u64, left: bool) -> PeerRecord {
        PeerRecord {
            name: name(n),
            version: 1,
            instance,
            advertise: "10.0.0.1:6783".parse().expect("addr"),
            claim: None,
            connections: vec![],
            left,
            identity: None,
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

    #[test]
    fn both_sides_derive_the_same_secret_from_static_keys() {
        let (ia, ib) = (Identity::generate(), Identity::generate());
        let dh_a = static_dh(&ia, ib.public()).expect("dh");
        let dh_b = static_dh(&ib, ia.public()).expect("dh");
        assert_eq!(dh_a, dh_b);
        assert_eq!(static_dh(&ia, &[0u8; 32]), None, "low-order point refused");
        let (a, b) = (name("a"), name("b"));
        let ea = Encryption::new(a.id(), seal::Suite::ChaCha20Poly1305);
        let eb = Encryption::new(b.id(), seal::Suite::Aes256Gcm);
        let mut ka = DataKeys::new(ea.clone(), 11);
        let mut kb = DataKeys::new(eb.clone(), 22);
        let t = Topology::new();
        assert!(ka.handshaked(&b, 22, &dh_a, &t, true));
        assert!(kb.handshaked(&a, 11, &dh_b, &t, true));
        assert_eq!(
            published(&ea).keys[&b.id()].secret,
            published(&eb).keys[&a.id()].secret
        );
        // Another run of b: another secret.
        let mut kb2 = DataKeys::new(eb.clone(), 23);
        kb2.handshaked(&a, 11, &dh_b, &t, true);
        assert_ne!(
            published(&ea).keys[&b.id()].secret,
            published(&eb).keys[&a.id()].secret
        );
    }

    #[test]
    fn generations_change_only_with_the_secret_and_keys_go_with_the_peer() {
        let me = name("me");
        let b = name("b");
        let e = Encryption::new(me.id(), seal::Suite::Aes256Gcm);
        let mut k = DataKeys::new(e.clone(), 1);
        let dh = [5u8; 32];
        let t = topo(&[record("b", 7, false)]);
        assert_eq!(published(&e).version, 0);
        assert!(k.handshaked(&b, 7, &dh, &t, true));
        let first = published(&e);
        assert_eq!(first.version, 1);
        let g1 = first.keys[&b.id()].generation;
        // A reconnect of the same run (even after a secret rotation): nothing changes.
        assert!(!k.handshaked(&b, 7, &dh, &t, true));
        assert_eq!(published(&e).version, 1);
        // The connection closing changes nothing either; prune keeps a live peer.
        assert!(!k.prune(&t));
        assert!(k.has_key(b.id()));
        // A duplicate connection that was not kept cannot change the key in use.
        assert!(!k.handshaked(&b, 7, &[6u8; 32], &t, false));
        assert_eq!(published(&e).version, 1);
        // Ourselves: never keyed.
        assert!(!k.handshaked(&me, 1, &dh, &t, true));

        // b restarts: its new run handshakes before its new record arrives (the topology
        // still shows run 7): a new generation, and the stale record does not prune it.
        assert!(k.handshaked(&b, 8, &dh, &t, true));
        let second = published(&e);
        let g2 = second.keys[&b.id()].generation;
        assert!(g2 > g1);
        assert_ne!(second.keys[&b.id()].secret, first.keys[&b.id()].secret);
        assert!(!k.prune(&t));
        assert!(!k.prune(&topo(&[record("b", 8, false)])));
        // Then a third run shows up in gossip only: the key of run 8 goes.
        assert!(k.prune(&topo(&[record("b", 9, false)])));
        assert!(!k.has_key(b.id()));
        assert!(published(&e).keys.is_empty());

        // A peer that left: its key goes.
        assert!(k.handshaked(&b, 9, &dh, &t, true));
        assert!(!k.prune(&topo(&[record("b", 9, false)])));
        assert!(k.prune(&topo(&[record("b", 9, true)])));
        assert!(!k.has_key(b.id()));
    }
}
