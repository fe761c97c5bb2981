//! The deterministic network simulator: several sans-IO endpoints, a
//! virtual clock and a seeded link model per direction. No real time, no
//! sockets; the same seed gives the same run.

use crate::time::Timestamp;
use std::net::SocketAddr;

/// What the simulator needs from an endpoint under test. Every call passes
/// the virtual time; an endpoint never reads a clock.
pub trait Node {
    /// A datagram from `from` arrived.
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]);
    /// The next datagram to put on the wire, with its destination, if any.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)>;
    /// When the endpoint next wants [`Node::handle_timeout`] called.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// The time given by [`Node::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Timestamp);
}
