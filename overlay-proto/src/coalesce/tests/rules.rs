//! One test per merge rule: a contiguous follower that breaks it is not merged.

use super::*;

/// A base segment and a contiguous follower with one field changed.
fn pair(change: impl Fn(&mut Pkt)) -> (Vec<u8>, Vec<u8>) {
    let p = Pkt::tcp4();
    let a = p.build_partial(&payload(1000, 0));
    let mut q = Pkt {
        seq: p.seq + 1000,
        id: p.id + 1,
        ..p
    };
    change(&mut q);
    (a, q.build_partial(&payload(1000, 1)))
}

fn pair6(change: impl Fn(&mut Pkt)) -> (Vec<u8>, Vec<u8>) {
    let p = Pkt::tcp6();
    let a = p.build_partial(&payload(1000, 0));
    let mut q = Pkt {
        seq: p.seq + 1000,
        ..p
    };
    change(&mut q);
    (a, q.build_partial(&payload(1000, 1)))
}

#[test]
fn the_pair_helper_merges_when_nothing_changes() {
    for (a, b) in [pair(|_| {}), pair6(|_| {})] {
        let mut c = Coalescer::new(BOTH);
        let mut sink = Sink::default();
        c.push(&a, true, &mut sink.w());
        c.push(&b, true, &mut sink.w());
        c.flush(&mut sink.w());
        assert_eq!(sink.0.len(), 1);
    }
}

#[test]
fn refuses_another_flow() {
    let (a, b) = pair(|q| q.sport = 40001);
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_different_tos() {
    let (a, b) = pair(|q| q.tos = 0x10);
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_different_ttl() {
    let (a, b) = pair(|q| q.ttl = 63);
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_different_df() {
    let (a, b) = pair(|q| q.frag = 0);
    assert_not_merged(&a, &b);
}

#[test]
fn ipv4_ids_are_not_compared() {
    for id in [0x1234u16, 0x1235, 0x9999] {
        let (a, b) = pair(|q| q.id = id);
        let mut c = Coalescer::new(BOTH);
        let mut sink = Sink::default();
        c.push(&a, true, &mut sink.w());
        c.push(&b, true, &mut sink.w());
        c.flush(&mut sink.w());
        assert_eq!(sink.0.len(), 1, "id {id:#x}");
        assert_eq!(&sink.packet(0)[4..6], &a[4..6], "first id kept");
    }
}

#[test]
fn refuses_different_ipv6_traffic_class_flow_label_hop_limit() {
    let (a, b) = pair6(|q| q.tos = 4);
    assert_not_merged(&a, &b);
    let (a, b) = pair6(|q| q.flow_label = 0x54321);
    assert_not_merged(&a, &b);
    let (a, b) = pair6(|q| q.ttl = 1);
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_tcp_flags_other_than_ack() {
    // SYN, FIN, RST, URG, ECE, CWR (each with ACK), and no ACK at all.
    for f in [
        0x02 | ACK,
        0x01 | ACK,
        0x04 | ACK,
        0x20 | ACK,
        0x40 | ACK,
        0x80 | ACK,
        PSH,
    ] {
        let (a, b) = pair(|q| q.flags = f);
        assert_not_merged(&a, &b);
        let (b2, a2) = (
            Pkt {
                flags: f,
                ..Pkt::tcp4()
            }
            .build_partial(&payload(1000, 0)),
            pair(|_| {}).1,
        );
        assert_not_merged(&b2, &a2);
    }
}

#[test]
fn refuses_different_tcp_options() {
    let (a, b) = pair(|q| q.options[7] ^= 1); // another TSval
    assert_not_merged(&a, &b);
    let (a, b) = pair(|q| q.options = vec![1, 1, 1, 1]); // another length
    assert_not_merged(&a, &b);
    let (a, b) = pair(|q| q.options.clear());
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_different_ack_or_window() {
    let (a, b) = pair(|q| q.ack += 1);
    assert_not_merged(&a, &b);
    let (a, b) = pair(|q| q.window += 1);
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_non_contiguous_sequence_numbers() {
    let (a, b) = pair(|q| q.seq += 1); // a gap
    assert_not_merged(&a, &b);
    let (a, b) = pair(|q| q.seq -= 1000); // a retransmission
    assert_not_merged(&a, &b);
    let (a, b) = pair(|q| q.seq -= 2000); // reordered
    assert_not_merged(&a, &b);
}

#[test]
fn refuses_a_larger_segment_after_a_smaller_first() {
    let (segs, _) = segments(&Pkt::tcp4(), &[1000, 1400]);
    assert_not_merged(&segs[0], &segs[1]);
}
