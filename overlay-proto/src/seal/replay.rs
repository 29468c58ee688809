//! The replay window: a sliding bitmap of received counters (RFC 6479 style).

use super::{OpenError, MAX_COUNTER};

/// Words of the bitmap.
const WORDS: usize = 32;
/// Counters below the highest received that are still tracked: one word of the 2048 bits is
/// the slack that lets the window slide a word at a time without shifting the bitmap.
pub const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

/// Which counters of one key were received. [`check`](Self::check) before opening,
/// [`commit`](Self::commit) after the tag verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest committed counter + 1; 0 before the first.
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` may be accepted: above the highest received, or within the
    /// [`WINDOW`] below it and not received yet. Counters from [`MAX_COUNTER`] on are never
    /// accepted (a sender rekeys before).
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), OpenError> {
        if counter >= MAX_COUNTER {
            return Err(OpenError::TooOld);
        }
        if counter >= self.next {
            return Ok(());
        }
        // next > counter here, so next ≥ 1.
        if self.next - 1 - counter >= WINDOW {
            return Err(OpenError::TooOld);
        }
        let (word, bit) = position(counter);
        if self.bits[word] & bit != 0 {
            Err(OpenError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `counter` as received (it passed [`check`](Self::check) and its tag verified).
    #[inline]
    pub fn commit(&mut self, counter: u64) {
        if counter >= self.next {
            // Clear the words the window slides over: those after the current top word up
            // to the new one (all of them if it jumps further than the bitmap).
            let top = if self.next == 0 {
                None
            } else {
                Some((self.next - 1) / 64)
            };
            let new_top = counter / 64;
            let from = top.map_or(0, |t| t + 1);
            let clear = new_top.saturating_sub(from).saturating_add(1);
            if top.is_none() || clear >= WORDS as u64 {
                self.bits = [0; WORDS];
            } else if new_top >= from {
                for w in from..=new_top {
                    self.bits[(w % WORDS as u64) as usize] = 0;
                }
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = position(counter);
        self.bits[word] |= bit;
    }

    /// The highest committed counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

#[inline]
fn position(counter: u64) -> (usize, u64) {
    (
        ((counter / 64) % WORDS as u64) as usize,
        1u64 << (counter % 64),
    )
}
