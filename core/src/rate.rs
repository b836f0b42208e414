//! Bandwidth on the cluster link: a token bucket that paces a class of transfers to a
//! rate, a meter that says what rate went out, and the origin's `cluster_bandwidth`
//! budget that puts live pulls before archive pulls.
//!
//! The budget's rule (README "Bandwidth caps"):
//! - live output is never paced (pacing live is latency); a new live pull is refused
//!   while the live output of the last second already takes 90% of the cap;
//! - archive output is paced by a token bucket whose rate is what live leaves of the
//!   cap, but never less than 10% of it, so an archive read always moves and never
//!   starves into the reader's idle timeout.
//!
//! Contract (core's, see lib.rs): time is passed in; the driver asks how long to wait
//! before sending more and sleeps itself. Must not: sleep, read a clock or count
//! anything but the bytes it is told of.

use std::time::Duration;

/// Bytes per second of a RATE in bits per second.
fn bytes_per_s(bits_per_s: u64) -> u64 {
    (bits_per_s / 8).max(1)
}

/// Paces transfers to a rate: each send takes tokens (bytes); an empty bucket goes
/// into debt, and the sender waits until the debt is paid back at the rate.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Bytes that may go now; negative is debt.
    tokens: i64,
    last: Duration,
}

impl TokenBucket {
    /// A bucket of `bits_per_s`, holding at most a quarter second of it (at least
    /// 64 KiB), full at `now`.
    pub fn new(bits_per_s: u64, now: Duration) -> Self {
        let rate = bytes_per_s(bits_per_s);
        let burst = Self::burst_of(rate);
        TokenBucket {
            rate,
            burst,
            tokens: burst as i64,
            last: now,
        }
    }

    /// A quarter second of the rate, at least 64 KiB.
    fn burst_of(rate: u64) -> u64 {
        (rate / 4).max(64 * 1024)
    }

    /// Changes the rate (the budget moves the archive share as live comes and
    /// goes); what was saved up beyond the new burst is dropped.
    pub fn set_rate(&mut self, now: Duration, bits_per_s: u64) {
        self.refill(now);
        self.rate = bytes_per_s(bits_per_s);
        self.burst = Self::burst_of(self.rate);
        self.tokens = self.tokens.min(self.burst as i64);
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let add = (elapsed.as_micros() * u128::from(self.rate) / 1_000_000) as i64;
        self.tokens = self.tokens.saturating_add(add).min(self.burst as i64);
    }

    /// `bytes` were sent (or are about to be); returns how long to wait before the
    /// next send so the average stays at the rate.
    pub fn take(&mut self, now: Duration, bytes: u64) -> Duration {
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(bytes as i64);
        if self.tokens >= 0 {
            return Duration::ZERO;
        }
        let debt = self.tokens.unsigned_abs();
        Duration::from_micros((debt as u128 * 1_000_000 / self.rate as u128) as u64)
    }
}

/// What went out in the last whole second (bytes), for a budget to look at.
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    /// Start of the current second.
    second: Duration,
    current: u64,
    previous: u64,
}

impl RateMeter {
    pub fn add(&mut self, now: Duration, bytes: u64) {
        self.roll(now);
        self.current = self.current.saturating_add(bytes);
    }

    fn roll(&mut self, now: Duration) {
        let secs = now.as_secs();
        let at = self.second.as_secs();
        if secs == at {
            return;
        }
        self.previous = if secs == at + 1 { self.current } else { 0 };
        self.current = 0;
        self.second = Duration::from_secs(secs);
    }

    /// Bits per second over the last whole second, or the current one if it
    /// already carried more.
    pub fn bits_per_s(&mut self, now: Duration) -> u64 {
        self.roll(now);
        self.previous.max(self.current).saturating_mul(8)
    }
}

/// Why a new pull is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetRefusal {
    #[error(
        "cluster_bandwidth reached: live pulls take {live_kbps} kbit/s of the {cap_kbps} kbit/s \
         cap (10% is kept for archive pulls); retry later"
    )]
    LiveFull { live_kbps: u64, cap_kbps: u64 },
}

/// The origin's `cluster_bandwidth`: all cluster output, live first.
#[derive(Clone, Debug)]
pub struct ClusterBudget {
    cap: u64,
    live: RateMeter,
    archive: TokenBucket,
}

/// The share of the cap live pulls may fill before new ones are refused; the rest
/// is kept for archive pulls.
pub const LIVE_SHARE_PERCENT: u64 = 90;
/// The least share of the cap archive pulls always get.
pub const ARCHIVE_FLOOR_PERCENT: u64 = 10;

impl ClusterBudget {
    pub fn new(cap_bits_per_s: u64, now: Duration) -> Self {
        ClusterBudget {
            cap: cap_bits_per_s,
            live: RateMeter::default(),
            archive: TokenBucket::new(cap_bits_per_s, now),
        }
    }

    /// May a new live pull start now?
    pub fn admit_live(&mut self, now: Duration) -> Result<(), BudgetRefusal> {
        let live = self.live.bits_per_s(now);
        if live.saturating_mul(100) >= self.cap.saturating_mul(LIVE_SHARE_PERCENT) {
            return Err(BudgetRefusal::LiveFull {
                live_kbps: live / 1000,
                cap_kbps: self.cap / 1000,
            });
        }
        Ok(())
    }

    /// Live bytes went out (never paced).
    pub fn handle_live_sent(&mut self, now: Duration, bytes: u64) {
        self.live.add(now, bytes);
    }

    /// Archive bytes are about to go out; returns how long to wait first. The
    /// archive rate is what live leaves of the cap, at least the floor.
    pub fn archive_delay(&mut self, now: Duration, bytes: u64) -> Duration {
        let live = self.live.bits_per_s(now);
        let floor = self.cap / 100 * ARCHIVE_FLOOR_PERCENT;
        let rate = self.cap.saturating_sub(live).max(floor);
        self.archive.set_rate(now, rate);
        self.archive.take(now, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `total` bytes in `chunk`s through `delay`, sleeping as told; returns
    /// the time it took.
    fn pace(mut delay: impl FnMut(Duration, u64) -> Duration, total: u64, chunk: u64) -> Duration {
        let mut now = Duration::ZERO;
        let mut sent = 0;
        while sent < total {
            now += delay(now, chunk);
            sent += chunk;
        }
        now
    }

    #[test]
    fn bucket_paces_to_its_rate_after_the_burst() {
        // 8 Mbit/s = 1 MB/s; 10 MB in 64 KiB chunks takes about 10 s (less the
        // quarter-second burst).
        let mut b = TokenBucket::new(8_000_000, Duration::ZERO);
        let took = pace(|now, n| b.take(now, n), 10_000_000, 65_536);
        assert!(took >= ms(9_600) && took <= ms(10_100), "{took:?}");
    }

    #[test]
    fn bucket_does_not_save_up_more_than_its_burst() {
        let mut b = TokenBucket::new(8_000_000, Duration::ZERO);
        // An hour idle, then 2 MB: only the burst (250 kB) goes at once.
        let now = Duration::from_secs(3600);
        let wait = b.take(now, 2_000_000);
        assert!(wait >= ms(1_700) && wait <= ms(1_800), "{wait:?}");
    }

    #[test]
    fn meter_reports_the_last_whole_second() {
        let mut m = RateMeter::default();
        m.add(ms(100), 500_000);
        m.add(ms(900), 500_000);
        assert_eq!(m.bits_per_s(ms(1_200)), 8_000_000);
        assert_eq!(m.bits_per_s(ms(3_500)), 0, "a silent second");
    }

    #[test]
    fn live_is_refused_past_its_share_and_archive_keeps_its_floor() {
        // 100 Mbit/s cap; live sends 95 Mbit/s for a second.
        let mut b = ClusterBudget::new(100_000_000, Duration::ZERO);
        assert_eq!(b.admit_live(Duration::ZERO), Ok(()));
        for i in 0..95 {
            b.handle_live_sent(ms(i * 10), 125_000);
        }
        let now = ms(1_000);
        let refused = b.admit_live(now);
        assert!(
            matches!(
                refused,
                Err(BudgetRefusal::LiveFull {
                    live_kbps: 95_000,
                    cap_kbps: 100_000
                })
            ),
            "{refused:?}"
        );
        // Archive still moves, at the 10 Mbit/s floor: 10 MB takes about 8 s,
        // while live keeps sending its 95 Mbit/s (in 10 ms ticks).
        let mut t = now;
        let mut next_archive = now;
        let mut sent = 0u64;
        while sent < 10_000_000 {
            t += ms(10);
            b.handle_live_sent(t, 95_000_000 / 8 / 100);
            if t >= next_archive {
                next_archive = t + b.archive_delay(t, 100_000);
                sent += 100_000;
            }
        }
        let took = t - now;
        assert!(took >= ms(7_000) && took <= ms(9_000), "{took:?}");
    }

    #[test]
    fn archive_takes_what_live_leaves() {
        // No live: archive may use the whole 80 Mbit/s (10 MB/s): 20 MB in ~2 s.
        let mut b = ClusterBudget::new(80_000_000, Duration::ZERO);
        let took = pace(|now, n| b.archive_delay(now, n), 20_000_000, 100_000);
        assert!(took >= ms(1_700) && took <= ms(2_100), "{took:?}");
    }
}
