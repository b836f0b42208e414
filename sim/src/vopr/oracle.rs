//! The pure simulator's oracles, checked as the run goes:
//! - order and no duplicate: each node publishes a stream position at most once,
//!   and within an epoch in increasing order;
//! - keyframe after a gap: a published frame that does not follow the previous one
//!   (and the very first) starts decoding (a video keyframe);
//! - on the wire: a response's first frame, and any frame that does not follow the
//!   previous one on it, starts decoding; a resumed response never repeats a frame
//!   at or before its `from`;
//! - segments: every segment a node cuts starts at a video keyframe, right after the
//!   previous segment unless the stream itself had a discontinuity in between;
//! - latency and recovery bounds: every frame the origin publishes reaches every
//!   edge within the path's latency bound, unless a fault on that path excuses it
//!   (a fault excuses frames from just before it until its recovery bound after it);
//! - no dead peer on a healthy link: a connection whose link had no fault for the
//!   dead-peer timeout is never given up as dead (heartbeats carry a silent source).
//!
//! Owns: the checks and the record of what was published. Must not: change what the
//! machines do.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use tern_core::keyframe::starts_decoding;
use tern_core::{Frame, Position};

/// One oracle failure: when, where, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Duration,
    pub node: usize,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:?} node {}: {}", self.at, self.node, self.what)
    }
}

/// What one node has published, checked frame by frame.
#[derive(Debug, Default)]
pub struct Published {
    last: Option<Position>,
    /// Published positions not yet matched against the origin's list.
    seen: BTreeSet<Position>,
    pub frames: u64,
    pub gaps: u64,
}

impl Published {
    /// Checks and records one published frame; returns a failure if any.
    /// `receiver`: the node got it from a peer (so it must restart at a keyframe
    /// after a gap); a source's own frames are published as they come.
    pub fn publish(&mut self, video: Option<u8>, f: &Frame, receiver: bool) -> Option<String> {
        self.frames += 1;
        let follows = self.last.is_some_and(|l| l.is_followed_by(f.pos));
        let problem = if !self.seen.insert(f.pos) {
            Some(format!("published {:?} twice", f.pos))
        } else if self
            .last
            .is_some_and(|l| l.epoch == f.pos.epoch && f.pos.seq <= l.seq)
        {
            Some(format!("published {:?} after {:?}", f.pos, self.last))
        } else if receiver && !follows && !starts_decoding(video, f) {
            Some(format!(
                "{:?} after {:?} is not a keyframe (first frame or after a gap)",
                f.pos, self.last
            ))
        } else {
            None
        };
        if !follows && self.last.is_some() {
            self.gaps += 1;
        }
        self.last = Some(f.pos);
        problem
    }

    /// Whether `pos` was published; forgets it and everything before it (the
    /// origin's frames are asked about in order, once each).
    pub fn take(&mut self, pos: Position) -> bool {
        let found = self.seen.remove(&pos);
        self.seen = self.seen.split_off(&pos);
        found
    }
}

/// What one response put on the wire.
#[derive(Debug)]
pub struct WireCheck {
    from: Option<Position>,
    last: Option<Position>,
}

impl WireCheck {
    pub fn new(from: Option<Position>) -> Self {
        WireCheck { from, last: None }
    }

    pub fn from(&self) -> Option<Position> {
        self.from
    }

    pub fn frame(&mut self, video: Option<u8>, f: &Frame) -> Option<String> {
        let follows = self.last.is_some_and(|l| l.is_followed_by(f.pos));
        let problem = if self
            .from
            .is_some_and(|p| p.epoch == f.pos.epoch && f.pos.seq <= p.seq)
        {
            Some(format!(
                "sent {:?} on a response resumed from {:?}",
                f.pos, self.from
            ))
        } else if !follows
            && !self
                .from
                .is_some_and(|p| self.last.is_none() && p.is_followed_by(f.pos))
            && !starts_decoding(video, f)
        {
            Some(format!(
                "sent {:?} after {:?} (resumed from {:?}): not a keyframe",
                f.pos, self.last, self.from
            ))
        } else {
            None
        };
        self.last = Some(f.pos);
        problem
    }
}

/// The intervals during which a fault on one link excuses lost frames.
#[derive(Debug, Default)]
pub struct Excuses {
    windows: VecDeque<(Duration, Duration)>,
}

impl Excuses {
    pub fn add(&mut self, from: Duration, to: Duration) {
        self.windows.push_back((from, to));
    }

    pub fn covers(&self, t: Duration) -> bool {
        self.windows.iter().any(|(a, b)| *a <= t && t <= *b)
    }

    /// A fault overlapping `[a, b]`.
    pub fn overlaps(&self, a: Duration, b: Duration) -> bool {
        self.windows.iter().any(|(x, y)| *x <= b && a <= *y)
    }

    /// Forgets windows that ended before `t`.
    pub fn prune(&mut self, t: Duration) {
        while self.windows.front().is_some_and(|(_, b)| *b < t) {
            self.windows.pop_front();
        }
    }
}
