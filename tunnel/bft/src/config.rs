//! The replica's settings: pacing of the flood, round timeouts, bounds.

use std::time::Duration;

/// Settings of a [`crate::Replica`]. Every member should use the same
/// values (they are not negotiated; different timeouts only cost time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BftConfig {
    /// Time between two flood ticks. At each tick a replica sends every
    /// peer (that may lack something, see the crate docs) at most
    /// [`BftConfig::burst`] packets.
    pub flood_interval: Duration,
    /// After the replica makes something new (a vote, a proposal, a
    /// decision) it floods at the next tick or `min_gap` after the last
    /// one, whichever is later, instead of waiting a whole interval.
    pub min_gap: Duration,
    /// Packets per peer per tick, at most.
    pub burst: usize,
    /// Retransmission spacing: an artifact sent to a peer goes to it again
    /// (while the peer's status still shows it lacking) this long after
    /// the first time, then after twice, four and eight times as long.
    pub resend_after: Duration,
    /// An artifact signed by someone else is relayed to a peer only once
    /// the peer's status, received at least this long after we got the
    /// artifact, still shows it lacking (it had time to get it from the
    /// signer). Own artifacts go at once.
    pub relay_after: Duration,
    /// With nothing to send and no change of status, a peer still gets a
    /// status packet this often (so that it knows what we lack).
    pub keepalive: Duration,
    /// How long round 0 lasts before a replica moves on.
    pub round_timeout: Duration,
    /// How much longer each further round lasts than the previous one
    /// (round r lasts `round_timeout + r × round_timeout_step`), so that
    /// once delays are bounded, rounds eventually last long enough.
    pub round_timeout_step: Duration,
    /// Rounds kept; a replica never goes past round `max_rounds − 1` and
    /// drops artifacts of later rounds. Bounds the state per instance.
    pub max_rounds: u32,
    /// After deciding, how long the replica keeps flooding the certificate
    /// to peers not known to have committed.
    pub linger: Duration,
    /// After the linger, how long it still answers a packet of a peer that
    /// has not committed with the certificate (at most once per interval
    /// per peer). Then the replica is finished.
    pub answer_for: Duration,
    /// **Breaks safety; for the test suite only** (feature
    /// `fault-injection`): prevote every proposal whatever the lock, so
    /// that the suite can show it catches a broken lock rule.
    #[cfg(feature = "fault-injection")]
    pub ignore_locks: bool,
}

impl Default for BftConfig {
    fn default() -> Self {
        BftConfig {
            flood_interval: Duration::from_millis(20),
            min_gap: Duration::from_millis(5),
            burst: 4,
            resend_after: Duration::from_millis(40),
            relay_after: Duration::from_millis(20),
            keepalive: Duration::from_millis(100),
            round_timeout: Duration::from_millis(500),
            round_timeout_step: Duration::from_millis(250),
            max_rounds: 64,
            linger: Duration::from_secs(1),
            answer_for: Duration::from_secs(30),
            #[cfg(feature = "fault-injection")]
            ignore_locks: false,
        }
    }
}

/// A setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A zero flood interval would flood without limit.
    #[error("flood_interval must be greater than zero")]
    ZeroFloodInterval,
    /// A zero round timeout would skip rounds without limit.
    #[error("round_timeout must be greater than zero")]
    ZeroRoundTimeout,
    /// No packet per tick.
    #[error("burst must be at least 1 packet per peer per tick")]
    ZeroBurst,
    /// No round at all.
    #[error("max_rounds must be at least 1")]
    ZeroRounds,
}

impl BftConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.flood_interval.is_zero() {
            return Err(ConfigError::ZeroFloodInterval);
        }
        if self.round_timeout.is_zero() {
            return Err(ConfigError::ZeroRoundTimeout);
        }
        if self.burst == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        if self.max_rounds == 0 {
            return Err(ConfigError::ZeroRounds);
        }
        Ok(())
    }

    /// How long `round` lasts.
    pub fn round_duration(&self, round: u32) -> Duration {
        self.round_timeout
            .saturating_add(self.round_timeout_step.saturating_mul(round))
    }
}
