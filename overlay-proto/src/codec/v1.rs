//! Gossip as protocol version 1 carries it: records without the `identity` field that
//! version 2 appended ([`PeerRecord::identity`]). Encoding borrows the records as they are;
//! decoding gives records whose `identity` is `None`.

use crate::message::Gossip;
use crate::peer::PeerName;
use crate::topology::{Claim, PeerRecord};
use serde::{Deserialize, Serialize, Serializer};
use std::net::SocketAddr;

/// A [`Gossip`] to encode in version 1.
#[derive(Serialize)]
pub(super) struct GossipRef<'a> {
    full: bool,
    records: RecordsRef<'a>,
}

impl<'a> GossipRef<'a> {
    pub(super) fn new(gossip: &'a Gossip) -> Self {
        GossipRef {
            full: gossip.full,
            records: RecordsRef(&gossip.records),
        }
    }
}

/// The records of a [`GossipRef`]: a sequence of [`RecordRef`], of known length.
struct RecordsRef<'a>(&'a [PeerRecord]);

impl Serialize for RecordsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RecordRef::new))
    }
}

/// The fields of a [`PeerRecord`] version 1 knows, in its order.
#[derive(Serialize)]
struct RecordRef<'a> {
    name: &'a PeerName,
    version: u64,
    instance: u64,
    advertise: &'a SocketAddr,
    claim: &'a Option<Claim>,
    connections: &'a [PeerName],
    left: bool,
}

impl<'a> RecordRef<'a> {
    fn new(r: &'a PeerRecord) -> Self {
        RecordRef {
            name: &r.name,
            version: r.version,
            instance: r.instance,
            advertise: &r.advertise,
            claim: &r.claim,
            connections: &r.connections,
            left: r.left,
        }
    }
}

/// A [`Gossip`] as decoded from version 1.
#[derive(Deserialize)]
pub(super) struct GossipV1 {
    full: bool,
    records: Vec<RecordV1>,
}

#[derive(Deserialize)]
struct RecordV1 {
    name: PeerName,
    version: u64,
    instance: u64,
    advertise: SocketAddr,
    claim: Option<Claim>,
    connections: Vec<PeerName>,
    left: bool,
}

impl From<GossipV1> for Gossip {
    fn from(g: GossipV1) -> Gossip {
        let records = g
            .records
            .into_iter()
            .map(|r| PeerRecord {
                name: r.name,
                version: r.version,
                instance: r.instance,
                advertise: r.advertise,
                claim: r.claim,
                connections: r.connections,
                left: r.left,
                identity: None,
            })
            .collect();
        Gossip {
            full: g.full,
            records,
        }
    }
}
