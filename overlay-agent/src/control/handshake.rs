//! Opening a control connection: connect (outbound), the Noise handshake (with
//! `--secret-file`, see [`super::noise`]), exchange hellos, pick the version.
//!
//! Both sides send their hello first, then read the other's, so neither waits for the other.
//! With a secret the hellos are the first encrypted frames: names and versions are never
//! sent to, or taken from, anyone who does not hold the secret.
//! The remote hello is read under [`MAX_HELLO_LEN`] and the whole exchange under
//! [`HANDSHAKE_TIMEOUT`]: a silent or garbage-sending client costs at most that long and a
//! few kilobytes.

use super::frame::{FrameError, FrameReader};
use super::noise::{self, NoiseError};
use crate::auth::{Auth, RefusalReason};
use overlay_proto::codec::{self, CodecError, MAX_FRAME_LEN, MAX_HELLO_LEN};
use overlay_proto::message::{negotiate, Hello};
use overlay_proto::noise::{Receiver, Sender, TransportError};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Longest wait for a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the hello exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(io::Error),
    /// The TCP connect took too long.
    #[error("connect timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    /// The Noise handshake failed.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// Sending our hello failed.
    #[error("sending hello failed: {0}")]
    Send(io::Error),
    /// Sealing our hello failed.
    #[error("sealing hello failed: {0}")]
    Seal(TransportError),
    /// Reading the remote hello failed.
    #[error("reading hello failed: {0}")]
    Read(#[from] FrameError),
    /// The remote closed before sending a hello.
    #[error("closed before sending a hello")]
    Closed,
    /// The remote hello does not decode.
    #[error("bad hello: {0}")]
    BadHello(#[from] CodecError),
    /// No protocol version in common.
    #[error("no common protocol version (we speak {}..={}, the peer {}..={})", ours.0, ours.1, theirs.0, theirs.1)]
    NoCommonVersion {
        /// Our range.
        ours: (u16, u16),
        /// Theirs.
        theirs: (u16, u16),
    },
    /// The exchange took too long.
    #[error("no hello within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

impl HandshakeError {
    /// How an inbound handshake that failed so is counted.
    pub fn refusal(&self) -> RefusalReason {
        match self {
            HandshakeError::Noise(e) if e.is_bad_secret() => RefusalReason::BadSecret,
            HandshakeError::Timeout | HandshakeError::ConnectTimeout => RefusalReason::Timeout,
            HandshakeError::NoCommonVersion { .. } => RefusalReason::Version,
            _ => RefusalReason::Malformed,
        }
    }
}

/// A connection after its handshake: the stream and how frames cross it.
#[derive(Debug)]
pub struct Channel {
    /// The TCP stream, and their direction: what was read past the hello stays buffered in
    /// its receiver.
    pub reader: FrameReader<TcpStream>,
    /// Our direction.
    pub send: Sender,
    /// The peer's static public key, when authenticated.
    pub remote_identity: Option<[u8; 32]>,
}

impl Channel {
    /// An unauthenticated channel (no secret): frames cross as they are.
    pub fn plain(stream: TcpStream) -> Channel {
        Channel {
            reader: FrameReader::new(stream, Receiver::plain(MAX_HELLO_LEN)),
            send: Sender::plain(),
            remote_identity: None,
        }
    }
}

/// The local side of every handshake: our hello, encoded once.
#[derive(Debug, Clone)]
pub struct LocalHello {
    frame: Vec<u8>,
    range: (u16, u16),
}

impl LocalHello {
    /// Encodes `hello`.
    pub fn new(hello: &Hello) -> Self {
        let mut frame = Vec::new();
        codec::encode_hello(hello, &mut frame);
        LocalHello {
            frame,
            range: (hello.proto_min, hello.proto_max),
        }
    }
}

/// Sends our hello, reads theirs, negotiates (on the channel as it is, encrypted or not).
/// Returns their hello and the version.
async fn hellos(ch: &mut Channel, ours: &LocalHello) -> Result<(Hello, u16), HandshakeError> {
    let mut wire = Vec::new();
    ch.send
        .seal(&ours.frame, &mut wire)
        .map_err(HandshakeError::Seal)?;
    ch.reader
        .stream
        .write_all(&wire)
        .await
        .map_err(HandshakeError::Send)?;
    let body = ch.reader.next().await?.ok_or(HandshakeError::Closed)?;
    // Messages follow the hello, under the larger cap.
    ch.reader.receiver.set_limit(MAX_FRAME_LEN);
    let hello = codec::decode_hello(&body)?;
    let theirs = (hello.proto_min, hello.proto_max);
    let version = negotiate(ours.range, theirs).ok_or(HandshakeError::NoCommonVersion {
        ours: ours.range,
        theirs,
    })?;
    Ok((hello, version))
}

/// The whole handshake of an accepted (`initiator` false) or dialed connection, under
/// [`HANDSHAKE_TIMEOUT`]: Noise first when `auth` is set, then the hellos.
pub async fn exchange(
    stream: TcpStream,
    ours: &LocalHello,
    auth: Option<&Auth>,
    initiator: bool,
) -> Result<(Channel, Hello, u16), HandshakeError> {
    let exchange = async {
        let mut ch = Channel::plain(stream);
        if let Some(auth) = auth {
            let secrets = auth.secrets();
            let stream = &mut ch.reader.stream;
            let session = if initiator {
                noise::initiate(stream, &auth.identity, &secrets.current).await?
            } else {
                noise::respond(stream, &auth.identity, &secrets).await?
            };
            ch.send = session.sender;
            ch.reader.receiver = session.receiver;
            ch.remote_identity = Some(session.remote_static);
        }
        let (hello, version) = hellos(&mut ch, ours).await?;
        Ok((ch, hello, version))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Connects to `addr` and runs the handshake.
pub async fn dial(
    addr: SocketAddr,
    ours: &LocalHello,
    auth: Option<&Auth>,
) -> Result<(Channel, Hello, u16), HandshakeError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::ConnectTimeout)?
        .map_err(HandshakeError::Connect)?;
    stream.set_nodelay(true).map_err(HandshakeError::Connect)?;
    exchange(stream, ours, auth, true).await
}
