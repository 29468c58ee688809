//! The relay rule, the same for data and trace datagrams: a datagram for another peer goes
//! on when its hop limit allows one more hop and the topology gives a next hop, with its hop
//! limit decremented in place — the only byte a relay changes (it is not covered by a sealed
//! datagram's tag, so sealed datagrams are relayed without keys).

use super::DropReason;
use crate::forwarding::{ForwardingTable, NextHop};
use crate::header::Header;

/// Passes `datagram` on towards `header.dst`, another peer than this node (`header` is what
/// [`Header::parse`] read from `datagram`): the next hop, with the hop limit in `datagram`
/// decremented. Or why not, leaving `datagram` as it was: [`DropReason::HopLimit`] when the
/// hop limit is 1 or 0, [`DropReason::NoRoute`] when no path to `header.dst` is known.
#[inline]
pub fn relay(
    table: &ForwardingTable,
    header: &Header,
    datagram: &mut [u8],
) -> Result<NextHop, DropReason> {
    if header.hop_limit <= 1 {
        return Err(DropReason::HopLimit);
    }
    let next = table.next_hop(header.dst).ok_or(DropReason::NoRoute)?;
    // Cannot fail: the header parsed, so the datagram is at least as long as it.
    let _ = Header::set_hop_limit(datagram, header.hop_limit - 1);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::{datagram, table_of, A, B, C};
    use crate::header::HEADER_LEN;
    use crate::peer::PeerId;

    #[test]
    fn only_the_hop_limit_changes_and_only_when_relayed() {
        let table = table_of(C, true);
        let h = Header::ip(A.id(), B.id());
        let mut d = datagram(h, b"payload");
        let before = d.clone();
        let next = relay(&table, &h, &mut d).expect("relayed");
        assert_eq!((next.via, next.addr), (B.id(), B.underlay()));
        assert_eq!(d[2] + 1, before[2], "one hop less");
        assert_eq!(d[..2], before[..2]);
        assert_eq!(d[3..], before[3..]);
        assert_eq!(Header::parse(&d).map(|p| p.hop_limit), Ok(h.hop_limit - 1));

        for hop_limit in [0, 1] {
            let h = Header { hop_limit, ..h };
            let mut d = datagram(h, b"x");
            let before = d.clone();
            assert_eq!(relay(&table, &h, &mut d), Err(DropReason::HopLimit));
            assert_eq!(d, before);
        }
        let h = Header::ip(A.id(), PeerId(42));
        let mut d = datagram(h, b"x");
        let before = d.clone();
        assert_eq!(relay(&table, &h, &mut d), Err(DropReason::NoRoute));
        assert_eq!(d, before);
        assert_eq!(d.len(), HEADER_LEN + 1);
    }
}
