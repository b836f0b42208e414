//! Observers and oracles (docs/design.md §8).
//!
//! An observer is a client host that watches one node's cluster endpoint (M4S frames
//! or M4F segments) with the real signed client (`tern_node::cluster::client`), as
//! one more receiver would: it resumes with `from=` after a lost connection and notices
//! a dead peer after [`DEAD_PEER_TIMEOUT`]. It records what arrived when, in simulated
//! milliseconds; [`check`] then runs every oracle over the recordings and the fault
//! windows of the run:
//!
//! - **order**: within each source epoch, frames arrive in increasing sequence, never a
//!   duplicate (over the whole observation, across reconnects). The one exception is
//!   the documented resume (docs/protocol.md, M4S): when the server's GOP does not hold
//!   the frame right after `from`, it sends its whole GOP, which may repeat frames up
//!   to `from`; a receiver drops them. Such frames, at the start of a resumed
//!   connection and not after `from`, are counted (`resent`), not flagged;
//! - **gap**: a frame that does not follow the previous one (sequence jump, new epoch)
//!   only across a fault (its window up to the end of its recovery bound);
//! - **barcode**: every video frame carries the fake source's barcode, whose capture
//!   time agrees with the frame's, and whose frame index agrees with its sequence
//!   number (video and audio interleave exactly, see `tern_core::fake::source`);
//! - **latency** (M4S): a frame captured after the observer connected and outside
//!   every fault window arrives within `hops × (LINK_LATENCY + HOP_SLACK)` of its
//!   capture. `hops` counts the links from the origin's fake source to the observer:
//!   an observer on the origin is 1 hop, on an edge 2, on an edge of an edge 3;
//! - **segment latency** (M4F): a segment that closed after the observer connected and
//!   outside every fault window arrives within `hops × (LINK_LATENCY + HOP_SLACK)` of
//!   the moment it closed on the origin. The origin closes a segment when the keyframe
//!   that starts the next one arrives, so its close time is the next segment's
//!   `utc_start_ms` when the observer saw that next segment follow on in the same
//!   epoch, and otherwise `utc_start_ms + duration_ms` (the same instant up to the
//!   millisecond rounding of capture times);
//! - **recovery**: after a fault ends, a frame captured after the end arrives within
//!   the fault's recovery bound (`faults::Fault::recovery_bound`; for an M4F observer
//!   plus [`M4F_SEGMENT`], as such a frame waits for its segment to close), unless the
//!   run ends first; when the next fault starts within the bound, a recovery seen
//!   before it still counts, and otherwise the bound is not checked;
//! - **stall**: outside fault windows, frames never stop arriving for longer than
//!   [`STALL_M4S`] (M4S) or [`STALL_M4F`] (M4F);
//! - **connection**: outside fault windows the observer's connection is never lost
//!   or refused;
//! - **integrity**: two observers that saw the same (epoch, sequence) saw the same frame
//!   (track, timestamps, capture time, keyframe flag, payload bytes);
//! - **protocol**: every response starts with `Hello`, and carries no `Streams`;
//! - **same segments** ([`check_same_segments`], on request): a node that cuts its own
//!   segments from restreamed frames cuts the ones the origin cut (same first and last
//!   frame, start, duration), except a first segment begun mid-way.
//!
//! Owns: the observers and the checks. Must not: influence the nodes beyond being one
//! more signed receiver, read real time, or relax a bound to make a run pass (a
//! violation is a finding: report it).
//!
//! Files: `observer.rs` (the observer hosts and what they record), `checks.rs` (one
//! function per oracle), this file (the bounds, the verdict and [`check`]).

mod checks;
mod observer;

use std::fmt;
use std::time::Duration;

use tern_core::Position;

use crate::faults::{fmt_ms, Window};

pub(crate) use checks::barcode_violations;
pub use checks::check_same_segments;
use checks::*;
pub use observer::*;

/// What one hop may add to the link latency (processing; the tick makes a hop shorter
/// than [`crate::LINK_LATENCY`], never longer, see [`crate::TICK`]).
pub const HOP_SLACK: Duration = Duration::from_millis(5);
/// An observer waits this long before trying again after a refusal or a lost
/// connection.
pub const RETRY: Duration = Duration::from_millis(100);
/// Outside faults, M4S frames never stop arriving for longer than this (frames are
/// 40 ms apart, heartbeats would come after 500 ms of nothing).
pub const STALL_M4S: Duration = Duration::from_millis(500);
/// Outside faults, M4F segments (2 s by default) never stop arriving for longer.
pub const STALL_M4F: Duration = Duration::from_millis(3000);
/// The segment duration of the streams observed over M4F (the default).
pub const M4F_SEGMENT: Duration = Duration::from_secs(2);

/// One oracle's finding.
#[derive(Clone, Debug)]
pub struct Violation {
    pub oracle: &'static str,
    pub observer: String,
    /// Simulated ms at which it shows.
    pub at_ms: u64,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} oracle] {} at {}: {}",
            self.oracle,
            self.observer,
            fmt_ms(self.at_ms),
            self.detail
        )
    }
}

/// Figures of one observer, for the log of a run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub observer: String,
    pub frames: usize,
    pub segments: usize,
    pub connections: usize,
    pub epochs: usize,
    pub gaps: usize,
    /// Frames repeated at the start of a resumed connection (up to its `from`).
    pub resent: usize,
    /// Largest latency among the frames (or segments) the latency oracle checked.
    pub max_latency_ms: Option<u64>,
    pub checked_latency: usize,
    /// Faults after which the recovery oracle was checked, and the longest time from
    /// the end of one of them to the first frame captured after it.
    pub recoveries: usize,
    pub max_recovery_ms: Option<u64>,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} frames, {} segments, {} connections, {} epochs, {} gaps across faults, \
             {} resent on resume, max latency {} over {} checked, {} recoveries (slowest {})",
            self.observer,
            self.frames,
            self.segments,
            self.connections,
            self.epochs,
            self.gaps,
            self.resent,
            self.max_latency_ms
                .map_or("-".to_owned(), |m| format!("{m} ms")),
            self.checked_latency,
            self.recoveries,
            self.max_recovery_ms
                .map_or("-".to_owned(), |m| format!("{m} ms")),
        )
    }
}

/// The oracles' verdict on a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    pub figures: Vec<Figures>,
}

/// At most this many violations are listed in a failure message.
const MAX_LISTED: usize = 25;

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations (at most [`MAX_LISTED`]) and the figures, one per line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for v in self.violations.iter().take(MAX_LISTED) {
            s.push_str(&format!("  {v}\n"));
        }
        if self.violations.len() > MAX_LISTED {
            s.push_str(&format!(
                "  ... and {} more\n",
                self.violations.len() - MAX_LISTED
            ));
        }
        for f in &self.figures {
            s.push_str(&format!("  {f}\n"));
        }
        s
    }

    /// Panics with every violation and `context` (the schedule, the replay command).
    pub fn assert_ok(&self, context: &str) {
        if !self.is_ok() {
            panic!(
                "{} oracle violation(s):\n{}{context}",
                self.violations.len(),
                self.render()
            );
        }
    }
}

/// The fault windows, with the helpers the oracles need.
struct Faults<'a>(&'a [Window]);

impl Faults<'_> {
    /// Some fault's window (start to end of recovery) meets `[t0, t1]`.
    fn between(&self, t0: u64, t1: u64) -> Option<&Window> {
        self.0
            .iter()
            .find(|w| w.start_ms <= t1 && t0 <= w.settled_ms())
    }

    /// Something captured (or closed) at `t` may be late because of a fault: `t` is
    /// within a fault's window, or up to `bound` before it (in flight when it began).
    fn exempt(&self, t: u64, bound: u64) -> bool {
        self.0
            .iter()
            .any(|w| t + bound >= w.start_ms && t <= w.settled_ms())
    }
}

/// Runs every oracle over `observations`, given the run's fault windows and the
/// simulated ms at which the run ended.
pub fn check(observations: &[Observation], windows: &[Window], end_ms: u64) -> Report {
    let faults = Faults(windows);
    let mut report = Report::default();
    for o in observations {
        let log = o.log().clone();
        let mut fig = Figures {
            observer: o.name().to_owned(),
            frames: log.frames.len(),
            segments: log.segments.len(),
            connections: log.conns.len(),
            ..Figures::default()
        };
        let mut v = Vec::new();
        check_protocol(o, &log, &mut v);
        check_order(o, &log, &faults, &mut v, &mut fig);
        check_barcodes(o, &log, &mut v);
        check_connections(o, &log, &faults, end_ms, &mut v);
        match o.spec.endpoint {
            Endpoint::M4s => {
                check_latency(o, &log, &faults, &mut v, &mut fig);
                check_recovery(o, &log, windows, end_ms, &mut v, &mut fig);
                check_stall(o, &log, &faults, end_ms, STALL_M4S, &mut v);
            }
            Endpoint::M4f => {
                check_segment_latency(o, &log, &faults, &mut v, &mut fig);
                let later: Vec<Window> = windows
                    .iter()
                    .map(|w| Window {
                        recovery: w.recovery + M4F_SEGMENT,
                        ..w.clone()
                    })
                    .collect();
                check_recovery(o, &log, &later, end_ms, &mut v, &mut fig);
                check_stall(o, &log, &faults, end_ms, STALL_M4F, &mut v);
            }
        }
        if log.frames.is_empty() {
            v.push(Violation {
                oracle: "liveness",
                observer: o.name().to_owned(),
                at_ms: end_ms,
                detail: format!(
                    "no frame at all from {}:{} {}/{} (refusals: {:?})",
                    o.spec.node,
                    o.spec.port,
                    o.spec.endpoint.as_str(),
                    o.spec.stream,
                    log.refusals.iter().take(3).collect::<Vec<_>>()
                ),
            });
        }
        fig.epochs = o.epochs().len();
        report.violations.extend(v);
        report.figures.push(fig);
    }
    check_integrity(observations, &mut report.violations);
    report.violations.sort_by_key(|v| v.at_ms);
    report
}

/// Who saw a violation: an observer, or a name.
pub(crate) trait Witness {
    fn witness(&self) -> &str;
}

impl Witness for Observation {
    fn witness(&self) -> &str {
        self.name()
    }
}

impl Witness for str {
    fn witness(&self) -> &str {
        self
    }
}

pub(crate) fn violation<W: Witness + ?Sized>(
    o: &W,
    oracle: &'static str,
    at_ms: u64,
    detail: String,
) -> Violation {
    Violation {
        oracle,
        observer: o.witness().to_owned(),
        at_ms,
        detail,
    }
}

pub(crate) fn pos(p: Position) -> String {
    format!("{}.{}", p.epoch, p.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SIM_EPOCH_MS;
    use tern_core::fake::source::FakeSource;
    use tern_core::fake::FakeOptions;
    use tern_core::fake::{barcode, h264};

    #[test]
    fn cadence_matches_the_fake_source() {
        for fps in [25u16, 30, 24, 60, 1] {
            let opts = FakeOptions {
                fps,
                width: 256,
                height: 16,
                ..FakeOptions::default()
            };
            let mut src = FakeSource::new(&opts, 1);
            let c = Cadence::of(&src.media_info()).expect("cadence");
            let mut video = 0u64;
            for _ in 0..2000 {
                let f = src.next_frame(SIM_EPOCH_MS + 5);
                if f.track == tern_core::fake::source::VIDEO_TRACK {
                    let b = h264::find_sei_barcode(&f.payload).expect("barcode");
                    let (index, _) = barcode::split(b);
                    assert_eq!(index, video);
                    assert_eq!(c.video_seq(index), f.pos.seq, "fps {fps} index {index}");
                    video += 1;
                }
            }
        }
    }

    #[test]
    fn windows_exempt_and_cover() {
        let w = [Window {
            what: "x".into(),
            start_ms: 1000,
            end_ms: 2000,
            recovery: Duration::from_secs(1),
        }];
        let f = Faults(&w);
        assert!(f.exempt(980, 30));
        assert!(!f.exempt(960, 30));
        assert!(f.exempt(3000, 30));
        assert!(!f.exempt(3001, 30));
        assert!(f.between(500, 1000).is_some());
        assert!(f.between(3001, 4000).is_none());
    }
}
