//! What the endpoint holds for one configured peer: its address, its
//! handshakes (the running one and one lingering to answer the peer), its
//! session, the IP packets waiting for a session, and the timers that start
//! a handshake (retry after failure, rekey, an unanswered session) — each
//! defined once here, for the endpoint's `poll_timeout` and its checks.

use super::admission::HandshakePaths;
use super::session::Session;
use super::PeerSettings;
use crate::class::DeliveryClass;
use crate::delivery::FlowId;
use crate::handshake::{Handshake, HandshakeStats, Outcome};
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) struct Peer {
    pub settings: PeerSettings,
    pub identity_bytes: [u8; 32],
    /// Where its packets come from and ours go.
    pub address: Option<SocketAddr>,
    pub handshake: Option<Handshake>,
    /// The previous handshake, replaced after it built RECEIPT: it keeps
    /// answering the peer's retransmissions of its session until it
    /// finishes, so the peer can still complete (the margin's guarantee).
    pub lingering: Option<Handshake>,
    pub last_handshake_stats: Option<HandshakeStats>,
    pub session: Option<Session>,
    pub pending: VecDeque<(FlowId, DeliveryClass, Vec<u8>)>,
    pub retry_at: Option<Timestamp>,
    pub failed_attempts: u32,
    pub newest_peer_commitment: u64,
    pub sessions_started: u64,
    /// Where the running handshake floods, and what it may send there.
    pub paths: HandshakePaths,
    /// A cookie a responder under load gave us, for its address.
    pub cookie: Option<(SocketAddr, [u8; crate::wire::retry::COOKIE_LEN])>,
}

impl Peer {
    pub(crate) fn new(settings: PeerSettings) -> Self {
        Peer {
            identity_bytes: settings.identity.to_bytes(),
            address: settings.endpoint,
            settings,
            handshake: None,
            lingering: None,
            last_handshake_stats: None,
            session: None,
            pending: VecDeque::new(),
            retry_at: None,
            failed_attempts: 0,
            newest_peer_commitment: 0,
            sessions_started: 0,
            paths: HandshakePaths::default(),
            cookie: None,
        }
    }

    /// Whether a handshake is under way that has not built RECEIPT yet.
    pub(crate) fn handshake_in_progress(&self) -> bool {
        self.handshake
            .as_ref()
            .is_some_and(|h| h.outcome() == Outcome::Pending && !h.has_receipt())
    }

    /// Makes `handshake` the current one. A replaced handshake that built
    /// RECEIPT and still has answering to do lingers.
    pub(crate) fn replace_handshake(&mut self, handshake: Handshake) {
        if let Some(old) = self.handshake.replace(handshake) {
            self.last_handshake_stats = Some(old.stats().clone());
            if old.has_receipt() && !old.is_finished() {
                self.lingering = Some(old);
            }
        }
        self.retry_at = None;
    }

    /// Timers that start a handshake sleep while one runs or a retry is
    /// scheduled (the retry timer covers that case), and need an address.
    fn may_start_handshake(&self) -> bool {
        self.address.is_some() && self.retry_at.is_none() && !self.handshake_in_progress()
    }

    /// When this side rekeys the session (only the side whose identity
    /// sorts first does: `we_rekey`).
    pub(crate) fn rekey_at(&self, rekey_interval: Duration, we_rekey: bool) -> Option<Timestamp> {
        let session = self.session.as_ref()?;
        (we_rekey && self.may_start_handshake()).then(|| session.started_at + rekey_interval)
    }

    /// When what we sent counts as unanswered and a new handshake starts.
    pub(crate) fn unanswered_at(&self, unresponsive_timeout: Duration) -> Option<Timestamp> {
        let first = self.session.as_ref()?.first_unanswered_send?;
        self.may_start_handshake()
            .then(|| first + unresponsive_timeout)
    }
}
