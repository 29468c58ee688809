//! Peer identity: the human-chosen [`PeerName`] and the compact [`PeerId`] carried in data headers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted peer name, in bytes (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// A peer's name, unique in the cluster: 1 to 63 bytes of `[A-Za-z0-9._-]`.
///
/// Construct with [`PeerName::new`]; deserialization validates too, so a name read from the
/// network is always well formed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PeerName(String);

/// Why a string is not a valid [`PeerName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// peer name is empty
    #[error("peer name is empty")]
    Empty,
    /// peer name is longer than 63 bytes
    #[error("peer name {0:?} is longer than 63 bytes")]
    TooLong(String),
    /// peer name has a character outside [A-Za-z0-9._-]
    #[error("peer name {0:?} has a character outside [A-Za-z0-9._-]")]
    BadChar(String),
}

impl PeerName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(name));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NameError::BadChar(name));
        }
        Ok(PeerName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The compact id of this name used in data headers.
    pub fn id(&self) -> PeerId {
        PeerId::from_name(&self.0)
    }
}

impl TryFrom<String> for PeerName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        PeerName::new(s)
    }
}

impl From<PeerName> for String {
    fn from(n: PeerName) -> String {
        n.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The 64-bit id of a peer in data headers: the FNV-1a hash of its name.
///
/// Derived from the name, so it is stable across restarts and every agent computes the same id
/// for a peer without asking it. Two names hashing to the same id are refused at handshake.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub u64);

impl PeerId {
    /// FNV-1a (64-bit) of the name's bytes.
    pub fn from_name(name: &str) -> PeerId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        PeerId(h)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({:016x})", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(PeerName::new("node-1.example_a").is_ok());
        assert_eq!(PeerName::new(""), Err(NameError::Empty));
        assert!(matches!(
            PeerName::new("a".repeat(64)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(PeerName::new("a b"), Err(NameError::BadChar(_))));
        assert!(matches!(PeerName::new("é"), Err(NameError::BadChar(_))));
    }

    #[test]
    fn deserialization_validates() {
        assert!(serde_json::from_str::<PeerName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<PeerName>("\"not ok\"").is_err());
    }

    #[test]
    fn id_is_fnv1a_of_the_name() {
        // Reference values of FNV-1a 64.
        assert_eq!(PeerId::from_name("").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(PeerId::from_name("a").0, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(PeerName::new("a").unwrap().id(), PeerId::from_name("a"));
    }
}
