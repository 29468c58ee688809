//! The receiving side: opens sealed datagrams in place, one at a time.

use super::keys::Prk;
use super::replay::ReplayWindow;
use super::sealer::make_key;
use super::{
    aad, OpenError, RekeyPolicy, Suite, MAX_EPOCH, MAX_EPOCH_AHEAD, MIN_SEALED_LEN, NONCE_LEN,
};
use crate::header::{FLAG_SEALED, HEADER_LEN};
use crate::peer::PeerId;
use ring::aead::{Aad, LessSafeKey, Nonce};

/// Index of the flags byte in the header.
const FLAGS: usize = 3;

/// One epoch's receive key and the counters received under it.
#[derive(Debug)]
struct RxKey {
    epoch: u32,
    key: LessSafeKey,
    window: ReplayWindow,
}

/// Which key a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Previous,
    Next,
}

/// Opens what `remote` sends to `local`: one per peer, owned by the receiving thread.
#[derive(Debug)]
pub struct Opener {
    prk: Prk,
    suite: Suite,
    local: PeerId,
    remote: PeerId,
    policy: RekeyPolicy,
    current: RxKey,
    /// The epoch before `current`, until `previous_until`.
    previous: Option<RxKey>,
    previous_until: u64,
    /// A later epoch's key, derived ahead: `current + 1` unless a datagram claimed another.
    next: RxKey,
}

impl Opener {
    /// An opener at epoch 0 for the pair's `shared_secret` (see [`super::session_secret`]).
    pub fn new(
        suite: Suite,
        shared_secret: &[u8; 32],
        local: PeerId,
        remote: PeerId,
        policy: RekeyPolicy,
    ) -> Opener {
        let prk = Prk::new(shared_secret);
        let current = rx_key(&prk, suite, remote, local, 0);
        let next = rx_key(&prk, suite, remote, local, 1);
        Opener {
            prk,
            suite,
            local,
            remote,
            policy,
            current,
            previous: None,
            previous_until: 0,
            next,
        }
    }

    /// The suite this opener expects.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The current key epoch (the latest one a datagram was opened with, or 0).
    pub fn epoch(&self) -> u32 {
        self.current.epoch
    }

    /// Opens the sealed datagram `d` in place (`now`: the caller's monotonic nanoseconds).
    ///
    /// On success `d[..n]` is the plain datagram — the overlay header, [`FLAG_SEALED`]
    /// cleared, followed by the payload moved down over the nonce — ready for the same
    /// handling as an unsealed one, and the counter is recorded in the replay window. On
    /// error the datagram is to be dropped (its bytes may have been overwritten), counted
    /// under the error's reason. A datagram that fails moves no replay window and switches no key.
    pub fn open(&mut self, now: u64, d: &mut [u8]) -> Result<usize, OpenError> {
        if d.len() < MIN_SEALED_LEN {
            return Err(OpenError::Truncated(d.len()));
        }
        if d[FLAGS] & FLAG_SEALED == 0 {
            return Err(OpenError::NotSealed);
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&d[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        if n[0] != self.suite as u8 {
            return Err(OpenError::WrongSuite(n[0]));
        }
        let epoch = u32::from_be_bytes([0, n[1], n[2], n[3]]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&n[4..]);
        let counter = u64::from_be_bytes(c);

        let slot = self.select(now, epoch)?;
        let rx = self.slot(slot);
        rx.window.check(counter)?;
        let a = aad(d);
        let body = &mut d[HEADER_LEN..];
        let plain_len = rx
            .key
            .open_within(
                Nonce::assume_unique_for_key(n),
                Aad::from(a),
                body,
                NONCE_LEN..,
            )
            .map_err(|_| OpenError::BadTag)?
            .len();
        rx.window.commit(counter);
        if slot == Slot::Next {
            self.promote(now);
        }
        d[FLAGS] &= !FLAG_SEALED;
        Ok(HEADER_LEN + plain_len)
    }

    /// The key for `epoch`, deriving a later one on demand.
    fn select(&mut self, now: u64, epoch: u32) -> Result<Slot, OpenError> {
        if epoch == self.current.epoch {
            return Ok(Slot::Current);
        }
        if let Some(prev) = &self.previous {
            if prev.epoch == epoch {
                if now < self.previous_until {
                    return Ok(Slot::Previous);
                }
                self.previous = None;
                return Err(OpenError::UnknownEpoch(epoch));
            }
        }
        let ahead = epoch.wrapping_sub(self.current.epoch);
        if epoch > self.current.epoch && ahead <= MAX_EPOCH_AHEAD && epoch <= MAX_EPOCH {
            if self.next.epoch != epoch {
                self.next = rx_key(&self.prk, self.suite, self.remote, self.local, epoch);
            }
            return Ok(Slot::Next);
        }
        Err(OpenError::UnknownEpoch(epoch))
    }

    fn slot(&mut self, slot: Slot) -> &mut RxKey {
        match (slot, &mut self.previous) {
            (Slot::Previous, Some(prev)) => prev,
            (Slot::Next, _) => &mut self.next,
            _ => &mut self.current,
        }
    }

    /// A datagram opened under `next`: it becomes current, current becomes previous for the
    /// grace period, and the key after it is derived ahead.
    fn promote(&mut self, now: u64) {
        let following = self.next.epoch.saturating_add(1).min(MAX_EPOCH);
        let following = rx_key(&self.prk, self.suite, self.remote, self.local, following);
        let new_current = std::mem::replace(&mut self.next, following);
        let old = std::mem::replace(&mut self.current, new_current);
        self.previous = Some(old);
        self.previous_until = now.saturating_add(self.policy.grace_nanos);
    }
}

fn rx_key(prk: &Prk, suite: Suite, from: PeerId, to: PeerId, epoch: u32) -> RxKey {
    RxKey {
        epoch,
        key: make_key(prk, suite, from, to, epoch),
        window: ReplayWindow::default(),
    }
}
