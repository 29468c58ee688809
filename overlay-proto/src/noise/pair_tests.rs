//! Both sides of the handshake against each other in memory, then frames across the session.

use super::*;
use crate::codec::{CodecError, LEN_PREFIX};
use transport::{MAX_RECORD_PLAINTEXT, TAG_LEN};

const OLD: &[u8] = b"old-cluster-secret-0123";
const NEW: &[u8] = b"new-cluster-secret-4567";
const LIMIT: usize = 1 << 20;

/// What one side ended with.
#[derive(Debug)]
enum End {
    Session(Box<Session>),
    Refused(HandshakeError),
    /// Waiting for bytes the other side will never send (it was refused).
    Waiting,
}

/// Runs an initiator holding `init` against a responder accepting `accepted`, moving bytes
/// in chunks of `chunk`; then `after`, bytes the initiator sends right behind its last
/// message (its first records).
fn run(init: &[u8], accepted: &[&[u8]], chunk: usize) -> (End, End, Keypair, Keypair) {
    let (ki, kr) = (Keypair::generate(), Keypair::generate());
    let mut i = Handshake::initiator(ki.private(), &Psk::derive(init), LIMIT).expect("builds");
    let mut r = Handshake::responder(kr.private(), accepted.iter().map(|s| Psk::derive(s)), LIMIT);
    let (mut end_i, mut end_r) = (End::Waiting, End::Waiting);
    for _ in 0..4 {
        pump(&mut i, &mut r, &mut end_i, &mut end_r, chunk);
        pump(&mut r, &mut i, &mut end_r, &mut end_i, chunk);
    }
    (end_i, end_r, ki, kr)
}

/// Delivers what `side` has to send to `peer`, in chunks of `chunk`.
fn pump(
    side: &mut Handshake,
    peer: &mut Handshake,
    end: &mut End,
    peer_end: &mut End,
    chunk: usize,
) {
    while let Some(out) = side.poll_output() {
        match out {
            HandshakeOutput::Transmit(bytes) => {
                for piece in bytes.chunks(chunk) {
                    if !matches!(peer_end, End::Waiting) {
                        break;
                    }
                    if let Err(e) = peer.handle_input(piece) {
                        *peer_end = End::Refused(e);
                    }
                }
            }
            HandshakeOutput::Established(s) => *end = End::Session(s),
        }
    }
}

fn sessions(init: &[u8], accepted: &[&[u8]]) -> (Session, Session) {
    match run(init, accepted, 1000) {
        (End::Session(i), End::Session(r), ki, kr) => {
            assert_eq!(&i.remote_static, kr.public());
            assert_eq!(&r.remote_static, ki.public());
            (*i, *r)
        }
        other => panic!("no sessions: {other:?}"),
    }
}

/// The next output of `hs`, which must be bytes to send.
fn transmit(hs: &mut Handshake, what: &str) -> Vec<u8> {
    match hs.poll_output() {
        Some(HandshakeOutput::Transmit(bytes)) => bytes,
        other => panic!("{what}: {other:?}"),
    }
}

fn frame(n: usize) -> Vec<u8> {
    let mut f = (n as u32).to_be_bytes().to_vec();
    f.extend((0..n).map(|x| x as u8));
    f
}

/// Every frame `r` gives for `wire`, pushed in chunks of `chunk`.
fn frames(r: &mut Receiver, wire: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, TransportError> {
    let mut got = Vec::new();
    for piece in wire.chunks(chunk) {
        r.push(piece)?;
        while let Some(body) = r.next_frame()? {
            got.push(body.to_vec());
        }
    }
    Ok(got)
}

#[test]
fn the_same_secret_connects_whatever_the_chunking() {
    for chunk in [1, 2, 47, 48, 1000] {
        let (i, r, _, _) = run(OLD, &[OLD], chunk);
        assert!(
            matches!((&i, &r), (End::Session(_), End::Session(_))),
            "{chunk}: {i:?} {r:?}"
        );
    }
}

#[test]
fn the_handshake_messages_have_their_sizes() {
    let kp = Keypair::generate();
    let mut i = Handshake::initiator(kp.private(), &Psk::derive(OLD), LIMIT).expect("builds");
    let first = transmit(&mut i, "message 1 is queued at once");
    assert_eq!(first.len(), MSG_LEN_PREFIX + 48);
    assert_eq!(first[..MSG_LEN_PREFIX], [0, 48]);
    let mut r = Handshake::responder(kp.private(), [Psk::derive(OLD)], LIMIT);
    r.handle_input(&first).expect("authenticates");
    let answer = transmit(&mut r, "message 2");
    assert_eq!(answer[..MSG_LEN_PREFIX], [0, 96]);
    i.handle_input(&answer).expect("authenticates");
    let last = transmit(&mut i, "message 3");
    assert_eq!(last[..MSG_LEN_PREFIX], [0, 64]);
    assert!(matches!(
        i.poll_output(),
        Some(HandshakeOutput::Established(_))
    ));
    assert!(i.poll_output().is_none());
}

#[test]
fn frames_of_every_size_cross_sealed_in_both_directions() {
    let (mut i, mut r) = sessions(OLD, &[OLD]);
    let sent: Vec<Vec<u8>> = [0usize, 5, MAX_RECORD_PLAINTEXT, 200_000]
        .iter()
        .map(|&n| frame(n))
        .collect();
    let mut wire = Vec::new();
    for f in &sent {
        i.sender.seal(f, &mut wire).expect("seal");
    }
    assert!(
        !wire.windows(16).any(|w| w == &sent[3][1000..1016]),
        "plaintext visible on the wire"
    );
    for chunk in [1, 3, 70_000] {
        let (mut i2, mut r2) = sessions(OLD, &[OLD]);
        let mut wire2 = Vec::new();
        for f in &sent {
            i2.sender.seal(f, &mut wire2).expect("seal");
        }
        let got = frames(&mut r2.receiver, &wire2, chunk).expect("frames");
        let want: Vec<Vec<u8>> = sent.iter().map(|f| f[LEN_PREFIX..].to_vec()).collect();
        assert_eq!(got, want, "chunks of {chunk}");
        assert!(r2.receiver.is_empty());
        drop(i2);
    }
    assert_eq!(
        frames(&mut r.receiver, &wire, 4096).expect("frames").len(),
        4
    );
    let mut back = Vec::new();
    r.sender.seal(&[0, 0, 0, 2, 7, 8], &mut back).expect("seal");
    assert_eq!(
        frames(&mut i.receiver, &back, 5).expect("frame"),
        [vec![7, 8]]
    );
}

#[test]
fn records_sent_right_behind_the_last_message_reach_the_session() {
    let (ki, kr) = (Keypair::generate(), Keypair::generate());
    let mut i = Handshake::initiator(ki.private(), &Psk::derive(OLD), LIMIT).expect("builds");
    let mut r = Handshake::responder(kr.private(), [Psk::derive(OLD)], LIMIT);
    let m1 = transmit(&mut i, "m1");
    r.handle_input(&m1).expect("m1");
    let m2 = transmit(&mut r, "m2");
    i.handle_input(&m2).expect("m2");
    let mut m3 = transmit(&mut i, "m3");
    let Some(HandshakeOutput::Established(mut si)) = i.poll_output() else {
        panic!("done")
    };
    si.sender.seal(&frame(3), &mut m3).expect("seal");
    r.handle_input(&m3).expect("m3 and a record in one read");
    let Some(HandshakeOutput::Established(mut sr)) = r.poll_output() else {
        panic!("done")
    };
    assert_eq!(
        sr.receiver.next_frame().expect("ok").as_deref(),
        Some(&[0, 1, 2][..])
    );
}

#[test]
fn both_secrets_of_a_rotation_are_accepted() {
    // Nodes of every step of a rotation accept what the others start with.
    for (init, accepted, index) in [
        (OLD, &[OLD, NEW][..], 0),
        (NEW, &[OLD, NEW][..], 1),
        (NEW, &[NEW, OLD][..], 0),
        (OLD, &[NEW, OLD][..], 1),
        (NEW, &[NEW][..], 0),
    ] {
        let (_, r) = sessions(init, accepted);
        assert_eq!(r.secret_index, index);
    }
}

#[test]
fn a_wrong_secret_is_refused_on_the_first_message() {
    let (i, r, _, _) = run(NEW, &[OLD], 1000);
    assert!(
        matches!(r, End::Refused(HandshakeError::BadSecret)),
        "{r:?}"
    );
    assert!(matches!(i, End::Waiting), "{i:?}: nothing was sent back");
    // An answer made under another secret is refused by the initiator.
    let kp = Keypair::generate();
    let mut good = Handshake::initiator(kp.private(), &Psk::derive(NEW), LIMIT).expect("b");
    let mut other = Handshake::initiator(kp.private(), &Psk::derive(OLD), LIMIT).expect("b");
    let mut resp = Handshake::responder(kp.private(), [Psk::derive(OLD)], LIMIT);
    let m1 = transmit(&mut other, "m1");
    resp.handle_input(&m1).expect("m1");
    let m2 = transmit(&mut resp, "m2");
    let _ = good.poll_output();
    assert!(matches!(
        good.handle_input(&m2),
        Err(HandshakeError::BadSecret)
    ));
    assert!(matches!(good.handle_input(&m2), Err(HandshakeError::Ended)));
}

#[test]
fn garbage_is_refused_without_panics_or_buffering() {
    let kp = Keypair::generate();
    let accepted = || [Psk::derive(OLD), Psk::derive(NEW)];
    for input in [&[0, 1, 0][..], &[0, 48][..], &[0u8; 50][..], &[0, 0][..]] {
        let mut r = Handshake::responder(kp.private(), accepted(), LIMIT);
        let got = r.handle_input(input);
        assert!(
            got.is_err() || r.poll_output().is_none(),
            "{input:?}: {got:?}"
        );
    }
    let mut r = Handshake::responder(kp.private(), accepted(), LIMIT);
    assert!(matches!(
        r.handle_input(&[0xff, 0xff, 1, 2, 3]),
        Err(HandshakeError::TooLong {
            message: 1,
            len: 65535
        })
    ));
    let mut i = Handshake::initiator(kp.private(), &Psk::derive(OLD), LIMIT).expect("b");
    assert!(matches!(
        i.handle_input(&[0x04, 0x01]),
        Err(HandshakeError::TooLong {
            message: 2,
            len: 1025
        })
    ));
}

#[test]
fn tampered_short_and_oversized_records_are_errors() {
    let (mut i, mut r) = sessions(OLD, &[OLD]);
    let mut wire = Vec::new();
    i.sender.seal(&[0, 0, 0, 1, 9], &mut wire).expect("seal");
    wire[4] ^= 1;
    let e = frames(&mut r.receiver, &wire, 100);
    assert_eq!(
        e,
        Err(TransportError::Unauthentic {
            nonce: 0,
            len: 5 + TAG_LEN
        })
    );
    assert_eq!(r.receiver.next_frame(), e.map(|_| None), "sticky");

    let (_, mut r) = sessions(OLD, &[OLD]);
    let e = frames(&mut r.receiver, &[0, 3, 1, 2, 3], 100);
    assert_eq!(e, Err(TransportError::RecordTooShort { nonce: 0, len: 3 }));

    let (mut i, mut r) = sessions(OLD, &[OLD]);
    r.receiver.set_limit(4096);
    let mut wire = Vec::new();
    i.sender
        .seal(&[0x7f, 0xff, 0xff, 0xff], &mut wire)
        .expect("seal");
    let e = frames(&mut r.receiver, &wire, 100);
    assert_eq!(
        e,
        Err(TransportError::Frame(CodecError::FrameTooLarge(
            0x7fff_ffff,
            4096
        )))
    );
}

#[test]
fn plain_directions_pass_frames_through() {
    let mut s = Sender::plain();
    let mut wire = Vec::new();
    s.seal(&frame(2), &mut wire).expect("plain");
    assert_eq!(wire, frame(2));
    let mut r = Receiver::plain(16);
    assert_eq!(frames(&mut r, &wire, 1).expect("frames"), [vec![0, 1]]);
    assert!(!s.is_sealed() && !r.is_sealed());
}

#[test]
fn a_peer_written_from_the_documented_wire_interoperates() {
    // What agents of the previous version do (snow driven directly, `[u16 length][message]`
    // framing, empty payloads, records from nonce 0): the wire must stay exactly this.
    let (ours_keys, their_keys) = (Keypair::generate(), Keypair::generate());
    let psk = Psk::derive(OLD);
    let mut theirs = snow::Builder::new(NOISE_PATTERN.parse().expect("pattern"))
        .local_private_key(their_keys.private())
        .expect("key")
        .psk(0, psk.as_bytes())
        .expect("psk")
        .prologue(b"overlay control v1")
        .expect("prologue")
        .build_responder()
        .expect("responder");
    let framed = |msg: &[u8]| {
        let mut out = (msg.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(msg);
        out
    };
    let mut ours = Handshake::initiator(ours_keys.private(), &psk, LIMIT).expect("builds");
    let mut buf = [0u8; 1024];
    let m1 = transmit(&mut ours, "m1");
    assert_eq!(m1.len(), MSG_LEN_PREFIX + 48);
    theirs
        .read_message(&m1[MSG_LEN_PREFIX..], &mut buf)
        .expect("m1 authenticates");
    let n = theirs.write_message(&[], &mut buf).expect("m2");
    ours.handle_input(&framed(&buf[..n]))
        .expect("m2 authenticates");
    let m3 = transmit(&mut ours, "m3");
    assert_eq!(m3.len(), MSG_LEN_PREFIX + 64);
    theirs
        .read_message(&m3[MSG_LEN_PREFIX..], &mut buf)
        .expect("m3 authenticates");
    let Some(HandshakeOutput::Established(mut session)) = ours.poll_output() else {
        panic!("established");
    };
    assert_eq!(&session.remote_static, their_keys.public());
    let transport = theirs.into_stateless_transport_mode().expect("transport");

    let mut wire = Vec::new();
    session
        .sender
        .seal(&[0, 0, 0, 1, 42], &mut wire)
        .expect("seal");
    assert_eq!(
        usize::from(u16::from_be_bytes([wire[0], wire[1]])),
        5 + TAG_LEN
    );
    let n = transport
        .read_message(0, &wire[MSG_LEN_PREFIX..], &mut buf)
        .expect("our record opens at nonce 0");
    assert_eq!(&buf[..n], [0, 0, 0, 1, 42]);
    let n = transport
        .write_message(0, &[0, 0, 0, 2, 7, 8], &mut buf)
        .expect("their record");
    assert_eq!(
        frames(&mut session.receiver, &framed(&buf[..n]), 3),
        Ok(vec![vec![7, 8]])
    );
}
