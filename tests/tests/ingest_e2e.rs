//! End-to-end tests of MPEG-TS ingest (`udp://`, `http://`): a source node with a
//! barcoded fake stream, whose `/src/mpegts` is re-published by ffmpeg (`-c copy`,
//! or re-encoded to H.265 / H.264 with B-frames) into UDP, or pulled over HTTP
//! directly; an origin ingesting it; an edge restreaming the origin over M4S; and
//! ffmpeg decoding the edge. The barcodes must run on by one (no frame lost or
//! duplicated on the way), H.265 must play, and B-frames must reach the player with
//! monotonic DTS. A sender that dies and comes back (through a relay the test
//! switches off and on) plays again within the bound, its gap declared.

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tern_tests::{
    assert_b_frames_reach, assert_consecutive, decode_frames, ffmpeg_sender, now, poll_until,
    probe_latency, require_tool, run_ok, Node, Proc, FFMPEG_RW_TIMEOUT_US, X264_B_FRAMES,
    X265_ARGS,
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

/// ffmpeg re-encoding the source's live MPEG-TS with `codec` and sending it to
/// `udp_port` on loopback.
fn republish(src: &Node, codec: &[&str], udp_port: u16) -> Proc {
    let url = format!("udp://127.0.0.1:{udp_port}?pkt_size=1316");
    ffmpeg_sender(src, codec, "mpegts", &url)
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
    let _ffmpeg = republish(&src, &X265_ARGS, port);
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
    let _ffmpeg = republish(&src, &X264_B_FRAMES, port);
    wait_alive(&edge, "cam");
    let (packets, reordered) = assert_b_frames_reach(&edge.url("/cam/mpegts"));
    println!("b-frames over udp at the edge: {packets} video packets, {reordered} reordered");
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("b-frames udp -> origin -> edge /cam/mpegts", &frames);
}

/// How the relay hands the sender's MPEG-TS to the origin.
#[derive(Clone, Copy)]
enum Leg {
    /// UDP datagrams to this port on 127.0.0.1.
    Udp(u16),
    /// An endless HTTP response on this port (`GET` any path).
    Http(u16),
}

/// What the relay threads share.
#[derive(Default)]
struct RelayState {
    up: bool,
    /// When the first bytes went out after the last `up()`.
    first_sent: Option<std::time::Instant>,
    /// The origin's HTTP connection, while one is open.
    conn: Option<std::net::TcpStream>,
    stop: bool,
}

/// A sender that dies and comes back, at a moment the test knows to the millisecond:
/// ffmpeg sends its MPEG-TS to the relay over UDP, and the relay passes it on to the
/// origin while up, and drops it while down. Over HTTP, down means the connection is
/// closed and the port refuses connections, as when an encoder's process dies.
struct Relay {
    inbound: u16,
    state: std::sync::Arc<std::sync::Mutex<RelayState>>,
}

impl Relay {
    fn start(leg: Leg) -> Relay {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the relay's udp port");
        let inbound = sock.local_addr().expect("local_addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set_read_timeout");
        // The fake source's keyframe is ~90 datagrams sent at once: more than the
        // default receive buffer holds (as Tern's own UDP input knows, net/src/udp.rs).
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
        let state = Arc::new(Mutex::new(RelayState {
            up: true,
            ..RelayState::default()
        }));
        let st = state.clone();
        tern_tests::spawn_thread(move || {
            let out = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp");
            let mut buf = vec![0u8; 65536];
            loop {
                // A timeout reads as 0 bytes: the loop looks at `stop` again.
                let n = sock.recv(&mut buf).unwrap_or_default();
                let mut s = st.lock().expect("relay state");
                if s.stop {
                    return;
                }
                if n == 0 || !s.up {
                    continue;
                }
                let sent = match leg {
                    Leg::Udp(port) => out.send_to(&buf[..n], (Ipv4Addr::LOCALHOST, port)).is_ok(),
                    Leg::Http(_) => match s.conn.as_mut().map(|c| c.write_all(&buf[..n])) {
                        Some(Ok(())) => true,
                        Some(Err(_)) => {
                            s.conn = None;
                            false
                        }
                        None => false,
                    },
                };
                if sent && s.first_sent.is_none() {
                    s.first_sent = Some(now());
                }
            }
        });
        if let Leg::Http(port) = leg {
            let st = state.clone();
            tern_tests::spawn_thread(move || {
                let mut listener: Option<std::net::TcpListener> = None;
                loop {
                    let up = {
                        let mut s = st.lock().expect("relay state");
                        if s.stop {
                            return;
                        }
                        if !s.up {
                            s.conn = None;
                        }
                        s.up
                    };
                    if !up {
                        listener = None;
                    } else if listener.is_none() {
                        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                            .expect("bind the relay's http port again");
                        l.set_nonblocking(true).expect("nonblocking");
                        listener = Some(l);
                    }
                    if let Some(Ok((mut c, _))) = listener.as_ref().map(|l| l.accept()) {
                        // Read the request head, answer with an endless body.
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                            match c.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => break,
                            }
                        }
                        let ok = c
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\
                                  Connection: close\r\n\r\n",
                            )
                            .is_ok();
                        if ok {
                            st.lock().expect("relay state").conn = Some(c);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
        Relay { inbound, state }
    }

    fn down(&self) {
        let mut s = self.state.lock().expect("relay state");
        s.up = false;
        s.conn = None;
    }

    fn up(&self) {
        let mut s = self.state.lock().expect("relay state");
        s.up = true;
        s.first_sent = None;
    }

    /// When the relay sent again after `up()`, if it has.
    fn first_sent(&self) -> Option<std::time::Instant> {
        self.state.lock().expect("relay state").first_sent
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.stop = true;
        }
    }
}

/// The sender goes away for longer than `source_timeout` and comes back: the stream
/// plays again within the bound of the sender's first packet (1 s, plus the
/// input's reconnect backoff cap, plus one GOP of the fake source), with the gap
/// declared as a discontinuity, and the barcodes run on at the edge afterwards.
fn sender_dies_and_comes_back(leg: Leg, input: &str, backoff_cap: Duration) {
    let src = source();
    let (origin, edge) = origin_and_edge(input);
    let relay = Relay::start(leg);
    let _ffmpeg = republish(&src, &["-c", "copy"], relay.inbound);
    wait_alive(&edge, "cam");
    assert_consecutive(
        "before the sender dies",
        &decode_frames(&edge.url("/cam/mpegts"), 25),
    );

    let stream = |node: &Node| -> Value {
        let (_, body) = node.get("/streamer/api/v3/streams/cam");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    };
    let before = stream(&origin)["stats"]["discontinuities"]
        .as_u64()
        .unwrap_or(0);
    relay.down();
    // Longer than source_timeout (3 s): the input declares the sender gone.
    std::thread::sleep(Duration::from_secs(5));
    let gone = stream(&origin);
    assert_eq!(
        gone["stats"]["alive"], false,
        "still alive with the sender gone: {gone}"
    );

    relay.up();
    let resumed = poll_until(Duration::from_secs(20), || {
        let s = stream(&origin);
        let d = s["stats"]["discontinuities"].as_u64().unwrap_or(0);
        (d > before && s["stats"]["alive"] == true).then(now)
    });
    let log = origin.log();
    let resumed = resumed.unwrap_or_else(|| panic!("not playing again within 20 s:\n{log}"));
    let back = relay
        .first_sent()
        .unwrap_or_else(|| panic!("the relay sent nothing after coming back:\n{log}"));
    let took = resumed.saturating_duration_since(back);
    // 1 s, the input's reconnect backoff cap, one GOP of the fake source (1 s).
    let bound = Duration::from_secs(1) + backoff_cap + Duration::from_secs(1);
    println!("{input}: playing again {took:?} after the sender's first packet (bound {bound:?})");
    assert!(
        took <= bound,
        "{input}: playing again only {took:?} after the sender's return:\n{log}"
    );
    let frames = decode_frames(&edge.url("/cam/mpegts"), 50);
    assert_consecutive("after the sender's return", &frames);
}

#[test]
fn a_udp_sender_that_dies_and_comes_back_plays_again() {
    if !require_tool("ffmpeg") {
        return;
    }
    let port = free_udp_port();
    sender_dies_and_comes_back(
        Leg::Udp(port),
        &format!("udp://127.0.0.1:{port}"),
        Duration::ZERO,
    );
}

#[test]
fn an_http_sender_that_dies_and_comes_back_plays_again() {
    if !require_tool("ffmpeg") {
        return;
    }
    let port = tern_tests::free_port();
    // The http:// input's reconnect backoff: 100 ms doubling to 2 s (README).
    sender_dies_and_comes_back(
        Leg::Http(port),
        &format!("http://127.0.0.1:{port}/cam.ts"),
        Duration::from_secs(2),
    );
}
