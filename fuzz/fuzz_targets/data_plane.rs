//! One data plane fed arbitrary frames sealed under the right keys (an
//! authentic but misbehaving peer) and arbitrary bytes, with time moving:
//! never panics, never sends an oversized datagram, never loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tgp_proto::crypto::aead::{AeadAlgorithm, PacketSealer};
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::{DeliveryClass, SessionKeys, Timestamp};

fuzz_target!(|data: &[u8]| {
    let (a, b) = SessionKeys::pair([7; 32], [8; 32], 99);
    let mut sealer = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &a);
    let config = DataPlaneConfig::default();
    let max = config.max_datagram_size;
    let mut plane = DataPlane::new(Timestamp::ZERO, b, config);
    let mut now = Timestamp::ZERO;
    for (i, class) in [
        DeliveryClass::Reliable,
        DeliveryClass::Segment,
        DeliveryClass::Deadline(Duration::from_millis(40)),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = plane.send_segment(now, i as u64, class, &[i as u8; 300]);
    }
    let mut buffer = Vec::new();
    let mut datagram = Vec::new();
    // Records: [control byte][len byte][body]; control bit 0: seal it,
    // bits 1..: milliseconds to advance.
    let mut rest = data;
    let mut packets = 0;
    while let [control, len, tail @ ..] = rest {
        packets += 1;
        if packets > 200 {
            break;
        }
        let len = usize::from(*len).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_millis(u64::from(control >> 1));
        if control & 1 == 1 {
            sealer.seal(body, &mut datagram).expect("seal");
        } else {
            datagram.clear();
            datagram.extend_from_slice(body);
        }
        let _ = plane.handle_datagram(now, &mut datagram);
        while plane.poll_delivery().is_some() {}
        if plane.poll_timeout().is_some_and(|t| t <= now) {
            plane.handle_timeout(now);
        }
        let mut sent = 0;
        loop {
            buffer.clear();
            let Some(size) = plane.poll_transmit(now, &mut buffer) else { break };
            assert!(size <= max, "datagram of {size} bytes");
            sent += 1;
            assert!(sent < 10_000, "poll_transmit never stops");
        }
        let _ = plane.poll_timeout();
    }
    let _ = plane.delivery_record();
});
