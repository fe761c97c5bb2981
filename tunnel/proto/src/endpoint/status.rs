//! What an endpoint reports for `tgp status`: drops before any peer saw a
//! datagram, and a snapshot per peer.

use crate::delivery::DataPlaneStats;
use crate::handshake::HandshakeStats;
use std::net::SocketAddr;

/// Datagrams the endpoint dropped before any peer state saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointDrops {
    /// Neither a handshake nor a data packet.
    pub not_tgp: u64,
    /// Data packets too short for a header and a tag.
    pub truncated: u64,
    /// A handshake packet from an identity we do not know.
    pub unknown_peer: u64,
    /// A data packet of a session no peer has.
    pub unknown_session: u64,
    /// A handshake packet that could not start a new handshake (stale,
    /// replayed or forged commitment).
    pub stale_handshake: u64,
    /// IP packets dropped because no session was usable and the hold
    /// queue was full, or the peer's address is unknown.
    pub no_session: u64,
    /// IP packets the data plane refused (queue full or too large).
    pub send_refused: u64,
    /// Signature checks of new commitments from the network.
    pub handshake_verifications: u64,
    /// New commitments dropped by the per-source or endpoint-wide
    /// handshake budget, before any signature work.
    pub handshake_rate_limited: u64,
    /// Retry (cookie) packets sent while under load.
    pub retries_sent: u64,
    /// Retry packets that named no handshake of ours.
    pub stale_retry: u64,
}

/// The state of a peer's session, for `tgp status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No session and no handshake running.
    Idle,
    /// A handshake is running and no session is usable yet.
    Handshaking,
    /// A session is usable.
    Up,
}

/// A snapshot of one peer.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// The peer's identity key.
    pub identity: [u8; 32],
    /// Session state.
    pub state: SessionState,
    /// Where its packets come from and ours go.
    pub endpoint: Option<SocketAddr>,
    /// The current session's id.
    pub session_id: Option<u64>,
    /// Data plane counters and estimates (RTT, loss each way, redundancy,
    /// rate, bytes and packets, drops by reason), if a session exists.
    pub data: Option<DataPlaneStats>,
    /// Counters of the current or last handshake.
    pub handshake: Option<HandshakeStats>,
    /// Sessions set up with this peer so far (rekeys included).
    pub sessions_started: u64,
    /// IP packets waiting for a session.
    pub pending_packets: usize,
}
