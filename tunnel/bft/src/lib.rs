//! `tgp-bft`: Byzantine agreement on one 32-byte value among a fixed,
//! known membership of n = 3f + 1 members (any n ≥ 1 works: f = ⌊(n−1)/3⌋,
//! quorum q = n − f), sans-IO like `tgp-proto`: time comes in as an
//! argument, datagrams go in and out through caller buffers.
//!
//! | module | owns |
//! |---|---|
//! | [`membership`] | member keys and order, f, quorum, membership id, proposer rotation |
//! | [`message`] | what is signed (domain-separated digests), the [`Certificate`] |
//! | [`wire`] | the packet layout: parse and emit |
//! | [`replica`] | one member's state machine: voting rules, locks, rounds, receiving |
//! | [`flood`] | what a replica sends to whom, and when |
//! | `store` | the bounded per-round state (proposal, votes by value) |
//! | [`config`], [`stats`] | settings; drop reasons and counters |
//! | `sim` (feature `sim`) | the engine in `tgp-sim`, Byzantine adversaries, a scenario runner |
//!
//! # Where this comes from, and what changed
//!
//! The paper (section 8 of the TGP paper) sketches: any node floods
//! PROPOSE ⟨V, R⟩, every node floods a SHARE, and any node holding
//! T = 2f + 1 shares forms a COMMIT. Three things are missing or wrong
//! there, and this crate fixes them:
//!
//! 1. **The "threshold signature" is not one.** The reference code XORs
//!    hash-derived shares, and checking it needs every node's private
//!    share. Here a COMMIT is a [`Certificate`]: q ordinary Ed25519
//!    signatures over (membership, instance, round, value), checkable by
//!    anyone who knows the member keys. (FROST would give one 64-byte
//!    signature, but needs a distributed key generation and a second
//!    signing round trip per share; a certificate needs neither, and the
//!    issue accepts it.)
//! 2. **Competing proposals.** If honest nodes propose different values at
//!    once, their shares split and no value may reach 2f + 1: the sketch
//!    never terminates. Rounds fix that: round 0 is the paper's leaderless
//!    round; from round 1 on, each round has one deterministic, rotating
//!    proposer, and a replica moves on when a round's timer runs out (or
//!    at once when it sees no value can reach a quorum in the round).
//! 3. **One vote is not enough once there are rounds.** With one signing
//!    phase, a value committed in round r leaves only f + 1 of its signers
//!    in any other quorum, and up to f of those may lie, so a later
//!    proposer cannot tell it apart from a value nobody committed. Two-step
//!    commit with a single vote needs n ≥ 5f + 1 (Martin and Alvisi, FaB
//!    Paxos, 2006). With n = 3f + 1 we need two votes per round, as in
//!    PBFT and Tendermint: a *prevote*, then a *precommit* once a quorum
//!    of prevotes (a *polka*) is seen. The paper's SHARE is our precommit;
//!    its PROPOSE in round 0 is our prevote.
//!
//! The rules are Tendermint's (Buchman, Kwon and Milosevic, "The latest
//! gossip on BFT consensus", 2018), without nil votes (a replica that does
//! not vote simply waits for the round timer or the early exit).
//!
//! # The rules (replica i, round r)
//!
//! - **Prevote** (once per round). Round 0: its own input. Round r ≥ 1: the
//!   value v of the proposal ⟨r, v, vr⟩ signed by the proposer of r, if
//!   - vr = none, and i is not locked or is locked on v; or
//!   - vr = k < r, i holds a polka for v in round k, and i's lock is from
//!     round k or earlier, or is on v.
//! - **Precommit** (once per round): on a polka for v in round r, lock on
//!   (r, v) and precommit v.
//! - **Decide**: on q precommits for v in any one round: that is the
//!   certificate.
//! - **Propose**: the proposer of r ≥ 1 proposes the value of the highest
//!   polka it holds from a round k < r, with vr = k; without one, its own
//!   input (vr = none).
//! - **Rounds**: round r lasts `round_timeout + r × round_timeout_step`;
//!   a replica also moves on at once when f + 1 members have signed in a
//!   higher round (one of them is honest), or when even the members not
//!   heard from could not give any value a polka in this round.
//!
//! # Why it is safe (with at most f Byzantine members, under any delays and loss)
//!
//! Two quorums of q = n − f share at least n − 2f ≥ f + 1 members, so at
//! least one honest one; honest members vote at most once per (phase,
//! round). Hence at most one value has a polka per round, and at most one
//! has a precommit quorum per round.
//!
//! Suppose v is decided in round r: q precommits, so a set S of ≥ f + 1
//! honest members precommitted v in r, each locking on (r, v). Claim: no
//! round r' > r has a polka for w ≠ v. By induction on r': a polka for w
//! needs q prevotes, so at least one from S (a quorum cannot avoid f + 1
//! members). A member of S is locked on v from round ≥ r (it can only
//! re-lock on a polka in a later round, and by induction that polka is for
//! v). It prevotes w in r' only for a proposal ⟨r', w, k⟩ with a polka for
//! w in round k ≥ its lock round ≥ r: k = r is impossible (the polka of r
//! is v's), r < k < r' is impossible by induction. So no polka for w after
//! r, so no honest precommit for w after r, so no certificate for w in a
//! round ≥ r; and a certificate for w in a round below r is excluded by
//! the same argument with the roles swapped. **Any two certificates are
//! for the same value**, and the locks carry v into every later round.
//!
//! Round changes, timers, the early exit, flooding and the unsigned status
//! hints never enter this argument: they can cost time, never safety.
//!
//! # What it guarantees about termination, and what it cannot
//!
//! FLP (Fischer, Lynch and Paterson, 1985): no deterministic protocol
//! decides in every asynchronous execution with even one faulty member.
//! This one is no exception: an adversary that controls timing can keep
//! every round's votes late. Under **partial synchrony** (Dwork, Lynch and
//! Stockmeyer, 1988: after some unknown time GST, messages between honest
//! members arrive within an unknown bound Δ), it terminates: the flood
//! keeps re-sending until a peer's status shows it holds what we hold, so
//! lossy links only stretch Δ (with independent loss p, an item reaches a
//! peer within k flood intervals with probability 1 − p^k, more with relays);
//! round timeouts grow with r, so some round after GST is long enough;
//! rounds with an honest proposer recur every n rounds; the honest
//! proposer's highest polka is at least every honest lock (a locked member
//! floods its polka to every peer whose status shows a lower one), so all
//! honest members prevote its proposal, and decide. Against a network
//! adversary that drops chosen packets, nothing terminates. In the
//! simulator, every run of `tgp-bench bft` and of the liveness tests
//! (default settings, up to 50 % independent loss, up to f Byzantine
//! members) decided.
//!
//! # Flooding
//!
//! Every packet carries the sender's *status*: its round, whether it has
//! decided, whether it holds the round's proposal, its highest polka round,
//! and the signers whose prevotes and precommits of the round it holds.
//! Every `flood_interval` (and `min_gap` after it makes something new) a
//! replica considers each peer and sends it, in at most `burst` packets,
//! what that peer's last status shows it lacking ([`flood`] has the
//! details):
//! - the proposal and votes of the current round, its own at once and
//!   those of others (relays) only once a status of the peer received
//!   `relay_after` later still shows them missing;
//! - to a peer in an earlier round, what it lacks of *its* round, so that
//!   it can finish or leave it (it may be the next proposer);
//! - the polka justifying the current proposal to a peer that has not
//!   prevoted, and our highest polka to a peer whose highest is lower (this
//!   is how a value that may have been committed is carried forward);
//! - after deciding, the certificate's signatures a peer's fresh status
//!   does not show, to every peer that has not said it decided, for
//!   `linger`; after that only in answer to such a peer's packets, for
//!   `answer_for`.
//!
//! One artifact goes to one peer again only while the peer's status still
//! shows it lacking, `resend_after` after the first time and then with the
//! spacing doubling up to 8 × (a Byzantine peer that claims to lack
//! everything gets everything at a falling rate). A peer with nothing to
//! get still receives our status when it changed, or every `keepalive`.
//! One packet from any honest peer can bring a peer up to date.
//!
//! Status hints are unsigned: a forged one can only change what is sent to
//! the member it claims to be, which is why [`Replica::handle_datagram`]
//! takes the member the caller knows the datagram came from (by address,
//! or an authenticated channel). There is no congestion control beyond
//! this pacing: the flood never sends more than `burst` packets per peer
//! per tick, and less once peers report what they hold.
//!
//! Every packet is at most 1200 bytes. Votes of one (phase, round, value)
//! travel as a signer bitmap plus signatures; a certificate of 21
//! signatures (n = 31) does not fit one packet and is sent as two parts in
//! two packets, each part a valid item on its own (see [`wire`]).
//!
//! Cost: every replica sends its votes to every peer and statuses go both
//! ways, so a round is O(n) packets per replica and O(n²) in all (the
//! paper's "O(n)" counts per node); `tgp-bench bft` prints the figures.
//!
//! # Bounds and robustness
//!
//! State per instance: at most `max_rounds` rounds, each with one proposal
//! and, per phase, at most two votes per signer (a second, equivocating
//! vote is kept as evidence and so that an equivocator cannot hide a real
//! quorum; a third is refused). Per peer: one status and two send times
//! per member. A bounded cache of
//! failed verifications. Every received signature is verified once: a
//! flooded copy of a vote held already is recognised by (phase, round,
//! value, signer) and costs a lookup. Untrusted bytes never panic; every
//! drop is counted by [`DropReason`].
//!
//! One instance per [`Replica`]: run one per slot of a log. A replica that
//! restarts must not sign again what it signed before the restart
//! (persisting its votes is the caller's job; this crate keeps them in
//! memory only).

pub mod config;
pub mod flood;
pub mod membership;
pub mod message;
pub mod replica;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
mod store;
pub mod wire;

pub use config::{BftConfig, ConfigError};
pub use membership::{Bitmap, Membership, MembershipError, MAX_MEMBERS};
pub use message::{Certificate, CertificateError, Phase, Value};
pub use replica::{BftError, Decision, Replica, Transmit};
pub use stats::{BftStats, DropReason, Received};
