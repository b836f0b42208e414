//! End-to-end tests of one origin node: a real `tern run` on loopback with a fake
//! stream, checked by ffprobe / ffmpeg decoding its outputs and reading the barcodes,
//! and by the API. Each test starts its own node; they run in parallel, a few seconds
//! each.

use std::time::Duration;

use serde_json::Value;
use tern_tests::{
    assert_consecutive, decode_frames, probe_latency, require_tool, run_ok, tern_check, Node,
    FFMPEG_RW_TIMEOUT_US,
};

/// The binary under test: tern-tests' copy of `tern`, named `tern-e2e` so it does not
/// collide with node's (Cargo sets this for integration tests only).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");

/// One fake stream `main` with default options (320×240, 25 fps, 1 s GOP) and 1 s
/// segments; `Node::start` adds the `http` line.
const ORIGIN: &str = "\
segment_duration 1;
stream main {
  input fake://fake;
}
";

/// Frames decoded by the decoding tests (4 s at 25 fps).
const DECODE_FRAMES: usize = 100;

fn parse_json(what: &str, body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {body}"))
}

#[test]
fn ffprobe_mpegts_reports_h264_constrained_baseline_and_aac() {
    if !require_tool("ffprobe") {
        return;
    }
    let node = Node::start(TERN, ORIGIN);
    let url = node.url("/main/mpegts");
    let mut cmd = std::process::Command::new("ffprobe");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        FFMPEG_RW_TIMEOUT_US,
    ])
    .args([
        "-read_intervals",
        "%+2",
        "-show_streams",
        "-of",
        "json",
        &url,
    ]);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(20));
    let out = String::from_utf8_lossy(&out);
    let probe = parse_json("ffprobe's output", &out);
    let streams = probe["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("no streams in ffprobe's output: {out}"));
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video stream: {out}"));
    assert_eq!(video["codec_name"], "h264", "{out}");
    assert_eq!(video["profile"], "Constrained Baseline", "{out}");
    assert_eq!(video["width"], 320, "{out}");
    assert_eq!(video["height"], 240, "{out}");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap_or_else(|| panic!("no audio stream: {out}"));
    assert_eq!(audio["codec_name"], "aac", "{out}");
}

#[test]
fn hls_decodes_with_consecutive_barcodes() {
    if !require_tool("ffmpeg") {
        return;
    }
    let node = Node::start(TERN, ORIGIN);
    // ffmpeg starts a live playlist 3 segments from its end: let there be 3.
    node.wait_playlist("main", 3, Duration::from_secs(15));
    let frames = decode_frames(&node.url("/main/index.m3u8"), DECODE_FRAMES);
    let idx = assert_consecutive("HLS /main/index.m3u8", &frames);
    println!(
        "hls: {} frames, barcode indices {}..={}",
        idx.len(),
        idx[0],
        idx[idx.len() - 1]
    );
}

#[test]
fn mpegts_decodes_with_consecutive_barcodes() {
    if !require_tool("ffmpeg") {
        return;
    }
    let node = Node::start(TERN, ORIGIN);
    let frames = decode_frames(&node.url("/main/mpegts"), DECODE_FRAMES);
    let idx = assert_consecutive("MPEG-TS /main/mpegts", &frames);
    println!(
        "mpegts: {} frames, barcode indices {}..={}",
        idx.len(),
        idx[0],
        idx[idx.len() - 1]
    );
}

#[test]
fn api_lists_streams_and_refuses_unknown() {
    let node = Node::start(TERN, ORIGIN);
    // Alive = a frame within the last 3 s; the source needs a moment to start.
    let mut last = String::new();
    let list = tern_tests::poll_until(Duration::from_secs(5), || {
        let (status, body) = node.get("/streamer/api/v3/streams");
        assert_eq!(status, 200, "{body}");
        let v = parse_json("the stream list", &body);
        last = body;
        let main = v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "main")
            .cloned()?;
        (main["stats"]["alive"] == true).then_some(main)
    })
    .unwrap_or_else(|| panic!("`main` not listed as alive within 5 s: {last}"));
    assert_eq!(list["stats"]["status"], "running", "{list}");

    let (status, body) = node.get("/streamer/api/v3/streams/main");
    assert_eq!(status, 200, "{body}");
    let one = parse_json("stream main", &body);
    assert_eq!(one["name"], "main", "{body}");
    assert_eq!(one["stats"]["alive"], true, "{body}");
    let tracks = one["stats"]["media_info"]["tracks"]
        .as_array()
        .unwrap_or_else(|| panic!("no media_info.tracks: {body}"));
    assert!(
        tracks
            .iter()
            .any(|t| t["content"] == "video" && t["width"] == 320 && t["height"] == 240),
        "no 320x240 video track: {body}"
    );
    assert!(
        tracks.iter().any(|t| t["content"] == "audio"),
        "no audio track: {body}"
    );

    let (status, body) = node.get("/streamer/api/v3/streams/nosuch");
    assert_eq!(status, 404, "{body}");
    let (status, body) = node.get("/nosuch/index.m3u8");
    assert_eq!(status, 404, "{body}");
    let (status, body) = node.get("/nosuch/mpegts");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn multi_segment_names_and_dotdot_paths() {
    let node = Node::start(
        TERN,
        "segment_duration 1;\nstream cams/yard/3 {\n  input fake://fake;\n}\n",
    );
    let playlist = node.wait_playlist("cams/yard/3", 1, Duration::from_secs(10));
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    let (status, body) = node.get("/streamer/api/v3/streams/cams/yard/3");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_json("stream cams/yard/3", &body)["name"],
        "cams/yard/3"
    );

    for path in [
        "/cams/yard/../3/index.m3u8",
        "/cams/../cams/yard/3/index.m3u8",
        "/../cams/yard/3/index.m3u8",
        "/cams/yard/./3/index.m3u8",
        "/cams//yard/3/index.m3u8",
        "/cams/yard/3/../mpegts",
        "/streamer/api/v3/streams/cams/../cams/yard/3",
    ] {
        let (status, body) = node.get(path);
        assert!(
            (400..500).contains(&status),
            "GET {path} answered {status}, expected 4xx: {body}"
        );
        // Refused for its name, not merely "not known" (which a name that escaped
        // the checks would also get).
        assert!(
            body.contains("`.` or `..` segment") || body.contains("empty segment"),
            "GET {path}: the answer must say what is wrong with the name: {body}"
        );
    }
}

#[test]
fn check_accepts_a_good_config_and_names_line_col_of_a_typo() {
    let good = format!("http 8080;\n{ORIGIN}");
    let (status, stdout, stderr, _) = tern_check(TERN, &good);
    assert!(
        status.success(),
        "tern check failed on:\n{good}\n{stdout}{stderr}"
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");

    let typo = "http 8080;\nstream main {\n  inptu fake://fake;\n}\n";
    let (status, stdout, stderr, path) = tern_check(TERN, typo);
    assert!(
        !status.success(),
        "tern check accepted:\n{typo}\n{stdout}{stderr}"
    );
    let at = format!("{}:3:3:", path.display());
    assert!(
        stderr.contains(&at) && stderr.contains("inptu"),
        "stderr should name {at} and `inptu`: {stderr}"
    );
}

/// Glass-to-glass latency of live MPEG-TS through a low-delay ffmpeg: prints the
/// median over 100 frames (a figure, not a timed assertion; docs/design.md §8).
#[test]
fn latency_probe_mpegts() {
    if !require_tool("ffmpeg") {
        return;
    }
    let node = Node::start(TERN, ORIGIN);
    // The viewer starts with the current GOP (up to 1 s old at 25 fps): skip it.
    let l = probe_latency(&node.url("/main/mpegts"), 25, 100);
    println!(
        "latency_probe_mpegts: median {} ms over {} frames (min {}, max {}), glass-to-glass through ffmpeg -fflags nobuffer -flags low_delay",
        l.median_ms,
        l.samples.len(),
        l.min_ms,
        l.max_ms
    );
    assert!(
        l.median_ms < 5000,
        "median latency {} ms: {:?}",
        l.median_ms,
        l.samples
    );
}
