//! One end of a simulated connection's byte stream, through the real sans-IO code: the
//! Noise handshake when the node holds a cluster secret, then frames sealed into records
//! (or plain frames without a secret) and read back by the one frame reader. The [`Node`]
//! state machine never sees any of it: it gets the peer's hello and messages, as in the
//! agent.
//!
//! [`Node`]: overlay_proto::node::Node

use overlay_proto::codec::{self, MAX_FRAME_LEN, MAX_HELLO_LEN};
use overlay_proto::message::{negotiate, Hello, Message};
use overlay_proto::noise::{
    Handshake, HandshakeError, HandshakeOutput, Keypair, Psk, Receiver, Sender,
};

/// A node's identity and the secrets it holds (the first starts its handshakes).
#[derive(Debug, Clone)]
pub struct SimAuth {
    pub keys: Keypair,
    pub secrets: Vec<Psk>,
}

impl SimAuth {
    /// A fresh identity holding `secrets` (current first, then the next one of a rotation).
    pub fn new(secrets: &[&str]) -> SimAuth {
        SimAuth {
            keys: Keypair::generate(),
            secrets: secrets.iter().map(|s| Psk::derive(s.as_bytes())).collect(),
        }
    }
}

/// What the end asks of the simulation.
#[derive(Debug)]
pub enum Out {
    /// Send these bytes to the other end.
    Transmit(Vec<u8>),
    /// The peer's hello arrived: the connection is up for the node.
    Hello(Box<Hello>),
    /// A message arrived.
    Message(Message),
}

/// Why an end gave up on its connection.
#[derive(Debug)]
pub struct Refusal {
    /// The peer does not hold a secret this end accepts.
    pub bad_secret: bool,
    /// What went wrong, for the log.
    pub reason: String,
}

enum State {
    Handshaking(Handshake),
    Open { sender: Sender, receiver: Receiver },
}

/// One end of a connection; see the module docs.
pub struct Wire {
    state: State,
    /// Our hello frame, sent first once the channel is open.
    hello: Vec<u8>,
    hello_seen: bool,
    /// Our protocol version range, and the version negotiated once the peer's hello arrived.
    range: (u16, u16),
    version: u16,
}

impl Wire {
    /// The end of the dialing (`initiator`) or accepting node, which sends `hello`.
    pub fn new(auth: Option<&SimAuth>, initiator: bool, hello: &Hello) -> (Wire, Vec<Out>) {
        let mut frame = Vec::new();
        codec::encode_hello(hello, &mut frame);
        let state = match auth {
            None => State::Open {
                sender: Sender::plain(),
                receiver: Receiver::plain(MAX_HELLO_LEN),
            },
            Some(a) if initiator => State::Handshaking(
                Handshake::initiator(a.keys.private(), &a.secrets[0], MAX_HELLO_LEN)
                    .expect("valid keys"),
            ),
            Some(a) => State::Handshaking(Handshake::responder(
                a.keys.private(),
                a.secrets.iter().cloned(),
                MAX_HELLO_LEN,
            )),
        };
        let mut wire = Wire {
            state,
            hello: frame,
            hello_seen: false,
            range: (hello.proto_min, hello.proto_max),
            version: hello.proto_min,
        };
        let mut outs = Vec::new();
        if matches!(wire.state, State::Open { .. }) {
            outs.push(Out::Transmit(wire.seal_hello()));
        } else {
            wire.pump(&mut outs)
                .expect("nothing received yet, nothing to refuse");
        }
        (wire, outs)
    }

    /// Whether the peer's hello arrived (the node knows the connection).
    pub fn is_up(&self) -> bool {
        self.hello_seen
    }

    /// Bytes arrived from the other end.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<Out>, Refusal> {
        let mut outs = Vec::new();
        match &mut self.state {
            State::Handshaking(hs) => {
                hs.handle_input(bytes).map_err(|e| Refusal {
                    bad_secret: matches!(e, HandshakeError::BadSecret),
                    reason: e.to_string(),
                })?;
                self.pump(&mut outs)?;
            }
            State::Open { receiver, .. } => {
                receiver.push(bytes).map_err(malformed)?;
                self.frames(&mut outs)?;
            }
        }
        Ok(outs)
    }

    /// The wire bytes of `msg` (the connection is up).
    pub fn seal(&mut self, msg: &Message) -> Vec<u8> {
        let mut frame = Vec::new();
        codec::encode_message_in(msg, self.version, &mut frame).expect("message fits in a frame");
        self.seal_frame(&frame)
    }

    fn seal_hello(&mut self) -> Vec<u8> {
        let hello = std::mem::take(&mut self.hello);
        self.seal_frame(&hello)
    }

    fn seal_frame(&mut self, frame: &[u8]) -> Vec<u8> {
        let State::Open { sender, .. } = &mut self.state else {
            panic!("the node sends only on connections that are up");
        };
        let mut wire = Vec::new();
        sender.seal(frame, &mut wire).expect("nonces last");
        wire
    }

    /// Takes the handshake's outputs; once established, opens the channel.
    fn pump(&mut self, outs: &mut Vec<Out>) -> Result<(), Refusal> {
        let State::Handshaking(hs) = &mut self.state else {
            return Ok(());
        };
        while let Some(out) = hs.poll_output() {
            match out {
                HandshakeOutput::Transmit(bytes) => outs.push(Out::Transmit(bytes)),
                HandshakeOutput::Established(session) => {
                    self.state = State::Open {
                        sender: session.sender,
                        receiver: session.receiver,
                    };
                    outs.push(Out::Transmit(self.seal_hello()));
                    // Records that followed the last handshake message.
                    return self.frames(outs);
                }
            }
        }
        Ok(())
    }

    /// Takes every complete frame: the hello first, then messages.
    fn frames(&mut self, outs: &mut Vec<Out>) -> Result<(), Refusal> {
        let State::Open { receiver, .. } = &mut self.state else {
            return Ok(());
        };
        while let Some(body) = receiver.next_frame().map_err(malformed)? {
            if self.hello_seen {
                let msg = codec::decode_message_in(&body, self.version).map_err(malformed)?;
                outs.extend(msg.map(Out::Message));
            } else {
                let hello = codec::decode_hello(&body).map_err(malformed)?;
                self.version = negotiate(self.range, (hello.proto_min, hello.proto_max))
                    .ok_or_else(|| malformed("no common protocol version"))?;
                self.hello_seen = true;
                receiver.set_limit(MAX_FRAME_LEN);
                outs.push(Out::Hello(Box::new(hello)));
            }
        }
        Ok(())
    }
}

fn malformed(e: impl std::fmt::Display) -> Refusal {
    Refusal {
        bad_secret: false,
        reason: e.to_string(),
    }
}
