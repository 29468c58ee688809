//! The properties of the control connection's byte stream, shared by the fuzz targets
//! `frames` and `noise` (and so by the replay of their corpora). Both drive the sans-IO code
//! the agent ships: [`Receiver`] (the one [`FrameBuffer`](overlay_proto::codec::FrameBuffer),
//! behind Noise records or not) and [`Handshake`].

use overlay_proto::codec::{CodecError, LEN_PREFIX, MAX_FRAME_LEN, MAX_HELLO_LEN};
use overlay_proto::noise::transport::MAX_RECORD;
use overlay_proto::noise::{
    Handshake, HandshakeOutput, Keypair, Psk, Receiver, Session, TransportError, MAX_HANDSHAKE_MSG,
    MSG_LEN_PREFIX,
};
use std::sync::OnceLock;

/// How a reference reading of a stream ends.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    TooLarge(usize, usize),
    /// Ends inside a length prefix or a body.
    Truncated,
}

/// Reference: the frames of `s` (the first under `limits.0`, the others under `limits.1`)
/// and how it ends.
fn reference(mut s: &[u8], limits: (usize, usize)) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if s.is_empty() {
            return (frames, End::Clean);
        }
        let Some((prefix, rest)) = s.split_first_chunk::<LEN_PREFIX>() else {
            return (frames, End::Truncated);
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

/// Feeds `wire` to `rx` in the fuzzer's chunk sizes (cycled), taking frames after each
/// chunk as the agent does; the frames and the first error. `slack` is what the receiver
/// may hold beyond one frame under the limit and one chunk (a partial record).
fn read(
    rx: &mut Receiver,
    wire: &[u8],
    sizes: &[u8],
    limits: (usize, usize),
    slack: usize,
) -> (Vec<Vec<u8>>, Option<TransportError>) {
    let mut got = Vec::new();
    for chunk in chunks(wire, sizes) {
        if let Err(e) = rx.push(chunk) {
            return (got, Some(e));
        }
        loop {
            match rx.next_frame() {
                Ok(Some(body)) => {
                    got.push(body.to_vec());
                    rx.set_limit(limits.1);
                }
                Ok(None) => break,
                Err(e) => return (got, Some(e)),
            }
        }
        assert!(
            rx.buffered() <= limits.0.max(limits.1) + LEN_PREFIX + chunk.len() + slack,
            "receiver bounded"
        );
    }
    (got, None)
}

/// `wire` cut in the sizes of `sizes` (cycled; 7 when there are none).
fn chunks<'a>(mut wire: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if wire.is_empty() {
            return None;
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(7, |&s| usize::from(s).max(1));
        i += 1;
        let (chunk, rest) = wire.split_at(size.min(wire.len()));
        wire = rest;
        Some(chunk)
    })
}

/// Checks a reading against the reference.
fn check(
    what: &str,
    (got, failed): (Vec<Vec<u8>>, Option<TransportError>),
    rx: &Receiver,
    (want, end): &(Vec<&[u8]>, End),
) {
    assert_eq!(&got, want, "{what}: frames");
    match (end, failed) {
        (
            End::TooLarge(len, limit),
            Some(TransportError::Frame(CodecError::FrameTooLarge(l, m))),
        ) => {
            assert_eq!((*len, *limit), (l, m), "{what}")
        }
        (End::Clean, None) => assert!(rx.is_empty(), "{what}: clean end"),
        (End::Truncated, None) => assert!(!rx.is_empty(), "{what}: ends inside a frame"),
        (end, failed) => panic!("{what}: ended {failed:?}, reference {end:?}"),
    }
}

/// A fresh pair of established sessions (initiator, responder).
fn sessions() -> (Session, Session) {
    let keys = keys();
    let psk = &keys.1[0];
    let mut i = Handshake::initiator(keys.0.private(), psk, MAX_HELLO_LEN).expect("builds");
    let mut r = Handshake::responder(keys.0.private(), [psk.clone()], MAX_HELLO_LEN);
    let (mut si, mut sr) = (None, None);
    for _ in 0..3 {
        deliver(&mut i, &mut r, &mut si);
        deliver(&mut r, &mut i, &mut sr);
    }
    (si.expect("initiator done"), sr.expect("responder done"))
}

/// Hands what `from` has to send to `to`; its session, once established, to `done`.
fn deliver(from: &mut Handshake, to: &mut Handshake, done: &mut Option<Session>) {
    while let Some(out) = from.poll_output() {
        match out {
            HandshakeOutput::Transmit(b) => to.handle_input(&b).expect("same secret"),
            HandshakeOutput::Established(s) => *done = Some(*s),
        }
    }
}

/// Frame reassembly, the one reader of every control connection. Input: a count byte (its
/// low 3 bits), that many chunk sizes (the first one's low bit scales the limits down so that
/// refusals are reachable), then the stream. Read plain, and (when the count byte's high bit
/// is set: a handshake per input is slow) sealed into Noise records by a real session and
/// opened by its peer, it must give exactly the frames of a reference reading (the hello
/// under the hello limit, then messages), end the same way, refuse an oversized prefix
/// before buffering its body, and stay bounded.
pub fn frames(data: &[u8]) {
    let Some((&nsizes, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(nsizes % 8).min(rest.len()));
    let limits = if sizes.first().is_some_and(|s| s & 1 == 1) {
        (16, 64)
    } else {
        (MAX_HELLO_LEN, MAX_FRAME_LEN)
    };
    let want = reference(stream, limits);

    let mut plain = Receiver::plain(limits.0);
    let got = read(&mut plain, stream, sizes, limits, 0);
    check("plain", got, &plain, &want);
    if nsizes & 0x80 == 0 {
        return;
    }

    let (mut tx, mut rx) = sessions();
    let mut wire = Vec::new();
    tx.sender.seal(stream, &mut wire).expect("seals");
    rx.receiver.set_limit(limits.0);
    let got = read(
        &mut rx.receiver,
        &wire,
        sizes,
        limits,
        MSG_LEN_PREFIX + MAX_RECORD,
    );
    check("sealed", got, &rx.receiver, &want);
}

/// One identity and a current + next secret, made once (key generation is slow).
fn keys() -> &'static (Keypair, [Psk; 2]) {
    static KEYS: OnceLock<(Keypair, [Psk; 2])> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            Keypair::generate(),
            [
                Psk::derive(b"current-secret-of-the-cluster"),
                Psk::derive(b"next-secret-of-the-cluster"),
            ],
        )
    })
}

/// Feeds `data` to `hs` whole, or byte by byte; whether it established a session. It may
/// never buffer more than one handshake message.
fn attack(mut hs: Handshake, data: &[u8], bytewise: bool) -> bool {
    let pieces: Box<dyn Iterator<Item = &[u8]>> = if bytewise {
        Box::new(data.chunks(1))
    } else {
        Box::new(std::iter::once(data))
    };
    for piece in pieces {
        let fed = hs.handle_input(piece);
        assert!(
            hs.buffered() <= MSG_LEN_PREFIX + MAX_HANDSHAKE_MSG,
            "bounded"
        );
        while let Some(out) = hs.poll_output() {
            if matches!(out, HandshakeOutput::Established(_)) {
                return true;
            }
        }
        if fed.is_err() {
            return false;
        }
    }
    false
}

/// The Noise handshake fed an attacker's byte stream, both sides: the responder reads the
/// fuzzer's first and third messages, the initiator its answer. Without the secret, neither
/// side may ever complete a session, and no input may panic or make a side buffer more than
/// a handshake message.
pub fn noise(data: &[u8]) {
    let (keypair, psks) = keys();
    for bytewise in [false, true] {
        let responder =
            Handshake::responder(keypair.private(), psks.iter().cloned(), MAX_HELLO_LEN);
        assert!(
            !attack(responder, data, bytewise),
            "a responder completed a handshake with someone who does not hold the secret"
        );
        let initiator =
            Handshake::initiator(keypair.private(), &psks[0], MAX_HELLO_LEN).expect("builds");
        assert!(
            !attack(initiator, data, bytewise),
            "an initiator completed a handshake with someone who does not hold the secret"
        );
    }
}
