//! End-to-end tests of the archive through a two-node cluster (docs/design.md §1, §6, §7):
//! a real origin recording a fake stream (`dvr` under a temp directory the test makes
//! and removes) and a real edge with only `cluster_key` + `source m4s://ORIGIN`, both
//! `tern run` on loopback. The edge must play a past window of the origin's archive
//! (VOD playlist and one continuous `.ts`, decoded by `ffmpeg -xerror` with consecutive
//! barcodes captured inside the window), answer byte for byte like the origin, keep
//! the archive readable across an origin restart and show the gap, and say clearly
//! when nothing is recorded (404) or the origin cannot be reached (503). Each test
//! starts its own two nodes on their own ports; they run in parallel.
//!
//! Wall time: the longest test asks for its window after about 14 s of recording
//! (15 s as `recording_status.json` rounds it outwards), not a naive ~20 s: 1–2 s
//! lead-in (the first segment starts anywhere in the first recorded second S; FROM =
//! S + 2 has a whole segment before it, so the window never starts on the
//! recording's first, possibly short, GOP) + the 10 s window + a 3 s tail (the 1 s
//! segment holding the window's end and two more closed and indexed after it, so
//! nothing in or at the edge of the window is still being written or on its way to
//! the edge). FROM is then about now − 13 s. More recording adds wall time and checks
//! nothing more.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tern_tests::{
    assert_consecutive, capture_utc_ms, decode_all_frames, now, poll_until, read_barcode,
    require_tool, try_http_get, utc_now_ms, Node, TempDir,
};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");

/// The shared cluster key (long enough for `tern check` not to warn).
const KEY: &str = "e2e-archive-key-8d2e4b6a1c";

/// The origin's segment duration (`segment_duration 1;`).
const SEGMENT_MS: u64 = 1000;

/// How far a window's first and last decoded frames may be from its ends (the fake
/// stream's frames are 40 ms apart; its capture clock is read by a timer).
const COVER_SLACK_MS: u64 = 200;

/// How long a finite archive decode may take.
const DECODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Origin, edge and the origin's DVR directory. Fields drop in order: the nodes are
/// killed before the directory is removed.
struct Cluster {
    edge: Node,
    origin: Node,
    dvr: TempDir,
}

/// The origin: one fake stream `main` with 1 s segments recorded under `dvr`.
fn origin_config(dvr: &Path) -> String {
    format!(
        "cluster_key {KEY};\nsegment_duration 1;\nstream main {{\n  input fake://fake;\n  \
         dvr \"{}\";\n}}\n",
        dvr.display()
    )
}

/// An edge with nothing but the key and a `source`.
fn edge_config(origin: &Node) -> String {
    format!(
        "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
        origin.port()
    )
}

/// A recording origin and its edge; `what` names the temp directory.
fn cluster(what: &str) -> Cluster {
    let dvr = TempDir::new(&format!("archive-{what}"));
    let origin = Node::start(TERN, &origin_config(&dvr.path().join("dvr")));
    let edge = Node::start(TERN, &edge_config(&origin));
    Cluster { edge, origin, dvr }
}

impl Cluster {
    /// Both nodes' logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "---- origin log ----\n{}---- edge log ----\n{}",
            self.origin.log(),
            self.edge.log()
        )
    }

    /// The DVR really is on disk under the test's directory.
    fn assert_recorded_on_disk(&self) {
        let root = self.dvr.path().join("dvr");
        let mut files = 0;
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
                .flatten()
            {
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else {
                    files += 1;
                }
            }
        }
        assert!(files > 1, "nothing recorded under {}", root.display());
    }
}

fn parse_json(what: &str, body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {body}"))
}

/// `(from, duration)` of each range of a `recording_status.json` or ranges answer.
fn ranges(v: &Value) -> Vec<(u64, u64)> {
    v["ranges"]
        .as_array()
        .unwrap_or_else(|| panic!("no `ranges` array: {v}"))
        .iter()
        .map(|r| {
            let n = |k: &str| {
                r[k].as_u64()
                    .unwrap_or_else(|| panic!("range without a numeric `{k}`: {v}"))
            };
            (n("from"), n("duration"))
        })
        .collect()
}

/// The node's `recording_status.json` if it answers 200.
fn recording_status(node: &Node) -> Option<Value> {
    match try_http_get(node.port(), "/main/recording_status.json") {
        Ok((200, body)) => Some(parse_json(
            "recording_status.json",
            &String::from_utf8_lossy(&body),
        )),
        _ => None,
    }
}

/// Polls the node's `recording_status.json` until `ok` holds for its ranges; returns
/// the answer. Panics after `timeout` with the last answer.
fn wait_status(
    node: &Node,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&[(u64, u64)]) -> bool,
) -> Value {
    let mut last = (0, String::new());
    poll_until(timeout, || {
        last = match try_http_get(node.port(), "/main/recording_status.json") {
            Ok((s, b)) => (s, String::from_utf8_lossy(&b).into_owned()),
            Err(e) => (0, e.to_string()),
        };
        if last.0 != 200 {
            return None;
        }
        let v = parse_json("recording_status.json", &last.1);
        ok(&ranges(&v)).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "recording_status.json on port {} did not show {what} within {timeout:?}; \
             last answer: {} {}\n---- log ----\n{}",
            node.port(),
            last.0,
            last.1,
            node.log()
        )
    })
}

/// Waits until `node` reports a recording; returns its first recorded second.
fn wait_recording(node: &Node) -> u64 {
    let v = wait_status(node, "a recording", Duration::from_secs(15), |r| {
        !r.is_empty()
    });
    ranges(&v)[0].0
}

/// Waits until `node`'s archive holds everything before `until_s` (UTC seconds): the
/// last range's rounded-up end is past it.
fn wait_recorded_until(node: &Node, until_s: u64, timeout: Duration) {
    wait_status(
        node,
        &format!("a range ending at {until_s} or later"),
        timeout,
        |r| r.last().is_some_and(|(f, d)| f + d >= until_s),
    );
}

/// GET `path` on origin, edge, origin, until the edge's answer equals one of the two
/// around it (the origin's archive may close a segment in between); returns it.
/// Panics with every attempt if that never happens within 5 tries.
fn same_answer(origin: &Node, edge: &Node, path: &str) -> String {
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let o1 = origin.get(path);
        let e = edge.get(path);
        let o2 = origin.get(path);
        assert_eq!(e.0, 200, "edge {path}: {}", e.1);
        if e == o1 || e == o2 {
            return e.1;
        }
        attempts.push(format!(
            "origin {} {}\nedge   {} {}\norigin {} {}",
            o1.0, o1.1, e.0, e.1, o2.0, o2.1
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the edge's {path} never matched the origin's:\n{}",
        attempts.join("\n--\n")
    );
}

/// The `dvr-<utc ms>.ts` start times of an archive playlist, in order.
fn playlist_segments(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("dvr-")?.strip_suffix(".ts")?.parse().ok())
        .collect()
}

/// GETs `path` (an MPEG-TS URL) from origin and edge: asserts the origin's answer is
/// MPEG-TS and the edge's is the same bytes; returns their length.
fn same_ts(c: &Cluster, path: &str) -> usize {
    let o = get_bytes(&c.origin, path);
    let e = get_bytes(&c.edge, path);
    assert!(
        !o.is_empty() && o.len().is_multiple_of(188) && o[0] == 0x47,
        "{path} from the origin is not MPEG-TS ({} bytes)",
        o.len()
    );
    assert!(
        o == e,
        "{path}: the edge's {} bytes differ from the origin's {} bytes",
        e.len(),
        o.len()
    );
    o.len()
}

/// GETs `path` as bytes, asserting 200.
fn get_bytes(node: &Node, path: &str) -> Vec<u8> {
    match try_http_get(node.port(), path) {
        Ok((200, b)) => b,
        Ok((s, b)) => panic!(
            "GET {path} on port {}: {s} {}",
            node.port(),
            String::from_utf8_lossy(&b)
        ),
        Err(e) => panic!("GET {path} on port {} failed: {e}", node.port()),
    }
}

/// What was decoded from a window: barcode indices and the first and last capture
/// times (UTC ms).
struct Decoded {
    indices: Vec<u64>,
    first_ms: u64,
    last_ms: u64,
}

/// Checks frames decoded from the window `[from_s, from_s + duration_s)`: barcodes run
/// on by one, every capture time lies within the window or one segment after it, the
/// first frame is the start of the first segment at or after FROM (Flussonic's rule:
/// captured at or after FROM, within one segment of it), and the last is captured at
/// or after the window's end (within [`COVER_SLACK_MS`]).
fn check_window(what: &str, frames: &[Vec<u8>], from_s: u64, duration_s: u64) -> Decoded {
    let indices = assert_consecutive(what, frames);
    let (from_ms, to_ms) = (from_s * 1000, (from_s + duration_s) * 1000);
    let captures: Vec<u64> = frames
        .iter()
        .map(|f| capture_utc_ms(read_barcode(f).1, from_ms))
        .collect();
    let (lo, hi) = (from_ms, to_ms + SEGMENT_MS);
    if let Some((i, c)) = captures
        .iter()
        .enumerate()
        .find(|(_, c)| !(lo..=hi).contains(*c))
    {
        panic!(
            "{what}: frame {i} (barcode index {}) was captured at {c} UTC ms, outside \
             [{lo}, {hi}] (the window [{from_ms}, {to_ms}) and one segment after it); \
             {} frames, captured {}..={}",
            indices[i],
            frames.len(),
            captures[0],
            captures[captures.len() - 1]
        );
    }
    let (first_ms, last_ms) = (captures[0], captures[captures.len() - 1]);
    assert!(
        first_ms <= from_ms + SEGMENT_MS + COVER_SLACK_MS && last_ms + COVER_SLACK_MS >= to_ms,
        "{what}: frames captured {first_ms}..={last_ms} do not cover the window \
         [{from_ms}, {to_ms}) from its first segment at or after FROM ({} frames)",
        frames.len()
    );
    Decoded {
        indices,
        first_ms,
        last_ms,
    }
}

/// Decodes `path` from `node` whole and checks it as the window
/// `[from_s, from_s + duration_s)`.
fn decode_window(node: &Node, path: &str, from_s: u64, duration_s: u64) -> Decoded {
    let started = now();
    let frames = decode_all_frames(&node.url(path), DECODE_TIMEOUT);
    let what = format!("{path} on port {}", node.port());
    let d = check_window(&what, &frames, from_s, duration_s);
    println!(
        "{what}: {} frames in {} ms, barcode indices {}..={}, captured {} ms before FROM \
         to {} ms after FROM + DURATION",
        frames.len(),
        (now() - started).as_millis(),
        d.indices[0],
        d.indices[d.indices.len() - 1],
        (from_s * 1000) as i64 - d.first_ms as i64,
        d.last_ms as i64 - ((from_s + duration_s) * 1000) as i64,
    );
    d
}

/// 1. A 10 s window in the past, played through the edge as an HLS VOD playlist and
///    as one continuous TS: both decode with `ffmpeg -xerror`, with consecutive
///    barcodes captured inside the window, and carry the same frames.
#[test]
fn edge_plays_a_past_window_of_the_origin_archive() {
    if !require_tool("ffmpeg") {
        return;
    }
    const DURATION: u64 = 10;
    let t0 = now();
    let c = cluster("window");
    let first_s = wait_recording(&c.edge);
    // Lead-in + the window + a 3 s tail: about 14 s of recording (see the file's doc).
    let from = first_s + 2;
    wait_recorded_until(&c.edge, from + DURATION + 3, Duration::from_secs(30));
    println!(
        "window: FROM = {from} = now - {:.1} s, DURATION = {DURATION}; {:.1} s after the \
         origin started, recording_status.json: {}",
        (utc_now_ms() as f64 / 1000.0) - from as f64,
        (now() - t0).as_secs_f64(),
        recording_status(&c.edge).map_or("-".into(), |v| v.to_string())
    );

    let m3u8 = format!("/main/archive-{from}-{DURATION}.m3u8");
    let (status, playlist) = c.edge.get(&m3u8);
    assert_eq!(status, 200, "edge {m3u8}: {playlist}");
    assert!(
        playlist.contains("#EXT-X-ENDLIST"),
        "not a VOD playlist:\n{playlist}"
    );
    let segs = playlist_segments(&playlist);
    assert!(
        segs.len() >= DURATION as usize,
        "{} segments for a {DURATION} s window of 1 s segments:\n{playlist}",
        segs.len()
    );
    for t in &segs {
        assert!(
            *t + SEGMENT_MS > from * 1000 && *t < (from + DURATION) * 1000,
            "segment dvr-{t}.ts is outside the window:\n{playlist}"
        );
    }
    let hls = decode_window(&c.edge, &m3u8, from, DURATION);

    let ts = format!("/main/archive-{from}-{DURATION}.ts");
    let cont = decode_window(&c.edge, &ts, from, DURATION);
    assert_eq!(
        hls.indices, cont.indices,
        "the playlist and the continuous TS of the same window carry different frames"
    );
    c.assert_recorded_on_disk();
    println!(
        "edge_plays_a_past_window_of_the_origin_archive: {:.1} s in all",
        (now() - t0).as_secs_f64()
    );
}

/// 2. The edge's archive answers are the origin's: `recording_status.json` and the
///    ranges API equal, and the same playlists, `dvr-<utc>.ts` segments and continuous
///    TS byte for byte.
#[test]
fn edge_archive_answers_are_the_origin_bytes() {
    const DURATION: u64 = 4;
    let t0 = now();
    let c = cluster("bytes");
    let first_s = wait_recording(&c.edge);
    let from = first_s + 1;
    wait_recorded_until(&c.origin, from + DURATION + 1, Duration::from_secs(20));

    let status = same_answer(&c.origin, &c.edge, "/main/recording_status.json");
    let v = parse_json("recording_status.json", &status);
    let r = ranges(&v);
    assert_eq!(r.len(), 1, "one uninterrupted recording: {status}");
    assert_eq!(v["from"], r[0].0, "`from` is the first range's: {status}");
    assert_eq!(v["depth"], 0, "no depth configured: {status}");
    let api = same_answer(
        &c.origin,
        &c.edge,
        "/streamer/api/v3/streams/main/dvr/ranges",
    );
    assert_eq!(
        ranges(&parse_json("dvr/ranges", &api)).len(),
        1,
        "dvr/ranges: {api}"
    );
    println!("recording_status.json (origin = edge): {status}\ndvr/ranges (origin = edge): {api}");

    // A window in the past does not change: the answers must be equal outright.
    let m3u8 = format!("/main/archive-{from}-{DURATION}.m3u8");
    let playlist = String::from_utf8_lossy(&get_bytes(&c.origin, &m3u8)).into_owned();
    let edge_playlist = String::from_utf8_lossy(&get_bytes(&c.edge, &m3u8)).into_owned();
    assert_eq!(
        playlist, edge_playlist,
        "{m3u8}: the edge's playlist differs from the origin's"
    );
    // index-… is the master playlist; its variant's media playlist is the same list.
    let index = format!("/main/index-{from}-{DURATION}.m3u8");
    let master = String::from_utf8_lossy(&get_bytes(&c.origin, &index)).into_owned();
    assert_eq!(
        master,
        String::from_utf8_lossy(&get_bytes(&c.edge, &index)),
        "{index}: the edge's master playlist differs from the origin's"
    );
    let variant = format!("tracks-v1a1/mono-{from}-{DURATION}.m3u8");
    assert!(
        master.contains("CODECS=\"avc1.") && master.lines().any(|l| l == variant),
        "{index} is not a master playlist pointing to {variant}:\n{master}"
    );
    for node in [&c.origin, &c.edge] {
        let other =
            String::from_utf8_lossy(&get_bytes(node, &format!("/main/{variant}"))).into_owned();
        assert_eq!(
            playlist,
            other,
            "{variant} on port {} differs from {m3u8}",
            node.port()
        );
    }
    let segs = playlist_segments(&playlist);
    assert!(
        segs.len() >= DURATION as usize,
        "{} segments for a {DURATION} s window:\n{playlist}",
        segs.len()
    );
    let mut total = 0;
    for t in &segs {
        let path = format!("/main/dvr-{t}.ts");
        total += same_ts(&c, &path);
    }
    let ts = format!("/main/archive-{from}-{DURATION}.ts");
    let ts_len = same_ts(&c, &ts);
    c.assert_recorded_on_disk();
    println!(
        "edge_archive_answers_are_the_origin_bytes: {} segments ({total} bytes) and the \
         continuous TS ({} bytes) identical; {:.1} s in all",
        segs.len(),
        ts_len,
        (now() - t0).as_secs_f64()
    );
}

/// 3. Stop the origin (a kill), wait 3 s, start it again on the same port: a window
///    recorded before the stop still plays from the origin and through the edge, and
///    both report the gap as a second range.
#[test]
fn archive_survives_an_origin_restart_and_shows_the_gap() {
    if !require_tool("ffmpeg") {
        return;
    }
    const DURATION: u64 = 3;
    const PAUSE: Duration = Duration::from_secs(3);
    let t0 = now();
    let mut c = cluster("restart");
    let first_s = wait_recording(&c.edge);
    let from = first_s + 1;
    wait_recorded_until(&c.edge, from + DURATION + 1, Duration::from_secs(20));

    c.origin.stop();
    let stopped_ms = utc_now_ms();
    std::thread::sleep(PAUSE);
    c.origin.restart();

    // The restarted origin records again: a second range, after the pause.
    let v = wait_status(&c.origin, "a second range", Duration::from_secs(15), |r| {
        r.len() >= 2
    });
    let r = ranges(&v);
    // The edge sees the same (once its signaling is back).
    let edge_status = poll_until(Duration::from_secs(15), || {
        recording_status(&c.edge).filter(|v| ranges(v).len() >= 2)
    })
    .unwrap_or_else(|| {
        panic!(
            "the edge's recording_status.json did not show 2 ranges within 15 s of the \
             origin's: origin {v}, edge {:?}\n{}",
            recording_status(&c.edge),
            c.logs()
        )
    });
    let status = same_answer(&c.origin, &c.edge, "/main/recording_status.json");
    println!(
        "after the restart: origin = edge: {status} (first edge answer with 2 ranges: {edge_status})"
    );
    assert_eq!(r.len(), 2, "one stop, two ranges: {v}");
    let (r0, r1) = (r[0], r[1]);
    assert!(
        r0.0 + r0.1 < r1.0,
        "no gap between the ranges {r0:?} and {r1:?}: {v}"
    );
    assert!(
        (r0.0 + r0.1) * 1000 <= stopped_ms + 2 * SEGMENT_MS,
        "the first range {r0:?} ends after the stop at {stopped_ms} UTC ms"
    );
    assert!(
        r1.0 >= (stopped_ms + PAUSE.as_millis() as u64) / 1000,
        "the second range {r1:?} starts before the restart (stopped at {stopped_ms} UTC \
         ms, restarted {PAUSE:?} later)"
    );
    let api = same_answer(
        &c.origin,
        &c.edge,
        "/streamer/api/v3/streams/main/dvr/ranges",
    );
    assert_eq!(
        ranges(&parse_json("dvr/ranges", &api)).len(),
        2,
        "dvr/ranges: {api}"
    );

    // The window before the stop still plays, from the origin and through the edge.
    let m3u8 = format!("/main/archive-{from}-{DURATION}.m3u8");
    let o = decode_window(&c.origin, &m3u8, from, DURATION);
    let e = decode_window(&c.edge, &m3u8, from, DURATION);
    assert_eq!(
        o.indices, e.indices,
        "origin and edge play different frames"
    );

    // A window across the gap says so to players.
    let across = format!("/main/archive-{}-{}.m3u8", r0.0, r1.0 + r1.1 - r0.0);
    let (s, p) = c.edge.get(&across);
    assert_eq!(s, 200, "edge {across}: {p}");
    assert!(
        p.contains("#EXT-X-DISCONTINUITY"),
        "{across} spans the gap without #EXT-X-DISCONTINUITY:\n{p}"
    );
    c.assert_recorded_on_disk();
    println!(
        "archive_survives_an_origin_restart_and_shows_the_gap: ranges {r:?}, stopped at \
         {stopped_ms}; {:.1} s in all",
        (now() - t0).as_secs_f64()
    );
}

/// 4. A window with nothing recorded is a 404 that says so (origin and edge alike); an
///    edge whose origin is gone answers archive requests with a 503 that says the peer
///    cannot be reached.
#[test]
fn empty_window_is_404_and_unreachable_origin_is_503() {
    let t0 = now();
    let mut c = cluster("errors");
    let first_s = wait_recording(&c.edge);
    wait_recorded_until(&c.edge, first_s + 3, Duration::from_secs(15));

    let empty = utc_now_ms() / 1000 - 100_000;
    for path in [
        format!("/main/archive-{empty}-10.m3u8"),
        format!("/main/index-{empty}-10.m3u8"),
        format!("/main/archive-{empty}-10.ts"),
    ] {
        let o = c.origin.get(&path);
        let e = c.edge.get(&path);
        assert_eq!(o.0, 404, "origin {path}: {}", o.1);
        assert!(
            o.1.contains("nothing recorded"),
            "origin {path}: the 404 does not say nothing is recorded: {}",
            o.1
        );
        assert_eq!(e, o, "edge {path} answers unlike the origin");
        println!("{path}: {} {}", e.0, e.1);
    }
    let missing = format!("/main/dvr-{}.ts", empty * 1000);
    for node in [&c.origin, &c.edge] {
        let (s, b) = node.get(&missing);
        assert_eq!(s, 404, "{missing} on port {}: {b}", node.port());
    }

    // A real segment and window, to ask for once the origin is gone.
    let window = format!("/main/archive-{first_s}-2.m3u8");
    let (s, playlist) = c.edge.get(&window);
    assert_eq!(s, 200, "edge {window}: {playlist}");
    let seg = playlist_segments(&playlist)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no segment in {window}:\n{playlist}"));

    c.origin.stop();
    let origin_addr = format!("127.0.0.1:{}", c.origin.port());
    for path in [
        "/main/recording_status.json".to_owned(),
        "/streamer/api/v3/streams/main/dvr/ranges".to_owned(),
        window,
        format!("/main/index-{first_s}-2.m3u8"),
        format!("/main/archive-{first_s}-2.ts"),
        format!("/main/dvr-{seg}.ts"),
        format!("/main/archive-{empty}-10.m3u8"),
    ] {
        let (s, b) = c.edge.get(&path);
        assert_eq!(
            s,
            503,
            "edge {path} with its origin stopped: {b}\n{}",
            c.logs()
        );
        assert!(
            b.contains("cannot be reached") && b.contains(&origin_addr),
            "edge {path}: the 503 does not say {origin_addr} cannot be reached: {b}"
        );
    }
    println!(
        "edge with its origin stopped: 503 `{}`",
        c.edge.get("/main/recording_status.json").1
    );
    println!(
        "empty_window_is_404_and_unreachable_origin_is_503: {:.1} s in all",
        (now() - t0).as_secs_f64()
    );
}

/// `source ... { cache ...; }`: what an edge fetched once still plays from its cache
/// while the origin is down; what it never fetched gets a 503 that says so.
#[test]
fn cached_archive_plays_while_the_origin_is_down() {
    let dvr = TempDir::new("archive-cache");
    let mut origin = Node::start(TERN, &origin_config(&dvr.path().join("dvr")));
    let cache_dir = dvr.path().join("cache");
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{\n  static;\n  cache \"{}\" 1h 1G;\n}}\n",
            origin.port(),
            cache_dir.display()
        ),
    );
    let first_s = wait_recording(&edge);
    wait_recorded_until(&edge, first_s + 8, Duration::from_secs(20));

    // Fetch a 2 s window through the edge: it lands in the cache.
    let window = format!("/main/archive-{}-2.ts", first_s + 1);
    let before = get_bytes(&edge, &window);
    assert!(!before.is_empty());
    let cached = std::fs::read_dir(cache_dir.join("main"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "tseg"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        cached >= 2,
        "expected the window's segments in the cache, found {cached}"
    );

    origin.stop();
    let after = get_bytes(&edge, &window);
    assert_eq!(
        after, before,
        "the cached window plays the same bytes with the origin down"
    );

    // Segments do not start on whole seconds: leave a second between the fetched
    // window and this one, so no segment of it was fetched.
    let never = format!("/main/archive-{}-2.ts", first_s + 5);
    let (s, body) = edge.get(&never);
    assert_eq!(
        s,
        503,
        "a window never fetched, origin down: {} bytes",
        body.len()
    );
    assert!(
        body.contains("cannot be reached") && body.contains("cached"),
        "the 503 says the origin is unreachable and nothing is cached: {body}"
    );
    drop(edge);
    drop(origin);
}
