//! The initiator and responder of the Noise handshake, as state machines.
//!
//! Build a side with [`Handshake::initiator`] or [`Handshake::responder`], then repeat:
//! send every [`HandshakeOutput::Transmit`] that [`Handshake::poll_output`] gives, in order;
//! stop at [`HandshakeOutput::Established`]; otherwise read from the stream and feed the bytes
//! to [`Handshake::handle_input`]. An error from `handle_input` is a refusal: close the
//! connection. Bytes that follow the last handshake message in the same read (the peer's
//! first records) are kept and handed to the session's [`Receiver`].
//!
//! The initiator starts with one secret; the responder tries every secret it accepts (the
//! current one, then the next one of a rotation) on the first message, each on a fresh state:
//! with psk0 that message's tag is under the pre-shared key, so a peer holding none of them
//! is refused there ([`HandshakeError::BadSecret`]), before any Diffie-Hellman and before
//! anything about this side is sent.

use super::transport::{Receiver, Sender};
use super::{params, Psk, MAX_HANDSHAKE_MSG, MSG_LEN_PREFIX, PROLOGUE};
use snow::HandshakeState;
use std::collections::VecDeque;
use std::sync::Arc;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's message does not authenticate under any secret we accept (responder), or
    /// the answer to ours does not (initiator): it does not hold our secret.
    #[error("the peer does not hold an accepted cluster secret")]
    BadSecret,
    /// A handshake message announces more than [`MAX_HANDSHAKE_MSG`] bytes.
    #[error(
        "malformed Noise handshake message {message}: {len} bytes, more than {MAX_HANDSHAKE_MSG}"
    )]
    TooLong {
        /// Which message of the handshake (1 to 3).
        message: u8,
        /// The announced length.
        len: usize,
    },
    /// The initiator's last message does not authenticate.
    #[error("malformed Noise handshake message {message}: it does not authenticate ({error})")]
    Unauthentic {
        /// Which message of the handshake (1 to 3).
        message: u8,
        /// What Noise said.
        error: snow::Error,
    },
    /// The local side could not build or write its part (bad key material).
    #[error("Noise handshake, {step}: {error}")]
    Local {
        /// What was being done.
        step: &'static str,
        /// What Noise said.
        error: snow::Error,
    },
    /// Input after the handshake failed or its session was taken.
    #[error("input after the Noise handshake ended")]
    Ended,
}

/// What the shell must do next (see the module docs).
#[derive(Debug)]
pub enum HandshakeOutput {
    /// Write these bytes to the stream.
    Transmit(Vec<u8>),
    /// The handshake is complete: carry frames through this session from now on.
    Established(Box<Session>),
}

/// An established Noise session: both directions and what was learned of the peer.
#[derive(Debug)]
pub struct Session {
    /// Sealing our records.
    pub sender: Sender,
    /// Opening theirs (already holding whatever followed the handshake).
    pub receiver: Receiver,
    /// The peer's static public key, proven in the handshake.
    pub remote_static: [u8; 32],
    /// Which of the responder's accepted secrets the peer holds (0 current, 1 next); 0 for
    /// the initiator.
    pub secret_index: usize,
}

/// Where a side is.
enum Stage {
    /// Initiator: message 1 sent, awaiting message 2.
    AwaitAnswer(Box<HandshakeState>),
    /// Responder: awaiting message 1, to be tried under each accepted key.
    AwaitFirst {
        local_private: [u8; 32],
        psks: Vec<Psk>,
    },
    /// Responder: message 2 sent, awaiting message 3.
    AwaitLast {
        state: Box<HandshakeState>,
        secret_index: usize,
    },
    /// Established (session queued) or failed.
    Ended,
}

/// One side of the handshake of a connection; see the module docs.
pub struct Handshake {
    stage: Stage,
    /// Bytes of the handshake message in progress (its length prefix included).
    input: Vec<u8>,
    outputs: VecDeque<HandshakeOutput>,
    /// Frame body limit of the session's receiver.
    frame_limit: usize,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::AwaitAnswer(_) => "initiator awaiting message 2",
            Stage::AwaitFirst { .. } => "responder awaiting message 1",
            Stage::AwaitLast { .. } => "responder awaiting message 3",
            Stage::Ended => "ended",
        };
        f.debug_struct("Handshake")
            .field("stage", &stage)
            .field("buffered", &self.input.len())
            .finish()
    }
}

fn builder<'a>(
    local_private: &'a [u8; 32],
    psk: &'a Psk,
) -> Result<snow::Builder<'a>, HandshakeError> {
    let local = |step| move |error| HandshakeError::Local { step, error };
    snow::Builder::new(params())
        .local_private_key(local_private)
        .map_err(local("setting the static key"))?
        .psk(0, psk.as_bytes())
        .map_err(local("setting the pre-shared key"))?
        .prologue(PROLOGUE)
        .map_err(local("setting the prologue"))
}

/// `[u16 length][message]` of a message written by `state`.
fn write(state: &mut HandshakeState, step: &'static str) -> Result<Vec<u8>, HandshakeError> {
    let mut out = vec![0u8; MSG_LEN_PREFIX + MAX_HANDSHAKE_MSG];
    let n = state
        .write_message(&[], &mut out[MSG_LEN_PREFIX..])
        .map_err(|error| HandshakeError::Local { step, error })?;
    // n <= MAX_HANDSHAKE_MSG (the buffer's size) < u16::MAX.
    out[..MSG_LEN_PREFIX].copy_from_slice(&(n as u16).to_be_bytes());
    out.truncate(MSG_LEN_PREFIX + n);
    Ok(out)
}

impl Handshake {
    /// The dialing side, holding `psk`, with static key `local_private`: message 1 is queued
    /// at once. The session's receiver refuses frame bodies over `frame_limit` (the hello's
    /// limit: the hello comes first).
    pub fn initiator(
        local_private: &[u8; 32],
        psk: &Psk,
        frame_limit: usize,
    ) -> Result<Handshake, HandshakeError> {
        let mut state = builder(local_private, psk)?
            .build_initiator()
            .map_err(|error| HandshakeError::Local {
                step: "building the initiator",
                error,
            })?;
        let first = write(&mut state, "writing message 1")?;
        Ok(Handshake {
            stage: Stage::AwaitAnswer(Box::new(state)),
            input: Vec::new(),
            outputs: VecDeque::from([HandshakeOutput::Transmit(first)]),
            frame_limit,
        })
    }

    /// The accepting side, with static key `local_private`, accepting any of `psks` (the
    /// current secret's first). See [`initiator`](Self::initiator) for `frame_limit`.
    pub fn responder(
        local_private: &[u8; 32],
        psks: impl IntoIterator<Item = Psk>,
        frame_limit: usize,
    ) -> Handshake {
        Handshake {
            stage: Stage::AwaitFirst {
                local_private: *local_private,
                psks: psks.into_iter().collect(),
            },
            input: Vec::new(),
            outputs: VecDeque::new(),
            frame_limit,
        }
    }

    /// Bytes of an unfinished handshake message buffered (at most the 2-byte length and
    /// [`MAX_HANDSHAKE_MSG`]).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The next thing to do, in order; `None` when more input is needed.
    pub fn poll_output(&mut self) -> Option<HandshakeOutput> {
        self.outputs.pop_front()
    }

    /// Feeds bytes read from the stream. An error means the peer is refused.
    pub fn handle_input(&mut self, mut bytes: &[u8]) -> Result<(), HandshakeError> {
        let result = loop {
            if matches!(self.stage, Stage::Ended) {
                if let Some(HandshakeOutput::Established(session)) = self.outputs.back_mut() {
                    // The peer's first records, sent right after the handshake. An error in
                    // them is kept by the receiver: its `next_frame` returns it.
                    let _ = session.receiver.push(bytes);
                    return Ok(());
                }
                break Err(HandshakeError::Ended);
            }
            match self.take_message(&mut bytes) {
                Ok(Some(message)) => {
                    if let Err(e) = self.step(&message) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            self.stage = Stage::Ended;
            self.input = Vec::new();
        }
        result
    }

    /// Which message of the handshake is expected next (1 to 3).
    fn expected(&self) -> u8 {
        match self.stage {
            Stage::AwaitFirst { .. } => 1,
            Stage::AwaitAnswer(_) => 2,
            Stage::AwaitLast { .. } | Stage::Ended => 3,
        }
    }

    /// Moves bytes into the message in progress; the message once complete.
    fn take_message(&mut self, bytes: &mut &[u8]) -> Result<Option<Vec<u8>>, HandshakeError> {
        let need = match self.input.first_chunk::<MSG_LEN_PREFIX>() {
            Some(len) => MSG_LEN_PREFIX + usize::from(u16::from_be_bytes(*len)),
            None => MSG_LEN_PREFIX,
        };
        let take = (need - self.input.len()).min(bytes.len());
        self.input.extend_from_slice(&bytes[..take]);
        *bytes = &bytes[take..];
        let Some(len) = self.input.first_chunk::<MSG_LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if len > MAX_HANDSHAKE_MSG {
            return Err(HandshakeError::TooLong {
                message: self.expected(),
                len,
            });
        }
        if need == MSG_LEN_PREFIX && len > 0 {
            // Only the length was in: read the body from what is left.
            return self.take_message(bytes);
        }
        if self.input.len() < MSG_LEN_PREFIX + len {
            return Ok(None);
        }
        let mut message = std::mem::take(&mut self.input);
        message.drain(..MSG_LEN_PREFIX);
        Ok(Some(message))
    }

    /// Processes one complete handshake message.
    fn step(&mut self, message: &[u8]) -> Result<(), HandshakeError> {
        let mut scratch = [0u8; MAX_HANDSHAKE_MSG];
        match std::mem::replace(&mut self.stage, Stage::Ended) {
            Stage::AwaitFirst {
                local_private,
                psks,
            } => {
                let mut chosen = None;
                for (index, psk) in psks.iter().enumerate() {
                    let mut state =
                        builder(&local_private, psk)?
                            .build_responder()
                            .map_err(|error| HandshakeError::Local {
                                step: "building the responder",
                                error,
                            })?;
                    if state.read_message(message, &mut scratch).is_ok() {
                        chosen = Some((index, state));
                        break;
                    }
                }
                let (secret_index, mut state) = chosen.ok_or(HandshakeError::BadSecret)?;
                let answer = write(&mut state, "writing message 2")?;
                self.outputs.push_back(HandshakeOutput::Transmit(answer));
                self.stage = Stage::AwaitLast {
                    state: Box::new(state),
                    secret_index,
                };
            }
            Stage::AwaitAnswer(mut state) => {
                // The responder answers only when our first message authenticated under one
                // of its secrets; an answer that does not is not from a holder of ours.
                state
                    .read_message(message, &mut scratch)
                    .map_err(|_| HandshakeError::BadSecret)?;
                let last = write(&mut state, "writing message 3")?;
                self.outputs.push_back(HandshakeOutput::Transmit(last));
                self.establish(*state, 0)?;
            }
            Stage::AwaitLast {
                mut state,
                secret_index,
            } => {
                state
                    .read_message(message, &mut scratch)
                    .map_err(|error| HandshakeError::Unauthentic { message: 3, error })?;
                self.establish(*state, secret_index)?;
            }
            Stage::Ended => return Err(HandshakeError::Ended),
        }
        Ok(())
    }

    /// Queues the session of a completed handshake.
    fn establish(
        &mut self,
        state: HandshakeState,
        secret_index: usize,
    ) -> Result<(), HandshakeError> {
        let local = |step| move |error| HandshakeError::Local { step, error };
        let remote_static: [u8; 32] = state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(HandshakeError::Local {
                step: "reading the peer's static key",
                error: snow::Error::Input,
            })?;
        let cipher = Arc::new(
            state
                .into_stateless_transport_mode()
                .map_err(local("entering transport mode"))?,
        );
        let session = Session {
            sender: Sender::sealed(cipher.clone()),
            receiver: Receiver::sealed(cipher, self.frame_limit),
            remote_static,
            secret_index,
        };
        self.outputs
            .push_back(HandshakeOutput::Established(Box::new(session)));
        Ok(())
    }
}
