//! The timestamp normaliser every real input shares: turns a source's timestamps,
//! which wrap (MPEG's 33 bits) and jump (an encoder restart, a camera's clock reset,
//! a spliced feed), into one timeline that never wraps, with every jump beyond a bound
//! declared as a discontinuity.
//!
//! Owns: unwrapping modulo the source's wrap, the jump rule, and the offset that makes
//! the timeline carry on after a jump. One `Timeline` serves every track of a
//! program, so audio and video keep their relative timing across a jump.
//!
//! Must not: know containers or codecs, read clocks, or decide what a discontinuity
//! does downstream (the caller starts a new epoch).

/// Timestamps in 90 kHz wrap here (MPEG-TS PTS/DTS, 33 bits).
pub const WRAP_33_BITS: u64 = 1 << 33;
/// Default bound: a timestamp more than 10 s from the previous one (either way) is a
/// jump. Far beyond B-frame reordering and audio/video interleaving, far below what a
/// wrap looks like.
pub const DEFAULT_MAX_JUMP_90K: u64 = 10 * 90_000;
/// Where the timeline goes on after a jump: this far after the latest timestamp seen
/// (one frame at 25 fps), so that it never runs backwards.
pub const JUMP_GAP_90K: u64 = 3_600;

/// One timestamp placed on the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub ts: u64,
    /// The timestamp jumped beyond the bound (or the caller said the source declared
    /// one): a discontinuity starts here.
    pub jumped: bool,
}

/// See the file comment. Values are in the source's ticks (90 kHz for MPEG-TS).
#[derive(Clone, Debug)]
pub struct Timeline {
    wrap: u64,
    max_jump: u64,
    /// The latest source timestamp seen, unwrapped (i128: no overflow either way).
    last: Option<i128>,
    /// Added to an unwrapped source timestamp to place it.
    offset: i128,
    /// Highest placed value so far (where a jump continues from).
    high: u64,
    /// The next timestamp starts a new stretch whatever its value.
    reset: bool,
    /// Where the next stretch should start, if the caller said (at least this; never
    /// before the timeline's highest value plus the gap).
    target: Option<u64>,
}

impl Timeline {
    /// `wrap`: the modulus of the source's timestamps (`WRAP_33_BITS`, or `u64::MAX`
    /// for a source that does not wrap); `max_jump`: the bound (ticks).
    pub fn new(wrap: u64, max_jump: u64) -> Timeline {
        Timeline {
            wrap: wrap.max(2),
            max_jump,
            last: None,
            offset: 0,
            high: 0,
            reset: false,
            target: None,
        }
    }

    /// For MPEG-TS: 33-bit wrap, the default bound.
    pub fn mpeg_ts() -> Timeline {
        Timeline::new(WRAP_33_BITS, DEFAULT_MAX_JUMP_90K)
    }

    /// The source declared a discontinuity (TS `discontinuity_indicator`, a
    /// reconnect): the next timestamp starts a new stretch even if it is close.
    pub fn declare_jump(&mut self) {
        self.reset = true;
    }

    /// Like [`Timeline::declare_jump`], and the new stretch starts at `at` (for
    /// instance the capture time in 90 kHz, so that a restarted source goes on where
    /// real time is), or just after the highest value so far if that is later: the
    /// timeline still never runs backwards. Before the first timestamp it sets where
    /// the timeline starts.
    pub fn declare_jump_to(&mut self, at: u64) {
        self.reset = true;
        self.target = Some(at);
    }

    /// Places one source timestamp (taken modulo the wrap).
    pub fn place(&mut self, raw: u64) -> Placed {
        let raw = i128::from(raw % self.wrap);
        let wrap = i128::from(self.wrap);
        let Some(last) = self.last else {
            // The first timestamp: the timeline starts where the caller said, or one
            // wrap in, so timestamps a little earlier (audio before video, B-frames)
            // stay positive.
            self.reset = false;
            self.offset = match self.target.take() {
                Some(at) => i128::from(at) - raw,
                None => wrap,
            };
            self.last = Some(raw);
            return self.placed(raw, false);
        };
        // The unwrapped value nearest the last one.
        let mut delta = (raw - last).rem_euclid(wrap);
        if delta >= wrap / 2 {
            delta -= wrap;
        }
        let unwrapped = last + delta;
        self.last = Some(unwrapped);
        let jumped =
            std::mem::take(&mut self.reset) || delta.unsigned_abs() > self.max_jump as u128;
        if jumped {
            let after_high = i128::from(self.high) + i128::from(JUMP_GAP_90K);
            let start = match self.target.take() {
                Some(at) => after_high.max(i128::from(at)),
                None => after_high,
            };
            self.offset = start - unwrapped;
        }
        self.placed(unwrapped, jumped)
    }

    fn placed(&mut self, unwrapped: i128, jumped: bool) -> Placed {
        let ts = (unwrapped + self.offset).clamp(0, i128::from(u64::MAX)) as u64;
        self.high = self.high.max(ts);
        Placed { ts, jumped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_33_bits_without_a_jump() {
        let mut t = Timeline::mpeg_ts();
        let start = WRAP_33_BITS - 7_200;
        let a = t.place(start);
        let b = t.place(start + 3_600);
        let c = t.place(0); // wrapped
        let d = t.place(3_600);
        assert!(!b.jumped && !c.jumped && !d.jumped);
        assert_eq!(b.ts - a.ts, 3_600);
        assert_eq!(c.ts - b.ts, 3_600);
        assert_eq!(d.ts - c.ts, 3_600);
    }

    #[test]
    fn a_jump_can_be_told_where_to_go_on_but_never_goes_back() {
        let mut t = Timeline::new(u64::MAX, DEFAULT_MAX_JUMP_90K);
        t.declare_jump_to(1_000_000);
        let a = t.place(0);
        assert_eq!((a.ts, a.jumped), (1_000_000, false));
        let b = t.place(3_600);
        assert_eq!(b.ts, 1_003_600);
        // A restart from 0, ten seconds of real time later.
        t.declare_jump_to(1_003_600 + 900_000);
        let c = t.place(0);
        assert!(c.jumped);
        assert_eq!(c.ts, 1_903_600);
        assert_eq!(t.place(3_600).ts, 1_907_200);
        // A target in the past (a clock stepped back): just after the highest.
        t.declare_jump_to(5);
        let d = t.place(0);
        assert!(d.jumped);
        assert_eq!(d.ts, 1_907_200 + JUMP_GAP_90K);
    }

    #[test]
    fn small_steps_back_are_not_jumps() {
        // B-frame PTS and audio slightly before video.
        let mut t = Timeline::mpeg_ts();
        let a = t.place(1_000);
        let b = t.place(400);
        assert!(!b.jumped);
        assert_eq!(a.ts - b.ts, 600);
        // Before the first timestamp across the wrap, too.
        let mut t = Timeline::mpeg_ts();
        let a = t.place(100);
        let b = t.place(WRAP_33_BITS - 100);
        assert!(!b.jumped);
        assert_eq!(a.ts - b.ts, 200);
    }

    #[test]
    fn a_jump_beyond_the_bound_is_declared_and_the_timeline_goes_on() {
        let mut t = Timeline::mpeg_ts();
        let a = t.place(900_000);
        let b = t.place(900_000 + 3_600);
        let c = t.place(5_000_000_000); // encoder restarted elsewhere
        assert!(c.jumped);
        assert_eq!(c.ts, b.ts + JUMP_GAP_90K);
        let d = t.place(5_000_000_000 + 3_600);
        assert!(!d.jumped);
        assert_eq!(d.ts, c.ts + 3_600);
        // Backwards beyond the bound is a jump too, and the timeline still goes on.
        let e = t.place(10);
        assert!(e.jumped);
        assert!(e.ts > d.ts);
        assert!(a.ts < b.ts);
    }

    #[test]
    fn a_declared_jump_starts_a_new_stretch() {
        let mut t = Timeline::mpeg_ts();
        t.place(1_000);
        t.declare_jump();
        let b = t.place(1_000);
        assert!(b.jumped);
        assert!(!t.place(4_600).jumped);
    }

    #[test]
    fn any_sequence_is_monotonic_across_jumps_and_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut t = Timeline::mpeg_ts();
        let mut last = None;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = t.place(x);
            if p.jumped {
                if let Some(l) = last {
                    assert!(p.ts > l, "a jump goes forwards");
                }
            }
            last = Some(last.map_or(p.ts, |l: u64| l.max(p.ts)));
        }
    }
}
