//! End-to-end tests of MPEG-TS ingest (`udp://`, `http://`): a source node with a
//! barcoded fake stream, whose `/src/mpegts` is re-published by ffmpeg (`-c copy`,
//! or re-encoded to H.265 / H.264 with B-frames) into UDP, or pulled over HTTP
//! directly; an origin ingesting it; an edge restreaming the origin over M4S; and
//! ffmpeg decoding the edge. The barcodes must run on by one (no frame lost or
//! duplicated on the way), H.265 must play, and B-frames must reach the player with
//! monotonic DTS.

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tern_tests::{
    assert_consecutive, decode_frames, poll_until, probe_latency, require_tool, run_ok, Node, Proc,
    FFMPEG_RW_TIMEOUT_US,
};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-cluster-key-5f1c9a7d3b";

/// A free UDP port on 127.0.0.1 (bound, read, released).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind udp 127.0.0.1:0");
    s.local_addr().expect("local_addr").port()
}

/// The source node: one barcoded fake stream `src`.
fn source() -> Node {
    Node::start(TERN, "stream src {\n  input fake://fake;\n}\n")
}

/// An origin ingesting `input` as stream `cam`, and an edge restreaming it over M4S.
fn origin_and_edge(input: &str) -> (Node, Node) {
    let origin = Node::start(
        TERN,
        &format!("cluster_key {KEY};\nsegment_duration 1;\nstream cam {{\n  input {input};\n}}\n"),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            origin.port()
        ),
    );
    (origin, edge)
}

/// ffmpeg reading the source's live MPEG-TS and sending it to `udp_port` with the
/// given codec arguments (`-c copy`, or an encoder).
fn republish(src: &Node, codec: &[&str], udp_port: u16) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        .args(["-i", &src.url("/src/mpegts")])
        .args(codec)
        .args(["-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{udp_port}?pkt_size=1316"));
    Proc::spawn(&mut cmd, Duration::from_secs(120))
}

/// The edge's API entry of `cam` once it is alive there.
fn wait_alive(node: &Node, name: &str) -> Value {
    let mut last = String::new();
    poll_until(Duration::from_secs(20), || {
        let (status, body) = node.get(&format!("/streamer/api/v3/streams/{name}"));
        last = body.clone();
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["stats"]["alive"] == true).then_some(v)
    })
    .unwrap_or_else(|| panic!("`{name}` not alive within 20 s: {last}"))
}

/// ffprobe's view of the first seconds of `url`: streams and packets.
fn ffprobe(url: &str, seconds: u32) -> Value {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        FFMPEG_RW_TIMEOUT_US,
    ])
    .args(["-read_intervals", &format!("%+{seconds}")])
    .args(["-show_streams", "-show_packets", "-of", "json", url]);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(30));
    let out = String::from_utf8_lossy(&out);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ffprobe output not JSON ({e}): {out}"))
}

fn video_codec(probe: &Value) -> String {
    probe["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .and_then(|v| v["codec_name"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn udp_copy_through_origin_and_edge_keeps_every_frame() {
    if !require_tool("ffmpeg") {
        return;
    }
    let src = source();
    let port = free_udp_port();
    let (origin, edge) = origin_and_edge(&format!("udp://127.0.0.1:{port}"));
    let _ffmpeg = republish(&src, &["-c", "copy"], port);
    let cam = wait_alive(&edge, "cam");
    let tracks = cam["stats"]["media_info"]["tracks"].to_string();
    assert!(
        tracks.contains("\"h264\"") && tracks.contains("\"aac\""),
        "{cam}"
    );
    let frames = decode_frames(&edge.url("/cam/mpegts"), 100);
    let idx = assert_consecutive("udp -> origin -> edge /cam/mpegts", &frames);
    println!(
        "udp ingest at the edge: barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );
    let lat = probe_latency(&edge.url("/cam/mpegts"), 30, 100);
    println!(
        "glass-to-glass fake -> ffmpeg -c copy -> udp -> origin -> m4s edge -> ffmpeg: \
         median {} ms (min {}, max {}) over 100 frames",
        lat.median_ms, lat.min_ms, lat.max_ms
    );
    let (status, body) = origin.get("/streamer/api/v3/streams/cam");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("udp://127.0.0.1:{port}")), "{body}");
}

#[test]
fn http_ts_input_through_origin_and_edge_keeps_every_frame() {
    if !require_tool("ffmpeg") {
        return;
    }
    let src = source();
    let (_origin, edge) = origin_and_edge(&format!("http://127.0.0.1:{}/src/mpegts", src.port()));
    wait_alive(&edge, "cam");
    let frames = decode_frames(&edge.url("/cam/mpegts"), 100);
    let idx = assert_consecutive("http -> origin -> edge /cam/mpegts", &frames);
    println!(
        "http ingest at the edge: barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );
}

#[test]
fn h265_over_udp_plays_through_the_edge() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let src = source();
    let port = free_udp_port();
    let (origin, edge) = origin_and_edge(&format!("udp://127.0.0.1:{port}"));
    let x265 = [
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
    let _ffmpeg = republish(&src, &x265, port);
    let cam = wait_alive(&edge, "cam");
    let tracks = cam["stats"]["media_info"]["tracks"].to_string();
    assert!(tracks.contains("\"hevc\""), "{cam}");
    assert!(tracks.contains("\"width\":320"), "{cam}");
    let probe = ffprobe(&edge.url("/cam/mpegts"), 2);
    assert_eq!(video_codec(&probe), "hevc", "{probe}");
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    let idx = assert_consecutive("h265 udp -> origin -> edge /cam/mpegts", &frames);
    println!(
        "h265 at the edge: barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );
    // HLS of the origin plays H.265 too.
    origin.wait_playlist("cam", 3, Duration::from_secs(20));
    let hls = decode_frames(&origin.url("/cam/index.m3u8"), 25);
    assert_consecutive("h265 origin /cam/index.m3u8", &hls);
}

#[test]
fn b_frames_reach_the_player_with_monotonic_dts() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let src = source();
    let port = free_udp_port();
    let (_origin, edge) = origin_and_edge(&format!("udp://127.0.0.1:{port}"));
    let x264 = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-bf",
        "2",
        "-g",
        "25",
        "-c:a",
        "copy",
    ];
    let _ffmpeg = republish(&src, &x264, port);
    wait_alive(&edge, "cam");
    let probe = ffprobe(&edge.url("/cam/mpegts"), 3);
    let video_index = probe["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .and_then(|v| v["index"].as_i64())
        .unwrap_or_else(|| panic!("no video stream: {probe}"));
    let packets: Vec<(i64, i64)> = probe["packets"]
        .as_array()
        .unwrap_or_else(|| panic!("no packets: {probe}"))
        .iter()
        .filter(|p| p["stream_index"].as_i64() == Some(video_index))
        .filter_map(|p| Some((p["dts"].as_i64()?, p["pts"].as_i64()?)))
        .collect();
    assert!(packets.len() >= 25, "{} video packets", packets.len());
    for w in packets.windows(2) {
        assert!(w[1].0 > w[0].0, "DTS not monotonic: {packets:?}");
    }
    let reordered = packets.iter().filter(|(dts, pts)| pts != dts).count();
    assert!(reordered > 0, "no packet with pts != dts: {packets:?}");
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("b-frames udp -> origin -> edge /cam/mpegts", &frames);
}
