//! Admission of handshake work from sources that have proven nothing:
//! what stands between a stranger's packet and a signature check, and
//! what the endpoint may send to an address before it has proven that it
//! receives there.
//!
//! A handshake packet carrying a commitment that no handshake of its peer
//! holds would cost an Ed25519 verification (and, as responder, an X25519
//! key and a signature of our own). Before any of that the endpoint does
//! the cheap checks (layout, keys, parameters, clock skew, freshness
//! against the newest commitment seen from that peer, a cache of
//! commitments whose signature failed), then asks [`Admission::check`]:
//!
//! - **Under load** — when the endpoint-wide budget of signature checks is
//!   more than half spent — a source must first prove its address, as with
//!   WireGuard's cookie reply and QUIC's Retry: the responder answers with
//!   a 66-byte retry packet ([`crate::wire::retry`]) carrying a cookie,
//!   `HMAC-SHA256(secret, address)[..16]`, and does nothing else. The
//!   initiator staples the cookie (artifact kind 7) to its next packets to
//!   that address. The secret is drawn from the endpoint's CSPRNG and
//!   replaced every [`AdmissionConfig::cookie_lifetime`]; cookies of the
//!   current and the previous secret are accepted. The retry echoes 16
//!   bytes of the commitment's hash, so only someone who saw the packet
//!   can make the initiator staple a cookie. Retries are sent at most at
//!   [`AdmissionConfig::retries_per_second`] and are smaller than what
//!   they answer: they amplify nothing.
//! - **Per source** (IP address), a token bucket limits the signature
//!   checks a source can cause; a table of at most [`SOURCE_TABLE_LIMIT`]
//!   sources (buckets that are full again are forgotten first).
//! - **In all**, a token bucket of [`AdmissionConfig::verifications_per_second`]
//!   bounds the CPU handshakes from strangers can take, whatever the
//!   number of sources.
//!
//! The amplification limit ([`PathBudget`]): until an address proves that
//! it receives (a proof of level D or higher from it, which links to our
//! fresh commitment), a handshake sends it at most
//! [`AdmissionConfig::amplification_factor`] (3, as QUIC) times the bytes
//! that arrived from it for that peer, and the peer's address does not move
//! there.

use crate::crypto::Hash;
use crate::time::Timestamp;
use crate::wire::retry::{RetryPacket, COOKIE_LEN, RETRY_LEN};
use rand_core::RngCore;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Most sources whose handshake rate is tracked at once.
pub const SOURCE_TABLE_LIMIT: usize = 4096;
/// Most commitments remembered as carrying a bad signature.
const REJECTED_LIMIT: usize = 4096;
/// Most retry packets waiting to be sent.
const RETRY_QUEUE_LIMIT: usize = 64;
/// Most addresses a handshake tries at once before one proves itself.
pub const MAX_PATHS: usize = 4;

/// Limits on handshake work for strangers.
#[derive(Clone, Debug)]
pub struct AdmissionConfig {
    /// Signature checks of new commitments per second, endpoint-wide.
    pub verifications_per_second: f64,
    /// How many may come at once; cookies are required once more than
    /// half of this is spent.
    pub verification_burst: f64,
    /// Signature checks per second one source IP address may cause.
    pub per_source_per_second: f64,
    /// How many at once.
    pub per_source_burst: f64,
    /// Retry packets sent per second, at most.
    pub retries_per_second: f64,
    /// Bytes sent to an address that has not proven it receives, per byte
    /// received from it.
    pub amplification_factor: u64,
    /// How long a cookie secret is used (cookies stay valid for up to
    /// twice this).
    pub cookie_lifetime: Duration,
    /// Require a cookie for every new commitment, loaded or not (tests).
    pub always_require_cookie: bool,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            verifications_per_second: 200.0,
            verification_burst: 32.0,
            per_source_per_second: 5.0,
            per_source_burst: 10.0,
            retries_per_second: 2000.0,
            amplification_factor: 3,
            cookie_lifetime: Duration::from_secs(120),
            always_require_cookie: false,
        }
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    fn full(now: Timestamp, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Timestamp, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
    }

    fn take(&mut self, now: Timestamp, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What [`Admission::check`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead with the signature check.
    Verify,
    /// Under load, and no valid cookie: send a retry instead.
    Retry,
    /// Over the per-source or the endpoint-wide budget: drop.
    Limited,
}

/// The endpoint's admission state.
pub(crate) struct Admission {
    config: AdmissionConfig,
    /// Current and previous cookie secrets.
    secrets: [[u8; 32]; 2],
    secret_since: Timestamp,
    global: Bucket,
    retry_budget: Bucket,
    sources: HashMap<IpAddr, Bucket>,
    rejected: HashSet<Hash>,
    retries: VecDeque<(SocketAddr, [u8; RETRY_LEN])>,
}

impl Admission {
    pub(crate) fn new(now: Timestamp, config: AdmissionConfig, rng: &mut impl RngCore) -> Self {
        let mut secrets = [[0u8; 32]; 2];
        rng.fill_bytes(&mut secrets[0]);
        rng.fill_bytes(&mut secrets[1]);
        Admission {
            global: Bucket::full(now, config.verification_burst),
            retry_budget: Bucket::full(now, config.retries_per_second.min(256.0)),
            config,
            secrets,
            secret_since: now,
            sources: HashMap::new(),
            rejected: HashSet::new(),
            retries: VecDeque::new(),
        }
    }

    /// The amplification factor for unvalidated addresses.
    pub(crate) fn amplification_factor(&self) -> u64 {
        self.config.amplification_factor
    }

    /// Replaces the cookie secret when it has been used its lifetime.
    pub(crate) fn rotate(&mut self, now: Timestamp, rng: &mut impl RngCore) {
        if now.saturating_duration_since(self.secret_since) >= self.config.cookie_lifetime {
            self.secrets[1] = self.secrets[0];
            rng.fill_bytes(&mut self.secrets[0]);
            self.secret_since = now;
        }
    }

    fn cookie_with(secret: &[u8; 32], address: SocketAddr) -> [u8; COOKIE_LEN] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let ip = match address.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut message = [0u8; 18];
        message[..16].copy_from_slice(&ip.octets());
        message[16..].copy_from_slice(&address.port().to_be_bytes());
        let tag = ring::hmac::sign(&key, &message);
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        cookie
    }

    fn cookie_is_valid(&self, address: SocketAddr, cookie: &[u8]) -> bool {
        self.secrets.iter().any(|secret| {
            let expected = Self::cookie_with(secret, address);
            // Constant time, like any MAC comparison.
            cookie.len() == COOKIE_LEN
                && expected
                    .iter()
                    .zip(cookie)
                    .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                    == 0
        })
    }

    /// Whether the endpoint-wide budget is more than half spent (or
    /// cookies are always required).
    pub(crate) fn under_load(&mut self, now: Timestamp) -> bool {
        let (rate, burst) = (
            self.config.verifications_per_second,
            self.config.verification_burst,
        );
        self.global.refill(now, rate, burst);
        self.config.always_require_cookie || self.global.tokens < burst / 2.0
    }

    /// May a new commitment from `from` (stapling `cookie`, if any) have
    /// its signature checked now?
    pub(crate) fn check(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        cookie: Option<&[u8]>,
    ) -> Verdict {
        if self.under_load(now) && !cookie.is_some_and(|c| self.cookie_is_valid(from, c)) {
            return Verdict::Retry;
        }
        let (rate, burst) = (
            self.config.per_source_per_second,
            self.config.per_source_burst,
        );
        if !self.sources.contains_key(&from.ip()) && self.sources.len() >= SOURCE_TABLE_LIMIT {
            // Forget the sources whose buckets are full again: they are
            // as good as new. If none is, start over (under such a flood
            // the endpoint-wide budget and the cookies hold the line).
            self.sources.retain(|_, bucket| {
                bucket.refill(now, rate, burst);
                bucket.tokens < burst
            });
            if self.sources.len() >= SOURCE_TABLE_LIMIT {
                self.sources.clear();
            }
        }
        let source = self
            .sources
            .entry(from.ip())
            .or_insert_with(|| Bucket::full(now, burst));
        if !source.take(now, rate, burst) {
            return Verdict::Limited;
        }
        let (rate, burst) = (
            self.config.verifications_per_second,
            self.config.verification_burst,
        );
        if !self.global.take(now, rate, burst) {
            return Verdict::Limited;
        }
        Verdict::Verify
    }

    /// Queues a retry packet for `to`, answering the commitment `hash` on
    /// behalf of `responder`; returns whether one was queued (retries are
    /// rate-limited and their queue bounded).
    pub(crate) fn queue_retry(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        responder: [u8; 32],
        hash: &Hash,
    ) -> bool {
        let rate = self.config.retries_per_second;
        if self.retries.len() >= RETRY_QUEUE_LIMIT
            || !self.retry_budget.take(now, rate, rate.min(256.0))
        {
            return false;
        }
        let mut echo = [0u8; 16];
        echo.copy_from_slice(&hash[..16]);
        let packet = RetryPacket {
            responder,
            echo,
            cookie: Self::cookie_with(&self.secrets[0], to),
        };
        let mut bytes = Vec::with_capacity(RETRY_LEN);
        packet.encode(&mut bytes);
        let mut fixed = [0u8; RETRY_LEN];
        fixed.copy_from_slice(&bytes);
        self.retries.push_back((to, fixed));
        true
    }

    /// The next retry packet to send.
    pub(crate) fn poll_retry(&mut self) -> Option<(SocketAddr, [u8; RETRY_LEN])> {
        self.retries.pop_front()
    }

    /// Whether this commitment's signature already failed.
    pub(crate) fn is_rejected(&self, hash: &Hash) -> bool {
        self.rejected.contains(hash)
    }

    /// Remembers a commitment whose signature failed.
    pub(crate) fn reject(&mut self, hash: Hash) {
        if self.rejected.len() >= REJECTED_LIMIT {
            self.rejected.clear();
        }
        self.rejected.insert(hash);
    }
}

/// One address a handshake sends to, and what it may send there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PathBudget {
    pub address: SocketAddr,
    /// Bytes of this peer's handshake packets received from it.
    pub received: u64,
    /// Bytes of handshake packets sent to it.
    pub sent: u64,
    /// It proved that it receives (or is the peer's known address).
    pub validated: bool,
}

/// The addresses a handshake floods: the known or proven one, and until
/// one proves itself, the sources of new commitments, each within its
/// amplification budget.
#[derive(Clone, Debug, Default)]
pub(crate) struct HandshakePaths {
    paths: Vec<PathBudget>,
    turn: usize,
}

impl HandshakePaths {
    /// Floods go to `address` only.
    pub(crate) fn reset_to(&mut self, address: SocketAddr, validated: bool) {
        self.paths.clear();
        self.paths.push(PathBudget {
            address,
            received: 0,
            sent: 0,
            validated,
        });
        self.turn = 0;
    }

    /// A handshake packet of the peer arrived from `address`.
    pub(crate) fn on_received(&mut self, address: SocketAddr, bytes: usize) {
        if let Some(path) = self.paths.iter_mut().find(|p| p.address == address) {
            path.received = path.received.saturating_add(bytes as u64);
        }
    }

    /// A new commitment came from `address`: try it too (evicting the
    /// oldest unproven address beyond [`MAX_PATHS`]). Its first packet's
    /// `bytes` count for its budget.
    pub(crate) fn add_candidate(&mut self, address: SocketAddr, validated: bool, bytes: usize) {
        if self.paths.iter().any(|p| p.address == address) {
            return;
        }
        if self.paths.len() >= MAX_PATHS {
            if let Some(oldest) = self.paths.iter().position(|p| !p.validated) {
                self.paths.remove(oldest);
            } else {
                return;
            }
        }
        self.paths.push(PathBudget {
            address,
            received: bytes as u64,
            sent: 0,
            validated,
        });
    }

    /// `address` proved that it receives: floods go there alone.
    pub(crate) fn validate(&mut self, address: SocketAddr) {
        let received = self
            .paths
            .iter()
            .find(|p| p.address == address)
            .map_or(0, |p| p.received);
        self.paths.clear();
        self.paths.push(PathBudget {
            address,
            received,
            sent: 0,
            validated: true,
        });
        self.turn = 0;
    }

    /// Where the next handshake packet of `size` bytes goes: the paths
    /// take turns, skipping those whose budget it would exceed. Charges
    /// the chosen path.
    pub(crate) fn pick(&mut self, size: usize, factor: u64) -> Option<SocketAddr> {
        let count = self.paths.len();
        for offset in 0..count {
            let index = (self.turn + offset) % count;
            let path = &mut self.paths[index];
            let allowed = path.validated
                || path.sent.saturating_add(size as u64) <= path.received.saturating_mul(factor);
            if allowed {
                path.sent = path.sent.saturating_add(size as u64);
                self.turn = (index + 1) % count;
                return Some(path.address);
            }
        }
        None
    }

    /// The budgets, for status and tests.
    pub(crate) fn paths(&self) -> &[PathBudget] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_unvalidated_path_gets_three_times_what_it_sent() {
        let mut paths = HandshakePaths::default();
        paths.reset_to(addr("10.0.0.1:1"), false);
        paths.on_received(addr("10.0.0.1:1"), 260);
        assert!(paths.pick(350, 3).is_some());
        assert!(paths.pick(350, 3).is_some());
        assert_eq!(paths.pick(350, 3), None, "780 bytes allowed, 700 sent");
        paths.on_received(addr("10.0.0.1:1"), 260);
        assert!(paths.pick(350, 3).is_some());
        paths.validate(addr("10.0.0.1:1"));
        for _ in 0..100 {
            assert!(paths.pick(1000, 3).is_some());
        }
    }

    #[test]
    fn candidates_take_turns_and_the_oldest_unproven_makes_room() {
        let mut paths = HandshakePaths::default();
        paths.reset_to(addr("10.0.0.1:1"), true);
        for i in 2..=6 {
            paths.add_candidate(addr(&format!("10.0.0.{i}:1")), false, 10_000);
        }
        assert_eq!(paths.paths().len(), MAX_PATHS);
        assert!(paths.paths()[0].validated, "the known address stays");
        let picked: HashSet<SocketAddr> = (0..8).filter_map(|_| paths.pick(100, 3)).collect();
        assert_eq!(picked.len(), MAX_PATHS);
    }

    #[test]
    fn cookies_are_required_under_load_and_bound_to_the_address() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let config = AdmissionConfig {
            verification_burst: 4.0,
            verifications_per_second: 1.0,
            per_source_burst: 100.0,
            per_source_per_second: 100.0,
            ..AdmissionConfig::default()
        };
        let mut admission = Admission::new(at(0), config, &mut rng);
        let a = addr("192.0.2.1:5");
        for _ in 0..3 {
            assert_eq!(admission.check(at(0), a, None), Verdict::Verify);
        }
        // More than half the budget spent: under load.
        assert_eq!(admission.check(at(0), a, None), Verdict::Retry);
        assert!(admission.queue_retry(at(0), a, [1; 32], &[9; 32]));
        let (to, bytes) = admission.poll_retry().unwrap();
        assert_eq!(to, a);
        let retry = RetryPacket::parse(&bytes).unwrap();
        assert_eq!(retry.echo, [9; 16]);
        assert_eq!(
            admission.check(at(0), a, Some(&retry.cookie)),
            Verdict::Verify
        );
        let b = addr("192.0.2.1:6");
        assert_eq!(
            admission.check(at(0), b, Some(&retry.cookie)),
            Verdict::Retry,
            "another port"
        );
        assert_eq!(
            admission.check(at(0), a, Some(&retry.cookie)),
            Verdict::Limited,
            "budget spent"
        );
        // A rotated secret still honours the previous cookie, not older.
        admission.config.always_require_cookie = true;
        admission.rotate(at(121_000), &mut rng);
        assert_eq!(
            admission.check(at(200_000), a, Some(&retry.cookie)),
            Verdict::Verify
        );
        admission.rotate(at(242_000), &mut rng);
        assert_eq!(
            admission.check(at(300_000), a, Some(&retry.cookie)),
            Verdict::Retry
        );
    }

    #[test]
    fn a_source_is_limited_alone() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut admission = Admission::new(at(0), AdmissionConfig::default(), &mut rng);
        let a = addr("192.0.2.1:5");
        let verified = (0..50)
            .filter(|_| admission.check(at(0), a, None) == Verdict::Verify)
            .count();
        assert_eq!(verified, 10, "the per-source burst");
        assert_eq!(
            admission.check(at(0), addr("192.0.2.2:5"), None),
            Verdict::Verify
        );
        assert_eq!(
            admission.check(at(1000), a, None),
            Verdict::Verify,
            "refilled"
        );
    }

    use rand_chacha::rand_core::SeedableRng;
}
