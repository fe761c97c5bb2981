//! Property tests: a data plane fed arbitrary bytes, or arbitrary frames
//! sealed under the right keys (a misbehaving but authentic peer), never
//! panics, and keeps its timers sane.

use proptest::prelude::*;
use std::time::Duration;
use tgp_proto::crypto::aead::{AeadAlgorithm, PacketSealer};
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::wire::frame::{Frame, Receipt};
use tgp_proto::{DeliveryClass, SessionKeys, Timestamp};

fn keys() -> (SessionKeys, SessionKeys) {
    SessionKeys::pair([7; 32], [8; 32], 99)
}

#[derive(Debug, Clone)]
enum FuzzFrame {
    Data(u64, Vec<u8>),
    Repair(u64, u8, u8, Vec<u8>),
    Receipt(
        u64,
        Vec<(u64, u64)>,
        u64,
        u64,
        Vec<(u64, u64)>,
        Vec<(u64, u64)>,
        u64,
        u64,
    ),
    Confirm(u64),
    Abandon(Vec<(u64, u64)>),
    Ping,
}

/// Small numbers, edge values near `u64::MAX` and near the receive
/// windows, and anything.
fn small() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        (u64::MAX - 70)..=u64::MAX,
        (1u64 << 15) - 2..(1u64 << 15) + 2,
        (1u64 << 18) - 2..(1u64 << 18) + 2,
        any::<u64>()
    ]
}

fn ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((small(), 1u64..40), 0..4)
}

fn frame() -> impl Strategy<Value = FuzzFrame> {
    prop_oneof![
        (small(), proptest::collection::vec(any::<u8>(), 0..60))
            .prop_map(|(s, b)| FuzzFrame::Data(s, b)),
        (
            small(),
            1u8..20,
            0u8..40,
            proptest::collection::vec(any::<u8>(), 0..60)
        )
            .prop_map(|(f, k, i, b)| FuzzFrame::Repair(f, k, i, b)),
        (
            small(),
            ranges(),
            small(),
            small(),
            ranges(),
            ranges(),
            small(),
            small()
        )
            .prop_map(|(c, r, cb, z, a, n, l, bytes)| FuzzFrame::Receipt(
                c, r, cb, z, a, n, l, bytes
            )),
        small().prop_map(FuzzFrame::Confirm),
        ranges().prop_map(FuzzFrame::Abandon),
        Just(FuzzFrame::Ping),
    ]
}

fn to_ranges(floor: u64, pairs: &[(u64, u64)]) -> Vec<std::ops::Range<u64>> {
    let mut at = floor;
    let mut out = Vec::new();
    for &(gap, len) in pairs {
        let Some(start) = at.checked_add(gap) else {
            break;
        };
        let Some(end) = start.checked_add(len) else {
            break;
        };
        out.push(start..end);
        at = end;
    }
    out
}

fn encode(frame: &FuzzFrame, out: &mut Vec<u8>) {
    match frame {
        FuzzFrame::Data(seq, symbol) => Frame::Data { seq: *seq, symbol }.encode(out),
        FuzzFrame::Repair(first, k, index, shard) => Frame::Repair {
            first: *first / 2,
            mask: (u64::from(*k) << (index % 32)) | 1,
            id: u64::from(*index),
            shard,
        }
        .encode(out),
        FuzzFrame::Receipt(c, r, cb, z, a, n, l, bytes) => Frame::Receipt(Receipt {
            cumulative: *c,
            ranges: to_ranges(*c, r),
            confirmed_base: *cb,
            abandoned_complete_below: *z,
            abandoned: to_ranges(*cb, a),
            needs: n.clone(),
            covered_below: *z ^ *l,
            largest_packet: *l,
            ack_delay_micros: *bytes % 100_000,
            bytes_received: *bytes,
            loss_per_65536: *l % 70_000,
        })
        .encode(out),
        FuzzFrame::Confirm(point) => Frame::Confirm { point: *point }.encode(out),
        FuzzFrame::Abandon(r) => Frame::Abandon {
            ranges: to_ranges(0, r),
        }
        .encode(out),
        FuzzFrame::Ping => Frame::Ping.encode(out),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_datagrams_never_panic(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let (_, b) = keys();
        let mut plane = DataPlane::new(Timestamp::ZERO, b, DataPlaneConfig::default());
        let mut buffer = Vec::new();
        for (i, datagram) in datagrams.iter().enumerate() {
            let now = Timestamp::from_nanos(i as u64 * 1_000_000);
            let _ = plane.handle_datagram(now, &mut datagram.clone());
            loop {
                buffer.clear();
                if plane.poll_transmit(now, &mut buffer).is_none() {
                    break;
                }
            }
        }
        prop_assert_eq!(plane.stats().datagrams_received, datagrams.len() as u64);
    }

    #[test]
    fn authentic_arbitrary_frames_never_panic(packets in proptest::collection::vec(proptest::collection::vec(frame(), 1..5), 1..30)) {
        let (a, b) = keys();
        let mut sealer = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &a);
        let mut plane = DataPlane::new(Timestamp::ZERO, b, DataPlaneConfig::default());
        plane.send_segment(Timestamp::ZERO, 1, DeliveryClass::Reliable, b"hello").unwrap();
        plane.send_segment(Timestamp::ZERO, 2, DeliveryClass::Deadline(Duration::from_millis(30)), b"now").unwrap();
        let mut datagram = Vec::new();
        let mut buffer = Vec::new();
        let mut now = Timestamp::ZERO;
        for frames in &packets {
            let mut body = Vec::new();
            for f in frames {
                encode(f, &mut body);
            }
            sealer.seal(&body, &mut datagram).unwrap();
            now += Duration::from_millis(3);
            let _ = plane.handle_datagram(now, &mut datagram);
            while plane.poll_delivery().is_some() {}
            let mut sent = 0;
            loop {
                buffer.clear();
                if plane.poll_transmit(now, &mut buffer).is_none() {
                    break;
                }
                sent += 1;
                prop_assert!(sent < 10_000, "poll_transmit never stops");
                prop_assert!(buffer.len() <= 1400);
            }
            if let Some(t) = plane.poll_timeout() {
                if t <= now {
                    plane.handle_timeout(now);
                }
            }
        }
        prop_assert_eq!(plane.stats().drops.forged, 0);
        prop_assert_eq!(plane.stats().datagrams_received, packets.len() as u64);
        let _ = plane.delivery_record();
    }
}
