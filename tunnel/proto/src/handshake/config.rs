//! Handshake settings: the parameters both sides bind into their
//! commitments (deadline, margin, datagram size) and the local ones.

use super::artifact::SessionParameters;
use std::time::Duration;

/// Handshake settings. Both sides must use the same `deadline`,
/// `cutoff_margin` and `max_datagram_size` (they are bound into the
/// commitments); the others are local.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// How often a side floods its proofs: the flood rate is 1 / interval.
    pub flood_interval: Duration,
    /// When the outcome is fixed, from the start of the handshake.
    pub deadline: Duration,
    /// Cut-off = deadline − margin: no own Q_CONF_FINAL is built after it.
    pub cutoff_margin: Duration,
    /// How long after the deadline an established side keeps answering.
    pub linger: Duration,
    /// The largest accepted difference between the peer's commitment
    /// timestamp and our clock.
    pub max_clock_skew: Duration,
    /// Largest UDP payload in the session (a session parameter).
    pub max_datagram_size: u16,
    /// Shift our start back to the peer's (from the elapsed time in its
    /// first authenticated packet), so a responder created on the first
    /// packet shares the initiator's deadline.
    pub align_start_to_peer: bool,
    /// The id of the session this handshake rekeys, bound into our
    /// commitment; `None` for a fresh session. Both sides naming the same
    /// session means the data plane continues under the new keys.
    pub continues_session: Option<u64>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            flood_interval: Duration::from_millis(5),
            deadline: Duration::from_secs(10),
            cutoff_margin: Duration::from_secs(5),
            linger: Duration::from_secs(10),
            max_clock_skew: Duration::from_secs(120),
            max_datagram_size: 1400,
            align_start_to_peer: false,
            continues_session: None,
        }
    }
}

impl HandshakeConfig {
    pub(crate) fn parameters(&self) -> SessionParameters {
        SessionParameters {
            deadline_ms: duration_ms(self.deadline),
            cutoff_margin_ms: duration_ms(self.cutoff_margin),
            max_datagram_size: self.max_datagram_size,
        }
    }
}

pub(super) fn duration_ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
