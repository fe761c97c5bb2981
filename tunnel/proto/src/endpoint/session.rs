//! One peer's session: its data plane, its id, and the session ids still
//! mapped to it. A rekey continues the data plane under new keys, and the
//! old ids keep mapping here exactly as long as the data plane still opens
//! their packets (one grace time, kept by the data plane's keys).

use crate::crypto::keys::SessionKeys;
use crate::delivery::{DataPlane, DataPlaneConfig};
use crate::time::Timestamp;

/// A usable session with one peer.
pub(crate) struct Session {
    pub data: DataPlane,
    /// The current session id.
    pub session_id: u64,
    /// When the current keys were installed (the rekey timer runs from here).
    pub started_at: Timestamp,
    /// Whether the peer's silence has been reported.
    pub reported_silent: bool,
    /// When we first sent something after last hearing from the peer.
    pub first_unanswered_send: Option<Timestamp>,
    /// When something authentic last came from the peer (or the session
    /// started or was rekeyed).
    pub last_heard_at: Timestamp,
    /// Datagrams the data plane had sent when the current keys came.
    pub sent_at_rekey: u64,
    /// Session ids whose packets this session still opens (the current
    /// one, and older ones within their rekey grace time).
    ids: Vec<u64>,
}

impl Session {
    /// A fresh session.
    pub(crate) fn new(now: Timestamp, keys: SessionKeys, config: DataPlaneConfig) -> Self {
        let session_id = keys.session_id;
        Session {
            data: DataPlane::new(now, keys, config),
            session_id,
            started_at: now,
            reported_silent: false,
            first_unanswered_send: None,
            last_heard_at: now,
            sent_at_rekey: 0,
            ids: vec![session_id],
        }
    }

    /// Continues the session under new keys (a rekey): nothing in flight is
    /// lost, and the old keys still open packets for the grace time.
    pub(crate) fn rekey(&mut self, now: Timestamp, keys: SessionKeys) {
        let session_id = keys.session_id;
        self.data.rekey(now, keys);
        self.session_id = session_id;
        self.started_at = now;
        self.reported_silent = false;
        self.first_unanswered_send = None;
        self.last_heard_at = now;
        self.sent_at_rekey = self.data.stats().datagrams_sent;
        if !self.ids.contains(&session_id) {
            self.ids.push(session_id);
        }
    }

    /// Whether the current keys have sealed half their usage limit: time
    /// to rekey, whichever side usually does.
    pub(crate) fn keys_worn(&self) -> bool {
        self.data
            .stats()
            .datagrams_sent
            .saturating_sub(self.sent_at_rekey)
            >= crate::crypto::aead::PACKETS_PER_KEY / 2
    }

    /// Every session id mapped to this session.
    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Forgets the ids whose keys the data plane has retired; returns them.
    pub(crate) fn retire_ids(&mut self) -> Vec<u64> {
        let data = &self.data;
        let (kept, retired): (Vec<u64>, Vec<u64>) =
            self.ids.iter().partition(|&&id| data.opens(id));
        self.ids = kept;
        retired
    }

    /// Something authentic arrived from the peer.
    pub(crate) fn heard_from_peer(&mut self, now: Timestamp) {
        self.last_heard_at = now;
        self.reported_silent = false;
        self.first_unanswered_send = None;
    }
}
