//! How an endpoint is configured: its own settings and what it knows of
//! each peer in advance.

use super::admission::AdmissionConfig;
use crate::crypto::VerifyingKey;
use crate::delivery::DataPlaneConfig;
use crate::handshake::HandshakeConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Handshake settings (deadline, cut-off margin, flood rate).
    pub handshake: HandshakeConfig,
    /// Data plane settings (rate ceiling, datagram size, queue limits).
    pub data_plane: DataPlaneConfig,
    /// A session is rekeyed after this long.
    pub rekey_interval: Duration,
    /// Wait after a failed handshake before trying again.
    pub retry_interval: Duration,
    /// Longest wait between attempts while they keep failing.
    pub max_retry_interval: Duration,
    /// Start a new handshake when what we sent has gone unanswered this
    /// long. Must exceed the data plane's keepalive interval plus a round
    /// trip, or idle sessions rekey needlessly.
    pub unresponsive_timeout: Duration,
    /// IP packets held per peer while no session is usable.
    pub pending_packet_limit: usize,
    /// Limits on handshake work for sources that proved nothing (cookies,
    /// rate limits, the amplification factor).
    pub admission: AdmissionConfig,
    /// A session whose peer sent nothing authentic for this long is torn
    /// down (its state freed); a new handshake starts if the peer's
    /// address is known and something waits to be sent.
    pub dead_session_timeout: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            handshake: HandshakeConfig::default(),
            data_plane: DataPlaneConfig {
                keepalive_interval: Duration::from_secs(1),
                ..DataPlaneConfig::default()
            },
            rekey_interval: Duration::from_secs(120),
            retry_interval: Duration::from_secs(1),
            max_retry_interval: Duration::from_secs(30),
            unresponsive_timeout: Duration::from_secs(3),
            pending_packet_limit: 256,
            admission: AdmissionConfig::default(),
            dead_session_timeout: Duration::from_secs(180),
        }
    }
}

/// What the endpoint knows of a peer in advance.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// The peer's Ed25519 identity key.
    pub identity: VerifyingKey,
    /// Where to reach it; `None` for a peer that will call us (a server
    /// learns its clients' addresses).
    pub endpoint: Option<SocketAddr>,
}
