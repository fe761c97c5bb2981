//! FEC groups on the receiving side: the source and repair symbols held
//! per group until it is complete or decodes, the decoding itself, which
//! groups still need symbols (for receipts), and pruning below the
//! cumulative point.

use crate::delivery::fec;
use crate::delivery::ranges::RangeSet;
use std::collections::BTreeMap;

/// Group size assumed for a group whose size is not known yet (no repair
/// symbol arrived): the most a group can span.
const UNKNOWN_GROUP_SPAN: usize = 256;

#[derive(Default)]
struct RxGroup {
    k: Option<usize>,
    sources: BTreeMap<usize, Vec<u8>>,
    repairs: Vec<(usize, Vec<u8>)>,
    complete: bool,
}

impl RxGroup {
    fn span(&self) -> u64 {
        self.k.unwrap_or(UNKNOWN_GROUP_SPAN) as u64
    }

    /// Done with, or entirely below the cumulative point.
    fn prunable(&self, first: u64, cumulative: u64) -> bool {
        self.complete || first.saturating_add(self.span()) <= cumulative
    }

    /// Whether the group may still need something from the sender. A group
    /// whose size is unknown (no repair symbol arrived, as at zero loss)
    /// and whose known members all lie below the cumulative point is
    /// waiting for nothing: counting it as open would flood receipts on an
    /// idle session forever.
    fn waiting(&self, first: u64, cumulative: u64) -> bool {
        if self.prunable(first, cumulative) {
            return false;
        }
        match self.k {
            Some(_) => true,
            None => {
                let highest = self
                    .sources
                    .keys()
                    .next_back()
                    .map_or(first, |&index| first + index as u64);
                highest >= cumulative || !self.repairs.is_empty()
            }
        }
    }
}

/// What a repair symbol did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RepairVerdict {
    /// Held for decoding.
    Held,
    /// Not needed (group complete, enough symbols, or a duplicate).
    Redundant,
    /// Inconsistent with what the group holds.
    Malformed,
}

/// The outcome of trying to decode a group.
pub(crate) enum Decoded {
    /// Nothing to do yet (size unknown, not enough symbols, or complete
    /// with every source).
    Nothing,
    /// The missing sources, as (index in group, shard).
    Recovered(Vec<(usize, Vec<u8>)>),
    /// The symbols did not decode.
    Failed,
}

/// The receive groups, by first sequence number.
#[derive(Default)]
pub(crate) struct RxGroups {
    groups: BTreeMap<u64, RxGroup>,
}

impl RxGroups {
    /// Holds source symbol `index` of the group at `first`, unless the
    /// group is complete or the index lies outside it.
    pub(crate) fn add_source(&mut self, first: u64, index: usize, symbol: &[u8]) {
        let group = self.groups.entry(first).or_default();
        if !group.complete && group.k.is_none_or(|k| index < k) {
            group
                .sources
                .entry(index)
                .or_insert_with(|| fec::source_shard(symbol));
        }
    }

    /// Holds repair symbol `index` of the group of `k` at `first`.
    pub(crate) fn add_repair(
        &mut self,
        first: u64,
        k: usize,
        index: usize,
        shard: &[u8],
    ) -> RepairVerdict {
        let group = self.groups.entry(first).or_default();
        if group.k.is_some_and(|known| known != k) || group.sources.keys().any(|&i| i >= k) {
            return RepairVerdict::Malformed;
        }
        group.k = Some(k);
        if group.complete
            || group.sources.len() + group.repairs.len() >= k
            || group.repairs.iter().any(|(j, _)| *j == index)
        {
            return RepairVerdict::Redundant;
        }
        group.repairs.push((index, shard.to_vec()));
        RepairVerdict::Held
    }

    /// Decodes the group at `first` if it holds enough symbols. A group
    /// is marked complete (its symbols freed) once it has every source or
    /// has decoded.
    pub(crate) fn try_decode(&mut self, first: u64) -> Decoded {
        let Some(group) = self.groups.get_mut(&first) else {
            return Decoded::Nothing;
        };
        let Some(k) = group.k else {
            return Decoded::Nothing;
        };
        if group.sources.len() >= k {
            group.complete = true;
            group.repairs.clear();
            group.sources.clear();
            return Decoded::Nothing;
        }
        if group.sources.len() + group.repairs.len() < k {
            return Decoded::Nothing;
        }
        let shard_len = group.repairs.first().map_or(0, |(_, s)| s.len());
        let sources: Vec<Option<&[u8]>> = (0..k)
            .map(|i| group.sources.get(&i).map(Vec::as_slice))
            .collect();
        let repairs: Vec<(usize, &[u8])> = group
            .repairs
            .iter()
            .map(|(j, s)| (*j, s.as_slice()))
            .collect();
        let decoded = fec::decode(k, &sources, &repairs, shard_len);
        group.repairs.clear();
        group.sources.clear();
        match decoded {
            Ok(recovered) => {
                group.complete = true;
                Decoded::Recovered(recovered)
            }
            Err(_) => Decoded::Failed,
        }
    }

    /// Forgets the groups entirely below `cumulative`.
    pub(crate) fn prune_below(&mut self, cumulative: u64) {
        let prunable: Vec<u64> = self
            .groups
            .iter()
            .filter(|(&first, g)| first.saturating_add(g.span()) <= cumulative)
            .map(|(&first, _)| first)
            .collect();
        for first in prunable {
            self.groups.remove(&first);
        }
    }

    /// Forgets the groups below `cumulative` and the groups of known size
    /// whose every member is resolved.
    pub(crate) fn prune_resolved(&mut self, cumulative: u64, resolved: &RangeSet) {
        self.groups.retain(|&first, g| {
            let k = g.span();
            !(first + k <= cumulative
                || (g.k.is_some()
                    && (first..first + k).all(|s| s < cumulative || resolved.contains(s))))
        });
    }

    /// Groups of known size still short, as (first, symbols needed, k),
    /// lowest first, at most `limit`.
    pub(crate) fn needs(&self, cumulative: u64, limit: usize) -> Vec<(u64, u64, usize)> {
        self.groups
            .iter()
            .filter(|(&first, g)| !g.prunable(first, cumulative) && g.k.is_some())
            .filter_map(|(&first, g)| {
                let k = g.k?;
                let have = g.sources.len() + g.repairs.len();
                (have < k).then_some((first, (k - have) as u64, k))
            })
            .take(limit)
            .collect()
    }

    /// Whether some group may still need something from the sender.
    pub(crate) fn any_waiting(&self, cumulative: u64) -> bool {
        self.groups
            .iter()
            .any(|(&first, g)| g.waiting(first, cumulative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_decodes_from_any_k_symbols_and_is_then_complete() {
        let sources: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        let shards: Vec<Vec<u8>> = sources.iter().map(|s| fec::source_shard(s)).collect();
        let refs: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
        let shard_len = shards[0].len();
        let mut groups = RxGroups::default();
        groups.add_source(100, 0, &sources[0]);
        groups.add_source(100, 3, &sources[3]);
        assert!(matches!(groups.try_decode(100), Decoded::Nothing));
        for j in 0..2 {
            let repair = fec::encode_repair(&refs, j, shard_len);
            assert_eq!(groups.add_repair(100, 4, j, &repair), RepairVerdict::Held);
        }
        assert_eq!(groups.needs(0, 10), vec![]);
        let Decoded::Recovered(recovered) = groups.try_decode(100) else {
            panic!("the group should decode");
        };
        let mut indices: Vec<usize> = recovered.iter().map(|(i, _)| *i).collect();
        indices.sort_unstable();
        assert_eq!(indices, vec![1, 2]);
        assert!(!groups.any_waiting(0));
        let repair = fec::encode_repair(&refs, 2, shard_len);
        assert_eq!(
            groups.add_repair(100, 4, 2, &repair),
            RepairVerdict::Redundant
        );
        assert_eq!(
            groups.add_repair(100, 5, 3, &repair),
            RepairVerdict::Malformed
        );
    }

    #[test]
    fn short_groups_are_listed_and_pruned_below_the_cumulative_point() {
        let mut groups = RxGroups::default();
        groups.add_repair(10, 4, 0, &[0; 8]);
        assert_eq!(groups.needs(0, 10), vec![(10, 3, 4)]);
        assert!(groups.any_waiting(0));
        groups.prune_below(13);
        assert!(groups.any_waiting(0), "a member at 13 is still unresolved");
        groups.prune_below(14);
        assert!(groups.needs(0, 10).is_empty());
    }
}
