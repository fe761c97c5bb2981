//! The send queue: segments accepted from the caller and not yet taken
//! for sending, one FIFO per class (deadline traffic goes first), with the
//! byte accounting, the per-flow positions of reliable segments, the
//! expiry of deadline segments that waited too long, and the queue
//! manager ([`super::aqm`]) that refuses segments under a standing queue.

use super::aqm::{QueueManager, Target, Verdict};
use crate::delivery::FlowId;
use crate::time::Timestamp;
use crate::wire::frame::SymbolClass;
use std::collections::{HashMap, VecDeque};

use thiserror::Error;

/// Why a segment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    /// Larger than the largest segment.
    #[error("segment of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The segment's size.
        size: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The send queue is at its byte limit.
    #[error("send queue full")]
    QueueFull,
    /// The queue manager dropped it: segments wait too long (congestion).
    #[error("dropped by the queue manager")]
    QueueDelay,
    /// No session is usable with the peer (streams are not held).
    #[error("no session with the peer")]
    NoSession,
}

/// A segment waiting to be sent.
pub(crate) struct QueuedSegment {
    pub flow: FlowId,
    pub class: SymbolClass,
    pub payload: Vec<u8>,
    pub enqueued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// Both FIFOs and their accounting.
pub(crate) struct SendQueue {
    deadline: VecDeque<QueuedSegment>,
    reliable: VecDeque<QueuedSegment>,
    queued_bytes: usize,
    flow_next: HashMap<FlowId, u64>,
    manager: QueueManager,
}

impl SendQueue {
    pub(crate) fn new(now: Timestamp) -> Self {
        SendQueue {
            deadline: VecDeque::new(),
            reliable: VecDeque::new(),
            queued_bytes: 0,
            flow_next: HashMap::new(),
            manager: QueueManager::new(now),
        }
    }

    /// Payload bytes queued.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.deadline.is_empty() && self.reliable.is_empty()
    }

    /// Whether no reliable segment is queued (the tail of a transfer).
    pub(crate) fn reliable_is_empty(&self) -> bool {
        self.reliable.is_empty()
    }

    /// Whether a deadline segment is queued.
    pub(crate) fn has_deadline(&self) -> bool {
        !self.deadline.is_empty()
    }

    /// Whether `len` more bytes would pass `limit`.
    pub(crate) fn would_exceed(&self, len: usize, limit: usize) -> bool {
        self.queued_bytes + len > limit
    }

    /// Asks the queue manager about a segment offered now.
    pub(crate) fn offer(&mut self, now: Timestamp, target: Target) -> Verdict {
        let head_age = self
            .reliable
            .front()
            .map(|s| now - s.enqueued_at)
            .unwrap_or_default();
        self.manager.on_offer(now, head_age, target)
    }

    /// The position the next reliable segment of `flow` takes.
    pub(crate) fn next_flow_position(&mut self, flow: FlowId) -> u64 {
        let next = self.flow_next.entry(flow).or_insert(0);
        let position = *next;
        *next += 1;
        position
    }

    /// Queues a segment behind the others of its class.
    pub(crate) fn push(&mut self, segment: QueuedSegment) {
        self.queued_bytes += segment.payload.len();
        match segment.class {
            SymbolClass::Reliable { .. } => self.reliable.push_back(segment),
            SymbolClass::Deadline { .. } => self.deadline.push_back(segment),
        }
    }

    /// Drops the deadline segments at the head that have expired by `now`;
    /// returns how many.
    pub(crate) fn drop_expired(&mut self, now: Timestamp) -> u64 {
        let mut dropped = 0;
        while let Some(front) = self.deadline.front() {
            if front.expires_at.is_some_and(|e| e <= now) {
                self.queued_bytes -= front.payload.len();
                self.deadline.pop_front();
                dropped += 1;
            } else {
                break;
            }
        }
        dropped
    }

    /// When the oldest queued deadline segment expires.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.deadline.front().and_then(|s| s.expires_at)
    }

    /// Takes the next deadline segment, or else (if `reliable_allowed`) the
    /// next reliable one.
    pub(crate) fn pop(&mut self, reliable_allowed: bool) -> Option<QueuedSegment> {
        let segment = if !self.deadline.is_empty() {
            self.deadline.pop_front()
        } else if reliable_allowed {
            self.reliable.pop_front()
        } else {
            None
        }?;
        self.queued_bytes -= segment.payload.len();
        Some(segment)
    }
}
