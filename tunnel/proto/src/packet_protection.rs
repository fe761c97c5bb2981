//! Packet protection for the data plane: sealing and opening every data
//! packet with an AEAD under the per-direction session keys, and the
//! sliding replay window that also discards flooded duplicates.
//!
//! # Wire layout
//!
//! ```text
//! [type 0x02: u8][session_id: u64 BE][packet number: u64 BE]   header, in clear, authenticated (AAD)
//! [ciphertext of the body ...][tag: 16 bytes]                   AEAD-sealed body
//! ```
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
//! The AEAD is AES-256-GCM, or ChaCha20-Poly1305 where the CPU lacks AES
//! instructions ([`AeadAlgorithm::preferred_for_this_cpu`]). Both ends must
//! use the same one; the choice belongs to the session set-up.

use crate::keys::SessionKeys;
use crate::wire::PACKET_TYPE_DATA;
use ring::aead;
use thiserror::Error;

/// Bytes of clear header in front of every data packet: type, session id,
/// packet number.
pub const HEADER_LEN: usize = 1 + 8 + 8;
/// Bytes of the AEAD authentication tag at the end of every data packet.
pub const TAG_LEN: usize = 16;
/// Total bytes that protection adds to a packet body.
pub const PROTECTION_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// How many packet numbers below the highest one seen are still accepted
/// (once each). Older packets are dropped as stale.
pub const REPLAY_WINDOW_PACKETS: u64 = 8192;

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
    /// The first byte is not [`PACKET_TYPE_DATA`].
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
}

/// The clear header of a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Which session's keys sealed the packet.
    pub session_id: u64,
    /// The packet number, also the AEAD nonce.
    pub packet_number: u64,
}

impl PacketHeader {
    /// Reads the clear header of a data packet without authenticating it.
    pub fn parse(datagram: &[u8]) -> Result<Self, OpenError> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        if datagram[0] != PACKET_TYPE_DATA {
            return Err(OpenError::NotData);
        }
        let session_id = u64::from_be_bytes(datagram[1..9].try_into().unwrap_or([0; 8]));
        let packet_number = u64::from_be_bytes(datagram[9..17].try_into().unwrap_or([0; 8]));
        Ok(PacketHeader {
            session_id,
            packet_number,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(PACKET_TYPE_DATA);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&self.packet_number.to_be_bytes());
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
        }
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

    /// Writes a whole protected packet (header, sealed `body`, tag) into
    /// `out`, replacing its contents, and returns its packet number.
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<u64, SealError> {
        let packet_number = self.next_packet_number;
        if packet_number == u64::MAX {
            return Err(SealError::PacketNumbersExhausted);
        }
        self.next_packet_number += 1;
        out.clear();
        out.reserve(body.len() + PROTECTION_OVERHEAD);
        PacketHeader {
            session_id: self.session_id,
            packet_number,
        }
        .write(out);
        out.extend_from_slice(body);
        let (header, in_out) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(packet_number), aead::Aad::from(&*header), in_out)
            .map_err(|_| SealError::PacketNumbersExhausted)?;
        out.extend_from_slice(tag.as_ref());
        Ok(packet_number)
    }
}

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

/// Opens incoming data packets of one session with its `receive` key and
/// rejects replays.
pub struct PacketOpener {
    key: aead::LessSafeKey,
    session_id: u64,
    window: ReplayWindow,
    scratch: Vec<u8>,
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
        }
    }

    /// The session this opener belongs to.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Authenticates and decrypts `datagram`. On success returns the packet
    /// number and the plaintext body (borrowed from an internal buffer
    /// until the next call).
    pub fn open(&mut self, datagram: &[u8]) -> Result<(u64, &[u8]), OpenError> {
        let header = PacketHeader::parse(datagram)?;
        if header.session_id != self.session_id {
            return Err(OpenError::UnknownSession);
        }
        self.window.check(header.packet_number)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&datagram[HEADER_LEN..]);
        let aad = aead::Aad::from(&datagram[..HEADER_LEN]);
        let plain_len = self
            .key
            .open_in_place(nonce(header.packet_number), aad, &mut self.scratch)
            .map_err(|_| OpenError::Forged)?
            .len();
        self.window.mark(header.packet_number);
        Ok((header.packet_number, &self.scratch[..plain_len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> (SessionKeys, SessionKeys) {
        let a = SessionKeys {
            send: [1; 32],
            receive: [2; 32],
            session_id: 7,
        };
        let b = SessionKeys {
            send: [2; 32],
            receive: [1; 32],
            session_id: 7,
        };
        (a, b)
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
