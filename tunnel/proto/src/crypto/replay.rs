//! The sliding replay window of the data plane: which packet numbers of a
//! session have been accepted, so that a replayed (or flooded duplicate)
//! packet is dropped after one look at a bitmap.

use super::aead::OpenError;

/// How many packet numbers below the highest one seen are still accepted
/// (once each). Older packets are dropped as stale.
pub const REPLAY_WINDOW_PACKETS: u64 = 8192;

/// Which packet numbers have been accepted: the highest one and a bitmap of
/// the [`REPLAY_WINDOW_PACKETS`] below it.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: Vec<u64>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            highest: None,
            bits: vec![0; (REPLAY_WINDOW_PACKETS / 64) as usize],
        }
    }
}

impl ReplayWindow {
    /// Whether `packet_number` would be accepted (not yet seen, not stale).
    /// Does not record it: call [`ReplayWindow::mark`] once the packet has
    /// authenticated.
    pub fn check(&self, packet_number: u64) -> Result<(), OpenError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if packet_number > highest {
            return Ok(());
        }
        if highest - packet_number >= REPLAY_WINDOW_PACKETS {
            return Err(OpenError::Stale);
        }
        if self.is_set(packet_number) {
            Err(OpenError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records `packet_number` as accepted. Call only after
    /// [`ReplayWindow::check`] passed and the packet authenticated.
    pub fn mark(&mut self, packet_number: u64) {
        match self.highest {
            None => {
                self.highest = Some(packet_number);
            }
            Some(highest) if packet_number > highest => {
                let advance = packet_number - highest;
                if advance >= REPLAY_WINDOW_PACKETS {
                    self.bits.iter_mut().for_each(|word| *word = 0);
                } else {
                    for cleared in (highest + 1)..packet_number {
                        self.clear(cleared);
                    }
                }
                self.highest = Some(packet_number);
            }
            Some(_) => {}
        }
        self.set(packet_number);
    }

    fn slot(packet_number: u64) -> (usize, u64) {
        let index = packet_number % REPLAY_WINDOW_PACKETS;
        ((index / 64) as usize, 1u64 << (index % 64))
    }

    fn is_set(&self, packet_number: u64) -> bool {
        let (word, bit) = Self::slot(packet_number);
        self.bits[word] & bit != 0
    }

    fn set(&mut self, packet_number: u64) {
        let (word, bit) = Self::slot(packet_number);
        self.bits[word] |= bit;
    }

    fn clear(&mut self, packet_number: u64) {
        let (word, bit) = Self::slot(packet_number);
        self.bits[word] &= !bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_accepts_reordering_rejects_stale() {
        let mut window = ReplayWindow::default();
        window.mark(10_000);
        assert_eq!(window.check(9_999), Ok(()));
        window.mark(9_999);
        assert_eq!(window.check(9_999), Err(OpenError::Replayed));
        assert_eq!(
            window.check(10_000 - REPLAY_WINDOW_PACKETS),
            Err(OpenError::Stale)
        );
        window.mark(10_000 + REPLAY_WINDOW_PACKETS + 5);
        assert_eq!(window.check(10_000), Err(OpenError::Stale));
        assert_eq!(window.check(10_000 + REPLAY_WINDOW_PACKETS + 1), Ok(()));
    }

    proptest! {
        #[test]
        fn window_accepts_each_number_once(numbers in proptest::collection::vec(0u64..20_000, 0..300)) {
            let mut window = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            for n in numbers {
                match window.check(n) {
                    Ok(()) => { prop_assert!(seen.insert(n)); window.mark(n); }
                    Err(OpenError::Replayed) => prop_assert!(seen.contains(&n)),
                    Err(_) => {}
                }
            }
        }
    }
}
