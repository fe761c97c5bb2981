//! What members sign, and the quorum certificate.
//!
//! Every signature is an ordinary Ed25519 signature (ed25519-dalek,
//! verified with `verify_strict`) over a 32-byte domain-separated digest
//! that binds the membership id, the instance, the round and the value, so
//! a signature from one membership, instance, round or phase is worthless
//! in any other:
//!
//! | artifact | digest over |
//! |---|---|
//! | vote (prevote or precommit) | "tgp-bft vote v1", membership id, instance, phase, round, value |
//! | proposal | "tgp-bft proposal v1", membership id, instance, round, valid round (or none), value |
//!
//! A [`Certificate`] is a quorum (n − f) of precommit signatures over one
//! (instance, round, value): anyone holding the [`Membership`] can check it
//! with [`Certificate::verify`]; no private share of anybody is needed.

use crate::membership::{bit, Bitmap, Membership};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use tgp_proto::crypto::{domain_hash, Hash};
use tgp_proto::wire::codec::{put_u32, put_u64, CodecError, Reader};

/// The value agreed on: 32 bytes, typically the hash or id of whatever the
/// application agrees on (a batch, a configuration); the application
/// moves the content itself.
pub type Value = [u8; 32];

/// An Ed25519 signature, as bytes.
pub type SignatureBytes = [u8; 64];

/// The two voting steps of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// First vote: "this value may be decided in this round". A quorum of
    /// prevotes for one value is a *polka*: it justifies locking on the
    /// value and proposing it again later.
    Prevote,
    /// Second vote, cast only after seeing a polka: a quorum of precommits
    /// for one value is the commit certificate.
    Precommit,
}

impl Phase {
    /// The byte naming the phase in digests.
    pub fn tag(self) -> u8 {
        match self {
            Phase::Prevote => 1,
            Phase::Precommit => 2,
        }
    }
}

/// The digest a member signs to vote for `value` in `phase` of `round`.
pub fn vote_digest(
    membership_id: &Hash,
    instance: u64,
    phase: Phase,
    round: u32,
    value: &Value,
) -> Hash {
    domain_hash(
        b"tgp-bft vote v1",
        &[
            membership_id,
            &instance.to_be_bytes(),
            &[phase.tag()],
            &round.to_be_bytes(),
            value,
        ],
    )
}

/// The digest the proposer of `round` signs to propose `value`, justified
/// by a polka in `valid_round` (or by nothing).
pub fn proposal_digest(
    membership_id: &Hash,
    instance: u64,
    round: u32,
    valid_round: Option<u32>,
    value: &Value,
) -> Hash {
    let mut justification = [0u8; 5];
    if let Some(k) = valid_round {
        justification[0] = 1;
        justification[1..].copy_from_slice(&k.to_be_bytes());
    }
    domain_hash(
        b"tgp-bft proposal v1",
        &[
            membership_id,
            &instance.to_be_bytes(),
            &round.to_be_bytes(),
            &justification,
            value,
        ],
    )
}

/// Signs `digest`.
pub fn sign(key: &SigningKey, digest: &Hash) -> SignatureBytes {
    key.sign(digest).to_bytes()
}

/// Whether `signature` is `key`'s signature of `digest` (strict: no
/// malleable or small-order encodings).
pub fn verify(key: &VerifyingKey, digest: &Hash, signature: &SignatureBytes) -> bool {
    key.verify_strict(digest, &Signature::from_bytes(signature))
        .is_ok()
}

/// How a replica checks a signature. The default, [`Ed25519Verifier`],
/// calls Ed25519 `verify_strict`. The simulation harness shares one memo
/// of Ed25519 results among all simulated members of a run (the same
/// answers, computed once), so that thousands of runs fit in CI.
pub trait Verifier: Send {
    /// Whether `signature` is `key`'s signature of `digest`.
    fn verify(&mut self, key: &VerifyingKey, digest: &Hash, signature: &SignatureBytes) -> bool;
}

/// [`verify`], directly.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ed25519Verifier;

impl Verifier for Ed25519Verifier {
    fn verify(&mut self, key: &VerifyingKey, digest: &Hash, signature: &SignatureBytes) -> bool {
        verify(key, digest, signature)
    }
}

/// Why a certificate is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The bytes end inside a field.
    #[error("certificate truncated")]
    Truncated,
    /// An unknown version, trailing bytes, or signers not in increasing
    /// order.
    #[error("malformed certificate")]
    Malformed,
    /// A signer index outside the membership.
    #[error("certificate names signer {0}, who is not a member")]
    UnknownSigner(usize),
    /// Fewer distinct signers than a quorum.
    #[error("certificate has {have} signers, a quorum is {need}")]
    TooFewSigners {
        /// Signers in the certificate.
        have: usize,
        /// The quorum.
        need: usize,
    },
    /// A signature that does not verify.
    #[error("the signature of signer {0} does not verify")]
    BadSignature(usize),
}

impl From<CodecError> for CertificateError {
    fn from(_: CodecError) -> Self {
        CertificateError::Truncated
    }
}

const CERTIFICATE_VERSION: u8 = 1;

/// Proof that `value` was committed in `round` of `instance`: precommit
/// signatures of a quorum of distinct members, sorted by signer index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The instance.
    pub instance: u64,
    /// The round whose precommits these are.
    pub round: u32,
    /// The committed value.
    pub value: Value,
    /// (signer index, precommit signature), strictly increasing by index.
    pub signatures: Vec<(u8, SignatureBytes)>,
}

impl Certificate {
    /// The signers, as a bitmap.
    pub fn signers(&self) -> Bitmap {
        self.signatures
            .iter()
            .fold(0, |acc, (s, _)| acc | bit(usize::from(*s) % 128))
    }

    /// Checks the certificate against `membership`: strictly increasing
    /// member indices, at least a quorum of them, every signature valid.
    pub fn verify(&self, membership: &Membership) -> Result<(), CertificateError> {
        if self.signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(CertificateError::Malformed);
        }
        if self.signatures.len() < membership.quorum() {
            return Err(CertificateError::TooFewSigners {
                have: self.signatures.len(),
                need: membership.quorum(),
            });
        }
        let digest = vote_digest(
            membership.id(),
            self.instance,
            Phase::Precommit,
            self.round,
            &self.value,
        );
        for (signer, signature) in &self.signatures {
            let signer = usize::from(*signer);
            let key = membership
                .key(signer)
                .ok_or(CertificateError::UnknownSigner(signer))?;
            if !verify(key, &digest, signature) {
                return Err(CertificateError::BadSignature(signer));
            }
        }
        Ok(())
    }

    /// Bytes of [`Certificate::encode`].
    pub fn encoded_len(&self) -> usize {
        1 + 8 + 4 + 32 + 1 + self.signatures.len() * 65
    }

    /// Appends the certificate's standalone encoding (for storing it or
    /// handing it to a third party; on the wire it travels as precommit
    /// items, see [`crate::wire`]). At most 255 signatures are encoded.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let count = self.signatures.len().min(255);
        out.push(CERTIFICATE_VERSION);
        put_u64(out, self.instance);
        put_u32(out, self.round);
        out.extend_from_slice(&self.value);
        out.push(count as u8);
        for (signer, signature) in &self.signatures[..count] {
            out.push(*signer);
            out.extend_from_slice(signature);
        }
    }

    /// Parses [`Certificate::encode`]'s bytes (does not verify them).
    pub fn decode(bytes: &[u8]) -> Result<Self, CertificateError> {
        let mut reader = Reader::new(bytes);
        if reader.u8()? != CERTIFICATE_VERSION {
            return Err(CertificateError::Malformed);
        }
        let instance = reader.u64()?;
        let round = reader.u32()?;
        let value = reader.array::<32>()?;
        let count = usize::from(reader.u8()?);
        if reader.remaining() < count * 65 {
            return Err(CertificateError::Truncated);
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            let signer = reader.u8()?;
            if signatures.last().is_some_and(|(s, _)| *s >= signer) {
                return Err(CertificateError::Malformed);
            }
            signatures.push((signer, reader.array::<64>()?));
        }
        if !reader.is_empty() {
            return Err(CertificateError::Malformed);
        }
        Ok(Certificate {
            instance,
            round,
            value,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(n: usize) -> (Vec<SigningKey>, Membership) {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 7; 32]))
            .collect();
        let membership = Membership::new(keys.iter().map(|k| k.verifying_key()).collect()).unwrap();
        (keys, membership)
    }

    fn certificate(keys: &[SigningKey], m: &Membership, signers: &[usize]) -> Certificate {
        let value = [9u8; 32];
        let digest = vote_digest(m.id(), 5, Phase::Precommit, 2, &value);
        Certificate {
            instance: 5,
            round: 2,
            value,
            signatures: signers
                .iter()
                .map(|&s| (s as u8, sign(&keys[s], &digest)))
                .collect(),
        }
    }

    #[test]
    fn a_quorum_of_precommits_verifies_and_less_does_not() {
        let (keys, m) = group(7);
        let good = certificate(&keys, &m, &[0, 2, 3, 5, 6]);
        assert_eq!(good.verify(&m), Ok(()));
        assert_eq!(
            certificate(&keys, &m, &[0, 2, 3, 5]).verify(&m),
            Err(CertificateError::TooFewSigners { have: 4, need: 5 })
        );
        let mut repeated = good.clone();
        repeated.signatures[1] = repeated.signatures[0];
        assert_eq!(repeated.verify(&m), Err(CertificateError::Malformed));
        let mut other_value = good.clone();
        other_value.value[0] ^= 1;
        assert_eq!(
            other_value.verify(&m),
            Err(CertificateError::BadSignature(0))
        );
        let mut other_round = good.clone();
        other_round.round = 3;
        assert!(other_round.verify(&m).is_err());
        // Another membership (same keys, other order) refuses it.
        let mut reordered: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        reordered.swap(0, 1);
        assert!(good.verify(&Membership::new(reordered).unwrap()).is_err());
    }

    #[test]
    fn prevotes_and_proposals_are_not_precommits() {
        let (keys, m) = group(4);
        let value = [1u8; 32];
        let prevote = vote_digest(m.id(), 1, Phase::Prevote, 0, &value);
        let precommit = vote_digest(m.id(), 1, Phase::Precommit, 0, &value);
        let proposal = proposal_digest(m.id(), 1, 0, None, &value);
        assert_ne!(prevote, precommit);
        assert_ne!(prevote, proposal);
        assert_ne!(
            proposal_digest(m.id(), 1, 3, None, &value),
            proposal_digest(m.id(), 1, 3, Some(0), &value)
        );
        let signature = sign(&keys[0], &prevote);
        assert!(verify(&keys[0].verifying_key(), &prevote, &signature));
        assert!(!verify(&keys[0].verifying_key(), &precommit, &signature));
        assert!(!verify(&keys[1].verifying_key(), &prevote, &signature));
    }

    #[test]
    fn encoding_round_trips() {
        let (keys, m) = group(4);
        let cert = certificate(&keys, &m, &[0, 1, 3]);
        let mut bytes = Vec::new();
        cert.encode(&mut bytes);
        assert_eq!(bytes.len(), cert.encoded_len());
        let back = Certificate::decode(&bytes).unwrap();
        assert_eq!(back, cert);
        assert_eq!(back.verify(&m), Ok(()));
        assert_eq!(back.signers(), 0b1011);
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Certificate::decode(&bytes);
        }

        #[test]
        fn a_mutated_certificate_never_verifies(index in any::<usize>(), flip in 1u8..=255) {
            let (keys, m) = group(4);
            let cert = certificate(&keys, &m, &[0, 1, 3]);
            let mut bytes = Vec::new();
            cert.encode(&mut bytes);
            let at = index % bytes.len();
            bytes[at] ^= flip;
            if let Ok(mutated) = Certificate::decode(&bytes) {
                prop_assert!(mutated.verify(&m).is_err());
            }
        }
    }
}
