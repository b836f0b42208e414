//! Archive outputs (docs/design.md §7): `recording_status.json`, the DVR ranges API,
//! master and media playlists of a window (VOD when closed, EVENT while it grows),
//! their segments `dvr-<UTC ms>.ts`, one MPEG-TS of a window, and the endless
//! timeshift MPEG-TS. The URL forms are parsed by `tern_core::play_url` and the
//! windows resolved by `tern_core::archive_window`.
//!
//! Owns: rendering; every answer comes from an `Archive` (local DVR or a peer's), so
//! an edge answers byte for byte like the origin. Must not: touch the disk or scan
//! anything (the archive's index answers windows directly).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use std::time::Duration;

use tern_core::archive_window::{self, resolve, Span, Start, SETTLE_MS};
use tern_core::cluster::message::{ArchiveEntry, DvrFacts};
use tern_core::http_manners::Manners;
use tern_core::mux::hls::{archive_playlist, ArchiveKind, PlaylistEntry};
use tern_core::mux::ts::TsMuxer;
use tern_core::play_url::{Output, TrackSelection};
use tern_core::{Segment, StreamName};
use tern_net::Clock;
use tokio::sync::mpsc;

use crate::archive::{fetch_segment, Archive, ArchiveError, ArchiveSegment};
use crate::http::body::{respond, text, Aborted, Body, Budgeted, Response};
use crate::http::manners::tagged;
use crate::output::hls;

fn error_response(e: ArchiveError) -> Response {
    // The status class is core's (`ArchiveError::status`, one mapping for all).
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // The detail (paths, the OS's and peers' words) is logged, never shown.
    if matches!(
        e,
        ArchiveError::Unreachable { .. } | ArchiveError::Failed { .. }
    ) {
        log_failure(status.as_u16(), &e);
    }
    text(status, e.shown())
}

/// Logs a failed archive request with its detail, at most one line per status per
/// 10 s with the count (every player of an unreachable archive fails alike).
fn log_failure(status: u16, e: &ArchiveError) {
    use std::sync::{Mutex, OnceLock};
    use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
    static LOG: OnceLock<(tokio::time::Instant, Mutex<LogLimiter<u16>>)> = OnceLock::new();
    let (origin, limiter) = LOG.get_or_init(|| {
        (
            tokio::time::Instant::now(),
            Mutex::new(LogLimiter::new(DEFAULT_LOG_INTERVAL_MS)),
        )
    });
    let now_ms = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let hit = limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .hit(status, now_ms);
    if let Some(count) = hit {
        tracing::warn!(status, count, last = %e, "archive requests failed (one line per status per 10 s)");
    }
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

/// The stored segments of `span` that start at or after its FROM (Flussonic's rule),
/// and whether the window is closed (see `Span::closed`).
async fn listed(
    archive: &dyn Archive,
    span: &Span,
    now_ms: u64,
) -> Result<(Vec<ArchiveEntry>, bool), ArchiveError> {
    if span.to_ms <= span.from_ms && span.lead == 0 {
        return Ok((Vec::new(), span.ended));
    }
    // An ended window also looks past its end, to see whether the segment across
    // the end is stored yet; a timeshift playlist lists a few past its viewer's
    // position.
    let look_to = if span.ended {
        span.to_ms.saturating_add(SETTLE_MS)
    } else if span.lead > 0 {
        now_ms.max(span.to_ms)
    } else {
        span.to_ms
    };
    let ix = archive.index(Some((span.from_ms, look_to))).await?;
    let newest = ix.entries.last().map(|e| e.utc_start_ms);
    let closed = span.closed(now_ms, newest);
    let entries = archive_window::listed(ix.entries, span, |e| {
        (
            e.utc_start_ms,
            e.utc_start_ms.saturating_add(u64::from(e.duration_ms)),
        )
    });
    Ok((entries, closed))
}

/// Answers an archive request (`output` is one of the archive forms of
/// `tern_core::play_url`) at `now_ms`.
#[allow(clippy::disallowed_methods)] // driver: one body-producer task per archive MPEG-TS response
pub async fn handle<C: Clock>(
    archive: Arc<dyn Archive>,
    name: &StreamName,
    tracks: Option<&TrackSelection>,
    output: Output,
    clock: C,
) -> Response {
    let now_ms = clock.utc_ms();
    let window = match output {
        Output::RecordingStatus => {
            return match archive.index(None).await {
                Ok(ix) => json(&RecordingStatusJson {
                    from: ix.facts.ranges.first().map(|r| r.0 / 1000),
                    depth: ix.facts.depth_secs,
                    ranges: ranges_json(&ix.facts),
                }),
                Err(e) => error_response(e),
            }
        }
        Output::ArchiveSegment { utc_start_ms } => {
            return segment(archive.as_ref(), name, tracks, utc_start_ms).await
        }
        Output::ArchiveMaster(w) | Output::ArchiveMedia(w) | Output::ArchiveTs(w) => w,
        other => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{other:?} is not an archive output"),
            )
        }
    };
    let span = match resolve(window, now_ms) {
        Ok(s) => s,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let (entries, closed) = match listed(archive.as_ref(), &span, now_ms).await {
        Ok(e) => e,
        Err(e) => return error_response(e),
    };
    let Some(first) = entries.first() else {
        return nothing_there(name, &span);
    };
    // A closed window's playlists change only when retention deletes from them.
    let manners = match entries.last() {
        Some(last) if closed => Manners::closed(
            last.utc_start_ms
                .saturating_add(u64::from(last.duration_ms)),
        ),
        _ => Manners::live(),
    };
    match output {
        Output::ArchiveMaster(w) => {
            // Codecs, resolution and bit rate from the window's first segment.
            let seg = match fetch_segment(archive.as_ref(), first.utc_start_ms).await {
                Ok(Some(s)) => s,
                Ok(None) => return nothing_there(name, &span),
                Err(e) => return error_response(e),
            };
            let mi = seg.media_info.clone();
            tagged(
                hls::master_of(name.as_str(), &mi, &[(&seg, None)], Some(w), now_ms / 1000),
                manners,
            )
        }
        Output::ArchiveMedia(_) => {
            let items: Vec<PlaylistEntry> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| PlaylistEntry {
                    uri: format!("dvr-{}.ts", e.utc_start_ms),
                    duration_ms: u64::from(e.duration_ms),
                    utc_start_ms: e.utc_start_ms,
                    discontinuity: i > 0 && e.discontinuity,
                })
                .collect();
            let (kind, from_start) = if closed {
                (ArchiveKind::Vod, false)
            } else {
                (ArchiveKind::Event, span.start == Start::Beginning)
            };
            tagged(
                respond(
                    StatusCode::OK,
                    hls::M3U8,
                    Body::full(archive_playlist(&items, kind, from_start)),
                ),
                manners,
            )
        }
        _ => {
            // One muxed segment waits for the reader, no more (and all of them
            // together stay within ARCHIVE_MEMORY_KIB).
            let (body_tx, body_rx) = mpsc::channel(1);
            if span.endless {
                tokio::spawn(timeshift(archive, span.from_ms, clock, body_tx));
            } else {
                tokio::spawn(continuous(archive, span.from_ms, span.to_ms, body_tx));
            }
            respond(StatusCode::OK, "video/mp2t", Body::Fallible(body_rx))
        }
    }
}

async fn segment(
    archive: &dyn Archive,
    name: &StreamName,
    tracks: Option<&TrackSelection>,
    utc_start_ms: u64,
) -> Response {
    match fetch_segment(archive, utc_start_ms).await {
        Err(e) => error_response(e),
        Ok(Some(s)) => match hls::pick_tracks(name.as_str(), &s.media_info, tracks) {
            Ok(ids) => tagged(
                respond(
                    StatusCode::OK,
                    "video/mp2t",
                    Body::full(hls::mux_tracks(&s, ids.as_deref())),
                ),
                Manners::segment(s.end_utc_ms()),
            ),
            Err(why) => text(StatusCode::NOT_FOUND, why),
        },
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!(
                "stream {:?} has no archive segment starting at {utc_start_ms} (UTC ms)",
                name.as_str()
            ),
        ),
    }
}

fn nothing_there(name: &StreamName, span: &Span) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "stream {:?} has nothing recorded that starts between {} and {} (UTC seconds); see recording_status.json for what is there",
            name.as_str(),
            span.from_ms / 1000,
            span.to_ms.div_ceil(1000)
        ),
    )
}

/// How far ahead of real time an endless (timeshift) response reads: the player's
/// buffer at its start.
pub const TIMESHIFT_LEAD: Duration = Duration::from_secs(10);
/// How often an endless response that caught up with the archive looks for more.
const TIMESHIFT_POLL: Duration = Duration::from_millis(500);

/// Muxes segments one after another into one transport stream: tables first,
/// continuity counters carried on, the discontinuity indicator where positions do
/// not follow (a source restart or a gap).
#[derive(Default)]
struct TsWriter {
    mux: Option<TsMuxer>,
    last: Option<tern_core::Position>,
}

impl TsWriter {
    fn write(&mut self, seg: &Segment) -> Bytes {
        let mut out = Vec::with_capacity(seg.payload_bytes() + 64 * 1024);
        let m = self
            .mux
            .get_or_insert_with(|| TsMuxer::new(&seg.media_info));
        if self.last.is_none() {
            m.write_tables(&mut out);
        }
        for f in &seg.frames {
            if self.last.is_some_and(|p| !p.is_followed_by(f.pos)) {
                m.mark_discontinuity();
            }
            self.last = Some(f.pos);
            m.write_frame(f, &mut out);
        }
        Bytes::from(out)
    }
}

/// Memory all MPEG-TS archive responses of the process may hold in muxed chunks
/// waiting for their readers, in KiB (256 MiB). A response waits for room before it
/// muxes on, so stalled readers cost at most this much together.
pub const ARCHIVE_MEMORY_KIB: usize = 256 * 1024;

static ARCHIVE_MEMORY: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(ARCHIVE_MEMORY_KIB);

/// The chunk ready for the body, holding its share of [`ARCHIVE_MEMORY_KIB`].
async fn budgeted(bytes: Bytes) -> Budgeted {
    budgeted_from(&ARCHIVE_MEMORY, bytes).await
}

async fn budgeted_from(budget: &'static tokio::sync::Semaphore, bytes: Bytes) -> Budgeted {
    let kib = bytes.len().div_ceil(1024).clamp(1, ARCHIVE_MEMORY_KIB);
    let permit = budget
        .acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
        .await
        .ok();
    Budgeted { bytes, permit }
}

type BodyTx = mpsc::Sender<Result<Budgeted, Aborted>>;

/// Ends a response with an error the client sees: hyper closes the connection
/// without the chunked body's last chunk. The reason is logged, never sent.
async fn abort(body: &BodyTx, why: String) {
    tracing::warn!(reason = %why, "archive response cannot finish; aborting it so the player sees an error");
    let _ = body.send(Err(Aborted(why))).await;
}

/// Muxes the window's segments that start at or after `from` into one transport
/// stream, a segment at a time, at the pace the viewer reads. A range that cannot
/// finish (a peer that breaks off or sends `End`, a damaged segment from a peer)
/// aborts the response: never a clean but short 200.
#[allow(clippy::disallowed_methods)] // driver: reads the archive beside muxing it
async fn continuous(archive: Arc<dyn Archive>, from: u64, to: u64, body: BodyTx) {
    let (seg_tx, mut seg_rx) = mpsc::channel::<ArchiveSegment>(1);
    let mut reading = tokio::spawn(async move { archive.range(from, to, seg_tx).await });
    let mut writer = TsWriter::default();
    let mut sent_any = false;
    while let Some(seg) = seg_rx.recv().await {
        let seg = match seg.into_segment() {
            Ok(s) => s,
            Err(e) => {
                reading.abort();
                abort(&body, e.to_string()).await;
                return;
            }
        };
        if seg.utc_start_ms < from {
            continue;
        }
        let chunk = budgeted(writer.write(&seg)).await;
        if body.send(Ok(chunk)).await.is_err() {
            reading.abort();
            return; // the reader left
        }
        sent_any = true;
    }
    match (&mut reading).await {
        Ok(Ok(_)) if sent_any => {}
        Ok(Ok(_)) => abort(&body, "no segment of the window could be read".into()).await,
        Ok(Err(e)) => abort(&body, e.to_string()).await,
        Err(e) => abort(&body, format!("the archive reader failed: {e}")).await,
    }
}

/// An endless transport stream from `from_ms` on (timeshift, catch-up): segments
/// are sent as real time reaches them (at most [`TIMESHIFT_LEAD`] ahead), so the
/// viewer stays the same distance behind live; it follows the archive as it grows
/// and ends when the viewer leaves, or aborts (an error the client sees) when the
/// archive cannot be read.
#[allow(clippy::disallowed_methods)] // driver: paces the endless timeshift stream
async fn timeshift<C: Clock>(archive: Arc<dyn Archive>, from_ms: u64, clock: C, body: BodyTx) {
    let started = clock.utc_ms();
    let lead = TIMESHIFT_LEAD.as_millis() as u64;
    let mut cursor = from_ms;
    let mut writer = TsWriter::default();
    loop {
        let now = clock.utc_ms();
        let horizon = from_ms
            .saturating_add(now.saturating_sub(started))
            .saturating_add(lead)
            .min(now);
        let mut sent = false;
        if horizon > cursor {
            let entries = match archive.index(Some((cursor, horizon))).await {
                Ok(ix) => archive_window::at_or_after(ix.entries, cursor, |e| e.utc_start_ms),
                Err(e) => {
                    abort(&body, format!("the archive cannot be read: {e}")).await;
                    return;
                }
            };
            for e in entries.iter().filter(|e| e.utc_start_ms < horizon) {
                cursor = e.utc_start_ms.saturating_add(1);
                match fetch_segment(archive.as_ref(), e.utc_start_ms).await {
                    Ok(Some(seg)) => {
                        let chunk = budgeted(writer.write(&seg)).await;
                        if body.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                        sent = true;
                    }
                    Ok(None) => {} // deleted since the listing: play what exists
                    Err(e) => {
                        abort(&body, format!("a segment cannot be read: {e}")).await;
                        return;
                    }
                }
            }
        }
        if !sent {
            tokio::select! {
                _ = tokio::time::sleep(TIMESHIFT_POLL) => {}
                _ = body.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const BASE_MS: u64 = 1_767_225_600_000;

    /// An archive that lists segments from `BASE_MS` on, whose range sends `good`
    /// of them and then fails like a peer that breaks off (or sends `End`), or, with
    /// `damaged`, sends stored bytes that do not decode.
    struct BreaksOff {
        good: usize,
        damaged: bool,
    }

    fn segment(i: u64) -> Segment {
        use tern_core::{MediaInfo, Position, TrackInfo};
        let mi = MediaInfo {
            tracks: vec![TrackInfo::placeholder_h264(1)],
        };
        Segment {
            media_info: Arc::new(mi),
            utc_start_ms: BASE_MS + i * 40,
            duration_ms: 40,
            frames: vec![tern_core::Frame {
                track: 1,
                dts: i * 3600,
                pts: i * 3600,
                keyframe: true,
                capture_ms: BASE_MS + i * 40,
                pos: Position { epoch: 1, seq: i },
                payload: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
            }],
        }
    }

    impl Archive for BreaksOff {
        fn index(
            &self,
            _window: Option<(u64, u64)>,
        ) -> crate::archive::BoxFuture<'_, Result<crate::archive::ArchiveIndex, ArchiveError>>
        {
            Box::pin(async {
                Ok(crate::archive::ArchiveIndex {
                    facts: DvrFacts {
                        depth_secs: 0,
                        ranges: vec![(BASE_MS, 1000)],
                    },
                    entries: vec![ArchiveEntry {
                        utc_start_ms: BASE_MS,
                        duration_ms: 40,
                        discontinuity: false,
                    }],
                })
            })
        }

        fn range(
            &self,
            _from: u64,
            _to: u64,
            tx: mpsc::Sender<ArchiveSegment>,
        ) -> crate::archive::BoxFuture<'_, Result<u32, ArchiveError>> {
            Box::pin(async move {
                for i in 0..self.good {
                    let _ = tx.send(ArchiveSegment::Decoded(segment(i as u64))).await;
                }
                if self.damaged {
                    let mut b = tern_core::segment_codec::encode(&segment(9)).to_vec();
                    let last = b.len() - 1;
                    b[last] ^= 1;
                    let _ = tx.send(ArchiveSegment::Stored(Bytes::from(b))).await;
                    return Ok(self.good as u32 + 1);
                }
                Err(ArchiveError::Unreachable {
                    shown: "the archive broke off".into(),
                    detail: "stream removed".into(),
                })
            })
        }

        fn facts_now(&self) -> Option<DvrFacts> {
            None
        }
    }

    /// What the body yields: data bytes, then whether it ended with an error.
    async fn drain(r: Response) -> (usize, bool) {
        use http_body_util::BodyExt;
        let mut body = r.into_body();
        let mut n = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.into_data().map(|d| d.len()).unwrap_or(0),
                Err(_) => return (n, true),
            }
        }
        (n, false)
    }

    /// Finding 5: an archive `.ts` response whose range broke off ended as a clean
    /// 200 (0 bytes when the peer sent `End` first), and one with a damaged segment
    /// ended early, cleanly. Now the body ends with an error, which hyper turns into
    /// a chunked body without its last chunk.
    #[tokio::test]
    async fn a_range_that_cannot_finish_aborts_the_body() {
        let name = StreamName::new("main").unwrap();
        let output = Output::ArchiveTs(tern_core::play_url::Window::Fixed {
            from_s: BASE_MS / 1000,
            duration_s: 60,
        });
        for (good, damaged) in [(0, false), (2, false), (0, true), (2, true)] {
            let archive = Arc::new(BreaksOff { good, damaged });
            let clock = tern_net::TokioClock::new();
            let r = handle(archive, &name, None, output.clone(), clock).await;
            assert_eq!(r.status(), StatusCode::OK);
            let (bytes, aborted) = drain(r).await;
            assert!(
                aborted,
                "good={good} damaged={damaged}: the body ended cleanly after {bytes} bytes"
            );
            assert_eq!(bytes > 0, good > 0, "good={good} damaged={damaged}");
        }
    }

    /// Every muxed chunk holds its share of the process-wide budget until the body
    /// hands it to hyper.
    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // test: a waiting send must not finish
    async fn chunks_hold_the_memory_budget_until_taken() {
        static BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(20);
        let chunk = budgeted_from(&BUDGET, Bytes::from(vec![0u8; 10 * 1024 + 1])).await;
        assert_eq!(BUDGET.available_permits(), 9);
        // A second chunk of 11 KiB waits for room.
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            budgeted_from(&BUDGET, Bytes::from(vec![0u8; 11 * 1024])),
        )
        .await;
        assert!(waiting.is_err(), "the budget let a chunk past it");
        // Hyper taking the chunk gives its share back.
        let (tx, rx) = mpsc::channel(1);
        tx.send(Ok(chunk)).await.ok();
        drop(tx);
        let (n, aborted) = drain(respond(StatusCode::OK, "video/mp2t", Body::Fallible(rx))).await;
        assert_eq!((n, aborted), (10 * 1024 + 1, false));
        assert_eq!(BUDGET.available_permits(), 20);
    }
}
