//! Timestamp sanity of what a cluster peer sends (an edge keeps the origin's
//! timestamps as received, so nothing else bounds them): a frame or segment whose
//! decode time or capture time jumps beyond a bound from the previous one starts a
//! discontinuity, and one whose capture time is far from this node's clock is refused,
//! so playlist fields (`EXT-X-TARGETDURATION`, `EXT-X-PROGRAM-DATE-TIME`) are computed
//! from sane values only: never a 49-day segment or a date in year 584 million.
//!
//! Owns: the bounds and the jump rule for received frames and segments. Must not:
//! change a frame (edges answer with the origin's bytes), read a clock (the caller
//! passes its UTC now) or decide what a discontinuity does (the hub cuts the segment
//! and marks it). Local inputs go through `timeline`/`rebase` instead.

use crate::media::{ticks_to_90k, Frame, UtcMs};
use crate::segment::Segment;

/// A decode time more than this (90 kHz, 10 s) from the previous frame's, of any
/// track, is a jump: far beyond B-frame reordering and audio/video interleaving.
pub const MAX_DTS_JUMP_90K: u64 = crate::timeline::DEFAULT_MAX_JUMP_90K;
/// A capture time more than this from the previous frame's is a jump (10 s).
pub const MAX_CAPTURE_JUMP_MS: u64 = 10_000;
/// A capture time further than this from this node's clock is refused (1 h): live
/// frames arrive within seconds of their capture, and cluster auth already keeps
/// peers' clocks within 30 s of each other.
pub const MAX_CAPTURE_SKEW_MS: u64 = 3_600_000;
/// A segment received whole (M4F) longer than this is refused (10 min; a segment is
/// at most `segment_duration`, 60 s, plus a GOP).
pub const MAX_SEGMENT_MS: u32 = 600_000;

/// What to do with a received frame or segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Follows the previous one.
    Follows,
    /// Usable, but its timestamps jumped: a discontinuity starts here.
    Jump(&'static str),
    /// Not usable (dropped, with the reason logged).
    Refused(&'static str),
}

/// The previous frame's times, for the jump rule.
#[derive(Clone, Debug, Default)]
pub struct FrameSanity {
    last_dts_90k: Option<u64>,
    last_capture_ms: Option<UtcMs>,
}

fn far(a: u64, b: u64, bound: u64) -> bool {
    a.abs_diff(b) > bound
}

impl FrameSanity {
    /// Checks `frame` (of a track with `timescale` ticks per second) received at
    /// `now_utc_ms`; a frame that is not refused becomes the previous one.
    pub fn frame(&mut self, frame: &Frame, timescale: u32, now_utc_ms: UtcMs) -> Verdict {
        if far(frame.capture_ms, now_utc_ms, MAX_CAPTURE_SKEW_MS) {
            return Verdict::Refused("its capture time is more than 1 h from this node's clock");
        }
        let dts = ticks_to_90k(frame.dts, timescale);
        let verdict = if self
            .last_dts_90k
            .is_some_and(|l| far(dts, l, MAX_DTS_JUMP_90K))
        {
            Verdict::Jump("its decode time jumped more than 10 s")
        } else if self
            .last_capture_ms
            .is_some_and(|l| far(frame.capture_ms, l, MAX_CAPTURE_JUMP_MS))
        {
            Verdict::Jump("its capture time jumped more than 10 s")
        } else {
            Verdict::Follows
        };
        self.last_dts_90k = Some(dts);
        self.last_capture_ms = Some(frame.capture_ms);
        verdict
    }

    /// Checks a segment received whole: its duration and every frame's capture time
    /// must be sane; a jump from the previous segment starts a discontinuity.
    pub fn segment(&mut self, seg: &Segment, now_utc_ms: UtcMs) -> Verdict {
        if seg.duration_ms > MAX_SEGMENT_MS {
            return Verdict::Refused("it lasts more than 10 min");
        }
        if far(seg.utc_start_ms, now_utc_ms, MAX_CAPTURE_SKEW_MS)
            || seg
                .frames
                .iter()
                .any(|f| far(f.capture_ms, now_utc_ms, MAX_CAPTURE_SKEW_MS))
        {
            return Verdict::Refused("a capture time is more than 1 h from this node's clock");
        }
        let mut verdict = Verdict::Follows;
        for f in &seg.frames {
            let timescale = seg
                .media_info
                .track(f.track)
                .map_or(90_000, |t| t.timescale());
            if let (Verdict::Follows, Verdict::Jump(why)) =
                (verdict, self.frame(f, timescale, now_utc_ms))
            {
                verdict = Verdict::Jump(why);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::media::{MediaInfo, Position, TrackInfo, TrackParams};

    const NOW: u64 = 1_767_225_600_000;

    fn frame(dts: u64, capture_ms: u64, seq: u64) -> Frame {
        Frame {
            track: 1,
            dts,
            pts: dts,
            keyframe: true,
            capture_ms,
            pos: Position { epoch: 1, seq },
            payload: Bytes::new(),
        }
    }

    #[test]
    fn absurd_timestamps_are_jumps_or_refused() {
        let mut s = FrameSanity::default();
        assert_eq!(s.frame(&frame(0, NOW, 0), 90_000, NOW), Verdict::Follows);
        assert_eq!(
            s.frame(&frame(3600, NOW + 40, 1), 90_000, NOW),
            Verdict::Follows
        );
        // The probe's frame: dts 2^64-1 (capture sane) ...
        assert!(matches!(
            s.frame(&frame(u64::MAX, NOW + 80, 2), 90_000, NOW),
            Verdict::Jump(_)
        ));
        // ... and back: another jump.
        assert!(matches!(
            s.frame(&frame(7200, NOW + 120, 3), 90_000, NOW),
            Verdict::Jump(_)
        ));
        // Capture 0 is refused, and does not become the previous frame.
        assert!(matches!(
            s.frame(&frame(10_800, 0, 4), 90_000, NOW),
            Verdict::Refused(_)
        ));
        assert_eq!(
            s.frame(&frame(10_800, NOW + 160, 4), 90_000, NOW),
            Verdict::Follows
        );
        // A capture time that jumps within the skew bound is a jump.
        assert!(matches!(
            s.frame(&frame(14_400, NOW + 60_000, 5), 90_000, NOW),
            Verdict::Jump(_)
        ));
        // Audio in its own timescale is compared in 90 kHz.
        assert_eq!(
            s.frame(&frame(8_000, NOW + 60_040, 6), 48_000, NOW),
            Verdict::Follows
        );
    }

    #[test]
    fn absurd_segments_are_refused() {
        let mi = Arc::new(MediaInfo {
            tracks: vec![TrackInfo {
                id: 1,
                params: TrackParams::H264 {
                    sps: Bytes::new(),
                    pps: Bytes::new(),
                    width: 320,
                    height: 240,
                    fps: 25,
                },
            }],
        });
        let seg = |utc: u64, duration_ms: u32, dts: u64| Segment {
            media_info: mi.clone(),
            utc_start_ms: utc,
            duration_ms,
            frames: vec![frame(dts, utc, 0)],
        };
        let mut s = FrameSanity::default();
        assert_eq!(s.segment(&seg(NOW, 2000, 0), NOW), Verdict::Follows);
        assert!(matches!(
            s.segment(&seg(NOW, u32::MAX, 180_000), NOW),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            s.segment(&seg(u64::MAX, 2000, 180_000), NOW),
            Verdict::Refused(_)
        ));
        assert_eq!(
            s.segment(&seg(NOW + 2000, 2000, 180_000), NOW),
            Verdict::Follows
        );
        assert!(matches!(
            s.segment(&seg(NOW + 4000, 2000, u64::MAX), NOW),
            Verdict::Jump(_)
        ));
    }
}
