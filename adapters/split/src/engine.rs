//! [`SplitEngine`]: one peer's split-mode connections. It owns a smoltcp
//! interface (medium IP, any_ip) over packet queues, the TCP sockets that
//! terminate the local kernel's connections, and the streams that carry
//! their bytes to the peer's engine.
//!
//! Two roles, one stream type:
//! - **near** (the client's side): a SYN from the local kernel gets a
//!   listener for exactly its destination address and port before the
//!   stack sees it, so the SYN-ACK leaves at once; when the handshake
//!   completes, an OPEN carries the 4-tuple and the first bytes.
//! - **far** (the server's side): an OPEN makes a socket that connects from
//!   the client's address and port to the destination, through the TUN;
//!   bytes wait (within the credit granted) until it is connected.
//!
//! Bytes move socket → message only while the stream has credit from the
//! peer and the session has room, and message → socket only as fast as the
//! local TCP takes them; credit is extended as bytes enter the local
//! socket. So a slow reader fills its socket's buffers, then the stream's
//! window, then the sending kernel's window, and nothing grows without
//! bound.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, IpListenEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address,
    Ipv6Packet, TcpPacket,
};
use tgp_proto::Timestamp;

use crate::device::Queues;
use crate::wire::{
    open_header_len, parse_stream_flow, stream_flow, Message, ResetReason, DATA_HEADER_LEN,
    INITIAL_CREDIT, LANES,
};

/// Settings of a [`SplitEngine`].
#[derive(Clone, Debug)]
pub struct SplitConfig {
    /// IP MTU of the TUN: the largest packet the stack emits, and the MSS
    /// it announces (MTU − 40 for IPv4, − 60 for IPv6).
    pub mtu: usize,
    /// Most streams at once; beyond it a new SYN is answered with RST and
    /// an OPEN with RST(cap).
    pub max_streams: usize,
    /// Receive and send buffer of each local TCP socket, bytes (the local
    /// hop is sub-millisecond, so this need not cover the tunnel's BDP).
    pub socket_buffer: usize,
    /// Largest stream window (credit beyond what entered the local
    /// socket), bytes. The window is [`WINDOW_BDP_FACTOR`] × the session's
    /// bandwidth-delay product, at least [`INITIAL_CREDIT`], at most this.
    pub max_window: u64,
    /// Most bytes all streams together may be owed by the peer (credit
    /// granted beyond what entered the local sockets): what the engine
    /// buffers at worst, beyond each stream's [`INITIAL_CREDIT`]. Grants
    /// shrink when it is reached.
    pub max_buffered: u64,
    /// A far-side connect that gets no answer for this long resets the
    /// stream (RST(timeout)).
    pub connect_timeout: Duration,
    /// A stream with no bytes or messages moving for this long is reset
    /// (RST(idle)).
    pub idle_timeout: Duration,
    /// A stream whose both directions are finished, but whose local socket
    /// still waits for the last ACK, is dropped after this long.
    pub close_linger: Duration,
    /// Seeds the stack's initial sequence numbers; pass random bytes.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            mtu: 1340,
            max_streams: 4096,
            socket_buffer: 128 * 1024,
            max_window: 16 * 1024 * 1024,
            max_buffered: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            close_linger: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// Counts per [`ResetReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetCounts {
    counts: [u64; ResetReason::ALL.len() + 1],
}

impl ResetCounts {
    fn index(reason: ResetReason) -> usize {
        ResetReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(ResetReason::ALL.len())
    }

    fn add(&mut self, reason: ResetReason) {
        self.counts[Self::index(reason)] += 1;
    }

    /// How many for `reason` (every unknown code counts as one `Other`).
    pub fn get(&self, reason: ResetReason) -> u64 {
        self.counts[Self::index(reason)]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (name, count) for every reason with a count above zero.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        ResetReason::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .chain(std::iter::once((
                "other",
                self.counts[ResetReason::ALL.len()],
            )))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Counters and gauges of an engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitStats {
    /// Streams open now (either role).
    pub open_streams: usize,
    /// Local TCP sockets in the stack now (streams, and sockets still
    /// sending their RST).
    pub sockets: usize,
    /// Connections from the local kernel accepted (near side).
    pub accepted: u64,
    /// OPENs received from the peer (far side).
    pub opened_by_peer: u64,
    /// Far-side connects that reached ESTABLISHED.
    pub connected: u64,
    /// Stream bytes sent to the peer (payload of OPEN and DATA).
    pub bytes_to_peer: u64,
    /// Stream bytes received from the peer.
    pub bytes_from_peer: u64,
    /// Bytes received from the peer that wait for a local socket now.
    pub buffered_bytes: usize,
    /// Resets this engine sent to the peer, by reason.
    pub resets_sent: ResetCounts,
    /// Resets this engine took from the peer (RST messages, and
    /// `reset_all` counted under its reason), by reason.
    pub resets_received: ResetCounts,
    /// New local connections refused because `max_streams` were open.
    pub refused_at_cap: u64,
    /// Messages that did not parse, or broke the protocol.
    pub malformed: u64,
    /// Messages for a stream this engine no longer has (normal after a
    /// reset).
    pub stale: u64,
    /// The stream window in force, bytes.
    pub window: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamKey {
    /// Whether this engine opened the stream (it is near for it).
    opened_here: bool,
    id: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Near,
    Far,
}

struct Stream {
    role: Role,
    lane: u16,
    handle: SocketHandle,
    /// The client's address (source of the original SYN).
    client: SocketAddr,
    /// The destination.
    server: SocketAddr,
    opened_at: Timestamp,
    last_activity: Timestamp,
    /// The local socket reached ESTABLISHED (or beyond).
    established: bool,
    /// Near: the OPEN went out. Far: always true.
    open_sent: bool,
    // Socket → peer.
    sent: u64,
    send_limit: u64,
    fin_sent: bool,
    in_active: bool,
    deficit: usize,
    // Peer → socket.
    pending: VecDeque<u8>,
    received: u64,
    written: u64,
    granted: u64,
    fin_received: bool,
    closed_tx: bool,
    /// The local TCP sent its FIN (the socket was seen in a state after
    /// one).
    local_fin: bool,
}

impl Stream {
    fn both_finished(&self) -> bool {
        self.fin_sent && self.fin_received
    }
}

/// The stream window in bandwidth-delay products of the session. A
/// stream's credit comes back only after its bytes were delivered *in
/// order* and written into the far socket; under loss, a lost segment holds
/// the ones behind it until tgp repairs it (typically another round trip),
/// and the credit itself may wait for a repair on the way back. Measured on
/// 20 Mbit/s, 100 ms RTT with iperf3: at 10 % loss, 2 × BDP gave 10 Mbit/s,
/// 8 × BDP 15.4, 16 × BDP 15.0; so 8 (the window only fills when the
/// reader is slower than the tunnel).
pub const WINDOW_BDP_FACTOR: f64 = 8.0;

/// Ceiling on lanes searched for a free one per new stream.
const LANE_SEARCH: usize = 64;

/// One peer's split-mode connections. See the module documentation.
pub struct SplitEngine {
    config: SplitConfig,
    iface: Interface,
    device: Queues,
    sockets: SocketSet<'static>,
    streams: HashMap<StreamKey, Stream>,
    /// (socket's local endpoint, socket's remote endpoint) → stream.
    by_tuple: HashMap<(SocketAddr, SocketAddr), StreamKey>,
    /// Aborted sockets: removed after the next poll sent their RST.
    doomed: Vec<SocketHandle>,
    next_id: u32,
    lane_use: Vec<u32>,
    lane_cursor: usize,
    /// Ready messages that go before any data (CREDIT, FIN, RST).
    control: VecDeque<(u64, Vec<u8>)>,
    /// Near streams whose OPEN is due.
    opens: VecDeque<StreamKey>,
    /// Streams with bytes (or a FIN) to send, in deficit round robin order.
    active: VecDeque<StreamKey>,
    head_credited: bool,
    window: u64,
    /// Credit granted to the peer beyond what entered the local sockets,
    /// over all streams (recounted each service pass).
    owed: u64,
    stats: SplitStats,
    dirty: bool,
    now: Timestamp,
    next_idle_check: Option<Timestamp>,
    scratch: Vec<StreamKey>,
}

fn instant(now: Timestamp) -> Instant {
    Instant::from_micros(i64::try_from(now.as_nanos() / 1000).unwrap_or(i64::MAX))
}

fn timestamp(instant: Instant) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(instant.total_micros()).unwrap_or(0) * 1000)
}

/// The 4-tuple and flags of a TCP packet.
struct TcpFacts {
    src: SocketAddr,
    dst: SocketAddr,
    syn: bool,
    ack: bool,
}

fn tcp_facts(packet: &[u8]) -> Option<TcpFacts> {
    let (src_ip, dst_ip, payload): (IpAddr, IpAddr, &[u8]) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let header = usize::from(ip.header_len());
            let total = usize::from(ip.total_len());
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                packet.get(header..total)?,
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let total = 40 + usize::from(ip.payload_len());
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                packet.get(40..total)?,
            )
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some(TcpFacts {
        src: SocketAddr::new(src_ip, tcp.src_port()),
        dst: SocketAddr::new(dst_ip, tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
    })
}

/// Whether the local socket got the other side's FIN.
fn fin_in(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}

impl SplitEngine {
    /// A new engine with no streams, at `now`.
    pub fn new(now: Timestamp, config: SplitConfig) -> Self {
        let mut device = Queues {
            mtu: config.mtu,
            ..Queues::default()
        };
        let mut iface_config = Config::new(HardwareAddress::Ip);
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, &mut device, instant(now));
        // Every address is ours (streams terminate for any destination and
        // connect from any client address), and every destination is
        // reachable straight through the TUN.
        iface.set_any_ip(true);
        // Route lookups need some gateway; on medium IP it is never used.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(192, 0, 2, 1));
        let _ = iface
            .routes_mut()
            .add_default_ipv6_route(Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        SplitEngine {
            window: INITIAL_CREDIT,
            stats: SplitStats {
                window: INITIAL_CREDIT,
                ..SplitStats::default()
            },
            config,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            streams: HashMap::new(),
            by_tuple: HashMap::new(),
            doomed: Vec::new(),
            next_id: 1,
            lane_use: vec![0; LANES as usize],
            lane_cursor: 0,
            control: VecDeque::new(),
            opens: VecDeque::new(),
            active: VecDeque::new(),
            head_credited: false,
            owed: 0,
            dirty: false,
            now,
            next_idle_check: None,
            scratch: Vec::new(),
        }
    }

    /// Tells the engine the session's pacing rate and round-trip time; the
    /// stream window becomes [`WINDOW_BDP_FACTOR`] × their product, within
    /// [`INITIAL_CREDIT`]..=`max_window`. Affects credit granted from now on.
    pub fn set_path(&mut self, rate_bits_per_second: u64, rtt: Duration) {
        let bdp = rate_bits_per_second as f64 / 8.0 * rtt.as_secs_f64();
        let window = (WINDOW_BDP_FACTOR * bdp) as u64;
        self.window = window.clamp(INITIAL_CREDIT, self.config.max_window.max(INITIAL_CREDIT));
        self.stats.window = self.window;
    }

    /// Whether this packet belongs to a connection the engine holds.
    pub fn owns(&self, packet: &[u8]) -> bool {
        tcp_facts(packet).is_some_and(|f| self.by_tuple.contains_key(&(f.dst, f.src)))
    }

    /// A TCP packet the local kernel routed into the tunnel. `covered`: the
    /// class rules put new connections of this packet in split mode.
    ///
    /// Returns true when the engine took the packet: it belongs to one of
    /// its connections, or `covered` holds (a SYN opens a connection; any
    /// other packet of no known connection is answered with RST, as a host
    /// would). False: not a split packet; carry it in segment mode.
    pub fn handle_tun_packet(&mut self, now: Timestamp, packet: &[u8], covered: bool) -> bool {
        self.now = now;
        let Some(facts) = tcp_facts(packet) else {
            return false;
        };
        let tuple = (facts.dst, facts.src);
        let new_syn = facts.syn && !facts.ack;
        if let Some(key) = self.by_tuple.get(&tuple).copied() {
            if new_syn && self.replaceable(key) {
                // 4-tuple reuse: the old connection is over here (TIME-WAIT
                // or closing); a fresh SYN starts a new one.
                self.drop_stream_quietly(key);
            } else {
                self.device.rx.push_back(packet.to_vec());
                self.dirty = true;
                return true;
            }
        }
        if !covered {
            return false;
        }
        if new_syn {
            self.accept(now, &facts, packet);
        } else {
            // No connection: the stack answers with RST (never to a RST).
            self.device.rx.push_back(packet.to_vec());
            self.dirty = true;
        }
        true
    }

    /// Whether a fresh SYN may replace the stream on its 4-tuple.
    fn replaceable(&mut self, key: StreamKey) -> bool {
        let Some(stream) = self.streams.get(&key) else {
            return true;
        };
        let state = self.sockets.get::<tcp::Socket>(stream.handle).state();
        !matches!(
            state,
            State::Listen | State::SynReceived | State::SynSent | State::Established
        ) || stream.both_finished()
    }

    fn accept(&mut self, now: Timestamp, facts: &TcpFacts, packet: &[u8]) {
        // Let the stack see everything queued before this SYN first, so
        // that the new listener can only take this SYN.
        if self.dirty {
            self.pump(now);
        }
        if self.streams.len() >= self.config.max_streams {
            self.stats.refused_at_cap += 1;
            self.device.rx.push_back(packet.to_vec());
            self.pump(now);
            return;
        }
        let mut socket = self.new_socket();
        if socket
            .listen(IpListenEndpoint {
                addr: Some(facts.dst.ip().into()),
                port: facts.dst.port(),
            })
            .is_err()
        {
            self.device.rx.push_back(packet.to_vec());
            self.pump(now);
            return;
        }
        let handle = self.sockets.add(socket);
        let id = self.allocate_id();
        let lane = self.allocate_lane();
        let key = StreamKey {
            opened_here: true,
            id,
        };
        let window = self.window;
        self.insert_stream(
            key,
            Stream {
                role: Role::Near,
                lane,
                handle,
                client: facts.src,
                server: facts.dst,
                opened_at: now,
                last_activity: now,
                established: false,
                open_sent: false,
                sent: 0,
                send_limit: INITIAL_CREDIT,
                fin_sent: false,
                in_active: false,
                deficit: 0,
                pending: VecDeque::new(),
                received: 0,
                written: 0,
                granted: window,
                fin_received: false,
                closed_tx: false,
                local_fin: false,
            },
        );
        self.stats.accepted += 1;
        self.device.rx.push_back(packet.to_vec());
        self.pump(now);
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        let size = self.config.socket_buffer.max(1024);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; size]),
            tcp::SocketBuffer::new(vec![0u8; size]),
        );
        // The local hop is sub-millisecond and loss-free: answer every
        // segment at once, and never hold small writes back.
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket
    }

    fn insert_stream(&mut self, key: StreamKey, stream: Stream) {
        self.by_tuple.insert(
            match stream.role {
                Role::Near => (stream.server, stream.client),
                Role::Far => (stream.client, stream.server),
            },
            key,
        );
        self.streams.insert(key, stream);
        self.stats.open_streams = self.streams.len();
        self.stats.sockets = self.streams.len() + self.doomed.len();
        if self.next_idle_check.is_none() {
            self.next_idle_check = Some(self.now + Duration::from_secs(1));
        }
    }

    fn allocate_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let key = StreamKey {
                opened_here: true,
                id,
            };
            if !self.streams.contains_key(&key) {
                return id;
            }
        }
    }

    /// A lane no stream of ours uses, if one is near the cursor; otherwise
    /// the next lane anyway (it then carries two streams, in order).
    fn allocate_lane(&mut self) -> u16 {
        let lanes = self.lane_use.len();
        let mut chosen = self.lane_cursor % lanes;
        for step in 0..LANE_SEARCH.min(lanes) {
            let lane = (self.lane_cursor + step) % lanes;
            if self.lane_use[lane] == 0 {
                chosen = lane;
                break;
            }
        }
        self.lane_cursor = (chosen + 1) % lanes;
        self.lane_use[chosen] += 1;
        chosen as u16
    }

    /// A stream message that arrived from the peer on tgp flow `flow`.
    /// `allow_source` says whether the peer may use a client address (the
    /// daemon checks its allowed IPs): an OPEN from any other address is
    /// refused with RST(forbidden).
    pub fn handle_stream_message(
        &mut self,
        now: Timestamp,
        flow: u64,
        bytes: &[u8],
        allow_source: impl Fn(IpAddr) -> bool,
    ) {
        self.now = now;
        let Some((lane, sender_opened)) = parse_stream_flow(flow) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(message) = Message::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let key = StreamKey {
            opened_here: !sender_opened,
            id: message.id(),
        };
        match message {
            Message::Open {
                src,
                dst,
                credit,
                data,
                ..
            } => {
                if !sender_opened || self.streams.contains_key(&key) {
                    self.stats.malformed += 1;
                    return;
                }
                self.open_far(now, lane, key, src, dst, credit, data, allow_source);
            }
            Message::Data { data, .. } => {
                let Some(stream) = self.streams.get_mut(&key) else {
                    self.stats.stale += 1;
                    return;
                };
                stream.received += data.len() as u64;
                if stream.fin_received || stream.received > stream.granted {
                    self.stats.malformed += 1;
                    self.reset_stream(key, ResetReason::Protocol, true);
                    return;
                }
                stream.pending.extend(data);
                stream.last_activity = now;
                self.stats.bytes_from_peer += data.len() as u64;
                self.stats.buffered_bytes += data.len();
                self.dirty = true;
            }
            Message::Fin { .. } => {
                let Some(stream) = self.streams.get_mut(&key) else {
                    self.stats.stale += 1;
                    return;
                };
                stream.fin_received = true;
                stream.last_activity = now;
                self.dirty = true;
            }
            Message::Rst { reason, .. } => {
                if !self.streams.contains_key(&key) {
                    self.stats.stale += 1;
                    return;
                }
                self.stats.resets_received.add(reason);
                self.reset_stream(key, reason, false);
            }
            Message::Credit { limit, .. } => {
                let Some(stream) = self.streams.get_mut(&key) else {
                    self.stats.stale += 1;
                    return;
                };
                stream.send_limit = stream.send_limit.max(limit);
                self.dirty = true;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_far(
        &mut self,
        now: Timestamp,
        lane: u16,
        key: StreamKey,
        src: SocketAddr,
        dst: SocketAddr,
        credit: u64,
        data: &[u8],
        allow_source: impl Fn(IpAddr) -> bool,
    ) {
        self.stats.opened_by_peer += 1;
        let refuse = |engine: &mut SplitEngine, reason: ResetReason| {
            engine.send_rst(lane, key, reason);
        };
        if !allow_source(src.ip()) {
            refuse(self, ResetReason::Forbidden);
            return;
        }
        if self.streams.len() >= self.config.max_streams {
            self.stats.refused_at_cap += 1;
            refuse(self, ResetReason::Cap);
            return;
        }
        if data.len() as u64 > INITIAL_CREDIT {
            self.stats.malformed += 1;
            refuse(self, ResetReason::Protocol);
            return;
        }
        if let Some(old) = self.by_tuple.get(&(src, dst)).copied() {
            // The client reused a 4-tuple whose old stream lingers here.
            self.drop_stream_quietly(old);
        }
        if self.dirty {
            self.pump(now);
        }
        let mut socket = self.new_socket();
        socket.set_timeout(Some(self.config.connect_timeout.into()));
        if socket.connect(self.iface.context(), dst, src).is_err() {
            refuse(self, ResetReason::Refused);
            return;
        }
        let handle = self.sockets.add(socket);
        self.stats.bytes_from_peer += data.len() as u64;
        self.stats.buffered_bytes += data.len();
        self.insert_stream(
            key,
            Stream {
                role: Role::Far,
                lane,
                handle,
                client: src,
                server: dst,
                opened_at: now,
                last_activity: now,
                established: false,
                open_sent: true,
                sent: 0,
                send_limit: credit,
                fin_sent: false,
                in_active: false,
                deficit: 0,
                pending: data.iter().copied().collect(),
                received: data.len() as u64,
                written: 0,
                granted: INITIAL_CREDIT,
                fin_received: false,
                closed_tx: false,
                local_fin: false,
            },
        );
        self.dirty = true;
    }

    fn send_rst(&mut self, lane: u16, key: StreamKey, reason: ResetReason) {
        let message = Message::Rst { id: key.id, reason }.to_vec();
        self.control
            .push_back((stream_flow(lane, key.opened_here), message));
        self.stats.resets_sent.add(reason);
    }

    /// Ends a stream at once: RST to the local socket, and (`tell_peer`)
    /// RST(`reason`) to the peer.
    fn reset_stream(&mut self, key: StreamKey, reason: ResetReason, tell_peer: bool) {
        let Some(stream) = self.remove_stream(key) else {
            return;
        };
        if tell_peer {
            self.send_rst(stream.lane, key, reason);
        }
        self.sockets.get_mut::<tcp::Socket>(stream.handle).abort();
        self.doomed.push(stream.handle);
        self.stats.sockets = self.streams.len() + self.doomed.len();
        self.dirty = true;
    }

    /// Forgets a stream and its socket without a word to the local side
    /// (a new connection took its 4-tuple); the peer gets RST(reset) if it
    /// may still hold the stream.
    fn drop_stream_quietly(&mut self, key: StreamKey) {
        if let Some(stream) = self.remove_stream(key) {
            if !stream.both_finished() {
                self.send_rst(stream.lane, key, ResetReason::Reset);
            }
            self.sockets.remove(stream.handle);
        }
    }

    /// Removes a stream from every table (its socket stays in the set).
    fn remove_stream(&mut self, key: StreamKey) -> Option<Stream> {
        let stream = self.streams.remove(&key)?;
        let tuple = match stream.role {
            Role::Near => (stream.server, stream.client),
            Role::Far => (stream.client, stream.server),
        };
        if self.by_tuple.get(&tuple) == Some(&key) {
            self.by_tuple.remove(&tuple);
        }
        if key.opened_here {
            let lane = usize::from(stream.lane) % self.lane_use.len();
            self.lane_use[lane] = self.lane_use[lane].saturating_sub(1);
        }
        self.stats.buffered_bytes = self
            .stats
            .buffered_bytes
            .saturating_sub(stream.pending.len());
        self.stats.open_streams = self.streams.len();
        if self.streams.is_empty() {
            self.next_idle_check = None;
        }
        Some(stream)
    }

    /// A stream that ended normally: its socket goes.
    fn finish_stream(&mut self, key: StreamKey) {
        if let Some(stream) = self.remove_stream(key) {
            self.sockets.remove(stream.handle);
            self.stats.sockets = self.streams.len() + self.doomed.len();
        }
    }

    /// Runs the stack until it has nothing more to do now, moving bytes
    /// between sockets and streams in between.
    fn pump(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        let at = instant(self.now);
        for _ in 0..16 {
            self.iface.poll(at, &mut self.device, &mut self.sockets);
            for handle in self.doomed.drain(..) {
                self.sockets.remove(handle);
            }
            let again = self.service();
            if !again && self.device.rx.is_empty() {
                break;
            }
        }
        self.stats.sockets = self.streams.len() + self.doomed.len();
        self.dirty = false;
    }

    /// One pass over every stream; true when a socket changed so that the
    /// stack must run again.
    fn service(&mut self) -> bool {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        keys.extend(self.streams.keys().copied());
        self.owed = self
            .streams
            .values()
            .map(|s| s.granted.saturating_sub(s.written))
            .sum();
        let mut again = false;
        for key in &keys {
            again |= self.service_stream(*key);
        }
        self.scratch = keys;
        again || !self.doomed.is_empty()
    }

    fn service_stream(&mut self, key: StreamKey) -> bool {
        let now = self.now;
        let window = self.window;
        let connect_timeout = self.config.connect_timeout;
        let Some(stream) = self.streams.get_mut(&key) else {
            return false;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(stream.handle);
        let state = socket.state();
        let mut again = false;
        stream.local_fin |= fin_in(state);

        if !stream.established {
            match state {
                State::SynSent | State::SynReceived => return false,
                State::Listen | State::Closed => {
                    match stream.role {
                        // The local kernel reset the handshake (a listener
                        // back in LISTEN), or it never took: nothing was
                        // opened at the peer.
                        Role::Near => self.finish_stream(key),
                        Role::Far => {
                            let waited = now - stream.opened_at;
                            let reason = if waited + Duration::from_millis(100) >= connect_timeout {
                                ResetReason::Timeout
                            } else {
                                ResetReason::Refused
                            };
                            let lane = stream.lane;
                            self.finish_stream(key);
                            self.send_rst(lane, key, reason);
                        }
                    }
                    return false;
                }
                _ => {
                    stream.established = true;
                    stream.last_activity = now;
                    match stream.role {
                        Role::Near => self.opens.push_back(key),
                        Role::Far => {
                            socket.set_timeout(None);
                            self.stats.connected += 1;
                        }
                    }
                }
            }
        }

        // Peer → socket.
        if !stream.pending.is_empty() && socket.may_send() {
            let (a, b) = stream.pending.as_slices();
            let mut n = socket.send_slice(a).unwrap_or(0);
            if n == a.len() && !b.is_empty() {
                n += socket.send_slice(b).unwrap_or(0);
            }
            if n > 0 {
                stream.pending.drain(..n);
                stream.written += n as u64;
                stream.last_activity = now;
                self.stats.buffered_bytes = self.stats.buffered_bytes.saturating_sub(n);
                self.owed = self.owed.saturating_sub(n as u64);
                again = true;
            }
        }
        if stream.fin_received && stream.pending.is_empty() && !stream.closed_tx {
            socket.close();
            stream.closed_tx = true;
            again = true;
        }
        // Credit: the peer may send a window beyond what the socket took,
        // as far as the engine-wide budget allows.
        if !stream.fin_received {
            let owed = stream.granted.saturating_sub(stream.written);
            let budget_left = self.config.max_buffered.saturating_sub(self.owed);
            let want = stream.written + window.min(owed + budget_left).max(INITIAL_CREDIT);
            if want > stream.granted && want - stream.granted >= (window / 8).max(16 * 1024) {
                self.owed += want - stream.granted;
                stream.granted = want;
                let message = Message::Credit {
                    id: key.id,
                    limit: want,
                }
                .to_vec();
                self.control
                    .push_back((stream_flow(stream.lane, key.opened_here), message));
            }
        }
        // Socket → peer: schedule when there is something to send.
        if stream.open_sent && !stream.fin_sent && !stream.in_active {
            let readable = socket.recv_queue() > 0 && stream.sent < stream.send_limit;
            let fin = stream.local_fin && socket.recv_queue() == 0;
            if readable || fin {
                stream.in_active = true;
                self.active.push_back(key);
            }
        }
        // The local end is gone. Gracefully when both FINs and the last ACK
        // went through (LAST-ACK → CLOSED): what the socket still holds is
        // readable, and the stream ends once it has been sent.
        let graceful = stream.local_fin && stream.closed_tx;
        match state {
            State::Closed if graceful && stream.fin_sent => self.finish_stream(key),
            State::Closed if graceful => {}
            State::Closed => {
                // Closed without both FINs: the local TCP reset it (or
                // smoltcp gave up on it).
                let lane = stream.lane;
                self.finish_stream(key);
                self.send_rst(lane, key, ResetReason::Reset);
            }
            State::TimeWait if stream.both_finished() => {
                // Our last ACK went out with the poll that got here; the
                // 10 s TIME-WAIT would only keep a socket in every scan.
                self.finish_stream(key);
            }
            _ => {}
        }
        again
    }

    /// The next stream message to send to the peer, if any: control
    /// messages first (CREDIT, FIN, RST; a few bytes each, whatever
    /// `room`), then OPENs, then data from the streams in deficit round
    /// robin. A data message is at most `max_len` bytes, and only handed
    /// out when it fits in `room` (pass `Endpoint::stream_room`) as a full
    /// message or a stream's whole remainder. Returns the tgp flow id to
    /// send it under. If sending fails, give it back with
    /// [`SplitEngine::requeue`].
    pub fn poll_stream_message(
        &mut self,
        now: Timestamp,
        room: usize,
        max_len: usize,
    ) -> Option<(u64, Vec<u8>)> {
        self.now = self.now.max(now);
        if self.dirty {
            self.pump(now);
        }
        if let Some(message) = self.control.pop_front() {
            return Some(message);
        }
        while let Some(key) = self.opens.pop_front() {
            if let Some(message) = self.open_message(key, room, max_len) {
                return Some(message);
            }
        }
        self.next_data(room, max_len)
    }

    fn open_message(
        &mut self,
        key: StreamKey,
        room: usize,
        max_len: usize,
    ) -> Option<(u64, Vec<u8>)> {
        let stream = self.streams.get_mut(&key)?;
        if stream.open_sent {
            return None;
        }
        let header = open_header_len(stream.server.is_ipv6());
        let socket = self.sockets.get_mut::<tcp::Socket>(stream.handle);
        let budget = (max_len.saturating_sub(header))
            .min(room.saturating_sub(header))
            .min(usize::try_from(stream.send_limit - stream.sent).unwrap_or(usize::MAX))
            .min(socket.recv_queue());
        let mut out = Message::Open {
            id: key.id,
            src: stream.client,
            dst: stream.server,
            credit: stream.granted,
            data: &[],
        }
        .to_vec();
        out.resize(header + budget, 0);
        let n = socket.recv_slice(&mut out[header..]).unwrap_or(0);
        out.truncate(header + n);
        stream.open_sent = true;
        stream.sent += n as u64;
        stream.last_activity = self.now;
        self.stats.bytes_to_peer += n as u64;
        self.dirty = true;
        Some((stream_flow(stream.lane, true), out))
    }

    fn next_data(&mut self, room: usize, max_len: usize) -> Option<(u64, Vec<u8>)> {
        let max_payload = max_len.saturating_sub(DATA_HEADER_LEN);
        if max_payload == 0 {
            return None;
        }
        let mut visits = 2 * self.active.len() + 2;
        while visits > 0 {
            visits -= 1;
            let key = *self.active.front()?;
            let Some(stream) = self.streams.get_mut(&key) else {
                self.active.pop_front();
                self.head_credited = false;
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket>(stream.handle);
            let credit = usize::try_from(stream.send_limit - stream.sent).unwrap_or(usize::MAX);
            let sendable = socket.recv_queue().min(credit);
            if sendable == 0 {
                // Done for now: a FIN if the local side finished, else off
                // the list until the service pass puts it back.
                self.active.pop_front();
                self.head_credited = false;
                stream.in_active = false;
                stream.deficit = 0;
                if stream.local_fin && socket.recv_queue() == 0 && !stream.fin_sent {
                    stream.fin_sent = true;
                    stream.last_activity = self.now;
                    let flow = stream_flow(stream.lane, key.opened_here);
                    if stream.both_finished() {
                        self.dirty = true;
                    }
                    return Some((flow, Message::Fin { id: key.id }.to_vec()));
                }
                continue;
            }
            let chunk = sendable.min(max_payload);
            if room < DATA_HEADER_LEN + chunk {
                return None;
            }
            if !self.head_credited {
                stream.deficit += max_payload;
                self.head_credited = true;
            }
            if chunk > stream.deficit {
                self.active.rotate_left(1);
                self.head_credited = false;
                continue;
            }
            let mut out = Vec::with_capacity(DATA_HEADER_LEN + chunk);
            Message::Data {
                id: key.id,
                data: &[],
            }
            .emit(&mut out);
            out.resize(DATA_HEADER_LEN + chunk, 0);
            let n = socket.recv_slice(&mut out[DATA_HEADER_LEN..]).unwrap_or(0);
            out.truncate(DATA_HEADER_LEN + n);
            stream.deficit -= n.min(stream.deficit);
            stream.sent += n as u64;
            stream.last_activity = self.now;
            self.stats.bytes_to_peer += n as u64;
            self.dirty = true;
            if n == 0 {
                continue;
            }
            return Some((stream_flow(stream.lane, key.opened_here), out));
        }
        None
    }

    /// Gives back a message that [`SplitEngine::poll_stream_message`]
    /// returned and the session refused; it goes out first next time.
    pub fn requeue(&mut self, flow: u64, message: Vec<u8>) {
        self.control.push_front((flow, message));
    }

    /// The next IP packet to write to the TUN.
    pub fn poll_tun_packet(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        if self.dirty {
            self.pump(now);
        }
        self.device.tx.pop_front()
    }

    /// When [`SplitEngine::handle_timeout`] should next run (the stack's
    /// retransmission and other timers, the idle check).
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        if self.dirty {
            return Some(self.now);
        }
        let stack = self
            .iface
            .poll_at(instant(self.now), &self.sockets)
            .map(|at| timestamp(at).max(self.now));
        [stack, self.next_idle_check].into_iter().flatten().min()
    }

    /// Time has reached a point [`SplitEngine::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        if self.next_idle_check.is_some_and(|t| t <= now) {
            self.next_idle_check = Some(now + Duration::from_secs(1));
            let idle: Vec<StreamKey> = self
                .streams
                .iter()
                .filter(|(_, s)| {
                    let limit = if s.both_finished() {
                        self.config.close_linger
                    } else {
                        self.config.idle_timeout
                    };
                    now - s.last_activity >= limit
                })
                .map(|(k, _)| *k)
                .collect();
            for key in idle {
                let finished = self.streams.get(&key).is_some_and(|s| s.both_finished());
                if finished {
                    self.finish_stream(key);
                } else {
                    self.reset_stream(key, ResetReason::Idle, true);
                }
            }
        }
        self.pump(now);
    }

    /// Resets every stream: the local sockets get RST, nothing goes to the
    /// peer (call it when the peer restarted and lost its streams).
    /// Counted in `resets_received` under `reason`.
    pub fn reset_all(&mut self, now: Timestamp, reason: ResetReason) {
        let keys: Vec<StreamKey> = self.streams.keys().copied().collect();
        for key in keys {
            self.stats.resets_received.add(reason);
            self.reset_stream(key, reason, false);
        }
        self.control.clear();
        self.opens.clear();
        self.active.clear();
        self.head_credited = false;
        self.pump(now);
    }

    /// One line per stream (role, tuple, socket state, progress), for
    /// debugging.
    pub fn describe_streams(&self) -> Vec<String> {
        self.streams
            .iter()
            .map(|(k, s)| {
                let socket = self.sockets.get::<tcp::Socket>(s.handle);
                format!(
                    "{:?} id={} {:?} {} -> {} state={} sent={}/{} fin_sent={} received={} written={} fin_received={} closed_tx={} local_fin={} rxq={} txq={}",
                    s.role, k.id, k.opened_here, s.client, s.server, socket.state(), s.sent, s.send_limit,
                    s.fin_sent, s.received, s.written, s.fin_received, s.closed_tx, s.local_fin,
                    socket.recv_queue(), socket.send_queue()
                )
            })
            .collect()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &SplitStats {
        &self.stats
    }
}
