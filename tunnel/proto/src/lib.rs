//! `tgp-proto`: the TGP protocol core, sans-IO.
//!
//! No sockets, no async runtime, no clock: time comes in as a
//! [`time::Timestamp`] argument, bytes come in and go out through method
//! calls. That lets the whole protocol run inside the deterministic
//! simulator (the `tgp-sim` crate).

pub mod class;
pub mod crypto;
pub mod delivery;
pub mod endpoint;
pub mod handshake;
pub mod keys;
pub mod packet_protection;
pub mod time;
pub mod wire;

pub use class::DeliveryClass;
pub use keys::SessionKeys;
pub use time::Timestamp;
