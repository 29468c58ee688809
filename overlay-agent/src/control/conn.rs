//! An established control connection: a reader task, a writer task and a bounded send queue.
//!
//! The reader turns frames into [`Event::Message`]s (unknown message types are skipped) and
//! reports the first error or EOF as [`Event::Closed`]. The writer sends queued frames in
//! order. The queue is bounded in frames and bytes: when a peer does not read fast enough,
//! the driver closes the connection instead of buffering without limit.

use super::frame::{FrameError, FrameReader};
use super::handshake::{Channel, HandshakeError};
use overlay_proto::codec::{self, CodecError, LEN_PREFIX, MAX_FRAME_LEN};
use overlay_proto::message::{Hello, Message};
use overlay_proto::node::{ConnId, Direction};
use overlay_proto::noise::Sender;
use overlay_proto::PeerName;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most frames queued for one connection.
pub const QUEUE_FRAMES: usize = 256;
/// Most bytes queued for one connection.
pub const QUEUE_BYTES: usize = 4 * MAX_FRAME_LEN;
/// How long a closed connection's writer may take to deliver what was queued.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a message was not queued on a connection: the connection must be closed instead.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// the message cannot be encoded
    #[error("cannot encode: {0}")]
    Encode(#[source] CodecError),
    /// the peer does not read fast enough: the queued bytes would exceed the limit
    #[error("send queue over {QUEUE_BYTES} bytes")]
    QueueBytes,
    /// the peer does not read fast enough, or the writer task ended
    #[error("send queue full ({QUEUE_FRAMES} frames) or writer gone")]
    QueueFull,
}

/// What connection tasks report to the driver.
#[derive(Debug)]
pub enum Event {
    /// A handshake completed.
    Handshaked {
        /// The connection, after its handshake.
        channel: Box<Channel>,
        /// Who dialed.
        direction: Direction,
        /// The address dialed, when outbound.
        dialed: Option<SocketAddr>,
        /// The remote address.
        remote: SocketAddr,
        /// The remote hello.
        hello: Box<Hello>,
        /// The protocol version negotiated: messages are encoded and decoded in it.
        version: u16,
    },
    /// A dial or its handshake failed.
    DialFailed {
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        error: HandshakeError,
    },
    /// A message arrived.
    Message {
        /// On this connection.
        conn: ConnId,
        /// The message.
        msg: Message,
        /// Its size on the wire (length prefix included).
        bytes: usize,
    },
    /// The connection failed or the peer closed it.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseCause,
    },
}

/// Why an established connection ended on its own (reported as [`Event::Closed`]).
#[derive(Debug, thiserror::Error)]
pub enum CloseCause {
    /// the peer closed the stream between frames
    #[error("closed by the peer")]
    ByPeer,
    /// reading or opening a frame failed
    #[error("{0}")]
    Read(FrameError),
    /// a frame that is no message of the protocol
    #[error("protocol error: {0}")]
    Protocol(CodecError),
    /// writing to the socket failed
    #[error("write failed: {0}")]
    Write(std::io::Error),
}

/// The driver's side of an established connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// The remote peer.
    pub peer: PeerName,
    /// The remote address.
    pub remote: SocketAddr,
    /// The peer's static public key, when authenticated.
    pub identity: Option<[u8; 32]>,
    /// The protocol version negotiated (see [`overlay_proto::codec`]).
    version: u16,
    frames: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl ConnHandle {
    /// Starts the reader and writer of `channel`, speaking protocol `version`.
    pub fn spawn(
        conn: ConnId,
        channel: Channel,
        version: u16,
        peer: PeerName,
        remote: SocketAddr,
        events: mpsc::Sender<Event>,
    ) -> ConnHandle {
        let identity = channel.remote_identity;
        let FrameReader {
            stream, receiver, ..
        } = channel.reader;
        let (read_half, write_half) = stream.into_split();
        let reader = FrameReader::new(read_half, receiver);
        let (frames, rx) = mpsc::channel(QUEUE_FRAMES);
        let queued = Arc::new(AtomicUsize::new(0));
        let reader = tokio::spawn(read_loop(conn, reader, version, events.clone()));
        let writer = tokio::spawn(write_loop(
            conn,
            write_half,
            channel.send,
            rx,
            queued.clone(),
            events,
        ));
        ConnHandle {
            peer,
            remote,
            identity,
            version,
            frames,
            queued,
            reader,
            writer,
        }
    }

    /// Queues `msg` and returns its size on the wire; an error says why the connection must
    /// be closed instead.
    pub fn send(&self, msg: &Message) -> Result<usize, SendError> {
        let mut frame = Vec::new();
        codec::encode_message_in(msg, self.version, &mut frame).map_err(SendError::Encode)?;
        let len = frame.len();
        if self.queued.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            return Err(SendError::QueueBytes);
        }
        self.frames
            .try_send(frame)
            .map_err(|_| SendError::QueueFull)?;
        self.queued.fetch_add(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Closes at once, dropping whatever is queued.
    pub fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Closes after the writer delivered what is queued (within [`FLUSH_TIMEOUT`]); the
    /// returned handle ends when the writer is done.
    pub fn close(self) -> JoinHandle<()> {
        self.reader.abort();
        drop(self.frames);
        let writer = self.writer.abort_handle();
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_TIMEOUT).await;
            writer.abort();
        });
        self.writer
    }
}

async fn read_loop(
    conn: ConnId,
    mut reader: FrameReader<OwnedReadHalf>,
    version: u16,
    events: mpsc::Sender<Event>,
) {
    let reason = loop {
        let body = match reader.next().await {
            Ok(Some(body)) => body,
            Ok(None) => break CloseCause::ByPeer,
            Err(e) => break CloseCause::Read(e),
        };
        match codec::decode_message_in(&body, version) {
            Ok(Some(msg)) => {
                let bytes = LEN_PREFIX + body.len();
                if events
                    .send(Event::Message { conn, msg, bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => tracing::trace!(conn, "skipping a message of unknown type"),
            Err(e) => break CloseCause::Protocol(e),
        }
    };
    let _ = events.send(Event::Closed { conn, reason }).await;
}

async fn write_loop(
    conn: ConnId,
    half: OwnedWriteHalf,
    mut send: Sender,
    mut frames: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    events: mpsc::Sender<Event>,
) {
    let mut out = BufWriter::new(half);
    let mut sealed = Vec::new();
    // Frames go out as they are, or sealed into records first (with a secret).
    let mut write = async |out: &mut BufWriter<OwnedWriteHalf>, frame: &[u8]| {
        if !send.is_sealed() {
            return out.write_all(frame).await;
        }
        sealed.clear();
        send.seal(frame, &mut sealed)
            .map_err(std::io::Error::other)?;
        out.write_all(&sealed).await
    };
    while let Some(frame) = frames.recv().await {
        let mut result = write(&mut out, &frame).await;
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
        while result.is_ok() {
            let Ok(next) = frames.try_recv() else { break };
            result = write(&mut out, &next).await;
            queued.fetch_sub(next.len(), Ordering::Relaxed);
        }
        if let Err(e) = result.and(out.flush().await) {
            let reason = CloseCause::Write(e);
            let _ = events.send(Event::Closed { conn, reason }).await;
            return;
        }
    }
    let _ = out.shutdown().await;
}
