//! Live HLS: `/NAME/index.m3u8` lists the hub's window of closed segments; each
//! segment is served as `/NAME/seg-<UTC ms>.ts`, muxed once and cached.

use http::StatusCode;
use tern_core::mux::hls::{live_playlist, PlaylistEntry};

use crate::http::body::{respond, text, Body, Response};
use crate::hub::StreamHub;

pub fn segment_uri(utc_start_ms: u64) -> String {
    format!("seg-{utc_start_ms}.ts")
}

pub fn playlist(hub: &StreamHub) -> Response {
    let window = hub.playlist_window();
    let segs = &window.segments;
    let Some(first) = segs.first() else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "stream {:?} has no complete segment yet; retry in a few seconds",
                hub.name.as_str()
            ),
        );
    };
    let entries: Vec<PlaylistEntry> = segs
        .iter()
        .map(|s| PlaylistEntry {
            uri: segment_uri(s.segment.utc_start_ms),
            duration_ms: u64::from(s.segment.duration_ms),
            utc_start_ms: s.segment.utc_start_ms,
            discontinuity: s.discontinuity,
        })
        .collect();
    let body = live_playlist(
        first.sequence,
        window.discontinuity_sequence,
        window.target_duration_s,
        &entries,
    );
    respond(
        StatusCode::OK,
        "application/vnd.apple.mpegurl",
        Body::full(body),
    )
}

pub fn segment(hub: &StreamHub, file: &str) -> Response {
    let utc = file
        .strip_prefix("seg-")
        .and_then(|s| s.strip_suffix(".ts"))
        .and_then(|s| s.parse::<u64>().ok());
    match utc.and_then(|u| hub.live_segment(u)) {
        Some(seg) => respond(StatusCode::OK, "video/mp2t", Body::full(seg.ts_bytes())),
        None => text(
            StatusCode::NOT_FOUND,
            format!(
                "segment {file:?} of stream {:?} is not in the live window",
                hub.name.as_str()
            ),
        ),
    }
}
