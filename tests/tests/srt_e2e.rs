//! End-to-end tests of the `srt://` input with ffmpeg's libsrt as the sender:
//! ffmpeg re-publishes a source node's barcoded `/src/mpegts` (`-c copy`, or
//! re-encoded to H.265) as MPEG-TS over SRT, calling in to an origin that listens
//! or listening for an origin that calls, with a passphrase; an edge restreams the
//! origin over M4S and ffmpeg decodes the edge. The barcodes must run on by one, a
//! wrong passphrase and a second sender are refused with a clear line while the
//! other streams play on, a sender that dies and comes back plays again with a
//! discontinuity, and H.265 plays live and from the archive through the edge.

use std::process::Command;
use std::time::Duration;

use tern_tests::{
    assert_consecutive, assert_h265_live_and_archive, decode_frames, ffmpeg_sender, free_port, now,
    poll_until, probe_latency, read_barcode, require_check, require_tool, Node, Proc, X265_ARGS,
};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-cluster-key-5f1c9a7d3b";
const PASSPHRASE: &str = "srt-passphrase-7c1e";
/// The `fake://` source's GOP.
const GOP: Duration = Duration::from_secs(1);
/// The reconnect backoff's cap (`tern_core::cluster::backoff::BACKOFF_CAP`).
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// ffmpeg with libsrt, or a skip (a failure under TERN_REQUIRE_TOOLS=1).
fn srt_available() -> bool {
    require_tool("ffmpeg")
        && require_check(
            "ffmpeg with the srt protocol",
            Command::new("sh").args(["-c", "ffmpeg -hide_banner -protocols | grep -qx ' *srt'"]),
            "ffmpeg",
        )
}

/// The source node: one barcoded fake stream `src`.
fn source() -> Node {
    Node::start(TERN, "stream src {\n  input fake://fake;\n}\n")
}

/// An origin whose `cam` has `input` (and `extra` lines), beside a fake `other`.
fn origin(input: &str, extra: &str) -> Node {
    Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\n\
             stream cam {{\n  input {input} source_timeout=2;\n{extra}}}\n\
             stream other {{\n  input fake://fake;\n}}\n"
        ),
    )
}

/// ffmpeg reading the source's live MPEG-TS and sending it over SRT to `url`.
fn send(src: &Node, codec: &[&str], url: &str) -> Proc {
    ffmpeg_sender(src, codec, "mpegts", url)
}

/// An SRT URL of ffmpeg's for `127.0.0.1:port`.
fn srt_url(port: u16, mode: &str, passphrase: &str) -> String {
    format!("srt://127.0.0.1:{port}?mode={mode}&passphrase={passphrase}&latency=120000")
}

fn discontinuities(node: &Node) -> u64 {
    node.stream("cam")["stats"]["discontinuities"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `cam` counts a discontinuity more than `before` and is alive;
/// returns how long after `since` that was.
fn wait_resumed(node: &Node, before: u64, since: std::time::Instant) -> Duration {
    let resumed = poll_until(Duration::from_secs(30), || {
        let s = node.stream("cam");
        let d = s["stats"]["discontinuities"].as_u64().unwrap_or(0);
        (d > before && s["stats"]["alive"] == true).then_some(())
    });
    assert!(
        resumed.is_some(),
        "not playing again within 30 s:\n{}",
        node.log()
    );
    now() - since
}

/// The barcode of the first frame `node` serves of `cam`: where the stream is now.
fn barcode_now(node: &Node) -> u64 {
    read_barcode(&decode_frames(&node.url("/cam/mpegts"), 1)[0]).0
}

/// The sender's frames run on at the edge, the latency is printed, and the
/// passphrase is in no API answer and no log.
fn check_through_edge(what: &str, edge: &Node) {
    edge.wait_alive("cam", Duration::from_secs(30));
    let frames = decode_frames(&edge.url("/cam/mpegts"), 100);
    let idx = assert_consecutive(&format!("{what} -> origin -> edge /cam/mpegts"), &frames);
    println!(
        "{what} at the edge: barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );
    let lat = probe_latency(&edge.url("/cam/mpegts"), 30, 100);
    println!(
        "glass-to-glass fake -> ffmpeg -c copy -> {what} (latency=120 ms) -> origin -> m4s \
         edge -> ffmpeg: median {} ms (min {}, max {}) over 100 frames",
        lat.median_ms, lat.min_ms, lat.max_ms
    );
}

fn assert_no_passphrase(origin: &Node, edge: &Node) {
    let (_, list) = origin.get("/streamer/api/v3/streams");
    for (what, text) in [
        ("origin API", list),
        ("origin log", origin.log()),
        ("edge log", edge.log()),
    ] {
        assert!(
            !text.contains(PASSPHRASE),
            "{what} shows the passphrase:\n{text}"
        );
    }
}

/// A sender that must be refused: ffmpeg exits with an error, soon.
fn assert_refused(src: &Node, url: &str) -> String {
    let started = now();
    let (status, stderr) = send(src, &["-c", "copy"], url).finish();
    let took = now() - started;
    assert!(
        !status.success() && took < Duration::from_secs(20),
        "sender to {url} not refused: {status:?} after {took:?}: {stderr}"
    );
    println!("refused in {took:?}: {}", stderr.trim());
    stderr
}

#[test]
fn a_listener_takes_an_encrypted_sender_refuses_others_and_takes_it_back() {
    if !srt_available() {
        return;
    }
    let src = source();
    let port = free_port();
    let origin = origin(
        &format!("srt://127.0.0.1:{port}?mode=listener&passphrase={PASSPHRASE}"),
        "",
    );
    let cam = origin.stream("cam");
    assert_eq!(
        cam["inputs"][0]["url"],
        format!("srt://127.0.0.1:{port}?mode=listener&passphrase=***"),
        "{cam}"
    );
    let url = srt_url(port, "caller", PASSPHRASE);
    let mut sender = send(&src, &["-c", "copy"], &url);
    let cam = origin.wait_alive("cam", Duration::from_secs(30));
    let tracks = cam["stats"]["media_info"]["tracks"].to_string();
    assert!(
        tracks.contains("\"h264\"") && tracks.contains("\"aac\""),
        "{cam}"
    );
    let edge = Node::edge_of(TERN, &origin, KEY);
    check_through_edge("srt caller -> tern listener", &edge);

    // A wrong passphrase, none, and a second sender with the right one: each refused
    // with its line, while the first sender and the other stream play on.
    assert_refused(&src, &srt_url(port, "caller", "not-the-passphrase"));
    assert_refused(&src, &format!("srt://127.0.0.1:{port}?mode=caller"));
    assert_refused(&src, &url);
    let log = origin.log();
    for line in [
        "SRT caller refused: wrong passphrase",
        "SRT caller refused: one side has a passphrase and the other none",
        "SRT caller refused: the listener already has a sender",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }
    assert_consecutive(
        "cam after the refusals",
        &decode_frames(&edge.url("/cam/mpegts"), 25),
    );
    edge.wait_alive("other", Duration::from_secs(30));
    assert_consecutive(
        "other after the refusals",
        &decode_frames(&edge.url("/other/mpegts"), 25),
    );

    // The sender dies and comes back: the stream plays again, the gap declared.
    let before = discontinuities(&origin);
    sender.kill();
    std::thread::sleep(Duration::from_secs(2));
    let _sender = send(&src, &["-c", "copy"], &url);
    let back = now();
    let took = wait_resumed(&origin, before, back);
    println!("listener: sender back, playing again {took:?} after ffmpeg restarted (bound: 1 s + one GOP, and ffmpeg's start)");
    assert_consecutive(
        "after the sender's return",
        &decode_frames(&edge.url("/cam/mpegts"), 50),
    );
    // ffmpeg needs about a second to open the source before it calls; Tern's part
    // is what is left of the bound.
    assert!(
        took <= Duration::from_secs(1) + GOP + Duration::from_secs(3),
        "{took:?}"
    );
    assert_no_passphrase(&origin, &edge);
}

#[test]
fn a_caller_pulls_from_a_listening_sender_and_calls_again_when_it_returns() {
    if !srt_available() {
        return;
    }
    let src = source();
    let (port, wrong_port) = (free_port(), free_port());
    // `cam2` calls a sender whose passphrase differs: refused, in error, while
    // `cam` plays.
    let origin = origin(
        &format!("srt://127.0.0.1:{port}?passphrase={PASSPHRASE}"),
        &format!(
            "}}\nstream cam2 {{\n  input srt://127.0.0.1:{wrong_port}?passphrase={PASSPHRASE};\n"
        ),
    );
    let mut sender = send(
        &src,
        &["-c", "copy"],
        &srt_url(port, "listener", PASSPHRASE),
    );
    let _wrong = send(
        &src,
        &["-c", "copy"],
        &srt_url(wrong_port, "listener", "not-the-passphrase"),
    );
    origin.wait_alive("cam", Duration::from_secs(30));
    let edge = Node::edge_of(TERN, &origin, KEY);
    check_through_edge("tern caller -> srt listener", &edge);
    let cam2 = poll_until(Duration::from_secs(20), || {
        let s = origin.stream("cam2");
        (s["stats"]["status"] == "error").then_some(s)
    })
    .unwrap_or_else(|| panic!("cam2 not in error: {}", origin.stream("cam2")));
    assert_eq!(
        cam2["stats"]["error"], "SRT: the sender refused the connection: wrong passphrase",
        "{cam2}"
    );
    assert!(
        origin
            .log()
            .contains("SRT call refused: the sender refused the connection: wrong passphrase"),
        "{}",
        origin.log()
    );

    // The sender dies and comes back on the same port: Tern calls again.
    let before = discontinuities(&origin);
    let at = barcode_now(&edge);
    sender.kill();
    std::thread::sleep(Duration::from_secs(2));
    let _sender = send(
        &src,
        &["-c", "copy"],
        &srt_url(port, "listener", PASSPHRASE),
    );
    let back = now();
    let took = wait_resumed(&origin, before, back);
    println!(
        "caller: sender back, playing again {took:?} after ffmpeg restarted (bound: 1 s + \
         backoff cap 2 s + one GOP, and ffmpeg's start)"
    );
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    let idx = assert_consecutive("after the sender's return", &frames);
    assert!(idx[0] > at, "barcodes {idx:?} not after {at}");
    assert!(
        took <= Duration::from_secs(1) + BACKOFF_CAP + GOP + Duration::from_secs(3),
        "{took:?}"
    );
    assert_no_passphrase(&origin, &edge);
}

#[test]
fn h265_over_srt_plays_live_and_from_the_archive_through_the_edge() {
    if !srt_available() || !require_tool("ffprobe") {
        return;
    }
    let src = source();
    let port = free_port();
    let dvr = tern_tests::TempDir::new("srt-h265");
    let origin = origin(
        &format!("srt://127.0.0.1:{port}?mode=listener"),
        &format!("  dvr {};\n", dvr.path().display()),
    );
    let _sender = send(
        &src,
        &X265_ARGS,
        &format!("srt://127.0.0.1:{port}?mode=caller&latency=120000"),
    );
    let cam = origin.wait_alive("cam", Duration::from_secs(30));
    assert!(
        cam["stats"]["media_info"]["tracks"]
            .to_string()
            .contains("\"hevc\""),
        "{cam}"
    );
    let edge = Node::edge_of(TERN, &origin, KEY);
    edge.wait_alive("cam", Duration::from_secs(30));
    assert_h265_live_and_archive("h265 over srt", &origin, &edge);
}
