//! Congestion control: CUBIC with HyStart, following Linux's
//! `net/ipv4/tcp_cubic.c` (v2.3) and the slow start and additive-increase
//! helpers of `tcp_cong.c`.
//!
//! - CUBIC: C = 410/1024, β = 717/1024, fast convergence, the
//!   Reno-friendly region (α = 3(1−β)/(1+β) as Linux's integer
//!   `beta_scale`), growth at most 1.5× per RTT (`cnt ≥ 2`), 5 % per RTT
//!   while no loss was ever seen, the target recomputed at most every
//!   1/32 s unless cwnd changed.
//! - HyStart (only in slow start with cwnd ≥ 16): the ACK-train test (ACKs
//!   ≤ 2 ms apart for longer than (delay_min + 1 ms)/2 from the start of
//!   the round, unpaced) and the delay test (the round's minimum RTT, once
//!   it has more than 8 samples, above delay_min + clamp(delay_min/8, 4 ms,
//!   16 ms)). Either sets ssthresh = cwnd. delay_min is the lowest sample
//!   since the start, cleared only by an RTO (`CA_Loss`); samples within a
//!   second after the start of a congestion-avoidance epoch are ignored.
//!
//! The sender owns cwnd, `snd_cwnd_cnt` and ssthresh and passes them in.

use super::rtt::Micros;

const BETA_SCALE: u32 = 1024;
const BETA: u32 = 717;
/// C = BIC_SCALE / 1024 · 10 ≈ 0.4.
const C: f64 = 410.0 / 1024.0;
/// Linux's `beta_scale`: 8·(1024+β)/3/(1024−β) in integer arithmetic.
const RENO_BETA_SCALE: u32 = 8 * (BETA_SCALE + BETA) / 3 / (BETA_SCALE - BETA);
const HYSTART_MIN_SAMPLES: u32 = 8;
const HYSTART_DELAY_MIN: Micros = 4_000;
const HYSTART_DELAY_MAX: Micros = 16_000;
const HYSTART_ACK_DELTA: Micros = 2_000;
/// `hystart_low_window`.
pub const HYSTART_LOW_WINDOW: u32 = 16;
/// ssthresh before any exit from slow start.
pub const INFINITE_SSTHRESH: u32 = 0x7fff_ffff;

/// Why HyStart ended slow start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HystartExit {
    /// ACKs kept arriving closely spaced for half the minimum RTT.
    AckTrain,
    /// The round's minimum RTT rose above the threshold.
    Delay,
}

/// CUBIC's state (`struct bictcp`).
#[derive(Clone, Debug)]
pub struct Cubic {
    hystart: bool,
    cnt: u32,
    last_max_cwnd: u32,
    last_cwnd: u32,
    last_time: Micros,
    origin_point: u32,
    /// Time to the origin point, seconds.
    k: f64,
    delay_min: Micros,
    epoch_start: Option<Micros>,
    ack_cnt: u32,
    tcp_cwnd: u32,
    // HyStart.
    found: bool,
    round_start: Micros,
    last_ack: Micros,
    end_seq: u64,
    curr_rtt: Micros,
    sample_cnt: u32,
}

impl Cubic {
    /// A fresh controller (`cubictcp_init`); `snd_nxt` starts HyStart's
    /// first round.
    pub fn new(hystart: bool, now: Micros, snd_nxt: u64) -> Self {
        let mut cubic = Cubic {
            hystart,
            cnt: 0,
            last_max_cwnd: 0,
            last_cwnd: 0,
            last_time: 0,
            origin_point: 0,
            k: 0.0,
            delay_min: 0,
            epoch_start: None,
            ack_cnt: 0,
            tcp_cwnd: 0,
            found: false,
            round_start: 0,
            last_ack: 0,
            end_seq: 0,
            curr_rtt: Micros::MAX,
            sample_cnt: 0,
        };
        cubic.hystart_reset(now, snd_nxt);
        cubic
    }

    /// Lowest RTT sample CUBIC and HyStart use (0: none).
    pub fn delay_min(&self) -> Micros {
        self.delay_min
    }

    fn hystart_reset(&mut self, now: Micros, snd_nxt: u64) {
        self.round_start = now;
        self.last_ack = now;
        self.end_seq = snd_nxt;
        self.curr_rtt = Micros::MAX;
        self.sample_cnt = 0;
    }

    /// `cubictcp_state(TCP_CA_Loss)`: an RTO forgets everything, delay_min
    /// included, and restarts HyStart.
    pub fn on_enter_loss(&mut self, now: Micros, snd_nxt: u64) {
        *self = Cubic::new(self.hystart, now, snd_nxt);
    }

    /// `cubictcp_recalc_ssthresh`: a loss event at `cwnd`; returns the new
    /// ssthresh.
    pub fn ssthresh(&mut self, cwnd: u32) -> u32 {
        self.epoch_start = None;
        self.last_max_cwnd = if cwnd < self.last_max_cwnd {
            // Fast convergence.
            cwnd * (BETA_SCALE + BETA) / (2 * BETA_SCALE)
        } else {
            cwnd
        };
        (cwnd * BETA / BETA_SCALE).max(2)
    }

    /// `cubictcp_acked`: an ACK with RTT sample `rtt` (the newest (S)ACKed
    /// segment's, if any). Runs HyStart; returns the reason if it ended
    /// slow start (then `*ssthresh` was set to `cwnd`).
    #[allow(clippy::too_many_arguments)]
    pub fn pkts_acked(
        &mut self,
        now: Micros,
        rtt: Option<Micros>,
        cwnd: u32,
        ssthresh: &mut u32,
        snd_una: u64,
        snd_nxt: u64,
        pacing_rate_bytes_per_second: f64,
    ) -> Option<HystartExit> {
        let rtt = rtt?;
        // Discard delay samples right after fast recovery.
        if let Some(epoch) = self.epoch_start {
            if now.saturating_sub(epoch) < 1_000_000 {
                return None;
            }
        }
        let delay = rtt.max(1);
        if self.delay_min == 0 || self.delay_min > delay {
            self.delay_min = delay;
        }
        if !self.found && cwnd < *ssthresh && self.hystart && cwnd >= HYSTART_LOW_WINDOW {
            return self.hystart_update(
                now,
                delay,
                cwnd,
                ssthresh,
                snd_una,
                snd_nxt,
                pacing_rate_bytes_per_second,
            );
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn hystart_update(
        &mut self,
        now: Micros,
        delay: Micros,
        cwnd: u32,
        ssthresh: &mut u32,
        snd_una: u64,
        snd_nxt: u64,
        pacing_rate_bytes_per_second: f64,
    ) -> Option<HystartExit> {
        if snd_una > self.end_seq {
            self.hystart_reset(now, snd_nxt);
        }
        let mut exit = None;
        // ACK train.
        if now.saturating_sub(self.last_ack) <= HYSTART_ACK_DELTA {
            self.last_ack = now;
            // hystart_ack_delay: 64 kB (GSO max) ·4 at the pacing rate, at
            // most 1 ms; halved because the sender does not pace.
            let ack_delay = if pacing_rate_bytes_per_second > 0.0 {
                (65_536.0 * 4.0 * 1e6 / pacing_rate_bytes_per_second).min(1000.0) as Micros
            } else {
                0
            };
            let threshold = (self.delay_min + ack_delay) >> 1;
            if now.saturating_sub(self.round_start) > threshold {
                self.found = true;
                *ssthresh = cwnd;
                exit = Some(HystartExit::AckTrain);
            }
        }
        // Delay increase.
        if self.curr_rtt > delay {
            self.curr_rtt = delay;
        }
        if self.sample_cnt < HYSTART_MIN_SAMPLES {
            self.sample_cnt += 1;
        } else {
            let threshold = (self.delay_min >> 3).clamp(HYSTART_DELAY_MIN, HYSTART_DELAY_MAX);
            if self.curr_rtt > self.delay_min + threshold {
                self.found = true;
                *ssthresh = cwnd;
                exit = Some(HystartExit::Delay);
            }
        }
        exit
    }

    /// `cubictcp_cong_avoid`: `acked` segments newly delivered while the
    /// window may grow.
    pub fn cong_avoid(
        &mut self,
        now: Micros,
        cwnd: &mut u32,
        cwnd_cnt: &mut u32,
        ssthresh: u32,
        mut acked: u32,
        cwnd_limited: bool,
    ) {
        if !cwnd_limited {
            return;
        }
        if *cwnd < ssthresh {
            // tcp_slow_start.
            let grown = (*cwnd + acked).min(ssthresh);
            acked -= grown - *cwnd;
            *cwnd = grown;
            if acked == 0 {
                return;
            }
        }
        self.update(now, *cwnd, acked);
        // tcp_cong_avoid_ai.
        let w = self.cnt;
        if *cwnd_cnt >= w {
            *cwnd_cnt = 0;
            *cwnd += 1;
        }
        *cwnd_cnt += acked;
        if *cwnd_cnt >= w {
            let delta = *cwnd_cnt / w;
            *cwnd_cnt -= delta * w;
            *cwnd += delta;
        }
    }

    /// `bictcp_update`: recomputes `cnt`, the ACKs per cwnd increment.
    fn update(&mut self, now: Micros, cwnd: u32, acked: u32) {
        self.ack_cnt += acked;
        if self.last_cwnd == cwnd && now.saturating_sub(self.last_time) <= 1_000_000 / 32 {
            return;
        }
        // At most once per jiffy (1 ms) unless the epoch was reset.
        let same_jiffy = self.epoch_start.is_some() && now / 1000 == self.last_time / 1000;
        if !same_jiffy {
            self.last_cwnd = cwnd;
            self.last_time = now;
            let epoch = match self.epoch_start {
                Some(epoch) => epoch,
                None => {
                    self.epoch_start = Some(now);
                    self.ack_cnt = acked;
                    self.tcp_cwnd = cwnd;
                    if self.last_max_cwnd <= cwnd {
                        self.k = 0.0;
                        self.origin_point = cwnd;
                    } else {
                        self.k = (f64::from(self.last_max_cwnd - cwnd) / C).cbrt();
                        self.origin_point = self.last_max_cwnd;
                    }
                    now
                }
            };
            // t is the time one minimum RTT from now, as Linux computes it.
            let t = (now - epoch + self.delay_min) as f64 / 1e6;
            let offs = (t - self.k).abs();
            let delta = (C * offs * offs * offs) as u32;
            let target = if t < self.k {
                self.origin_point.saturating_sub(delta)
            } else {
                self.origin_point.saturating_add(delta)
            };
            self.cnt = if target > cwnd {
                cwnd / (target - cwnd)
            } else {
                100 * cwnd
            };
            // Until the first loss, grow at least 5 % per RTT.
            if self.last_max_cwnd == 0 && self.cnt > 20 {
                self.cnt = 20;
            }
        }
        // Reno-friendly region.
        let delta = (cwnd * RENO_BETA_SCALE) >> 3;
        if delta > 0 {
            while self.ack_cnt > delta {
                self.ack_cnt -= delta;
                self.tcp_cwnd += 1;
            }
        }
        if self.tcp_cwnd > cwnd {
            let max_cnt = cwnd / (self.tcp_cwnd - cwnd);
            if self.cnt > max_cnt {
                self.cnt = max_cnt;
            }
        }
        // At most 1 segment per 2 ACKed: 1.5× per RTT.
        self.cnt = self.cnt.max(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_cut_and_fast_convergence() {
        let mut c = Cubic::new(true, 0, 0);
        assert_eq!(c.ssthresh(100), 70);
        assert_eq!(c.last_max_cwnd, 100);
        // A second loss below the previous maximum remembers less.
        assert_eq!(c.ssthresh(80), 56);
        assert_eq!(c.last_max_cwnd, 80 * 1741 / 2048);
    }

    #[test]
    fn reno_friendly_scale_matches_linux() {
        assert_eq!(RENO_BETA_SCALE, 15);
    }

    /// Per-RTT growth in congestion avoidance after a cut from 100 to 70:
    /// concave up to the old maximum, never more than 1.5× per RTT.
    #[test]
    fn concave_growth_back_to_the_old_maximum() {
        let mut c = Cubic::new(false, 0, 0);
        c.delay_min = 100_000;
        let mut cwnd = 100;
        let ssthresh = c.ssthresh(cwnd);
        cwnd = ssthresh;
        let mut cnt = 0;
        let mut now = 0;
        let mut history = vec![cwnd];
        for _ in 0..60 {
            // One RTT: one ACK per segment in flight.
            let at_start = cwnd;
            for _ in 0..at_start {
                now += 100_000 / u64::from(at_start);
                c.cong_avoid(now, &mut cwnd, &mut cnt, ssthresh, 1, true);
            }
            assert!(cwnd * 2 <= at_start * 3 + 2, "{at_start} -> {cwnd}");
            history.push(cwnd);
        }
        // K = cbrt(30 / 0.4) ≈ 4.2 s: near the old maximum after about
        // 42 RTTs, then beyond it.
        assert!(history[20] < 100, "{history:?}");
        assert!(history[35] >= 93 && history[35] <= 101, "{history:?}");
        assert!(history[60] > 100, "{history:?}");
    }

    #[test]
    fn hystart_delay_exit() {
        let mut c = Cubic::new(true, 0, 0);
        let mut ssthresh = INFINITE_SSTHRESH;
        let rate = 1e6;
        // A round at 100 ms sets delay_min.
        for i in 0..20 {
            let exit = c.pkts_acked(i * 5_000, Some(100_000), 20, &mut ssthresh, 0, 100, rate);
            assert_eq!(exit, None);
        }
        // Next round: 9 samples at 113 ms (over 100 + 12.5).
        let mut exit = None;
        for i in 0..9 {
            exit = exit.or(c.pkts_acked(
                200_000 + i * 5_000,
                Some(113_000),
                40,
                &mut ssthresh,
                200,
                400,
                rate,
            ));
        }
        assert_eq!(exit, Some(HystartExit::Delay));
        assert_eq!(ssthresh, 40);
    }

    #[test]
    fn hystart_needs_16_segments() {
        let mut c = Cubic::new(true, 0, 0);
        let mut ssthresh = INFINITE_SSTHRESH;
        c.pkts_acked(0, Some(100_000), 10, &mut ssthresh, 0, 10, 1e6);
        for i in 0..30 {
            let exit = c.pkts_acked(
                200_000 + i * 1000,
                Some(150_000),
                15,
                &mut ssthresh,
                100,
                200,
                1e6,
            );
            assert_eq!(exit, None);
        }
        assert_eq!(ssthresh, INFINITE_SSTHRESH);
    }
}
