//! [`FrameBuffer`]: the one reader of length-prefixed frames, for every control connection.
//!
//! The agent moves bytes from the socket into it (plain connections) or the plaintext of
//! each opened Noise record ([`crate::noise::transport`]); the fuzz target `frames` feeds it
//! the same way. It never reads a socket itself.

use super::{frame_len, CodecError, LEN_PREFIX};
use bytes::{Buf, Bytes, BytesMut};

/// Capacity kept after a large frame has been taken; more is released.
pub const RETAINED_CAPACITY: usize = 64 << 10;

/// Reassembles frames from a byte stream, sans-IO.
///
/// Feed it bytes as they arrive with [`push`](Self::push), then take every complete frame body
/// with [`next_frame`](Self::next_frame) until it returns `Ok(None)`. A frame whose prefix
/// declares more than the current limit is refused as soon as its 4 prefix bytes are in,
/// before any of its body is buffered and before anything is allocated for it. So as long as
/// frames are taken after each push, the buffer holds at most one partial frame within the
/// limit plus the last chunk pushed; once a large frame has been taken, the buffer gives its
/// memory back (it keeps at most [`RETAINED_CAPACITY`]).
///
/// Start with the limit [`MAX_HELLO_LEN`](super::MAX_HELLO_LEN) and raise it to
/// [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN) with [`set_limit`](Self::set_limit) once the hello
/// has been taken. After an error the stream is out of sync: every later call returns the
/// same error, and the connection should be closed.
#[derive(Debug, Clone)]
pub struct FrameBuffer {
    buf: BytesMut,
    limit: usize,
    failed: Option<CodecError>,
}

impl FrameBuffer {
    /// An empty buffer refusing frame bodies over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameBuffer {
            buf: BytesMut::new(),
            limit,
            failed: None,
        }
    }

    /// The current body length limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the body length limit for the frames not yet taken.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Number of bytes buffered and not yet returned in a frame (nonzero at the end of the
    /// stream means the peer closed in the middle of a frame).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True when no byte of an incomplete frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Memory held for buffered bytes (what [`RETAINED_CAPACITY`] bounds between frames).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends bytes received from the stream.
    ///
    /// Fails if the frame being received declares a length over the limit; the offending bytes
    /// are not kept.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // The prefix of the frame in progress, checked before its body is buffered.
        let have = self.buf.len().min(LEN_PREFIX);
        let want = LEN_PREFIX - have;
        if have < LEN_PREFIX && bytes.len() >= want {
            let mut prefix = [0u8; LEN_PREFIX];
            prefix[..have].copy_from_slice(&self.buf[..have]);
            prefix[have..].copy_from_slice(&bytes[..want]);
            if let Err(e) = frame_len(prefix, self.limit) {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        self.release();
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Takes the next complete frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(prefix) = self.buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = match frame_len(*prefix, self.limit) {
            Ok(len) => len,
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        if self.buf.len() - LEN_PREFIX < len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(LEN_PREFIX + len);
        frame.advance(LEN_PREFIX);
        Ok(Some(frame.freeze()))
    }

    /// Gives back the memory a large frame left behind, once little is buffered.
    fn release(&mut self) {
        if self.buf.capacity() > RETAINED_CAPACITY && self.buf.len() <= RETAINED_CAPACITY / 2 {
            let mut fresh = BytesMut::with_capacity(self.buf.len());
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MAX_FRAME_LEN, MAX_HELLO_LEN};

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_come_whole_and_in_order() {
        let mut fb = FrameBuffer::new(10);
        fb.push(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0, 0, 0, 0, 1])
            .expect("within the limit");
        assert_eq!(fb.next_frame().expect("ok").as_deref(), Some(&b"hi"[..]));
        assert_eq!(fb.next_frame().expect("ok").as_deref(), Some(&b""[..]));
        assert_eq!(fb.next_frame(), Ok(None));
        assert_eq!(fb.buffered(), 4, "the prefix of the third frame waits");
        fb.push(b"!").expect("body");
        assert_eq!(fb.next_frame().expect("ok").as_deref(), Some(&b"!"[..]));
        assert!(fb.is_empty());
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_body_is_buffered() {
        let mut fb = FrameBuffer::new(4096);
        fb.push(&[0x00, 0x00]).expect("half a prefix");
        let refused = CodecError::FrameTooLarge(4097, 4096);
        let mut rest = vec![0x10, 0x01];
        rest.extend(std::iter::repeat_n(0, 4000));
        assert_eq!(fb.push(&rest), Err(refused.clone()));
        assert_eq!(fb.buffered(), 2, "nothing of the refused frame is kept");
        assert!(fb.capacity() < 4000, "nothing allocated for it");
        assert_eq!(fb.push(&frame(b"x")), Err(refused.clone()), "sticky");
        assert_eq!(fb.next_frame(), Err(refused));
    }

    #[test]
    fn a_claimed_length_is_not_preallocated() {
        // 16 MiB announced, 3 bytes sent: the buffer stays small.
        let mut fb = FrameBuffer::new(16 << 20);
        fb.push(&[1, 0, 0, 0, 1, 2, 3]).expect("within the limit");
        assert_eq!(fb.next_frame(), Ok(None));
        assert!(fb.capacity() < 1 << 16, "capacity {}", fb.capacity());
    }

    #[test]
    fn the_memory_of_a_large_frame_is_given_back() {
        let mut fb = FrameBuffer::new(MAX_FRAME_LEN);
        let big = frame(&vec![7; MAX_FRAME_LEN]);
        for chunk in big.chunks(RETAINED_CAPACITY) {
            fb.push(chunk).expect("within the limit");
        }
        let body = fb.next_frame().expect("ok").expect("whole");
        assert_eq!(body.len(), MAX_FRAME_LEN);
        drop(body);
        for _ in 0..3 {
            fb.push(&frame(b"small")).expect("within the limit");
            assert_eq!(fb.next_frame().expect("ok").as_deref(), Some(&b"small"[..]));
            assert!(
                fb.capacity() <= RETAINED_CAPACITY,
                "capacity {} kept after a large frame",
                fb.capacity()
            );
        }
    }

    #[test]
    fn the_limit_applies_to_frames_not_yet_taken() {
        let mut stream = frame(b"hello");
        stream.extend(frame(&vec![1; MAX_HELLO_LEN + 1]));
        let mut fb = FrameBuffer::new(MAX_HELLO_LEN);
        fb.push(&stream)
            .expect("the first prefix is within the hello limit");
        assert_eq!(fb.next_frame().expect("ok").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            fb.clone().next_frame(),
            Err(CodecError::FrameTooLarge(MAX_HELLO_LEN + 1, MAX_HELLO_LEN))
        );
        fb.set_limit(MAX_FRAME_LEN);
        assert_eq!(
            fb.next_frame().expect("ok").map(|b| b.len()),
            Some(MAX_HELLO_LEN + 1)
        );
    }
}
