//! The `tgp` tunnel: configuration, keys, and the daemon that moves
//! packets between the TUN device, `tgp-proto` and the UDP underlay.

pub mod config;
pub mod control;
pub mod daemon;
pub mod keys;
pub mod split;
