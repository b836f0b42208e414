//! Archive outputs (docs/design.md §7): `recording_status.json`, the DVR ranges API,
//! VOD playlists `archive-FROM-DURATION.m3u8` / `index-FROM-DURATION.m3u8`, their
//! segments `dvr-<UTC ms>.ts`, and one continuous `archive-FROM-DURATION.ts`. FROM is
//! in UTC seconds, DURATION in seconds.
//!
//! Owns: rendering; every answer comes from an `Archive` (local DVR or a peer's), so
//! an edge answers byte for byte like the origin. Must not: touch the disk or scan
//! anything (the archive's index answers windows directly).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use tern_core::cluster::message::DvrFacts;
use tern_core::mux::hls::{vod_playlist, PlaylistEntry};
use tern_core::mux::ts::TsMuxer;
use tern_core::StreamName;
use tokio::sync::mpsc;

use crate::archive::{fetch_segment, Archive, ArchiveError, ArchiveSegment};
use crate::http::body::{respond, text, Body, Response};

/// Longest window one archive URL may ask for (a VOD playlist of 2 s segments stays
/// under ~1.5 MB).
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;

/// What an archive path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveRequest {
    RecordingStatus,
    Playlist { from_s: u64, duration_s: u64 },
    Continuous { from_s: u64, duration_s: u64 },
    Segment { utc_start_ms: u64 },
}

/// Recognises the last path component of an archive URL.
pub fn parse(file: &str) -> Option<ArchiveRequest> {
    if file == "recording_status.json" {
        return Some(ArchiveRequest::RecordingStatus);
    }
    if let Some(ms) = file
        .strip_prefix("dvr-")
        .and_then(|f| f.strip_suffix(".ts"))
    {
        return ms
            .parse()
            .ok()
            .map(|utc_start_ms| ArchiveRequest::Segment { utc_start_ms });
    }
    let window = |rest: &str| -> Option<(u64, u64)> {
        let (from, duration) = rest.split_once('-')?;
        Some((from.parse().ok()?, duration.parse().ok()?))
    };
    if let Some(rest) = file.strip_suffix(".m3u8") {
        let rest = rest
            .strip_prefix("archive-")
            .or_else(|| rest.strip_prefix("index-"))?;
        let (from_s, duration_s) = window(rest)?;
        return Some(ArchiveRequest::Playlist { from_s, duration_s });
    }
    let rest = file.strip_prefix("archive-")?.strip_suffix(".ts")?;
    let (from_s, duration_s) = window(rest)?;
    Some(ArchiveRequest::Continuous { from_s, duration_s })
}

fn error_response(e: ArchiveError) -> Response {
    let status = match e {
        ArchiveError::NotFound(_) => StatusCode::NOT_FOUND,
        ArchiveError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ArchiveError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ArchiveError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, e.to_string())
}

#[derive(Serialize)]
struct RangeJson {
    from: u64,
    duration: u64,
}

#[derive(Serialize)]
struct RecordingStatusJson {
    /// UTC seconds of the oldest stored moment (absent with an empty archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
    /// Configured depth in seconds (0: unlimited).
    depth: u64,
    ranges: Vec<RangeJson>,
}

/// Ranges in whole seconds: from rounded down, end rounded up.
fn ranges_json(facts: &DvrFacts) -> Vec<RangeJson> {
    facts
        .ranges
        .iter()
        .map(|(from_ms, dur_ms)| {
            let from = from_ms / 1000;
            let end = from_ms.saturating_add(*dur_ms).div_ceil(1000);
            RangeJson {
                from,
                duration: end - from,
            }
        })
        .collect()
}

fn json(v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => respond(StatusCode::OK, "application/json", Body::full(b)),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}"),
        ),
    }
}

/// `/streamer/api/v3/streams/NAME/dvr/ranges`.
pub async fn ranges(archive: &Arc<dyn Archive>) -> Response {
    match archive.index(None).await {
        Ok(ix) => json(&serde_json::json!({ "ranges": ranges_json(&ix.facts) })),
        Err(e) => error_response(e),
    }
}

/// The window in UTC ms, or why it is refused (a 400).
fn check_window(from_s: u64, duration_s: u64) -> Result<(u64, u64), String> {
    if duration_s == 0 || duration_s > MAX_WINDOW_SECS {
        return Err(format!(
            "DURATION must be 1..={MAX_WINDOW_SECS} seconds, not {duration_s}"
        ));
    }
    let from = from_s.checked_mul(1000);
    let to = from_s
        .checked_add(duration_s)
        .and_then(|t| t.checked_mul(1000));
    match (from, to) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err("FROM is out of range".into()),
    }
}

pub async fn handle(archive: Arc<dyn Archive>, name: &StreamName, req: ArchiveRequest) -> Response {
    match req {
        ArchiveRequest::RecordingStatus => match archive.index(None).await {
            Ok(ix) => json(&RecordingStatusJson {
                from: ix.facts.ranges.first().map(|r| r.0 / 1000),
                depth: ix.facts.depth_secs,
                ranges: ranges_json(&ix.facts),
            }),
            Err(e) => error_response(e),
        },
        ArchiveRequest::Playlist { from_s, duration_s } => {
            let (from, to) = match check_window(from_s, duration_s) {
                Ok(w) => w,
                Err(why) => return text(StatusCode::BAD_REQUEST, why),
            };
            let ix = match archive.index(Some((from, to))).await {
                Ok(ix) => ix,
                Err(e) => return error_response(e),
            };
            if ix.entries.is_empty() {
                return nothing_there(name, from_s, duration_s);
            }
            let entries: Vec<PlaylistEntry> = ix
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| PlaylistEntry {
                    uri: format!("dvr-{}.ts", e.utc_start_ms),
                    duration_ms: u64::from(e.duration_ms),
                    utc_start_ms: e.utc_start_ms,
                    discontinuity: i > 0 && e.discontinuity,
                })
                .collect();
            respond(
                StatusCode::OK,
                "application/vnd.apple.mpegurl",
                Body::full(vod_playlist(&entries)),
            )
        }
        ArchiveRequest::Segment { utc_start_ms } => {
            match fetch_segment(archive.as_ref(), utc_start_ms).await {
                Err(e) => error_response(e),
                Ok(Some(s)) => respond(
                    StatusCode::OK,
                    "video/mp2t",
                    Body::full(tern_core::mux::mux_segment(&s)),
                ),
                Ok(None) => text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "stream {:?} has no archive segment starting at {utc_start_ms} (UTC ms)",
                        name.as_str()
                    ),
                ),
            }
        }
        ArchiveRequest::Continuous { from_s, duration_s } => {
            let (from, to) = match check_window(from_s, duration_s) {
                Ok(w) => w,
                Err(why) => return text(StatusCode::BAD_REQUEST, why),
            };
            match archive.index(Some((from, to))).await {
                Ok(ix) if ix.entries.is_empty() => return nothing_there(name, from_s, duration_s),
                Ok(_) => {}
                Err(e) => return error_response(e),
            }
            let (body_tx, body_rx) = mpsc::channel(4);
            tokio::spawn(continuous(archive, from, to, body_tx));
            respond(StatusCode::OK, "video/mp2t", Body::Live(body_rx))
        }
    }
}

fn nothing_there(name: &StreamName, from_s: u64, duration_s: u64) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "stream {:?} has nothing recorded between {from_s} and {} (UTC seconds); see recording_status.json for what is there",
            name.as_str(),
            from_s.saturating_add(duration_s)
        ),
    )
}

/// Muxes the window's segments into one transport stream, a segment at a time, at
/// the pace the viewer reads.
async fn continuous(archive: Arc<dyn Archive>, from: u64, to: u64, body: mpsc::Sender<Bytes>) {
    let (seg_tx, mut seg_rx) = mpsc::channel::<ArchiveSegment>(1);
    let reading = tokio::spawn(async move { archive.range(from, to, seg_tx).await });
    let mut mux: Option<TsMuxer> = None;
    let mut last: Option<tern_core::Position> = None;
    while let Some(seg) = seg_rx.recv().await {
        let Ok(seg) = seg.into_segment() else {
            break; // a damaged segment ends the response early
        };
        let mut out = Vec::with_capacity(seg.payload_bytes() + 64 * 1024);
        let m = mux.get_or_insert_with(|| TsMuxer::new(&seg.media_info));
        if last.is_none() {
            m.write_tables(&mut out);
        }
        for f in &seg.frames {
            if last.is_some_and(|p| !p.is_followed_by(f.pos)) {
                m.mark_discontinuity();
            }
            last = Some(f.pos);
            m.write_frame(f, &mut out);
        }
        if body.send(Bytes::from(out)).await.is_err() {
            break;
        }
    }
    reading.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(
            parse("recording_status.json"),
            Some(ArchiveRequest::RecordingStatus)
        );
        assert_eq!(
            parse("archive-1767225600-60.m3u8"),
            Some(ArchiveRequest::Playlist {
                from_s: 1_767_225_600,
                duration_s: 60
            })
        );
        assert_eq!(
            parse("index-1767225600-60.m3u8"),
            Some(ArchiveRequest::Playlist {
                from_s: 1_767_225_600,
                duration_s: 60
            })
        );
        assert_eq!(
            parse("archive-1767225600-60.ts"),
            Some(ArchiveRequest::Continuous {
                from_s: 1_767_225_600,
                duration_s: 60
            })
        );
        assert_eq!(
            parse("dvr-1767225600123.ts"),
            Some(ArchiveRequest::Segment {
                utc_start_ms: 1_767_225_600_123
            })
        );
        for bad in [
            "archive-x-60.m3u8",
            "archive-1-.ts",
            "dvr-.ts",
            "index.m3u8",
            "mpegts",
            "archive-1-2-3.ts",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_round_outwards() {
        let facts = DvrFacts {
            depth_secs: 0,
            ranges: vec![(1_000_500, 2_000), (1_010_000, 1_000)],
        };
        let r = ranges_json(&facts);
        assert_eq!((r[0].from, r[0].duration), (1000, 3));
        assert_eq!((r[1].from, r[1].duration), (1010, 1));
    }

    #[test]
    fn windows_are_bounded() {
        assert!(check_window(1, 0).is_err());
        assert!(check_window(1, MAX_WINDOW_SECS + 1).is_err());
        assert!(check_window(u64::MAX, 1).is_err());
        assert_eq!(check_window(2, 3).ok(), Some((2000, 5000)));
    }
}
