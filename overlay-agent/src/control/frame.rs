//! Reading frames from a stream: the async side only moves bytes from the socket into the
//! connection's sans-IO [`Receiver`], which reassembles them in the one
//! [`FrameBuffer`](overlay_proto::codec::FrameBuffer) (opening Noise records first when the
//! connection is authenticated) and checks each frame's size cap from its prefix.

use bytes::Bytes;
use overlay_proto::noise::{Receiver, TransportError};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from the socket at once.
pub const READ_CHUNK: usize = 32 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are out of line: a frame over its cap, a record that does not authenticate.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The stream ended inside a frame or record.
    #[error("connection closed inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// Bytes of the unfinished frame or record received.
        buffered: usize,
    },
}

/// A stream's reading side: the socket half and the sans-IO receiver it feeds.
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The socket (or its read half).
    pub stream: R,
    /// The frames' state.
    pub receiver: Receiver,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads `stream` into `receiver`.
    pub fn new(stream: R, receiver: Receiver) -> Self {
        FrameReader {
            stream,
            receiver,
            chunk: Vec::new(),
        }
    }

    /// The next frame's body; `Ok(None)` when the stream ended cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(body) = self.receiver.next_frame()? {
                return Ok(Some(body));
            }
            if self.chunk.is_empty() {
                self.chunk = vec![0; READ_CHUNK];
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                if self.receiver.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    buffered: self.receiver.buffered(),
                });
            }
            self.receiver.push(&self.chunk[..n])?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::codec::CodecError;

    async fn read_all(bytes: &[u8], limit: usize) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut r = FrameReader::new(bytes, Receiver::plain(limit));
        let mut got = Vec::new();
        loop {
            match r.next().await {
                Ok(Some(body)) => got.push(body.to_vec()),
                Ok(None) => return (got, Ok(())),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_in_order_until_a_clean_end() {
        let bytes = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0, 0, 0, 0, 1, b'!'];
        let (got, end) = read_all(&bytes, 10).await;
        assert_eq!(got, [&b"hi"[..], b"", b"!"]);
        assert!(end.is_ok(), "{end:?}");
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let (got, end) = read_all(&[0, 0, 0, 1, 7, 0xff, 0xff, 0xff, 0xff], 4096).await;
        assert_eq!(got, [[7]]);
        assert!(
            matches!(
                end,
                Err(FrameError::Transport(TransportError::Frame(
                    CodecError::FrameTooLarge(0xffff_ffff, 4096)
                )))
            ),
            "{end:?}"
        );
        let (_, end) = read_all(&[0, 0, 0, 9, 1, 2], 4096).await;
        assert!(
            matches!(end, Err(FrameError::Truncated { buffered: 6 })),
            "{end:?}"
        );
        let (_, end) = read_all(&[0, 0], 4096).await;
        assert!(
            matches!(end, Err(FrameError::Truncated { buffered: 2 })),
            "{end:?}"
        );
    }
}
