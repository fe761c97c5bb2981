//! The sliding-window decoder fed arbitrary sources and repairs (an
//! authentic but misbehaving peer): never panics, and every recovered
//! source is one that was missing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp_proto::delivery::fec::{RepairWindow, WindowDecoder};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | u64::from(self.byte()?);
        }
        Some(v)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut decoder = WindowDecoder::default();
    let mut base = 0u64;
    let mut ops = 0;
    while let Some(op) = input.byte() {
        ops += 1;
        if ops > 2000 {
            break;
        }
        // Mostly near `base`, sometimes anywhere (edge values).
        let near = |input: &mut Input, base: u64| -> Option<u64> {
            let b = input.byte()?;
            Some(match b {
                0xff => u64::MAX - u64::from(input.byte()?),
                0xfe => input.u64()?,
                _ => base.saturating_add(u64::from(b)),
            })
        };
        match op % 6 {
            0 | 1 => {
                let Some(seq) = near(&mut input, base) else { break };
                let len = usize::from(input.byte().unwrap_or(0));
                let shard = input.bytes(len);
                decoder.add_source(seq, shard);
            }
            2 | 3 => {
                let Some(first) = near(&mut input, base) else { break };
                let Some(mask) = input.u64() else { break };
                let id = u64::from(input.byte().unwrap_or(0));
                let len = usize::from(input.byte().unwrap_or(0)) * 6;
                let shard = input.bytes(len);
                let _ = decoder.add_repair(RepairWindow { first, mask: mask | 1 }, id, &shard);
            }
            4 => {
                base = base.saturating_add(u64::from(input.byte().unwrap_or(0)));
                decoder.resolved_below(base);
            }
            _ => {
                let Some(start) = near(&mut input, base) else { break };
                let len = u64::from(input.byte().unwrap_or(0));
                decoder.forget(start..start.saturating_add(len));
            }
        }
        assert!(decoder.rows() <= tgp_proto::delivery::fec::MAX_ROWS);
        while decoder.poll_recovered().is_some() {}
    }
});
