//! Delivery classes: what the caller asks of each segment it hands the
//! protocol.

use std::time::Duration;

/// How a segment must be delivered. Chosen per segment by the caller (the
/// adapters choose: TCP in segment mode is `Segment`, a split-mode stream
/// `Reliable`, UDP gets a `Deadline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryClass {
    /// Delivered exactly once, in order within its flow, never lost; flows
    /// do not block each other. For byte streams, which cannot take a
    /// segment out of order.
    Reliable,
    /// ToTG segment mode, for an inner transport that puts its own segments
    /// back in order (TCP): delivered exactly once and never lost, in flow
    /// order as long as that costs a short wait. A hole holds the segments
    /// behind it for at most the receiver's reorder hold (about an eighth
    /// of the round trip, within 4–16 ms, below what HyStart reads as
    /// congestion); then they go on, and the missing segment follows when
    /// it arrives. The inner TCP sees a brief reordering instead of a
    /// round-trip stall.
    Segment,
    /// UoTG: delivered at most once, never after this long from when it was
    /// handed to the sender, with no ordering wait.
    Deadline(Duration),
}
