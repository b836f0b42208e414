//! Live HLS: the master playlist (`index.m3u8`, `video.m3u8`, `playlist.m3u8`), the
//! media playlist of the hub's window of closed segments (`mono.m3u8`, and per
//! variant `tracks-v1a1/mono.m3u8`), and the segments `seg-<UTC ms>.ts` (all tracks
//! muxed once and cached; a track selection is muxed per request).

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tern_core::mux::hls::{live_playlist, PlaylistEntry};
use tern_core::mux::hls_master::{master_playlist, Variant};
use tern_core::play_url::{media_playlist_file, TrackSelection, Window};
use tern_core::{track_select, MediaInfo, Segment};
use tern_net::Clock;

use tern_core::http_manners::Manners;

use crate::http::body::{respond, text, Body, Response};
use crate::http::manners::tagged;
use crate::hub::{LiveSegment, StreamHub};
use crate::timer::until;

pub const M3U8: &str = "application/vnd.apple.mpegurl";

pub fn segment_uri(utc_start_ms: u64) -> String {
    format!("seg-{utc_start_ms}.ts")
}

/// The track ids `sel` picks in `mi` (`None`: all of them), or why not (a 404).
pub fn pick_tracks(
    name: &str,
    mi: &MediaInfo,
    sel: Option<&TrackSelection>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(sel) = sel else { return Ok(None) };
    match track_select::select(mi, sel) {
        Some(ids) if track_select::is_all(mi, &ids) => Ok(None),
        Some(ids) => Ok(Some(ids)),
        None => Err(format!(
            "stream {name:?} has no tracks {:?} (it has {} video and {} audio)",
            sel.dir(),
            mi.tracks.iter().filter(|t| t.is_video()).count(),
            mi.tracks.iter().filter(|t| !t.is_video()).count()
        )),
    }
}

/// A segment muxed with the tracks `ids` only (all of them: `None`).
pub fn mux_tracks(seg: &Segment, ids: Option<&[u8]>) -> Bytes {
    match ids {
        None => tern_core::mux::mux_segment(seg),
        Some(ids) => tern_core::mux::mux_segment(&track_select::filter_segment(seg, ids)),
    }
}

fn live_bytes(s: &LiveSegment, ids: Option<&[u8]>) -> Bytes {
    match ids {
        None => s.ts_bytes(),
        Some(_) => mux_tracks(&s.segment, ids),
    }
}

/// A master playlist over `segments` (measured for the bit rates; each with its
/// all-tracks muxed size when known): one variant per default track selection,
/// pointing to the media playlist of `window` (live: `None`).
pub fn master_of(
    name: &str,
    mi: &MediaInfo,
    segments: &[(&Segment, Option<usize>)],
    window: Option<Window>,
    now_s: u64,
) -> Response {
    let selections = track_select::default_variants(mi);
    if selections.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} has no tracks yet; retry in a few seconds"),
        );
    }
    let file = media_playlist_file(window, now_s);
    let variants: Vec<Variant> = selections
        .iter()
        .filter_map(|sel| {
            let ids = track_select::select(mi, sel)?;
            let all = track_select::is_all(mi, &ids);
            let sizes = segments.iter().map(|&(s, known)| {
                let bytes = match known {
                    Some(n) if all => n,
                    _ => mux_tracks(s, (!all).then_some(&ids[..])).len(),
                };
                (bytes, s.duration_ms)
            });
            let (bandwidth, average_bandwidth) = track_select::bitrates(sizes);
            Some(Variant {
                uri: format!("{}/{file}", sel.dir()),
                bandwidth,
                average_bandwidth,
                tracks: mi
                    .tracks
                    .iter()
                    .filter(|t| ids.contains(&t.id))
                    .cloned()
                    .collect(),
            })
        })
        .collect();
    respond(StatusCode::OK, M3U8, Body::full(master_playlist(&variants)))
}

fn no_segment_yet(hub: &StreamHub) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "stream {:?} has no complete segment yet; retry in a few seconds",
            hub.name.as_str()
        ),
    )
}

/// `index.m3u8`: the live master playlist, bit rates measured over the live window.
pub fn master(hub: &StreamHub) -> Response {
    let window = hub.playlist_window();
    let Some(last) = window.segments.last() else {
        return no_segment_yet(hub);
    };
    // The hub caches every segment's all-tracks bytes; a selection is muxed here.
    let segs: Vec<(&Segment, Option<usize>)> = window
        .segments
        .iter()
        .map(|s| (&s.segment, Some(s.ts_bytes().len())))
        .collect();
    tagged(
        master_of(hub.name.as_str(), &last.segment.media_info, &segs, None, 0),
        Manners::live(),
    )
}

/// `mono.m3u8` (optionally under `tracks-…/`): the live media playlist.
/// The longest a live playlist request waits for a stream's first segment (a pull
/// that just opened, a source that just started), whatever the segment duration.
pub const FIRST_SEGMENT_WAIT_CAP: Duration = Duration::from_secs(10);

/// Waits until the stream has a closed segment, for at most the segment duration
/// plus one GOP (taken as another segment duration: the GOP is unknown before the
/// first frames), capped at [`FIRST_SEGMENT_WAIT_CAP`]. A playlist asked for just
/// as an on-demand pull opens is then answered with a segment instead of a 404.
pub async fn first_segment<C: Clock>(hub: &StreamHub, clock: &C) {
    let (_, backlog, mut rx) = hub.subscribe_segments(None);
    if !backlog.is_empty() {
        return;
    }
    let wait =
        (Duration::from_millis(u64::from(hub.segment_duration_ms)) * 2).min(FIRST_SEGMENT_WAIT_CAP);
    let now = clock.now();
    tokio::select! {
        _ = rx.recv() => {}
        () = until(Some(now + wait), now) => {}
    }
}

pub fn playlist(hub: &StreamHub, tracks: Option<&TrackSelection>) -> Response {
    let window = hub.playlist_window();
    let segs = &window.segments;
    let Some(first) = segs.first() else {
        return no_segment_yet(hub);
    };
    if let Err(why) = pick_tracks(hub.name.as_str(), &hub.media_info(), tracks) {
        return text(StatusCode::NOT_FOUND, why);
    }
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
    tagged(
        respond(StatusCode::OK, M3U8, Body::full(body)),
        Manners::live(),
    )
}

/// `seg-<UTC ms>.ts` (optionally under `tracks-…/`).
pub fn segment(hub: &StreamHub, utc_start_ms: u64, tracks: Option<&TrackSelection>) -> Response {
    let Some(seg) = hub.live_segment(utc_start_ms) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "segment {} of stream {:?} is not in the live window",
                segment_uri(utc_start_ms),
                hub.name.as_str()
            ),
        );
    };
    match pick_tracks(hub.name.as_str(), &seg.segment.media_info, tracks) {
        Ok(ids) => tagged(
            respond(
                StatusCode::OK,
                "video/mp2t",
                Body::full(live_bytes(&seg, ids.as_deref())),
            ),
            Manners::segment(seg.segment.end_utc_ms()),
        ),
        Err(why) => text(StatusCode::NOT_FOUND, why),
    }
}
