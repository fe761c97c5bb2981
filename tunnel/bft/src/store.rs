//! What a replica holds of each round: the proposal and the verified votes
//! of each phase, grouped by value. Bounded: one proposal per round, and
//! per (phase, round) at most two values per signer (the first vote, and
//! one equivocating vote kept so that an equivocator cannot hide a real
//! quorum); further votes of that signer are refused.

use crate::membership::{bit, Bitmap};
use crate::message::{Phase, SignatureBytes, Value};
use tgp_proto::Timestamp;

/// Votes of one (phase, round) for one value.
#[derive(Clone, Debug)]
pub(crate) struct VoteSet {
    pub(crate) value: Value,
    pub(crate) signers: Bitmap,
    /// (signer, signature), sorted by signer.
    pub(crate) signatures: Vec<(u8, SignatureBytes)>,
    /// When each signature (same order) was first held.
    pub(crate) since: Vec<Timestamp>,
}

impl VoteSet {
    pub(crate) fn count(&self) -> usize {
        self.signers.count_ones() as usize
    }

    /// The signatures of `subset` (of `signers`), in signer order.
    pub(crate) fn signatures_of(&self, subset: Bitmap) -> Vec<SignatureBytes> {
        self.signatures
            .iter()
            .filter(|(s, _)| subset & bit(usize::from(*s)) != 0)
            .map(|(_, sig)| *sig)
            .collect()
    }

    /// When `signer`'s vote was first held.
    pub(crate) fn held_since(&self, signer: usize) -> Option<Timestamp> {
        let at = self
            .signatures
            .iter()
            .position(|(s, _)| usize::from(*s) == signer)?;
        self.since.get(at).copied()
    }

    /// The first `count` signers.
    pub(crate) fn first_signers(&self, count: usize) -> Bitmap {
        self.signatures
            .iter()
            .take(count)
            .fold(0, |acc, (s, _)| acc | bit(usize::from(*s)))
    }
}

/// What inserting a vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Already held.
    Duplicate,
    /// A third value from this signer in this (phase, round): refused.
    Refused,
    /// New; `count` votes for the value now; `equivocation` if the signer
    /// had voted for another value.
    New { count: usize, equivocation: bool },
}

/// The votes of one (phase, round).
#[derive(Clone, Debug, Default)]
pub(crate) struct PhaseVotes {
    pub(crate) sets: Vec<VoteSet>,
    /// Signers with at least one vote held.
    pub(crate) voters: Bitmap,
    /// Signers with two votes held (equivocators).
    pub(crate) twice: Bitmap,
}

impl PhaseVotes {
    pub(crate) fn has(&self, signer: usize, value: &Value) -> bool {
        self.set(value)
            .is_some_and(|s| s.signers & bit(signer) != 0)
    }

    pub(crate) fn voted(&self, signer: usize) -> bool {
        self.voters & bit(signer) != 0
    }

    /// Whether a new vote of `signer` would be stored (not a duplicate
    /// check: see [`PhaseVotes::has`]).
    pub(crate) fn room_for(&self, signer: usize) -> bool {
        self.twice & bit(signer) == 0
    }

    pub(crate) fn set(&self, value: &Value) -> Option<&VoteSet> {
        self.sets.iter().find(|s| &s.value == value)
    }

    pub(crate) fn count(&self, value: &Value) -> usize {
        self.set(value).map_or(0, VoteSet::count)
    }

    /// The value with at least `quorum` votes, if any (the first such: with
    /// at most f equivocators there is at most one).
    pub(crate) fn quorum_value(&self, quorum: usize) -> Option<&VoteSet> {
        self.sets.iter().find(|s| s.count() >= quorum)
    }

    /// The most votes any one value has.
    pub(crate) fn max_count(&self) -> usize {
        self.sets.iter().map(VoteSet::count).max().unwrap_or(0)
    }

    pub(crate) fn insert(
        &mut self,
        now: Timestamp,
        signer: usize,
        value: Value,
        signature: SignatureBytes,
    ) -> Inserted {
        if self.has(signer, &value) {
            return Inserted::Duplicate;
        }
        if !self.room_for(signer) {
            return Inserted::Refused;
        }
        let equivocation = self.voted(signer);
        if equivocation {
            self.twice |= bit(signer);
        }
        self.voters |= bit(signer);
        let set = match self.sets.iter().position(|s| s.value == value) {
            Some(i) => &mut self.sets[i],
            None => {
                self.sets.push(VoteSet {
                    value,
                    signers: 0,
                    signatures: Vec::new(),
                    since: Vec::new(),
                });
                self.sets.last_mut().expect("just pushed")
            }
        };
        set.signers |= bit(signer);
        let signer_byte = signer as u8;
        let at = set.signatures.partition_point(|(s, _)| *s < signer_byte);
        set.signatures.insert(at, (signer_byte, signature));
        set.since.insert(at, now);
        Inserted::New {
            count: set.count(),
            equivocation,
        }
    }
}

/// A proposal as held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldProposal {
    pub(crate) value: Value,
    pub(crate) valid_round: Option<u32>,
    pub(crate) signature: SignatureBytes,
    /// When it was first held.
    pub(crate) since: Timestamp,
}

/// Everything held of one round.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoundState {
    pub(crate) proposal: Option<HeldProposal>,
    pub(crate) prevotes: PhaseVotes,
    pub(crate) precommits: PhaseVotes,
}

impl RoundState {
    pub(crate) fn phase(&self, phase: Phase) -> &PhaseVotes {
        match phase {
            Phase::Prevote => &self.prevotes,
            Phase::Precommit => &self.precommits,
        }
    }

    pub(crate) fn phase_mut(&mut self, phase: Phase) -> &mut PhaseVotes {
        match phase {
            Phase::Prevote => &mut self.prevotes,
            Phase::Precommit => &mut self.precommits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::ZERO;

    #[test]
    fn keeps_at_most_two_values_per_signer() {
        let mut votes = PhaseVotes::default();
        assert_eq!(
            votes.insert(T, 3, [1; 32], [0; 64]),
            Inserted::New {
                count: 1,
                equivocation: false
            }
        );
        assert_eq!(votes.insert(T, 3, [1; 32], [9; 64]), Inserted::Duplicate);
        assert_eq!(
            votes.insert(T, 3, [2; 32], [0; 64]),
            Inserted::New {
                count: 1,
                equivocation: true
            }
        );
        assert_eq!(votes.insert(T, 3, [3; 32], [0; 64]), Inserted::Refused);
        assert_eq!(
            votes.insert(T, 1, [2; 32], [0; 64]),
            Inserted::New {
                count: 2,
                equivocation: false
            }
        );
        assert_eq!(votes.count(&[2; 32]), 2);
        assert_eq!(votes.max_count(), 2);
        assert_eq!(votes.voters.count_ones(), 2);
        let set = votes.set(&[2; 32]).unwrap();
        assert_eq!(
            set.signatures.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(set.first_signers(1), 0b10);
        assert!(votes.quorum_value(2).is_some() && votes.quorum_value(3).is_none());
    }
}
