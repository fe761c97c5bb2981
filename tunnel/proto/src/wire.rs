//! Wire-level constants shared by every packet kind. Each UDP payload
//! starts with one byte naming its kind; the module that owns the kind
//! parses the rest.

/// First byte of a handshake packet (see [`crate::handshake`]).
pub const PACKET_TYPE_HANDSHAKE: u8 = 0x01;
/// First byte of a sealed data-plane packet (see [`crate::delivery`]).
pub const PACKET_TYPE_DATA: u8 = 0x02;

/// The largest handshake packet we ever emit, in bytes: small enough to
/// cross any path without IP fragmentation.
pub const MAX_HANDSHAKE_PACKET: usize = 1200;
