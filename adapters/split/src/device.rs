//! The smoltcp device of an engine: two queues of whole IP packets. The
//! engine pushes packets read from the TUN into `rx` before polling the
//! stack, and takes what the stack emitted from `tx`. Nothing here blocks
//! or refuses: the TUN side is the local kernel, sub-millisecond and
//! loss-free.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Packet queues standing in for the TUN device.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// Packets for the stack (from the TUN).
    pub rx: VecDeque<Vec<u8>>,
    /// Packets from the stack (for the TUN).
    pub tx: VecDeque<Vec<u8>>,
    /// IP MTU of the TUN.
    pub mtu: usize,
}

impl Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let buffer = self.rx.pop_front()?;
        Some((
            RxToken { buffer },
            TxToken {
                queue: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken {
            queue: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// One received packet.
pub(crate) struct RxToken {
    buffer: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.buffer)
    }
}

/// Room for one packet to send.
pub(crate) struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buffer = vec![0; len];
        let result = f(&mut buffer);
        self.queue.push_back(buffer);
        result
    }
}
