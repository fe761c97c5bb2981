//! `tgp-proto`: the TGP protocol core, sans-IO.
//!
//! No sockets, no async runtime, no clock: time comes in as a
//! [`Timestamp`] argument, bytes come in and go out through method calls
//! and caller buffers. That lets the whole protocol run inside the
//! deterministic simulator (the `tgp-sim` crate).
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | every wire format: parse and emit, one byte order |
//! | [`crypto`] | identities, key derivation, AEAD in place, replay window |
//! | [`handshake`] | the TGP Full Solve: proofs, flooding, cut-off and deadline |
//! | [`delivery`] | one session's data plane: flooded bilateral delivery with FEC |
//! | [`endpoint`] | every peer on one socket: sessions, rekeys, roaming, liveness |
//! | [`time`], [`class`] | virtual time; the delivery classes callers ask for |

pub mod class;
pub mod crypto;
pub mod delivery;
pub mod endpoint;
pub mod handshake;
pub mod time;
pub mod wire;

pub use class::DeliveryClass;
pub use crypto::keys::SessionKeys;
pub use delivery::{DataPlane, DataPlaneConfig, DataPlaneStats, Delivered, FlowId, SendError};
pub use endpoint::{Endpoint, EndpointConfig, Event, PeerId, PeerSettings};
pub use handshake::{Handshake, HandshakeConfig};
pub use time::Timestamp;
