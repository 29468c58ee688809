//! Frame reassembly from a TCP byte stream, both readers: the sans-IO `FrameBuffer` and the
//! agent's `read_frame` (tokio). The input is the chunking (first byte: chunk size seed) and
//! the stream. Both must return exactly the frames of a reference reading of the stream —
//! the hello (limit 4096) first, then messages (limit 1 MiB) — and refuse an oversized
//! prefix before buffering its body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_agent::control::frame::{read_frame, FrameError};
use overlay_proto::codec::{CodecError, FrameBuffer, LEN_PREFIX, MAX_FRAME_LEN, MAX_HELLO_LEN};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Reference: the frames of `stream` and how it ends.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    TooLarge(usize, usize),
    /// Ends inside a length prefix.
    TruncatedPrefix,
    /// Ends inside a body.
    Truncated,
}

/// Small limits so that "too large" is reachable by the fuzzer; the real limits in `limits`.
fn reference(mut s: &[u8], limits: (usize, usize)) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if s.is_empty() {
            return (frames, End::Clean);
        }
        let Some((prefix, rest)) = s.split_first_chunk::<LEN_PREFIX>() else {
            return (frames, End::TruncatedPrefix);
        };
        let limit = if frames.is_empty() {
            limits.0
        } else {
            limits.1
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > limit {
            return (frames, End::TooLarge(len, limit));
        }
        if rest.len() < len {
            return (frames, End::Truncated);
        }
        frames.push(&rest[..len]);
        s = &rest[len..];
    }
}

/// An `AsyncRead` handing out the stream in the fuzzer's chunk sizes.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = self
            .sizes
            .get(self.i % self.sizes.len().max(1))
            .map_or(7, |&s| usize::from(s).max(1));
        self.i += 1;
        let n = size.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&nsizes, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(nsizes % 8).min(rest.len()));
    // Limits scaled down by the first size byte's low bit, so refusals are reachable.
    let limits = if sizes.first().is_some_and(|s| s & 1 == 1) {
        (16, 64)
    } else {
        (MAX_HELLO_LEN, MAX_FRAME_LEN)
    };
    let (want, end) = reference(stream, limits);

    // FrameBuffer.
    let mut fb = FrameBuffer::new(limits.0);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    let mut i = 0;
    let mut failed = None;
    while at < stream.len() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(7, |&s| usize::from(s).max(1));
        i += 1;
        let chunk = &stream[at..(at + size).min(stream.len())];
        at += chunk.len();
        if let Err(e) = fb.push(chunk) {
            failed = Some(e);
            break;
        }
        loop {
            match fb.next_frame() {
                Ok(Some(body)) => {
                    got.push(body.to_vec());
                    fb.set_limit(limits.1);
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_some() {
            break;
        }
        assert!(
            fb.buffered() <= limits.0.max(limits.1) + LEN_PREFIX + size,
            "buffer bounded"
        );
    }
    assert_eq!(got, want, "FrameBuffer frames");
    match (&end, failed) {
        (End::TooLarge(len, limit), Some(CodecError::FrameTooLarge(l, m))) => {
            assert_eq!((*len, *limit), (l, m))
        }
        (End::Clean, None) => assert!(fb.is_empty()),
        (End::Truncated | End::TruncatedPrefix, None) => assert!(!fb.is_empty()),
        (end, failed) => panic!("FrameBuffer ended {failed:?}, reference {end:?}"),
    }

    // The agent's read_frame.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = Chunked {
            data: stream,
            sizes,
            i: 0,
        };
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let result = loop {
            let limit = if got.is_empty() { limits.0 } else { limits.1 };
            match read_frame(&mut r, limit, &mut buf).await {
                Ok(true) => got.push(buf.clone()),
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert_eq!(got, want, "read_frame frames");
        match (&end, result) {
            (
                End::TooLarge(len, limit),
                Err(FrameError::TooLarge(CodecError::FrameTooLarge(l, m))),
            ) => {
                assert_eq!((*len, *limit), (l, m))
            }
            (End::Clean, Ok(())) => {}
            // A stream ending inside the 4-byte prefix reads as a clean end (read_exact's EOF).
            (End::TruncatedPrefix, Ok(()))
            | (End::Truncated, Err(FrameError::Truncated { .. })) => {}
            (end, result) => panic!("read_frame ended {result:?}, reference {end:?}"),
        }
    });
});
