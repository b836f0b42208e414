//! The origin's output timeline: a stream's frames from its local inputs, moved onto
//! one running timeline before the segmenter, so a restarted source, a switched input
//! or a restarted node continues the timestamps players saw instead of starting again
//! from 0. Each source epoch (a restart or switch) starts where real time is: its
//! first frame's capture time in 90 kHz (UTC ms × 90), never before the timeline's
//! highest value (the shared `Timeline` normaliser decides that). The epoch change
//! still marks the discontinuity (positions are untouched).
//!
//! Owns: the per-stream offset and its conversion into each track's timescale.
//! Must not: run on frames from a cluster peer (edges never rebase, so their answers
//! stay the origin's bytes), read clocks, or change positions or capture times.

use crate::media::{ticks_to_90k, Frame};
use crate::timeline::{Timeline, DEFAULT_MAX_JUMP_90K};

#[derive(Clone, Debug)]
pub struct Rebaser {
    timeline: Timeline,
    epoch: Option<u64>,
}

impl Default for Rebaser {
    fn default() -> Self {
        Rebaser {
            // Frames carry unwrapped u64 timestamps: no wrap.
            timeline: Timeline::new(u64::MAX, DEFAULT_MAX_JUMP_90K),
            epoch: None,
        }
    }
}

impl Rebaser {
    /// Moves `frame` (of a track with `timescale` ticks per second) onto the running
    /// timeline: DTS and PTS shift by the same amount, so their distance, and the
    /// tracks' relative timing, are kept.
    pub fn rebase(&mut self, frame: &mut Frame, timescale: u32) {
        let timescale = timescale.max(1);
        if self.epoch != Some(frame.pos.epoch) {
            self.epoch = Some(frame.pos.epoch);
            self.timeline
                .declare_jump_to(frame.capture_ms.saturating_mul(90));
        }
        let raw = ticks_to_90k(frame.dts, timescale);
        let placed = self.timeline.place(raw);
        let offset_90k = i128::from(placed.ts) - i128::from(raw);
        let offset = offset_90k * i128::from(timescale) / 90_000;
        let shift = |t: u64| (i128::from(t) + offset).clamp(0, i128::from(u64::MAX)) as u64;
        frame.dts = shift(frame.dts);
        frame.pts = shift(frame.pts);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::Position;

    fn frame(track: u8, dts: u64, epoch: u64, seq: u64, capture_ms: u64) -> Frame {
        Frame {
            track,
            dts,
            pts: dts + 3600,
            keyframe: true,
            capture_ms,
            pos: Position { epoch, seq },
            payload: Bytes::new(),
        }
    }

    #[test]
    fn a_restarted_source_goes_on_at_real_time_and_tracks_stay_in_step() {
        let mut r = Rebaser::default();
        let t0 = 1_767_225_600_000u64;
        // Epoch 1: video at 90 kHz, audio at 48 kHz, both from 0.
        let mut v = frame(1, 0, 1, 0, t0);
        let mut a = frame(2, 0, 1, 1, t0);
        r.rebase(&mut v, 90_000);
        r.rebase(&mut a, 48_000);
        assert_eq!(v.dts, t0 * 90);
        assert_eq!(v.pts - v.dts, 3600);
        assert_eq!(a.dts as u128 * 90_000 / 48_000, u128::from(t0) * 90);
        let mut v2 = frame(1, 90_000, 1, 2, t0 + 1000);
        r.rebase(&mut v2, 90_000);
        assert_eq!(v2.dts, (t0 + 1000) * 90);
        // The source restarts 5 s later, its timestamps from 0 again: the timeline
        // goes on at the restart's capture time.
        let mut v3 = frame(1, 0, 2, 0, t0 + 6000);
        let mut a3 = frame(2, 0, 2, 1, t0 + 6000);
        r.rebase(&mut v3, 90_000);
        r.rebase(&mut a3, 48_000);
        assert_eq!(v3.dts, (t0 + 6000) * 90);
        assert_eq!(a3.dts as u128 * 90_000 / 48_000, u128::from(v3.dts));
        assert_eq!(v3.pos, Position { epoch: 2, seq: 0 }, "positions untouched");
    }

    #[test]
    fn a_clock_stepped_back_never_sends_timestamps_back() {
        let mut r = Rebaser::default();
        let mut a = frame(1, 0, 1, 0, 10_000);
        r.rebase(&mut a, 90_000);
        let mut b = frame(1, 900_000, 1, 1, 20_000);
        r.rebase(&mut b, 90_000);
        // New epoch whose capture time is before what was already sent.
        let mut c = frame(1, 0, 2, 0, 5_000);
        r.rebase(&mut c, 90_000);
        assert!(c.dts > b.dts, "{} after {}", c.dts, b.dts);
    }
}
