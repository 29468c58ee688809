//! The Noise handshake that opens a control connection with `--secret-file`, and the
//! encrypted records that carry control frames after it (see [`crate::auth`] for the design).
//!
//! # Wire
//! Handshake messages and records are both `[u16 big-endian length][bytes]`, as the Noise
//! specification suggests. Handshake: initiator → `e` (+ tag, 48 bytes), responder →
//! `e, ee, s, es` (96 bytes), initiator → `s, se` (64 bytes); each at most
//! [`MAX_HANDSHAKE_MSG`]. Then each direction carries records of at most [`MAX_RECORD`]
//! bytes of ciphertext, nonces counting from 0; their plaintexts, concatenated, are the usual
//! length-prefixed control frames (the hello first). A frame larger than one record spans
//! several. The frame size caps apply to the plaintext, checked from its length prefix
//! before the frame body is buffered, so a peer can make the reader hold at most one frame
//! under the cap and one record.
//!
//! Without a secret, [`SendState::plain`] and [`RecvState::plain`] pass frames through
//! unchanged (the wire of an agent without `--secret-file` is exactly as before).

use super::frame::{read_frame, FrameError};
use crate::auth::{Identity, Secret, SecretSet, NOISE_PATTERN};
use overlay_proto::codec::{self, LEN_PREFIX};
use snow::{HandshakeState, StatelessTransportState};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest handshake message accepted.
pub const MAX_HANDSHAKE_MSG: usize = 1024;
/// Largest record (ciphertext and tag), the Noise message limit.
pub const MAX_RECORD: usize = 65535;
/// The AEAD tag of every record.
pub const TAG_LEN: usize = 16;
/// Largest plaintext of one record.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;
/// Bound into the handshake hash: both sides must speak this protocol.
const PROLOGUE: &[u8] = b"overlay control v1";
/// Largest plaintext buffer kept between frames.
const KEEP_CAPACITY: usize = 1 << 20;

/// Why the Noise handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The peer's message does not authenticate under any secret we accept.
    #[error("the peer does not hold an accepted cluster secret")]
    BadSecret,
    /// The peer closed the connection during the handshake.
    #[error("the peer closed during the Noise handshake (it may hold another cluster secret)")]
    Closed,
    /// The stream failed.
    #[error("I/O during the Noise handshake: {0}")]
    Io(#[from] io::Error),
    /// A message has a bad length or does not decrypt.
    #[error("malformed Noise handshake message: {0}")]
    Malformed(String),
}

/// An established Noise session: both directions and what we learned of the peer.
#[derive(Debug)]
pub struct Session {
    /// Sealing our records.
    pub send: SendState,
    /// Opening theirs.
    pub recv: RecvState,
    /// The peer's static public key.
    pub remote_static: [u8; 32],
    /// Which of our accepted secrets it holds (0 current, 1 next); 0 when we initiated.
    pub secret_index: usize,
}

fn builder<'a>(identity: &'a Identity, psk: &'a [u8; 32]) -> Result<snow::Builder<'a>, NoiseError> {
    let params = NOISE_PATTERN
        .parse()
        .map_err(|e| NoiseError::Malformed(format!("pattern: {e}")))?;
    let malformed = |e: snow::Error| NoiseError::Malformed(e.to_string());
    snow::Builder::new(params)
        .local_private_key(identity.private())
        .map_err(malformed)?
        .psk(0, psk)
        .map_err(malformed)?
        .prologue(PROLOGUE)
        .map_err(malformed)
}

async fn write_msg<S: AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Result<(), NoiseError> {
    let len = u16::try_from(msg.len()).map_err(|_| NoiseError::Malformed("too long".into()))?;
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await?;
    Ok(())
}

async fn read_msg<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<(), NoiseError> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(NoiseError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MSG {
        return Err(NoiseError::Malformed(format!(
            "{len} bytes, more than {MAX_HANDSHAKE_MSG}"
        )));
    }
    buf.resize(len, 0);
    match s.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(NoiseError::Closed),
        Err(e) => Err(e.into()),
    }
}

fn finish(hs: HandshakeState, secret_index: usize) -> Result<Session, NoiseError> {
    let remote: [u8; 32] = hs
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| NoiseError::Malformed("no remote static key".into()))?;
    let transport = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(|e| NoiseError::Malformed(e.to_string()))?,
    );
    Ok(Session {
        send: SendState::noise(transport.clone()),
        recv: RecvState::noise(transport),
        remote_static: remote,
        secret_index,
    })
}

/// Runs the initiator's side with `secret` on `s`.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    identity: &Identity,
    secret: &Secret,
) -> Result<Session, NoiseError> {
    let mut hs = builder(identity, secret.psk())?
        .build_initiator()
        .map_err(|e| NoiseError::Malformed(e.to_string()))?;
    let mut out = [0u8; MAX_HANDSHAKE_MSG];
    let mut msg = Vec::new();
    let mut scratch = [0u8; MAX_HANDSHAKE_MSG];
    let n = hs
        .write_message(&[], &mut out)
        .map_err(|e| NoiseError::Malformed(e.to_string()))?;
    write_msg(s, &out[..n]).await?;
    read_msg(s, &mut msg).await?;
    // The responder answers only when our first message authenticated under one of its
    // secrets; an answer that does not decrypt is not from a holder of ours.
    hs.read_message(&msg, &mut scratch)
        .map_err(|_| NoiseError::BadSecret)?;
    let n = hs
        .write_message(&[], &mut out)
        .map_err(|e| NoiseError::Malformed(e.to_string()))?;
    write_msg(s, &out[..n]).await?;
    finish(hs, 0)
}

/// Runs the responder's side on `s`, accepting any secret of `secrets`.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    identity: &Identity,
    secrets: &SecretSet,
) -> Result<Session, NoiseError> {
    let mut msg = Vec::new();
    let mut scratch = [0u8; MAX_HANDSHAKE_MSG];
    read_msg(s, &mut msg).await?;
    // psk0: the first message's tag is under the pre-shared key, so each accepted secret is
    // tried on a fresh state (hashing and one AEAD open each, no Diffie-Hellman).
    let mut chosen = None;
    for (i, secret) in secrets.accepted().enumerate() {
        let mut hs = builder(identity, secret.psk())?
            .build_responder()
            .map_err(|e| NoiseError::Malformed(e.to_string()))?;
        if hs.read_message(&msg, &mut scratch).is_ok() {
            chosen = Some((i, hs));
            break;
        }
    }
    let (index, mut hs) = chosen.ok_or(NoiseError::BadSecret)?;
    let mut out = [0u8; MAX_HANDSHAKE_MSG];
    let n = hs
        .write_message(&[], &mut out)
        .map_err(|e| NoiseError::Malformed(e.to_string()))?;
    write_msg(s, &out[..n]).await?;
    read_msg(s, &mut msg).await?;
    hs.read_message(&msg, &mut scratch)
        .map_err(|_| NoiseError::Malformed("the last message does not authenticate".into()))?;
    finish(hs, index)
}

/// The sending direction of a connection: frames pass through, or are sealed into records.
#[derive(Debug)]
pub struct SendState {
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
}

impl SendState {
    /// Frames go out as they are (no secret).
    pub fn plain() -> SendState {
        SendState {
            cipher: None,
            nonce: 0,
        }
    }

    fn noise(cipher: Arc<StatelessTransportState>) -> SendState {
        SendState {
            cipher: Some(cipher),
            nonce: 0,
        }
    }

    /// Whether frames are sealed.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Appends the wire bytes of the encoded frame `frame` to `out`.
    pub fn seal(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let Some(cipher) = &self.cipher else {
            out.extend_from_slice(frame);
            return Ok(());
        };
        for chunk in frame.chunks(MAX_RECORD_PLAINTEXT) {
            let start = out.len();
            out.resize(start + 2 + chunk.len() + TAG_LEN, 0);
            let n = cipher
                .write_message(self.nonce, chunk, &mut out[start + 2..])
                .map_err(|e| io::Error::other(format!("cannot seal a record: {e}")))?;
            self.nonce += 1;
            // n <= MAX_RECORD by the chunk size.
            out[start..start + 2].copy_from_slice(&(n as u16).to_be_bytes());
            out.truncate(start + 2 + n);
        }
        Ok(())
    }
}

/// The receiving direction: frames read as they are, or opened from records.
#[derive(Debug)]
pub struct RecvState {
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
    plain: Vec<u8>,
    record: Vec<u8>,
}

impl RecvState {
    /// Frames come as they are (no secret).
    pub fn plain() -> RecvState {
        RecvState {
            cipher: None,
            nonce: 0,
            plain: Vec::new(),
            record: Vec::new(),
        }
    }

    fn noise(cipher: Arc<StatelessTransportState>) -> RecvState {
        RecvState {
            cipher: Some(cipher),
            ..RecvState::plain()
        }
    }

    /// Reads the next frame's body into `buf`, as [`read_frame`] does, opening records when
    /// encrypted. `Ok(false)` when the stream ended cleanly between frames.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        limit: usize,
        buf: &mut Vec<u8>,
    ) -> Result<bool, FrameError> {
        let Some(cipher) = self.cipher.clone() else {
            return read_frame(r, limit, buf).await;
        };
        buf.clear();
        if self.plain.is_empty() && self.plain.capacity() > KEEP_CAPACITY {
            self.plain = Vec::new();
        }
        loop {
            if let Some(prefix) = self.plain.first_chunk::<LEN_PREFIX>() {
                let len = codec::frame_len(*prefix, limit)?;
                if self.plain.len() >= LEN_PREFIX + len {
                    buf.extend_from_slice(&self.plain[LEN_PREFIX..LEN_PREFIX + len]);
                    self.plain.drain(..LEN_PREFIX + len);
                    return Ok(true);
                }
            }
            let mut len = [0u8; 2];
            match r.read_exact(&mut len).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if self.plain.is_empty() {
                        return Ok(false);
                    }
                    return Err(FrameError::Truncated {
                        len: LEN_PREFIX,
                        got: self.plain.len(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len < TAG_LEN {
                return Err(FrameError::Unauthentic);
            }
            self.record.resize(len, 0);
            if let Err(e) = r.read_exact(&mut self.record).await {
                return Err(match e.kind() {
                    io::ErrorKind::UnexpectedEof => FrameError::Truncated { len, got: 0 },
                    _ => e.into(),
                });
            }
            let start = self.plain.len();
            self.plain.resize(start + len, 0);
            let opened = cipher.read_message(self.nonce, &self.record, &mut self.plain[start..]);
            let Ok(n) = opened else {
                return Err(FrameError::Unauthentic);
            };
            self.nonce += 1;
            self.plain.truncate(start + n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn set(text: &str) -> SecretSet {
        SecretSet::parse(text).expect("secrets")
    }

    const OLD: &str = "old-cluster-secret-0123";
    const NEW: &str = "new-cluster-secret-4567";

    async fn pair(
        initiator: &str,
        responder: &str,
    ) -> (Result<Session, NoiseError>, Result<Session, NoiseError>) {
        let (mut a, mut b) = duplex(1 << 16);
        let (ia, ib) = (Identity::generate(), Identity::generate());
        let (si, sr) = (set(initiator), set(responder));
        let init = async {
            let r = initiate(&mut a, &ia, &si.current).await;
            drop(a);
            r
        };
        let resp = async {
            let r = respond(&mut b, &ib, &sr).await;
            drop(b);
            r
        };
        let (x, y) = tokio::join!(init, resp);
        if let (Ok(x), Ok(y)) = (&x, &y) {
            assert_eq!(&x.remote_static, ib.public());
            assert_eq!(&y.remote_static, ia.public());
        }
        (x, y)
    }

    #[tokio::test]
    async fn same_secret_connects_and_frames_cross_encrypted() {
        let (i, r) = pair(OLD, OLD).await;
        let (mut i, mut r) = (i.expect("initiator"), r.expect("responder"));
        assert_eq!(r.secret_index, 0);
        // Frames of every size, one spanning several records, cross in order.
        let frames: Vec<Vec<u8>> = [0usize, 5, MAX_RECORD_PLAINTEXT, 200_000]
            .iter()
            .map(|&n| {
                let mut f = (n as u32).to_be_bytes().to_vec();
                f.extend((0..n).map(|x| x as u8));
                f
            })
            .collect();
        let mut wire = Vec::new();
        for f in &frames {
            i.send.seal(f, &mut wire).expect("seal");
        }
        assert!(
            !wire.windows(16).any(|w| w == &frames[3][1000..1016]),
            "plaintext visible on the wire"
        );
        let mut rd = &wire[..];
        let mut body = Vec::new();
        for f in &frames {
            assert!(r
                .recv
                .read_frame(&mut rd, 1 << 20, &mut body)
                .await
                .expect("frame"));
            assert_eq!(body, f[LEN_PREFIX..]);
        }
        assert!(!r
            .recv
            .read_frame(&mut rd, 1 << 20, &mut body)
            .await
            .expect("end"));
        // And back.
        let mut wire = Vec::new();
        r.send.seal(&[0, 0, 0, 2, 7, 8], &mut wire).expect("seal");
        let mut rd = &wire[..];
        assert!(i
            .recv
            .read_frame(&mut rd, 16, &mut body)
            .await
            .expect("frame"));
        assert_eq!(body, [7, 8]);
    }

    #[tokio::test]
    async fn both_secrets_of_a_rotation_are_accepted() {
        // Step 1 node starting with old, and a step 2 node starting with new, each accepted
        // by nodes of every step that holds their secret.
        for (init, resp, index) in [
            (OLD, format!("{OLD}\n{NEW}"), 0),
            (NEW, format!("{OLD}\n{NEW}"), 1),
            (NEW, format!("{NEW}\n{OLD}"), 0),
            (OLD, format!("{NEW}\n{OLD}"), 1),
            (NEW, NEW.to_owned(), 0),
        ] {
            let (i, r) = pair(init, &resp).await;
            i.expect("initiator");
            assert_eq!(r.expect("responder").secret_index, index);
        }
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_the_first_message() {
        let (i, r) = pair(NEW, OLD).await;
        assert!(matches!(r, Err(NoiseError::BadSecret)), "{r:?}");
        assert!(matches!(i, Err(NoiseError::Closed)), "{i:?}");
    }

    #[tokio::test]
    async fn garbage_and_tampering_are_errors_not_panics() {
        let id = Identity::generate();
        let secrets = set(OLD);
        for input in [
            &b""[..],
            &[0, 1, 0][..],
            &[0xff, 0xff, 1, 2, 3][..],
            &[0, 48][..],
            &[0u8; 50][..],
        ] {
            let mut stream = tokio_test_stream(input);
            assert!(respond(&mut stream, &id, &secrets).await.is_err());
        }
        // A tampered record does not open.
        let (i, r) = pair(OLD, OLD).await;
        let (mut i, mut r) = (i.expect("initiator"), r.expect("responder"));
        let mut wire = Vec::new();
        i.send.seal(&[0, 0, 0, 1, 9], &mut wire).expect("seal");
        wire[4] ^= 1;
        let mut body = Vec::new();
        let e = r.recv.read_frame(&mut &wire[..], 16, &mut body).await;
        assert!(matches!(e, Err(FrameError::Unauthentic)), "{e:?}");
        // An oversized plaintext frame is refused from its prefix.
        let mut wire = Vec::new();
        let (i2, r2) = pair(OLD, OLD).await;
        let (mut i2, mut r2) = (i2.expect("i"), r2.expect("r"));
        i2.send
            .seal(&[0x7f, 0xff, 0xff, 0xff], &mut wire)
            .expect("seal");
        let e = r2.recv.read_frame(&mut &wire[..], 4096, &mut body).await;
        assert!(matches!(e, Err(FrameError::TooLarge(_))), "{e:?}");
        drop((i, i2));
    }

    /// A stream that yields `input` then EOF and swallows writes.
    fn tokio_test_stream(input: &[u8]) -> tokio::io::Join<&[u8], tokio::io::Sink> {
        tokio::io::join(input, tokio::io::sink())
    }
}
