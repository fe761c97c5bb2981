//! Packets in flight: a record of every packet sent and not yet
//! acknowledged, the bytes in flight for the window, and the rate samples
//! the acknowledgements give (how fast the path serviced our packets
//! between two receipts, and the round-trip time of the newest one).

use crate::delivery::rate::RateSample;
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// Most unacknowledged packets remembered.
const MAX_RECORDS: usize = 1 << 16;

struct SentPacket {
    sent_at: Timestamp,
    cumulative_sent: u64,
    last_ack_at: Timestamp,
    last_ack_serviced: u64,
    last_ack_packet_sent_at: Timestamp,
    app_limited: bool,
}

/// What was sent and what the receipts said of it.
pub(crate) struct InFlight {
    sent: VecDeque<(u64, SentPacket)>,
    /// How many records at the front of `sent` are past the loss timeout
    /// (they no longer count in flight, but are kept so that a late
    /// receipt still yields a round-trip sample).
    expired: usize,
    cumulative_sent: u64,
    last_ack_at: Timestamp,
    last_ack_serviced: u64,
    last_ack_packet_sent_at: Timestamp,
    expired_serviced: u64,
    largest_acked: Option<u64>,
}

impl InFlight {
    pub(crate) fn new(now: Timestamp) -> Self {
        InFlight {
            sent: VecDeque::new(),
            expired: 0,
            cumulative_sent: 0,
            last_ack_at: now,
            last_ack_serviced: 0,
            last_ack_packet_sent_at: now,
            expired_serviced: 0,
            largest_acked: None,
        }
    }

    /// A packet of `size` bytes left at `now`; `app_limited` if the sender
    /// was short of data.
    pub(crate) fn on_sent(
        &mut self,
        packet_number: u64,
        now: Timestamp,
        size: usize,
        app_limited: bool,
    ) {
        self.cumulative_sent += size as u64;
        self.sent.push_back((
            packet_number,
            SentPacket {
                sent_at: now,
                cumulative_sent: self.cumulative_sent,
                last_ack_at: self.last_ack_at,
                last_ack_serviced: self.last_ack_serviced,
                last_ack_packet_sent_at: self.last_ack_packet_sent_at,
                app_limited,
            },
        ));
        while self.sent.len() > MAX_RECORDS {
            self.pop_front();
        }
    }

    /// Bytes sent and not yet known to have arrived or been lost: a
    /// packet counts as gone once a later one is acknowledged, or once it
    /// is older than the loss timeout (so a lost tail of packets cannot
    /// close the window for good).
    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.cumulative_sent - self.last_ack_serviced.max(self.expired_serviced)
    }

    fn pop_front(&mut self) -> Option<(u64, SentPacket)> {
        let front = self.sent.pop_front()?;
        self.expired = self.expired.saturating_sub(1);
        Some(front)
    }

    /// Counts packets older than `timeout` as gone from the window, those
    /// whose time comes before `until` (when the peer falls silent).
    pub(crate) fn expire(&mut self, now: Timestamp, timeout: Duration, until: Timestamp) {
        while let Some((_, packet)) = self.sent.get(self.expired) {
            let expiry = packet.sent_at + timeout;
            if expiry > now || expiry >= until {
                break;
            }
            self.expired_serviced = self.expired_serviced.max(packet.cumulative_sent);
            self.expired += 1;
        }
    }

    /// When the oldest packet still counted in flight was sent.
    pub(crate) fn oldest_sent_at(&self) -> Option<Timestamp> {
        self.sent.get(self.expired).map(|(_, p)| p.sent_at)
    }

    /// A receipt acknowledges `largest` (received `ack_delay` before the
    /// receipt left). Returns the rate sample, if the packet is one we
    /// remember and newer than any acknowledged before.
    pub(crate) fn on_ack(
        &mut self,
        now: Timestamp,
        largest: u64,
        ack_delay: Duration,
        next_packet: u64,
    ) -> Option<RateSample> {
        if largest >= next_packet || self.largest_acked.is_some_and(|l| l >= largest) {
            return None;
        }
        // Drop records up to the acknowledged packet, keeping its own.
        while self.sent.len() > 1 && self.sent.front().is_some_and(|(pn, _)| *pn < largest) {
            self.pop_front();
        }
        if self.sent.front().is_none_or(|(pn, _)| *pn != largest) {
            return None;
        }
        let (_, packet) = self.pop_front()?;
        self.largest_acked = Some(largest);
        let raw_rtt = now - packet.sent_at;
        let rtt = if raw_rtt > ack_delay {
            raw_rtt - ack_delay
        } else {
            raw_rtt
        };
        let serviced = packet.cumulative_sent;
        let interval =
            (now - packet.last_ack_at).max(packet.sent_at - packet.last_ack_packet_sent_at);
        let rate = (interval > Duration::from_micros(100) && serviced > packet.last_ack_serviced)
            .then(|| (serviced - packet.last_ack_serviced) as f64 / interval.as_secs_f64());
        self.last_ack_at = now;
        self.last_ack_serviced = serviced;
        self.last_ack_packet_sent_at = packet.sent_at;
        Some(RateSample {
            rtt,
            serviced_bytes_per_second: rate,
            app_limited: packet.app_limited,
            acked_packet: largest,
            next_packet,
            bytes_in_flight: self.cumulative_sent - serviced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn an_acknowledgement_samples_rtt_and_service_rate() {
        let mut flight = InFlight::new(ms(0));
        for pn in 0..10 {
            flight.on_sent(pn, ms(pn), 1000, false);
        }
        assert_eq!(flight.bytes_in_flight(), 10_000);
        let sample = flight
            .on_ack(ms(109), 9, Duration::from_millis(1), 10)
            .unwrap();
        assert_eq!(sample.rtt, Duration::from_millis(99));
        let rate = sample.serviced_bytes_per_second.unwrap();
        assert!((rate - 10_000.0 / 0.109).abs() < 1.0, "{rate}");
        assert_eq!(flight.bytes_in_flight(), 0);
        assert!(
            flight.on_ack(ms(110), 9, Duration::ZERO, 10).is_none(),
            "only newer acks sample"
        );
    }

    #[test]
    fn old_packets_expire_out_of_the_window() {
        let mut flight = InFlight::new(ms(0));
        flight.on_sent(0, ms(0), 500, false);
        flight.on_sent(1, ms(50), 500, false);
        flight.expire(ms(120), Duration::from_millis(100), ms(1000));
        assert_eq!(flight.bytes_in_flight(), 500);
        assert_eq!(flight.oldest_sent_at(), Some(ms(50)));
    }

    #[test]
    fn a_receipt_after_the_loss_timeout_still_samples_the_round_trip() {
        let mut flight = InFlight::new(ms(0));
        flight.on_sent(0, ms(0), 500, false);
        flight.expire(ms(300), Duration::from_millis(150), ms(1000));
        assert_eq!(flight.bytes_in_flight(), 0);
        let sample = flight.on_ack(ms(600), 0, Duration::ZERO, 1).unwrap();
        assert_eq!(sample.rtt, Duration::from_millis(600));
    }
}
