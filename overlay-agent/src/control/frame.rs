//! Reading one length-prefixed control frame (see [`overlay_proto::codec`]) from a stream.
//!
//! The length is checked against the caller's cap from the 4-byte prefix alone, and the body
//! is read incrementally: a peer announcing a large frame and sending nothing costs nothing.

use overlay_proto::codec::{self, CodecError, LEN_PREFIX};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The prefix announces more than the cap.
    #[error(transparent)]
    TooLarge(#[from] CodecError),
    /// The stream ended inside a frame body.
    #[error("connection closed inside a frame ({got} of {len} bytes)")]
    Truncated {
        /// Announced body length.
        len: usize,
        /// Bytes received.
        got: usize,
    },
    /// An encrypted record does not authenticate (see [`super::noise`]).
    #[error("an encrypted record does not authenticate")]
    Unauthentic,
}

/// Largest buffer kept between frames; a larger one (after a big frame) is released.
const KEEP_CAPACITY: usize = 1 << 20;

/// Reads the next frame's body into `buf` (cleared first). `Ok(false)` when the stream ended
/// cleanly before a new frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
    buf.clear();
    let mut prefix = [0u8; LEN_PREFIX];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let len = codec::frame_len(prefix, limit)?;
    let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(FrameError::Truncated { len, got });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_in_order() {
        let bytes = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0, 0, 0, 0, 1, b'!'];
        let mut r = &bytes[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, 10, &mut buf).await.expect("frame"));
        assert_eq!(buf, b"hi");
        assert!(read_frame(&mut r, 10, &mut buf).await.expect("empty frame"));
        assert!(buf.is_empty());
        assert!(read_frame(&mut r, 10, &mut buf).await.expect("frame"));
        assert_eq!(buf, b"!");
        assert!(!read_frame(&mut r, 10, &mut buf).await.expect("clean end"));
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut buf = Vec::new();
        let mut r = &[0xff, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame(&mut r, 4096, &mut buf).await,
            Err(FrameError::TooLarge(_))
        ));
        assert!(
            buf.capacity() < 4096,
            "nothing allocated for the claimed length"
        );
        let mut r = &[0, 0, 0, 9, 1, 2][..];
        assert!(matches!(
            read_frame(&mut r, 4096, &mut buf).await,
            Err(FrameError::Truncated { len: 9, got: 2 })
        ));
    }

    #[tokio::test]
    async fn a_claimed_length_is_not_preallocated() {
        // 16 MiB announced, 3 bytes sent: the buffer stays small.
        let mut r = &[1, 0, 0, 0, 1, 2, 3][..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, 16 << 20, &mut buf).await.is_err());
        assert!(buf.capacity() < 1 << 16, "capacity {}", buf.capacity());
    }
}
