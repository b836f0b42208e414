//! The HTTP API, Flussonic-compatible field names (`/streamer/api/v3/streams`,
//! `/streamer/api/v3/streams/NAME`).
//!
//! Owns: the JSON shapes. Must not: change any state.

use http::StatusCode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

use tern_core::demand::{PullMode, PullState};
use tern_core::stream_status::{decide, Observed, StreamStatus as Status};
use tern_core::{Segment, StreamName, TrackInfo, TrackKind, TrackParams};
use tern_net::Clock;

use crate::api_select;
use crate::ctx::{NodeCtx, StreamEntry};
use crate::dvr::{DvrSummary, RecordingState};
use crate::http::body::{respond, text, Body, Response};
use crate::hub::Figures;

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
    /// Whether frames arrive (`status` is `running`).
    pub alive: bool,
    /// `running`, `starting`, `waiting`, `error` or `idle`
    /// (`tern_core::stream_status`).
    pub status: &'static str,
    /// How the stream's input is kept: `static` (always) or `on_demand`.
    pub pull: &'static str,
    /// Milliseconds since the stream started on this node.
    pub lifetime: u64,
    /// UTC ms when the stream started on this node.
    pub opened_at: u64,
    /// kbit/s out of the node's segmenter (same as the input for now).
    pub bitrate: u64,
    /// kbit/s measured over the last closed segment.
    pub input_bitrate: u64,
    /// Bytes received from the source since the stream started on this node.
    pub bytes_in: u64,
    /// Bytes sent to this node's players of the stream (HLS, MPEG-TS, archive).
    pub bytes_out: u64,
    /// Clients now: viewers with an open response (live and archive MPEG-TS, M4S
    /// and M4F pulls of further nodes) and HLS addresses seen in the last 30 s.
    pub online_clients: u64,
    /// Milliseconds since the last frame arrived (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts_delay: Option<u64>,
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
    /// Why the stream is in `error`: its input's last attempt was refused in a way
    /// retrying will not fix (`401 Unauthorized` from the camera, the peer refusing
    /// the cluster key, no such stream). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this node records the stream (`dvr`).
    pub dvr_enabled: bool,
    /// The recording, when this node records the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dvr_info: Option<DvrInfoJson>,
    pub media_info: MediaInfoJson,
}

/// Flussonic's `stats.dvr_info`: what is stored, in seconds and bytes.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct DvrInfoJson {
    /// UTC seconds of the oldest stored moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Configured depth in seconds (0: unlimited).
    pub depth: u64,
    /// Seconds stored (the ranges added up).
    pub duration: u64,
    /// Stretches of archive (gaps between them are not stored).
    pub ranges: usize,
    pub segments: usize,
    pub bytes: u64,
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
    /// kbit/s of this track over the last closed segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Codec profile (`High`, `Main`, `LC`) and level (`3.1`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
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
pub use tern_core::stream_status::ALIVE_TIMEOUT_MS;

/// What the API shows of one track: codec, and size and rate for video, sample rate
/// and channels for audio (what is known of a pass-through codec).
fn track_json(t: &TrackInfo, bitrate: Option<u64>) -> TrackJson {
    let kind = t.kind();
    let (profile, level) = tern_core::codec_info::profile_level(t);
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
        bitrate,
        profile,
        level,
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

/// kbit/s of each track over `seg`.
fn track_bitrates(seg: &Segment) -> BTreeMap<u8, u64> {
    let mut bytes: BTreeMap<u8, u64> = BTreeMap::new();
    for f in &seg.frames {
        *bytes.entry(f.track).or_default() += f.payload.len() as u64;
    }
    let ms = u64::from(seg.duration_ms).max(1);
    bytes
        .into_iter()
        .map(|(t, b)| (t, b * 8 / ms)) // bits per ms = kbit/s
        .collect()
}

/// The status of a stream from its hub's figures and its pull at `now` (a static
/// pull's `Starting` is judged by the frames alone: `waiting` after 3 s).
pub fn stream_status(fig: &Figures, mode: PullMode, pull: PullState, now: Duration) -> Status {
    let on_demand = matches!(mode, PullMode::OnDemand { .. });
    decide(&Observed {
        since_last_frame_ms: fig
            .last_frame_at
            .map(|t| now.saturating_sub(t).as_millis() as u64),
        since_start_ms: now.saturating_sub(fig.started_at).as_millis() as u64,
        failed: fig.refused.is_some(),
        idle: pull == PullState::Idle,
        starting: on_demand && pull == PullState::Starting,
    })
}

pub fn status<C: Clock>(ctx: &NodeCtx<C>, entry: &StreamEntry) -> StreamStatus {
    let fig = entry.hub.figures();
    let now = ctx.clock.now();
    let since_last = fig
        .last_frame_at
        .map(|t| now.saturating_sub(t).as_millis() as u64);
    let (mode, pull, viewers) = entry.hub.pull_state();
    let state = stream_status(&fig, mode, pull, now);
    let alive = state.alive();
    let mi = entry.hub.media_info();
    let rates = entry
        .hub
        .playlist_window()
        .segments
        .last()
        .map(|s| track_bitrates(&s.segment))
        .unwrap_or_default();
    let tracks = mi
        .tracks
        .iter()
        .map(|t| track_json(t, rates.get(&t.id).copied()))
        .collect();
    let lifetime = now.saturating_sub(fig.started_at).as_millis() as u64;
    let dvr_info = entry.dvr.as_ref().map(|d| {
        let summary = d.summary();
        let ranges = d.ranges();
        DvrInfoJson {
            from: summary.from_ms.map(|ms| ms / 1000),
            depth: d.config().depth_secs.unwrap_or(0),
            duration: ranges.iter().map(|r| r.1).sum::<u64>() / 1000,
            ranges: ranges.len(),
            segments: summary.segments,
            bytes: summary.bytes,
        }
    });
    StreamStatus {
        name: entry.hub.name.to_string(),
        remote: entry.remote.as_ref().map(|r| RemoteJson {
            source: r.peer.clone(),
            protocol: r.protocol,
        }),
        stats: Stats {
            alive,
            status: state.as_str(),
            pull: match mode {
                PullMode::Static => "static",
                PullMode::OnDemand { .. } => "on_demand",
            },
            lifetime,
            opened_at: ctx.clock.utc_ms().saturating_sub(lifetime),
            bitrate: fig.input_bitrate / 1000,
            input_bitrate: fig.input_bitrate / 1000,
            bytes_in: fig.bytes_in,
            bytes_out: entry.hub.clients.bytes_out(),
            online_clients: u64::from(viewers) + entry.hub.clients.online(now),
            ts_delay: since_last,
            delay: fig.delay_ms,
            discontinuities: fig.discontinuities,
            capture_time: fig.capture_source,
            error: fig.refused.clone(),
            dvr_enabled: entry.dvr.is_some(),
            dvr_info,
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

/// `/streamer/api/v3/streams[?select=PATHS]`.
pub fn list<C: Clock>(ctx: &NodeCtx<C>, query: Option<&str>) -> Response {
    let paths = match api_select::parse(query) {
        Ok(p) => p,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let streams: Vec<StreamStatus> = ctx.streams().iter().map(|e| status(ctx, e)).collect();
    let Some(paths) = paths else {
        return json(&StreamList {
            estimated_count: streams.len(),
            streams,
        });
    };
    let selected: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| api_select::select(&serde_json::to_value(s).unwrap_or_default(), &paths))
        .collect();
    json(&serde_json::json!({
        "streams": selected,
        "estimated_count": streams.len(),
    }))
}

/// The cluster link per peer: bytes in and out and open pulls, for live, archive
/// and signaling (`cluster::link`).
pub fn peers<C: Clock>(ctx: &NodeCtx<C>) -> Response {
    #[derive(Serialize)]
    struct Peers {
        peers: Vec<crate::cluster::link::PeerJson>,
    }
    json(&Peers {
        peers: ctx.link.snapshot(),
    })
}

/// `/streamer/api/v3/streams/NAME[?select=PATHS]`.
pub fn one<C: Clock>(ctx: &NodeCtx<C>, name: &StreamName, query: Option<&str>) -> Response {
    let paths = match api_select::parse(query) {
        Ok(p) => p,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    match ctx.streams().iter().find(|e| &e.hub.name == name) {
        Some(e) => match paths {
            None => json(&status(ctx, e)),
            Some(p) => json(&api_select::select(
                &serde_json::to_value(status(ctx, e)).unwrap_or_default(),
                &p,
            )),
        },
        None => text(
            StatusCode::NOT_FOUND,
            format!("stream {:?} is not known on this node", name.as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvr::{DvrError, StoreError};

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
            reason: full.reason(),
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
        let failing = DvrJson::from(summary(RecordingState::Failing { error: io.reason() }));
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
            let r = e.reason();
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
