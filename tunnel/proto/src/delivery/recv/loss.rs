//! The receiver's loss meter: the share of the peer's packet numbers that
//! never arrive, over windows of [`LOSS_WINDOW_PACKETS`], smoothed. It is
//! reported to the peer in every receipt and sizes the peer's redundancy.

use crate::time::Timestamp;

/// Packets per window of the loss meter.
pub(crate) const LOSS_WINDOW_PACKETS: u64 = 64;

/// Loss of the peer's packets as seen here.
#[derive(Clone, Debug, Default)]
pub(crate) struct LossMeter {
    largest: Option<(u64, Timestamp)>,
    window_start: u64,
    window_count: u64,
    estimate: Option<f64>,
}

impl LossMeter {
    /// The highest packet number received, and when.
    pub(crate) fn largest_received(&self) -> Option<(u64, Timestamp)> {
        self.largest
    }

    /// The smoothed loss, once a window has closed.
    pub(crate) fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// An authentic packet with `packet_number` arrived at `now`.
    pub(crate) fn on_packet(&mut self, now: Timestamp, packet_number: u64) {
        match self.largest {
            Some((largest, _)) if largest >= packet_number => {}
            None => {
                self.largest = Some((packet_number, now));
                self.window_start = packet_number;
            }
            Some(_) => self.largest = Some((packet_number, now)),
        }
        if packet_number >= self.window_start {
            self.window_count += 1;
        }
        let largest = self.largest.map_or(0, |(l, _)| l);
        while largest >= self.window_start + LOSS_WINDOW_PACKETS {
            let window_loss = 1.0
                - (self.window_count.min(LOSS_WINDOW_PACKETS) as f64 / LOSS_WINDOW_PACKETS as f64);
            self.estimate = Some(match self.estimate {
                None => window_loss,
                Some(old) => old * 0.875 + window_loss * 0.125,
            });
            self.window_start += LOSS_WINDOW_PACKETS;
            // The packet that closed the window counts in the window it
            // falls in.
            self.window_count = u64::from(
                largest >= self.window_start && largest < self.window_start + LOSS_WINDOW_PACKETS,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_packet_missing_reads_as_half_lost() {
        let mut meter = LossMeter::default();
        for pn in (0..2000).step_by(2) {
            meter.on_packet(Timestamp::ZERO, pn);
        }
        let loss = meter.estimate().unwrap();
        assert!((loss - 0.5).abs() < 0.05, "{loss}");
        assert_eq!(meter.largest_received().map(|(pn, _)| pn), Some(1998));
    }

    #[test]
    fn nothing_missing_reads_as_no_loss() {
        let mut meter = LossMeter::default();
        for pn in 0..1000 {
            meter.on_packet(Timestamp::ZERO, pn);
        }
        assert!(meter.estimate().unwrap() < 0.02);
    }
}
