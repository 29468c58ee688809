use super::*;
use crate::header::{Header, Kind, FLAG_CSUM_PARTIAL, FLAG_SEALED, HOPS_OFFSET};
use crate::peer::PeerId;
use proptest::prelude::*;

const A: PeerId = PeerId(0x0a0a_0a0a_0a0a_0a0a);
const B: PeerId = PeerId(0x0b0b_0b0b_0b0b_0b0b);
const C: PeerId = PeerId(0x0c0c_0c0c_0c0c_0c0c);
const SECRET: [u8; 32] = [7; 32];
const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];
const SEC: u64 = 1_000_000_000;

fn pair(suite: Suite, policy: RekeyPolicy) -> (Sealer, Opener) {
    (
        Sealer::new(suite, &SECRET, A, B, policy, 0),
        Opener::new(suite, &SECRET, B, A, policy),
    )
}

/// A plain datagram A→B with `len` bytes of payload, its bytes derived from `seed`.
fn plain(len: usize, seed: u8) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + len];
    let mut h = Header::ip(A, B);
    h.flags = FLAG_CSUM_PARTIAL;
    h.emit(&mut d).expect("room");
    for (i, b) in d[HEADER_LEN..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    d
}

/// `plain(len)` sealed, as a buffer of exactly the sealed length.
fn sealed(s: &mut Sealer, now: u64, len: usize, seed: u8) -> Vec<u8> {
    let p = plain(len, seed);
    let mut buf = p.clone();
    buf.resize(p.len() + OVERHEAD, 0);
    let out = s.seal(now, &mut buf, single(p.len())).expect("seals");
    assert_eq!(out.total_len, buf.len());
    buf
}

fn open_ok(o: &mut Opener, now: u64, mut d: Vec<u8>) -> Vec<u8> {
    let n = o.open(now, &mut d).expect("opens");
    d.truncate(n);
    d
}

#[test]
fn round_trip_every_size_up_to_the_mtu() {
    for suite in SUITES {
        let (mut s, mut o) = pair(suite, RekeyPolicy::default());
        for len in 0..=1452 {
            let d = sealed(&mut s, 0, len, len as u8);
            assert_eq!(d.len(), HEADER_LEN + len + OVERHEAD);
            assert_eq!(d[3], FLAG_CSUM_PARTIAL | FLAG_SEALED);
            assert_eq!(d[HEADER_LEN], suite as u8);
            if len >= 16 {
                assert_ne!(&d[32..48], &plain(len, len as u8)[20..36], "encrypted");
            }
            assert_eq!(
                open_ok(&mut o, 0, d),
                plain(len, len as u8),
                "{suite:?} {len}"
            );
        }
    }
}

#[test]
fn wire_format_is_header_suite_epoch_counter_ciphertext_tag() {
    let (mut s, _) = pair(Suite::ChaCha20Poly1305, RekeyPolicy::default());
    let _ = sealed(&mut s, 0, 10, 0);
    let d = sealed(&mut s, 0, 10, 0);
    let h = Header::parse(&d).expect("header in clear");
    assert_eq!((h.kind, h.src, h.dst), (Kind::Ip, A, B));
    assert!(h.is_sealed());
    assert_eq!(&d[20..32], &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(d.len(), 20 + 12 + 10 + 16);
    assert_eq!(overlay_mtu(1500, false), 1424);
    assert_eq!(overlay_mtu(1500, true), 1404);
}

/// A GSO batch of `count` datagrams of `seg` payload bytes, the last one `last` bytes, laid
/// out as `segment::split` does, and its layout.
fn batch(count: usize, seg: usize, last: usize) -> (Vec<u8>, SplitLayout) {
    let mut buf = Vec::new();
    for i in 0..count {
        let len = if i + 1 == count { last } else { seg };
        buf.extend_from_slice(&plain(len, i as u8));
    }
    let layout = SplitLayout {
        count,
        datagram_len: HEADER_LEN + seg,
        total_len: buf.len(),
    };
    (buf, layout)
}

#[test]
fn gso_batches_round_trip_with_one_counter_each() {
    for suite in SUITES {
        let (mut s, mut o) = pair(suite, RekeyPolicy::default());
        for (count, seg, last) in [
            (1, 0, 0),
            (1, 1400, 1400),
            (44, 1400, 1400),
            (47, 1400, 1080),
            (3, 1, 0),
        ] {
            let (orig, layout) = batch(count, seg, last);
            let first = s.next_counter();
            let mut buf = orig.clone();
            buf.resize(orig.len() + count * OVERHEAD + 5, 0xee);
            let out = s.seal(0, &mut buf, layout).expect("seals");
            assert_eq!(out.count, count);
            assert_eq!(out.datagram_len, layout.datagram_len + OVERHEAD);
            assert_eq!(out.total_len, layout.total_len + count * OVERHEAD);
            assert_eq!(
                &buf[out.total_len..],
                &[0xee; 5],
                "nothing written past the batch"
            );
            for i in 0..count {
                let mut d = buf[out.datagram(i).expect("in batch")].to_vec();
                let c = u64::from_be_bytes(d[24..32].try_into().expect("8 bytes"));
                assert_eq!(c, first + i as u64);
                let n = o.open(0, &mut d).expect("opens");
                assert_eq!(&d[..n], &orig[layout.datagram(i).expect("in batch")]);
            }
        }
    }
}

#[test]
fn bad_layouts_and_short_buffers_are_refused_untouched() {
    let (mut s, _) = pair(Suite::Aes256Gcm, RekeyPolicy::default());
    let (orig, layout) = batch(3, 100, 50);
    let mut buf = orig.clone();
    buf.resize(orig.len() + 3 * OVERHEAD - 1, 0);
    let snapshot = buf.clone();
    assert_eq!(
        s.seal(0, &mut buf, layout),
        Err(SealError::BufferTooSmall(buf.len()))
    );
    for bad in [
        SplitLayout { count: 0, ..layout },
        SplitLayout {
            datagram_len: 19,
            ..layout
        },
        SplitLayout {
            total_len: 2 * 120 + 19,
            ..layout
        },
        SplitLayout {
            total_len: 3 * 120 + 1,
            ..layout
        },
        SplitLayout {
            count: usize::MAX,
            ..layout
        },
    ] {
        assert_eq!(
            s.seal(0, &mut buf, bad),
            Err(SealError::BadLayout),
            "{bad:?}"
        );
    }
    assert_eq!(buf, snapshot);
    assert_eq!(s.next_counter(), 0);
}

#[test]
fn any_bit_flip_fails_except_the_hop_limit() {
    for suite in SUITES {
        let (mut s, mut o) = pair(suite, RekeyPolicy::default());
        let d = sealed(&mut s, 0, 64, 9);
        for byte in 0..d.len() {
            for bit in 0..8 {
                let mut t = d.clone();
                t[byte] ^= 1 << bit;
                let r = o.open(0, &mut t);
                if byte == HOPS_OFFSET {
                    assert!(r.is_ok(), "the hop limit is not authenticated");
                    // Counted: the same counter again is a replay now.
                    let mut again = d.clone();
                    assert_eq!(o.open(0, &mut again), Err(OpenError::Replay));
                    o = Opener::new(suite, &SECRET, B, A, RekeyPolicy::default());
                    continue;
                }
                assert!(
                    r.is_err(),
                    "{suite:?}: flip of bit {bit} of byte {byte} accepted"
                );
            }
        }
        let mut t = d.clone();
        assert!(
            o.open(0, &mut t).is_ok(),
            "the untouched datagram still opens"
        );
    }
}

#[test]
fn errors_name_the_reason() {
    let (mut s, mut o) = pair(Suite::Aes256Gcm, RekeyPolicy::default());
    let d = sealed(&mut s, 0, 30, 1);
    for len in 0..MIN_SEALED_LEN {
        assert_eq!(
            o.open(0, &mut d[..len].to_vec()),
            Err(OpenError::Truncated(len))
        );
    }
    let mut t = d.clone();
    t[3] &= !FLAG_SEALED;
    assert_eq!(o.open(0, &mut t), Err(OpenError::NotSealed));
    let mut t = d.clone();
    t[20] = 2;
    assert_eq!(o.open(0, &mut t), Err(OpenError::WrongSuite(2)));
    let mut t = d.clone();
    t[21] = 1;
    assert_eq!(o.open(0, &mut t), Err(OpenError::UnknownEpoch(1 << 16)));
    let mut t = d.clone();
    t[23] = 1; // epoch 1: derived ahead, but the tag was made under epoch 0
    assert_eq!(o.open(0, &mut t), Err(OpenError::BadTag));
    let mut t = d.clone();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    assert_eq!(o.open(0, &mut t), Err(OpenError::BadTag));
    assert_eq!(o.epoch(), 0, "failed datagrams switch no key");
    let _ = open_ok(&mut o, 0, d.clone());
    assert_eq!(o.open(0, &mut d.clone()), Err(OpenError::Replay));
}

#[test]
fn wrong_secret_wrong_pair_and_relay_cannot_open() {
    for suite in SUITES {
        let (mut s, _) = pair(suite, RekeyPolicy::default());
        let d = sealed(&mut s, 0, 100, 3);
        // Another secret.
        let mut o = Opener::new(suite, &[8; 32], B, A, RekeyPolicy::default());
        assert_eq!(o.open(0, &mut d.clone()), Err(OpenError::BadTag));
        // A relay C with its own secret shared with A: still not A→B's key.
        let mut relay = Opener::new(suite, &[9; 32], C, A, RekeyPolicy::default());
        assert_eq!(relay.open(0, &mut d.clone()), Err(OpenError::BadTag));
        // B's key for what it sends to A does not open what A sends to B (the reverse
        // direction: same secret, other key).
        let mut reverse = Opener::new(suite, &SECRET, A, B, RekeyPolicy::default());
        assert_eq!(reverse.open(0, &mut d.clone()), Err(OpenError::BadTag));
    }
}

#[test]
fn directions_and_suites_and_epochs_have_distinct_keys() {
    for suite in SUITES {
        let ab = PairKeys::derive(suite, &SECRET, A, B, 0);
        let ba = PairKeys::derive(suite, &SECRET, B, A, 0);
        assert_ne!(ab.tx, ab.rx, "A→B key ≠ B→A key");
        assert_eq!(ab.tx, ba.rx, "the mirror image");
        assert_eq!(ab.rx, ba.tx);
        let ab1 = PairKeys::derive(suite, &SECRET, A, B, 1);
        assert_ne!(ab.tx.bytes(), ab1.tx.bytes());
    }
    let aes = PairKeys::derive(Suite::Aes256Gcm, &SECRET, A, B, 0);
    let chacha = PairKeys::derive(Suite::ChaCha20Poly1305, &SECRET, A, B, 0);
    assert_ne!(aes.tx.bytes(), chacha.tx.bytes());
    assert!(
        !format!("{aes:?}").contains("bytes"),
        "keys are not printed"
    );
}

#[test]
fn session_secret_is_symmetric_and_fresh_per_run() {
    let (dh, psk) = ([1u8; 32], [2u8; 32]);
    let (na, nb, nb2) = ([3u8; 16], [4u8; 16], [5u8; 16]);
    let at_a = session_secret(&dh, &psk, (A, &na), (B, &nb));
    let at_b = session_secret(&dh, &psk, (B, &nb), (A, &na));
    assert_eq!(at_a, at_b);
    assert_ne!(
        at_a,
        session_secret(&dh, &psk, (A, &na), (B, &nb2)),
        "B restarted"
    );
    assert_ne!(
        at_a,
        session_secret(&dh, &[0; 32], (A, &na), (B, &nb)),
        "other PSK"
    );
    assert_ne!(
        at_a,
        session_secret(&[0; 32], &psk, (A, &na), (B, &nb)),
        "other DH"
    );
}

#[test]
fn replay_is_rejected_and_reordering_accepted_exactly_once() {
    let (mut s, mut o) = pair(Suite::ChaCha20Poly1305, RekeyPolicy::default());
    let ds: Vec<Vec<u8>> = (0..3000).map(|i| sealed(&mut s, 0, 20, i as u8)).collect();
    // Deliver in an order reversed in blocks of 500 (up to 499 positions late).
    let mut order: Vec<usize> = Vec::new();
    for block in (0..3000).collect::<Vec<_>>().chunks(500) {
        order.extend(block.iter().rev());
    }
    for &i in &order {
        assert_eq!(open_ok(&mut o, 0, ds[i].clone()), plain(20, i as u8));
    }
    for (i, d) in ds.iter().enumerate() {
        let want = if i >= 3000 - WINDOW as usize {
            OpenError::Replay
        } else {
            OpenError::TooOld
        };
        assert_eq!(o.open(0, &mut d.clone()), Err(want), "{i}");
    }
    // A datagram held back longer than the window is too old.
    let late = sealed(&mut s, 0, 20, 0);
    for _ in 0..WINDOW {
        let _ = open_ok(&mut o, 0, sealed(&mut s, 0, 20, 0));
    }
    assert_eq!(o.open(0, &mut late.clone()), Err(OpenError::TooOld));
}

#[test]
fn rekey_by_count_keeps_counters_unique_and_drops_nothing() {
    let policy = RekeyPolicy {
        after_packets: 10,
        after_nanos: u64::MAX,
        grace_nanos: 5 * SEC,
    };
    for suite in SUITES {
        let (mut s, mut o) = pair(suite, policy);
        let ds: Vec<Vec<u8>> = (0..35).map(|i| sealed(&mut s, 0, 8, i as u8)).collect();
        let ids: Vec<(u32, u64)> = ds
            .iter()
            .map(|d| {
                let e = u32::from_be_bytes([0, d[21], d[22], d[23]]);
                (e, u64::from_be_bytes(d[24..32].try_into().expect("8")))
            })
            .collect();
        assert_eq!(ids[9], (0, 9));
        assert_eq!(ids[10], (1, 0), "the 11th datagram is sealed under epoch 1");
        assert_eq!(ids[34], (3, 4));
        assert_eq!(s.epoch(), 3);
        // Reordered across each switch: a datagram of the old epoch arrives after the first
        // of the new one, within the grace period.
        let mut order: Vec<usize> = (0..35).collect();
        for k in [9, 19, 29] {
            order.swap(k, k + 1);
        }
        for (t, &i) in order.iter().enumerate() {
            assert_eq!(open_ok(&mut o, t as u64, ds[i].clone()), plain(8, i as u8));
        }
        assert_eq!(o.epoch(), 3);
        // Epoch 2 is still held (grace), epoch 1 no more; after the grace, epoch 2 neither.
        assert_eq!(o.open(10, &mut ds[25].clone()), Err(OpenError::Replay));
        assert_eq!(
            o.open(10, &mut ds[15].clone()),
            Err(OpenError::UnknownEpoch(1))
        );
        assert_eq!(
            o.open(6 * SEC, &mut ds[25].clone()),
            Err(OpenError::UnknownEpoch(2))
        );
    }
}

#[test]
fn rekey_by_time_and_batches_never_straddle_the_budget() {
    let policy = RekeyPolicy {
        after_packets: 100,
        after_nanos: 120 * SEC,
        grace_nanos: 10 * SEC,
    };
    let (mut s, mut o) = pair(Suite::Aes256Gcm, policy);
    let _ = open_ok(&mut o, 0, sealed(&mut s, 0, 8, 0));
    let _ = open_ok(&mut o, 119 * SEC, sealed(&mut s, 119 * SEC, 8, 0));
    assert_eq!(s.epoch(), 0);
    let d = sealed(&mut s, 120 * SEC, 8, 0);
    assert_eq!((s.epoch(), s.next_counter()), (1, 1));
    let _ = open_ok(&mut o, 120 * SEC, d);
    assert_eq!(o.epoch(), 1);
    // 98 more under epoch 1, then a batch of 44 would pass 100: it goes under epoch 2.
    for _ in 0..98 {
        let _ = sealed(&mut s, 121 * SEC, 8, 0);
    }
    let (orig, layout) = batch(44, 100, 100);
    let mut buf = orig;
    buf.resize(layout.total_len + 44 * OVERHEAD, 0);
    let out = s.seal(121 * SEC, &mut buf, layout).expect("seals");
    assert_eq!((s.epoch(), s.next_counter()), (2, 44));
    for i in 0..44 {
        let mut d = buf[out.datagram(i).expect("in")].to_vec();
        assert!(o.open(121 * SEC, &mut d).is_ok());
    }
}

#[test]
fn opener_follows_a_sender_that_skipped_epochs() {
    let policy = RekeyPolicy {
        after_packets: 1,
        after_nanos: u64::MAX,
        grace_nanos: SEC,
    };
    let (mut s, mut o) = pair(Suite::ChaCha20Poly1305, policy);
    for _ in 0..10 {
        let _ = sealed(&mut s, 0, 8, 0); // all lost
    }
    let d = sealed(&mut s, 0, 8, 0);
    assert_eq!(s.epoch(), 10);
    let _ = open_ok(&mut o, 0, d);
    assert_eq!(o.epoch(), 10);
    // Too far ahead is refused without deriving.
    let mut far = Sealer::new(Suite::ChaCha20Poly1305, &SECRET, A, B, policy, 0);
    for _ in 0..=(10 + MAX_EPOCH_AHEAD) {
        let _ = sealed(&mut far, 0, 8, 0);
    }
    let d = sealed(&mut far, 0, 8, 0);
    assert_eq!(
        o.open(0, &mut d.clone()),
        Err(OpenError::UnknownEpoch(11 + MAX_EPOCH_AHEAD))
    );
}

#[test]
fn suite_choice() {
    assert_eq!(
        Suite::Aes256Gcm.negotiate(Suite::Aes256Gcm),
        Suite::Aes256Gcm
    );
    assert_eq!(
        Suite::Aes256Gcm.negotiate(Suite::ChaCha20Poly1305),
        Suite::ChaCha20Poly1305
    );
    assert_eq!(
        Suite::ChaCha20Poly1305.negotiate(Suite::Aes256Gcm),
        Suite::ChaCha20Poly1305
    );
    for s in SUITES {
        assert_eq!(Suite::from_name(s.name()), Some(s));
    }
    assert_eq!(Suite::from_name("des"), None);
    let _ = Suite::detect();
}

#[test]
fn replay_window_matches_a_model() {
    let mut w = ReplayWindow::default();
    assert_eq!(w.highest(), None);
    assert_eq!(w.check(0), Ok(()));
    w.commit(0);
    assert_eq!(w.check(0), Err(OpenError::Replay));
    w.commit(5000);
    assert_eq!(w.check(5000 - WINDOW), Err(OpenError::TooOld));
    assert_eq!(w.check(5000 - WINDOW + 1), Ok(()));
    assert_eq!(w.check(MAX_COUNTER), Err(OpenError::TooOld));
    assert_eq!(w.highest(), Some(5000));
}

proptest! {
    #[test]
    fn replay_window_accepts_each_counter_once_within_the_window(
        counters in proptest::collection::vec(0u64..6000, 1..400),
    ) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        let mut highest: Option<u64> = None;
        for c in counters {
            let want = match highest {
                Some(h) if c <= h && h - c >= WINDOW => Err(OpenError::TooOld),
                _ if seen.contains(&c) => Err(OpenError::Replay),
                _ => Ok(()),
            };
            prop_assert_eq!(w.check(c), want, "counter {}", c);
            if want.is_ok() {
                w.commit(c);
                seen.insert(c);
                highest = Some(highest.map_or(c, |h| h.max(c)));
            }
        }
    }

    #[test]
    fn garbage_never_panics_nor_opens(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (_, mut o) = pair(Suite::Aes256Gcm, RekeyPolicy::default());
        let mut b = bytes;
        prop_assert!(o.open(0, &mut b).is_err());
    }

    #[test]
    fn batches_round_trip(count in 1usize..8, seg in 0usize..300, cut in 0usize..300, chacha: bool) {
        let suite = if chacha { Suite::ChaCha20Poly1305 } else { Suite::Aes256Gcm };
        let last = cut.min(seg);
        let (mut s, mut o) = pair(suite, RekeyPolicy::default());
        let (orig, layout) = batch(count, seg, last);
        let mut buf = orig.clone();
        buf.resize(orig.len() + count * OVERHEAD, 0);
        let out = s.seal(0, &mut buf, layout).expect("seals");
        for i in 0..count {
            let mut d = buf[out.datagram(i).expect("in")].to_vec();
            let n = o.open(0, &mut d).expect("opens");
            prop_assert_eq!(&d[..n], &orig[layout.datagram(i).expect("in")]);
        }
    }
}
