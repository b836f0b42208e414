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

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::ClusterAuth;
use tern_core::cluster::message::Message;
use tern_core::cluster::receiver::DEAD_PEER_TIMEOUT;
use tern_core::fake::{barcode, h264};
use tern_core::{Frame, MediaInfo, Position, TrackParams};
use tern_net::{TurmoilClock, TurmoilNet};
use tern_node::cluster::client::ClusterClient;

use crate::faults::{fmt_ms, Window};
use crate::trace::Fnv64;
use crate::{sim_ms, LINK_LATENCY, SIM_EPOCH_MS};

/// What one hop may add to the link latency (processing, the 1 ms tick).
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

/// The cluster endpoint an observer watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    M4s,
    M4f,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::M4s => "m4s",
            Endpoint::M4f => "m4f",
        }
    }
}

/// What an observer watches and how.
#[derive(Clone, Debug)]
pub struct ObserverSpec {
    /// The observer's own host name.
    pub host: String,
    /// The node it watches.
    pub node: String,
    pub port: u16,
    pub stream: String,
    pub endpoint: Endpoint,
    pub key: String,
    /// Links between the origin's fake source and this observer.
    pub hops: u32,
    /// Simulated time at which it first connects.
    pub start: Duration,
    /// Seed of its RNG (nonces); [`crate::Cluster::observe`] derives it.
    pub seed: u64,
}

impl ObserverSpec {
    /// Watches `/tern/v1/m4s/main` on `node:port` with key `123`, from 1.5 s on.
    pub fn m4s(node: &str, port: u16, hops: u32) -> Self {
        ObserverSpec {
            host: format!("obs-{node}"),
            node: node.to_owned(),
            port,
            stream: "main".to_owned(),
            endpoint: Endpoint::M4s,
            key: "123".to_owned(),
            hops,
            start: Duration::from_millis(1500),
            seed: 0,
        }
    }

    /// As [`ObserverSpec::m4s`], on `/tern/v1/m4f/main` (host `obsf-NODE`).
    pub fn m4f(node: &str, port: u16, hops: u32) -> Self {
        ObserverSpec {
            host: format!("obsf-{node}"),
            endpoint: Endpoint::M4f,
            ..Self::m4s(node, port, hops)
        }
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    pub fn stream(mut self, stream: &str) -> Self {
        self.stream = stream.to_owned();
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_owned();
        self
    }

    pub fn start(mut self, start: Duration) -> Self {
        self.start = start;
        self
    }

    /// The latency bound of this observer: `hops × (LINK_LATENCY + HOP_SLACK)`.
    pub fn bound_ms(&self) -> u64 {
        u64::from(self.hops) * (LINK_LATENCY + HOP_SLACK).as_millis() as u64
    }
}

/// How video and audio interleave in a fake stream, from its media info: the
/// sequence number a video frame of a given index must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub fps: u16,
    /// Sample rate and samples per frame of the audio track, if any.
    pub audio: Option<(u32, u16)>,
}

impl Cadence {
    fn of(mi: &MediaInfo) -> Option<Cadence> {
        let fps = mi.tracks.iter().find_map(|t| match t.params {
            TrackParams::H264 { fps, .. } => Some(fps),
            _ => None,
        })?;
        let audio = mi.tracks.iter().find_map(|t| match t.params {
            TrackParams::Aac {
                sample_rate,
                frame_samples,
                ..
            } => Some((sample_rate, frame_samples)),
            _ => None,
        });
        Some(Cadence { fps, audio })
    }

    /// The fake source sends video frame `index` after every audio frame that starts
    /// strictly earlier (video first on ties): `index + ceil(index·rate / (samples·fps))`.
    pub fn video_seq(&self, index: u64) -> u64 {
        match self.audio {
            None => index,
            Some((rate, samples)) => {
                let num = u128::from(index) * u128::from(rate);
                let den = u128::from(samples) * u128::from(self.fps.max(1));
                index + num.div_ceil(den) as u64
            }
        }
    }
}

/// One frame as an observer saw it.
#[derive(Clone, Debug)]
pub struct SeenFrame {
    /// Arrival, simulated ms.
    pub at_ms: u64,
    /// Index of the observer's connection (1-based).
    pub conn: u32,
    pub pos: Position,
    pub track: u8,
    pub video: bool,
    pub keyframe: bool,
    /// Capture time on the origin, simulated ms.
    pub capture_ms: u64,
    pub capture_utc_ms: u64,
    /// The barcode of a video frame, if it has one.
    pub barcode: Option<u64>,
    pub cadence: Option<Cadence>,
    /// FNV-1a of track, timestamps, flags, capture time and payload.
    pub digest: u64,
    /// Arrived inside an M4F segment (so its latency is the segment's).
    pub in_segment: bool,
}

/// One M4F segment as an observer saw it.
#[derive(Clone, Debug)]
pub struct SeenSegment {
    pub at_ms: u64,
    pub conn: u32,
    pub first: Position,
    pub last: Position,
    /// `utc_start_ms`, simulated ms.
    pub start_ms: u64,
    pub duration_ms: u32,
    pub frames: usize,
    /// FNV-1a of the segment's canonical encoding (`segment_codec::encode`), to
    /// compare with what an archive stored.
    pub fnv: u64,
}

/// One connection of an observer.
#[derive(Clone, Debug)]
pub struct Conn {
    pub index: u32,
    /// When the response (with a valid proof) arrived, simulated ms.
    pub at_ms: u64,
    pub from: Option<Position>,
    pub ended_ms: Option<u64>,
    pub end_reason: Option<String>,
}

/// Everything an observer recorded.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub conns: Vec<Conn>,
    /// Failed attempts: (simulated ms, error).
    pub refusals: Vec<(u64, String)>,
    pub frames: Vec<SeenFrame>,
    pub segments: Vec<SeenSegment>,
    /// `End` messages: (simulated ms, reason).
    pub ends: Vec<(u64, String)>,
    /// Protocol breaches: (simulated ms, what).
    pub protocol: Vec<(u64, String)>,
}

/// A running or finished observer: its spec and what it recorded so far.
#[derive(Clone)]
pub struct Observation {
    pub spec: Arc<ObserverSpec>,
    log: Arc<Mutex<Log>>,
}

impl Observation {
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.spec.host
    }

    /// The epochs seen, in order of first appearance.
    pub fn epochs(&self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for f in &self.log().frames {
            if !out.contains(&f.pos.epoch) {
                out.push(f.pos.epoch);
            }
        }
        out
    }
}

/// An observer as [`ObserverSpec`] says, and the future to run as its client host.
/// It runs until the simulation is dropped.
pub fn observer(spec: ObserverSpec) -> (Observation, impl Future<Output = turmoil::Result>) {
    let obs = Observation {
        spec: Arc::new(spec),
        log: Arc::new(Mutex::new(Log::default())),
    };
    let o = obs.clone();
    (obs, async move {
        run_observer(o).await;
        Ok(())
    })
}

/// FNV-1a of a frame's track, flags, timestamps, capture time and payload (what the
/// integrity oracle compares).
pub fn frame_digest(f: &Frame) -> u64 {
    let mut h = Fnv64::new();
    h.write(&[f.track, u8::from(f.keyframe)]);
    h.write(&f.dts.to_be_bytes());
    h.write(&f.pts.to_be_bytes());
    h.write(&f.capture_ms.to_be_bytes());
    h.write(&f.payload);
    h.finish()
}

/// What an observer knows of the stream's tracks.
#[derive(Default)]
pub(crate) struct Tracks {
    video: Option<u8>,
    cadence: Option<Cadence>,
}

impl Tracks {
    pub(crate) fn set(&mut self, mi: &MediaInfo) {
        self.video = mi.video().map(|t| t.id);
        self.cadence = Cadence::of(mi);
    }

    pub(crate) fn seen(&self, f: &Frame, at_ms: u64, conn: u32, in_segment: bool) -> SeenFrame {
        let video = self.video == Some(f.track);
        SeenFrame {
            at_ms,
            conn,
            pos: f.pos,
            track: f.track,
            video,
            keyframe: f.keyframe,
            capture_ms: f.capture_ms.saturating_sub(SIM_EPOCH_MS),
            capture_utc_ms: f.capture_ms,
            barcode: if video {
                h264::find_sei_barcode(&f.payload)
            } else {
                None
            },
            cadence: self.cadence,
            digest: frame_digest(f),
            in_segment,
        }
    }
}

async fn run_observer(o: Observation) {
    let spec = o.spec.clone();
    let name = spec.host.as_str();
    let start_ms = spec.start.as_millis() as u64;
    let now = sim_ms();
    if now < start_ms {
        tokio::time::sleep(Duration::from_millis(start_ms - now)).await;
    }
    let client = ClusterClient::new(
        TurmoilNet,
        TurmoilClock::new(),
        Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(spec.seed))),
        ClusterAuth::new(spec.key.as_bytes()),
    );
    let mut last: Option<Position> = None;
    let mut tracks = Tracks::default();
    let mut conn = 0u32;
    loop {
        let mut path = format!("/tern/v1/{}/{}", spec.endpoint.as_str(), spec.stream);
        if let Some(p) = last {
            path.push_str(&format!("?from={}.{}", p.epoch, p.seq));
        }
        let mut stream = match client.open(&spec.node, spec.port, &path).await {
            Ok(s) => s,
            Err(e) => {
                let at = sim_ms();
                tracing::debug!(target: "tern_sim::observer", observer = name, error = %e, "refused");
                o.log().refusals.push((at, e.to_string()));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        conn += 1;
        let at = sim_ms();
        tracing::info!(target: "tern_sim::observer", observer = name, conn, from = ?last, "connected");
        o.log().conns.push(Conn {
            index: conn,
            at_ms: at,
            from: last,
            ended_ms: None,
            end_reason: None,
        });
        let mut first = true;
        let reason = loop {
            let msg = match tokio::time::timeout(DEAD_PEER_TIMEOUT, stream.next()).await {
                Err(_) => break "no message within the dead-peer timeout".to_owned(),
                Ok(Err(e)) => break e.to_string(),
                Ok(Ok(None)) => break "closed by the node".to_owned(),
                Ok(Ok(Some(m))) => m,
            };
            let at = sim_ms();
            let is_hello = matches!(msg, Message::Hello { .. });
            if first != is_hello {
                let what = if first {
                    format!("first message is {} (kind), not Hello", msg.kind())
                } else {
                    "a second Hello".to_owned()
                };
                o.log().protocol.push((at, what));
            }
            first = false;
            match msg {
                Message::Hello { .. } | Message::Heartbeat { .. } => {}
                Message::MediaInfo(mi) => tracks.set(&mi),
                Message::Frame(f) => {
                    let seen = tracks.seen(&f, at, conn, false);
                    if seen.video && f.keyframe {
                        tracing::debug!(
                            target: "tern_sim::observer",
                            observer = name,
                            pos = %format_args!("{}.{}", f.pos.epoch, f.pos.seq),
                            latency_ms = at as i64 - seen.capture_ms as i64,
                            "keyframe"
                        );
                    }
                    last = Some(f.pos);
                    o.log().frames.push(seen);
                }
                Message::Segment(s) => {
                    tracks.set(&s.media_info);
                    let (Some(a), Some(b)) = (s.frames.first(), s.frames.last()) else {
                        o.log().protocol.push((at, "an empty segment".to_owned()));
                        continue;
                    };
                    tracing::debug!(
                        target: "tern_sim::observer",
                        observer = name,
                        first = %format_args!("{}.{}", a.pos.epoch, a.pos.seq),
                        frames = s.frames.len(),
                        "segment"
                    );
                    let seg = SeenSegment {
                        at_ms: at,
                        conn,
                        first: a.pos,
                        last: b.pos,
                        start_ms: s.utc_start_ms.saturating_sub(SIM_EPOCH_MS),
                        duration_ms: s.duration_ms,
                        frames: s.frames.len(),
                        fnv: crate::fnv1a64(&tern_core::segment_codec::encode(&s)),
                    };
                    last = Some(b.pos);
                    let mut log = o.log();
                    log.segments.push(seg);
                    for f in &s.frames {
                        let seen = tracks.seen(f, at, conn, true);
                        log.frames.push(seen);
                    }
                }
                Message::End { reason } => {
                    o.log().ends.push((at, reason.clone()));
                    break format!("ended: {reason}");
                }
                other => {
                    o.log().protocol.push((
                        at,
                        format!(
                            "a message of kind {} on a live media endpoint",
                            other.kind()
                        ),
                    ));
                }
            }
        };
        drop(stream);
        let at = sim_ms();
        tracing::info!(target: "tern_sim::observer", observer = name, conn, reason, "connection lost");
        if let Some(c) = o.log().conns.last_mut() {
            c.ended_ms = Some(at);
            c.end_reason = Some(reason);
        }
        tokio::time::sleep(RETRY).await;
    }
}

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

fn check_protocol(o: &Observation, log: &Log, v: &mut Vec<Violation>) {
    for (at, what) in &log.protocol {
        v.push(violation(o, "protocol", *at, what.clone()));
    }
}

fn check_order(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let mut max_seq: BTreeMap<u64, u64> = BTreeMap::new();
    let mut prev: Option<&SeenFrame> = None;
    // The connection of the previous frame, and whether that connection has gone past
    // its `from` yet.
    let mut conn = 0;
    let mut past_from = true;
    for f in &log.frames {
        if f.conn != conn {
            conn = f.conn;
            past_from = false;
        }
        let from = log
            .conns
            .iter()
            .find(|c| c.index == f.conn)
            .and_then(|c| c.from);
        let resent =
            !past_from && from.is_some_and(|p| p.epoch == f.pos.epoch && f.pos.seq <= p.seq);
        if !resent {
            past_from = true;
        }
        if resent {
            fig.resent += 1;
            continue;
        }
        if let Some(&m) = max_seq.get(&f.pos.epoch) {
            if f.pos.seq <= m {
                v.push(violation(
                    o,
                    "order",
                    f.at_ms,
                    format!(
                        "frame {} (track {}, captured {}) arrived after frame {}.{} of the \
                         same epoch: duplicate or out of order (connection {})",
                        pos(f.pos),
                        f.track,
                        fmt_ms(f.capture_ms),
                        f.pos.epoch,
                        m,
                        f.conn
                    ),
                ));
            }
        }
        if let Some(p) = prev {
            let follows = p.pos.epoch == f.pos.epoch && p.pos.seq.checked_add(1) == Some(f.pos.seq);
            if !follows {
                match faults.between(p.at_ms, f.at_ms) {
                    Some(_) => fig.gaps += 1,
                    None => v.push(violation(
                        o,
                        "gap",
                        f.at_ms,
                        format!(
                            "frame {} follows frame {} (arrived {}) with no fault in between",
                            pos(f.pos),
                            pos(p.pos),
                            fmt_ms(p.at_ms)
                        ),
                    )),
                }
            }
        }
        let m = max_seq.entry(f.pos.epoch).or_insert(f.pos.seq);
        *m = (*m).max(f.pos.seq);
        prev = Some(f);
    }
}

fn check_barcodes(o: &Observation, log: &Log, v: &mut Vec<Violation>) {
    barcode_violations(o.name(), &log.frames, v);
}

/// The **barcode** oracle over `frames`, reported as seen by `who`.
pub(crate) fn barcode_violations(who: &str, frames: &[SeenFrame], v: &mut Vec<Violation>) {
    let o = who;
    for f in frames.iter().filter(|f| f.video) {
        let Some(b) = f.barcode else {
            v.push(violation(
                o,
                "barcode",
                f.at_ms,
                format!("video frame {} carries no barcode", pos(f.pos)),
            ));
            continue;
        };
        let (index, low) = barcode::split(b);
        if low != f.capture_utc_ms as u32 {
            v.push(violation(
                o,
                "barcode",
                f.at_ms,
                format!(
                    "video frame {} says captured at {} but its barcode (index {index}) says \
                     {low} (low 32 bits of UTC ms; frame's: {})",
                    pos(f.pos),
                    fmt_ms(f.capture_ms),
                    f.capture_utc_ms as u32
                ),
            ));
        }
        if let Some(c) = f.cadence {
            let want = c.video_seq(index);
            if want != f.pos.seq {
                v.push(violation(
                    o,
                    "barcode",
                    f.at_ms,
                    format!(
                        "video frame {} carries barcode index {index}, which belongs at \
                         sequence {want}",
                        pos(f.pos)
                    ),
                ));
            }
        }
    }
}

fn conn_start(log: &Log, conn: u32) -> u64 {
    log.conns
        .iter()
        .find(|c| c.index == conn)
        .map_or(0, |c| c.at_ms)
}

fn check_latency(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let bound = o.spec.bound_ms();
    for f in log.frames.iter().filter(|f| !f.in_segment) {
        if f.capture_ms < conn_start(log, f.conn) || faults.exempt(f.capture_ms, bound) {
            continue;
        }
        let latency = f.at_ms.saturating_sub(f.capture_ms);
        fig.checked_latency += 1;
        fig.max_latency_ms = Some(fig.max_latency_ms.unwrap_or(0).max(latency));
        if latency > bound {
            v.push(violation(
                o,
                "latency",
                f.at_ms,
                format!(
                    "frame {} (track {}) captured at {} arrived after {latency} ms, more than \
                     {} hops × ({} ms link + {} ms) = {bound} ms",
                    pos(f.pos),
                    f.track,
                    fmt_ms(f.capture_ms),
                    o.spec.hops,
                    LINK_LATENCY.as_millis(),
                    HOP_SLACK.as_millis()
                ),
            ));
        }
    }
}

fn check_segment_latency(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let bound = o.spec.bound_ms();
    for (i, s) in log.segments.iter().enumerate() {
        let next = log.segments.get(i + 1).filter(|n| {
            n.first.epoch == s.last.epoch && s.last.seq.checked_add(1) == Some(n.first.seq)
        });
        let close = next.map_or(s.start_ms + u64::from(s.duration_ms), |n| n.start_ms);
        if close < conn_start(log, s.conn) || faults.exempt(close, bound) {
            continue;
        }
        let latency = s.at_ms.saturating_sub(close);
        fig.checked_latency += 1;
        fig.max_latency_ms = Some(fig.max_latency_ms.unwrap_or(0).max(latency));
        if latency > bound {
            v.push(violation(
                o,
                "segment latency",
                s.at_ms,
                format!(
                    "segment {}..{} ({} frames) closed on the origin at {} arrived after \
                     {latency} ms, more than {} hops × ({} ms link + {} ms) = {bound} ms",
                    pos(s.first),
                    pos(s.last),
                    s.frames,
                    fmt_ms(close),
                    o.spec.hops,
                    LINK_LATENCY.as_millis(),
                    HOP_SLACK.as_millis()
                ),
            ));
        }
    }
}

fn check_recovery(
    o: &Observation,
    log: &Log,
    windows: &[Window],
    end_ms: u64,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let start = o.spec.start.as_millis() as u64;
    for (i, w) in windows.iter().enumerate() {
        let settled = w.settled_ms();
        let next_start = windows
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.start_ms >= w.start_ms)
            .map(|(_, n)| n.start_ms)
            .min();
        if w.end_ms < start || settled > end_ms {
            continue;
        }
        let first = log.frames.iter().find(|f| f.capture_ms >= w.end_ms);
        // When the next fault starts within the bound, the bound cannot be checked;
        // a recovery seen before that fault still counts.
        if let Some(n) = next_start.filter(|n| *n <= settled) {
            if first.is_none_or(|f| f.at_ms > n) {
                continue;
            }
        }
        fig.recoveries += 1;
        if let Some(f) = first {
            let took = f.at_ms.saturating_sub(w.end_ms);
            fig.max_recovery_ms = Some(fig.max_recovery_ms.unwrap_or(0).max(took));
        }
        match first {
            Some(f) if f.at_ms <= settled => {}
            other => v.push(violation(
                o,
                "recovery",
                settled,
                format!(
                    "after {} ended at {}, no frame captured since reached the observer \
                     within {} ms{}",
                    w.what,
                    fmt_ms(w.end_ms),
                    w.recovery.as_millis(),
                    match other {
                        Some(f) => format!(
                            "; the first was {} captured at {}, arrived at {}",
                            pos(f.pos),
                            fmt_ms(f.capture_ms),
                            fmt_ms(f.at_ms)
                        ),
                        None => "; none arrived before the run ended".to_owned(),
                    }
                ),
            )),
        }
    }
}

fn check_stall(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    end_ms: u64,
    limit: Duration,
    v: &mut Vec<Violation>,
) {
    let limit = limit.as_millis() as u64;
    // Arrival times, with the first connection's start as the first mark and the end
    // of the run as the last.
    let Some(first) = log.conns.first() else {
        return;
    };
    let mut marks: Vec<u64> = vec![first.at_ms];
    let mut last_seg = None;
    for f in &log.frames {
        // A segment's frames arrive together: one mark.
        if f.in_segment {
            if last_seg == Some(f.at_ms) {
                continue;
            }
            last_seg = Some(f.at_ms);
        }
        marks.push(f.at_ms);
    }
    marks.push(end_ms);
    for w in marks.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.saturating_sub(a) > limit && faults.between(a, b).is_none() {
            v.push(violation(
                o,
                "stall",
                a + limit,
                format!(
                    "nothing arrived from {} to {} ({} ms, limit {limit} ms) with no fault \
                     in between",
                    fmt_ms(a),
                    fmt_ms(b),
                    b - a
                ),
            ));
        }
    }
}

fn check_connections(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    end_ms: u64,
    v: &mut Vec<Violation>,
) {
    let start = o.spec.start.as_millis() as u64;
    for c in &log.conns {
        if let (Some(at), Some(reason)) = (c.ended_ms, &c.end_reason) {
            if at <= end_ms && faults.between(at, at).is_none() {
                v.push(violation(
                    o,
                    "connection",
                    at,
                    format!(
                        "connection {} (opened at {}) lost with no fault: {reason}",
                        c.index,
                        fmt_ms(c.at_ms)
                    ),
                ));
            }
        }
    }
    for (at, e) in &log.refusals {
        // The very first attempts may race the node's own start (a stream a `source`
        // has not discovered yet): allow a second after the observer starts.
        if *at > start + 1000 && faults.between(*at, *at).is_none() {
            v.push(violation(
                o,
                "connection",
                *at,
                format!("refused with no fault: {e}"),
            ));
        }
    }
}

fn check_integrity(observations: &[Observation], v: &mut Vec<Violation>) {
    let mut seen: BTreeMap<Position, (u64, String)> = BTreeMap::new();
    for o in observations {
        for f in &o.log().frames {
            match seen.get(&f.pos) {
                Some((d, who)) if *d != f.digest => v.push(violation(
                    o,
                    "integrity",
                    f.at_ms,
                    format!(
                        "frame {} differs from the frame {} saw at that position",
                        pos(f.pos),
                        who
                    ),
                )),
                Some(_) => {}
                None => {
                    seen.insert(f.pos, (f.digest, o.name().to_owned()));
                }
            }
        }
    }
}

/// The **same segments** oracle: every M4F segment `b` saw that starts at the same
/// frame as one `a` saw must be that segment (last frame, start, duration, frame
/// count). Returns the violations and how many segments were compared.
pub fn check_same_segments(a: &Observation, b: &Observation) -> (Vec<Violation>, usize) {
    let theirs = a.log().segments.clone();
    let mut v = Vec::new();
    let mut compared = 0;
    for s in &b.log().segments {
        let Some(t) = theirs.iter().find(|t| t.first == s.first) else {
            continue;
        };
        compared += 1;
        let key = |x: &SeenSegment| (x.last, x.start_ms, x.duration_ms, x.frames);
        if key(s) != key(t) {
            v.push(violation(
                b,
                "same segments",
                s.at_ms,
                format!(
                    "segment from {}: to {}, start {}, {} ms, {} frames; {} saw it end at {}, \
                     start {}, {} ms, {} frames",
                    pos(s.first),
                    pos(s.last),
                    fmt_ms(s.start_ms),
                    s.duration_ms,
                    s.frames,
                    a.name(),
                    pos(t.last),
                    fmt_ms(t.start_ms),
                    t.duration_ms,
                    t.frames
                ),
            ));
        }
    }
    (v, compared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::fake::source::FakeSource;
    use tern_core::fake::FakeOptions;

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
