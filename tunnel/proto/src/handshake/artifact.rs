//! The proof artifacts of the Full Solve and their byte encodings.
//!
//! A commitment C binds everything that makes a session unique; every
//! higher proof signs only the hashes of two lower proofs (its signer's own
//! lower proof and the peer's proof it was built on) under a level tag, so
//! each proof is 128 bytes however deep the chain is.

use super::DropReason;
use crate::crypto::{domain_hash, Hash, SigningKey, VerifyingKey};
use crate::wire::codec::{put_u64, Reader};
use ed25519_dalek::{Signature, Signer};

pub use crate::wire::handshake::{
    COMMITMENT_LEN, DONE_KIND, DONE_LEN, PROOF_LEN, PROTOCOL_VERSION, SESSION_PARAMETERS_LEN,
};

/// The levels of proof, in the order they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// C: a signed commitment to one specific session.
    Commitment = 0,
    /// D: "both committed" — signs own C and the peer's C.
    Double = 1,
    /// T: "both have double proofs" — signs own D and the peer's D.
    Triple = 2,
    /// Q: the quaternary fixpoint — signs own T and the peer's T.
    Quaternary = 3,
    /// Q_CONF: "I have constructed Q" — signs own Q and the peer's T it
    /// was built on.
    Confirmation = 4,
    /// Q_CONF_FINAL: "mutually locked in" — signs own Q_CONF and the
    /// peer's Q_CONF.
    FinalConfirmation = 5,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 6] = [
        Level::Commitment,
        Level::Double,
        Level::Triple,
        Level::Quaternary,
        Level::Confirmation,
        Level::FinalConfirmation,
    ];

    /// The level from its wire number.
    pub fn from_number(number: u8) -> Option<Level> {
        Level::ALL.get(usize::from(number)).copied()
    }

    /// Index into per-level arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The level below this one (`None` for the commitment).
    pub fn lower(self) -> Option<Level> {
        self.index()
            .checked_sub(1)
            .and_then(|i| Level::ALL.get(i).copied())
    }

    /// The level of the *peer's* proof that a proof of this level signs.
    /// Receiving a peer proof of this level shows the peer holds our proof
    /// of the returned level.
    pub fn peer_reference(self) -> Option<Level> {
        match self {
            Level::Commitment => None,
            Level::Double => Some(Level::Commitment),
            Level::Triple => Some(Level::Double),
            Level::Quaternary | Level::Confirmation => Some(Level::Triple),
            Level::FinalConfirmation => Some(Level::Confirmation),
        }
    }

    /// The domain tag signed into a proof of this level.
    fn signing_tag(self) -> &'static [u8] {
        match self {
            Level::Commitment => b"tgp v1 C: I commit to this session",
            Level::Double => b"tgp v1 D: both committed",
            Level::Triple => b"tgp v1 T: both have double proofs",
            Level::Quaternary => b"tgp v1 Q: fixpoint achieved",
            Level::Confirmation => b"tgp v1 Q_CONF: I have constructed Q",
            Level::FinalConfirmation => b"tgp v1 Q_CONF_FINAL: mutually locked in",
        }
    }
}

/// Parameters both sides must agree on; bound into each commitment, and a
/// commitment with different parameters is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionParameters {
    /// The handshake deadline, in milliseconds.
    pub deadline_ms: u32,
    /// The margin between cut-off and deadline, in milliseconds.
    pub cutoff_margin_ms: u32,
    /// The largest UDP payload either side sends in the session.
    pub max_datagram_size: u16,
}

impl SessionParameters {
    /// Encoded length in bytes.
    pub const LEN: usize = SESSION_PARAMETERS_LEN;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..4].copy_from_slice(&self.deadline_ms.to_be_bytes());
        out[4..8].copy_from_slice(&self.cutoff_margin_ms.to_be_bytes());
        out[8..10].copy_from_slice(&self.max_datagram_size.to_be_bytes());
        out
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DropReason> {
        Ok(SessionParameters {
            deadline_ms: reader.u32()?,
            cutoff_margin_ms: reader.u32()?,
            max_datagram_size: reader.u16()?,
        })
    }
}

/// The content of a commitment C_X.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitment {
    /// Protocol version.
    pub version: u8,
    /// The signer's Ed25519 identity key.
    pub signer: [u8; 32],
    /// The identity key of the peer the signer means to talk to.
    pub peer: [u8; 32],
    /// 32 fresh random bytes.
    pub nonce: [u8; 32],
    /// The signer's X25519 ephemeral public key for this session.
    pub ephemeral: [u8; 32],
    /// Session parameters.
    pub parameters: SessionParameters,
    /// The signer's wall-clock time when it started, in Unix milliseconds.
    pub unix_time_ms: u64,
    /// The session this one rekeys and continues (its session id), or 0
    /// for a fresh session (first contact, or after a restart).
    pub continues_session: u64,
}

impl Commitment {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMMITMENT_LEN);
        out.extend_from_slice(Level::Commitment.signing_tag());
        out.push(self.version);
        out.extend_from_slice(&self.signer);
        out.extend_from_slice(&self.peer);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ephemeral);
        out.extend_from_slice(&self.parameters.encode());
        put_u64(&mut out, self.unix_time_ms);
        put_u64(&mut out, self.continues_session);
        out
    }

    /// Signs and encodes the commitment as a wire body.
    pub fn sign_and_encode(&self, key: &SigningKey) -> Vec<u8> {
        let signed = self.signed_bytes();
        let signature = key.sign(&signed);
        let tag_len = Level::Commitment.signing_tag().len();
        let mut body = signed[tag_len..].to_vec();
        body.extend_from_slice(&signature.to_bytes());
        debug_assert_eq!(body.len(), COMMITMENT_LEN);
        body
    }

    /// Decodes a commitment body without checking its signature; returns
    /// the commitment and its signature.
    pub fn decode(body: &[u8]) -> Result<(Commitment, [u8; 64]), DropReason> {
        if body.len() != COMMITMENT_LEN {
            return Err(DropReason::Malformed);
        }
        let mut reader = Reader::new(body);
        let version = reader.u8()?;
        let signer = reader.array::<32>()?;
        let peer = reader.array::<32>()?;
        let nonce = reader.array::<32>()?;
        let ephemeral = reader.array::<32>()?;
        let parameters = SessionParameters::decode(&mut reader)?;
        let unix_time_ms = reader.u64()?;
        let continues_session = reader.u64()?;
        let signature = reader.array::<64>()?;
        Ok((
            Commitment {
                version,
                signer,
                peer,
                nonce,
                ephemeral,
                parameters,
                unix_time_ms,
                continues_session,
            },
            signature,
        ))
    }

    /// Checks the commitment's signature with `key`.
    pub fn verify(&self, key: &VerifyingKey, signature: &[u8; 64]) -> Result<(), DropReason> {
        key.verify_strict(&self.signed_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| DropReason::BadSignature)
    }
}

/// A proof of level D or higher: the signer's own lower proof and the
/// peer's proof it builds on, by hash, and a signature over both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The level of this proof (never [`Level::Commitment`]).
    pub level: Level,
    /// Hash of the signer's own proof one level down.
    pub own_lower: Hash,
    /// Hash of the peer's proof at [`Level::peer_reference`].
    pub peer_reference: Hash,
}

impl Proof {
    fn signed_bytes(&self) -> Vec<u8> {
        let tag = self.level.signing_tag();
        let mut out = Vec::with_capacity(tag.len() + 64);
        out.extend_from_slice(tag);
        out.extend_from_slice(&self.own_lower);
        out.extend_from_slice(&self.peer_reference);
        out
    }

    /// Signs and encodes the proof as a wire body.
    pub fn sign_and_encode(&self, key: &SigningKey) -> Vec<u8> {
        let signature = key.sign(&self.signed_bytes());
        let mut body = Vec::with_capacity(PROOF_LEN);
        body.extend_from_slice(&self.own_lower);
        body.extend_from_slice(&self.peer_reference);
        body.extend_from_slice(&signature.to_bytes());
        body
    }

    /// Decodes a proof body of `level` without checking its signature.
    pub fn decode(level: Level, body: &[u8]) -> Result<(Proof, [u8; 64]), DropReason> {
        if level == Level::Commitment || body.len() != PROOF_LEN {
            return Err(DropReason::Malformed);
        }
        let mut reader = Reader::new(body);
        let own_lower = reader.array::<32>()?;
        let peer_reference = reader.array::<32>()?;
        let signature = reader.array::<64>()?;
        Ok((
            Proof {
                level,
                own_lower,
                peer_reference,
            },
            signature,
        ))
    }

    /// Checks the proof's signature with `key`.
    pub fn verify(&self, key: &VerifyingKey, signature: &[u8; 64]) -> Result<(), DropReason> {
        key.verify_strict(&self.signed_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| DropReason::BadSignature)
    }
}

/// The hash that names an artifact: over its kind, its signer and its
/// whole body (signature included).
pub fn artifact_hash(kind: u8, signer: &[u8; 32], body: &[u8]) -> Hash {
    domain_hash(b"tgp v1 artifact", &[&[kind], signer, body])
}

/// RECEIPT: the hash of both final confirmations, in the canonical order
/// of their signers' identity keys, so both sides compute the same value.
pub fn receipt(first_final: &Hash, second_final: &Hash) -> Hash {
    domain_hash(b"tgp v1 receipt", &[first_final, second_final])
}
