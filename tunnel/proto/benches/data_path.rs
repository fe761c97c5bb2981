//! Micro-benchmarks of the data plane's per-packet work (`cargo bench -p
//! tgp-proto`): sealing and opening one packet, sliding-window FEC encode
//! and decode over tgp's window sizes (with reed-solomon-simd's block code
//! on the same sizes beside it, for reference), and one segment's whole
//! way from one data plane to the other in memory (queue, frame, seal,
//! open, parse, deliver, with receipts going back).
//!
//! Figures are per packet or per repair; the README of this crate records
//! a run's figures.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::hint::black_box;
use std::time::Duration;
use tgp_proto::crypto::aead::{AeadAlgorithm, PacketOpener, PacketSealer};
use tgp_proto::delivery::fec::{self, RepairWindow, WindowDecoder};
use tgp_proto::wire::data::HEADER_LEN;
use tgp_proto::{DataPlane, DataPlaneConfig, DeliveryClass, SessionKeys, Timestamp};

/// A full-size tunnel packet: the daemon's default inner MTU.
const PACKET: usize = 1340;
/// FEC window sizes to measure (tgp's repairs cover up to 64 sources).
const WINDOWS: [usize; 4] = [8, 16, 32, 64];

fn keys() -> (SessionKeys, SessionKeys) {
    SessionKeys::pair([0x11; 32], [0x22; 32], 0x5e55)
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("aead");
    group.throughput(Throughput::Bytes(PACKET as u64));
    for (name, algorithm) in [
        ("aes256gcm", AeadAlgorithm::Aes256Gcm),
        ("chacha20poly1305", AeadAlgorithm::ChaCha20Poly1305),
    ] {
        let body = payload(PACKET, 1);
        let (a, b) = keys();
        let mut sealer = PacketSealer::new(algorithm, &a);
        let mut buffer = Vec::with_capacity(PACKET + 64);
        group.bench_function(format!("seal_{name}_{PACKET}"), |bench| {
            bench.iter(|| {
                buffer.clear();
                buffer.resize(HEADER_LEN, 0);
                buffer.extend_from_slice(&body);
                black_box(sealer.seal_in_place(&mut buffer, 0).ok());
            })
        });
        // Open needs fresh packet numbers (the replay window refuses
        // repeats): seal a batch ahead, open one per iteration.
        let mut sealer = PacketSealer::new(algorithm, &a);
        let mut opener = PacketOpener::new(algorithm, &b);
        group.bench_function(format!("open_{name}_{PACKET}"), |bench| {
            bench.iter_batched_ref(
                || {
                    let mut packet = Vec::with_capacity(PACKET + 64);
                    packet.resize(HEADER_LEN, 0);
                    packet.extend_from_slice(&body);
                    let _ = sealer.seal_in_place(&mut packet, 0);
                    packet
                },
                |packet| black_box(opener.open_in_place(packet).is_ok()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// `k` source shards as the sender holds them (length-prefixed).
fn shards(k: usize) -> Vec<(u64, Vec<u8>)> {
    (0..k as u64)
        .map(|seq| (seq, fec::source_shard(&payload(PACKET, seq as u8))))
        .collect()
}

fn fec_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec_encode");
    for k in WINDOWS {
        let sources = shards(k);
        let borrowed: Vec<(u64, &[u8])> = sources.iter().map(|(s, d)| (*s, d.as_slice())).collect();
        // One repair over k sources (what tgp sends per repair datagram).
        group.throughput(Throughput::Bytes((k * PACKET) as u64));
        let mut id = 0u64;
        group.bench_function(format!("tgp_rlc_1_repair_over_{k}"), |bench| {
            bench.iter(|| {
                id += 1;
                black_box(fec::encode_repair(id, &borrowed))
            })
        });
        // reed-solomon-simd's block code: k originals to k/4 recoveries
        // (at least 1); even shard size as it requires. Per repair it is
        // the total divided by the recovery count.
        let recovery = (k / 4).max(1);
        let even = |mut v: Vec<u8>| {
            if v.len() % 2 == 1 {
                v.push(0);
            }
            v
        };
        let originals: Vec<Vec<u8>> = sources.iter().map(|(_, d)| even(d.clone())).collect();
        let shard_bytes = originals[0].len();
        let mut encoder = ReedSolomonEncoder::new(k, recovery, shard_bytes)
            .expect("reed-solomon-simd takes this shard count");
        group.bench_function(format!("rs_simd_{k}_to_{recovery}"), |bench| {
            bench.iter(|| {
                let _ = encoder.reset(k, recovery, shard_bytes);
                for original in &originals {
                    let _ = encoder.add_original_shard(original);
                }
                black_box(encoder.encode().map(|r| r.recovery_iter().count()).ok())
            })
        });
        group.bench_function(format!("tgp_rlc_{recovery}_repairs_over_{k}"), |bench| {
            bench.iter(|| {
                for _ in 0..recovery {
                    id += 1;
                    black_box(fec::encode_repair(id, &borrowed));
                }
            })
        });
    }
    group.finish();
}

fn fec_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec_decode");
    group.sample_size(30);
    for k in WINDOWS {
        let sources = shards(k);
        let lost = (k / 4).max(1);
        let seqs: Vec<u64> = (0..k as u64).collect();
        let Some(window) = RepairWindow::from_seqs(&seqs) else {
            continue;
        };
        let borrowed: Vec<(u64, &[u8])> = sources.iter().map(|(s, d)| (*s, d.as_slice())).collect();
        let repairs: Vec<(u64, Vec<u8>)> = (1..=lost as u64)
            .map(|id| (id, fec::encode_repair(id, &borrowed)))
            .collect();
        // Lose every fourth source; recover them from `lost` repairs.
        let missing: Vec<u64> = (0..lost as u64).map(|i| i * 4).collect();
        group.throughput(Throughput::Elements(lost as u64));
        group.bench_function(format!("tgp_rlc_recover_{lost}_of_{k}"), |bench| {
            bench.iter_batched(
                || {
                    let mut decoder = WindowDecoder::default();
                    for (seq, shard) in &sources {
                        if !missing.contains(seq) {
                            decoder.add_source(*seq, shard.clone());
                        }
                    }
                    decoder
                },
                |mut decoder| {
                    for (id, shard) in &repairs {
                        let _ = decoder.add_repair(window, *id, shard);
                    }
                    let mut recovered = 0;
                    while decoder.poll_recovered().is_some() {
                        recovered += 1;
                    }
                    assert_eq!(recovered, lost, "the decoder recovered too few");
                    recovered
                },
                BatchSize::SmallInput,
            )
        });
        let even = |mut v: Vec<u8>| {
            if v.len() % 2 == 1 {
                v.push(0);
            }
            v
        };
        let originals: Vec<Vec<u8>> = sources.iter().map(|(_, d)| even(d.clone())).collect();
        let Ok(recovery) = reed_solomon_simd::encode(k, lost, &originals) else {
            continue;
        };
        let shard_bytes = originals[0].len();
        let mut decoder = ReedSolomonDecoder::new(k, lost, shard_bytes)
            .expect("reed-solomon-simd takes this shard count");
        group.bench_function(format!("rs_simd_recover_{lost}_of_{k}"), |bench| {
            bench.iter(|| {
                let _ = decoder.reset(k, lost, shard_bytes);
                for (i, original) in originals.iter().enumerate() {
                    if !missing.contains(&(i as u64)) {
                        let _ = decoder.add_original_shard(i, original);
                    }
                }
                for (i, shard) in recovery.iter().enumerate() {
                    let _ = decoder.add_recovery_shard(i, shard);
                }
                let restored = decoder.decode().map(|r| r.restored_original_iter().count());
                assert_eq!(
                    restored.ok(),
                    Some(lost),
                    "reed-solomon-simd recovered too few"
                );
            })
        });
    }
    group.finish();
}

/// One segment from one data plane to the other, in memory: A queues and
/// sends, B opens, parses and delivers; B's datagrams (receipts) go back
/// to A. Time advances 10 µs per segment (a 1 Gbit/s pace for 1340-byte
/// segments), with a rate well above that so pacing never waits.
fn data_plane(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_plane");
    group.throughput(Throughput::Bytes(PACKET as u64));
    group.measurement_time(Duration::from_secs(5));
    let config = DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(10_000_000_000),
        initial_rate_bits_per_second: 10_000_000_000,
        ..DataPlaneConfig::default()
    };
    for (name, class) in [
        ("segment", DeliveryClass::Segment),
        ("reliable", DeliveryClass::Reliable),
    ] {
        let (ka, kb) = keys();
        let mut a = DataPlane::new(Timestamp::ZERO, ka, config.clone());
        let mut b = DataPlane::new(Timestamp::ZERO, kb, config.clone());
        let segment = payload(PACKET.min(a.max_segment_size()), 7);
        let mut now = Timestamp::ZERO;
        let mut wire = Vec::with_capacity(2048);
        let mut delivered = 0u64;
        let mut ran = false;
        group.bench_function(format!("one_segment_a_to_b_{name}"), |bench| {
            ran = true;
            bench.iter(|| {
                now += Duration::from_micros(10);
                let _ = a.send_segment(now, 1, class, &segment);
                pump(now, &mut a, &mut b, &mut wire);
                pump(now, &mut b, &mut a, &mut wire);
                while let Some(d) = b.poll_delivery() {
                    delivered += d.segment.len() as u64;
                }
                black_box(delivered)
            })
        });
        // The benchmark is only meaningful if the segments got through
        // (when it ran: a filter on the command line may skip it).
        assert!(
            !ran || delivered > 0,
            "{name}: nothing was delivered; the benchmark measured nothing"
        );
    }
    group.finish();
}

/// Fires `from`'s timer if due and hands everything it sends to `to`.
fn pump(now: Timestamp, from: &mut DataPlane, to: &mut DataPlane, wire: &mut Vec<u8>) {
    if from.poll_timeout().is_some_and(|t| t <= now) {
        from.handle_timeout(now);
    }
    wire.clear();
    while let Some(size) = from.poll_transmit(now, wire) {
        let start = wire.len() - size;
        let _ = to.handle_datagram(now, &mut wire[start..]);
        wire.clear();
    }
}

criterion_group!(benches, seal_open, fec_encode, fec_decode, data_plane);
criterion_main!(benches);
