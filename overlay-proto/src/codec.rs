//! Framing of control messages on the TCP side of the listen port.
//!
//! # Frames
//! A control connection carries a sequence of length-prefixed frames, in both directions:
//! ```text
//!  0       1       2       3
//! +-------+-------+-------+-------+
//! |    body length (u32, BE)      |
//! +-------+-------+-------+-------+
//! | body (body length bytes) ...
//! ```
//! The first frame each side sends is a hello, every later frame a message. A receiver reads
//! the 4-byte prefix and refuses a length over the limit — [`MAX_HELLO_LEN`] for the hello,
//! [`MAX_FRAME_LEN`] afterwards — with [`CodecError::FrameTooLarge`] from the prefix alone,
//! before reading or allocating the body ([`frame_len`]). [`FrameBuffer`] does this
//! incrementally on bytes as they arrive; [`decode_hello`] and [`decode_message`] take a body.
//!
//! # Hello body
//! ```text
//!  0       1       2       3
//! +-------+-------+-------+-------+
//! |  'O'  |  'V'  |  'L'  |  'Y'  |  magic
//! +-------+-------+-------+-------+
//! |   proto_min   |   proto_max   |  u16 BE each
//! +-------+-------+-------+-------+
//! | postcard(HelloBody) ...
//! +-------------------------------
//! | fields appended by newer versions (ignored) ...
//! ```
//! The first [`HELLO_FIXED_LEN`] bytes are frozen: every version, past and future, writes and
//! reads them the same way, so two builds can always learn each other's version range and
//! [`negotiate`](crate::message::negotiate). A body not starting with [`HELLO_MAGIC`] (say, an
//! HTTP client dialing the wrong port) gives [`CodecError::BadMagic`]. A newer version may only
//! *append* fields to the postcard part; bytes after the [`HelloBody`] are therefore ignored,
//! and a body that does not decode reports the sender's version range
//! ([`CodecError::BadHelloBody`]), so a version mismatch can be told from garbage.
//!
//! # Message body
//! ```text
//! +-------+-------------------------------
//! | type  | postcard(payload) ...
//! +-------+-------------------------------
//! ```
//! | type | message                   | payload       |
//! |------|---------------------------|---------------|
//! | 1    | [`Message::Gossip`]       | [`Gossip`]    |
//! | 2    | [`Message::Heartbeat`]    | [`Heartbeat`] |
//! | 3    | [`Message::HeartbeatAck`] | [`Heartbeat`] |
//! | 4    | [`Message::Leave`]        | (none)        |
//! | 5    | [`Message::Digest`]       | [`Digest`](crate::message::Digest) |
//! | 6    | [`Message::Summary`]      | [`Summary`](crate::message::Summary) |
//! | 7    | [`Message::Keep`]         | `bool`        |
//! | 8    | [`Message::Redirect`]     | `Vec<SocketAddr>` (at most [`MAX_REDIRECT`]) |
//! | 9    | [`Message::Beat`]         | [`Beat`](crate::message::Beat) |
//! | 10   | [`Message::Graft`]        | `Vec<PeerName>` |
//! | 11   | [`Message::Prune`]        | (none)        |
//! | 12   | [`Message::Buckets`]      | `Vec<u64>` ([`BUCKETS`](crate::topology::BUCKETS) hashes) |
//! | 13   | [`Message::RangeDigest`]  | [`RangeDigest`](crate::message::RangeDigest) |
//! | 14   | [`Message::SummaryCheck`] | [`Summary`](crate::message::Summary) |
//!
//! A type this build does not know decodes to `Ok(None)` and is skipped, so new messages can be
//! rolled out without breaking older peers. For known types the payload must fill the body
//! exactly: trailing bytes are an error ([`CodecError::TrailingBytes`]).
//!
//! # Versions
//! Messages are encoded and decoded in the version the connection negotiated
//! ([`encode_message_in`], [`decode_message_in`]); [`encode_message`] and [`decode_message`]
//! use this build's newest, [`PROTOCOL_MAX`].
//!
//! | version | change |
//! |---------|--------|
//! | 1       | the first |
//! | 2       | a [`PeerRecord`](crate::topology::PeerRecord) ends with `identity`, an `Option<[u8; 32]>` (`00`, or `01` and 32 bytes) |
//! | 3       | lazy push and bucketed anti-entropy: messages 9–14 (the encoding of every message is that of version 2; a node sends them only over connections of version 3 or later) |
//!
//! Over a version 1 connection records go without their identity, and arrive with `None`
//! (the merge order prefers the same record with its identity, see
//! [`PeerRecord`](crate::topology::PeerRecord)). Every other message is the same in both.
//!
//! # Postcard, in brief
//! Integers wider than a byte are LEB128 varints (`300` is `ac 02`); `u8` and `bool` are one
//! byte; `Option` is a `00`/`01` tag then the value; strings and `Vec`s are a varint length
//! then the elements; structs are their fields in declaration order. A `SocketAddr` is a variant
//! tag (`00` V4, `01` V6), the address octets and the port as a varint: an IPv6 address's
//! flow info and scope id are *not* carried. An `Ipv4Net` is its 4 address octets then the
//! prefix length. See the fixtures in the tests for annotated examples.
//!
//! # Untrusted input
//! Decoding never panics, whatever the bytes. Records in a decoded [`Gossip`] are *not*
//! validated here (the node checks them against the cluster configuration with
//! [`PeerRecord::validate`](crate::topology::PeerRecord::validate)); peer names are, by
//! [`PeerName`](crate::PeerName)'s deserializer. Memory stays proportional to the body: a
//! string's declared length is checked against the remaining input before anything is
//! allocated, and postcard hands serde a sequence's declared length as a preallocation hint
//! only when that many bytes remain, which serde further caps at 1 MiB.
//!
//! [`Gossip`]: crate::message::Gossip
//! [`Heartbeat`]: crate::message::Heartbeat

mod frame_buffer;
mod v1;

pub use frame_buffer::FrameBuffer;

use crate::message::{Hello, HelloBody, Message, PROTOCOL_MAX};
use postcard::ser_flavors::Flavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest accepted frame body. The node keeps gossip messages near 256 KiB and a digest of
/// the largest topology ([`MAX_PEERS`](crate::topology::MAX_PEERS) records) well below this,
/// and decoding may take a multiple of the frame in memory, so the cap stays small.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest accepted hello frame body (before the peer is known).
pub const MAX_HELLO_LEN: usize = 4096;
/// Length of the frame length prefix.
pub const LEN_PREFIX: usize = 4;
/// The first bytes of every hello body.
pub const HELLO_MAGIC: [u8; 4] = *b"OVLY";
/// Length of the frozen part of a hello body: magic and version range.
pub const HELLO_FIXED_LEN: usize = 8;
/// The first protocol version whose gossiped records carry the owner's identity key.
pub const RECORD_IDENTITY_VERSION: u16 = 2;

/// Message type bytes (see the module docs).
mod ty {
    pub const GOSSIP: u8 = 1;
    pub const HEARTBEAT: u8 = 2;
    pub const HEARTBEAT_ACK: u8 = 3;
    pub const LEAVE: u8 = 4;
    pub const DIGEST: u8 = 5;
    pub const SUMMARY: u8 = 6;
    pub const KEEP: u8 = 7;
    pub const REDIRECT: u8 = 8;
    pub const BEAT: u8 = 9;
    pub const GRAFT: u8 = 10;
    pub const PRUNE: u8 = 11;
    pub const BUCKETS: u8 = 12;
    pub const RANGE_DIGEST: u8 = 13;
    pub const SUMMARY_CHECK: u8 = 14;
}

/// Most addresses a [`Message::Redirect`] may carry; a longer one is a decoding error.
pub const MAX_REDIRECT: usize = 16;

/// Why bytes could not be decoded, or a message not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// frame length over the limit
    #[error("frame of {0} bytes exceeds the limit of {1} bytes")]
    FrameTooLarge(usize, usize),
    /// hello body shorter than its fixed part
    #[error("hello of {0} bytes is shorter than its {HELLO_FIXED_LEN}-byte fixed part")]
    HelloTruncated(usize),
    /// hello body without the magic: the other side does not speak this protocol
    #[error("hello starts with {0:02x?}, not the magic \"OVLY\": not an overlay peer")]
    BadMagic([u8; 4]),
    /// hello body fields after the version range are malformed
    #[error("hello of a peer speaking versions {proto_min}..={proto_max} is malformed: {error}")]
    BadHelloBody {
        /// Oldest version the sender claims to speak.
        proto_min: u16,
        /// Newest version the sender claims to speak.
        proto_max: u16,
        /// What postcard could not decode.
        error: postcard::Error,
    },
    /// message body without a type byte
    #[error("message frame has an empty body (no type byte)")]
    EmptyMessage,
    /// message payload malformed
    #[error("payload of message type {ty} is malformed: {error}")]
    BadPayload {
        /// The message type byte.
        ty: u8,
        /// What postcard could not decode.
        error: postcard::Error,
    },
    /// a redirect listing more addresses than allowed
    #[error("redirect lists {0} addresses, more than the limit of {1}")]
    TooManyAddresses(usize, usize),
    /// bytes left after a message payload
    #[error("message type {ty} has {extra} bytes after its payload")]
    TrailingBytes {
        /// The message type byte.
        ty: u8,
        /// Number of bytes left over.
        extra: usize,
    },
}

/// Reads a frame body length from its prefix, refusing lengths over `limit`.
pub fn frame_len(prefix: [u8; LEN_PREFIX], limit: usize) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(CodecError::FrameTooLarge(len, limit));
    }
    Ok(len)
}

/// Appends the frame (prefix and body) of `hello` to `out`.
pub fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    let start = open_frame(out);
    out.extend_from_slice(&HELLO_MAGIC);
    out.extend_from_slice(&hello.proto_min.to_be_bytes());
    out.extend_from_slice(&hello.proto_max.to_be_bytes());
    // A HelloBody is at most about 100 bytes (the name is at most 63), far below both limits, and
    // none of its fields' serializers can fail.
    let written = match append_postcard(&hello.body, out, start + LEN_PREFIX + MAX_HELLO_LEN) {
        Ok(()) => close_frame(out, start, MAX_HELLO_LEN),
        Err(_) => {
            out.truncate(start);
            Err(CodecError::FrameTooLarge(usize::MAX, MAX_HELLO_LEN))
        }
    };
    debug_assert!(
        written.is_ok(),
        "a hello always fits its frame: {written:?}"
    );
}

/// Decodes a hello frame body.
pub fn decode_hello(body: &[u8]) -> Result<Hello, CodecError> {
    if body.len() > MAX_HELLO_LEN {
        return Err(CodecError::FrameTooLarge(body.len(), MAX_HELLO_LEN));
    }
    if let Some(magic) = body.first_chunk::<4>() {
        if *magic != HELLO_MAGIC {
            return Err(CodecError::BadMagic(*magic));
        }
    }
    let Some((fixed, rest)) = body.split_first_chunk::<HELLO_FIXED_LEN>() else {
        return Err(CodecError::HelloTruncated(body.len()));
    };
    let proto_min = u16::from_be_bytes([fixed[4], fixed[5]]);
    let proto_max = u16::from_be_bytes([fixed[6], fixed[7]]);
    // Trailing bytes are fields of a newer version: ignored (see the module docs).
    let (body, _newer) =
        postcard::take_from_bytes::<HelloBody>(rest).map_err(|error| CodecError::BadHelloBody {
            proto_min,
            proto_max,
            error,
        })?;
    Ok(Hello {
        proto_min,
        proto_max,
        body,
    })
}

/// Appends the frame (prefix and body) of `msg` in this build's newest protocol version to
/// `out`; see [`encode_message_in`].
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_message_in(msg, PROTOCOL_MAX, out)
}

/// Appends the frame (prefix and body) of `msg` in protocol `version` (the one negotiated on
/// the connection it is sent on) to `out`.
///
/// A message whose body would exceed [`MAX_FRAME_LEN`] is refused with
/// [`CodecError::FrameTooLarge`]; `out` is then left as it was.
pub fn encode_message_in(msg: &Message, version: u16, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = open_frame(out);
    let cap = start + LEN_PREFIX + MAX_FRAME_LEN;
    let written = match msg {
        Message::Gossip(g) if version < RECORD_IDENTITY_VERSION => {
            typed(out, cap, ty::GOSSIP, &v1::GossipRef::new(g))
        }
        Message::Gossip(g) => typed(out, cap, ty::GOSSIP, g),
        Message::Heartbeat(h) => typed(out, cap, ty::HEARTBEAT, h),
        Message::HeartbeatAck(h) => typed(out, cap, ty::HEARTBEAT_ACK, h),
        Message::Leave => typed(out, cap, ty::LEAVE, &()),
        Message::Digest(d) => typed(out, cap, ty::DIGEST, d),
        Message::Summary(x) => typed(out, cap, ty::SUMMARY, x),
        Message::Keep(keep) => typed(out, cap, ty::KEEP, keep),
        Message::Redirect(addrs) => typed(out, cap, ty::REDIRECT, addrs),
        Message::Beat(b) => typed(out, cap, ty::BEAT, b),
        Message::Graft(names) => typed(out, cap, ty::GRAFT, names),
        Message::Prune => typed(out, cap, ty::PRUNE, &()),
        Message::SummaryCheck(x) => typed(out, cap, ty::SUMMARY_CHECK, x),
        Message::Buckets(hashes) => typed(out, cap, ty::BUCKETS, hashes),
        Message::RangeDigest(d) => typed(out, cap, ty::RANGE_DIGEST, d),
    };
    match written {
        Ok(()) => close_frame(out, start, MAX_FRAME_LEN),
        Err(payload) => {
            out.truncate(start);
            Err(CodecError::FrameTooLarge(
                payload.saturating_add(1),
                MAX_FRAME_LEN,
            ))
        }
    }
}

/// Appends a message's type byte and payload (postcard writes nothing for `()`); on
/// overflow of `cap`, the payload's size.
fn typed<T: Serialize>(out: &mut Vec<u8>, cap: usize, ty: u8, payload: &T) -> Result<(), usize> {
    out.push(ty);
    append_postcard(payload, out, cap).map_err(|_| payload_size(payload))
}

/// Decodes a message frame body in this build's newest protocol version; see
/// [`decode_message_in`].
pub fn decode_message(body: &[u8]) -> Result<Option<Message>, CodecError> {
    decode_message_in(body, PROTOCOL_MAX)
}

/// Decodes a message frame body in protocol `version` (the one negotiated on the connection
/// it came from); `Ok(None)` for a message type this build does not know.
pub fn decode_message_in(body: &[u8], version: u16) -> Result<Option<Message>, CodecError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge(body.len(), MAX_FRAME_LEN));
    }
    let Some((&ty, payload)) = body.split_first() else {
        return Err(CodecError::EmptyMessage);
    };
    let msg = match ty {
        ty::GOSSIP if version < RECORD_IDENTITY_VERSION => {
            Message::Gossip(decode_payload::<v1::GossipV1>(ty, payload)?.into())
        }
        ty::GOSSIP => Message::Gossip(decode_payload(ty, payload)?),
        ty::HEARTBEAT => Message::Heartbeat(decode_payload(ty, payload)?),
        ty::HEARTBEAT_ACK => Message::HeartbeatAck(decode_payload(ty, payload)?),
        ty::DIGEST => Message::Digest(decode_payload(ty, payload)?),
        ty::SUMMARY => Message::Summary(decode_payload(ty, payload)?),
        ty::KEEP => Message::Keep(decode_payload(ty, payload)?),
        ty::REDIRECT => {
            let addrs: Vec<std::net::SocketAddr> = decode_payload(ty, payload)?;
            if addrs.len() > MAX_REDIRECT {
                return Err(CodecError::TooManyAddresses(addrs.len(), MAX_REDIRECT));
            }
            Message::Redirect(addrs)
        }
        ty::BEAT => Message::Beat(decode_payload(ty, payload)?),
        ty::GRAFT => Message::Graft(decode_payload(ty, payload)?),
        ty::BUCKETS => Message::Buckets(decode_payload(ty, payload)?),
        ty::SUMMARY_CHECK => Message::SummaryCheck(decode_payload(ty, payload)?),
        ty::RANGE_DIGEST => Message::RangeDigest(decode_payload(ty, payload)?),
        ty::LEAVE if payload.is_empty() => Message::Leave,
        ty::PRUNE if payload.is_empty() => Message::Prune,
        ty::LEAVE | ty::PRUNE => {
            return Err(CodecError::TrailingBytes {
                ty,
                extra: payload.len(),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(msg))
}

fn decode_payload<T: DeserializeOwned>(ty: u8, payload: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|error| CodecError::BadPayload { ty, error })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            ty,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// Reserves the length prefix of a frame starting at the end of `out`; returns its offset.
fn open_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    start
}

/// Fills in the prefix of the frame at `start`, or removes the frame if its body is over `limit`.
fn close_frame(out: &mut Vec<u8>, start: usize, limit: usize) -> Result<(), CodecError> {
    let len = out.len() - start - LEN_PREFIX;
    match u32::try_from(len) {
        Ok(prefix) if len <= limit => {
            out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(CodecError::FrameTooLarge(len, limit))
        }
    }
}

/// The postcard size of `value`, for the error of an oversized message (the slow path only).
fn payload_size<T: Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Appends postcard of `value` to `out`, failing once `out` would grow past `cap` bytes.
fn append_postcard<T: Serialize>(
    value: &T,
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(value, Append { out, cap })
}

/// A postcard output appending to a `Vec` up to a length cap.
struct Append<'a> {
    out: &'a mut Vec<u8>,
    cap: usize,
}

impl Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.out.len() + data.len() > self.cap {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.out.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        Beat, Digest, DigestEntry, Gossip, Heartbeat, RangeDigest, Summary, PROTOCOL_MAX,
        PROTOCOL_MIN,
    };
    use crate::peer::PeerName;
    use crate::topology::{Claim, PeerRecord};
    use ipnet::Ipv4Net;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

    fn name(s: &str) -> PeerName {
        PeerName::new(s).expect("valid name")
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    /// The fixtures below are version 1 unless named otherwise.
    fn decode_v1(body: &[u8]) -> Result<Option<Message>, CodecError> {
        decode_message_in(body, 1)
    }

    fn encode_v1(msg: &Message, out: &mut Vec<u8>) -> Result<(), CodecError> {
        encode_message_in(msg, 1, out)
    }

    static HELLO_FRAME: [u8; 30] = [
        0x00, 0x00, 0x00, 0x1a, // body length 26
        b'O', b'V', b'L', b'Y', // magic
        0x00, 0x01, 0x00, 0x01, // proto_min 1, proto_max 1
        0x02, b'a', b'1', // name "a1"
        0xb4, 0x24, // instance 0x1234
        0x00, 0xc0, 0xa8, 0x00, 0x01, 0xff, 0x34, // advertise V4 192.168.0.1:6783
        0x0a, 0x20, 0x00, 0x00, 0x0c, // cluster 10.32.0.0/12
        0x18, // subnet_prefix 24
    ];

    fn fixture_hello() -> Hello {
        Hello {
            proto_min: 1,
            proto_max: 1,
            body: HelloBody {
                name: name("a1"),
                instance: 0x1234,
                advertise: SocketAddr::from(([192, 168, 0, 1], 6783)),
                cluster: net("10.32.0.0/12"),
                subnet_prefix: 24,
            },
        }
    }

    static GOSSIP_FRAME: [u8; 35] = [
        0x00, 0x00, 0x00, 0x1f, // body length 31
        0x01, // type Gossip
        0x01, // full
        0x01, // 1 record
        0x02, b'a', b'1', // name "a1"
        0x03, // version 3
        0xb4, 0x24, // instance 0x1234
        0x00, 0xc0, 0xa8, 0x00, 0x01, 0xff, 0x34, // advertise V4 192.168.0.1:6783
        0x01, 0x0a, 0x20, 0x05, 0x00, 0x18, 0x02, // claim Some 10.32.5.0/24, epoch 2
        0x02, 0x02, b'b', b'2', 0x02, b'c', b'3', // connections ["b2", "c3"]
        0x00, // left false
    ];

    fn fixture_record() -> PeerRecord {
        PeerRecord {
            name: name("a1"),
            version: 3,
            instance: 0x1234,
            advertise: SocketAddr::from(([192, 168, 0, 1], 6783)),
            claim: Some(Claim {
                block: net("10.32.5.0/24"),
                epoch: 2,
            }),
            connections: vec![name("b2"), name("c3")],
            left: false,
            identity: None,
        }
    }

    fn fixture_gossip() -> Message {
        Message::Gossip(Gossip {
            full: true,
            records: vec![fixture_record()],
        })
    }

    /// [`GOSSIP_FRAME`] in version 2, the record carrying an identity key.
    static GOSSIP_FRAME_V2: [u8; 68] = [
        0x00, 0x00, 0x00, 0x40, // body length 64
        0x01, // type Gossip
        0x01, // full
        0x01, // 1 record
        0x02, b'a', b'1', // name "a1"
        0x03, // version 3
        0xb4, 0x24, // instance 0x1234
        0x00, 0xc0, 0xa8, 0x00, 0x01, 0xff, 0x34, // advertise V4 192.168.0.1:6783
        0x01, 0x0a, 0x20, 0x05, 0x00, 0x18, 0x02, // claim Some 10.32.5.0/24, epoch 2
        0x02, 0x02, b'b', b'2', 0x02, b'c', b'3', // connections ["b2", "c3"]
        0x00, // left false
        0x01, // identity Some, 32 bytes (no length):
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f,
    ];

    fn fixture_identity() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn fixture_gossip_v2() -> Message {
        Message::Gossip(Gossip {
            full: true,
            records: vec![PeerRecord {
                identity: Some(fixture_identity()),
                ..fixture_record()
            }],
        })
    }

    /// `msg` as it arrives over a version 1 connection: records without identity.
    fn as_v1(msg: &Message) -> Message {
        let mut msg = msg.clone();
        if let Message::Gossip(g) = &mut msg {
            for r in &mut g.records {
                r.identity = None;
            }
        }
        msg
    }

    static HEARTBEAT_FRAME: [u8; 7] = [
        0x00, 0x00, 0x00, 0x03, // body length 3
        0x02, // type Heartbeat
        0xac, 0x02, // seq 300
    ];

    static HEARTBEAT_ACK_FRAME: [u8; 7] = [
        0x00, 0x00, 0x00, 0x03, // body length 3
        0x03, // type HeartbeatAck
        0xac, 0x02, // seq 300
    ];

    static LEAVE_FRAME: [u8; 5] = [
        0x00, 0x00, 0x00, 0x01, // body length 1
        0x04, // type Leave
    ];

    static DIGEST_FRAME: [u8; 12] = [
        0x00, 0x00, 0x00, 0x08, // body length 8
        0x05, // type Digest
        0x01, // 1 entry
        0x02, b'a', b'1', // name "a1"
        0x03, // version 3
        0xb4, 0x24, // instance 0x1234
    ];

    fn message_fixtures() -> [(&'static [u8], Message); 5] {
        [
            (&GOSSIP_FRAME, fixture_gossip()),
            (&HEARTBEAT_FRAME, Message::Heartbeat(Heartbeat { seq: 300 })),
            (
                &HEARTBEAT_ACK_FRAME,
                Message::HeartbeatAck(Heartbeat { seq: 300 }),
            ),
            (&LEAVE_FRAME, Message::Leave),
            (
                &DIGEST_FRAME,
                Message::Digest(Digest {
                    entries: vec![DigestEntry {
                        name: name("a1"),
                        version: 3,
                        instance: 0x1234,
                    }],
                }),
            ),
        ]
    }

    /// Splits a whole frame into its body, checking the prefix.
    fn body_of(frame: &[u8]) -> &[u8] {
        let (prefix, body) = frame.split_first_chunk::<LEN_PREFIX>().expect("prefix");
        assert_eq!(frame_len(*prefix, MAX_FRAME_LEN), Ok(body.len()));
        body
    }

    #[test]
    fn test_deconstruct() {
        assert_eq!(decode_hello(body_of(&HELLO_FRAME)), Ok(fixture_hello()));
        for (frame, msg) in message_fixtures() {
            assert_eq!(decode_v1(body_of(frame)), Ok(Some(msg)));
        }
    }

    #[test]
    fn test_construct() {
        let mut out = vec![0xee];
        encode_hello(&fixture_hello(), &mut out);
        assert_eq!(out[0], 0xee, "appends after what is there");
        assert_eq!(&out[1..], &HELLO_FRAME[..]);
        for (frame, msg) in message_fixtures() {
            let mut out = vec![0xee];
            encode_v1(&msg, &mut out).expect("fits");
            assert_eq!(&out[1..], frame, "{msg:?}");
        }
    }

    #[test]
    fn version_2_records_end_with_the_identity() {
        assert_eq!(
            decode_message_in(body_of(&GOSSIP_FRAME_V2), 2),
            Ok(Some(fixture_gossip_v2()))
        );
        let mut out = vec![0xee];
        encode_message_in(&fixture_gossip_v2(), 2, &mut out).expect("fits");
        assert_eq!(&out[1..], &GOSSIP_FRAME_V2[..]);
        // Without an identity: one byte more than version 1, the `None`.
        let mut out = Vec::new();
        encode_message_in(&fixture_gossip(), 2, &mut out).expect("fits");
        let mut v1_and_none = GOSSIP_FRAME.to_vec();
        v1_and_none.push(0x00);
        v1_and_none[3] += 1;
        assert_eq!(out, v1_and_none);
        assert_eq!(
            decode_message_in(body_of(&out), 2),
            Ok(Some(fixture_gossip()))
        );
        // The default functions speak the newest version, whose records are version 2's.
        assert_eq!(PROTOCOL_MAX, 3);
        assert_eq!(
            decode_message(body_of(&GOSSIP_FRAME_V2)),
            Ok(Some(fixture_gossip_v2()))
        );
    }

    #[test]
    fn version_1_carries_records_without_identity_byte_for_byte() {
        // The identity is left out: exactly the bytes of a version 1 build.
        let mut out = vec![0xee];
        encode_message_in(&fixture_gossip_v2(), 1, &mut out).expect("fits");
        assert_eq!(&out[1..], &GOSSIP_FRAME[..]);
        // And arrives as None.
        assert_eq!(decode_v1(body_of(&out[1..])), Ok(Some(fixture_gossip())));
        // Reading one version as the other fails cleanly.
        assert_eq!(
            decode_v1(body_of(&GOSSIP_FRAME_V2)),
            Err(CodecError::TrailingBytes { ty: 1, extra: 33 })
        );
        assert_eq!(
            decode_message_in(body_of(&GOSSIP_FRAME), 2),
            Err(CodecError::BadPayload {
                ty: 1,
                error: postcard::Error::DeserializeUnexpectedEnd
            })
        );
    }

    #[test]
    fn other_messages_are_the_same_in_both_versions() {
        for (frame, msg) in message_fixtures().into_iter().skip(1) {
            let mut out = Vec::new();
            encode_message_in(&msg, 2, &mut out).expect("fits");
            assert_eq!(&out[..], frame, "{msg:?}");
            assert_eq!(decode_message_in(body_of(frame), 2), Ok(Some(msg)));
        }
    }

    static BEAT_FRAME: [u8; 14] = [
        0x00, 0x00, 0x00, 0x0a, // body length 10
        0x09, // type Beat
        0xac, 0x02, // seq 300
        0x01, // 1 announcement
        0x02, b'a', b'1', // name "a1"
        0x03, // version 3
        0xb4, 0x24, // instance 0x1234
    ];

    static GRAFT_FRAME: [u8; 12] = [
        0x00, 0x00, 0x00, 0x08, // body length 8
        0x0a, // type Graft
        0x02, // 2 names
        0x02, b'a', b'1', // "a1"
        0x02, b'b', b'2', // "b2"
    ];

    static PRUNE_FRAME: [u8; 5] = [
        0x00, 0x00, 0x00, 0x01, // body length 1
        0x0b, // type Prune
    ];

    static BUCKETS_FRAME: [u8; 9] = [
        0x00, 0x00, 0x00, 0x05, // body length 5
        0x0c, // type Buckets
        0x02, // 2 hashes (a node sends 64)
        0x00, // 0
        0xac, 0x02, // 300
    ];

    static SUMMARY_CHECK_FRAME: [u8; 8] = [
        0x00, 0x00, 0x00, 0x04, // body length 4
        0x0e, // type SummaryCheck
        0x02, // 2 records
        0xac, 0x02, // hash 300
    ];

    static RANGE_DIGEST_FRAME: [u8; 14] = [
        0x00, 0x00, 0x00, 0x0a, // body length 10
        0x0d, // type RangeDigest
        0x81, 0x01, // mask 0x81: buckets 0 and 7
        0x01, // 1 entry
        0x02, b'a', b'1', // name "a1"
        0x03, // version 3
        0xb4, 0x24, // instance 0x1234
    ];

    #[test]
    fn version_3_lazy_push_and_bucket_messages() {
        let fixtures = [
            (
                &BEAT_FRAME[..],
                Message::Beat(Beat {
                    seq: 300,
                    have: vec![DigestEntry {
                        name: name("a1"),
                        version: 3,
                        instance: 0x1234,
                    }],
                }),
            ),
            (
                &GRAFT_FRAME[..],
                Message::Graft(vec![name("a1"), name("b2")]),
            ),
            (&PRUNE_FRAME[..], Message::Prune),
            (&BUCKETS_FRAME[..], Message::Buckets(vec![0, 300])),
            (
                &SUMMARY_CHECK_FRAME[..],
                Message::SummaryCheck(Summary {
                    records: 2,
                    hash: 300,
                }),
            ),
            (
                &RANGE_DIGEST_FRAME[..],
                Message::RangeDigest(RangeDigest {
                    mask: 0x81,
                    entries: vec![DigestEntry {
                        name: name("a1"),
                        version: 3,
                        instance: 0x1234,
                    }],
                }),
            ),
        ];
        for (frame, msg) in fixtures {
            let mut out = Vec::new();
            encode_message_in(&msg, 3, &mut out).expect("fits");
            assert_eq!(&out[..], frame, "{msg:?}");
            assert_eq!(decode_message_in(body_of(frame), 3), Ok(Some(msg)));
        }
        // Version 3 records are version 2's.
        let mut out = Vec::new();
        encode_message_in(&fixture_gossip_v2(), 3, &mut out).expect("fits");
        assert_eq!(&out[..], &GOSSIP_FRAME_V2[..]);
        let mut prune_with_payload = body_of(&PRUNE_FRAME).to_vec();
        prune_with_payload.push(0);
        assert_eq!(
            decode_message_in(&prune_with_payload, 3),
            Err(CodecError::TrailingBytes { ty: 11, extra: 1 })
        );
    }

    #[test]
    fn malformed_identities_are_errors() {
        let mut bad_tag = body_of(&GOSSIP_FRAME_V2).to_vec();
        bad_tag[31] = 0x02; // the identity's Option tag
        assert_eq!(
            decode_message_in(&bad_tag, 2),
            Err(CodecError::BadPayload {
                ty: 1,
                error: postcard::Error::DeserializeBadOption
            })
        );
        let body = body_of(&GOSSIP_FRAME_V2);
        for len in 0..body.len() {
            assert!(decode_message_in(&body[..len], 2).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn hello_of_this_build_carries_its_version_range() {
        let mut hello = fixture_hello();
        (hello.proto_min, hello.proto_max) = (PROTOCOL_MIN, PROTOCOL_MAX);
        let mut out = Vec::new();
        encode_hello(&hello, &mut out);
        assert_eq!(decode_hello(body_of(&out)), Ok(hello));
    }

    #[test]
    fn hello_fixed_part_outlives_body_changes() {
        // A future version with a different body: its version range is still readable.
        let mut body = b"OVLY\x00\x02\x00\x07".to_vec();
        body.push(0xff); // not a name length postcard can satisfy
        assert_eq!(
            decode_hello(&body),
            Err(CodecError::BadHelloBody {
                proto_min: 2,
                proto_max: 7,
                error: postcard::Error::DeserializeUnexpectedEnd,
            })
        );
        // A future version appending fields to the body: they are ignored.
        let mut extended = body_of(&HELLO_FRAME).to_vec();
        extended.extend_from_slice(&[0x01, 0x02, 0x03]);
        assert_eq!(decode_hello(&extended), Ok(fixture_hello()));
    }

    #[test]
    fn hello_without_magic_is_refused_distinctly() {
        assert_eq!(
            decode_hello(b"GET / HTTP/1.1\r\n"),
            Err(CodecError::BadMagic(*b"GET "))
        );
        assert_eq!(decode_hello(b"SSH-"), Err(CodecError::BadMagic(*b"SSH-")));
        // Too short to tell: truncated.
        assert_eq!(decode_hello(b"OVL"), Err(CodecError::HelloTruncated(3)));
        assert_eq!(
            decode_hello(b"OVLY\x00"),
            Err(CodecError::HelloTruncated(5))
        );
    }

    #[test]
    fn truncated_input_is_rejected_at_every_length() {
        let hello = body_of(&HELLO_FRAME);
        for len in 0..hello.len() {
            assert!(decode_hello(&hello[..len]).is_err(), "hello cut at {len}");
        }
        for (frame, msg) in message_fixtures() {
            let body = body_of(frame);
            for len in 0..body.len() {
                assert!(decode_v1(&body[..len]).is_err(), "{msg:?} cut at {len}");
            }
        }
    }

    #[test]
    fn unknown_message_types_are_skipped() {
        assert_eq!(decode_message(&[0x00]), Ok(None));
        assert_eq!(decode_message(&[0x0f, 0xde, 0xad]), Ok(None));
        assert_eq!(decode_message(&[0xff]), Ok(None));
        assert_eq!(decode_v1(&[0x00]), Ok(None));
        assert_eq!(decode_v1(&[0x0f, 0xde, 0xad]), Ok(None));
        assert_eq!(decode_v1(&[0xff]), Ok(None));
    }

    #[test]
    fn trailing_bytes_and_empty_bodies_are_errors() {
        assert_eq!(decode_v1(&[]), Err(CodecError::EmptyMessage));
        let mut hb = body_of(&HEARTBEAT_FRAME).to_vec();
        hb.push(0x00);
        assert_eq!(
            decode_v1(&hb),
            Err(CodecError::TrailingBytes { ty: 2, extra: 1 })
        );
        let mut gossip = body_of(&GOSSIP_FRAME).to_vec();
        gossip.extend_from_slice(&[0x00, 0x00]);
        assert_eq!(
            decode_v1(&gossip),
            Err(CodecError::TrailingBytes { ty: 1, extra: 2 })
        );
        assert_eq!(
            decode_v1(&[0x04, 0x00]),
            Err(CodecError::TrailingBytes { ty: 4, extra: 1 })
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        // Peer names are validated by their deserializer.
        let mut bad_name = body_of(&GOSSIP_FRAME).to_vec();
        bad_name[5] = b' '; // "a1" -> "a "
        assert!(matches!(
            decode_v1(&bad_name),
            Err(CodecError::BadPayload { ty: 1, .. })
        ));
        // `left` is a bool: 0 or 1 only.
        let mut bad_bool = body_of(&GOSSIP_FRAME).to_vec();
        *bad_bool.last_mut().expect("nonempty") = 2;
        assert_eq!(
            decode_v1(&bad_bool),
            Err(CodecError::BadPayload {
                ty: 1,
                error: postcard::Error::DeserializeBadBool
            })
        );
        // A prefix length over 32 is not an Ipv4Net.
        let mut bad_net = body_of(&GOSSIP_FRAME).to_vec();
        bad_net[21] = 33;
        assert!(matches!(
            decode_v1(&bad_net),
            Err(CodecError::BadPayload { ty: 1, .. })
        ));
    }

    /// A gossip body declaring `count` records, or one record with `count` connections, or a
    /// record whose name is `count` bytes long, followed by far fewer bytes.
    fn huge_declared(count: u64, what: &str) -> Vec<u8> {
        let mut varint = Vec::new();
        let mut v = count;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                varint.push(byte);
                break;
            }
            varint.push(byte | 0x80);
        }
        let fixture = body_of(&GOSSIP_FRAME);
        let mut body = vec![0x01, 0x00]; // type Gossip, not full
        match what {
            "records" => {
                body.extend_from_slice(&varint);
                body.extend_from_slice(&fixture[3..]); // one whole record
            }
            "name" => {
                body.push(0x01); // 1 record
                body.extend_from_slice(&varint);
                body.extend_from_slice(b"b2c3");
            }
            _ => {
                // 1 record: the fixture's up to its connection list, then the count and 2 names.
                body.extend_from_slice(&fixture[2..23]);
                body.extend_from_slice(&varint);
                body.extend_from_slice(b"\x02b2\x02c3");
            }
        }
        body
    }

    #[test]
    fn huge_declared_bodies_are_well_formed_but_for_the_count() {
        // With an honest count, the same bytes decode: the tests below fail for the count alone.
        let mut honest = huge_declared(2, "connections");
        honest.push(0x00); // left
        let mut record = fixture_record();
        record.connections = vec![name("b2"), name("c3")];
        assert_eq!(
            decode_v1(&honest),
            Ok(Some(Message::Gossip(Gossip {
                full: false,
                records: vec![record],
            })))
        );
        assert_eq!(
            decode_v1(&huge_declared(1, "records")),
            Ok(Some(Message::Gossip(Gossip {
                full: false,
                records: vec![fixture_record()],
            })))
        );
        let mut named = huge_declared(4, "name");
        named.extend_from_slice(&body_of(&GOSSIP_FRAME)[6..]); // the fixture after its name
        let renamed = PeerRecord {
            name: name("b2c3"),
            ..fixture_record()
        };
        assert_eq!(
            decode_v1(&named),
            Ok(Some(Message::Gossip(Gossip {
                full: false,
                records: vec![renamed],
            })))
        );
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating_them() {
        // postcard gives serde a sequence's declared length as a capacity hint only when that
        // many input bytes remain, and serde caps the hint at 1 MiB; a string's length is
        // checked against the input before it is copied. Were the declared length ever
        // preallocated, these would abort (tens of GB) or panic (capacity overflow) instead
        // of returning an error.
        for count in [1 << 24, 1 << 28, 1 << 40, u64::MAX >> 1, u64::MAX] {
            for what in ["records", "connections", "name"] {
                let body = huge_declared(count, what);
                let got = decode_v1(&body);
                assert!(
                    matches!(
                        got,
                        Err(CodecError::BadPayload {
                            ty: 1,
                            error: postcard::Error::DeserializeUnexpectedEnd
                                | postcard::Error::DeserializeBadVarint
                        })
                    ),
                    "{what} x {count}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn oversized_prefixes_are_refused() {
        assert_eq!(
            frame_len([0x00, 0x00, 0x10, 0x00], MAX_HELLO_LEN),
            Ok(MAX_HELLO_LEN)
        );
        assert_eq!(
            frame_len([0x00, 0x00, 0x10, 0x01], MAX_HELLO_LEN),
            Err(CodecError::FrameTooLarge(4097, MAX_HELLO_LEN))
        );
        assert_eq!(
            frame_len([0x00, 0x10, 0x00, 0x00], MAX_FRAME_LEN),
            Ok(MAX_FRAME_LEN)
        );
        assert_eq!(
            frame_len([0x00, 0x10, 0x00, 0x01], MAX_FRAME_LEN),
            Err(CodecError::FrameTooLarge(MAX_FRAME_LEN + 1, MAX_FRAME_LEN))
        );
        assert_eq!(
            frame_len([0xff; 4], MAX_FRAME_LEN),
            Err(CodecError::FrameTooLarge(u32::MAX as usize, MAX_FRAME_LEN))
        );
        assert!(decode_hello(&vec![0; MAX_HELLO_LEN + 1]).is_err());
    }

    #[test]
    fn frame_size_limit_is_inclusive() {
        let mut out = vec![0xee];
        let start = open_frame(&mut out);
        out.extend_from_slice(&[7; 10]);
        assert_eq!(
            close_frame(&mut out.clone(), start, 9),
            Err(CodecError::FrameTooLarge(10, 9))
        );
        let mut cut = out.clone();
        let _ = close_frame(&mut cut, start, 9);
        assert_eq!(cut, [0xee], "a refused frame is removed");
        assert_eq!(close_frame(&mut out, start, 10), Ok(()));
        assert_eq!(&out[1..5], &[0, 0, 0, 10]);
    }

    #[test]
    fn encoding_refuses_messages_over_the_limit() {
        // One record listing ~280 000 63-byte names: about 18 MB of postcard.
        let long = "n".repeat(62);
        let mut record = fixture_record();
        record.connections = (0..280_000)
            .map(|i| name(&format!("{long}{}", i % 10)))
            .collect();
        let msg = Message::Gossip(Gossip {
            full: true,
            records: vec![record],
        });
        let mut out = vec![0xee];
        let got = encode_v1(&msg, &mut out);
        assert!(
            matches!(got, Err(CodecError::FrameTooLarge(len, MAX_FRAME_LEN)) if len > MAX_FRAME_LEN),
            "{got:?}"
        );
        assert_eq!(out, [0xee], "out is left as it was");
    }

    #[test]
    fn frame_buffer_switches_limit_after_the_hello() {
        // A message frame bigger than a hello may follow the hello in the same read.
        let mut stream = HELLO_FRAME.to_vec();
        let big = Message::Gossip(Gossip {
            full: true,
            records: vec![fixture_record(); 200],
        });
        encode_v1(&big, &mut stream).expect("fits");
        assert!(stream.len() > HELLO_FRAME.len() + MAX_HELLO_LEN);
        let mut fb = FrameBuffer::new(MAX_HELLO_LEN);
        fb.push(&stream).expect("hello prefix within its limit");
        let hello = fb.next_frame().expect("ok").map(|b| decode_hello(&b));
        assert_eq!(hello, Some(Ok(fixture_hello())));
        assert_eq!(
            fb.clone().next_frame(),
            Err(CodecError::FrameTooLarge(
                stream.len() - HELLO_FRAME.len() - LEN_PREFIX,
                MAX_HELLO_LEN
            ))
        );
        fb.set_limit(MAX_FRAME_LEN);
        let msg = fb.next_frame().expect("ok").map(|b| decode_v1(&b));
        assert_eq!(msg, Some(Ok(Some(big))));
        assert_eq!(fb.next_frame(), Ok(None));
        assert!(fb.is_empty());
    }

    fn arb_name() -> impl Strategy<Value = PeerName> {
        "[A-Za-z0-9._-]{1,63}".prop_map(|s| PeerName::new(s).expect("matches the name syntax"))
    }

    /// Socket addresses as postcard carries them (no IPv6 flow info or scope id).
    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            any::<(Ipv4Addr, u16)>().prop_map(SocketAddr::from),
            any::<(Ipv6Addr, u16)>()
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))),
        ]
    }

    fn arb_net() -> impl Strategy<Value = Ipv4Net> {
        (any::<Ipv4Addr>(), 0u8..=32)
            .prop_map(|(a, len)| Ipv4Net::new(a, len).expect("prefix length at most 32"))
    }

    fn arb_record() -> impl Strategy<Value = PeerRecord> {
        (
            arb_name(),
            any::<u64>(),
            any::<u64>(),
            arb_addr(),
            proptest::option::of((arb_net(), any::<u32>())),
            proptest::collection::btree_set(arb_name(), 0..6),
            any::<bool>(),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(name, version, instance, advertise, claim, conns, left, identity)| PeerRecord {
                    name,
                    version,
                    instance,
                    advertise,
                    claim: claim.map(|(block, epoch)| Claim { block, epoch }),
                    connections: conns.into_iter().collect(),
                    left,
                    identity,
                },
            )
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<bool>(), proptest::collection::vec(arb_record(), 0..5))
                .prop_map(|(full, records)| Message::Gossip(Gossip { full, records })),
            any::<u64>().prop_map(|seq| Message::Heartbeat(Heartbeat { seq })),
            any::<u64>().prop_map(|seq| Message::HeartbeatAck(Heartbeat { seq })),
            Just(Message::Leave),
            proptest::collection::vec((arb_name(), any::<u64>(), any::<u64>()), 0..5).prop_map(
                |e| Message::Digest(Digest {
                    entries: e
                        .into_iter()
                        .map(|(name, version, instance)| DigestEntry {
                            name,
                            version,
                            instance
                        })
                        .collect()
                })
            ),
        ]
    }

    fn arb_hello() -> impl Strategy<Value = Hello> {
        (
            any::<u16>(),
            any::<u16>(),
            arb_name(),
            any::<u64>(),
            arb_addr(),
            arb_net(),
            any::<u8>(),
        )
            .prop_map(
                |(proto_min, proto_max, name, instance, advertise, cluster, subnet_prefix)| Hello {
                    proto_min,
                    proto_max,
                    body: HelloBody {
                        name,
                        instance,
                        advertise,
                        cluster,
                        subnet_prefix,
                    },
                },
            )
    }

    /// Feeds `stream` to a fresh buffer in chunks of the given sizes (cycled) and decodes every
    /// frame as a message.
    fn reassemble(stream: &[u8], chunks: &[usize]) -> Vec<Message> {
        let mut fb = FrameBuffer::new(MAX_FRAME_LEN);
        let mut got = Vec::new();
        let mut rest = stream;
        for &size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            rest = tail;
            fb.push(chunk).expect("frames within the limit");
            while let Some(body) = fb.next_frame().expect("frames within the limit") {
                got.push(decode_message(&body).expect("valid").expect("known type"));
            }
        }
        assert!(fb.is_empty(), "no partial frame left");
        got
    }

    proptest! {
        #[test]
        fn hello_round_trip(hello in arb_hello()) {
            let mut out = Vec::new();
            encode_hello(&hello, &mut out);
            prop_assert!(out.len() <= LEN_PREFIX + MAX_HELLO_LEN);
            let (prefix, body) = out.split_first_chunk::<LEN_PREFIX>().expect("prefix");
            prop_assert_eq!(frame_len(*prefix, MAX_HELLO_LEN), Ok(body.len()));
            prop_assert_eq!(decode_hello(body), Ok(hello));
        }

        #[test]
        fn message_round_trip(msg in arb_message(), version in PROTOCOL_MIN..=PROTOCOL_MAX) {
            let mut out = Vec::new();
            encode_message_in(&msg, version, &mut out).expect("fits");
            let (prefix, body) = out.split_first_chunk::<LEN_PREFIX>().expect("prefix");
            prop_assert_eq!(frame_len(*prefix, MAX_FRAME_LEN), Ok(body.len()));
            let want = if version == 1 { as_v1(&msg) } else { msg };
            prop_assert_eq!(decode_message_in(body, version), Ok(Some(want)));
        }

        #[test]
        fn truncated_messages_are_rejected(
            msg in arb_message(),
            version in PROTOCOL_MIN..=PROTOCOL_MAX,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut out = Vec::new();
            encode_message_in(&msg, version, &mut out).expect("fits");
            let body = &out[LEN_PREFIX..];
            let len = cut.index(body.len());
            prop_assert!(decode_message_in(&body[..len], version).is_err());
        }

        #[test]
        fn truncated_hellos_are_rejected(hello in arb_hello(), cut in any::<prop::sample::Index>()) {
            let mut out = Vec::new();
            encode_hello(&hello, &mut out);
            let body = &out[LEN_PREFIX..];
            let len = cut.index(body.len());
            prop_assert!(decode_hello(&body[..len]).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_v1(&bytes);
            let _ = decode_message(&bytes);
            let _ = decode_hello(&bytes);
            let mut fb = FrameBuffer::new(MAX_HELLO_LEN);
            if fb.push(&bytes).is_ok() {
                while let Ok(Some(body)) = fb.next_frame() {
                    let _ = decode_v1(&body);
                }
            }
        }

        #[test]
        fn garbage_behind_a_valid_header_never_panics(
            ty in 1u8..=4,
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut body = vec![ty];
            body.extend_from_slice(&bytes);
            let _ = decode_v1(&body);
            let _ = decode_message(&body);
            let mut hello = HELLO_MAGIC.to_vec();
            hello.extend_from_slice(&bytes);
            let _ = decode_hello(&hello);
        }

        #[test]
        fn mutated_fixtures_never_panic(at in any::<prop::sample::Index>(), byte: u8) {
            let mut body = body_of(&GOSSIP_FRAME).to_vec();
            let i = at.index(body.len());
            body[i] = byte;
            let _ = decode_v1(&body);
            let mut body = body_of(&GOSSIP_FRAME_V2).to_vec();
            let i = at.index(body.len());
            body[i] = byte;
            let _ = decode_message_in(&body, 2);
        }

        #[test]
        fn frame_buffer_reassembles_any_chunking(
            msgs in proptest::collection::vec(arb_message(), 0..8),
            chunks in proptest::collection::vec(1usize..64, 1..16),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_message(m, &mut stream).expect("fits");
            }
            prop_assert_eq!(&reassemble(&stream, &[1]), &msgs);
            prop_assert_eq!(&reassemble(&stream, &chunks), &msgs);
            prop_assert_eq!(&reassemble(&stream, &[stream.len()]), &msgs);
        }
    }
}
