//! Flooding: when a replica sends, to whom, and what each packet carries.
//!
//! At each tick (every `flood_interval`, or `min_gap` after the replica
//! made something new) every peer is considered once. A peer gets the
//! artifacts its last status shows it lacking, subject to two rules that
//! keep the flood paced:
//! - *retransmission backoff*: one artifact goes to one peer again only
//!   `resend_after` after the first time, then after 2, 4 and 8 times
//!   that (per artifact and peer; reset when our round changes);
//! - *relay hold*: an artifact signed by someone else is relayed only when
//!   the peer's status, received at least `relay_after` after we got the
//!   artifact, still shows it lacking (the signer had its chance); our own
//!   artifacts go at once. The certificate after our decision is held the
//!   same way.
//!
//! A peer in an earlier round also gets what it lacks of its own round. A
//! peer with nothing to get still receives our status when it changed, or
//! every `keepalive`, so that it knows what we lack. Once decided, a
//! replica sends an undecided peer the certificate (when due) or, once,
//! its status; a decided peer that does not know we decided, our status.
//! Everything goes in at most `burst` packets of at most [`MAX_PACKET`]
//! bytes per peer and tick; vote sets that do not fit a packet are split.

use crate::membership::{bit, members, Bitmap};
use crate::message::Phase;
use crate::replica::{PeerView, Replica, Sent, Transmit};
use crate::store::VoteSet;
use crate::wire::{Header, Item, Packet, Status, MAX_PACKET};
use tgp_proto::Timestamp;

/// What a wanted item is, to record that it was sent.
#[derive(Clone, Copy, Debug)]
enum Mark {
    Proposal,
    Votes(Phase),
    Polka(u32),
    CatchUp(u32),
    Certificate,
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Prevote => 0,
        Phase::Precommit => 1,
    }
}

impl Replica {
    /// Appends the next datagram to send at `now` to `buffer`, if one is
    /// due, and returns where it goes and its length. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<Transmit> {
        self.handle_timeout(now);
        loop {
            if let Some((to, packet)) = self.outbox.pop_front() {
                buffer.extend_from_slice(&packet);
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += packet.len() as u64;
                return Some(Transmit {
                    to,
                    len: packet.len(),
                });
            }
            let peer = self.tick_queue.pop_front()?;
            let packets = self.build_for(peer, now);
            self.outbox.extend(packets.into_iter().map(|p| (peer, p)));
        }
    }

    /// Starts a flood tick: every peer is considered once, in an order
    /// that rotates from tick to tick.
    pub(crate) fn start_tick(&mut self, now: Timestamp) {
        let n = self.membership.len();
        self.ticks += 1;
        self.last_tick = Some(now);
        self.tick_queue.clear();
        let offset = self.ticks as usize;
        for k in 0..n {
            let peer = (self.index + 1 + (offset + k) % n) % n;
            if peer != self.index {
                self.tick_queue.push_back(peer);
            }
        }
        let keep_flooding = match &self.decision {
            None => true,
            Some(decision) => {
                now < decision.at + self.config.linger
                    || self.peers.iter().any(|p| p.answer_pending)
            }
        };
        self.next_tick = keep_flooding.then(|| now + self.config.flood_interval);
    }

    fn status_for(&self, peer: usize) -> Status {
        let state = &self.rounds[self.round as usize];
        Status {
            round: self.round,
            committed: self.decision.is_some(),
            has_proposal: state.proposal.is_some(),
            valid_round: self.valid.map(|(k, _)| k),
            knows_receiver_committed: self.peers[peer].committed,
            prevotes: state.prevotes.voters,
            precommits: state.precommits.voters,
        }
    }

    fn resend_ok(&self, last: Option<Sent>, now: Timestamp) -> bool {
        Sent::due(last, now, self.config.resend_after)
    }

    /// Whether an artifact of `signer` first held at `since` may go to the
    /// peer seen in `view`.
    fn relay_ok(&self, view: &PeerView, signer: usize, since: Timestamp) -> bool {
        signer == self.index
            || view
                .status_at
                .is_some_and(|t| t >= since + self.config.relay_after)
    }

    fn votes_item(phase: Phase, round: u32, set: &VoteSet, subset: Bitmap) -> Item {
        let signers = set.signers & subset;
        Item::Votes {
            phase,
            round,
            value: set.value,
            signers,
            signatures: set.signatures_of(signers),
        }
    }

    /// What `peer` may lack and may be sent now, most useful first.
    fn wanted_by(&self, peer: usize, now: Timestamp) -> Vec<(Item, Mark)> {
        let quorum = self.membership.quorum();
        let view = &self.peers[peer];
        if let Some(decision) = &self.decision {
            // The certificate, to a peer whose status, fresh since we
            // decided, shows it undecided: the first time only the
            // signatures its status does not show it holding (it may hold
            // an equivocator's precommit for another value: then the
            // next time, all of them).
            if view.committed
                || !self.relay_ok(view, usize::MAX, decision.at)
                || !self.resend_ok(view.sent_certificate, now)
            {
                return Vec::new();
            }
            let certificate = &decision.certificate;
            let status = view.status.unwrap_or_default();
            let known = if status.round == certificate.round && view.sent_certificate.is_none() {
                status.precommits
            } else {
                0
            };
            let missing: Vec<(u8, [u8; 64])> = certificate
                .signatures
                .iter()
                .filter(|(s, _)| known & bit(usize::from(*s)) == 0)
                .copied()
                .collect();
            if missing.is_empty() {
                return Vec::new();
            }
            return vec![(
                Item::Votes {
                    phase: Phase::Precommit,
                    round: certificate.round,
                    value: certificate.value,
                    signers: missing
                        .iter()
                        .fold(0, |acc, (s, _)| acc | bit(usize::from(*s))),
                    signatures: missing.iter().map(|(_, s)| *s).collect(),
                },
                Mark::Certificate,
            )];
        }
        let status = view.status.unwrap_or_default();
        let round = self.round;
        let state = &self.rounds[round as usize];
        let same_round_times = view.sent_round == round;
        let mut items = Vec::new();
        // A peer in an earlier round gets what it lacks of *its* round, so
        // that it can finish or leave it (it may be the next proposer).
        if view.status.is_some() && status.round < round {
            let fresh = match view.sent_catch_up {
                Some((r, sent)) if r == status.round => self.resend_ok(Some(sent), now),
                _ => true,
            };
            if fresh {
                self.catch_up(view, &status, &mut items);
            }
        }
        if status.round <= round {
            let same = status.round == round && view.status.is_some();
            if let Some(p) = &state.proposal {
                let proposer = self.membership.proposer(self.instance, round);
                let last = if same_round_times {
                    view.sent_proposal
                } else {
                    None
                };
                if !(same && status.has_proposal)
                    && self.relay_ok(view, proposer, p.since)
                    && self.resend_ok(last, now)
                {
                    items.push((
                        Item::Proposal {
                            round,
                            value: p.value,
                            valid_round: p.valid_round,
                            signature: p.signature,
                        },
                        Mark::Proposal,
                    ));
                }
            }
            let mut votes = Vec::new();
            for (phase, phase_votes, known) in [
                (Phase::Precommit, &state.precommits, status.precommits),
                (Phase::Prevote, &state.prevotes, status.prevotes),
            ] {
                let known = if same { known } else { 0 };
                let sent = &view.sent_votes[phase_index(phase)];
                for set in &phase_votes.sets {
                    let mut eligible: Bitmap = 0;
                    for signer in members(set.signers & !known) {
                        let last = if same_round_times { sent[signer] } else { None };
                        let since = set.held_since(signer).unwrap_or(now);
                        if self.relay_ok(view, signer, since) && self.resend_ok(last, now) {
                            eligible |= bit(signer);
                        }
                    }
                    if eligible != 0 {
                        votes.push((
                            Self::votes_item(phase, round, set, eligible),
                            Mark::Votes(phase),
                        ));
                    }
                }
            }
            if votes.len() > 1 {
                // Rotate, so that when not everything fits, every set gets
                // its turn across ticks.
                let len = votes.len();
                votes.rotate_left(self.ticks as usize % len);
            }
            items.extend(votes);
            // The polka that justifies the current proposal, to a peer that
            // has not prevoted and may not hold it.
            if let Some(p) = &state.proposal {
                if let Some(k) = p.valid_round {
                    let peer_prevoted = same && status.prevotes & bit(peer) != 0;
                    if view.status.is_some()
                        && !peer_prevoted
                        && status.valid_round != Some(k)
                        && self.polka_resend_ok(view, k, now)
                    {
                        if let Some(set) = self.polka(k, &p.value) {
                            items.push((
                                Self::votes_item(Phase::Prevote, k, set, set.first_signers(quorum)),
                                Mark::Polka(k),
                            ));
                        }
                    }
                }
            }
        }
        // Our highest polka, to a peer whose highest is lower: this is how
        // a value that may have been committed is carried forward.
        if let Some((k, value)) = self.valid {
            let behind = status.valid_round.is_none_or(|theirs| theirs < k);
            let covered = k == round && status.round <= round;
            let already = items
                .iter()
                .any(|(_, m)| matches!(m, Mark::Polka(r) if *r == k));
            if view.status.is_some()
                && behind
                && !covered
                && !already
                && self.polka_resend_ok(view, k, now)
            {
                if let Some(set) = self.polka(k, &value) {
                    items.push((
                        Self::votes_item(Phase::Prevote, k, set, set.first_signers(quorum)),
                        Mark::Polka(k),
                    ));
                }
            }
        }
        items
    }

    /// The proposal and votes of the peer's (earlier) round that its
    /// status shows it lacking.
    fn catch_up(&self, view: &PeerView, status: &Status, items: &mut Vec<(Item, Mark)>) {
        let round = status.round;
        let Some(state) = self.rounds.get(round as usize) else {
            return;
        };
        let mark = Mark::CatchUp(round);
        if let Some(p) = &state.proposal {
            let proposer = self.membership.proposer(self.instance, round);
            if !status.has_proposal && self.relay_ok(view, proposer, p.since) {
                items.push((
                    Item::Proposal {
                        round,
                        value: p.value,
                        valid_round: p.valid_round,
                        signature: p.signature,
                    },
                    mark,
                ));
            }
        }
        for (phase, phase_votes, known) in [
            (Phase::Precommit, &state.precommits, status.precommits),
            (Phase::Prevote, &state.prevotes, status.prevotes),
        ] {
            for set in &phase_votes.sets {
                let eligible = members(set.signers & !known)
                    .filter(|&s| {
                        self.relay_ok(
                            view,
                            s,
                            set.held_since(s)
                                .unwrap_or(view.status_at.unwrap_or_default()),
                        )
                    })
                    .fold(0, |acc, s| acc | bit(s));
                if eligible != 0 {
                    items.push((Self::votes_item(phase, round, set, eligible), mark));
                }
            }
        }
    }

    fn polka_resend_ok(&self, view: &PeerView, round: u32, now: Timestamp) -> bool {
        match view.sent_polka {
            Some((r, sent)) if r == round => self.resend_ok(Some(sent), now),
            _ => true,
        }
    }

    fn polka(&self, round: u32, value: &[u8; 32]) -> Option<&VoteSet> {
        self.rounds
            .get(round as usize)?
            .prevotes
            .set(value)
            .filter(|set| set.count() >= self.membership.quorum())
    }

    /// Whether `peer` gets a packet this tick at all.
    fn should_send(&self, peer: usize, now: Timestamp, has_items: bool, status: &Status) -> bool {
        let view = &self.peers[peer];
        match &self.decision {
            None => {
                has_items
                    || view.last_status_sent.as_ref() != Some(status)
                    || view
                        .last_sent
                        .is_none_or(|t| now >= t + self.config.keepalive)
            }
            // An undecided peer is answered with the certificate (when it
            // is due) or, once, with our status (so that it stops sending
            // us votes); a decided one that does not know we are, with our
            // status.
            Some(decision) => {
                (view.answer_pending || now < decision.at + self.config.linger)
                    && (has_items
                        || !view.told_committed
                        || (view.committed && view.answer_pending))
            }
        }
    }

    /// The packets for `peer` this tick (possibly none), recording what
    /// was sent.
    fn build_for(&mut self, peer: usize, now: Timestamp) -> Vec<Vec<u8>> {
        let status = self.status_for(peer);
        let wanted = self.wanted_by(peer, now);
        if !self.should_send(peer, now, !wanted.is_empty(), &status) {
            return Vec::new();
        }
        let n = self.membership.len();
        let bitmap_len = self.membership.bitmap_len();
        let header = Header {
            group: self.membership.group_tag(),
            instance: self.instance,
            sender: self.index as u8,
            status,
        };
        let header_len = header.encoded_len(bitmap_len);
        let mut packer = Packer {
            header,
            n,
            header_len,
            budget: self.config.burst,
            packets: Vec::new(),
            current: Vec::new(),
            size: header_len,
        };
        let mut sent: Vec<(Mark, Bitmap)> = Vec::new();
        'items: for (item, mark) in wanted {
            match item {
                Item::Proposal { .. } => {
                    let len = item.encoded_len(bitmap_len);
                    if !packer.make_room(len) {
                        break 'items;
                    }
                    packer.push(item, len);
                    sent.push((mark, 0));
                }
                Item::Votes {
                    phase,
                    round,
                    value,
                    signers,
                    signatures,
                } => {
                    let mut rest: Vec<(usize, [u8; 64])> =
                        members(signers).zip(signatures).collect();
                    while !rest.is_empty() {
                        let empty_len = Item::votes_len(round, 0, bitmap_len);
                        if !packer.make_room(empty_len + 64) {
                            break 'items;
                        }
                        let fit = (MAX_PACKET - packer.size - empty_len) / 64;
                        let take = fit.min(rest.len());
                        let part: Vec<(usize, [u8; 64])> = rest.drain(..take).collect();
                        let part_signers = part.iter().fold(0, |acc, (s, _)| acc | bit(*s));
                        let item = Item::Votes {
                            phase,
                            round,
                            value,
                            signers: part_signers,
                            signatures: part.iter().map(|(_, sig)| *sig).collect(),
                        };
                        packer.push(item, empty_len + 64 * take);
                        sent.push((mark, part_signers));
                    }
                }
            }
        }
        self.record_sent(peer, now, status, &sent);
        packer.finish()
    }

    fn record_sent(
        &mut self,
        peer: usize,
        now: Timestamp,
        status: Status,
        sent: &[(Mark, Bitmap)],
    ) {
        let round = self.round;
        let view = &mut self.peers[peer];
        view.answer_pending = false;
        view.last_sent = Some(now);
        view.last_status_sent = Some(status);
        view.told_committed |= status.committed;
        if view.sent_round != round {
            view.sent_round = round;
            view.sent_proposal = None;
            for times in &mut view.sent_votes {
                times.iter_mut().for_each(|t| *t = None);
            }
        }
        for (mark, signers) in sent {
            match mark {
                Mark::Proposal => view.sent_proposal = Some(Sent::after(view.sent_proposal, now)),
                Mark::Votes(phase) => {
                    let times = &mut view.sent_votes[phase_index(*phase)];
                    for signer in members(*signers) {
                        if let Some(t) = times.get_mut(signer) {
                            *t = Some(Sent::after(*t, now));
                        }
                    }
                }
                Mark::Polka(k) => {
                    let previous = view.sent_polka.filter(|(r, _)| r == k).map(|(_, s)| s);
                    view.sent_polka = Some((*k, Sent::after(previous, now)));
                }
                Mark::CatchUp(k) => {
                    let previous = view.sent_catch_up.filter(|(r, _)| r == k).map(|(_, s)| s);
                    view.sent_catch_up = Some((*k, Sent::after(previous, now)));
                }
                Mark::Certificate => {
                    view.sent_certificate = Some(Sent::after(view.sent_certificate, now));
                }
            }
        }
    }
}

/// Fills packets of at most [`MAX_PACKET`] bytes, up to a budget.
struct Packer {
    header: Header,
    n: usize,
    header_len: usize,
    budget: usize,
    packets: Vec<Vec<u8>>,
    current: Vec<Item>,
    size: usize,
}

impl Packer {
    /// Makes sure `len` more bytes fit, starting a new packet if needed;
    /// `false` when the budget of packets is spent.
    fn make_room(&mut self, len: usize) -> bool {
        if self.size + len <= MAX_PACKET && self.current.len() < 255 {
            return true;
        }
        if self.current.is_empty() {
            return false;
        }
        self.flush();
        self.packets.len() < self.budget && self.header_len + len <= MAX_PACKET
    }

    fn push(&mut self, item: Item, len: usize) {
        self.current.push(item);
        self.size += len;
    }

    fn flush(&mut self) {
        let packet = Packet {
            header: self.header,
            items: std::mem::take(&mut self.current),
        };
        let mut bytes = Vec::with_capacity(self.size);
        packet.encode(self.n, &mut bytes);
        debug_assert!(bytes.len() <= MAX_PACKET);
        self.packets.push(bytes);
        self.size = self.header_len;
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.current.is_empty() || self.packets.is_empty() {
            self.flush();
        }
        self.packets
    }
}
