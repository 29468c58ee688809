//! The agent's persistent identity: an X25519 static key pair in `--state-dir/identity.json`
//! (mode 0600, written atomically, created on the first start). The private key is the
//! agent's static key in the Noise handshake and in the static DH of the data keys
//! (`crate::control::keys`); the public key is gossiped in the agent's topology record (so
//! every peer can derive its data key with this agent) and shown in `/status` (`identity`)
//! and in peers' connection lists, so an operator can tell which machine a peer really is.

use super::secret::hex;
use crate::state::{read_json, write_json_atomic, Corruption, StateDir, StateError};
use overlay_proto::noise::Keypair;
use serde::{Deserialize, Serialize};
use std::fmt;

/// File holding the identity key pair.
pub const IDENTITY_FILE: &str = "identity.json";

/// An X25519 key pair.
#[derive(Clone)]
pub struct Identity {
    private: [u8; 32],
    public: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_hex())
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    private: String,
    public: String,
}

impl Identity {
    /// A fresh random key pair.
    pub fn generate() -> Identity {
        let kp = Keypair::generate();
        Identity {
            private: *kp.private(),
            public: *kp.public(),
        }
    }

    /// The key pair of `state`, created (and persisted) when there is none.
    pub fn load_or_create(state: &StateDir) -> Result<Identity, StateError> {
        let path = state.file(IDENTITY_FILE);
        let corrupt = |reason: Corruption| StateError::Corrupt {
            path: path.clone(),
            reason,
        };
        if let Some(stored) = read_json::<Stored>(&path)? {
            let private =
                unhex32(&stored.private).ok_or_else(|| corrupt(Corruption::PrivateKey))?;
            let public = unhex32(&stored.public).ok_or_else(|| corrupt(Corruption::PublicKey))?;
            return Ok(Identity { private, public });
        }
        let id = Identity::generate();
        write_json_atomic(
            &path,
            &Stored {
                private: hex(&id.private),
                public: hex(&id.public),
            },
        )?;
        Ok(id)
    }

    /// The private key (for the Noise handshake and the data keys' static DH only).
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public key in hex (64 digits).
    pub fn public_hex(&self) -> String {
        hex(&self.public)
    }
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_stable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(tmp.path()).expect("open");
        let a = Identity::load_or_create(&state).expect("created");
        let mode = std::fs::metadata(state.file(IDENTITY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Identity::load_or_create(&state).expect("loaded");
        assert_eq!(a.public(), b.public());
        assert_eq!(a.private(), b.private());
        assert_ne!(a.public(), Identity::generate().public());
        assert!(!format!("{a:?}").contains(&hex(a.private())));
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(tmp.path()).expect("open");
        std::fs::write(
            state.file(IDENTITY_FILE),
            r#"{"private": "zz", "public": "00"}"#,
        )
        .expect("write");
        let e = Identity::load_or_create(&state).expect_err("corrupt");
        assert!(e.to_string().contains(IDENTITY_FILE), "{e}");
    }
}
