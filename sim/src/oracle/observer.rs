//! Observers: client hosts that watch one node's cluster endpoint with the real signed
//! client, as one more receiver would, and record what arrived when (simulated ms).
//!
//! Owns: the observer loop and its recordings. Must not: judge what it recorded (that
//! is `checks.rs`), or influence the node beyond being one more receiver.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::ClusterAuth;
use tern_core::cluster::message::Message;
use tern_core::cluster::receiver::DEAD_PEER_TIMEOUT;
use tern_core::fake::h264;
use tern_core::{Frame, MediaInfo, Position, TrackParams};
use tern_net::{TurmoilClock, TurmoilNet};
use tern_node::cluster::client::ClusterClient;

use crate::{sim_ms, LINK_LATENCY, SIM_EPOCH_MS};

use super::*;

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
    pub(crate) fn of(mi: &MediaInfo) -> Option<Cadence> {
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
    /// [`frame_digest`]: track, timestamps, flags, capture time and payload.
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

/// A 64-bit digest (the first 8 bytes of BLAKE3) of a frame's track, flags,
/// timestamps, capture time and payload: what the integrity oracle compares. Every
/// observer digests every frame it sees, so it is BLAKE3 (several bytes a cycle)
/// rather than the trace's FNV-1a (one byte per multiply).
pub fn frame_digest(f: &Frame) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&[f.track, u8::from(f.keyframe)]);
    h.update(&f.dts.to_be_bytes());
    h.update(&f.pts.to_be_bytes());
    h.update(&f.capture_ms.to_be_bytes());
    h.update(&f.payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_be_bytes(first)
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

#[allow(clippy::disallowed_methods)] // sim harness on turmoil time: the observer starts, retries and times out like a peer
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
