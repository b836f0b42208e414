//! Senders that re-encode a source node's stream with ffmpeg (into RTMP, SRT, UDP…),
//! and the check that an H.265 stream recorded on an origin plays live and from the
//! archive through an edge. Shared by the ingest tests (`rtmp_e2e`, `srt_e2e`,
//! `rtsp_e2e`, `ingest_e2e`).
//!
//! Owns: the ffmpeg command line of a re-encoding sender and the x265 arguments.
//! Must not: start nodes or choose a test's timeouts beyond the ones named here.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{
    decode_all_frames, decode_frames, poll_until, read_barcode, run_ok, Node, Proc,
    FFMPEG_RW_TIMEOUT_US,
};

/// x265 at its fastest, a keyframe every 25 frames (one a second), audio copied.
pub const X265_ARGS: [&str; 12] = [
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-x265-params",
    "log-level=error:keyint=25:min-keyint=25",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "copy",
];

/// ffmpeg reading `src`'s live MPEG-TS of stream `src`, encoding it with `codec`
/// and sending it to `url` in container `format` (`flv`, `mpegts`); killed when the
/// returned [`Proc`] drops, or after 120 s.
pub fn ffmpeg_sender(src: &Node, codec: &[&str], format: &str, url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        // The source is known (H.264 and AAC): half a second of probing, not five.
        .args(["-analyzeduration", "500000"])
        .args(["-i", &src.url("/src/mpegts")])
        .args(codec)
        .args(["-f", format, url]);
    Proc::spawn(&mut cmd, Duration::from_secs(120))
}

/// The barcodes of `frames` that can be read, checked to go up. Not "consecutive":
/// an x265 re-encode may drop frames when the machine is busy and blurs the
/// barcodes for a second after such a drop (seen at load 14 on 2 cores); a blurred
/// barcode reads as garbage (a huge index) and is left out.
pub fn readable_in_order(what: &str, frames: &[Vec<u8>]) -> Vec<u64> {
    let idx: Vec<u64> = frames.iter().map(|f| read_barcode(f).0).collect();
    let readable: Vec<u64> = idx.iter().copied().filter(|&i| i < 1 << 24).collect();
    assert!(
        !readable.is_empty() && readable.windows(2).all(|w| w[0] < w[1]),
        "{what}: barcodes missing or out of order: {idx:?}"
    );
    readable
}

/// Stream `cam`, H.265 and recorded on `origin`, through `edge`: ffprobe calls every
/// stream of the live MPEG-TS `hevc`; 50 live frames decode under `ffmpeg -xerror`
/// with readable barcodes in order; once the edge lists a 6 s archive range (any:
/// a re-encoding sender sometimes leaves a gap early), 3 s of it decode the same
/// way, at least 25 frames.
pub fn assert_h265_live_and_archive(what: &str, origin: &Node, edge: &Node) {
    let (probe, _) = run_ok(
        Command::new("ffprobe").args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            FFMPEG_RW_TIMEOUT_US,
            "-select_streams",
            "v",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &edge.url("/cam/mpegts"),
        ]),
        Duration::from_secs(20),
    );
    // One line per program and per stream: every one says hevc.
    let probe = String::from_utf8_lossy(&probe);
    let codecs: Vec<&str> = probe.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c.trim() == "hevc"),
        "{what}: ffprobe: {probe:?}"
    );
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    let idx = readable_in_order(&format!("{what}, live through the edge"), &frames);
    println!(
        "{what}: edge decoded barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );

    let range = poll_until(Duration::from_secs(20), || {
        let (code, body) = edge.get("/cam/recording_status.json");
        let v: Value = serde_json::from_str(&body).ok()?;
        let r = v["ranges"]
            .as_array()?
            .iter()
            .find(|r| r["duration"].as_u64().is_some_and(|d| d >= 6))?
            .clone();
        (code == 200).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: no 6 s of archive on the edge: {:?}; origin: {:?}, {}",
            edge.get("/cam/recording_status.json"),
            origin.get("/cam/recording_status.json"),
            origin.stream("cam")
        )
    });
    let from = range["from"].as_u64().unwrap_or_default() + 2;
    let url = edge.url(&format!("/cam/archive-{from}-3.ts"));
    let frames = decode_all_frames(&url, Duration::from_secs(30));
    let idx = readable_in_order(&format!("{what}, archive through the edge"), &frames);
    assert!(
        frames.len() >= 25,
        "{what}: {} frames in 3 s of archive",
        frames.len()
    );
    println!(
        "{what}: archive {from}+3 s through the edge: {} frames, barcodes {}..={}",
        frames.len(),
        idx[0],
        idx[idx.len() - 1]
    );
}
