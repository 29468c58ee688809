//! The sending side: seals batches of datagrams laid out for one UDP GSO send.

use super::keys::Prk;
use super::{
    aad, nonce, RekeyPolicy, SealError, Suite, MAX_COUNTER, MAX_EPOCH, NONCE_LEN, OVERHEAD, TAG_LEN,
};
use crate::header::{FLAG_SEALED, HEADER_LEN};
use crate::peer::PeerId;
use crate::segment::SplitLayout;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};

/// Index of the flags byte in the header.
const FLAGS: usize = 3;

/// Seals what `local` sends to `remote`: one per peer, owned by the sending thread.
#[derive(Debug)]
pub struct Sealer {
    prk: Prk,
    suite: Suite,
    local: PeerId,
    remote: PeerId,
    policy: RekeyPolicy,
    key: LessSafeKey,
    epoch: u32,
    /// The next counter to use under `key`.
    counter: u64,
    /// When `key` was made (caller's clock).
    since: u64,
}

impl Sealer {
    /// A sealer at epoch 0 for the pair's `shared_secret` (see [`super::session_secret`]),
    /// its key made at `now`.
    pub fn new(
        suite: Suite,
        shared_secret: &[u8; 32],
        local: PeerId,
        remote: PeerId,
        policy: RekeyPolicy,
        now: u64,
    ) -> Sealer {
        let prk = Prk::new(shared_secret);
        let key = make_key(&prk, suite, local, remote, 0);
        Sealer {
            prk,
            suite,
            local,
            remote,
            policy,
            key,
            epoch: 0,
            counter: 0,
            since: now,
        }
    }

    /// The suite this sealer uses.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The current key epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The counter the next datagram gets.
    pub fn next_counter(&self) -> u64 {
        self.counter
    }

    /// Seals in place the datagrams `plain` describes at the start of `buf` — each an overlay
    /// header followed by its payload, all `plain.datagram_len` long but a shorter last one,
    /// as [`crate::segment::split`] lays them out — and returns the layout of the sealed
    /// ones, each [`super::OVERHEAD`] bytes longer, still ready for one GSO send.
    ///
    /// `buf` must hold `plain.total_len + plain.count * OVERHEAD` bytes. The datagrams are
    /// spread apart back to front (one `memmove` of the batch), then each gets
    /// [`FLAG_SEALED`], its own counter, and its payload sealed with the header (less the
    /// hop limit) as associated data. Rekeys first if the key is due (`now`: the caller's
    /// monotonic nanoseconds). A single datagram is `super::single(len)`.
    pub fn seal(
        &mut self,
        now: u64,
        buf: &mut [u8],
        plain: SplitLayout,
    ) -> Result<SplitLayout, SealError> {
        let sealed = sealed_layout(plain)?;
        if buf.len() < sealed.total_len {
            return Err(SealError::BufferTooSmall(buf.len()));
        }
        self.maybe_rekey(now, plain.count as u64)?;
        spread(buf, plain, sealed.datagram_len);
        for i in 0..sealed.count {
            let Some(range) = sealed.datagram(i) else {
                break;
            };
            let Some(d) = buf.get_mut(range) else {
                break;
            };
            self.seal_one(d);
        }
        Ok(sealed)
    }

    /// Seals one spread datagram `d` = header | room for the nonce | payload | room for the
    /// tag.
    #[inline]
    fn seal_one(&mut self, d: &mut [u8]) {
        let counter = self.counter;
        self.counter += 1;
        let n = nonce(self.suite, self.epoch, counter);
        d[FLAGS] |= FLAG_SEALED;
        d[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(&n);
        let a = aad(d);
        let tag_at = d.len() - TAG_LEN;
        let (body, tag) = d.split_at_mut(tag_at);
        let payload = &mut body[HEADER_LEN + NONCE_LEN..];
        // Cannot fail: ring only refuses inputs over 2^36 bytes (GCM) or 2^38 (ChaCha).
        if let Ok(t) = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(n),
            Aad::from(a),
            payload,
        ) {
            tag.copy_from_slice(t.as_ref());
        }
    }

    /// Moves to the next epoch if the key is too old or would pass its packet budget with
    /// `count` more datagrams.
    fn maybe_rekey(&mut self, now: u64, count: u64) -> Result<(), SealError> {
        let budget = self.policy.after_packets.min(MAX_COUNTER);
        let due = self.counter.saturating_add(count) > budget
            || now.saturating_sub(self.since) >= self.policy.after_nanos;
        if !due {
            return Ok(());
        }
        if self.epoch >= MAX_EPOCH {
            return Err(SealError::Exhausted);
        }
        self.epoch += 1;
        self.key = make_key(&self.prk, self.suite, self.local, self.remote, self.epoch);
        self.counter = 0;
        self.since = now;
        Ok(())
    }
}

/// The AEAD key `from` seals with for `to` in `epoch`.
pub(crate) fn make_key(
    prk: &Prk,
    suite: Suite,
    from: PeerId,
    to: PeerId,
    epoch: u32,
) -> LessSafeKey {
    let k = prk.key(suite, from, to, epoch);
    // Independent of any input: both suites take exactly the 32 bytes derived.
    #[allow(clippy::expect_used)]
    let unbound =
        UnboundKey::new(suite.algorithm(), k.bytes()).expect("both suites take 32-byte keys");
    LessSafeKey::new(unbound)
}

/// The layout of `plain` once sealed, or why `plain` is not a layout of datagrams.
fn sealed_layout(plain: SplitLayout) -> Result<SplitLayout, SealError> {
    let SplitLayout {
        count,
        datagram_len,
        total_len,
    } = plain;
    if count == 0 || datagram_len < HEADER_LEN {
        return Err(SealError::BadLayout);
    }
    let full = (count - 1)
        .checked_mul(datagram_len)
        .ok_or(SealError::BadLayout)?;
    let last = total_len.checked_sub(full).ok_or(SealError::BadLayout)?;
    if last < HEADER_LEN || last > datagram_len {
        return Err(SealError::BadLayout);
    }
    let extra = count.checked_mul(OVERHEAD).ok_or(SealError::BadLayout)?;
    Ok(SplitLayout {
        count,
        datagram_len: datagram_len + OVERHEAD,
        total_len: total_len.checked_add(extra).ok_or(SealError::BadLayout)?,
    })
}

/// Moves each datagram of `plain` to its sealed place (stride `sealed_len`), leaving
/// [`NONCE_LEN`] bytes between its header and payload and [`TAG_LEN`] after it. Back to
/// front, so nothing is overwritten before it moved.
fn spread(buf: &mut [u8], plain: SplitLayout, sealed_len: usize) {
    for i in (0..plain.count).rev() {
        let Some(src) = plain.datagram(i) else {
            continue;
        };
        let dst = i * sealed_len;
        buf.copy_within(
            src.start + HEADER_LEN..src.end,
            dst + HEADER_LEN + NONCE_LEN,
        );
        if dst != src.start {
            buf.copy_within(src.start..src.start + HEADER_LEN, dst);
        }
    }
}
