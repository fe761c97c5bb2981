//! The deterministic network simulator: several sans-IO endpoints, a
//! virtual clock and a seeded link model per direction. No real time, no
//! sockets, no threads; the same seed gives the same run, bit for bit.
//!
//! This crate owns the [`Node`] trait that endpoints implement, the
//! [`Simulation`] event loop, the link model ([`link`]: [`LinkConfig`],
//! [`LossModel`], [`LinkStats`]; pure, and also used by netem's userspace
//! impairer), two small reference nodes ([`nodes::Pinger`],
//! [`nodes::Sink`]), the data-plane node ([`data_plane`]), a Linux-like TCP
//! model ([`tcp`]) and the nodes that run it over a link or through a tgp
//! data plane ([`tcp_flow`]).
//!
//! ```
//! use std::time::Duration;
//! use tgp_sim::{nodes::{Pinger, Sink}, LinkConfig, Simulation};
//! use tgp_proto::Timestamp;
//!
//! let mut sim = Simulation::new(7);
//! let a_addr = "10.0.0.1:1000".parse().unwrap();
//! let b_addr = "10.0.0.2:2000".parse().unwrap();
//! let a = sim.add_node(a_addr, Pinger::new(b_addr, 100, Duration::from_millis(10), 64));
//! let b = sim.add_node(b_addr, Sink::default());
//! let link = LinkConfig::ideal(Duration::from_millis(50)).with_random_loss(0.1);
//! sim.connect(a, b, link.clone(), link);
//! sim.run_until(Timestamp::from_duration(Duration::from_secs(2)));
//! assert!(sim.node::<Sink>(b).arrivals().len() > 70);
//! ```
//!
//! # Event loop
//! Datagram arrivals sit in a binary heap ordered by (time, sequence
//! number); each node's current timeout sits, with a sequence number from
//! the same counter, in an ordered set that is updated in place whenever
//! the node's `poll_timeout` changes (so no stale timers pile up). The next
//! step is the earlier of the two by (time, sequence number), so
//! simultaneous events run in the order they were scheduled. After a node handles a datagram or a timeout, its
//! [`Node::poll_transmit`] is drained and every datagram goes through the
//! transmit filter and onto its route at the current time; then its
//! [`Node::poll_timeout`] is read again. A timeout in the past is treated
//! as "now". [`Node::handle_timeout`] is only called when the virtual time
//! has reached the node's timeout. Each step costs O(log n) in the number of
//! pending arrivals and nodes; nothing scans all nodes or all packets.

pub mod data_plane;
pub mod link;
pub mod nodes;
pub mod tcp;
pub mod tcp_flow;

pub use link::{LinkConfig, LinkStats, LossModel};

use link::{link_rng, Fate, Link};
use std::any::Any;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::Timestamp;

/// What the simulator needs from an endpoint under test. Every call passes
/// the virtual time; an endpoint never reads a clock.
///
/// `Any` is a supertrait so that endpoints of different types can share one
/// [`Simulation`] and be found again with [`Simulation::node`].
pub trait Node: Any {
    /// A datagram from `from` arrived.
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]);
    /// The next datagram to put on the wire, with its destination, if any.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)>;
    /// When the endpoint next wants [`Node::handle_timeout`] called.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// The time given by [`Node::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Timestamp);
}

/// Index of a node in a [`Simulation`], from [`Simulation::add_node`].
pub type NodeId = usize;

/// Index of a link in a [`Simulation`], from [`Simulation::add_link`].
pub type LinkId = usize;

/// A datagram a node emitted, as shown to the transmit filter.
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
    /// Global count of datagrams emitted before this one (the first is 0).
    pub index: u64,
    /// When it was emitted.
    pub time: Timestamp,
    /// The sending node's address.
    pub from: SocketAddr,
    /// The destination address.
    pub to: SocketAddr,
    /// The datagram.
    pub datagram: &'a [u8],
}

/// What the transmit filter decides for a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Put it on its route as usual.
    Pass,
    /// Drop it before the link (counted by [`Simulation::filtered_drops`]).
    Drop,
}

/// Default for [`Simulation::set_max_steps_per_instant`].
pub const DEFAULT_MAX_STEPS_PER_INSTANT: u64 = 1_000_000;

/// Object-safe access to a node as `Any`, for downcasting (works without
/// relying on trait upcasting).
trait NodeObject: Node {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn type_name(&self) -> &'static str;
}

impl<T: Node> NodeObject for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// How late a node's timer fires. A daemon's timer is not exact: its
/// runtime rounds a wake-up up to a tick (tokio's timer wheel: 1 ms), and a
/// busy host runs the process later still. Datagram arrivals are not
/// delayed. Set with [`Simulation::set_wake_lateness`]; by default timers
/// fire exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WakeLateness {
    /// A wake-up rounds up to the next multiple of this (zero: no rounding).
    pub tick: Duration,
    /// Probability that a wake-up is delayed further.
    pub busy_probability: f64,
    /// That further delay, uniform in `0..=busy_max`.
    pub busy_max: Duration,
}

impl WakeLateness {
    /// A tokio daemon on a shared two-core host: 1 ms ticks, and one
    /// wake-up in five a further 0–5 ms late. A guess that reproduces what
    /// the daemon showed before its pacer caught up with late wake-ups
    /// (paced at about 0.8 of its rate at 20 Mbit/s).
    pub fn busy_host() -> Self {
        WakeLateness {
            tick: Duration::from_millis(1),
            busy_probability: 0.2,
            busy_max: Duration::from_millis(5),
        }
    }

    fn delay(&self, requested: Timestamp, rng: &mut rand_chacha::ChaCha8Rng) -> Timestamp {
        let tick = u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX);
        let mut fire = if tick > 0 {
            Timestamp::from_nanos(requested.as_nanos().div_ceil(tick).saturating_mul(tick))
        } else {
            requested
        };
        if link::chance(rng, self.busy_probability) {
            let max = u64::try_from(self.busy_max.as_nanos()).unwrap_or(u64::MAX);
            fire += Duration::from_nanos(link::uniform_up_to(rng, max));
        }
        fire
    }
}

struct NodeSlot {
    address: SocketAddr,
    node: Box<dyn NodeObject>,
    /// The node's last answer to `poll_timeout` (clamped to the time it was
    /// asked), when it fires (later by the node's wake lateness), and the
    /// sequence number it was armed with: `(fires, seq)` is its key in
    /// `Simulation::timers`.
    timer: Option<(Timestamp, Timestamp, u64)>,
    /// The node's timer lateness and the draws for it.
    lateness: Option<(WakeLateness, rand_chacha::ChaCha8Rng)>,
    /// Touched through `node_mut` (or new): drain and re-poll before running.
    dirty: bool,
}

/// A datagram on its way to a node.
struct Delivery {
    to: NodeId,
    from: SocketAddr,
    link: Option<LinkId>,
    datagram: Vec<u8>,
}

struct Scheduled {
    time: Timestamp,
    seq: u64,
    delivery: Delivery,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

type TransmitFilter = Box<dyn FnMut(&Transmit) -> Verdict>;

/// A deterministic simulation of nodes connected by links.
///
/// Build it with [`Simulation::new`], [`Simulation::add_node`] and
/// [`Simulation::connect`] (or [`Simulation::add_link`] and
/// [`Simulation::route`]), then drive it with [`Simulation::run_until`] or
/// [`Simulation::run_while`]. Virtual time starts at [`Timestamp::ZERO`].
pub struct Simulation {
    seed: u64,
    now: Timestamp,
    next_seq: u64,
    events: BinaryHeap<Scheduled>,
    /// Armed node timeouts: (time, sequence number, node).
    timers: BTreeSet<(Timestamp, u64, NodeId)>,
    nodes: Vec<NodeSlot>,
    by_address: HashMap<SocketAddr, NodeId>,
    links: Vec<Link>,
    routes: HashMap<(NodeId, NodeId), LinkId>,
    filter: Option<TransmitFilter>,
    dirty: Vec<NodeId>,
    transmitted: u64,
    filtered: u64,
    unrouted: u64,
    steps_at_instant: u64,
    max_steps_per_instant: u64,
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("links", &self.links.len())
            .field("pending_events", &self.pending_events())
            .field("transmitted", &self.transmitted)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// An empty simulation at time zero. Every random draw derives from
    /// `seed`.
    pub fn new(seed: u64) -> Self {
        Simulation {
            seed,
            now: Timestamp::ZERO,
            next_seq: 0,
            events: BinaryHeap::new(),
            timers: BTreeSet::new(),
            nodes: Vec::new(),
            by_address: HashMap::new(),
            links: Vec::new(),
            routes: HashMap::new(),
            filter: None,
            dirty: Vec::new(),
            transmitted: 0,
            filtered: 0,
            unrouted: 0,
            steps_at_instant: 0,
            max_steps_per_instant: DEFAULT_MAX_STEPS_PER_INSTANT,
        }
    }

    /// The seed given to [`Simulation::new`].
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a node reachable at `address`. Its first `poll_transmit` and
    /// `poll_timeout` are read when the simulation next runs.
    ///
    /// # Panics
    /// If another node already has `address`.
    pub fn add_node(&mut self, address: SocketAddr, node: impl Node) -> NodeId {
        let id = self.nodes.len();
        if let Some(other) = self.by_address.insert(address, id) {
            panic!("Simulation::add_node: address {address} already belongs to node {other}");
        }
        self.nodes.push(NodeSlot {
            address,
            node: Box::new(node),
            timer: None,
            lateness: None,
            dirty: true,
        });
        self.dirty.push(id);
        id
    }

    /// Makes node `id`'s timers fire late, as `lateness` says (from its own
    /// random stream, derived from the seed and the node id).
    pub fn set_wake_lateness(&mut self, id: NodeId, lateness: WakeLateness) {
        let rng = link_rng(self.seed, (1 << 32) | id as u64);
        self.nodes[id].lateness = Some((lateness, rng));
    }

    /// Adds a link. It carries nothing until [`Simulation::route`] sends
    /// traffic over it; several routes may share one link (a shared
    /// bottleneck: one queue, one rate, one RNG stream).
    ///
    /// The link's random draws come from its own stream, derived from the
    /// seed and the link id, so adding a link does not change the others.
    ///
    /// # Panics
    /// If a probability in `config` is outside 0.0 ..= 1.0 or the rate is 0.
    pub fn add_link(&mut self, config: LinkConfig) -> LinkId {
        let id = self.links.len();
        self.links
            .push(Link::new(config, link_rng(self.seed, id as u64)));
        id
    }

    /// Datagrams from `from` addressed to `to`'s address go over `link`
    /// (replacing any earlier route for that pair).
    ///
    /// # Panics
    /// On an unknown node or link.
    pub fn route(&mut self, from: NodeId, to: NodeId, link: LinkId) {
        self.check_node(from, "route");
        self.check_node(to, "route");
        self.check_link(link, "route");
        self.routes.insert((from, to), link);
    }

    /// Adds a link each way between `a` and `b` and routes over them;
    /// returns (a→b link, b→a link).
    pub fn connect(
        &mut self,
        a: NodeId,
        b: NodeId,
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
    ) -> (LinkId, LinkId) {
        let ab = self.add_link(a_to_b);
        let ba = self.add_link(b_to_a);
        self.route(a, b, ab);
        self.route(b, a, ba);
        (ab, ba)
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Number of nodes added.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of links added.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The address of node `id`.
    ///
    /// # Panics
    /// On an unknown node.
    pub fn address(&self, id: NodeId) -> SocketAddr {
        self.check_node(id, "address");
        self.nodes[id].address
    }

    /// Moves node `id` to `new_address` from now on (a NAT rebinding or a
    /// roaming client): datagrams it sends carry the new address, datagrams
    /// sent to the old address are unrouted, datagrams already in flight
    /// still arrive. Routes are between nodes, so they stay.
    ///
    /// # Panics
    /// On an unknown node or if another node has `new_address`.
    pub fn rebind(&mut self, id: NodeId, new_address: SocketAddr) {
        self.check_node(id, "rebind");
        if let Some(&other) = self.by_address.get(&new_address) {
            assert!(
                other == id,
                "Simulation::rebind: address {new_address} already belongs to node {other}"
            );
            return;
        }
        let old = std::mem::replace(&mut self.nodes[id].address, new_address);
        self.by_address.remove(&old);
        self.by_address.insert(new_address, id);
    }

    /// The node at `address`, if any.
    pub fn node_id(&self, address: SocketAddr) -> Option<NodeId> {
        self.by_address.get(&address).copied()
    }

    /// Node `id` as its concrete type.
    ///
    /// # Panics
    /// On an unknown node or if the node is not a `T`.
    pub fn node<T: Node>(&self, id: NodeId) -> &T {
        self.check_node(id, "node");
        let slot = &self.nodes[id];
        let actual = slot.node.type_name();
        slot.node.as_any().downcast_ref::<T>().unwrap_or_else(|| {
            panic!(
                "Simulation::node: node {id} is a {actual}, not a {}",
                std::any::type_name::<T>()
            )
        })
    }

    /// Node `id` as its concrete type, mutably. Whatever is done to it (for
    /// example starting a connection) takes effect when the simulation next
    /// runs: its `poll_transmit` is drained and its `poll_timeout` read
    /// again at the current time. Call `run_until(sim.now())` to do that
    /// without advancing time.
    ///
    /// # Panics
    /// On an unknown node or if the node is not a `T`.
    pub fn node_mut<T: Node>(&mut self, id: NodeId) -> &mut T {
        self.check_node(id, "node_mut");
        let slot = &mut self.nodes[id];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id);
        }
        let actual = slot.node.type_name();
        slot.node
            .as_any_mut()
            .downcast_mut::<T>()
            .unwrap_or_else(|| {
                panic!(
                    "Simulation::node_mut: node {id} is a {actual}, not a {}",
                    std::any::type_name::<T>()
                )
            })
    }

    /// Runs every event up to and including `end`, then sets the clock to
    /// `end` (never backwards).
    pub fn run_until(&mut self, end: Timestamp) {
        self.run_while(end, |_| true);
    }

    /// Runs for `duration` of virtual time from now.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs events up to and including `end` while `keep_going` holds. It is
    /// checked before the first event and after each one. Returns `true` if
    /// it stopped because `keep_going` returned `false` (the clock then
    /// stays at that event's time), `false` if it reached `end` (the clock
    /// is then set to `end`, never backwards).
    pub fn run_while(
        &mut self,
        end: Timestamp,
        mut keep_going: impl FnMut(&Simulation) -> bool,
    ) -> bool {
        self.flush_dirty();
        loop {
            if !keep_going(self) {
                return true;
            }
            if !self.step(end) {
                break;
            }
        }
        if end > self.now {
            self.now = end;
            self.steps_at_instant = 0;
        }
        false
    }

    /// The time of the next pending event (arrival or node timer), if any.
    /// A node touched through [`Simulation::node_mut`] is not accounted for
    /// until the simulation runs.
    pub fn next_event_time(&self) -> Option<Timestamp> {
        self.next_event().map(|(time, _, _)| time)
    }

    /// Number of pending events: datagrams in flight plus armed node
    /// timeouts.
    pub fn pending_events(&self) -> usize {
        self.events.len() + self.timers.len()
    }

    /// Sets how many steps (events handled plus datagrams emitted) may
    /// happen without the virtual time moving before the simulation panics
    /// as stuck; [`DEFAULT_MAX_STEPS_PER_INSTANT`] by default. A node that
    /// returns a `poll_timeout` in the past without making progress, or
    /// whose `poll_transmit` never returns `None`, hits this limit.
    pub fn set_max_steps_per_instant(&mut self, limit: u64) {
        self.max_steps_per_instant = limit;
    }

    /// Installs `filter`, which sees every datagram a node emits before it
    /// reaches a route and can drop it. Replaces any earlier filter.
    pub fn set_transmit_filter(&mut self, filter: impl FnMut(&Transmit) -> Verdict + 'static) {
        self.filter = Some(Box::new(filter));
    }

    /// Removes the transmit filter.
    pub fn clear_transmit_filter(&mut self) {
        self.filter = None;
    }

    /// Delivers `datagram` to node `to` at `at` (or now, if `at` is in the
    /// past) as if sent from `from`, bypassing links and the transmit
    /// filter (it does not count in [`Simulation::transmitted`]). Datagrams
    /// injected for the same time arrive in the order they were injected.
    /// For replay tests.
    ///
    /// # Panics
    /// On an unknown node.
    pub fn inject(&mut self, at: Timestamp, from: SocketAddr, to: NodeId, datagram: Vec<u8>) {
        self.check_node(to, "inject");
        let at = at.max(self.now);
        self.schedule(
            at,
            Delivery {
                to,
                from,
                link: None,
                datagram,
            },
        );
    }

    /// What happened on `link` so far.
    ///
    /// # Panics
    /// On an unknown link.
    pub fn link_stats(&self, link: LinkId) -> &LinkStats {
        self.check_link(link, "link_stats");
        self.links[link].stats()
    }

    /// The configuration of `link`.
    ///
    /// # Panics
    /// On an unknown link.
    pub fn link_config(&self, link: LinkId) -> &LinkConfig {
        self.check_link(link, "link_config");
        self.links[link].config()
    }

    /// Changes the configuration of `link` from now on (for example to
    /// make the loss worse mid-run). The queue, the Gilbert-Elliott state,
    /// the RNG stream and the statistics are kept; datagrams already on the
    /// link keep the fate decided when they entered it.
    ///
    /// # Panics
    /// On an unknown link or an invalid configuration.
    pub fn set_link_config(&mut self, link: LinkId, config: LinkConfig) {
        self.check_link(link, "set_link_config");
        self.links[link].set_config(config);
    }

    /// Datagrams sent to an address with no node, or with no route from the
    /// sender to that node.
    pub fn unrouted_drops(&self) -> u64 {
        self.unrouted
    }

    /// Datagrams dropped by the transmit filter.
    pub fn filtered_drops(&self) -> u64 {
        self.filtered
    }

    /// Datagrams emitted by all nodes so far (the next [`Transmit::index`]).
    pub fn transmitted(&self) -> u64 {
        self.transmitted
    }

    fn check_node(&self, id: NodeId, what: &str) {
        assert!(
            id < self.nodes.len(),
            "Simulation::{what}: no node {id} (there are {})",
            self.nodes.len()
        );
    }

    fn check_link(&self, id: LinkId, what: &str) {
        assert!(
            id < self.links.len(),
            "Simulation::{what}: no link {id} (there are {})",
            self.links.len()
        );
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn schedule(&mut self, time: Timestamp, delivery: Delivery) {
        let seq = self.take_seq();
        self.events.push(Scheduled {
            time,
            seq,
            delivery,
        });
    }

    /// The earliest pending event: (time, sequence number, is a timer).
    fn next_event(&self) -> Option<(Timestamp, u64, bool)> {
        let arrival = self.events.peek().map(|e| (e.time, e.seq, false));
        let timer = self.timers.first().map(|&(t, seq, _)| (t, seq, true));
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Counts a step at the current instant; panics if a node spins.
    fn count_step(&mut self, node: NodeId) {
        self.steps_at_instant += 1;
        if self.steps_at_instant > self.max_steps_per_instant {
            panic!(
                "Simulation stuck: more than {} steps at {} without the \
                 virtual time moving (last node {node}, a {}); a node probably keeps returning \
                 a poll_timeout that is not in the future without making progress, or never \
                 stops returning datagrams from poll_transmit",
                self.max_steps_per_instant,
                self.now,
                self.nodes[node].node.type_name()
            );
        }
    }

    fn advance_to(&mut self, time: Timestamp) {
        if time > self.now {
            self.now = time;
            self.steps_at_instant = 0;
        }
    }

    /// Lets nodes touched from outside (new, or through `node_mut`) send and
    /// re-arm their timers.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.nodes[id].dirty = false;
            self.after_interaction(id);
        }
        // Keep the allocation.
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Processes the next event at or before `end`; `false` if there is
    /// none.
    fn step(&mut self, end: Timestamp) -> bool {
        let Some((time, _, is_timer)) = self.next_event() else {
            return false;
        };
        if time > end {
            return false;
        }
        self.advance_to(time);
        if is_timer {
            let (_, _, node) = self.timers.pop_first().expect("peeked timer");
            self.count_step(node);
            let slot = &mut self.nodes[node];
            slot.timer = None;
            slot.node.handle_timeout(self.now);
            self.after_interaction(node);
        } else {
            let Scheduled { delivery, .. } = self.events.pop().expect("peeked arrival");
            let Delivery {
                to,
                from,
                link,
                datagram,
            } = delivery;
            self.count_step(to);
            if let Some(link) = link {
                self.links[link].record_delivery(datagram.len());
            }
            self.nodes[to]
                .node
                .handle_datagram(self.now, from, &datagram);
            self.after_interaction(to);
        }
        true
    }

    /// Drains the node's datagrams onto their routes, then re-reads its
    /// timeout.
    fn after_interaction(&mut self, id: NodeId) {
        while let Some((to, datagram)) = self.nodes[id].node.poll_transmit(self.now) {
            self.count_step(id);
            self.send(id, to, datagram);
        }
        self.arm_timer(id);
    }

    /// Re-reads the node's timeout (a past one counts as now) and updates
    /// its entry in the timer set if it changed.
    fn arm_timer(&mut self, id: NodeId) {
        let now = self.now;
        let timeout = self.nodes[id].node.poll_timeout().map(|t| t.max(now));
        let old = self.nodes[id].timer;
        if old.map(|(t, _, _)| t) == timeout {
            return;
        }
        if let Some((_, fires, seq)) = old {
            self.timers.remove(&(fires, seq, id));
        }
        let new = timeout.map(|t| {
            let fires = match &mut self.nodes[id].lateness {
                Some((lateness, rng)) => lateness.delay(t, rng),
                None => t,
            };
            (t, fires, self.take_seq())
        });
        if let Some((_, fires, seq)) = new {
            self.timers.insert((fires, seq, id));
        }
        self.nodes[id].timer = new;
    }

    fn send(&mut self, from_id: NodeId, to: SocketAddr, datagram: Vec<u8>) {
        let index = self.transmitted;
        self.transmitted += 1;
        let from = self.nodes[from_id].address;
        if let Some(filter) = &mut self.filter {
            let verdict = filter(&Transmit {
                index,
                time: self.now,
                from,
                to,
                datagram: &datagram,
            });
            if verdict == Verdict::Drop {
                self.filtered += 1;
                return;
            }
        }
        let Some(&to_id) = self.by_address.get(&to) else {
            self.unrouted += 1;
            return;
        };
        let Some(&link) = self.routes.get(&(from_id, to_id)) else {
            self.unrouted += 1;
            return;
        };
        match self.links[link].transmit(self.now, datagram.len()) {
            Fate::QueueFull | Fate::Lost => {}
            Fate::Arrives { at, duplicate } => {
                if duplicate {
                    self.schedule(
                        at,
                        Delivery {
                            to: to_id,
                            from,
                            link: Some(link),
                            datagram: datagram.clone(),
                        },
                    );
                }
                self.schedule(
                    at,
                    Delivery {
                        to: to_id,
                        from,
                        link: Some(link),
                        datagram,
                    },
                );
            }
        }
    }
}
