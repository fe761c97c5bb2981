//! The receiver's loss meter: the share of the peer's packet numbers that
//! never arrive, over windows of [`LOSS_WINDOW_PACKETS`]. It is reported to
//! the peer in every receipt and sizes the peer's redundancy, so it must
//! be right early: while warming up it is the loss over everything seen so
//! far, pulled towards a weak prior; after [`WARM_UP_WINDOWS`] windows it
//! is a moving average over about the last [`MEMORY_WINDOWS`] windows.

use crate::time::Timestamp;

/// Packets per window of the loss meter.
pub(crate) const LOSS_WINDOW_PACKETS: u64 = 32;
/// Windows over which the estimate is a plain average (with the prior).
const WARM_UP_WINDOWS: u64 = 16;
/// Memory of the moving average afterwards, in windows (weight 1/16).
const MEMORY_WINDOWS: f64 = 16.0;
/// The prior: as if this many packets had been seen...
const PRIOR_PACKETS: f64 = 16.0;
/// ...of which this share was lost.
const PRIOR_LOSS: f64 = 0.05;

/// Loss of the peer's packets as seen here.
#[derive(Clone, Debug, Default)]
pub(crate) struct LossMeter {
    largest: Option<(u64, Timestamp)>,
    window_start: u64,
    window_count: u64,
    windows: u64,
    lost_total: u64,
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
        // Close every window the new packet lies beyond; packets of a
        // closed window that arrive late count as lost.
        let newest = self.largest.map_or(0, |(l, _)| l);
        while newest >= self.window_start + LOSS_WINDOW_PACKETS {
            let lost = LOSS_WINDOW_PACKETS - self.window_count.min(LOSS_WINDOW_PACKETS);
            self.windows += 1;
            self.lost_total += lost;
            let window_loss = lost as f64 / LOSS_WINDOW_PACKETS as f64;
            self.estimate = Some(match self.estimate {
                Some(old) if self.windows > WARM_UP_WINDOWS => {
                    old + (window_loss - old) / MEMORY_WINDOWS
                }
                _ => {
                    let seen = (self.windows * LOSS_WINDOW_PACKETS) as f64;
                    (self.lost_total as f64 + PRIOR_LOSS * PRIOR_PACKETS) / (seen + PRIOR_PACKETS)
                }
            });
            self.window_start += LOSS_WINDOW_PACKETS;
            self.window_count = 0;
        }
        if (self.window_start..self.window_start + LOSS_WINDOW_PACKETS).contains(&packet_number) {
            self.window_count += 1;
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

    #[test]
    fn the_first_windows_already_tell_ten_percent_from_none() {
        let mut lossy = LossMeter::default();
        let mut clean = LossMeter::default();
        for pn in 0..200 {
            if pn % 10 != 3 {
                lossy.on_packet(Timestamp::ZERO, pn);
            }
            clean.on_packet(Timestamp::ZERO, pn);
        }
        let lossy = lossy.estimate().unwrap();
        let clean = clean.estimate().unwrap();
        assert!((0.07..0.13).contains(&lossy), "{lossy}");
        assert!(clean < 0.01, "{clean}");
    }
}
