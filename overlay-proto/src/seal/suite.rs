//! The two AEADs and the choice between them.

use ring::aead;

/// An AEAD suite; its number is the first byte after the overlay header of a sealed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Suite {
    /// AES-256-GCM: fastest where the CPU has AES and carry-less multiply instructions
    /// (ring uses AES-NI + PCLMULQDQ, or VAES + VPCLMULQDQ with AVX2).
    Aes256Gcm = 1,
    /// ChaCha20-Poly1305: constant time and fast in plain SIMD; the choice without AES
    /// instructions, where ring's AES-GCM falls back to a slow bitsliced implementation.
    ChaCha20Poly1305 = 2,
}

impl Suite {
    /// The suite for this CPU: AES-256-GCM if it has AES and carry-less multiply
    /// instructions (x86-64: `aes` and `pclmulqdq`; aarch64: `aes` and `pmull`),
    /// ChaCha20-Poly1305 otherwise. (Measured: see the module `seal` and docs/measurements.md, "Choosing the AEAD library".)
    pub fn detect() -> Suite {
        if hardware_aes() {
            Suite::Aes256Gcm
        } else {
            Suite::ChaCha20Poly1305
        }
    }

    /// The suite a pair of peers uses, from each one's preference ([`Suite::detect`] or one
    /// forced by configuration): AES-256-GCM only if both prefer it, as AES without hardware
    /// support is several times slower than ChaCha20-Poly1305 for the peer that lacks it.
    pub fn negotiate(self, other: Suite) -> Suite {
        if self == Suite::Aes256Gcm && other == Suite::Aes256Gcm {
            Suite::Aes256Gcm
        } else {
            Suite::ChaCha20Poly1305
        }
    }

    /// The suite named `name` (`aes-256-gcm` or `chacha20-poly1305`), for forcing one.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "aes-256-gcm" => Some(Suite::Aes256Gcm),
            "chacha20-poly1305" => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The suite's name as [`Suite::from_name`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    pub(crate) fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn hardware_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn hardware_aes() -> bool {
    false
}
