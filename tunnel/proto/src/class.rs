//! Delivery classes: what the caller asks of each segment it hands the
//! protocol.

use std::time::Duration;

/// How a segment must be delivered. Chosen per segment by the caller (the
/// adapters choose: TCP is `Reliable`, UDP gets a `Deadline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryClass {
    /// ToTG: delivered exactly once, in order within its flow, never lost;
    /// flows do not block each other.
    Reliable,
    /// UoTG: delivered at most once, never after this long from when it was
    /// handed to the sender, with no ordering wait.
    Deadline(Duration),
}
