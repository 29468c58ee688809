//! The cluster secret file (`--secret-file`): a current secret and an optional next one.
//!
//! # Format
//! Text, one secret per line. Blank lines and lines starting with `#` are ignored; leading
//! and trailing whitespace of a line is not part of the secret. The first secret is the
//! **current** one: this agent starts its handshakes with it and accepts it. An optional
//! second is the **next** one: accepted from peers, never used to start a handshake. More
//! than two is an error. Each secret is at least [`MIN_SECRET_LEN`] bytes (e.g.
//! `head -c 32 /dev/urandom | base64`), at most [`MAX_SECRET_LEN`]; the file at most
//! [`MAX_FILE_LEN`].
//!
//! A secret never leaves this module in clear: the handshake uses a key derived from it
//! ([`Secret::psk`]) and logs and `/status` show a short fingerprint ([`Secret::fingerprint`],
//! from a different derivation), never the secret.

use overlay_proto::noise::Psk;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted secret, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;
/// Largest accepted secret file, in bytes.
pub const MAX_FILE_LEN: u64 = 4096;

const FINGERPRINT_CONTEXT: &[u8] = b"overlay cluster secret fingerprint v1\0";

/// One cluster secret, kept only as the key derived from it and its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    psk: Psk,
    fingerprint: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint)
    }
}

impl Secret {
    /// Derives the key and fingerprint of `secret` (length not checked here).
    pub fn new(secret: &[u8]) -> Secret {
        let psk = Psk::derive(secret);
        let fp = Sha256::new()
            .chain_update(FINGERPRINT_CONTEXT)
            .chain_update(secret)
            .finalize();
        Secret {
            psk,
            fingerprint: hex(&fp[..4]),
        }
    }

    /// The Noise pre-shared key: SHA-256 of a context string and the secret ([`Psk`]).
    pub fn psk(&self) -> &Psk {
        &self.psk
    }

    /// 8 hex digits that tell secrets apart in logs and `/status` without revealing them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Why a secret file cannot be used. The path is the caller's context; no message holds the
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// a secret shorter than [`MIN_SECRET_LEN`]
    #[error("the secret on line {line} is {len} bytes, shorter than {MIN_SECRET_LEN}")]
    TooShort {
        /// Its line number (from 1).
        line: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// a secret longer than [`MAX_SECRET_LEN`]
    #[error("the secret on line {line} is longer than {MAX_SECRET_LEN} bytes")]
    TooLong {
        /// Its line number (from 1).
        line: usize,
    },
    /// only blank and comment lines
    #[error("no secret in it")]
    Empty,
    /// a third secret
    #[error("more than two secrets (a current and a next one)")]
    TooMany,
    /// `open(2)` failed
    #[error("cannot read it: {0}")]
    Open(io::Error),
    /// `fstat(2)` failed
    #[error("cannot stat it: {0}")]
    Stat(io::Error),
    /// a directory, device or other non-regular file
    #[error("not a regular file")]
    NotRegular,
    /// `read(2)` failed or the content is not UTF-8
    #[error("cannot read it as text: {0}")]
    Read(io::Error),
    /// larger than [`MAX_FILE_LEN`]
    #[error("larger than {MAX_FILE_LEN} bytes")]
    TooLarge,
}

/// The secrets of one agent: the current one and, during a rotation, the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSet {
    /// Used to start handshakes, and accepted.
    pub current: Secret,
    /// Accepted too.
    pub next: Option<Secret>,
}

impl SecretSet {
    /// Parses the content of a secret file; the error says what is wrong (never the secret).
    pub fn parse(text: &str) -> Result<SecretSet, SecretError> {
        let mut secrets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() < MIN_SECRET_LEN {
                return Err(SecretError::TooShort {
                    line: i + 1,
                    len: line.len(),
                });
            }
            if line.len() > MAX_SECRET_LEN {
                return Err(SecretError::TooLong { line: i + 1 });
            }
            secrets.push(Secret::new(line.as_bytes()));
        }
        let mut it = secrets.into_iter();
        let current = it.next().ok_or(SecretError::Empty)?;
        let next = it.next();
        if it.next().is_some() {
            return Err(SecretError::TooMany);
        }
        Ok(SecretSet { current, next })
    }

    /// Reads and parses `path`. The second value is a warning to log (a file others can read).
    pub fn load(path: &Path) -> Result<(SecretSet, Option<String>), SecretError> {
        let file = fs::File::open(path).map_err(SecretError::Open)?;
        let meta = file.metadata().map_err(SecretError::Stat)?;
        if !meta.is_file() {
            return Err(SecretError::NotRegular);
        }
        let mut text = String::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(SecretError::Read)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(SecretError::TooLarge);
        }
        let set = SecretSet::parse(&text)?;
        let warning = (meta.permissions().mode() & 0o004 != 0).then(|| {
            format!(
                "{} is readable by every user (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            )
        });
        Ok((set, warning))
    }

    /// Every accepted secret, the current one first.
    pub fn accepted(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(self.next.as_ref())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "first-secret-0123456789";
    const B: &str = "second-secret-0123456789";

    #[test]
    fn current_then_next_comments_and_blanks_ignored() {
        let set = SecretSet::parse(&format!("# rotation\n\n  {A}  \n{B}\n")).expect("parses");
        assert_eq!(set.current, Secret::new(A.as_bytes()));
        assert_eq!(set.next, Some(Secret::new(B.as_bytes())));
        assert_eq!(set.accepted().count(), 2);
        let one = SecretSet::parse(A).expect("parses");
        assert_eq!(one.next, None);
        assert_eq!(one.accepted().count(), 1);
    }

    #[test]
    fn bad_files_are_refused_without_echoing_the_secret() {
        for (text, want) in [
            ("", "no secret"),
            ("# only a comment\n", "no secret"),
            ("short-secret\n", "shorter than 16"),
            (&format!("{A}\n{B}\n{A}x\n"), "more than two"),
            (&"x".repeat(2000), "longer than 1024"),
        ] {
            let e = SecretSet::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("short-secret") && !e.contains(A), "{e}");
        }
    }

    #[test]
    fn key_and_fingerprint_are_distinct_derivations() {
        let s = Secret::new(A.as_bytes());
        assert_eq!(s.fingerprint().len(), 8);
        assert!(!hex(s.psk().as_bytes()).starts_with(s.fingerprint()));
        assert_ne!(s, Secret::new(B.as_bytes()));
        assert!(!format!("{s:?}").contains(A));
    }

    #[test]
    fn load_warns_about_world_readable_files_and_caps_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        fs::write(&path, format!("{A}\n")).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, warning) = SecretSet::load(&path).expect("loads");
        assert!(warning.expect("warned").contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(SecretSet::load(&path).expect("loads").1, None);
        fs::write(&path, format!("{A}\n{}", "#".repeat(5000))).expect("write");
        assert!(SecretSet::load(&path)
            .expect_err("too big")
            .to_string()
            .contains("larger"));
        assert!(SecretSet::load(&dir.path().join("missing"))
            .expect_err("missing")
            .to_string()
            .contains("cannot read"));
    }
}
