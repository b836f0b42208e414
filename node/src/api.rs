//! The HTTP API, Flussonic-compatible field names (`/streamer/api/v3/streams`,
//! `/streamer/api/v3/streams/NAME`).
//!
//! Owns: the JSON shapes. Must not: change any state.

use http::StatusCode;
use serde::Serialize;
use tern_core::demand::{PullMode, PullState};
use tern_core::{StreamName, TrackInfo, TrackKind, TrackParams};
use tern_net::Clock;

use crate::dvr::{DvrSummary, RecordingState};
use crate::http::body::{respond, text, Body, Response};
use crate::runtime::{NodeCtx, StreamEntry};

#[derive(Serialize)]
pub struct StreamList {
    pub streams: Vec<StreamStatus>,
    pub estimated_count: usize,
}

#[derive(Serialize)]
pub struct StreamStatus {
    pub name: String,
    /// Set for a stream restreamed from another node (`source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteJson>,
    pub stats: Stats,
    pub inputs: Vec<InputStatus>,
    /// Set for a stream this node records (`dvr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dvr: Option<DvrJson>,
}

/// A local DVR's recording state: `waiting` (no segment yet), `recording`,
/// `paused` (the disk is full and nothing of Tern's is left to delete; it retries by
/// itself) or `failing` (the last segment could not be stored), with the reason
/// (without paths or the OS's text: the API needs no key; the log has them).
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct DvrJson {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// UTC seconds of the oldest stored segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    pub segments: usize,
    pub bytes: u64,
}

impl From<DvrSummary> for DvrJson {
    fn from(s: DvrSummary) -> Self {
        let (state, reason) = match s.state {
            RecordingState::Waiting => ("waiting", None),
            RecordingState::Recording => ("recording", None),
            // The shown text: no paths, no OS text (the full reason is logged).
            RecordingState::Paused { reason } => ("paused", Some(reason.shown)),
            RecordingState::Failing { error } => ("failing", Some(error.shown)),
        };
        DvrJson {
            state,
            reason,
            from: s.from_ms.map(|ms| ms / 1000),
            segments: s.segments,
            bytes: s.bytes,
        }
    }
}

#[derive(Serialize)]
pub struct Stats {
    pub alive: bool,
    /// `running` when frames arrive, `starting` before the first one, `stalled` after
    /// the source timeout; an on-demand stream is `idle` while nobody watches and
    /// `starting` from its first viewer to its first frame.
    pub status: &'static str,
    /// Viewers with an open response (MPEG-TS, M4S and M4F pulls of further nodes).
    pub online_clients: u32,
    /// How the stream's input is kept: `static` (always) or `on_demand`.
    pub pull: &'static str,
    /// Milliseconds since the stream started on this node.
    pub lifetime: u64,
    /// kbit/s out of the node's segmenter (same as the input for now).
    pub bitrate: u64,
    /// kbit/s measured over the last closed segment.
    pub input_bitrate: u64,
    /// Milliseconds between a frame's capture (on the origin) and its arrival here:
    /// how far this node is behind the origin. Absent before the first frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    /// Source restarts, input switches and missed stretches seen.
    pub discontinuities: u64,
    /// Where this node's capture times come from, for a stream it ingests from a
    /// camera: `rtcp_sender_report` (the camera's clock) or `arrival`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<&'static str>,
    pub media_info: MediaInfoJson,
}

#[derive(Serialize)]
pub struct RemoteJson {
    /// `host:port` of the node the stream comes from.
    pub source: String,
    pub protocol: &'static str,
}

#[derive(Serialize)]
pub struct MediaInfoJson {
    pub tracks: Vec<TrackJson>,
}

#[derive(Serialize)]
pub struct TrackJson {
    pub track_id: String,
    pub content: &'static str,
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

#[derive(Serialize)]
pub struct InputStatus {
    pub url: String,
    pub stats: InputStats,
}

#[derive(Serialize)]
pub struct InputStats {
    pub active: bool,
}

/// A stream with no frame for this long is reported not alive.
pub const ALIVE_TIMEOUT_MS: u64 = 3000;

/// What the API shows of one track: codec, and size and rate for video, sample rate
/// and channels for audio (what is known of a pass-through codec).
fn track_json(t: &TrackInfo) -> TrackJson {
    let kind = t.kind();
    let mut j = TrackJson {
        track_id: match kind {
            TrackKind::Video => format!("v{}", t.id),
            TrackKind::Audio => format!("a{}", t.id),
        },
        content: match kind {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        },
        codec: t.codec_name().to_owned(),
        width: None,
        height: None,
        fps: None,
        sample_rate: None,
        channels: None,
    };
    match &t.params {
        TrackParams::H264 {
            width, height, fps, ..
        }
        | TrackParams::H265 {
            width, height, fps, ..
        } => {
            j.width = Some(*width);
            j.height = Some(*height);
            j.fps = Some(*fps).filter(|&f| f > 0);
        }
        TrackParams::Aac {
            sample_rate,
            channels,
            ..
        } => {
            j.sample_rate = Some(*sample_rate);
            j.channels = Some(*channels);
        }
        TrackParams::Other {
            kind: TrackKind::Audio,
            timescale,
            ..
        } => j.sample_rate = Some(*timescale),
        TrackParams::Other { .. } => {}
    }
    j
}

pub fn status<C: Clock>(ctx: &NodeCtx<C>, entry: &StreamEntry) -> StreamStatus {
    let fig = entry.hub.figures();
    let now = ctx.clock.now();
    let since_last = fig
        .last_frame_at
        .map(|t| now.saturating_sub(t).as_millis() as u64);
    let alive = since_last.is_some_and(|ms| ms < ALIVE_TIMEOUT_MS);
    let (mode, pull, viewers) = entry.hub.pull_state();
    let status = match (pull, since_last) {
        (PullState::Idle, _) => "idle",
        (PullState::Starting, _) | (_, None) => "starting",
        (_, Some(_)) if alive => "running",
        (_, Some(_)) => "stalled",
    };
    let mi = entry.hub.media_info();
    let tracks = mi.tracks.iter().map(track_json).collect();
    StreamStatus {
        name: entry.hub.name.to_string(),
        remote: entry.remote.as_ref().map(|r| RemoteJson {
            source: r.peer.clone(),
            protocol: r.protocol,
        }),
        stats: Stats {
            alive,
            status,
            online_clients: viewers,
            pull: match mode {
                PullMode::Static => "static",
                PullMode::OnDemand { .. } => "on_demand",
            },
            lifetime: now.saturating_sub(fig.started_at).as_millis() as u64,
            bitrate: fig.input_bitrate / 1000,
            input_bitrate: fig.input_bitrate / 1000,
            delay: fig.delay_ms,
            discontinuities: fig.discontinuities,
            capture_time: fig.capture_source,
            media_info: MediaInfoJson { tracks },
        },
        inputs: entry
            .inputs
            .iter()
            .enumerate()
            .map(|(i, url)| InputStatus {
                url: url.clone(),
                stats: InputStats {
                    active: i == fig.active_input && alive,
                },
            })
            .collect(),
        dvr: entry.dvr.as_ref().map(|d| d.summary().into()),
    }
}

fn json(v: &impl Serialize) -> Response {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => respond(StatusCode::OK, "application/json", Body::full(b)),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}"),
        ),
    }
}

pub fn list<C: Clock>(ctx: &NodeCtx<C>) -> Response {
    let streams: Vec<StreamStatus> = ctx.streams().iter().map(|e| status(ctx, e)).collect();
    json(&StreamList {
        estimated_count: streams.len(),
        streams,
    })
}

pub fn one<C: Clock>(ctx: &NodeCtx<C>, name: &StreamName) -> Response {
    match ctx.streams().iter().find(|e| &e.hub.name == name) {
        Some(e) => json(&status(ctx, e)),
        None => text(
            StatusCode::NOT_FOUND,
            format!("stream {:?} is not known on this node", name.as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvr::{DvrError, Reason, StoreError};

    #[test]
    fn dvr_state_names_and_reasons() {
        let summary = |state| DvrSummary {
            state,
            from_ms: Some(1_767_225_601_999),
            segments: 3,
            bytes: 42,
        };
        let full = DvrError::Full {
            location: "/srv/secret/dvr".into(),
        };
        let paused = DvrJson::from(summary(RecordingState::Paused {
            reason: Reason::of(&full),
        }));
        assert_eq!(paused.state, "paused");
        assert_eq!(paused.reason, Some(full.public_reason()));
        assert_eq!(paused.from, Some(1_767_225_601));
        let json = serde_json::to_string(&DvrJson::from(summary(RecordingState::Recording)))
            .unwrap_or_default();
        assert_eq!(
            json,
            r#"{"state":"recording","from":1767225601,"segments":3,"bytes":42}"#
        );
        let io = DvrError::Store(StoreError::new(
            "write segment in",
            "/srv/secret/dvr/main",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        ));
        let failing = DvrJson::from(summary(RecordingState::Failing {
            error: Reason::of(&io),
        }));
        assert_eq!(failing.state, "failing");
        assert_eq!(
            failing.reason.as_deref(),
            Some("cannot write a DVR file: permission denied (let the user running tern write there, or change the `dvr` path); this node's log names the file")
        );
    }

    /// Finding 6: the API (no key needed) showed absolute DVR paths and the OS's
    /// text in `dvr.reason`. They are logged, not shown.
    #[test]
    fn dvr_reasons_show_no_paths() {
        let errors = [
            DvrError::Full {
                location: "/srv/secret/dvr".into(),
            },
            DvrError::Store(StoreError::new(
                "create",
                "/srv/secret/dvr/main/x.tmp",
                std::io::Error::other("/srv/secret/dvr: weird OS text"),
            )),
            DvrError::Journal {
                path: "/srv/secret/dvr/main/index".into(),
                reason: "bad".into(),
            },
        ];
        for e in errors {
            let r = Reason::of(&e);
            assert!(r.logged.contains("/srv/secret"), "{}", r.logged);
            for state in [
                RecordingState::Paused { reason: r.clone() },
                RecordingState::Failing { error: r.clone() },
            ] {
                let json = serde_json::to_string(&DvrJson::from(DvrSummary {
                    state,
                    from_ms: None,
                    segments: 0,
                    bytes: 0,
                }))
                .unwrap_or_default();
                assert!(json.contains("\"reason\""), "{json}");
                assert!(
                    !json.contains("/srv") && !json.contains("OS text"),
                    "{json}"
                );
            }
        }
    }
}
