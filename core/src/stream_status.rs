//! The status of a stream, as the API (`stats.status`), the metrics and the status
//! page show it, for every kind of stream: Flussonic's `running`, `waiting` and
//! `error`, plus `idle` and `starting` for streams pulled on demand.
//!
//! Owns: the one list of status values and the decision from what the node
//! observed. Must not: observe anything itself (the caller measures ages with its
//! own clock).

use std::fmt;

/// A stream with no frame for this long is not alive (`waiting`).
pub const ALIVE_TIMEOUT_MS: u64 = 3000;

/// What a stream is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamStatus {
    /// Frames arrive (one within [`ALIVE_TIMEOUT_MS`]).
    Running,
    /// Started, no frame yet, for less than [`ALIVE_TIMEOUT_MS`].
    Starting,
    /// No frame for [`ALIVE_TIMEOUT_MS`] or more: the node waits for its source
    /// (inputs retry by themselves).
    Waiting,
    /// The stream cannot run: its source refused it in a way retrying will not fix
    /// (the caller says so with [`Observed::failed`]).
    Error,
    /// Pulled on demand and not pulled now: nobody watches (no source connection).
    Idle,
}

impl StreamStatus {
    /// Every value, in the order of [`StreamStatus::code`].
    pub const ALL: [StreamStatus; 5] = [
        StreamStatus::Running,
        StreamStatus::Starting,
        StreamStatus::Waiting,
        StreamStatus::Error,
        StreamStatus::Idle,
    ];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Running => "running",
            StreamStatus::Starting => "starting",
            StreamStatus::Waiting => "waiting",
            StreamStatus::Error => "error",
            StreamStatus::Idle => "idle",
        }
    }

    /// Whether the stream delivers frames now (the API's `stats.alive`).
    pub fn alive(self) -> bool {
        self == StreamStatus::Running
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a source's refusal with this status code (RTSP or HTTP: they share
/// them) is one retrying will not fix, so the stream shows `error` until a frame
/// arrives: wrong or missing credentials (401, 403) and no such stream (404, 410).
/// Inputs still retry with backoff (the operator may fix the source meanwhile).
pub fn lasting_refusal(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 410)
}

/// What the node knows of a stream at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Milliseconds since the last frame arrived; `None` before the first.
    pub since_last_frame_ms: Option<u64>,
    /// Milliseconds since the stream (or, for an on-demand stream, its current pull)
    /// started.
    pub since_start_ms: u64,
    /// The source refused the stream in a way retrying will not fix.
    pub failed: bool,
    /// An on-demand stream that is not being pulled now.
    pub idle: bool,
    /// An on-demand pull that opened and has had no media yet.
    pub starting: bool,
}

/// The status of a stream from what was observed: `idle` first (an on-demand
/// stream nobody pulls has no frames to judge), then `running` whenever frames
/// arrive, then `error`, then `starting` (an on-demand pull waiting for its first
/// media, or within [`ALIVE_TIMEOUT_MS`] of the start without a frame yet), else
/// `waiting`.
pub fn decide(o: &Observed) -> StreamStatus {
    if o.idle {
        return StreamStatus::Idle;
    }
    match o.since_last_frame_ms {
        Some(ms) if ms < ALIVE_TIMEOUT_MS => StreamStatus::Running,
        _ if o.failed => StreamStatus::Error,
        _ if o.starting => StreamStatus::Starting,
        None if o.since_start_ms < ALIVE_TIMEOUT_MS => StreamStatus::Starting,
        _ => StreamStatus::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let o = |last: Option<u64>, start: u64| Observed {
            since_last_frame_ms: last,
            since_start_ms: start,
            ..Observed::default()
        };
        assert_eq!(decide(&o(None, 0)), StreamStatus::Starting);
        assert_eq!(decide(&o(None, 3000)), StreamStatus::Waiting);
        assert_eq!(decide(&o(Some(10), 60_000)), StreamStatus::Running);
        assert_eq!(decide(&o(Some(3000), 60_000)), StreamStatus::Waiting);
        let failed = Observed {
            failed: true,
            ..o(None, 0)
        };
        assert_eq!(decide(&failed), StreamStatus::Error);
        let idle = Observed {
            idle: true,
            ..o(Some(0), 0)
        };
        assert_eq!(decide(&idle), StreamStatus::Idle);
        let pulling = Observed {
            starting: true,
            ..o(Some(60_000), 120_000)
        };
        assert_eq!(decide(&pulling), StreamStatus::Starting);
        // Frames that arrive make it running again even if a refusal was noted.
        let recovered = Observed {
            failed: true,
            ..o(Some(10), 60_000)
        };
        assert_eq!(decide(&recovered), StreamStatus::Running);
        assert!(lasting_refusal(401) && lasting_refusal(404));
        assert!(!lasting_refusal(500) && !lasting_refusal(503) && !lasting_refusal(200));
        let names: Vec<&str> = StreamStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["running", "starting", "waiting", "error", "idle"]);
        assert!(StreamStatus::Running.alive() && !StreamStatus::Starting.alive());
    }
}
