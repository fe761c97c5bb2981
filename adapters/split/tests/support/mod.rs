//! Two split engines back to back, with smoltcp "kernel" stacks at each end
//! standing for the client and server hosts, and a lossless, in-order,
//! rate-limited, delayed channel standing for tgp between the engines.
//! Virtual time advances in 1 ms steps.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use tgp_proto::Timestamp;
use tgp_split::{SplitConfig, SplitEngine};

pub const CLIENT_V4: &str = "10.0.0.2";
pub const SERVER_V4: &str = "10.0.0.1";
pub const CLIENT_V6: &str = "fd00::2";
pub const SERVER_V6: &str = "fd00::1";

#[derive(Default)]
pub struct Wire {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1340;
        c
    }
}

/// A host's kernel: a plain smoltcp stack with its own addresses.
pub struct Host {
    pub iface: Interface,
    pub wire: Wire,
    pub sockets: SocketSet<'static>,
}

impl Host {
    fn new(v4: &str, v6: &str, seed: u64) -> Host {
        let mut wire = Wire::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut wire, Instant::from_millis(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(
                IpAddress::from(v4.parse::<IpAddr>().unwrap()),
                24,
            ))
            .unwrap();
            a.push(IpCidr::new(
                IpAddress::from(v6.parse::<IpAddr>().unwrap()),
                64,
            ))
            .unwrap();
        });
        Host {
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    pub fn new_socket(buffer: usize) -> tcp::Socket<'static> {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        )
    }

    pub fn listen(&mut self, port: u16) -> SocketHandle {
        let mut s = Self::new_socket(256 * 1024);
        s.listen(port).unwrap();
        self.sockets.add(s)
    }
}

/// A delayed, rate-limited, lossless in-order channel of stream messages.
pub struct Channel {
    pub in_flight: VecDeque<(Timestamp, u64, Vec<u8>)>,
    pub budget: f64,
    pub bytes: u64,
    pub messages: u64,
}

pub struct Pair {
    pub now: Timestamp,
    pub client: Host,
    pub server: Host,
    pub near: SplitEngine,
    pub far: SplitEngine,
    pub to_far: Channel,
    pub to_near: Channel,
    /// One-way delay of the channel.
    pub delay: Duration,
    /// Bytes per ms each way.
    pub rate: f64,
    pub max_len: usize,
    /// Whether the near engine covers new connections (class rules say split).
    pub covered: bool,
}

impl Pair {
    pub fn new() -> Pair {
        Self::with_config(SplitConfig::default(), SplitConfig::default())
    }

    pub fn with_config(near: SplitConfig, far: SplitConfig) -> Pair {
        let now = Timestamp::ZERO;
        let mut near = SplitEngine::new(now, SplitConfig { seed: 11, ..near });
        let mut far = SplitEngine::new(now, SplitConfig { seed: 12, ..far });
        near.set_path(20_000_000, Duration::from_millis(40));
        far.set_path(20_000_000, Duration::from_millis(40));
        let channel = || Channel {
            in_flight: VecDeque::new(),
            budget: 0.0,
            bytes: 0,
            messages: 0,
        };
        Pair {
            now,
            client: Host::new(CLIENT_V4, CLIENT_V6, 1),
            server: Host::new(SERVER_V4, SERVER_V6, 2),
            near,
            far,
            to_far: channel(),
            to_near: channel(),
            delay: Duration::from_millis(20),
            rate: 2500.0, // 20 Mbit/s
            max_len: 1300,
            covered: true,
        }
    }

    pub fn connect(&mut self, to: &str, port: u16, from_port: u16) -> SocketHandle {
        let ip: IpAddr = to.parse().unwrap();
        let mut s = Host::new_socket(256 * 1024);
        let local: IpAddr = if ip.is_ipv4() {
            CLIENT_V4.parse().unwrap()
        } else {
            CLIENT_V6.parse().unwrap()
        };
        s.connect(
            self.client.iface.context(),
            SocketAddr::new(ip, port),
            SocketAddr::new(local, from_port),
        )
        .unwrap();
        self.client.sockets.add(s)
    }

    fn at(&self) -> Instant {
        Instant::from_micros((self.now.as_nanos() / 1000) as i64)
    }

    /// One millisecond.
    pub fn step(&mut self) {
        let at = self.at();
        let now = self.now;
        // Hosts.
        self.client
            .iface
            .poll(at, &mut self.client.wire, &mut self.client.sockets);
        self.server
            .iface
            .poll(at, &mut self.server.wire, &mut self.server.sockets);
        while let Some(p) = self.client.wire.tx.pop_front() {
            if !self.near.handle_tun_packet(now, &p, self.covered) {
                panic!("near engine refused a packet from the client");
            }
        }
        while let Some(p) = self.server.wire.tx.pop_front() {
            // The far side's own rules do not cover the port: it still
            // takes the replies of streams it opened.
            let _ = self.far.handle_tun_packet(now, &p, false);
        }
        // Channel delivery.
        let delay = self.delay;
        for (channel, engine) in [
            (&mut self.to_far, &mut self.far),
            (&mut self.to_near, &mut self.near),
        ] {
            while channel
                .in_flight
                .front()
                .is_some_and(|(t, _, _)| *t + delay <= now)
            {
                let (_, flow, m) = channel.in_flight.pop_front().unwrap();
                engine.handle_stream_message(now, flow, &m, |_| true);
            }
        }
        // Timers.
        for engine in [&mut self.near, &mut self.far] {
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
            }
        }
        // Engines → channel, within the rate.
        let rate = self.rate;
        let max_len = self.max_len;
        for (channel, engine) in [
            (&mut self.to_far, &mut self.near),
            (&mut self.to_near, &mut self.far),
        ] {
            channel.budget = (channel.budget + rate).min(rate * 20.0);
            loop {
                let room = channel.budget.max(0.0) as usize;
                let Some((flow, m)) = engine.poll_stream_message(now, room, max_len) else {
                    break;
                };
                assert!(m.len() <= max_len, "message of {} > {max_len}", m.len());
                channel.budget -= m.len() as f64;
                channel.bytes += m.len() as u64;
                channel.messages += 1;
                channel.in_flight.push_back((now, flow, m));
            }
        }
        // Engines → hosts.
        while let Some(p) = self.near.poll_tun_packet(now) {
            assert!(p.len() <= 1340);
            self.client.wire.rx.push_back(p);
        }
        while let Some(p) = self.far.poll_tun_packet(now) {
            assert!(p.len() <= 1340);
            self.server.wire.rx.push_back(p);
        }
        self.now += Duration::from_millis(1);
    }

    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Steps until `done` holds, at most `ms` steps; returns whether it held.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        for _ in 0..ms {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Moves bytes between an application and a socket.
pub struct App {
    pub handle: SocketHandle,
    pub out: Vec<u8>,
    pub written: usize,
    pub received: Vec<u8>,
    pub close_after_write: bool,
    pub closed: bool,
    pub read_limit_per_step: usize,
}

impl App {
    pub fn new(handle: SocketHandle, out: Vec<u8>) -> App {
        App {
            handle,
            out,
            written: 0,
            received: Vec::new(),
            close_after_write: true,
            closed: false,
            read_limit_per_step: usize::MAX,
        }
    }

    /// Writes what fits, reads what came; true while more is to come.
    pub fn pump(&mut self, host: &mut Host) {
        let s = host.socket(self.handle);
        if s.can_send() && self.written < self.out.len() {
            self.written += s.send_slice(&self.out[self.written..]).unwrap_or(0);
        }
        if self.written == self.out.len() && self.close_after_write && !self.closed && s.may_send()
        {
            s.close();
            self.closed = true;
        }
        let mut budget = self.read_limit_per_step;
        let mut buf = [0u8; 4096];
        while budget > 0 && s.can_recv() {
            let want = budget.min(buf.len());
            match s.recv_slice(&mut buf[..want]) {
                Ok(n) if n > 0 => {
                    self.received.extend_from_slice(&buf[..n]);
                    budget -= n;
                }
                _ => break,
            }
        }
    }

    pub fn finished(&self, host: &mut Host) -> bool {
        let s = host.socket(self.handle);
        self.written == self.out.len() && !s.may_recv() && !s.can_recv()
    }
}
