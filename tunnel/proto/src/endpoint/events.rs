//! What an endpoint hands its owner: datagrams to send, segments that
//! arrived, what became of a received datagram, and events.

use super::PeerId;
use crate::crypto::aead::OpenError;
use crate::delivery::FlowId;
use crate::handshake::DropReason as HandshakeDrop;
use std::net::SocketAddr;

/// A datagram [`Endpoint::poll_transmit`] appended to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length: the last `size` bytes of the buffer.
    pub size: usize,
}

/// What [`Endpoint::handle_datagram`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// An authentic, fresh data packet of `peer`'s session.
    Data {
        /// Whose.
        peer: PeerId,
        /// The session whose keys opened it.
        session_id: u64,
    },
    /// A handshake packet from `peer` (its identity key is configured).
    Handshake {
        /// Whose.
        peer: PeerId,
        /// It carried proofs not seen before (it moved a handshake on, or
        /// started one as responder).
        progressed: bool,
        /// Why it, or part of it, was dropped.
        dropped: Option<HandshakeDrop>,
    },
    /// Dropped before any peer state took it.
    Dropped(EndpointDrop),
}

/// Why a datagram was dropped before any peer's state took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointDrop {
    /// Neither a handshake nor a data packet.
    NotTgp,
    /// A data packet too short to carry its header and tag.
    Truncated,
    /// A handshake packet from an identity we do not know.
    UnknownPeer,
    /// A data packet of a session no peer has.
    UnknownSession,
    /// A data packet of a peer's session that did not open.
    Data(OpenError),
}

/// A segment that arrived through a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The peer it came from.
    pub peer: PeerId,
    /// The flow the peer's sender gave it.
    pub flow: FlowId,
    /// The segment: an IP packet, or a stream's bytes.
    pub segment: Vec<u8>,
}

/// Why a session went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Nothing authentic arrived for the idle timeout.
    PeerSilent,
    /// The peer restarted: the old session was replaced by a fresh one.
    Replaced,
}

/// Something the owner may want to log or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session with the peer is usable (new, or rekeyed).
    SessionUp {
        /// Which peer.
        peer: PeerId,
        /// The new session's id.
        session_id: u64,
        /// Whether it continues the previous session (a rekey).
        rekeyed: bool,
    },
    /// A session went down.
    SessionDown {
        /// Which peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// A handshake attempt ended without a session.
    HandshakeFailed {
        /// Which peer.
        peer: PeerId,
    },
    /// The peer's packets now come from another address.
    PeerMoved {
        /// Which peer.
        peer: PeerId,
        /// The old address, if one was known.
        from: Option<SocketAddr>,
        /// The new address.
        to: SocketAddr,
    },
}
