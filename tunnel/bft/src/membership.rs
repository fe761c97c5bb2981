//! The fixed, known membership: n Ed25519 identity keys in an order every
//! member agrees on, the fault bound f = ⌊(n − 1)/3⌋, the quorum n − f
//! (2f + 1 when n = 3f + 1), the membership id every signature is bound
//! to, the rotating proposer, and the signer bitmaps used on the wire.

use ed25519_dalek::VerifyingKey;
use tgp_proto::crypto::{domain_hash, Hash};

/// Most members a membership may have (signer sets are `u128` bitmaps).
pub const MAX_MEMBERS: usize = 128;

/// A set of member indices: bit i is member i.
pub type Bitmap = u128;

/// The bitmap holding only member `index`.
pub(crate) fn bit(index: usize) -> Bitmap {
    1u128 << index
}

/// Members in `bitmap`, in increasing order.
pub(crate) fn members(mut bitmap: Bitmap) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if bitmap == 0 {
            return None;
        }
        let index = bitmap.trailing_zeros() as usize;
        bitmap &= bitmap - 1;
        Some(index)
    })
}

/// Why a membership could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No keys were given.
    #[error("a membership needs at least one member key")]
    Empty,
    /// More keys than [`MAX_MEMBERS`].
    #[error("a membership has at most {MAX_MEMBERS} members, {0} keys were given")]
    TooMany(usize),
    /// The same key twice: every member must have its own key.
    #[error("member keys {first} and {second} are the same key; every member needs its own")]
    DuplicateKey {
        /// The first position of the key.
        first: usize,
        /// The second position of the key.
        second: usize,
    },
}

/// The members of one agreement group, in an agreed order (a member's
/// position is its index on the wire and in certificates).
#[derive(Clone, Debug)]
pub struct Membership {
    keys: Vec<VerifyingKey>,
    id: Hash,
    f: usize,
}

impl Membership {
    /// A membership of `keys`, in this order.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, MembershipError> {
        if keys.is_empty() {
            return Err(MembershipError::Empty);
        }
        if keys.len() > MAX_MEMBERS {
            return Err(MembershipError::TooMany(keys.len()));
        }
        for (second, key) in keys.iter().enumerate() {
            if let Some(first) = keys[..second].iter().position(|k| k == key) {
                return Err(MembershipError::DuplicateKey { first, second });
            }
        }
        let count = (keys.len() as u32).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&count];
        parts.extend(keys.iter().map(|k| k.as_bytes().as_slice()));
        let id = domain_hash(b"tgp-bft membership v1", &parts);
        let f = (keys.len() - 1) / 3;
        Ok(Membership { keys, id, f })
    }

    /// Number of members, n.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a membership has at least one member.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Byzantine members tolerated: f = ⌊(n − 1)/3⌋.
    pub fn f(&self) -> usize {
        self.f
    }

    /// Signers a certificate needs: n − f (2f + 1 when n = 3f + 1). Any two
    /// quorums share at least f + 1 members, so at least one honest one.
    pub fn quorum(&self) -> usize {
        self.keys.len() - self.f
    }

    /// The key of member `index`.
    pub fn key(&self, index: usize) -> Option<&VerifyingKey> {
        self.keys.get(index)
    }

    /// The index of `key`, if it is a member's.
    pub fn index_of(&self, key: &VerifyingKey) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// The hash of the ordered keys; every signature signs it, so a
    /// signature made for one membership is worthless in another.
    pub fn id(&self) -> &Hash {
        &self.id
    }

    /// The first 8 bytes of [`Membership::id`], carried in every packet so
    /// that packets of another group are dropped before any work.
    pub fn group_tag(&self) -> [u8; 8] {
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&self.id[..8]);
        tag
    }

    /// The member that may propose in `round` (≥ 1) of `instance`: the
    /// rotation starts at `instance mod n`, so that consecutive instances
    /// begin with different proposers.
    pub fn proposer(&self, instance: u64, round: u32) -> usize {
        let n = self.keys.len() as u64;
        ((instance % n + u64::from(round) % n) % n) as usize
    }

    /// Bytes of a signer bitmap on the wire: ⌈n / 8⌉.
    pub fn bitmap_len(&self) -> usize {
        self.keys.len().div_ceil(8)
    }

    /// The bitmap of all members.
    pub fn all(&self) -> Bitmap {
        if self.keys.len() == MAX_MEMBERS {
            Bitmap::MAX
        } else {
            bit(self.keys.len()) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn keys(n: usize) -> Vec<VerifyingKey> {
        (0..n)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]).verifying_key())
            .collect()
    }

    #[test]
    fn fault_bound_and_quorum() {
        for (n, f, q) in [
            (1, 0, 1),
            (3, 0, 3),
            (4, 1, 3),
            (7, 2, 5),
            (10, 3, 7),
            (31, 10, 21),
        ] {
            let m = Membership::new(keys(n)).unwrap();
            assert_eq!((m.len(), m.f(), m.quorum()), (n, f, q), "n = {n}");
            // Two quorums always share an honest member.
            assert!(2 * m.quorum() > n + m.f());
            assert_eq!(m.all().count_ones() as usize, n);
        }
    }

    #[test]
    fn refuses_empty_duplicate_and_oversized() {
        assert_eq!(Membership::new(vec![]).unwrap_err(), MembershipError::Empty);
        let mut dup = keys(4);
        dup[3] = dup[1];
        assert_eq!(
            Membership::new(dup).unwrap_err(),
            MembershipError::DuplicateKey {
                first: 1,
                second: 3
            }
        );
        let many: Vec<_> = (0..129u32)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&i.to_be_bytes());
                SigningKey::from_bytes(&seed).verifying_key()
            })
            .collect();
        assert_eq!(
            Membership::new(many).unwrap_err(),
            MembershipError::TooMany(129)
        );
    }

    #[test]
    fn proposers_rotate_and_ids_depend_on_order() {
        let m = Membership::new(keys(4)).unwrap();
        let seen: Vec<usize> = (1..=4).map(|r| m.proposer(6, r)).collect();
        assert_eq!(seen, vec![3, 0, 1, 2]);
        let mut reversed = keys(4);
        reversed.reverse();
        assert_ne!(m.id(), Membership::new(reversed).unwrap().id());
        assert_eq!(m.index_of(m.key(2).unwrap()), Some(2));
        assert_eq!(m.bitmap_len(), 1);
    }
}
