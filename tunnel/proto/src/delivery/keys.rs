//! Key rotation of one session's data plane: the sealer of the current
//! keys and the openers of the current and recently replaced keys, each of
//! the old ones retired when its grace time ends.

use crate::crypto::aead::{AeadAlgorithm, OpenError, PacketOpener, PacketSealer, SealError};
use crate::crypto::keys::SessionKeys;
use crate::time::Timestamp;
use crate::wire::data::DataHeader;
use std::time::Duration;

struct Opener {
    opener: PacketOpener,
    retire_at: Option<Timestamp>,
}

/// The packet protection of a session across rekeys.
pub(crate) struct PacketKeys {
    aead: AeadAlgorithm,
    sealer: PacketSealer,
    openers: Vec<Opener>,
}

/// An authentic, fresh data packet, opened in place.
pub(crate) struct Opened<'a> {
    /// The session whose keys opened it.
    pub session_id: u64,
    /// Its packet number.
    pub packet_number: u64,
    /// The plaintext body (frames).
    pub body: &'a [u8],
}

impl PacketKeys {
    pub(crate) fn new(aead: AeadAlgorithm, keys: &SessionKeys) -> Self {
        PacketKeys {
            aead,
            sealer: PacketSealer::new(aead, keys),
            openers: vec![Opener {
                opener: PacketOpener::new(aead, keys),
                retire_at: None,
            }],
        }
    }

    /// Replaces the keys. Packet numbers keep rising; the old keys still
    /// open packets for `grace`.
    pub(crate) fn rekey(&mut self, now: Timestamp, keys: &SessionKeys, grace: Duration) {
        let next = self.sealer.next_packet_number();
        self.sealer = PacketSealer::new(self.aead, keys).starting_at(next);
        let retire_at = now + grace;
        for opener in &mut self.openers {
            opener.retire_at.get_or_insert(retire_at);
        }
        self.openers.insert(
            0,
            Opener {
                opener: PacketOpener::new(self.aead, keys),
                retire_at: None,
            },
        );
    }

    /// The packet number the next sealed packet gets.
    pub(crate) fn next_packet_number(&self) -> u64 {
        self.sealer.next_packet_number()
    }

    /// Seals the packet whose header room and body lie at `out[start..]`.
    pub(crate) fn seal_in_place(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<u64, SealError> {
        self.sealer.seal_in_place(out, start)
    }

    /// Opens `datagram` in place under whichever of the session's keys it
    /// names.
    pub(crate) fn open_in_place<'a>(
        &mut self,
        datagram: &'a mut [u8],
    ) -> Result<Opened<'a>, OpenError> {
        let header = DataHeader::parse(datagram)?;
        let opener = self
            .openers
            .iter_mut()
            .find(|o| o.opener.session_id() == header.session_id)
            .ok_or(OpenError::UnknownSession)?;
        let (packet_number, body) = opener.opener.open_in_place(datagram)?;
        Ok(Opened {
            session_id: header.session_id,
            packet_number,
            body,
        })
    }

    /// Whether packets of `session_id` still open here.
    pub(crate) fn opens(&self, session_id: u64) -> bool {
        self.openers
            .iter()
            .any(|o| o.opener.session_id() == session_id)
    }

    /// Drops the old keys whose grace time is over.
    pub(crate) fn retire(&mut self, now: Timestamp) {
        self.openers
            .retain(|o| o.retire_at.is_none_or(|at| now < at));
    }

    /// When the next old key is retired.
    pub(crate) fn next_retirement(&self) -> Option<Timestamp> {
        self.openers.iter().filter_map(|o| o.retire_at).min()
    }
}
