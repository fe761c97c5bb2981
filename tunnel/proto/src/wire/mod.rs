//! The wire formats: how every byte tgp puts in a UDP payload is laid out,
//! parsed and emitted, and nothing about what it means. One [`Reader`] and
//! one set of writers ([`codec`]), one byte order (big-endian fixed-width
//! fields, LEB128 varints). Parsing untrusted bytes returns an error,
//! never panics; every parser is property-tested (and fuzzed, `fuzz/`).
//!
//! Each UDP payload starts with one byte naming its kind:
//! [`PACKET_TYPE_HANDSHAKE`] (layout in [`handshake`]) or
//! [`PACKET_TYPE_DATA`] (clear header in [`data`], sealed body of
//! [`frame`]s).

pub mod codec;
pub mod data;
pub mod frame;
pub mod handshake;

pub use codec::{CodecError, Reader};

/// First byte of a handshake packet.
pub const PACKET_TYPE_HANDSHAKE: u8 = 0x01;
/// First byte of a sealed data-plane packet.
pub const PACKET_TYPE_DATA: u8 = 0x02;

/// The largest handshake packet we ever emit, in bytes: small enough to
/// cross any path without IP fragmentation.
pub const MAX_HANDSHAKE_PACKET: usize = 1200;
