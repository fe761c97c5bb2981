//! Every decoder of untrusted bytes: data header, frames (and a
//! re-encode/re-parse round trip), symbols, handshake packets and their
//! artifacts, retry packets, varints, FEC shards. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp_proto::delivery::fec;
use tgp_proto::handshake::artifact::{Commitment, Level, Proof};
use tgp_proto::wire::data::DataHeader;
use tgp_proto::wire::frame::{parse_frames, Symbol};
use tgp_proto::wire::handshake::{peek_sender, HandshakePacket};
use tgp_proto::wire::retry::RetryPacket;
use tgp_proto::wire::Reader;

fuzz_target!(|data: &[u8]| {
    let _ = DataHeader::parse(data);
    if let Ok(frames) = parse_frames(data) {
        let mut out = Vec::new();
        for frame in &frames {
            frame.encode(&mut out);
        }
        let again = parse_frames(&out).expect("re-encoded frames parse");
        assert_eq!(again, frames, "frames survive a round trip");
    }
    if let Ok(symbol) = Symbol::parse(data) {
        let mut out = Vec::new();
        symbol.encode(&mut out);
        assert_eq!(Symbol::parse(&out).expect("re-encoded symbol parses"), symbol);
    }
    let _ = peek_sender(data);
    if let Ok(packet) = HandshakePacket::parse(data) {
        let mut out = Vec::new();
        packet.encode(&mut out);
        assert_eq!(out, data, "a parsed handshake packet re-encodes to its bytes");
        for artifact in &packet.artifacts {
            if let Some(level) = Level::from_number(artifact.kind) {
                if level == Level::Commitment {
                    let _ = Commitment::decode(artifact.body);
                } else {
                    let _ = Proof::decode(level, artifact.body);
                }
            }
        }
    }
    let _ = RetryPacket::parse(data);
    let _ = Commitment::decode(data);
    for level in Level::ALL {
        let _ = Proof::decode(level, data);
    }
    let mut reader = Reader::new(data);
    while reader.varint().is_ok() {}
    let _ = fec::symbol_of_shard(data);
});
