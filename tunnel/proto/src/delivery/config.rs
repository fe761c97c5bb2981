//! The data plane's tunables ([`DataPlaneConfig`]) and the few numbers
//! derived from them alone.

use crate::crypto::aead::{AeadAlgorithm, PROTECTION_OVERHEAD};
use crate::wire::frame::Symbol;
use std::time::Duration;

/// Space kept in every packet for receipts and other control frames.
pub(crate) const CONTROL_RESERVE: usize = 16;
/// Largest DATA/REPAIR frame header (type, varints, indices).
pub(crate) const SYMBOL_FRAME_HEADER: usize = 1 + 10 + 1 + 1 + 3;
/// Highest loss any estimate is allowed to reach, whatever the
/// configuration: redundancy for more would be unbounded.
pub(crate) const LOSS_HARD_CAP: f64 = 0.99;

/// Tunables of a [`DataPlane`]. [`Default`] suits a 1400-byte path.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// Never send faster than this, bits per second (`rate` option).
    pub rate_ceiling_bits_per_second: Option<u64>,
    /// Pacing rate before anything is measured, bits per second. The
    /// default is 8 Mbit/s: start-up from 2 Mbit/s lagged an inner TCP's
    /// slow start at 30 % loss and 100 ms (the first connection of a fresh
    /// session lost part of its first window in the send queue and ran at
    /// half the rate of later ones). A start above a slower link is brought
    /// down by its queue, at a price: on 2 Mbit/s at 10 % loss split mode
    /// ran about 30 % slower than from 2 Mbit/s. Slow links want a ceiling.
    pub initial_rate_bits_per_second: u64,
    /// Largest UDP payload to emit, in bytes.
    pub max_datagram_size: usize,
    /// Bytes the send queue may hold; beyond it [`SendError::QueueFull`].
    pub send_queue_limit_bytes: usize,
    /// Sojourn time in the send queue above which the queue manager starts
    /// refusing segments (CoDel-like), so an inner TCP sees congestion: 0.4
    /// of the smoothed round trip, within these bounds...
    pub send_queue_delay_target_min: Duration,
    /// ...and this.
    pub send_queue_delay_target_max: Duration,
    /// The send queue never holds more than this long at the current
    /// pacing rate (nor less than 64 kB): a sender that ignores the queue
    /// manager's drops meets a full queue instead of an ever longer one.
    pub send_queue_max_delay: Duration,
    /// Send a keepalive when nothing was sent for this long.
    pub keepalive_interval: Duration,
    /// The peer is silent when nothing authentic arrived for this long.
    pub idle_timeout: Duration,
    /// Fresh repair sent when a receipt shows a segment-mode or deadline
    /// group still short by `n`:
    /// `max(1, round(n / (1 − loss) × reactive_repair_factor))`. Below 1
    /// it undershoots a little and leaves the rest to the next round trip,
    /// which wastes less at high loss (every symbol beyond what the group
    /// needs is waste); 1 aims at the expected need. Stream groups always
    /// aim at the expected need: their receiver holds everything behind a
    /// hole.
    pub reactive_repair_factor: f64,
    /// Proactive repair of segment-mode TCP, as a multiple of the expected
    /// loss (`p / (1 − p)` symbols per source): above 1, equations outrun
    /// losses and a hole fills within a few packets.
    pub segment_repair_factor: f64,
    /// Target probability that a deadline datagram is lost for good with
    /// proactive repair alone (per datagram: the on-time share's complement).
    pub deadline_residual_target: f64,
    /// Loss assumed for deadline traffic before any is measured, and as a
    /// floor.
    pub deadline_loss_floor: f64,
    /// Highest loss the redundancy and the anti-amplification cap honour
    /// (0..1; values above 0.99 count as 0.99).
    pub max_loss: f64,
    /// Queueing delay above the minimum RTT that counts as congestion.
    pub queue_delay_target: Duration,
    /// Receipts are sent at least this often while there is news.
    pub receipt_interval: Duration,
    /// Most segments between the oldest unconfirmed one and the newest.
    pub max_unresolved_segments: u64,
    /// How long an old session's keys still open packets after a rekey.
    pub rekey_grace: Duration,
    /// The AEAD; both ends must agree.
    pub aead: AeadAlgorithm,
}

impl DataPlaneConfig {
    /// Largest segment a data plane with this configuration accepts: the
    /// datagram size less protection, frame headers and the room kept for
    /// control frames.
    pub fn max_segment_size(&self) -> usize {
        self.max_datagram_size
            .saturating_sub(PROTECTION_OVERHEAD + SYMBOL_FRAME_HEADER + 2 + CONTROL_RESERVE)
            .saturating_sub(Symbol::MAX_OVERHEAD)
    }

    /// The highest loss redundancy and caps honour: [`DataPlaneConfig::max_loss`]
    /// within 0..0.99.
    pub(crate) fn loss_cap(&self) -> f64 {
        self.max_loss.clamp(0.0, LOSS_HARD_CAP)
    }

    /// Fresh repair symbols for a group still short by `needed` symbols,
    /// given `1 / (1 − loss)` and whether nothing is queued behind it.
    pub(crate) fn reactive_repair_count(&self, needed: u64, loss_factor: f64, tail: bool) -> u32 {
        // At the tail nothing later hides another round trip: overshoot.
        let factor = if tail {
            self.reactive_repair_factor.max(1.0) * 1.25
        } else {
            self.reactive_repair_factor
        };
        ((needed as f64 * loss_factor * factor).round() as u32).max(1)
    }
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            rate_ceiling_bits_per_second: None,
            initial_rate_bits_per_second: 8_000_000,
            max_datagram_size: 1400,
            send_queue_limit_bytes: 1 << 20,
            send_queue_delay_target_min: Duration::from_millis(5),
            send_queue_delay_target_max: Duration::from_millis(50),
            send_queue_max_delay: Duration::from_millis(250),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reactive_repair_factor: 0.8,
            segment_repair_factor: 1.5,
            deadline_residual_target: 5e-4,
            deadline_loss_floor: 0.01,
            max_loss: 0.95,
            queue_delay_target: Duration::from_millis(10),
            receipt_interval: Duration::from_millis(5),
            max_unresolved_segments: 16_384,
            rekey_grace: Duration::from_secs(3),
            aead: AeadAlgorithm::Aes256Gcm,
        }
    }
}
