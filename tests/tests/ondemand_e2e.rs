//! End-to-end test of on-demand pulls (README "On-demand pulls"): a real origin with a
//! fake camera and a real edge whose `source` has no `static`, with
//! `clients_timeout 3`. The edge lists the stream but holds no M4S connection to
//! the origin (read from the origin's API: `online_clients` of the stream); the
//! first viewer opens exactly one, a second viewer shares it, and 3 s after the last
//! one leaves none is left. Prints the time to the first frame for the first viewer
//! (MPEG-TS) and to the first playlist (HLS, held until the first segment).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tern_tests::{assert_consecutive, decode_frames, now, poll_until, require_tool, Node};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-cluster-key-5f1c9a7d3b";

/// `stats` of stream `main` in a node's API (`Null` if it is not there).
fn stats(node: &Node) -> Value {
    stats_of(node, "main")
}

/// Viewers of `main` held open on the origin: the edge's M4S pulls.
fn origin_pulls(origin: &Node) -> u64 {
    stats(origin)["online_clients"].as_u64().unwrap_or(u64::MAX)
}

/// An MPEG-TS viewer on a raw socket: sends the request and returns the socket and
/// how long the first body bytes took (the edge sends the first GOP in one write,
/// so the first bytes are the first keyframe).
fn ts_viewer(port: u16) -> (TcpStream, Duration) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to edge");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let t0 = now();
    write!(
        s,
        "GET /main/mpegts HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tern-tests\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("first frame within 10 s");
        assert!(n > 0, "edge closed the MPEG-TS response");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                raw.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
            // A chunk-size line, then at least one TS packet.
            if raw.len() >= end + 4 + 188 {
                return (s, now() - t0);
            }
        }
    }
}

#[test]
fn edge_pulls_only_while_watched() {
    if !require_tool("ffmpeg") {
        return;
    }
    let origin = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\nstream main {{\n  input fake://fake;\n}}\n"
        ),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ clients_timeout 3; }}\n",
            origin.port()
        ),
    );

    // Discovered, listed as idle, with the origin's media info, and nothing pulled.
    let idle = poll_until(Duration::from_secs(20), || {
        let s = stats(&edge);
        (s["status"] == "idle").then_some(s)
    })
    .unwrap_or_else(|| panic!("edge never listed `main` as idle: {}", stats(&edge)));
    assert_eq!(idle["pull"], "on_demand", "{idle}");
    assert!(
        idle["media_info"]["tracks"].to_string().contains("h264"),
        "media info from signaling: {idle}"
    );
    for _ in 0..4 {
        assert_eq!(origin_pulls(&origin), 0, "a pull is open with no viewer");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The first viewer opens exactly one pull; a second shares it.
    let (first, ttff) = ts_viewer(edge.port());
    println!(
        "on-demand: first MPEG-TS bytes (the first keyframe) at the edge {} ms after the request",
        ttff.as_millis()
    );
    let (second, _) = ts_viewer(edge.port());
    assert_eq!(
        poll_until(Duration::from_secs(5), || (origin_pulls(&origin) == 1)
            .then_some(())),
        Some(()),
        "origin shows {} pulls with two edge viewers",
        origin_pulls(&origin)
    );
    assert_eq!(stats(&edge)["online_clients"], 2, "{}", stats(&edge));
    assert_eq!(stats(&edge)["status"], "running", "{}", stats(&edge));

    // A real player decodes it, frame after frame.
    let frames = decode_frames(&edge.url("/main/mpegts"), 50);
    assert_consecutive("on-demand edge /main/mpegts", &frames);

    // Everybody leaves: the pull closes clients_timeout (3 s) later, not before.
    drop(first);
    drop(second);
    let left = now();
    assert_eq!(
        poll_until(Duration::from_secs(10), || (origin_pulls(&origin) == 0)
            .then_some(())),
        Some(()),
        "origin still shows {} pulls 10 s after the last viewer left",
        origin_pulls(&origin)
    );
    let closed_after = now() - left;
    println!(
        "on-demand: pull closed {} ms after the last viewer left (clients_timeout 3 s)",
        closed_after.as_millis()
    );
    assert!(
        closed_after >= Duration::from_millis(2500),
        "closed after {closed_after:?}, before clients_timeout"
    );
    assert_eq!(stats(&edge)["status"], "idle", "{}", stats(&edge));

    // An HLS viewer of the idle stream: the playlist is held until the first
    // segment exists, then answered (not a 404).
    let t0 = now();
    let (status, body) = edge.get("/main/index.m3u8");
    println!(
        "on-demand: first HLS playlist of an idle stream answered {status} after {} ms",
        (now() - t0).as_millis()
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("#EXT-X-STREAM-INF:"), "{body}");
    let (status, body) = edge.get("/main/mono.m3u8");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("#EXTINF:"), "{body}");
}

/// `stats` of stream `name` in a node's API (`Null` if it is not there).
fn stats_of(node: &Node, name: &str) -> Value {
    let (status, body) = node.get(&format!("/streamer/api/v3/streams/{name}"));
    if status != 200 {
        return Value::Null;
    }
    serde_json::from_str::<Value>(&body).map_or(Value::Null, |v| v["stats"].clone())
}

/// An `ondemand` camera on the origin, reached through an on-demand edge: nothing
/// runs until a viewer at the edge asks; then both hops open, the camera starts,
/// and after the viewer leaves the edge closes its pull and the origin its camera,
/// each after its own `clients_timeout`.
#[test]
fn ondemand_camera_opens_through_the_edge_and_closes_after_it() {
    if !require_tool("ffmpeg") {
        return;
    }
    let origin = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\n\
             ondemand cam {{\n  input fake://fake;\n  clients_timeout 2;\n}}\n"
        ),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ clients_timeout 2; }}\n",
            origin.port()
        ),
    );
    let listed = poll_until(Duration::from_secs(20), || {
        let s = stats_of(&edge, "cam");
        (s["status"] == "idle").then_some(s)
    });
    assert!(
        listed.is_some(),
        "edge never listed `cam`: {}",
        stats_of(&edge, "cam")
    );
    let o = stats_of(&origin, "cam");
    assert_eq!(o["status"], "idle", "the camera runs with no viewer: {o}");
    assert_eq!(o["pull"], "on_demand", "{o}");

    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("ondemand camera through an on-demand edge", &frames);
    println!(
        "ondemand camera: {} frames decoded through the edge",
        frames.len()
    );

    // ffmpeg is gone: the edge closes after 2 s, then the origin 2 s after that.
    let left = now();
    let closed = poll_until(Duration::from_secs(10), || {
        (stats_of(&origin, "cam")["status"] == "idle").then_some(now() - left)
    });
    let Some(closed) = closed else {
        panic!(
            "camera still open 10 s after the last viewer: {}",
            stats_of(&origin, "cam")
        );
    };
    println!(
        "ondemand camera closed {} ms after the last viewer at the edge left",
        closed.as_millis()
    );
    assert!(
        closed >= Duration::from_millis(3500),
        "closed after {closed:?}"
    );
    assert_eq!(stats_of(&edge, "cam")["status"], "idle");
}
