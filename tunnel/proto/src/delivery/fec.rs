//! Sliding-window random linear coding over GF(2^8) (in the spirit of RFC
//! 8681 and Tetrys, RFC 9407): a repair symbol is a combination
//! `Σ c(id, seq) · source(seq)` of any set of recent source symbols, named
//! by its first sequence number and a bitmap ([`RepairWindow`]), with
//! coefficients drawn from the repair's id and each sequence number
//! ([`coefficient`]). Repair is sent as often as the loss needs, whatever
//! the traffic's timing, and any repair helps recover any missing source it
//! covers: a loss costs a few packets' wait, not a block's.
//!
//! [`WindowDecoder`] keeps the equations the receiver holds over the
//! sources it misses in reduced row-echelon form, so a source is recovered
//! as soon as the equations determine it.
//!
//! Source symbols of different lengths become equal shards by
//! [`source_shard`] (a 2-byte length, then the symbol, zero-padded to the
//! repair's length). The slice arithmetic is reed-solomon-erasure's SIMD
//! GF(2^8) multiply-accumulate.

use reed_solomon_erasure::galois_8 as gf;
use std::collections::{BTreeMap, VecDeque};
use thiserror::Error;

/// Most source symbols one repair covers.
pub const MAX_WINDOW: usize = 64;
/// How far behind the newest sequence number a receiver keeps sources and
/// equations: a repair may not reach further back. Fresh repair over a
/// hole comes a round trip and a half after it was sent, some 1600
/// sequence numbers behind on a 600 ms, 20 Mbit/s path: with 512, a repair
/// over holes of which one was recovered meanwhile could not subtract it
/// and was of no use (`sim reliable --rtt 600` at 50 % loss: 1729 such
/// repairs, 1026 with 2048).
pub const KEEP_BEHIND: u64 = 2048;
/// How far ahead of the newest sequence number seen a repair may reach
/// (sequence numbers rise; this only bounds nonsense: a burst of this many
/// lost sources in a row).
pub const MAX_AHEAD: u64 = 1 << 12;
/// Most equations a decoder holds: the holes of one and a half round trips
/// at 50 % loss on a 600 ms, 20 Mbit/s path (with 512 the newest equations
/// were dropped there, and `sim reliable --rtt 600` at 50 % loss spent 2.9
/// wire bytes per byte instead of 2.4).
pub const MAX_ROWS: usize = 2048;
/// Most unknowns one equation may hold after elimination (fill-in): an
/// equation beyond it is dropped (equations are only ever a help; the
/// receiver asks for more). With [`MAX_ROWS`] it bounds the work one
/// repair can cause.
pub const MAX_ROW_TERMS: usize = 4 * MAX_WINDOW;
/// Longest shard the decoder holds (a source symbol with its length, or a
/// repair): well above any datagram size in use, and a bound on memory
/// (at most [`KEEP_BEHIND`] sources and [`MAX_ROWS`] equations of it: 64 MiB
/// for a peer that sends only the largest shards; 6 MiB at 1400 bytes).
pub const MAX_SHARD: usize = 16 * 1024;

/// The set of sources a repair covers: `first` and a bitmap of the
/// following [`MAX_WINDOW`] sequence numbers (bit `i` covers `first + i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairWindow {
    /// The lowest sequence number covered (bit 0 is always set).
    pub first: u64,
    /// Which of `first ..= first + 63` are covered.
    pub mask: u64,
}

impl RepairWindow {
    /// The covered sequence numbers, lowest first.
    pub fn seqs(self) -> impl Iterator<Item = u64> {
        (0..MAX_WINDOW as u64)
            .filter(move |i| self.mask >> i & 1 == 1)
            .map_while(move |i| self.first.checked_add(i))
    }

    /// A window from covered sequence numbers (ascending, within
    /// [`MAX_WINDOW`] of the first); `None` if empty or too wide.
    pub fn from_seqs(seqs: &[u64]) -> Option<Self> {
        let first = *seqs.first()?;
        let mut mask = 0u64;
        for &seq in seqs {
            let offset = seq.checked_sub(first)?;
            if offset >= MAX_WINDOW as u64 {
                return None;
            }
            mask |= 1 << offset;
        }
        Some(RepairWindow { first, mask })
    }
}

/// Why a repair symbol cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FecError {
    /// The window is empty, or reaches past what the decoder keeps.
    #[error("repair window out of range")]
    OutOfRange,
    /// The shard is shorter than a source it must hold.
    #[error("repair shard too short")]
    TooShort,
    /// The shard is longer than [`MAX_SHARD`].
    #[error("repair shard too long")]
    TooLong,
}

/// The coefficient of source `seq` in repair `id`: non-zero, and
/// independent-looking across ids and sequence numbers (SplitMix64).
pub fn coefficient(id: u64, seq: u64) -> u8 {
    let mut z = id
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(seq.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z as u8).max(1)
}

/// The equal-size shard of a source symbol: 2-byte big-endian length, then
/// the symbol (padding to the repair's shard length is implicit).
pub fn source_shard(symbol: &[u8]) -> Vec<u8> {
    let mut shard = Vec::with_capacity(symbol.len() + 2);
    shard.extend_from_slice(&(symbol.len().min(u16::MAX as usize) as u16).to_be_bytes());
    shard.extend_from_slice(symbol);
    shard
}

/// The symbol inside a decoded shard.
pub fn symbol_of_shard(shard: &[u8]) -> Option<&[u8]> {
    let length = shard.get(..2)?;
    let len = usize::from(u16::from_be_bytes([length[0], length[1]]));
    shard.get(2..2 + len)
}

fn mul_xor(c: u8, input: &[u8], out: &mut [u8]) {
    let n = input.len().min(out.len());
    if n > 0 && c != 0 {
        gf::mul_slice_xor(c, &input[..n], &mut out[..n]);
    }
}

/// Repair `id` over `sources` (sequence number and shard; all within one
/// [`RepairWindow`]), as long as the longest shard.
pub fn encode_repair(id: u64, sources: &[(u64, &[u8])]) -> Vec<u8> {
    let len = sources.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut out = vec![0u8; len];
    for &(seq, shard) in sources {
        mul_xor(coefficient(id, seq), shard, &mut out);
    }
    out
}

/// One equation over missing sources: `Σ coeffs[seq] · source(seq) = payload`,
/// with coefficient 1 at its pivot (its lowest sequence number).
#[derive(Clone, Debug)]
struct Row {
    coeffs: BTreeMap<u64, u8>,
    payload: Vec<u8>,
}

impl Row {
    fn pivot(&self) -> Option<u64> {
        self.coeffs.keys().next().copied()
    }

    /// `self += factor · other` (addition is XOR in GF(2^8)).
    fn add_scaled(&mut self, factor: u8, other: &Row) {
        if other.payload.len() > self.payload.len() {
            self.payload.resize(other.payload.len(), 0);
        }
        mul_xor(factor, &other.payload, &mut self.payload);
        for (&seq, &c) in &other.coeffs {
            let term = gf::mul(factor, c);
            let entry = self.coeffs.entry(seq).or_insert(0);
            *entry ^= term;
            if *entry == 0 {
                self.coeffs.remove(&seq);
            }
        }
    }

    /// Removes the known source `seq` from the equation.
    fn substitute(&mut self, seq: u64, shard: &[u8]) {
        if let Some(c) = self.coeffs.remove(&seq) {
            mul_xor(c, shard, &mut self.payload);
        }
    }

    fn normalize(&mut self) {
        let Some(pivot) = self.pivot() else { return };
        let scale = gf::div(1, self.coeffs[&pivot]);
        if scale != 1 {
            for c in self.coeffs.values_mut() {
                *c = gf::mul(*c, scale);
            }
            if !self.payload.is_empty() {
                let payload = std::mem::take(&mut self.payload);
                self.payload = vec![0; payload.len()];
                gf::mul_slice(scale, &payload, &mut self.payload);
            }
        }
    }
}

/// What a repair did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// It covered no missing source, or was a combination of the
    /// equations already held.
    Redundant,
    /// It was held as a new equation (possibly recovering sources).
    Useful,
}

/// The receiver's decoder: the sources it holds (received or recovered)
/// within [`KEEP_BEHIND`] of the newest sequence number, and its equations
/// over the ones it misses. Recovered sources are queued for
/// [`WindowDecoder::poll_recovered`].
#[derive(Debug, Default)]
pub struct WindowDecoder {
    sources: BTreeMap<u64, Vec<u8>>,
    /// Equations by pivot; every pivot appears in its own row only.
    rows: BTreeMap<u64, Row>,
    newest: u64,
    recovered: VecDeque<(u64, Vec<u8>)>,
}

impl WindowDecoder {
    /// Whether the source `seq` is held.
    pub fn has_source(&self, seq: u64) -> bool {
        self.sources.contains_key(&seq)
    }

    /// How many equations are held.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// How many equations involve unknowns in `range` only. Such rows
    /// alone can determine the sources missing in `range`; a row that
    /// also involves a later unknown (a proactive repair that straddled
    /// two spans of holes) helps only once that one is known too. The
    /// receiver counts rows over each prefix of its spans, so a straddling
    /// row counts for the later span.
    pub fn rows_confined_to(&self, range: std::ops::Range<u64>) -> usize {
        self.rows_confined_below_each(range.start, &[range.end])[0]
    }

    /// For each of `ends` (ascending), how many equations from `from` on
    /// involve unknowns below that end only: [`Self::rows_confined_to`]
    /// for every prefix `from..end` at once, in one pass over the rows.
    pub fn rows_confined_below_each(&self, from: u64, ends: &[u64]) -> Vec<usize> {
        let mut counts = vec![0usize; ends.len()];
        let Some(&last_end) = ends.last() else {
            return counts;
        };
        if from >= last_end {
            return counts;
        }
        for row in self.rows.range(from..last_end).map(|(_, row)| row) {
            let Some(&last) = row.coeffs.keys().next_back() else {
                continue;
            };
            // The first prefix whose end lies past the row's last unknown.
            let first = ends.partition_point(|&end| end <= last);
            if let Some(count) = counts.get_mut(first) {
                *count += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        counts
    }

    /// The lowest sequence number whose source is kept (a repair covering
    /// an older source the receiver already has cannot be used: the
    /// receiver checks that).
    fn horizon(&self) -> u64 {
        self.newest.saturating_sub(KEEP_BEHIND)
    }

    /// A source symbol's shard (received directly). Recovers whatever that
    /// lets the held equations determine.
    pub fn add_source(&mut self, seq: u64, shard: Vec<u8>) {
        if shard.len() > MAX_SHARD {
            return;
        }
        self.newest = self.newest.max(seq);
        if self.sources.contains_key(&seq) {
            return;
        }
        self.learn(seq, shard, false);
        self.prune();
    }

    /// A repair over `window` with id `id`. Returns whether it told the
    /// decoder anything new.
    pub fn add_repair(
        &mut self,
        window: RepairWindow,
        id: u64,
        shard: &[u8],
    ) -> Result<RepairOutcome, FecError> {
        if window.mask & 1 == 0 {
            return Err(FecError::OutOfRange);
        }
        if shard.len() > MAX_SHARD {
            return Err(FecError::TooLong);
        }
        let last = window.seqs().last().unwrap_or(window.first);
        if last > self.newest.saturating_add(MAX_AHEAD) {
            return Err(FecError::OutOfRange);
        }
        let mut row = Row {
            coeffs: BTreeMap::new(),
            payload: shard.to_vec(),
        };
        for seq in window.seqs() {
            let c = coefficient(id, seq);
            match self.sources.get(&seq) {
                Some(source) => {
                    if source.len() > row.payload.len() {
                        return Err(FecError::TooShort);
                    }
                    mul_xor(c, source, &mut row.payload);
                }
                None => {
                    row.coeffs.insert(seq, c);
                }
            }
        }
        self.newest = self.newest.max(last);
        if row.coeffs.is_empty() {
            return Ok(RepairOutcome::Redundant);
        }
        // Eliminate every pivot already held.
        let pivots: Vec<u64> = row
            .coeffs
            .keys()
            .copied()
            .filter(|seq| self.rows.contains_key(seq))
            .collect();
        for pivot in pivots {
            if let (Some(&c), Some(other)) = (row.coeffs.get(&pivot), self.rows.get(&pivot)) {
                row.add_scaled(c, other);
            }
        }
        let Some(pivot) = row.pivot() else {
            return Ok(RepairOutcome::Redundant);
        };
        if row.coeffs.len() > MAX_ROW_TERMS {
            return Ok(RepairOutcome::Redundant);
        }
        row.normalize();
        // Keep the form reduced: the new pivot leaves every other row.
        for other in self.rows.values_mut() {
            if let Some(&c) = other.coeffs.get(&pivot) {
                other.add_scaled(c, &row);
            }
        }
        self.rows.insert(pivot, row);
        self.drop_overgrown_rows();
        self.solve_single_rows();
        self.prune();
        Ok(RepairOutcome::Useful)
    }

    /// Takes a known source into every equation; `recovered` if it came
    /// from decoding.
    fn learn(&mut self, seq: u64, shard: Vec<u8>, recovered: bool) {
        let mut work = vec![(seq, shard, recovered)];
        while let Some((seq, shard, recovered)) = work.pop() {
            if self.sources.contains_key(&seq) {
                continue;
            }
            if let Some(mut row) = self.rows.remove(&seq) {
                // `seq` was a pivot: the row loses it and takes a new one.
                row.substitute(seq, &shard);
                self.reinsert(row);
            }
            for row in self.rows.values_mut() {
                row.substitute(seq, &shard);
            }
            let mut shard = shard;
            let keep = seq >= self.horizon();
            if recovered {
                // Drop the repair's padding: the source is as long as its
                // length prefix says (a later, shorter repair may cover it).
                let len = symbol_of_shard(&shard).map_or(shard.len(), |s| s.len() + 2);
                shard.truncate(len);
                self.recovered.push_back((seq, shard.clone()));
            }
            if keep {
                self.sources.insert(seq, shard);
            }
            work.extend(self.take_single_rows());
        }
    }

    /// Puts back a row whose pivot was removed.
    fn reinsert(&mut self, mut row: Row) {
        let pivots: Vec<u64> = row
            .coeffs
            .keys()
            .copied()
            .filter(|seq| self.rows.contains_key(seq))
            .collect();
        for pivot in pivots {
            if let (Some(&c), Some(other)) = (row.coeffs.get(&pivot), self.rows.get(&pivot)) {
                row.add_scaled(c, other);
            }
        }
        let Some(pivot) = row.pivot() else { return };
        if row.coeffs.len() > MAX_ROW_TERMS {
            return;
        }
        row.normalize();
        for other in self.rows.values_mut() {
            if let Some(&c) = other.coeffs.get(&pivot) {
                other.add_scaled(c, &row);
            }
        }
        self.rows.insert(pivot, row);
        self.drop_overgrown_rows();
    }

    /// Drops equations whose fill-in grew past [`MAX_ROW_TERMS`] (the
    /// others stay reduced: dropping a row removes a pivot no other row
    /// holds).
    fn drop_overgrown_rows(&mut self) {
        self.rows.retain(|_, row| row.coeffs.len() <= MAX_ROW_TERMS);
    }

    /// Rows with a single unknown: those sources are recovered.
    fn take_single_rows(&mut self) -> Vec<(u64, Vec<u8>, bool)> {
        let single: Vec<u64> = self
            .rows
            .iter()
            .filter(|(_, row)| row.coeffs.len() == 1)
            .map(|(&pivot, _)| pivot)
            .collect();
        single
            .into_iter()
            .filter_map(|pivot| {
                self.rows
                    .remove(&pivot)
                    .map(|row| (pivot, row.payload, true))
            })
            .collect()
    }

    fn solve_single_rows(&mut self) {
        for (seq, shard, recovered) in self.take_single_rows() {
            self.learn(seq, shard, recovered);
        }
    }

    fn prune(&mut self) {
        let horizon = self.horizon();
        while self
            .sources
            .first_key_value()
            .is_some_and(|(&seq, _)| seq < horizon)
        {
            self.sources.pop_first();
        }
        // Over the bound, the newest equations go: the oldest holes are
        // the ones in-order delivery waits on, and dropping their rows
        // first starved them for good once a long path kept more than
        // MAX_ROWS equations over later holes (the receiver asks again
        // for what it dropped).
        while self.rows.len() > MAX_ROWS {
            self.rows.pop_last();
        }
    }

    /// Everything below `point` is resolved at the receiver: equations over
    /// older unknowns can no longer help.
    pub fn resolved_below(&mut self, point: u64) {
        while self
            .rows
            .first_key_value()
            .is_some_and(|(&pivot, _)| pivot < point)
        {
            self.rows.pop_first();
        }
    }

    /// The next source recovered by decoding, with its shard (length
    /// prefix and padding included).
    pub fn poll_recovered(&mut self) -> Option<(u64, Vec<u8>)> {
        self.recovered.pop_front()
    }

    /// Forgets sources that will never come (their sequence numbers were
    /// abandoned): equations that need them are dropped.
    pub fn forget(&mut self, seqs: std::ops::Range<u64>) {
        if seqs.start >= seqs.end {
            return;
        }
        self.rows
            .retain(|_, row| row.coeffs.range(seqs.clone()).next().is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shards(symbols: &[Vec<u8>]) -> Vec<Vec<u8>> {
        symbols.iter().map(|s| source_shard(s)).collect()
    }

    /// Repair `id` over `seqs`, whose sources are `len` bytes of `seq as u8`.
    fn repair_over(seqs: &[u64], id: u64, len: usize) -> (RepairWindow, Vec<u8>) {
        let shards: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&s| source_shard(&vec![s as u8; len]))
            .collect();
        let sources: Vec<(u64, &[u8])> = seqs
            .iter()
            .zip(&shards)
            .map(|(&s, l)| (s, l.as_slice()))
            .collect();
        (
            RepairWindow::from_seqs(seqs).unwrap(),
            encode_repair(id, &sources),
        )
    }

    #[test]
    fn a_single_loss_is_recovered_by_the_next_repair() {
        let symbols: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20 + i as usize]).collect();
        let shards = shards(&symbols);
        let mut decoder = WindowDecoder::default();
        for (seq, shard) in shards.iter().enumerate() {
            if seq != 4 {
                decoder.add_source(seq as u64, shard.clone());
            }
        }
        let window: Vec<(u64, &[u8])> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64, s.as_slice()))
            .collect();
        let repair = encode_repair(77, &window);
        let seqs: Vec<u64> = (0..10).collect();
        let outcome = decoder.add_repair(RepairWindow::from_seqs(&seqs).unwrap(), 77, &repair);
        assert_eq!(outcome, Ok(RepairOutcome::Useful));
        let (seq, shard) = decoder.poll_recovered().unwrap();
        assert_eq!(seq, 4);
        assert_eq!(symbol_of_shard(&shard), Some(&symbols[4][..]));
        assert!(decoder.poll_recovered().is_none());
        // The same repair again tells nothing new.
        assert_eq!(
            decoder.add_repair(RepairWindow::from_seqs(&seqs).unwrap(), 77, &repair),
            Ok(RepairOutcome::Redundant)
        );
    }

    #[test]
    fn only_rows_confined_to_a_span_count_for_it() {
        // 110 and 150 are lost; one repair covers both. Its row's pivot is
        // 110, but it cannot determine 110 until 150 is known: it counts
        // for a span that holds both, not for one that holds 110 alone.
        let mut decoder = WindowDecoder::default();
        for seq in 100..170u64 {
            if seq != 110 && seq != 150 {
                decoder.add_source(seq, source_shard(&[seq as u8; 30]));
            }
        }
        let (window, repair) = repair_over(&[110, 150], 2, 30);
        assert_eq!(
            decoder.add_repair(window, 2, &repair),
            Ok(RepairOutcome::Useful)
        );
        assert_eq!(decoder.rows(), 1);
        assert_eq!(decoder.rows_confined_to(110..174), 1);
        assert_eq!(decoder.rows_confined_to(110..142), 0);
        assert_eq!(decoder.rows_confined_to(100..110), 0);
        let (high, low) = (120, 100);
        assert_eq!(decoder.rows_confined_to(high..low), 0);
        // Every prefix at once: the same counts.
        assert_eq!(
            decoder.rows_confined_below_each(100, &[142, 151, 174]),
            vec![0, 1, 1]
        );
        assert_eq!(decoder.rows_confined_below_each(151, &[174]), vec![0]);
        assert!(decoder.rows_confined_below_each(100, &[]).is_empty());
        // A repair over 110 alone determines it, and then 150.
        let (window, repair) = repair_over(&[110], 3, 30);
        let _ = decoder.add_repair(window, 3, &repair);
        let mut recovered: Vec<u64> =
            std::iter::from_fn(|| decoder.poll_recovered().map(|(seq, _)| seq)).collect();
        recovered.sort_unstable();
        assert_eq!(recovered, vec![110, 150]);
        assert_eq!(decoder.rows(), 0);
    }

    #[test]
    fn past_the_row_bound_the_oldest_holes_keep_their_equations() {
        // Every source lost; each pair (2k, 2k + 1) gets one repair: a row
        // of two unknowns each, far more rows than the bound.
        let mut decoder = WindowDecoder::default();
        let pairs = MAX_ROWS as u64 + 100;
        for k in 0..pairs {
            let (window, repair) = repair_over(&[2 * k, 2 * k + 1], k, 20);
            let _ = decoder.add_repair(window, k, &repair);
        }
        assert_eq!(decoder.rows(), MAX_ROWS);
        // The first pair, which in-order delivery waits on, kept its row;
        // the newest pairs' rows went.
        assert_eq!(decoder.rows_confined_to(0..2), 1);
        assert_eq!(decoder.rows_confined_to(2 * (pairs - 1)..2 * pairs), 0);
    }

    #[test]
    fn windows_round_trip_and_refuse_what_is_too_wide() {
        let window = RepairWindow::from_seqs(&[100, 101, 130, 163]).unwrap();
        assert_eq!(window.seqs().collect::<Vec<_>>(), vec![100, 101, 130, 163]);
        assert!(RepairWindow::from_seqs(&[100, 164]).is_none());
        assert!(RepairWindow::from_seqs(&[]).is_none());
        assert!(coefficient(1, 2) != 0 && coefficient(3, 4) != 0);
    }

    proptest! {
        /// Sources lost at random are all recovered once the receiver holds
        /// at least as many independent repairs as losses, whatever the
        /// order the repairs and sources arrive in.
        #[test]
        fn enough_repairs_recover_every_loss(
            lengths in proptest::collection::vec(1usize..60, 5..64),
            lost_mask in any::<u64>(),
            extra in 0usize..3,
            id_base in any::<u32>(),
            sources_first in any::<bool>(),
        ) {
            let n = lengths.len();
            let symbols: Vec<Vec<u8>> = lengths.iter().enumerate().map(|(i, &l)| (0..l).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
            let shards = shards(&symbols);
            let lost: Vec<usize> = (0..n).filter(|i| lost_mask >> i & 1 == 1).collect();
            let base = 1000u64;
            let all: Vec<(u64, &[u8])> = shards.iter().enumerate().map(|(i, s)| (base + i as u64, s.as_slice())).collect();
            let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
            let window = RepairWindow::from_seqs(&seqs).unwrap();
            let repairs: Vec<(u64, Vec<u8>)> = (0..lost.len() + extra + 2)
                .map(|j| { let id = u64::from(id_base) + j as u64; (id, encode_repair(id, &all)) })
                .collect();
            let mut decoder = WindowDecoder::default();
            let add_sources = |decoder: &mut WindowDecoder| {
                for (i, shard) in shards.iter().enumerate() {
                    if !lost.contains(&i) {
                        decoder.add_source(base + i as u64, shard.clone());
                    }
                }
            };
            if sources_first { add_sources(&mut decoder); }
            for (id, repair) in &repairs {
                let _ = decoder.add_repair(window, *id, repair);
            }
            if !sources_first { add_sources(&mut decoder); }
            let mut recovered = std::collections::BTreeMap::new();
            while let Some((seq, shard)) = decoder.poll_recovered() {
                prop_assert!(recovered.insert(seq, shard).is_none(), "recovered twice");
            }
            // Random coefficients: with two spare repairs, failure is
            // below 1/256^2; allow it rather than flake.
            if recovered.len() == lost.len() {
                for i in &lost {
                    let shard = &recovered[&(base + *i as u64)];
                    prop_assert_eq!(symbol_of_shard(shard), Some(&symbols[*i][..]));
                }
            } else {
                prop_assert!(recovered.len() + 2 >= lost.len());
            }
        }

        #[test]
        fn garbage_never_panics(first in any::<u64>(), mask in any::<u64>(), id in any::<u64>(), shard in proptest::collection::vec(any::<u8>(), 0..40), sources in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let mut decoder = WindowDecoder::default();
            for (seq, s) in sources {
                decoder.add_source(seq, s);
            }
            let _ = decoder.add_repair(RepairWindow { first, mask }, id, &shard);
            while decoder.poll_recovered().is_some() {}
            let _ = symbol_of_shard(&shard);
        }
    }
}
