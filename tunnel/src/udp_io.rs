//! The underlay UDP socket and how datagrams cross it. This module owns
//! the batching: received datagrams come in batches (`recvmmsg`, and UDP
//! GRO where the kernel coalesces), and the datagrams of one flush go out
//! in as few system calls as the kernel allows (UDP GSO: a run of
//! same-sized datagrams to one destination is one `sendmsg`). The system
//! calls are quinn-udp's, which detects what the kernel offers and falls
//! back by itself (GSO off after a driver refuses it, one datagram per
//! call where there is no GSO).
//!
//! quinn-udp sets the socket never to fragment (`IP_PMTUDISC_PROBE`, for
//! QUIC's own path MTU discovery); tgp sets the kernel's default back
//! (`IP_PMTUDISC_WANT`, and `IPV6_PMTUDISC_WANT`), so that on an underlay
//! whose MTU is below tgp's datagrams (at most 1452 bytes) the kernel
//! fragments them as it does on the plain path. (GSO cannot carry
//! datagrams that need fragmenting: the kernel refuses such a batch, and
//! quinn-udp then turns GSO off for the socket.)
//!
//! Setting the environment variable `TGP_UDP_BATCH=off` (or `0`, `no`,
//! `false`) forces the plain path instead: one `send_to` and one
//! `recv_from` per datagram, through tokio alone. It is there to test the
//! fallback and to compare the two.

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, ErrorKind, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// The environment variable that forces the plain (unbatched) path.
pub const BATCH_ENV: &str = "TGP_UDP_BATCH";

/// One receive buffer: the most a kernel hands over as one GRO
/// super-datagram (64 segments, at most 64 KiB).
const RECEIVE_BUFFER: usize = 65536;

/// The socket buffers asked for, each way: at a few hundred Mbit/s the
/// default (`net.core.rmem_default`, about 200 KB, some 90 datagrams)
/// overflows while the loop is busy elsewhere, and every overflow is a
/// loss the protocol must repair. wireguard-go asks for 7 MiB.
const SOCKET_BUFFER: usize = 4 << 20;

/// The most bytes one GSO send carries (a UDP datagram's length field,
/// less room for headers).
const MAX_GSO_BYTES: usize = 65000;

/// How the socket moves datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// quinn-udp: `recvmmsg`, GRO, GSO where the kernel has them.
    Batched,
    /// One datagram per system call (forced with `TGP_UDP_BATCH=off`).
    Plain,
}

impl Mode {
    /// The mode the environment asks for: plain when [`BATCH_ENV`] says
    /// off, batched otherwise.
    pub fn from_env() -> Mode {
        match std::env::var(BATCH_ENV) {
            Ok(value) if is_off(&value) => Mode::Plain,
            _ => Mode::Batched,
        }
    }
}

fn is_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "off" | "0" | "no" | "false"
    )
}

/// A datagram waiting in the send queue: where it goes and where it lies
/// in the send buffer.
#[derive(Clone, Copy, Debug)]
struct Queued {
    destination: SocketAddr,
    start: usize,
    size: usize,
}

/// The underlay socket with its send queue and receive buffers.
pub struct UdpIo {
    socket: UdpSocket,
    is_ipv6: bool,
    /// quinn-udp's state; `None` on the plain path.
    state: Option<UdpSocketState>,
    /// Receive buffers, [`RECEIVE_BUFFER`] bytes each, one after another
    /// (quinn-udp's batch on the batched path, one on the plain path).
    receive_buffer: Vec<u8>,
    receive_meta: Vec<RecvMeta>,
    /// Datagrams to send, one after another.
    send_buffer: Vec<u8>,
    queued: Vec<Queued>,
    /// System calls that sent datagrams, and the datagrams they sent.
    send_calls: u64,
    datagrams_sent: u64,
    /// Whether a datagram too large for the interface was warned about.
    warned_too_large: bool,
}

impl UdpIo {
    /// Binds the underlay socket: dual-stack IPv6 where the host has IPv6,
    /// IPv4 otherwise; port 0 picks a free port. `mode` chooses the path;
    /// batched falls back to plain if quinn-udp cannot set the socket up.
    pub async fn bind(port: Option<u16>, mode: Mode) -> io::Result<UdpIo> {
        let port = port.unwrap_or(0);
        let (socket, is_ipv6) = match UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port)).await
        {
            Ok(socket) => (socket, true),
            Err(v6_error) => {
                debug!(%v6_error, "no IPv6 socket; falling back to IPv4");
                (UdpSocket::bind(("0.0.0.0", port)).await?, false)
            }
        };
        Ok(UdpIo::new(socket, is_ipv6, mode))
    }

    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket, is_ipv6: bool, mode: Mode) -> UdpIo {
        enlarge_buffers(&socket);
        let state = match mode {
            Mode::Plain => None,
            Mode::Batched => match UdpSocketState::new(UdpSockRef::from(&socket)) {
                Ok(state) => {
                    allow_fragmentation(&socket, is_ipv6);
                    Some(state)
                }
                Err(error) => {
                    warn!(%error, "cannot batch on the UDP socket; sending one datagram per call");
                    None
                }
            },
        };
        let slots = if state.is_some() {
            quinn_udp::BATCH_SIZE
        } else {
            1
        };
        let io = UdpIo {
            socket,
            is_ipv6,
            state,
            receive_buffer: vec![0; slots * RECEIVE_BUFFER],
            receive_meta: vec![RecvMeta::default(); slots],
            send_buffer: Vec::with_capacity(MAX_GSO_BYTES),
            queued: Vec::with_capacity(64),
            send_calls: 0,
            datagrams_sent: 0,
            warned_too_large: false,
        };
        info!("underlay socket: {}", io.describe());
        io
    }

    /// The mode in use (batched can have fallen back to plain at setup).
    pub fn mode(&self) -> Mode {
        if self.state.is_some() {
            Mode::Batched
        } else {
            Mode::Plain
        }
    }

    /// A line for the log: the mode and what the kernel offers.
    pub fn describe(&self) -> String {
        match &self.state {
            Some(state) => format!(
                "batched (recvmmsg x{}, GSO up to {} segments, GRO up to {} segments)",
                quinn_udp::BATCH_SIZE,
                state.max_gso_segments(),
                state.gro_segments()
            ),
            None => "plain (one datagram per system call)".to_string(),
        }
    }

    /// The socket itself (for its address and its firewall mark).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Send system calls made and datagrams they carried.
    pub fn send_counts(&self) -> (u64, u64) {
        (self.send_calls, self.datagrams_sent)
    }

    /// Waits until the socket may have datagrams to read (cancel-safe).
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads the datagrams that are waiting, without waiting for more,
    /// until about `max` have been read (a batch can overshoot it), and
    /// hands each to `on` with its (canonical) source address. Returns how
    /// many were read. A receive error other than "nothing waiting" is
    /// logged and ends the round.
    pub fn receive(&mut self, max: usize, mut on: impl FnMut(&mut [u8], SocketAddr)) -> usize {
        let mut count = 0;
        while count < max {
            match self.receive_once(&mut on) {
                Ok(0) => break,
                Ok(n) => count += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => {
                    warn!(%error, "receiving from the UDP socket");
                    break;
                }
            }
        }
        count
    }

    /// One system call's worth of datagrams.
    fn receive_once(&mut self, on: &mut impl FnMut(&mut [u8], SocketAddr)) -> io::Result<usize> {
        let Some(state) = &self.state else {
            let (length, from) = self.socket.try_recv_from(&mut self.receive_buffer)?;
            on(&mut self.receive_buffer[..length], canonical(from));
            return Ok(1);
        };
        let messages = {
            let mut chunks = self.receive_buffer.chunks_mut(RECEIVE_BUFFER);
            let mut slices: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            let socket = &self.socket;
            let meta = &mut self.receive_meta;
            socket.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(socket), &mut slices, meta)
            })?
        };
        let mut count = 0;
        let buffers = self.receive_buffer.chunks_mut(RECEIVE_BUFFER);
        for (meta, buffer) in self.receive_meta.iter().zip(buffers).take(messages) {
            let length = meta.len.min(buffer.len());
            let stride = if meta.stride == 0 {
                length.max(1)
            } else {
                meta.stride
            };
            let from = canonical(meta.addr);
            for datagram in buffer[..length].chunks_mut(stride) {
                on(datagram, from);
                count += 1;
            }
        }
        Ok(count)
    }

    /// The buffer the next datagram is appended to (the endpoint's
    /// `poll_transmit` writes here); [`UdpIo::queue`] then marks it sent.
    pub fn send_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.send_buffer
    }

    /// Queues the last `size` bytes of the send buffer for `destination`.
    /// A `size` larger than what was appended since the last queued
    /// datagram is cut to that.
    pub fn queue(&mut self, destination: SocketAddr, size: usize) {
        let queued_end = self.queued.last().map_or(0, |q| q.start + q.size);
        let size = size.min(self.send_buffer.len().saturating_sub(queued_end));
        let start = self.send_buffer.len() - size;
        // Bytes appended but never queued are skipped.
        self.queued.push(Queued {
            destination: self.socket_address(destination),
            start,
            size,
        });
    }

    /// Whether enough is queued that it should go out now.
    pub fn queue_full(&self) -> bool {
        self.queued.len() >= 64 || self.send_buffer.len() >= MAX_GSO_BYTES
    }

    /// Sends every queued datagram (waiting while the socket's buffer is
    /// full) and empties the queue. A datagram the kernel refuses is
    /// logged and dropped, like a lost one.
    pub async fn send_queued(&mut self) {
        let mut index = 0;
        while index < self.queued.len() {
            let first = self.queued[index];
            let mut end = index + 1;
            let mut bytes = first.size;
            let segments = self.state.as_ref().map_or(1, |s| s.max_gso_segments());
            // A GSO run: one destination, equal sizes (the last may be
            // shorter), back to back in the buffer.
            while end < self.queued.len() && end - index < segments {
                let next = self.queued[end];
                let previous = self.queued[end - 1];
                if next.destination != first.destination
                    || next.size > first.size
                    || previous.size != first.size
                    || next.start != previous.start + previous.size
                    || bytes + next.size > MAX_GSO_BYTES
                {
                    break;
                }
                bytes += next.size;
                end += 1;
            }
            let contents = &self.send_buffer[first.start..first.start + bytes];
            let result = match &self.state {
                Some(state) => {
                    let transmit = Transmit {
                        destination: first.destination,
                        ecn: None,
                        contents,
                        segment_size: (end - index > 1).then_some(first.size),
                        src_ip: None,
                    };
                    let socket = &self.socket;
                    socket
                        .async_io(Interest::WRITABLE, || {
                            state.try_send(UdpSockRef::from(socket), &transmit)
                        })
                        .await
                }
                None => self
                    .socket
                    .send_to(contents, first.destination)
                    .await
                    .map(|_| ()),
            };
            self.send_calls += 1;
            match result {
                Ok(()) => self.datagrams_sent += (end - index) as u64,
                Err(error) => {
                    if error.raw_os_error() == Some(libc_emsgsize()) && !self.warned_too_large {
                        self.warned_too_large = true;
                        warn!(
                            %error,
                            size = first.size,
                            "a datagram is larger than the underlay's MTU and was dropped; \
                             raise the underlay MTU or lower interface.mtu"
                        );
                    }
                    debug!(%error, destination = %first.destination, datagrams = end - index, "sending datagrams")
                }
            }
            index = end;
        }
        self.queued.clear();
        self.send_buffer.clear();
    }

    /// An IPv4 address as the socket needs it (v4-mapped on a dual-stack
    /// IPv6 socket).
    fn socket_address(&self, address: SocketAddr) -> SocketAddr {
        match address.ip() {
            IpAddr::V4(v4) if self.is_ipv6 => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), address.port())
            }
            _ => address,
        }
    }
}

/// Asks for [`SOCKET_BUFFER`] bytes of send and receive buffer: past the
/// system's limits with `CAP_NET_ADMIN` (`SO_RCVBUFFORCE`), else up to
/// them. Logs what it got; a refusal costs speed, not correctness.
fn enlarge_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    let socket = socket2::SockRef::from(socket);
    debug!(
        receive = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "underlay socket buffers"
    );
}

/// Lets the kernel fragment datagrams larger than the path MTU again
/// (its default, which quinn-udp turns off). A refusal is logged: the
/// tunnel then works wherever the underlay carries 1500-byte packets.
fn allow_fragmentation(socket: &UdpSocket, is_ipv6: bool) {
    use rustix::net::sockopt::{
        set_ip_mtu_discover, set_ipv6_mtu_discover, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery,
    };
    if let Err(error) = set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::WANT) {
        if !is_ipv6 {
            warn!(%error, "cannot let the kernel fragment underlay datagrams (IPv4)");
        }
    }
    if is_ipv6 {
        if let Err(error) = set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::WANT) {
            warn!(%error, "cannot let the kernel fragment underlay datagrams (IPv6)");
        }
    }
}

/// `EMSGSIZE` ("message too long"), as nix names it.
fn libc_emsgsize() -> i32 {
    nix::errno::Errno::EMSGSIZE as i32
}

/// A source address with a v4-mapped IPv6 address turned back into IPv4.
fn canonical(from: SocketAddr) -> SocketAddr {
    SocketAddr::new(from.ip().to_canonical(), from.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(mode: Mode) -> (UdpIo, UdpIo) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (UdpIo::new(a, false, mode), UdpIo::new(b, false, mode))
    }

    /// Queues `sizes` datagrams (each filled with its index) from `a` to
    /// `b` and returns what `b` receives, in order.
    async fn send_and_receive(mode: Mode, sizes: &[usize]) -> Vec<Vec<u8>> {
        let (mut a, mut b) = pair(mode).await;
        let to = b.socket().local_addr().unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            a.send_buffer().extend(std::iter::repeat_n(i as u8, size));
            a.queue(to, size);
        }
        a.send_queued().await;
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < sizes.len() && std::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), b.readable()).await;
            b.receive(1000, |datagram, from| {
                assert_eq!(from, a.socket().local_addr().unwrap());
                got.push(datagram.to_vec());
            });
        }
        got
    }

    fn expected(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| vec![i as u8; size])
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn both_paths_deliver_every_datagram_in_order_with_its_boundaries() {
        // Equal sizes (one GSO run), a shorter last one, sizes that change.
        let sizes = [1200, 1200, 1200, 1200, 700, 1452, 60, 60, 1452, 1452, 1];
        for mode in [Mode::Batched, Mode::Plain] {
            let got = send_and_receive(mode, &sizes).await;
            assert_eq!(got, expected(&sizes), "{mode:?}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_run_of_equal_datagrams_takes_fewer_calls_when_batched() {
        let sizes = [1000; 40];
        let (mut a, b) = pair(Mode::Batched).await;
        let to = b.socket().local_addr().unwrap();
        for &size in &sizes {
            a.send_buffer().extend(std::iter::repeat_n(7u8, size));
            a.queue(to, size);
        }
        a.send_queued().await;
        let (calls, datagrams) = a.send_counts();
        assert_eq!(datagrams, 40);
        let gso = a.state.as_ref().map_or(1, |s| s.max_gso_segments());
        if gso > 1 {
            assert!(calls < 40, "{calls} calls for 40 datagrams with GSO");
        } else {
            assert_eq!(calls, 40);
        }
        let (mut plain, _) = pair(Mode::Plain).await;
        for &size in &sizes {
            plain.send_buffer().extend(std::iter::repeat_n(7u8, size));
            plain.queue(to, size);
        }
        plain.send_queued().await;
        assert_eq!(plain.send_counts(), (40, 40));
    }

    #[test]
    fn the_environment_switch_reads_off_and_nothing_else() {
        for off in ["off", "0", "no", "false", " OFF "] {
            assert!(is_off(off), "{off}");
        }
        for on in ["on", "1", "", "yes"] {
            assert!(!is_off(on), "{on}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_oversized_size_is_cut_to_what_was_appended() {
        let (mut a, mut b) = pair(Mode::Batched).await;
        let to = b.socket().local_addr().unwrap();
        a.send_buffer().extend_from_slice(&[1, 2, 3]);
        a.queue(to, 10);
        a.send_queued().await;
        let mut got = Vec::new();
        for _ in 0..20 {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), b.readable()).await;
            b.receive(10, |d, _| got.push(d.to_vec()));
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got, vec![vec![1, 2, 3]]);
    }
}
