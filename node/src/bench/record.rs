//! The DVR recording phase of `tern bench` (`--only record`): how many segments a
//! second one DVR root writes durably to a real filesystem, for one stream and for
//! many cameras recording under the same `dvr PATH` at once. Every stream of a
//! root shares one DVR machine, which runs one store operation at a time (the
//! crash-safety argument of docs/dvr.md relies on that order), so this says how
//! many cameras one disk path keeps up with. Figures, not assertions.
//!
//! Owns: that phase. Must not: decide anything the DVR does (it records through
//! `DvrRoot` and `FsStore` exactly as a node does).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tern_core::config::DvrConfig;
use tern_core::fake::{FakeOptions, FakeSource};
use tern_core::segmenter::Segmenter;
use tern_core::{Segment, StreamName};
use tern_net::{Clock, TokioClock};
use tokio::time::Instant;

use super::TempDir;
use crate::dvr::{DvrRoot, DvrStore, FsStore};

/// Segment length recorded, as a node's default.
const SEGMENT_MS: u32 = 2000;

/// Segments of one camera at `bitrate`, enough to start from: the phase re-times
/// them to go on for as long as it runs.
fn camera_segments(bitrate: u64, seed: u64) -> Vec<Segment> {
    let opts = FakeOptions {
        bitrate: Some(bitrate),
        width: 256,
        height: 16,
        ..Default::default()
    };
    let mut src = FakeSource::new(&opts, seed);
    let mut segmenter = Segmenter::new(SEGMENT_MS, Arc::new(src.media_info()));
    let base = TokioClock::new().utc_ms().saturating_sub(24 * 3_600_000);
    let mut out = Vec::new();
    while out.len() < 4 {
        let capture = base + src.next_due().as_millis() as u64;
        if let Some(seg) = segmenter.push(src.next_frame(capture)) {
            out.push(seg);
        }
    }
    out
}

/// `seg` moved `k` rounds of `span_ms` later (capture times and positions), so a
/// camera's segments go on without overlapping.
fn shifted(seg: &Segment, k: u64, span_ms: u64, frames_per_round: u64) -> Segment {
    let mut s = seg.clone();
    s.utc_start_ms += k * span_ms;
    for f in &mut s.frames {
        f.capture_ms += k * span_ms;
        let ticks = k * span_ms * 90;
        f.dts += ticks;
        f.pts += ticks;
        f.pos.seq += k * frames_per_round;
    }
    s
}

/// Figures of one run.
struct Run {
    segments: u64,
    bytes: u64,
    took: Duration,
    /// Time to open every stream's DVR, one after the other, before recording.
    opened: Duration,
    /// Time of each `record` call (waiting for the root included), sorted.
    waits: Vec<Duration>,
}

/// `cameras` streams recording under one root in `dir` for `seconds`, each as fast
/// as the root takes its segments.
#[allow(clippy::disallowed_methods)] // driver: the benchmark's own tasks and clock
async fn run_cameras(
    dir: &Path,
    cameras: usize,
    seconds: u64,
    bitrate: u64,
) -> Result<Run, String> {
    let store: Arc<dyn DvrStore> = Arc::new(FsStore::new(dir.to_path_buf()));
    let root = DvrRoot::new(store);
    // Every DVR opens first (as a node's streams do at its start), then all record.
    let opening = Instant::now();
    let mut cams = Vec::new();
    for i in 0..cameras {
        let name = StreamName::new(&format!("cam{i}")).map_err(|e| e.to_string())?;
        let config = DvrConfig {
            path: dir.display().to_string(),
            depth_secs: None,
            limit_bytes: None,
        };
        let dvr = root.open(name, config).await.map_err(|e| e.to_string())?;
        cams.push((dvr, camera_segments(bitrate, i as u64 + 1)));
    }
    let opened = opening.elapsed();
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    for (dvr, segs) in cams {
        let span_ms: u64 = segs.iter().map(|s| u64::from(s.duration_ms)).sum();
        let frames_per_round = segs.iter().map(|s| s.frames.len() as u64).sum();
        tasks.spawn(async move {
            let (mut n, mut bytes, mut waits) = (0u64, 0u64, Vec::new());
            'rounds: for k in 0.. {
                for seg in &segs {
                    if Instant::now() >= deadline {
                        break 'rounds;
                    }
                    let seg = shifted(seg, k, span_ms, frames_per_round);
                    let t = Instant::now();
                    dvr.record(&seg).await.map_err(|e| e.to_string())?;
                    waits.push(t.elapsed());
                    n += 1;
                    bytes += seg.payload_bytes() as u64;
                }
            }
            Ok::<_, String>((n, bytes, waits))
        });
    }
    let mut run = Run {
        segments: 0,
        bytes: 0,
        took: Duration::ZERO,
        opened,
        waits: Vec::new(),
    };
    while let Some(r) = tasks.join_next().await {
        let (n, bytes, waits) = r.map_err(|e| e.to_string())??;
        run.segments += n;
        run.bytes += bytes;
        run.waits.extend(waits);
    }
    run.took = started.elapsed();
    run.waits.sort_unstable();
    Ok(run)
}

fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The filesystem type of `dir` (`df -T`), for the figures' context.
fn fs_type(dir: &Path) -> String {
    std::process::Command::new("df")
        .arg("-PT")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)?
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the phase: one camera alone, then `cameras` at once, each `seconds`.
pub async fn record_phase(cameras: usize, seconds: u64, bitrate: u64) -> Result<(), String> {
    let tmp = std::env::temp_dir();
    let dir = tmp.join(format!("tern-bench-record-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "DVR recording into one root under {} ({}): {} ms segments of {} kbit/s, each written as a node does (temporary file, fsync, rename, directory fsync, journal append and fsync), one store operation at a time per root",
        tmp.display(),
        fs_type(&tmp),
        SEGMENT_MS,
        bitrate / 1000
    );
    let segs_per_camera_s = 1000.0 / f64::from(SEGMENT_MS);
    for n in [1, cameras.max(1)] {
        let sub = dir.join(format!("{n}"));
        std::fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        let r = run_cameras(&sub, n, seconds, bitrate).await?;
        let secs = r.took.as_secs_f64().max(1e-9);
        let rate = r.segments as f64 / secs;
        println!(
            "  {n} camera(s) (their DVRs opened in {:.2} s) for {secs:.1} s: {} segments, {rate:.0} segments/s, {:.1} MB/s; one record call p50 {:.1} ms, p99 {:.1} ms (waiting for the root included); one root keeps up with about {:.0} cameras of {} kbit/s",
            r.opened.as_secs_f64(),
            r.segments,
            r.bytes as f64 / secs / 1e6,
            quantile(&r.waits, 0.5).as_secs_f64() * 1e3,
            quantile(&r.waits, 0.99).as_secs_f64() * 1e3,
            rate / segs_per_camera_s,
            bitrate / 1000
        );
        if n == 1 && cameras <= 1 {
            break;
        }
    }
    Ok(())
}
