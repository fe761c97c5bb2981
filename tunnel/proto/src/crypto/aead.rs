//! Packet protection for the data plane: sealing and opening every data
//! packet with an AEAD under the per-direction session keys, in the
//! caller's buffer (no copies), with the replay window ([`super::replay`])
//! that also discards flooded duplicates. The layout of the clear header is
//! [`crate::wire::data`].
//!
//! The overhead per packet is therefore [`PROTECTION_OVERHEAD`] = 17 bytes
//! of header + 16 bytes of tag = **33 bytes** (plus the 28 bytes of IPv4 and
//! UDP headers outside the payload, which the tunnel cannot avoid).
//!
//! The nonce is the packet number: 4 zero bytes followed by the 64-bit
//! packet number, big-endian. Each direction has its own key (one side's
//! `send` is the other's `receive`), so a nonce is never reused under one
//! key as long as the packet number never repeats, which [`PacketSealer`]
//! guarantees by counting up and refusing to wrap.
//!
//! # Usage limits
//!
//! One key seals at most [`PACKETS_PER_KEY`] packets (RFC 9001 §6.6: for
//! AES-GCM with packets of at most 2^11 bytes the confidentiality bound
//! keeps an attacker's advantage under 2^-57 for about 2^28.5 packets;
//! ChaCha20-Poly1305's is far higher, the same limit is used for both).
//! Past it [`PacketSealer::seal_in_place`] refuses with
//! [`SealError::UsageLimit`]; the endpoint rekeys long before, at half of
//! it. One key opens at most [`FORGERIES_PER_KEY`] packets that fail
//! authentication (ChaCha20-Poly1305's integrity limit, 2^36, the lower of
//! the two); after that every packet under it is refused as forged, and
//! the session recovers through a new handshake (its peer goes
//! unanswered). Packet numbers keep rising across rekeys and never wrap.
//!
//! The AEAD is AES-256-GCM, or ChaCha20-Poly1305 where the CPU lacks AES
//! instructions ([`AeadAlgorithm::preferred_for_this_cpu`]). Both ends must
//! use the same one; the choice belongs to the session set-up.

use super::keys::SessionKeys;
use super::replay::ReplayWindow;
use crate::wire::data::{DataHeader, DataHeaderError, HEADER_LEN, TAG_LEN};
use ring::aead;
use thiserror::Error;

/// Total bytes that protection adds to a packet body.
pub const PROTECTION_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Most packets one key seals (its confidentiality limit).
pub const PACKETS_PER_KEY: u64 = 1 << 28;
/// Most packets failing authentication one key tolerates (its integrity
/// limit).
pub const FORGERIES_PER_KEY: u64 = 1 << 36;

/// The authenticated cipher that seals data packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AeadAlgorithm {
    /// AES-256 in Galois/Counter mode: fastest where the CPU has AES
    /// instructions.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: fast in software, for CPUs without AES
    /// instructions.
    ChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// AES-256-GCM when this CPU has AES and carry-less multiply
    /// instructions, ChaCha20-Poly1305 otherwise.
    pub fn preferred_for_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
            {
                return AeadAlgorithm::Aes256Gcm;
            }
            AeadAlgorithm::ChaCha20Poly1305
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
            {
                return AeadAlgorithm::Aes256Gcm;
            }
            AeadAlgorithm::ChaCha20Poly1305
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            AeadAlgorithm::ChaCha20Poly1305
        }
    }

    fn ring_algorithm(self) -> &'static aead::Algorithm {
        match self {
            AeadAlgorithm::Aes256Gcm => &aead::AES_256_GCM,
            AeadAlgorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn key(self, bytes: &[u8; 32]) -> aead::LessSafeKey {
        // Both algorithms take 32-byte keys, so this cannot fail.
        let unbound = aead::UnboundKey::new(self.ring_algorithm(), bytes)
            .unwrap_or_else(|_| unreachable!("32-byte key for a 256-bit AEAD"));
        aead::LessSafeKey::new(unbound)
    }
}

/// Why a received datagram was not accepted. Every reason is counted by
/// the data plane; none is fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum OpenError {
    /// Shorter than a header plus a tag.
    #[error("datagram too short to be a data packet")]
    Truncated,
    /// The first byte is not the data packet type.
    #[error("not a data packet")]
    NotData,
    /// The session id in the header is not one we hold keys for.
    #[error("unknown session id")]
    UnknownSession,
    /// The tag did not verify: forged, corrupted, or sealed under other keys.
    #[error("authentication failed")]
    Forged,
    /// A packet number already accepted (a replay or a flooded duplicate).
    #[error("packet number already seen")]
    Replayed,
    /// A packet number older than the replay window.
    #[error("packet number older than the replay window")]
    Stale,
}

/// Errors while sealing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SealError {
    /// All 2^64 − 1 packet numbers of this key are used: rekey.
    #[error("packet numbers exhausted; the session must be rekeyed")]
    PacketNumbersExhausted,
    /// This key sealed its [`PACKETS_PER_KEY`]: rekey.
    #[error("the key sealed its usage limit of packets; the session must be rekeyed")]
    UsageLimit,
    /// The buffer passed to [`PacketSealer::seal_in_place`] has no room
    /// reserved for the header.
    #[error("no room reserved for the packet header")]
    NoRoomForHeader,
}

impl From<DataHeaderError> for OpenError {
    fn from(error: DataHeaderError) -> Self {
        match error {
            DataHeaderError::Truncated => OpenError::Truncated,
            DataHeaderError::NotData => OpenError::NotData,
        }
    }
}

fn nonce(packet_number: u64) -> aead::Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&packet_number.to_be_bytes());
    aead::Nonce::assume_unique_for_key(bytes)
}

/// Seals outgoing data packets of one session with its `send` key.
pub struct PacketSealer {
    key: aead::LessSafeKey,
    session_id: u64,
    next_packet_number: u64,
    /// Packets sealed under this key, and the most it may seal.
    sealed: u64,
    limit: u64,
}

impl std::fmt::Debug for PacketSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSealer")
            .field("session_id", &format_args!("{:016x}", self.session_id))
            .field("next_packet_number", &self.next_packet_number)
            .finish_non_exhaustive()
    }
}

impl PacketSealer {
    /// A sealer for `keys.send`, numbering packets from 0.
    pub fn new(algorithm: AeadAlgorithm, keys: &SessionKeys) -> Self {
        PacketSealer {
            key: algorithm.key(&keys.send),
            session_id: keys.session_id,
            next_packet_number: 0,
            sealed: 0,
            limit: PACKETS_PER_KEY,
        }
    }

    /// The same sealer with a lower usage limit (tests).
    pub fn with_usage_limit(mut self, limit: u64) -> Self {
        self.limit = limit.min(PACKETS_PER_KEY);
        self
    }

    /// Packets sealed under this key so far.
    pub fn sealed(&self) -> u64 {
        self.sealed
    }

    /// The same sealer, numbering from `first`, so that packet numbers
    /// keep rising across a rekey.
    pub fn starting_at(mut self, first: u64) -> Self {
        self.next_packet_number = first;
        self
    }

    /// The packet number the next [`PacketSealer::seal`] will use.
    pub fn next_packet_number(&self) -> u64 {
        self.next_packet_number
    }

    /// Seals a packet in place. `out[start..]` holds [`HEADER_LEN`] bytes
    /// of room for the header followed by the plaintext body; the header is
    /// written, the body encrypted where it lies and the tag appended.
    /// Returns the packet number. `out` must hold at least the header room
    /// past `start`.
    pub fn seal_in_place(&mut self, out: &mut Vec<u8>, start: usize) -> Result<u64, SealError> {
        let packet_number = self.next_packet_number;
        if packet_number == u64::MAX {
            return Err(SealError::PacketNumbersExhausted);
        }
        if self.sealed >= self.limit {
            return Err(SealError::UsageLimit);
        }
        if out.len() < start + HEADER_LEN {
            return Err(SealError::NoRoomForHeader);
        }
        self.next_packet_number += 1;
        self.sealed += 1;
        let mut header = Vec::with_capacity(HEADER_LEN);
        DataHeader {
            session_id: self.session_id,
            packet_number,
        }
        .encode(&mut header);
        out[start..start + HEADER_LEN].copy_from_slice(&header);
        let (header, in_out) = out[start..].split_at_mut(HEADER_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(packet_number), aead::Aad::from(&*header), in_out)
            .map_err(|_| SealError::PacketNumbersExhausted)?;
        out.extend_from_slice(tag.as_ref());
        Ok(packet_number)
    }

    /// Writes a whole protected packet (header, sealed `body`, tag) into
    /// `out`, replacing its contents, and returns its packet number.
    /// (Copies `body`; the data plane builds its bodies in place and uses
    /// [`PacketSealer::seal_in_place`].)
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<u64, SealError> {
        out.clear();
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(body);
        let result = self.seal_in_place(out, 0);
        if result.is_err() {
            out.clear();
        }
        result
    }
}

/// Opens incoming data packets of one session with its `receive` key and
/// rejects replays.
pub struct PacketOpener {
    key: aead::LessSafeKey,
    session_id: u64,
    window: ReplayWindow,
    scratch: Vec<u8>,
    /// Packets that failed authentication under this key.
    forgeries: u64,
}

impl std::fmt::Debug for PacketOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketOpener")
            .field("session_id", &format_args!("{:016x}", self.session_id))
            .finish_non_exhaustive()
    }
}

impl PacketOpener {
    /// An opener for `keys.receive`.
    pub fn new(algorithm: AeadAlgorithm, keys: &SessionKeys) -> Self {
        PacketOpener {
            key: algorithm.key(&keys.receive),
            session_id: keys.session_id,
            window: ReplayWindow::default(),
            scratch: Vec::new(),
            forgeries: 0,
        }
    }

    /// The session this opener belongs to.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Authenticates and decrypts `datagram` in place. On success returns
    /// the packet number and the plaintext body, which lies inside
    /// `datagram` (the ciphertext is overwritten). A packet that fails is
    /// left in an unspecified state.
    pub fn open_in_place<'a>(
        &mut self,
        datagram: &'a mut [u8],
    ) -> Result<(u64, &'a [u8]), OpenError> {
        let header = DataHeader::parse(datagram)?;
        if header.session_id != self.session_id {
            return Err(OpenError::UnknownSession);
        }
        self.window.check(header.packet_number)?;
        if self.forgeries >= FORGERIES_PER_KEY {
            return Err(OpenError::Forged);
        }
        let (clear, sealed) = datagram.split_at_mut(HEADER_LEN);
        let aad = aead::Aad::from(&*clear);
        let Ok(body) = self
            .key
            .open_in_place(nonce(header.packet_number), aad, sealed)
        else {
            self.forgeries += 1;
            return Err(OpenError::Forged);
        };
        self.window.mark(header.packet_number);
        Ok((header.packet_number, &*body))
    }

    /// Like [`PacketOpener::open_in_place`], on a copy of `datagram` in an
    /// internal buffer (for callers that cannot lend a mutable buffer).
    pub fn open(&mut self, datagram: &[u8]) -> Result<(u64, &[u8]), OpenError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(datagram);
        let result = self
            .open_in_place(&mut scratch)
            .map(|(packet_number, body)| (packet_number, body.len()));
        self.scratch = scratch;
        let (packet_number, len) = result?;
        let start = HEADER_LEN;
        Ok((packet_number, &self.scratch[start..start + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sealing_in_place_after_other_bytes_opens_in_place() {
        for algorithm in [AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305] {
            let (a, b) = keys();
            let mut sealer = PacketSealer::new(algorithm, &a);
            let mut opener = PacketOpener::new(algorithm, &b);
            let mut buffer = b"earlier datagram".to_vec();
            let start = buffer.len();
            buffer.resize(start + HEADER_LEN, 0);
            buffer.extend_from_slice(b"body bytes");
            assert_eq!(sealer.seal_in_place(&mut buffer, start), Ok(0));
            assert_eq!(&buffer[..start], b"earlier datagram");
            assert_eq!(buffer.len(), start + 10 + PROTECTION_OVERHEAD);
            let packet = &mut buffer[start..];
            assert_eq!(
                opener.open_in_place(packet).unwrap(),
                (0, &b"body bytes"[..])
            );
            let mut short = vec![0u8; 3];
            assert_eq!(
                sealer.seal_in_place(&mut short, 0),
                Err(SealError::NoRoomForHeader)
            );
        }
    }

    fn keys() -> (SessionKeys, SessionKeys) {
        SessionKeys::pair([1; 32], [2; 32], 7)
    }

    #[test]
    fn a_key_seals_no_more_than_its_limit() {
        let (a, b) = keys();
        let mut sealer = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &a).with_usage_limit(3);
        let mut opener = PacketOpener::new(AeadAlgorithm::Aes256Gcm, &b);
        let mut packet = Vec::new();
        for pn in 0..3 {
            assert_eq!(sealer.seal(b"x", &mut packet), Ok(pn));
            assert!(opener.open(&packet).is_ok());
        }
        assert_eq!(sealer.seal(b"x", &mut packet), Err(SealError::UsageLimit));
        assert!(packet.is_empty());
        // A rekeyed sealer numbers on from where the old one stopped.
        let mut next = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &b).starting_at(3);
        assert_eq!(next.seal(b"x", &mut packet), Ok(3));
        let mut last = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &a).starting_at(u64::MAX);
        assert_eq!(
            last.seal(b"x", &mut packet),
            Err(SealError::PacketNumbersExhausted)
        );
    }

    #[test]
    fn round_trip_and_replay_rejected() {
        for algorithm in [AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305] {
            let (a, b) = keys();
            let mut sealer = PacketSealer::new(algorithm, &a);
            let mut opener = PacketOpener::new(algorithm, &b);
            let mut packet = Vec::new();
            let pn = sealer.seal(b"hello", &mut packet).unwrap();
            assert_eq!(pn, 0);
            assert_eq!(packet.len(), 5 + PROTECTION_OVERHEAD);
            assert_eq!(opener.open(&packet).unwrap(), (0, &b"hello"[..]));
            assert_eq!(opener.open(&packet), Err(OpenError::Replayed));
            // Our own packets do not open under our receive key.
            let mut own = PacketOpener::new(algorithm, &a);
            assert_eq!(own.open(&packet), Err(OpenError::Forged));
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, b) = keys();
            let mut opener = PacketOpener::new(AeadAlgorithm::Aes256Gcm, &b);
            prop_assert!(opener.open(&bytes).is_err());
        }

        #[test]
        fn any_mutation_is_rejected(body in proptest::collection::vec(any::<u8>(), 0..64), index in any::<usize>(), flip in 1u8..) {
            let (a, b) = keys();
            let mut sealer = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &a);
            let mut opener = PacketOpener::new(AeadAlgorithm::Aes256Gcm, &b);
            let mut packet = Vec::new();
            sealer.seal(&body, &mut packet).unwrap();
            let index = index % packet.len();
            packet[index] ^= flip;
            prop_assert!(opener.open(&packet).is_err());
            // Truncations too.
            packet[index] ^= flip;
            prop_assert!(opener.open(&packet[..index]).is_err());
        }
    }
}
