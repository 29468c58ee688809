//! The two directions of a control connection after its handshake: frames sealed into
//! records ([`Sender`]) and records opened into frames ([`Receiver`]), or passed through as
//! they are when the connection is not authenticated.
//!
//! Record: `[u16 big-endian length][ciphertext and tag]`, at most [`MAX_RECORD`] bytes after
//! the length; the nonce of each direction counts records from 0.

use super::MSG_LEN_PREFIX;
use crate::codec::{CodecError, FrameBuffer};
use bytes::{Bytes, BytesMut};
use snow::StatelessTransportState;
use std::sync::Arc;

/// Largest record (ciphertext and tag), the Noise message limit.
pub const MAX_RECORD: usize = 65535;
/// The AEAD tag of every record.
pub const TAG_LEN: usize = 16;
/// Largest plaintext of one record.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;

/// Why frames could not be sealed or opened; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The plaintext frames are out of line (e.g. a frame over the size cap).
    #[error(transparent)]
    Frame(#[from] CodecError),
    /// A record too short to hold its tag.
    #[error("encrypted record {nonce} of {len} bytes is shorter than its {TAG_LEN}-byte tag")]
    RecordTooShort {
        /// The record's nonce (its index in the stream).
        nonce: u64,
        /// Its length.
        len: usize,
    },
    /// A record that does not authenticate under the session key.
    #[error("encrypted record {nonce} of {len} bytes does not authenticate")]
    Unauthentic {
        /// The record's nonce (its index in the stream).
        nonce: u64,
        /// Its length.
        len: usize,
    },
    /// Sealing failed (only when the nonces of the session ran out).
    #[error("cannot seal record {nonce}: {error}")]
    Seal {
        /// The record's nonce.
        nonce: u64,
        /// What the cipher said.
        error: String,
    },
}

/// The sending direction: frames pass through, or are sealed into records.
#[derive(Debug)]
pub struct Sender {
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
}

impl Sender {
    /// Frames go out as they are (no secret).
    pub fn plain() -> Sender {
        Sender {
            cipher: None,
            nonce: 0,
        }
    }

    pub(super) fn sealed(cipher: Arc<StatelessTransportState>) -> Sender {
        Sender {
            cipher: Some(cipher),
            nonce: 0,
        }
    }

    /// Whether frames are sealed.
    pub fn is_sealed(&self) -> bool {
        self.cipher.is_some()
    }

    /// Appends the wire bytes of `frame` (an encoded frame, prefix included) to `out`: the
    /// frame itself, or the records sealing it. On error `out` is left as it was.
    pub fn seal(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), TransportError> {
        let Some(cipher) = &self.cipher else {
            out.extend_from_slice(frame);
            return Ok(());
        };
        let before = out.len();
        for chunk in frame.chunks(MAX_RECORD_PLAINTEXT) {
            let start = out.len();
            out.resize(start + MSG_LEN_PREFIX + chunk.len() + TAG_LEN, 0);
            let sealed =
                cipher.write_message(self.nonce, chunk, &mut out[start + MSG_LEN_PREFIX..]);
            let n = match sealed {
                Ok(n) => n,
                Err(e) => {
                    out.truncate(before);
                    return Err(TransportError::Seal {
                        nonce: self.nonce,
                        error: e.to_string(),
                    });
                }
            };
            self.nonce += 1;
            // n <= MAX_RECORD by the chunk size.
            out[start..start + MSG_LEN_PREFIX].copy_from_slice(&(n as u16).to_be_bytes());
            out.truncate(start + MSG_LEN_PREFIX + n);
        }
        Ok(())
    }
}

/// The receiving direction: wire bytes in, frame bodies out, through one [`FrameBuffer`]
/// (records opened first when the connection is authenticated).
///
/// Push what the stream gives with [`push`](Self::push), then take frames with
/// [`next_frame`](Self::next_frame) until `Ok(None)`. Memory stays bounded by one partial
/// record, one partial frame under the limit, and the last chunk pushed.
#[derive(Debug)]
pub struct Receiver {
    opener: Option<Opener>,
    frames: FrameBuffer,
}

/// Opening records: the cipher, the next nonce and the bytes of a partial record.
#[derive(Debug)]
struct Opener {
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
    /// Body length of the record in progress, once its length prefix is in.
    body_len: Option<usize>,
    /// Bytes of the length prefix, then of the body, of the record in progress.
    record: BytesMut,
    /// Plaintext of the record being opened.
    plain: Vec<u8>,
    failed: Option<TransportError>,
}

impl Receiver {
    /// Frames come as they are (no secret), with bodies of at most `limit` bytes.
    pub fn plain(limit: usize) -> Receiver {
        Receiver {
            opener: None,
            frames: FrameBuffer::new(limit),
        }
    }

    pub(super) fn sealed(cipher: Arc<StatelessTransportState>, limit: usize) -> Receiver {
        Receiver {
            opener: Some(Opener {
                cipher,
                nonce: 0,
                body_len: None,
                record: BytesMut::new(),
                plain: Vec::new(),
                failed: None,
            }),
            frames: FrameBuffer::new(limit),
        }
    }

    /// Whether records are opened.
    pub fn is_sealed(&self) -> bool {
        self.opener.is_some()
    }

    /// Changes the frame body limit (see [`FrameBuffer::set_limit`]).
    pub fn set_limit(&mut self, limit: usize) {
        self.frames.set_limit(limit);
    }

    /// True when no byte of an incomplete record or frame is buffered (so an end of the
    /// stream here is clean).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self
                .opener
                .as_ref()
                .is_none_or(|o| o.record.is_empty() && o.body_len.is_none())
    }

    /// Bytes of unfinished records and frames buffered (nonzero at the end of the stream
    /// means the peer closed in the middle of one).
    pub fn buffered(&self) -> usize {
        let record = self.opener.as_ref().map_or(0, |o| {
            o.record.len()
                + if o.body_len.is_some() {
                    MSG_LEN_PREFIX
                } else {
                    0
                }
        });
        self.frames.buffered() + record
    }

    /// Appends bytes received from the stream, opening every complete record.
    pub fn push(&mut self, wire: &[u8]) -> Result<(), TransportError> {
        let Some(opener) = &mut self.opener else {
            return Ok(self.frames.push(wire)?);
        };
        opener.push(wire, &mut self.frames)
    }

    /// Takes the next complete frame body, `Ok(None)` if more bytes are needed. After an
    /// error of [`push`](Self::push), returns that error.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, TransportError> {
        if let Some(e) = self.opener.as_ref().and_then(|o| o.failed.as_ref()) {
            return Err(e.clone());
        }
        Ok(self.frames.next_frame()?)
    }
}

impl Opener {
    fn push(&mut self, mut wire: &[u8], frames: &mut FrameBuffer) -> Result<(), TransportError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            // The length of the record in progress, then its body: never more than one record.
            let Some(len) = self.body_len else {
                let take = (MSG_LEN_PREFIX - self.record.len()).min(wire.len());
                self.record.extend_from_slice(&wire[..take]);
                wire = &wire[take..];
                let Some(prefix) = self.record.first_chunk::<MSG_LEN_PREFIX>() else {
                    return Ok(());
                };
                self.body_len = Some(usize::from(u16::from_be_bytes(*prefix)));
                self.record.clear();
                continue;
            };
            let take = (len - self.record.len()).min(wire.len());
            self.record.extend_from_slice(&wire[..take]);
            wire = &wire[take..];
            if self.record.len() < len {
                return Ok(());
            }
            self.body_len = None;
            if let Err(e) = self.open(frames) {
                self.failed = Some(e.clone());
                return Err(e);
            }
            if wire.is_empty() {
                return Ok(());
            }
        }
    }

    /// Opens the complete record buffered and pushes its plaintext.
    fn open(&mut self, frames: &mut FrameBuffer) -> Result<(), TransportError> {
        let len = self.record.len();
        if len < TAG_LEN {
            return Err(TransportError::RecordTooShort {
                nonce: self.nonce,
                len,
            });
        }
        self.plain.resize(len, 0);
        let opened = self
            .cipher
            .read_message(self.nonce, &self.record, &mut self.plain);
        let Ok(n) = opened else {
            return Err(TransportError::Unauthentic {
                nonce: self.nonce,
                len,
            });
        };
        self.nonce += 1;
        self.record.clear();
        frames.push(&self.plain[..n])?;
        Ok(())
    }
}
