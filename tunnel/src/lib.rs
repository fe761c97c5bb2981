//! The `tgp` tunnel: configuration, keys, and (later, issue 4) the daemon
//! that moves packets between the TUN device, `tgp-proto` and the UDP
//! underlay.

pub mod config;
pub mod keys;
pub mod units;
