//! Opening a control connection: connect (outbound), exchange hellos, pick the version.
//!
//! Both sides send their hello first, then read the other's, so neither waits for the other.
//! The remote hello is read under [`MAX_HELLO_LEN`] and the whole exchange under
//! [`HANDSHAKE_TIMEOUT`]: a silent or garbage-sending client costs at most that long and a
//! few kilobytes.

use super::frame::{read_frame, FrameError};
use overlay_proto::codec::{self, CodecError, MAX_HELLO_LEN};
use overlay_proto::message::{negotiate, Hello};
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
    /// Sending our hello failed.
    #[error("sending hello failed: {0}")]
    Send(io::Error),
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

/// Sends our hello, reads theirs, negotiates. Returns their hello and the version.
pub async fn exchange(
    stream: &mut TcpStream,
    ours: &LocalHello,
) -> Result<(Hello, u16), HandshakeError> {
    let exchange = async {
        stream
            .write_all(&ours.frame)
            .await
            .map_err(HandshakeError::Send)?;
        let mut body = Vec::new();
        if !read_frame(stream, MAX_HELLO_LEN, &mut body).await? {
            return Err(HandshakeError::Closed);
        }
        let hello = codec::decode_hello(&body)?;
        let theirs = (hello.proto_min, hello.proto_max);
        let version = negotiate(ours.range, theirs).ok_or(HandshakeError::NoCommonVersion {
            ours: ours.range,
            theirs,
        })?;
        Ok((hello, version))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Connects to `addr` and runs the handshake.
pub async fn dial(
    addr: SocketAddr,
    ours: &LocalHello,
) -> Result<(TcpStream, Hello, u16), HandshakeError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::ConnectTimeout)?
        .map_err(HandshakeError::Connect)?;
    stream.set_nodelay(true).map_err(HandshakeError::Connect)?;
    let (hello, version) = exchange(&mut stream, ours).await?;
    Ok((stream, hello, version))
}
