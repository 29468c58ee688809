//! The Noise pre-shared key of a cluster secret.

use sha2::{Digest, Sha256};
use std::fmt;

/// Prepended to the secret before hashing: the key is for this use only.
pub const PSK_CONTEXT: &[u8] = b"overlay cluster secret psk v1\0";

/// The pre-shared key of one cluster secret: SHA-256 of [`PSK_CONTEXT`] and the secret.
///
/// Its `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; 32]);

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(..)")
    }
}

impl Psk {
    /// Derives the key of `secret` (its length is the caller's policy, not checked here).
    pub fn derive(secret: &[u8]) -> Psk {
        Psk(Sha256::new()
            .chain_update(PSK_CONTEXT)
            .chain_update(secret)
            .finalize()
            .into())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_construct() {
        // SHA-256("overlay cluster secret psk v1\0" || "first-secret-0123456789") (computed
        // independently): the derivation is part of the wire, every version must agree on it.
        let psk = Psk::derive(b"first-secret-0123456789");
        let want = "6627cc233562580dff7cca0995f2912055e16916f2ba3aaffc67572919491e9f";
        let hex: String = psk.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        assert_ne!(psk, Psk::derive(b"second-secret-0123456789"));
        assert_eq!(format!("{psk:?}"), "Psk(..)");
    }
}
