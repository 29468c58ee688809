//! Control-plane messages exchanged over the TCP side of the listen port.
//!
//! A connection starts with each side sending a [`Hello`]; the protocol version both speak is
//! chosen with [`negotiate`]. After that, either side sends [`Message`]s at any time. The byte
//! layout of both (frames, envelope, fixtures) lives in [`crate::codec`].

use crate::peer::PeerName;
use crate::topology::PeerRecord;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Oldest control protocol version this build speaks.
pub const PROTOCOL_MIN: u16 = 1;
/// Newest control protocol version this build speaks (see [`crate::codec`] for what each
/// version changed).
pub const PROTOCOL_MAX: u16 = 3;
/// The first protocol version that speaks lazy push ([`Message::Beat`], [`Message::Graft`],
/// [`Message::Prune`]) and bucketed anti-entropy ([`Message::SummaryCheck`], [`Message::Buckets`],
/// [`Message::RangeDigest`]); older peers are always pushed records eagerly and exchange
/// whole digests.
pub const LAZY_PUSH_VERSION: u16 = 3;

/// The first frame on every control connection, sent by both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the sender speaks.
    pub proto_min: u16,
    /// Newest protocol version the sender speaks.
    pub proto_max: u16,
    /// Body fields, encoded with postcard after the fixed part.
    pub body: HelloBody,
}

/// The part of [`Hello`] after the fixed magic and version range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloBody {
    /// The sender's peer name.
    pub name: PeerName,
    /// Random per start of the sender's agent; tells a restarted peer from its previous run.
    pub instance: u64,
    /// Where the sender can be dialed (TCP) and sent data (UDP).
    pub advertise: SocketAddr,
    /// The sender's cluster range; peers with a different one are refused.
    pub cluster: Ipv4Net,
    /// The sender's block size; peers with a different one are refused.
    pub subnet_prefix: u8,
}

/// Picks the protocol version for a connection: the newest both sides speak.
///
/// Returns `None` when the ranges do not overlap (or a range is empty).
pub fn negotiate(local: (u16, u16), remote: (u16, u16)) -> Option<u16> {
    let low = local.0.max(remote.0);
    let high = local.1.min(remote.1);
    (low <= high).then_some(high)
}

/// A control message after the handshake.
///
/// On the wire each variant has a fixed one-byte type (see [`crate::codec`]); a receiver skips
/// types it does not know, so new variants can be added without breaking older peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Topology records, incremental or the sender's whole view.
    Gossip(Gossip),
    /// Liveness probe; the receiver answers with [`Message::HeartbeatAck`] carrying the same seq.
    Heartbeat(Heartbeat),
    /// Answer to a heartbeat, for round-trip time.
    HeartbeatAck(Heartbeat),
    /// The sender is shutting down on purpose and will close the connection.
    Leave,
    /// Which version of every record the sender holds (anti-entropy; see [`Digest`]).
    Digest(Digest),
    /// A fingerprint of the sender's whole topology (see [`Summary`]); a receiver holding
    /// another answers with its [`Digest`].
    Summary(Summary),
    /// Whether the sender needs this connection kept: the peer is in its active view, or it
    /// is still joining. A connection neither end needs is closed (see `crate::node`). A peer
    /// that never sent it is taken to need every connection.
    Keep(bool),
    /// The sender has no room for this connection and closes it: dial one of these instead
    /// (advertised addresses of some of its neighbours).
    Redirect(Vec<SocketAddr>),
    /// A heartbeat carrying lazy-push announcements (protocol 3; older peers get
    /// [`Message::Heartbeat`]): answered with [`Message::HeartbeatAck`] like a heartbeat. The
    /// announcements ride on the heartbeat each connection sends anyway, as SWIM piggybacks
    /// its updates on probes, so they cost bytes, not messages.
    Beat(Beat),
    /// Send me these records now, and push changes to me eagerly from now on (repairs the
    /// broadcast tree, see `crate::node`).
    Graft(Vec<PeerName>),
    /// Your last push was a duplicate: announce changes to me lazily from now on.
    Prune,
    /// The sender's summary, sent a while after summaries differed: a receiver whose summary
    /// still differs answers with [`Message::Buckets`].
    SummaryCheck(Summary),
    /// The sender's per-bucket fingerprints ([`crate::topology::BUCKETS`] hashes, see
    /// [`crate::topology::bucket_of`]), sent when summaries still differed after a while. The
    /// receiver answers with a [`RangeDigest`] of the buckets that differ, if any.
    Buckets(Vec<u64>),
    /// A [`Digest`] of the records in some buckets only; answered the same way, within them.
    RangeDigest(RangeDigest),
}

/// A [`Digest`] restricted to some buckets of the name space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// Bit `b` set: bucket `b` is covered (every record the sender holds in it is listed).
    pub mask: u64,
    /// One entry per record in the covered buckets.
    pub entries: Vec<DigestEntry>,
}

/// Order-independent fingerprint of a topology: the number of records and the XOR of a hash
/// of each record's (name, version, instance). Two agents holding the same records have the
/// same summary; a periodic exchange of summaries costs a few bytes when nothing differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Summary {
    /// Number of records.
    pub records: u64,
    /// XOR of every record's hash.
    pub hash: u64,
}

/// Topology records carried by gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// True when this answers a [`Digest`]: after it the receiver holds every record the
    /// sender had that was newer than the digest (the receiver may claim a block then).
    pub full: bool,
    /// The records; the receiver merges each.
    pub records: Vec<PeerRecord>,
}

/// A summary of the sender's whole topology: one entry per record it holds.
///
/// The receiver answers with a [`Gossip`] marked `full` holding every record it has that is
/// newer than the digest's entry or missing from it (possibly none), and, if the digest shows
/// records newer than its own or unknown to it, with its own digest so the sender can do the
/// same. Each exchange moves only what one side lacks, and stops once both hold the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// One entry per record, by name.
    pub entries: Vec<DigestEntry>,
}

/// The version of one record, in a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// Whose record.
    pub name: PeerName,
    /// Its version.
    pub version: u64,
    /// Its instance.
    pub instance: u64,
}

impl DigestEntry {
    /// The entry of `record`.
    pub fn of(record: &PeerRecord) -> DigestEntry {
        DigestEntry {
            name: record.name.clone(),
            version: record.version,
            instance: record.instance,
        }
    }
}

/// A heartbeat with announcements: the sender holds these record versions. A receiver that
/// lacks one and does not get it pushed soon asks for it with [`Message::Graft`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// Sequence number, answered in a [`Message::HeartbeatAck`].
    pub seq: u64,
    /// Record versions the sender holds (its changes since its previous beat).
    pub have: Vec<DigestEntry>,
}

/// Heartbeat payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sequence number chosen by the heartbeat's sender.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_newest_common_version() {
        assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
        assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
        assert_eq!(negotiate((1, 2), (3, 4)), None);
        assert_eq!(negotiate((3, 4), (1, 2)), None);
        assert_eq!(negotiate((2, 1), (1, 2)), None);
    }
}
