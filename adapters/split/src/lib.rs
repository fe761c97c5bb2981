//! Split mode for tgp: terminate TCP at each end of the tunnel, so that no
//! kernel TCP ever sees the lossy hop (a performance-enhancing proxy in the
//! sense of RFC 3135, transparent: addresses and ports are preserved).
//!
//! ```text
//! app ─ kernel TCP ─ [near engine: smoltcp] ══ stream over tgp ══ [far engine: smoltcp] ─ kernel TCP ─ app
//! ```
//!
//! Sans-IO like the rest of tgp: a [`SplitEngine`] (one per peer) takes TCP
//! packets from the TUN and stream messages from the peer, with the time
//! passed in, and gives back IP packets for the TUN and stream messages for
//! `Endpoint::send_stream`. It reads no clock and opens no socket.
//!
//! # What a client sees
//!
//! - The local SYN is answered at once by the near engine (a listener for
//!   exactly that destination and port), so `connect()` succeeds in well
//!   under a millisecond whatever the destination; the first bytes the
//!   client writes travel with the OPEN, in the same round trip.
//! - A closed port at the far end (the server answers RST), or a far
//!   destination that does not answer within `connect_timeout` (10 s by
//!   default), resets the client's connection: the client saw "connected",
//!   and its next `read()`/`write()` fails with ECONNRESET about one tunnel
//!   round trip after the refusal (or after the timeout). Data it wrote
//!   before is discarded. This is the price of answering the SYN locally
//!   (RFC 3135 §4.1.4: failures are detected late).
//! - FIN and half-close propagate each way; RST propagates each way.
//! - A restart of the peer's daemon resets every split connection with that
//!   peer (the restarted side lost their state; see
//!   [`SplitEngine::reset_all`]); a rekey loses nothing.
//!
//! # Why smoltcp
//!
//! Split mode needs a userspace TCP/IP stack that can both *accept* a
//! connection for any destination (near side) and *connect* from a foreign
//! source address (far side: the client's address and port, so the server
//! sees the client as in segment mode). smoltcp (≥ 0.13.1; this crate uses
//! 0.14) does both with `any_ip`: every address counts as the interface's,
//! listeners can be bound to any address and port, and `connect()` takes
//! any explicit local address. It is sans-IO itself (a `Device` trait over
//! caller queues, time passed in), allocation-free per packet apart from
//! our queues, and maintained. `ipstack` was the alternative looked at: it
//! owns the device, acts as a server only (no SYN-SENT state, so no far
//! side), offers no window scaling (64 KB windows), and uses unbounded
//! channels; the shadowsocks and netstack-smoltcp terminators are built on
//! smoltcp too and are servers only. So smoltcp at both ends.
//!
//! smoltcp features: `medium-ip`, IPv4 and IPv6, TCP; no congestion
//! control (the local hop is loss-free and its peer is the local kernel,
//! whose receive window paces us; tgp's own controller paces the tunnel),
//! Nagle off and no delayed ACK on every socket. TIME-WAIT sockets are
//! dropped as soon as the last ACK is out (smoltcp scans all sockets per
//! poll, and its TIME-WAIT lasts 10 s).
//!
//! # Modules
//! - [`wire`]: the stream messages (OPEN, DATA, FIN, RST, CREDIT) and the
//!   flow ids they travel under.
//! - [`engine`]: the [`SplitEngine`].

mod device;
pub mod engine;
pub mod wire;

pub use engine::{ResetCounts, SplitConfig, SplitEngine, SplitStats};
pub use wire::{is_stream_flow, ResetReason, STREAM_FLOW_BIT};
