//! The `tgp` tunnel: configuration, keys, and the daemon that moves
//! packets between the TUN device, `tgp-proto` and the UDP underlay.

pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod host;
pub mod keys;
pub mod metrics;
pub mod monitor;
pub mod reload;
pub mod routes;
pub mod snapshot;
pub mod split;
pub mod system;
#[cfg(test)]
mod test_tunnel;
pub mod tun_io;
pub mod udp_io;
