//! The key schedule: a secret shared by two peers → one key per direction, epoch and suite.
//!
//! # Where the shared secret comes from
//! The integration computes it once per control session between two agents, from what the
//! authenticated handshake of the control connection provides:
//! - `dh`: X25519 of this agent's persistent identity key with the peer's identity public key
//!   (the same value on both sides);
//! - `psk`: a key derived from the cluster secret (so an outsider with a stolen identity key
//!   but not the cluster secret cannot compute it, and rotating the cluster secret rotates
//!   the data keys);
//! - each side's random 16-byte session nonce, drawn at agent start and exchanged on the
//!   authenticated control connection, so that every pair of agent runs gets a fresh secret:
//!   the counters restart at 0 with the agent, and a reused secret would reuse nonces.
//!
//! [`session_secret`] mixes them; [`PairKeys::derive`] expands it. A relay holds only its own
//! identity key and the cluster secret: it cannot compute the DH of two other peers, hence
//! cannot read or alter what it forwards. A member of the cluster can still *be* any peer's
//! relay and drop, delay or reorder traffic, and rewrite the hop limit (not authenticated).
//! (If the control handshake exports an ephemeral DH or handshake hash, mixing it into `dh`
//! adds forward secrecy; the rest is unchanged.)

use super::suite::Suite;
use crate::peer::PeerId;
use ring::hkdf;

/// HKDF salt of the data-key schedule (version of this schedule).
const SALT: &[u8] = b"overlay seal v1";
/// Info label of a data key.
const KEY_LABEL: &[u8] = b"overlay seal v1 data key";
/// Info label of the session secret.
const SESSION_LABEL: &[u8] = b"overlay seal v1 session";

/// A 32-byte output length for ring's HKDF.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// The secret of one pair of agent runs: HKDF-SHA256 with `psk` as salt over `dh` and the two
/// session nonces, ordered by peer id so that both sides compute the same value.
pub fn session_secret(
    dh: &[u8; 32],
    psk: &[u8; 32],
    local: (PeerId, &[u8; 16]),
    remote: (PeerId, &[u8; 16]),
) -> [u8; 32] {
    let (lo, hi) = if local.0 .0 <= remote.0 .0 {
        (local, remote)
    } else {
        (remote, local)
    };
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, psk).extract(dh);
    let info = [
        SESSION_LABEL,
        &lo.0 .0.to_be_bytes(),
        lo.1,
        &hi.0 .0.to_be_bytes(),
        hi.1,
    ];
    fill(&prk, &info)
}

/// One direction's key of one epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKey {
    /// The key epoch.
    pub epoch: u32,
    bytes: [u8; 32],
}

impl DirectionKey {
    /// The raw key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The keys of one peer pair for one epoch, seen from `local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairKeys {
    /// Seals what `local` sends to `remote`.
    pub tx: DirectionKey,
    /// Opens what `remote` sends to `local`.
    pub rx: DirectionKey,
}

impl PairKeys {
    /// Both directions' keys of `epoch` for `suite`, from the pair's `shared_secret`
    /// (see [`session_secret`]). The peer computes the mirror image: its `tx` is our `rx`.
    pub fn derive(
        suite: Suite,
        shared_secret: &[u8; 32],
        local: PeerId,
        remote: PeerId,
        epoch: u32,
    ) -> PairKeys {
        let prk = Prk::new(shared_secret);
        PairKeys {
            tx: prk.key(suite, local, remote, epoch),
            rx: prk.key(suite, remote, local, epoch),
        }
    }
}

/// The extracted pair secret, kept by a sealer or opener to derive later epochs' keys.
#[derive(Debug, Clone)]
pub(crate) struct Prk(hkdf::Prk);

impl Prk {
    pub(crate) fn new(shared_secret: &[u8; 32]) -> Prk {
        Prk(hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(shared_secret))
    }

    /// The key `from` seals with for `to` in `epoch`.
    pub(crate) fn key(&self, suite: Suite, from: PeerId, to: PeerId, epoch: u32) -> DirectionKey {
        let info = [
            KEY_LABEL,
            &[suite as u8],
            &from.0.to_be_bytes(),
            &to.0.to_be_bytes(),
            &epoch.to_be_bytes(),
        ];
        DirectionKey {
            epoch,
            bytes: fill(&self.0, &info),
        }
    }
}

fn fill(prk: &hkdf::Prk, info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // Cannot fail: 32 bytes is far below HKDF-SHA256's limit of 255 × 32.
    if let Ok(okm) = prk.expand(info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}
