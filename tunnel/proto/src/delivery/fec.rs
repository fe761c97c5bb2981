//! Systematic Reed-Solomon erasure code over GF(2^8) with a Cauchy
//! generator, so that repair symbols can be made one at a time, on demand,
//! as fresh as needed: source symbol `i` (of `k`) and repair symbol `j`
//! (0 ..= 255 − k) relate by `repair_j = Σ_i C[j][i] · source_i` with
//! `C[j][i] = 1 / (x_j + y_i)`, `y_i = i`, `x_j = k + j`. Every square
//! submatrix of a Cauchy matrix is invertible, so any `k` of the `k + r`
//! symbols recover the group. The slice arithmetic is reed-solomon-erasure's
//! SIMD GF(2^8) multiply-accumulate.
//!
//! Source symbols of different lengths are turned into equal shards by
//! [`source_shard`]: a 2-byte length prefix, then the symbol; shorter
//! shards count as zero-padded to the group's longest.

use reed_solomon_erasure::galois_8 as gf;
use thiserror::Error;

/// Largest number of source plus repair symbols in one group.
pub const MAX_SYMBOLS: usize = 256;

/// Why a group could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FecError {
    /// Fewer than `k` symbols are held.
    #[error("not enough symbols to decode")]
    NotEnough,
    /// Inconsistent indices, lengths or a corrupt length prefix.
    #[error("inconsistent symbols")]
    Inconsistent,
}

fn coefficient(k: usize, repair_index: usize, source_index: usize) -> u8 {
    let x = (k + repair_index) as u8;
    let y = source_index as u8;
    gf::div(1, x ^ y)
}

/// The equal-size shard of a source symbol: 2-byte big-endian length, then
/// the symbol (padding to the group's shard length is implicit).
pub fn source_shard(symbol: &[u8]) -> Vec<u8> {
    let mut shard = Vec::with_capacity(symbol.len() + 2);
    shard.extend_from_slice(&(symbol.len().min(u16::MAX as usize) as u16).to_be_bytes());
    shard.extend_from_slice(symbol);
    shard
}

/// The symbol inside a decoded shard.
pub fn symbol_of_shard(shard: &[u8]) -> Result<&[u8], FecError> {
    if shard.len() < 2 {
        return Err(FecError::Inconsistent);
    }
    let len = usize::from(u16::from_be_bytes([shard[0], shard[1]]));
    shard.get(2..2 + len).ok_or(FecError::Inconsistent)
}

fn mul_xor(c: u8, input: &[u8], out: &mut [u8]) {
    let n = input.len().min(out.len());
    if n > 0 && c != 0 {
        gf::mul_slice_xor(c, &input[..n], &mut out[..n]);
    }
}

/// Repair symbol `repair_index` of a group whose source shards are
/// `sources` (k = `sources.len()`), padded to `shard_len`.
pub fn encode_repair(sources: &[&[u8]], repair_index: usize, shard_len: usize) -> Vec<u8> {
    let mut out = vec![0u8; shard_len];
    let k = sources.len();
    for (i, source) in sources.iter().enumerate() {
        mul_xor(coefficient(k, repair_index, i), source, &mut out);
    }
    out
}

/// Recovers the missing source shards of a group of `k`.
///
/// `sources[i]` holds source shard `i` if received; `repairs` holds
/// `(repair index, shard)` pairs, each `shard_len` long. Returns the
/// missing shards as `(source index, shard)`, each `shard_len` long
/// (still carrying their length prefix and padding).
pub fn decode(
    k: usize,
    sources: &[Option<&[u8]>],
    repairs: &[(usize, &[u8])],
    shard_len: usize,
) -> Result<Vec<(usize, Vec<u8>)>, FecError> {
    if k == 0 || k >= MAX_SYMBOLS || sources.len() != k {
        return Err(FecError::Inconsistent);
    }
    let missing: Vec<usize> = (0..k).filter(|&i| sources[i].is_none()).collect();
    let m = missing.len();
    if m == 0 {
        return Ok(Vec::new());
    }
    if repairs.len() < m {
        return Err(FecError::NotEnough);
    }
    let chosen = &repairs[..m];
    for (index, (j, shard)) in chosen.iter().enumerate() {
        if k + j >= MAX_SYMBOLS
            || shard.len() != shard_len
            || chosen[..index].iter().any(|(other, _)| other == j)
        {
            return Err(FecError::Inconsistent);
        }
    }
    // Right-hand sides: each repair minus the contribution of the sources
    // that are present.
    let mut rhs: Vec<Vec<u8>> = chosen
        .iter()
        .map(|(j, shard)| {
            let mut row = shard.to_vec();
            for (i, source) in sources.iter().enumerate() {
                if let Some(source) = source {
                    if source.len() > shard_len {
                        continue;
                    }
                    mul_xor(coefficient(k, *j, i), source, &mut row);
                }
            }
            row
        })
        .collect();
    // The m×m system A · missing = rhs with A[a][b] = C[j_a][missing_b];
    // invert A by Gauss-Jordan elimination.
    let mut a: Vec<Vec<u8>> = chosen
        .iter()
        .map(|(j, _)| missing.iter().map(|&i| coefficient(k, *j, i)).collect())
        .collect();
    let mut inverse: Vec<Vec<u8>> = (0..m)
        .map(|r| (0..m).map(|c| u8::from(r == c)).collect())
        .collect();
    for col in 0..m {
        let pivot = (col..m)
            .find(|&r| a[r][col] != 0)
            .ok_or(FecError::Inconsistent)?;
        a.swap(col, pivot);
        inverse.swap(col, pivot);
        let scale = gf::div(1, a[col][col]);
        for c in 0..m {
            a[col][c] = gf::mul(a[col][c], scale);
            inverse[col][c] = gf::mul(inverse[col][c], scale);
        }
        for r in 0..m {
            if r != col && a[r][col] != 0 {
                let factor = a[r][col];
                for c in 0..m {
                    a[r][c] ^= gf::mul(factor, a[col][c]);
                    inverse[r][c] ^= gf::mul(factor, inverse[col][c]);
                }
            }
        }
    }
    let mut recovered = Vec::with_capacity(m);
    for (b, &i) in missing.iter().enumerate() {
        let mut out = vec![0u8; shard_len];
        for (row, rhs_row) in rhs.iter_mut().enumerate() {
            mul_xor(inverse[b][row], rhs_row, &mut out);
        }
        recovered.push((i, out));
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_k_symbols_recover_the_group(
            symbols in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
            lost_mask in any::<u64>(),
            repair_offset in 0usize..100,
        ) {
            let k = symbols.len();
            let shards: Vec<Vec<u8>> = symbols.iter().map(|s| source_shard(s)).collect();
            let shard_len = shards.iter().map(Vec::len).max().unwrap();
            let refs: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
            let received: Vec<Option<&[u8]>> = (0..k).map(|i| if lost_mask >> i & 1 == 1 { None } else { Some(refs[i]) }).collect();
            let lost = received.iter().filter(|s| s.is_none()).count();
            let first_repair = repair_offset.min(255 - k - lost);
            let repairs: Vec<(usize, Vec<u8>)> = (first_repair..first_repair + lost).map(|j| (j, encode_repair(&refs, j, shard_len))).collect();
            let repair_refs: Vec<(usize, &[u8])> = repairs.iter().map(|(j, s)| (*j, s.as_slice())).collect();
            let decoded = decode(k, &received, &repair_refs, shard_len).unwrap();
            prop_assert_eq!(decoded.len(), lost);
            for (i, shard) in decoded {
                prop_assert_eq!(symbol_of_shard(&shard).unwrap(), &symbols[i][..]);
            }
        }

        #[test]
        fn garbage_never_panics(k in 1usize..10, shard_len in 0usize..20, data in proptest::collection::vec(any::<u8>(), 0..20), j in any::<usize>()) {
            let sources: Vec<Option<&[u8]>> = (0..k).map(|i| if i % 2 == 0 { None } else { Some(&data[..]) }).collect();
            let repairs = vec![(j % 300, &data[..]); k];
            let _ = decode(k, &sources, &repairs, shard_len);
            let _ = symbol_of_shard(&data);
        }
    }
}
