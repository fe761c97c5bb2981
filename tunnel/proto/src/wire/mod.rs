//! The wire formats: how every byte tgp puts in a UDP payload is laid out,
//! parsed and emitted, and nothing about what it means. One [`Reader`] and
//! one set of writers ([`codec`]), one byte order (big-endian fixed-width
//! fields, LEB128 varints). Parsing untrusted bytes returns an error,
//! never panics; every parser is property-tested (and fuzzed, `fuzz/`).
//!
//! Each UDP payload starts with one byte naming its kind:
//! [`PACKET_TYPE_HANDSHAKE`] (layout in [`handshake`]) or
//! [`PACKET_TYPE_DATA`] (clear header in [`data`], sealed body of
//! [`frame`]s) or [`PACKET_TYPE_RETRY`] (a responder under load asks the
//! initiator to prove its address first, [`retry`]).

pub mod codec;
pub mod data;
pub mod frame;
pub mod handshake;
pub mod retry;

pub use codec::{CodecError, Reader};

/// First byte of a handshake packet.
pub const PACKET_TYPE_HANDSHAKE: u8 = 0x01;
/// First byte of a sealed data-plane packet.
pub const PACKET_TYPE_DATA: u8 = 0x02;
/// First byte of a retry (cookie reply) packet ([`retry`]).
pub const PACKET_TYPE_RETRY: u8 = 0x03;

/// The largest handshake packet we ever emit, in bytes: small enough to
/// cross any path without IP fragmentation.
pub const MAX_HANDSHAKE_PACKET: usize = 1200;
