//! The Noise handshake that opens an authenticated control connection, and the encrypted
//! records that carry its frames, as sans-IO state machines.
//!
//! With a cluster secret, every control connection starts with the Noise handshake
//! [`NOISE_PATTERN`] (`Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`), the pre-shared key being a
//! SHA-256 derivation of the secret ([`Psk`]). The I/O shell (the agent, or the simulation in
//! the tests) moves bytes: it feeds what it reads to a [`Handshake`], writes what
//! [`Handshake::poll_output`] gives it, and once that yields the [`Session`], carries frames
//! through the session's [`Sender`] and [`Receiver`]. Nothing here reads a socket or a clock:
//! timeouts, rate limits and refusal counting belong to the shell. The one thing taken from
//! the operating system is randomness: `snow` draws each handshake's ephemeral key (and
//! [`Keypair::generate`] a static one) from the OS random source; nothing else depends on
//! it, so runs with the same inputs behave the same.
//!
//! # Wire
//! Handshake messages and records are both `[u16 big-endian length][bytes]`, as the Noise
//! specification suggests. Handshake: initiator → `e` (+ tag, 48 bytes), responder →
//! `e, ee, s, es` (96 bytes), initiator → `s, se` (64 bytes); each at most
//! [`MAX_HANDSHAKE_MSG`], refused from its length prefix. The prologue [`PROLOGUE`] is bound
//! into the handshake hash. Then each direction carries records of at most
//! [`MAX_RECORD`](transport::MAX_RECORD) bytes of ciphertext, nonces counting from 0; their
//! plaintexts, concatenated, are the usual length-prefixed control frames (the hello first)
//! read by the one [`FrameBuffer`](crate::codec::FrameBuffer). A frame larger than one record
//! spans several. The frame size caps apply to the plaintext, checked from its length prefix
//! before the frame body is buffered, so a peer can make the reader hold at most one frame
//! under the cap and one record.
//!
//! Without a secret, [`Sender::plain`] and [`Receiver::plain`] pass frames through unchanged
//! (the wire of an agent without a secret is exactly the plain framing of [`crate::codec`]).
//!
//! # Layout
//! - [`psk`]: the pre-shared key derived from a cluster secret.
//! - [`handshake`]: the initiator and responder state machines.
//! - [`transport`]: sealing frames into records, opening records into frames.

pub mod handshake;
pub mod psk;
pub mod transport;

pub use handshake::{Handshake, HandshakeError, HandshakeOutput, Session};
pub use psk::Psk;
pub use transport::{Receiver, Sender, TransportError};

use std::fmt;

/// The Noise protocol of control connections.
pub const NOISE_PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake hash: both sides must speak this protocol.
pub const PROLOGUE: &[u8] = b"overlay control v1";
/// Largest handshake message accepted (after its 2-byte length).
pub const MAX_HANDSHAKE_MSG: usize = 1024;
/// Length of the big-endian length in front of every handshake message and record.
pub const MSG_LEN_PREFIX: usize = 2;

/// An X25519 static key pair: the identity a peer proves in the handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct Keypair {
    private: [u8; 32],
    public: [u8; 32],
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair(public {:02x?})", &self.public[..4])
    }
}

impl Keypair {
    /// A fresh random key pair (from the operating system's random source).
    ///
    /// # Panics
    /// If the operating system gives no random bytes.
    pub fn generate() -> Keypair {
        let kp = snow::Builder::new(params())
            .generate_keypair()
            .expect("the default resolver generates X25519 keys from the OS random source");
        let mut pair = Keypair {
            private: [0; 32],
            public: [0; 32],
        };
        pair.private.copy_from_slice(&kp.private);
        pair.public.copy_from_slice(&kp.public);
        pair
    }

    /// A key pair from its parts (as persisted); the public key is taken as given.
    pub fn from_parts(private: [u8; 32], public: [u8; 32]) -> Keypair {
        Keypair { private, public }
    }

    /// The private key.
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

/// The parsed [`NOISE_PATTERN`].
fn params() -> snow::params::NoiseParams {
    // A constant that parses (checked by the tests): a failure would be a build defect.
    NOISE_PATTERN
        .parse()
        .expect("NOISE_PATTERN is a valid Noise protocol name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_parses_and_key_pairs_differ() {
        let _ = params();
        let (a, b) = (Keypair::generate(), Keypair::generate());
        assert_ne!(a.public(), b.public());
        assert!(!format!("{a:?}").contains(&format!("{:02x?}", a.private())));
        let c = Keypair::from_parts(*a.private(), *a.public());
        assert_eq!(a, c);
    }
}

#[cfg(test)]
mod pair_tests;
