//! With `--secret-file`, the Noise handshake that opens a control connection (see
//! [`crate::auth`] for the design): a thin async driver over the sans-IO
//! [`overlay_proto::noise::Handshake`], which holds the protocol, the wire format and the
//! refusal decisions. This side only moves bytes: it writes what the handshake says, reads
//! what arrives and feeds it in. The timeout and the refusal counting are the caller's
//! ([`super::handshake`], [`super::driver`]).

use crate::auth::{Identity, Secret, SecretSet};
use overlay_proto::codec::MAX_HELLO_LEN;
use overlay_proto::noise::{Handshake, HandshakeError, HandshakeOutput, Session};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket at once during the handshake (messages are at most 1026).
const READ_CHUNK: usize = 2048;

/// Why the Noise handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The peer is refused: no accepted secret, or a malformed message.
    #[error(transparent)]
    Refused(#[from] HandshakeError),
    /// The peer closed the connection during the handshake.
    #[error("the peer closed during the Noise handshake (it may hold another cluster secret)")]
    Closed,
    /// The stream failed.
    #[error("I/O during the Noise handshake: {0}")]
    Io(#[from] io::Error),
}

impl NoiseError {
    /// Whether the peer does not hold a secret we accept.
    pub fn is_bad_secret(&self) -> bool {
        matches!(self, NoiseError::Refused(HandshakeError::BadSecret))
    }
}

/// Runs `handshake` on `s` until it gives its session.
pub async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mut handshake: Handshake,
) -> Result<Session, NoiseError> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        while let Some(out) = handshake.poll_output() {
            match out {
                HandshakeOutput::Transmit(bytes) => s.write_all(&bytes).await?,
                HandshakeOutput::Established(session) => return Ok(*session),
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(NoiseError::Closed);
        }
        handshake.handle_input(&chunk[..n])?;
    }
}

/// Runs the initiator's side with `secret` on `s`.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    identity: &Identity,
    secret: &Secret,
) -> Result<Session, NoiseError> {
    let handshake = Handshake::initiator(identity.private(), secret.psk(), MAX_HELLO_LEN)?;
    drive(s, handshake).await
}

/// Runs the responder's side on `s`, accepting any secret of `secrets`.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    identity: &Identity,
    secrets: &SecretSet,
) -> Result<Session, NoiseError> {
    let psks = secrets.accepted().map(|secret| secret.psk().clone());
    drive(
        s,
        Handshake::responder(identity.private(), psks, MAX_HELLO_LEN),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const OLD: &str = "old-cluster-secret-0123";
    const NEW: &str = "new-cluster-secret-4567";

    fn set(text: &str) -> SecretSet {
        SecretSet::parse(text).expect("secrets")
    }

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
    async fn the_same_secret_connects_over_a_stream() {
        let (i, r) = pair(OLD, &format!("{NEW}\n{OLD}")).await;
        i.expect("initiator");
        assert_eq!(r.expect("responder").secret_index, 1);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_and_the_initiator_sees_the_close() {
        let (i, r) = pair(NEW, OLD).await;
        assert!(r.as_ref().is_err_and(NoiseError::is_bad_secret), "{r:?}");
        assert!(matches!(i, Err(NoiseError::Closed)), "{i:?}");
    }

    #[tokio::test]
    async fn garbage_and_early_ends_are_errors_not_panics() {
        let id = Identity::generate();
        let secrets = set(OLD);
        for input in [
            &b""[..],
            &[0, 1, 0][..],
            &[0xff, 0xff, 1, 2, 3][..],
            &[0, 48][..],
            &[0u8; 50][..],
        ] {
            let mut stream = tokio::io::join(input, tokio::io::sink());
            assert!(respond(&mut stream, &id, &secrets).await.is_err());
        }
    }
}
