//! Decode timestamps for a video source that sends presentation times only (RTP: an
//! RTSP camera). Without B-frames decode order is presentation order and DTS = PTS.
//! With B-frames a frame may arrive before frames shown earlier than it, so each frame
//! needs a DTS that goes up in arrival (decode) order and is never after its PTS.
//!
//! The rule, with R the stream's reorder depth (how many frames that arrive before a
//! frame may be shown after it): the DTS of the i-th frame is the (i−R)-th smallest
//! PTS seen so far. That needs no look-ahead, so it adds no latency, and it is right
//! whenever the depth is at most R: the frames are kept in a min-heap of R + 1 PTS
//! and each arrival pops the smallest. The first R frames of a run, before the heap
//! is full, get DTS spread evenly below the first PTS.
//!
//! R starts at what the driver knows (0 when it knows nothing) and is learnt: a frame
//! that more than R earlier frames are shown after raises R to that count. The DTS
//! already given cannot move, so the run starts again at the next keyframe, and the
//! frames until then are dropped (a B-frame camera without a stated depth loses part
//! of one GOP per session, once).
//!
//! Owns: that rule. Must not: look inside the pictures or read a clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// The deepest reordering taken: H.264 and H.265 decoders hold at most 16 frames.
pub const MAX_REORDER_DEPTH: usize = 16;

/// Why a frame got no DTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoDts {
    /// The same PTS as a recent frame: a duplicate, or a sender that stepped back.
    Repeated,
    /// The frame showed that the reorder depth is deeper than assumed; the run starts
    /// again at the next keyframe, and frames until then are dropped.
    Relearning,
    /// Deeper reordering than [`MAX_REORDER_DEPTH`].
    TooDeep,
    /// Shown before the keyframe that started the current run (a leading picture
    /// of an open GOP at the start of a run).
    Leading,
    /// A keyframe at or before the last DTS given: the sender's clock stepped back.
    Backwards,
}

/// Gives each video frame of one session its DTS (see the module comment).
#[derive(Clone, Debug)]
pub struct DecodeTimes {
    depth: usize,
    /// PTS of the current run not yet given out as a DTS.
    heap: BinaryHeap<Reverse<u64>>,
    /// The last DTS given, if any.
    last_dts: Option<u64>,
    /// Frames of the current run so far.
    in_run: usize,
    /// The first PTS of the current run and the DTS below which its first R frames
    /// are spread.
    run_start: (u64, u64),
    /// PTS of the last frames (at most `MAX_REORDER_DEPTH + 1`), to count how many
    /// arrived before a frame yet are shown after it.
    recent: VecDeque<u64>,
    /// Waiting for a keyframe to start a new run.
    restart: bool,
}

impl DecodeTimes {
    /// `depth`: the reorder depth the stream states (its SPS), 0 when unknown.
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.min(MAX_REORDER_DEPTH),
            heap: BinaryHeap::new(),
            last_dts: None,
            in_run: 0,
            run_start: (0, 0),
            recent: VecDeque::new(),
            restart: true,
        }
    }

    /// The stream states a deeper reordering (a new SPS): the run starts again at
    /// the next keyframe with that depth, above the DTS given so far.
    pub fn raise_depth(&mut self, depth: usize) {
        let depth = depth.min(MAX_REORDER_DEPTH);
        if depth > self.depth {
            self.depth = depth;
            self.restart = true;
        }
    }

    /// The reorder depth assumed now.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The DTS of the next frame in arrival order, whose PTS is `pts`. `frame_ticks`
    /// is a frame's duration as far as the caller knows it (it spaces the first
    /// frames of a run); PTS must be at least `(depth + 1) * frame_ticks` from zero
    /// for those to fit, which the caller ensures by starting its timeline above it.
    pub fn dts(&mut self, pts: u64, keyframe: bool, frame_ticks: u64) -> Result<u64, NoDts> {
        if self.recent.contains(&pts) {
            return Err(NoDts::Repeated);
        }
        let later = self.recent.iter().filter(|&&p| p > pts).count();
        if self.recent.len() > MAX_REORDER_DEPTH {
            self.recent.pop_front();
        }
        self.recent.push_back(pts);
        if later > MAX_REORDER_DEPTH {
            self.restart = true;
            return Err(NoDts::TooDeep);
        }
        if self.restart {
            if !keyframe {
                return Err(NoDts::Relearning);
            }
            self.start_run(pts, frame_ticks)?;
        } else if pts < self.run_start.0 {
            // Shown before the keyframe that started the run: a leading picture of an
            // open GOP, which refers to pictures before the run (decoders skip these
            // at a random access point too).
            return Err(NoDts::Leading);
        } else if later > self.depth {
            // Deeper than assumed: the DTS given so far assumed the old depth.
            self.depth = later;
            self.restart = true;
            return Err(NoDts::Relearning);
        }
        self.heap.push(Reverse(pts));
        let dts = if self.in_run < self.depth {
            // The first R DTS of a run: evenly between the DTS before the run and its
            // first PTS.
            let (first, before) = self.run_start;
            let step = (first - before) / (self.depth as u64 + 1);
            before + step * (self.in_run as u64 + 1)
        } else {
            match self.heap.pop() {
                Some(Reverse(p)) => p,
                None => pts,
            }
        };
        self.in_run += 1;
        if self.last_dts.is_some_and(|l| dts <= l) || dts > pts {
            // Deeper reordering than `later` showed (a frame shown before frames that
            // left the window): relearn one deeper.
            self.depth = (self.depth + 1).min(MAX_REORDER_DEPTH);
            self.restart = true;
            return Err(NoDts::Relearning);
        }
        self.last_dts = Some(dts);
        Ok(dts)
    }

    /// Starts a run at keyframe `pts`: room below it for the first R DTS, above the
    /// last DTS given.
    fn start_run(&mut self, pts: u64, frame_ticks: u64) -> Result<(), NoDts> {
        let room = frame_ticks.max(1) * (self.depth as u64 + 1);
        let before = pts.saturating_sub(room).max(self.last_dts.unwrap_or(0));
        if pts.saturating_sub(before) <= self.depth as u64 {
            // No room for R increasing DTS below this PTS: the sender's clock stepped
            // back (or the timeline starts too close to zero).
            return Err(NoDts::Backwards);
        }
        self.restart = false;
        self.heap.clear();
        self.in_run = 0;
        self.run_start = (pts, before);
        self.recent.clear();
        self.recent.push_back(pts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: u64 = 3600; // 40 ms at 90 kHz

    /// Feeds (pts in frames, keyframe) and returns the DTS given (in ticks) or why not.
    fn run(depth: usize, frames: &[(u64, bool)]) -> Vec<Result<u64, NoDts>> {
        let mut d = DecodeTimes::new(depth);
        frames
            .iter()
            .map(|&(p, k)| d.dts(90_000 + p * D, k, D))
            .collect()
    }

    fn check_valid(frames: &[(u64, bool)], out: &[Result<u64, NoDts>]) {
        let mut last = None;
        for (&(p, _), r) in frames.iter().zip(out) {
            if let Ok(dts) = r {
                assert!(
                    *dts <= 90_000 + p * D,
                    "DTS {dts} after PTS of frame {p}: {out:?}"
                );
                assert!(last.is_none_or(|l| *dts > l), "DTS not increasing: {out:?}");
                last = Some(*dts);
            }
        }
    }

    #[test]
    fn without_reordering_dts_is_pts() {
        let frames: Vec<(u64, bool)> = (0..10).map(|i| (i, i % 5 == 0)).collect();
        let out = run(0, &frames);
        let want: Vec<Result<u64, NoDts>> = (0..10).map(|i| Ok(90_000 + i * D)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn stated_depth_takes_every_b_frame_from_the_start() {
        // x264 -bf 2 with a B-pyramid: I0 P3 B2 b1 P6 B5 b4 (decode order), depth 2.
        let frames = [
            (0, true),
            (3, false),
            (2, false),
            (1, false),
            (6, false),
            (5, false),
            (4, false),
            (9, true),
            (8, false),
            (7, false),
        ];
        let out = run(2, &frames);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        check_valid(&frames, &out);
        // From the third frame on, DTS is the PTS two frames back in display order.
        assert_eq!(out[2], Ok(90_000));
        assert_eq!(out[6], Ok(90_000 + 4 * D));
    }

    #[test]
    fn an_unstated_depth_is_learnt_at_the_next_keyframe() {
        let frames = [
            (0, true),
            (2, false),
            (1, false), // one earlier frame shown after it: depth 1, relearn
            (4, false),
            (3, false),
            (5, true), // the new run
            (7, false),
            (6, false),
            (9, false),
            (8, false),
        ];
        let out = run(0, &frames);
        assert_eq!(out[0], Ok(90_000));
        assert_eq!(out[1], Ok(90_000 + 2 * D));
        assert_eq!(&out[2..5], &[Err(NoDts::Relearning); 3]);
        assert!(out[5..].iter().all(Result::is_ok), "{out:?}");
        check_valid(&frames, &out);
    }

    #[test]
    fn repeated_and_too_deep_frames_are_refused() {
        let mut d = DecodeTimes::new(0);
        assert_eq!(d.dts(90_000, true, D), Ok(90_000));
        assert_eq!(d.dts(90_000, false, D), Err(NoDts::Repeated));
        let mut d = DecodeTimes::new(0);
        let mut out = Vec::new();
        out.push(d.dts(1_000_000, true, D));
        for i in 1..=(MAX_REORDER_DEPTH as u64 + 2) {
            out.push(d.dts(1_000_000 + (40 - i) * D, false, D));
        }
        assert!(out.contains(&Err(NoDts::TooDeep)), "{out:?}");
        assert!(d.depth() <= MAX_REORDER_DEPTH);
        // A leading picture of an open GOP at the start of a run, and a keyframe
        // that steps back behind the last DTS.
        let mut d = DecodeTimes::new(1);
        assert!(d.dts(180_000, true, D).is_ok());
        assert_eq!(d.dts(180_000 - D, false, D), Err(NoDts::Leading));
        assert!(d.dts(180_000 + D, false, D).is_ok());
        d.raise_depth(2);
        assert_eq!(d.dts(90_000, true, D), Err(NoDts::Backwards));
    }

    #[test]
    fn random_reorderings_within_the_depth_always_give_valid_dts() {
        // Every GOP: a keyframe, then frames permuted within windows of depth + 1.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for depth in 0..4usize {
            let mut frames = Vec::new();
            let mut base = 0;
            for _ in 0..20 {
                frames.push((base, true));
                let mut gop: Vec<u64> = (base + 1..base + 12).collect();
                for w in gop.chunks_mut(depth + 1) {
                    let k = (next() % w.len() as u64) as usize;
                    w.rotate_left(k);
                }
                frames.extend(gop.into_iter().map(|p| (p, false)));
                base += 12;
            }
            let out = run(depth, &frames);
            check_valid(&frames, &out);
            let taken = out.iter().filter(|r| r.is_ok()).count();
            assert_eq!(taken, frames.len(), "depth {depth}: {out:?}");
        }
    }
}
