//! The TUN device and how packets cross it. With offloads (as
//! wireguard-go has them), the device is opened with a virtio-net header: the kernel hands over TCP/UDP super-packets of up to 64 KB,
//! which tun-rs splits into MTU-sized segments before the daemon sees them
//! (so MSS clamping and class rules apply per segment, as without
//! offloads), and the packets the tunnel delivers are written in batches
//! that tun-rs coalesces back into super-packets (GRO), so the kernel's
//! stack handles one packet where it would handle dozens.
//!
//! Offloads are off by default (one packet per read and per write): on
//! the bench's clean path they cut the sending daemon's TUN reads about
//! 25-fold but changed neither goodput nor CPU seconds per GB measurably,
//! and the bursts of 40-odd segments they hand the endpoint at once are
//! untried on slow lossy links. Setting the environment variable
//! `TGP_TUN_OFFLOAD=on` (or `1`, `yes`, `true`) turns them on; a kernel
//! that refuses the offload flags gets a device without them.

use std::io::{self, ErrorKind};
use tracing::{debug, info, warn};
use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// The environment variable that turns TUN offloads off.
pub const OFFLOAD_ENV: &str = "TGP_TUN_OFFLOAD";

/// Room in front of each packet written with offloads (tun-rs puts the
/// virtio-net header there).
const WRITE_OFFSET: usize = VIRTIO_NET_HDR_LEN;

/// Whether the environment asks for offloads ([`OFFLOAD_ENV`] on).
pub fn offload_from_env() -> bool {
    is_on(&std::env::var(OFFLOAD_ENV).unwrap_or_default())
}

fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "1" | "yes" | "true"
    )
}

/// The TUN device with its write batch.
pub struct TunIo {
    device: AsyncDevice,
    offload: bool,
    gro: GROTable,
    /// Packets waiting to be written, each after [`WRITE_OFFSET`] bytes
    /// of room; the first `queued` are in use (the rest are kept for
    /// their capacity).
    pending: Vec<Vec<u8>>,
    queued: usize,
}

/// Where reads land: the raw read (header and super-packet) and the
/// segments it is split into.
pub struct TunReceive {
    original: Vec<u8>,
    segments: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
}

impl TunReceive {
    /// Buffers for a device whose packets are at most `mtu` bytes. The
    /// first segment buffer takes a whole read (without offloads every
    /// read lands there, whatever the interface's MTU was changed to).
    pub fn new(mtu: u16) -> TunReceive {
        let segment = usize::from(mtu).max(1500) + 64;
        let mut segments = vec![vec![0; segment]; IDEAL_BATCH_SIZE];
        segments[0] = vec![0; 65536];
        TunReceive {
            original: vec![0; VIRTIO_NET_HDR_LEN + 65535],
            segments,
            sizes: vec![0; IDEAL_BATCH_SIZE],
            count: 0,
        }
    }

    /// How many packets the last read gave.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last read gave none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Packet `index` of the last read (empty past the end).
    pub fn packet(&mut self, index: usize) -> &mut [u8] {
        if index >= self.count {
            return &mut [];
        }
        let size = self.sizes[index];
        let segment = &mut self.segments[index];
        let size = size.min(segment.len());
        &mut segment[..size]
    }
}

impl TunIo {
    /// Opens the device `builder` describes (called again for the
    /// fallback), with offloads when `offload` (falling back to none if
    /// the kernel refuses them).
    pub fn open(builder: impl Fn() -> DeviceBuilder, offload: bool) -> io::Result<TunIo> {
        let (device, offload) = if offload {
            match builder().offload(true).build_async() {
                Ok(device) => (device, true),
                Err(error) => {
                    warn!(%error, "the TUN device refused offloads; one packet per read and write");
                    (builder().build_async()?, false)
                }
            }
        } else {
            (builder().build_async()?, false)
        };
        let io = TunIo {
            device,
            offload,
            gro: GROTable::default(),
            pending: Vec::new(),
            queued: 0,
        };
        info!("TUN device: {}", io.describe());
        Ok(io)
    }

    /// A line for the log.
    pub fn describe(&self) -> &'static str {
        if self.offload {
            "offloads on (virtio-net header: TSO/GSO super-packets split here, writes coalesced)"
        } else {
            "offloads off (one packet per read and write)"
        }
    }

    /// Waits for a read and splits it into `into` (cancel-safe: a read
    /// either completes or leaves nothing behind).
    pub async fn recv(&self, into: &mut TunReceive) -> io::Result<()> {
        into.count = 0;
        let n = self
            .device
            .recv_multiple(&mut into.original, &mut into.segments, &mut into.sizes, 0)
            .await?;
        into.count = n.min(into.segments.len());
        Ok(())
    }

    /// Like [`TunIo::recv`], without waiting (`WouldBlock` when nothing
    /// is waiting).
    pub fn try_recv(&self, into: &mut TunReceive) -> io::Result<()> {
        into.count = 0;
        let n = self.device.try_recv_multiple(
            &mut into.original,
            &mut into.segments,
            &mut into.sizes,
            0,
        )?;
        into.count = n.min(into.segments.len());
        Ok(())
    }

    /// Queues `packet` to be written (without offloads it is written at
    /// once). Returns whether it was written or queued; a packet the
    /// kernel refuses is logged and dropped. A broken device is an error.
    pub async fn write(&mut self, packet: &[u8]) -> io::Result<bool> {
        if !self.offload {
            return match self.device.send(packet).await {
                Ok(_) => Ok(true),
                Err(error) if error.kind() != ErrorKind::BrokenPipe => {
                    debug!(%error, "the kernel refused a packet from the tunnel");
                    Ok(false)
                }
                Err(error) => Err(error),
            };
        }
        if self.queued == self.pending.len() {
            self.pending.push(Vec::with_capacity(WRITE_OFFSET + 2048));
        }
        let buffer = &mut self.pending[self.queued];
        buffer.clear();
        buffer.resize(WRITE_OFFSET, 0);
        buffer.extend_from_slice(packet);
        self.queued += 1;
        if self.queued >= IDEAL_BATCH_SIZE {
            self.flush().await?;
        }
        Ok(true)
    }

    /// Writes the queued packets, coalescing what can be coalesced.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        let result = self
            .device
            .send_multiple(&mut self.gro, &mut self.pending[..queued], WRITE_OFFSET)
            .await;
        // Coalescing grows some buffers to super-packet size; keep the
        // batch from holding more than it needs.
        for buffer in &mut self.pending[..queued] {
            if buffer.capacity() > 16 * 1024 {
                *buffer = Vec::with_capacity(WRITE_OFFSET + 2048);
            }
        }
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.kind() != ErrorKind::BrokenPipe => {
                debug!(%error, "the kernel refused a packet from the tunnel");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offloads_are_on_only_when_asked_for() {
        for on in ["on", "1", "yes", "true", " ON "] {
            assert!(is_on(on), "{on}");
        }
        for off in ["", "off", "0", "no", "false", "maybe"] {
            assert!(!is_on(off), "{off}");
        }
    }

    #[test]
    fn a_receive_buffer_gives_nothing_past_its_last_read() {
        let mut receive = TunReceive::new(1340);
        assert!(receive.is_empty());
        assert_eq!(receive.len(), 0);
        assert!(receive.packet(0).is_empty());
        receive.count = 1;
        receive.sizes[0] = 100_000;
        assert_eq!(receive.packet(0).len(), receive.segments[0].len());
        assert!(receive.packet(1).is_empty());
    }
}
