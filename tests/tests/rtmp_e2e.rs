//! End-to-end tests of RTMP publishing (`rtmp PORT;`, `input publish://`): ffmpeg
//! re-publishes a source node's barcoded `/src/mpegts` (`-c copy`, or re-encoded with
//! B-frames) with `-f flv` to an origin's RTMP port; an edge restreams the origin
//! over M4S and ffmpeg decodes the edge. The barcodes must run on by one, a wrong
//! password and a second publisher are refused, a publisher that dies and comes back
//! plays again with a discontinuity, and a client stalled in the handshake is cut
//! while another stream plays on, the node's memory bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tern_tests::{
    assert_b_frames_reach, assert_consecutive, decode_frames, ffmpeg_sender, free_port, now,
    poll_until, probe_latency, require_tool, rss, Node, Proc, X264_B_FRAMES,
};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-cluster-key-5f1c9a7d3b";
const PASSWORD: &str = "studio-pw-81c2";
/// The `fake://` source's GOP.
const GOP: Duration = Duration::from_secs(1);

/// The source node: one barcoded fake stream `src`.
fn source() -> Node {
    Node::start(TERN, "stream src {\n  input fake://fake;\n}\n")
}

/// An origin taking publishers on `rtmp_port` for `cam` (with the password) and
/// playing a fake stream `other`.
fn origin(rtmp_port: u16) -> Node {
    Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\nrtmp 127.0.0.1:{rtmp_port};\n\
             stream cam {{\n  input publish://?password={PASSWORD} source_timeout=2;\n}}\n\
             stream other {{\n  input fake://fake;\n}}\n"
        ),
    )
}

/// ffmpeg reading the source's live MPEG-TS and publishing it to `url` as FLV.
fn publish(src: &Node, codec: &[&str], url: &str) -> Proc {
    ffmpeg_sender(src, codec, "flv", url)
}

fn rtmp_url(port: u16, path: &str) -> String {
    format!("rtmp://127.0.0.1:{port}/{path}")
}

/// A publisher that must be refused: ffmpeg exits with an error, soon.
fn assert_refused(src: &Node, url: &str) -> String {
    let started = now();
    let (status, stderr) = publish(src, &["-c", "copy"], url).finish();
    let took = now() - started;
    assert!(
        !status.success() && took < Duration::from_secs(20),
        "publisher to {url} not refused: {status:?} after {took:?}: {stderr}"
    );
    println!("refused {url} in {took:?}: {}", stderr.trim());
    stderr
}

#[test]
fn a_publisher_plays_through_the_edge_and_comes_back_after_it_dies() {
    if !require_tool("ffmpeg") {
        return;
    }
    let src = source();
    let rtmp_port = free_port();
    let origin = origin(rtmp_port);
    // Not published yet: the stream waits (`starting` for its first 3 s, then
    // `waiting`), the input shows without its password.
    let cam = poll_until(Duration::from_secs(10), || {
        let cam = origin.stream("cam");
        (cam["stats"]["status"] == "waiting").then_some(cam)
    })
    .unwrap_or_else(|| panic!("not waiting: {}", origin.stream("cam")));
    assert_eq!(cam["stats"]["alive"], false, "{cam}");
    assert_eq!(cam["inputs"][0]["stats"]["active"], false, "{cam}");
    assert_eq!(cam["inputs"][0]["url"], "publish://?password=***", "{cam}");

    // A publisher with a wrong password, while none plays: the stream says why it
    // waits (`error`, with the reason), and the first frame of the right one
    // clears it.
    assert_refused(&src, &rtmp_url(rtmp_port, "cam?password=not-it"));
    let cam = poll_until(Duration::from_secs(10), || {
        let cam = origin.stream("cam");
        (cam["stats"]["status"] == "error").then_some(cam)
    })
    .unwrap_or_else(|| panic!("no error after a wrong password: {}", origin.stream("cam")));
    let error = cam["stats"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("wrong password") && !error.contains("not-it"),
        "{cam}"
    );

    let url = rtmp_url(rtmp_port, &format!("cam?password={PASSWORD}"));
    let mut publisher = publish(&src, &["-c", "copy"], &url);
    let started = now();
    let cam = origin.wait_alive("cam", Duration::from_secs(20));
    println!(
        "published stream alive on the origin {:?} after ffmpeg started",
        now() - started
    );
    let tracks = cam["stats"]["media_info"]["tracks"].to_string();
    assert!(
        tracks.contains("\"h264\"") && tracks.contains("\"aac\""),
        "{cam}"
    );

    let edge = Node::edge_of(TERN, &origin, KEY);
    edge.wait_alive("cam", Duration::from_secs(20));
    let frames = decode_frames(&edge.url("/cam/mpegts"), 100);
    let idx = assert_consecutive("rtmp -> origin -> edge /cam/mpegts", &frames);
    println!(
        "rtmp publish at the edge: barcodes {}..={}",
        idx[0],
        idx[idx.len() - 1]
    );
    let lat = probe_latency(&edge.url("/cam/mpegts"), 30, 100);
    println!(
        "glass-to-glass fake -> ffmpeg -c copy -f flv -> rtmp origin -> m4s edge -> ffmpeg: \
         median {} ms (min {}, max {}) over 100 frames",
        lat.median_ms, lat.min_ms, lat.max_ms
    );

    // A wrong password and a second publisher are refused, each with a clear line.
    let wrong = rtmp_url(rtmp_port, "cam?password=not-it");
    assert_refused(&src, &wrong);
    // The password as the stream key (OBS's form: server rtmp://HOST:PORT/cam), wrong.
    assert_refused(&src, &rtmp_url(rtmp_port, "cam/not-it"));
    assert_refused(&src, &url);
    // A stream without `input publish://`.
    assert_refused(&src, &rtmp_url(rtmp_port, "other"));
    let log = origin.log();
    for line in [
        "wrong password",
        "the stream already has a publisher",
        "no stream with `input publish://` has that name",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }
    // The first publisher played on meanwhile, and the stream shows no error.
    let cam = origin.stream("cam");
    assert!(cam["stats"]["error"].is_null(), "{cam}");
    assert_eq!(cam["stats"]["status"], "running", "{cam}");
    assert_consecutive(
        "after the refusals",
        &decode_frames(&edge.url("/cam/mpegts"), 25),
    );

    // The publisher dies and comes back (the stream key form this time): the
    // stream plays again, the gap declared.
    let before = origin.stream("cam")["stats"]["discontinuities"]
        .as_u64()
        .unwrap_or(0);
    publisher.kill();
    std::thread::sleep(Duration::from_secs(2));
    let _publisher = publish(
        &src,
        &["-c", "copy"],
        &rtmp_url(rtmp_port, &format!("cam/{PASSWORD}")),
    );
    let back = now();
    let resumed = poll_until(Duration::from_secs(20), || {
        let s = origin.stream("cam");
        let d = s["stats"]["discontinuities"].as_u64().unwrap_or(0);
        (d > before && s["stats"]["alive"] == true).then_some(d)
    });
    assert!(
        resumed.is_some(),
        "not playing again within 20 s:\n{}",
        origin.log()
    );
    let took = now() - back;
    println!(
        "publisher back: playing again {took:?} after ffmpeg restarted (bound: 1 s + one GOP)"
    );
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("after the publisher's return", &frames);
    // ffmpeg needs about a second to open the source and publish; Tern's part is
    // what is left of the bound.
    assert!(
        took <= Duration::from_secs(1) + GOP + Duration::from_secs(3),
        "{took:?}"
    );

    // The password is nowhere: not in the API, not in either node's log.
    let (_, list) = origin.get("/streamer/api/v3/streams");
    for (what, text) in [
        ("origin API", list),
        ("origin log", origin.log()),
        ("edge log", edge.log()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "{what} shows the password:\n{text}"
        );
    }
}

#[test]
fn clients_stalled_in_the_handshake_are_cut_and_other_streams_play_on() {
    if !require_tool("ffmpeg") {
        return;
    }
    let rtmp_port = free_port();
    let origin = origin(rtmp_port);
    decode_frames(&origin.url("/other/mpegts"), 5);
    let (rss_before, _) = rss(origin.pid());
    // 50 clients send C0 and half of C1, then nothing; one sends garbage.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", rtmp_port)).expect("connect");
            s.write_all(&[3])
                .and_then(|()| s.write_all(&[7u8; 700]))
                .expect("write");
            s
        })
        .collect();
    let mut garbage = TcpStream::connect(("127.0.0.1", rtmp_port)).expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let opened = now();
    // Another stream plays on meanwhile.
    let frames = decode_frames(&origin.url("/other/mpegts"), 50);
    assert_consecutive("another stream while clients stall", &frames);
    // Each stalled client is cut at the handshake timeout (10 s).
    let mut buf = [0u8; 4096];
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert!(
        matches!(garbage.read(&mut buf), Ok(0) | Err(_)),
        "garbage not cut"
    );
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // S0/S1/S2 never come: C1 is not complete
            }
        }
    }
    let cut_after = now() - opened;
    let (rss_after, hwm) = rss(origin.pid());
    println!(
        "50 stalled RTMP handshakes cut after {cut_after:?}; RSS {} KiB before, {} KiB after, \
         peak {} KiB",
        rss_before / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    assert!(
        cut_after >= Duration::from_secs(9) && cut_after <= Duration::from_secs(25),
        "{cut_after:?}"
    );
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    let log = origin.log();
    assert!(log.contains("handshake timeout"), "{log}");
    assert!(log.contains("protocol error"), "{log}");
    assert_consecutive(
        "another stream after the cut",
        &decode_frames(&origin.url("/other/mpegts"), 25),
    );
}

#[test]
fn b_frames_reach_the_player_with_monotonic_dts() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let src = source();
    let rtmp_port = free_port();
    let origin = origin(rtmp_port);
    let url = rtmp_url(rtmp_port, &format!("cam?password={PASSWORD}"));
    let _publisher = publish(&src, &X264_B_FRAMES, &url);
    origin.wait_alive("cam", Duration::from_secs(20));
    let edge = Node::edge_of(TERN, &origin, KEY);
    edge.wait_alive("cam", Duration::from_secs(20));
    let (packets, reordered) = assert_b_frames_reach(&edge.url("/cam/mpegts"));
    println!("b-frames over rtmp at the edge: {packets} video packets, {reordered} reordered");
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("b-frames rtmp -> origin -> edge /cam/mpegts", &frames);
}

/// Which input of `name` the API shows active (`None`: none).
fn active_input(node: &Node, name: &str) -> Option<usize> {
    node.stream(name)["inputs"]
        .as_array()?
        .iter()
        .position(|i| i["stats"]["active"] == true)
}

#[test]
fn a_publish_input_fails_over_like_any_input() {
    if !require_tool("ffmpeg") {
        return;
    }
    let src = source();
    let rtmp_port = free_port();
    let origin = Node::start(
        TERN,
        &format!(
            "rtmp 127.0.0.1:{rtmp_port};\n\
             stream cam {{\n  input publish:// priority=1 source_timeout=1;\n  \
             input fake://fake?fps=10 priority=2;\n}}\n"
        ),
    );
    // No publisher: the backup plays.
    let backup = poll_until(Duration::from_secs(20), || {
        (active_input(&origin, "cam") == Some(1)).then_some(())
    });
    assert!(
        backup.is_some(),
        "backup not active: {}",
        origin.stream("cam")
    );
    // A publisher comes: it takes over at its first keyframe.
    let mut publisher = publish(&src, &["-c", "copy"], &rtmp_url(rtmp_port, "cam"));
    let started = now();
    let primary = poll_until(Duration::from_secs(20), || {
        (active_input(&origin, "cam") == Some(0)).then_some(())
    });
    assert!(primary.is_some(), "publisher not active:\n{}", origin.log());
    println!(
        "publisher active {:?} after ffmpeg started",
        now() - started
    );
    let fps = |node: &Node| node.stream("cam")["stats"]["media_info"]["tracks"].to_string();
    assert!(fps(&origin).contains("\"fps\":25"), "{}", fps(&origin));
    // It goes: the backup again after `source_timeout`.
    publisher.kill();
    let gone = now();
    let backup = poll_until(Duration::from_secs(20), || {
        (active_input(&origin, "cam") == Some(1)).then_some(())
    });
    assert!(
        backup.is_some(),
        "backup not active again:\n{}",
        origin.log()
    );
    println!(
        "backup active again {:?} after the publisher died",
        now() - gone
    );
}

/// The origin's config: an RTMP port and `cam` with `block` inside.
fn write_config(node: &Node, rtmp_port: u16, block: &str) {
    let conf = format!(
        "http 127.0.0.1:{};\nrtmp 127.0.0.1:{rtmp_port};\nstream cam {{\n{block}}}\n",
        node.port()
    );
    std::fs::write(node.dir().join("tern.conf"), conf).expect("write the config");
}

#[test]
fn a_reload_that_restarts_the_stream_cuts_its_publisher_and_it_comes_back() {
    if !require_tool("ffmpeg") || !require_tool("kill") {
        return;
    }
    let src = source();
    let rtmp_port = free_port();
    let origin = Node::start(
        TERN,
        &format!("rtmp 127.0.0.1:{rtmp_port};\nstream cam {{\n  input publish://;\n}}\n"),
    );
    let mut publisher = publish(&src, &["-c", "copy"], &rtmp_url(rtmp_port, "cam"));
    origin.wait_alive("cam", Duration::from_secs(20));
    // The stream's block changes: the stream restarts, its publisher is cut (it would
    // otherwise feed the stream it replaced).
    write_config(
        &origin,
        rtmp_port,
        "  input publish://;\n  segment_duration 1;\n",
    );
    let hup = Command::new("kill")
        .args(["-HUP", &origin.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let cut = poll_until(Duration::from_secs(10), || {
        origin
            .log()
            .contains("the stream was removed or restarted")
            .then_some(())
    });
    assert!(cut.is_some(), "publisher not cut:\n{}", origin.log());
    let (status, _) = publisher.finish();
    assert!(!status.success(), "ffmpeg did not notice the cut");
    // It publishes again into the stream as it is now.
    let _publisher = publish(&src, &["-c", "copy"], &rtmp_url(rtmp_port, "cam"));
    origin.wait_alive("cam", Duration::from_secs(20));
    assert_consecutive(
        "after the reload",
        &decode_frames(&origin.url("/cam/mpegts"), 25),
    );
}
