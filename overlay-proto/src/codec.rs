//! Framing of control messages on the TCP side of the listen port. (Being written.)

use crate::message::{Hello, Message};

/// Largest accepted frame body.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// Largest accepted hello frame body (before the peer is known).
pub const MAX_HELLO_LEN: usize = 4096;
/// Length of the frame length prefix.
pub const LEN_PREFIX: usize = 4;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// frame length over the limit
    #[error("frame of {0} bytes exceeds the limit of {1} bytes")]
    FrameTooLarge(usize, usize),
    /// other
    #[error("{0}")]
    Malformed(String),
}

/// Reads a frame body length from its prefix, refusing lengths over `limit`.
pub fn frame_len(prefix: [u8; LEN_PREFIX], limit: usize) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(CodecError::FrameTooLarge(len, limit));
    }
    Ok(len)
}

/// Appends the frame (prefix and body) of `hello` to `out`.
pub fn encode_hello(_hello: &Hello, _out: &mut Vec<u8>) {
    unimplemented!("being written")
}

/// Decodes a hello frame body.
pub fn decode_hello(_body: &[u8]) -> Result<Hello, CodecError> {
    unimplemented!("being written")
}

/// Appends the frame (prefix and body) of `msg` to `out`.
pub fn encode_message(_msg: &Message, _out: &mut Vec<u8>) -> Result<(), CodecError> {
    unimplemented!("being written")
}

/// Decodes a message frame body; `Ok(None)` for a message type this build does not know.
pub fn decode_message(_body: &[u8]) -> Result<Option<Message>, CodecError> {
    unimplemented!("being written")
}
