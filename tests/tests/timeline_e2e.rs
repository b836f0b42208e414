//! The continuous output timeline: an origin restarted (killed and started again)
//! continues the timestamps players saw, on live (through an edge, which never
//! rebases) and in the archive across the restart, where the discontinuity is still
//! marked. Checked with ffprobe (timestamps never go back), ffmpeg (`-xerror` decodes
//! the whole archive window) and mpv when installed (it plays through the restart
//! instead of taking the jump back as the end of the file).

use std::process::Command;
use std::time::Duration;

use tern_tests::{
    decode_all_frames, poll_until, require_check, require_tool, run_ok, Node, Proc, TempDir,
    FFMPEG_RW_TIMEOUT_US,
};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-timeline-key-5b1e9c2d7a";
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/browser_check.py");

/// hls.js (the status page's player, in headless Chromium) playing `url` for `secs`
/// seconds, after seeking to `seek`: `tests/tools/browser_check.py --watch`.
fn hls_js(page: &str, url: &str, secs: u32, seek: Option<f64>) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([BROWSER, "--watch", page, url, &secs.to_string()]);
    if let Some(s) = seek {
        cmd.arg(format!("{s:.1}"));
    }
    Proc::spawn(&mut cmd, Duration::from_secs(u64::from(secs) + 60))
}

/// The currentTime samples of a `--watch` run; panics on a player error.
fn watched(p: &mut Proc, what: &str) -> Vec<f64> {
    let out = p.read_all();
    let (_, err) = p.finish();
    let v: serde_json::Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{what}: browser_check output ({e}): {err}"));
    assert!(v["error"].is_null(), "{what}: hls.js error {}", v["error"]);
    v["samples"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

/// How long the origin stays down.
const PAUSE: Duration = Duration::from_secs(3);

/// `(from, duration)` of the ranges in `recording_status.json`.
fn ranges(node: &Node) -> Vec<(u64, u64)> {
    let (s, b) = node.get("/main/recording_status.json");
    if s != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = match serde_json::from_str(&b) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v["ranges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((r["from"].as_u64()?, r["duration"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The largest `time-pos` mpv printed (its status line, one per frame).
fn mpv_positions(out: &str) -> f64 {
    out.split("pos=")
        .skip(1)
        .filter_map(|p| {
            p.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()?
                .parse::<f64>()
                .ok()
        })
        .fold(0.0, f64::max)
}

fn mpv(url: &str, extra: &[&str], timeout: Duration) -> Proc {
    let mut cmd = Command::new("mpv");
    cmd.args([
        "--no-config",
        "--vo=null",
        "--ao=null",
        "--term-status-msg=pos=${=time-pos}",
    ])
    .args(extra)
    .arg(url);
    Proc::spawn(&mut cmd, timeout)
}

#[test]
fn timestamps_continue_across_an_origin_restart() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    // Without mpv or Chromium (and without TERN_REQUIRE_TOOLS=1) only their checks
    // are skipped.
    let have_mpv = require_tool("mpv");
    let have_browser = require_check(
        "headless Chromium with python3-websocket",
        Command::new("/usr/bin/python3").args([BROWSER, "--check"]),
        "chromium python3-websocket",
    );
    let dvr = TempDir::new("timeline");
    let mut origin = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\nstream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            origin.port()
        ),
    );
    edge.wait_playlist("main", 3, Duration::from_secs(20));

    // Live through the edge: mpv plays while the origin restarts.
    let live_secs = 14.0;
    let mut live = have_mpv.then(|| {
        mpv(
            &edge.url("/main/index.m3u8"),
            &["--length=14", "--cache=no"],
            Duration::from_secs(40),
        )
    });
    let mut live_js = have_browser.then(|| hls_js(&edge.url("/"), "/main/index.m3u8", 16, None));
    std::thread::sleep(Duration::from_secs(3));
    origin.stop();
    std::thread::sleep(PAUSE);
    origin.restart();
    let r = poll_until(Duration::from_secs(20), || {
        let r = ranges(&origin);
        (r.len() >= 2 && r[1].1 >= 4).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "no second range of 4 s after the restart: {:?}",
            ranges(&origin)
        )
    });
    if let Some(p) = live.as_mut() {
        let out = String::from_utf8_lossy(&p.read_all()).into_owned();
        let (_, err) = p.finish();
        let pos = mpv_positions(&format!("{out}{err}"));
        assert!(
            pos >= live_secs - 3.0,
            "mpv stopped at {pos:.1} s of live through the edge while the origin restarted \
             (expected about {live_secs} s):\n{out}{err}"
        );
        println!("mpv, live through the edge across the origin restart: played to {pos:.1} s");
    }
    if let Some(p) = live_js.as_mut() {
        let t = watched(p, "hls.js live");
        let played = t.iter().cloned().fold(f64::MIN, f64::max)
            - t.iter()
                .cloned()
                .filter(|x| *x > 0.0)
                .fold(f64::MAX, f64::min);
        let tail = &t[t.len().saturating_sub(4)..];
        assert!(
            played >= 8.0 && tail.windows(2).all(|w| w[1] > w[0]),
            "hls.js, live through the edge across the origin restart: {t:?}"
        );
        println!("hls.js, live through the edge across the origin restart: played {played:.1} s, still playing");
    }

    // The archive across the restart: the gap is marked, and timestamps go on.
    let (from, to) = (r[0].0, r[1].0 + r[1].1);
    let m3u8 = format!("/main/archive-{from}-{}.m3u8", to - from);
    let ts = format!("/main/archive-{from}-{}.ts", to - from);
    let (s, p) = origin.get(&m3u8);
    assert_eq!(s, 200, "{m3u8}: {p}");
    assert!(
        p.contains("#EXT-X-DISCONTINUITY"),
        "{m3u8} does not mark the restart:\n{p}"
    );
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-rw_timeout",
        FFMPEG_RW_TIMEOUT_US,
        "-select_streams",
        "v",
    ])
    .args([
        "-show_entries",
        "packet=dts",
        "-of",
        "csv=p=0",
        &origin.url(&ts),
    ]);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(60));
    let dts: Vec<i64> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    assert!(dts.len() > 100, "{ts}: {} video packets", dts.len());
    let back = dts.windows(2).position(|w| w[1] <= w[0]);
    assert!(
        back.is_none(),
        "{ts}: video DTS goes back at packet {:?} ({:?}): the timeline restarted",
        back,
        back.map(|i| (dts[i], dts[i + 1]))
    );
    let span_s = (dts[dts.len() - 1] - dts[0]) as f64 / 90_000.0;
    println!(
        "{ts}: {} video packets, DTS rising over {span_s:.1} s across the restart",
        dts.len()
    );
    let frames = decode_all_frames(&origin.url(&m3u8), Duration::from_secs(60));
    println!(
        "{m3u8}: ffmpeg -xerror decoded {} frames across the restart",
        frames.len()
    );
    if have_browser {
        // Seek to 2 s before the restart and watch hls.js play across it.
        let seek = r[0].1 as f64 - 2.0;
        let mut p = hls_js(&origin.url("/"), &m3u8, 8, Some(seek));
        let t = watched(&mut p, "hls.js archive");
        let last = t.last().copied().unwrap_or(0.0);
        assert!(
            last >= seek + 4.0,
            "hls.js stopped at {last:.1} s of {m3u8}, seeking to {seek:.1} s, 2 s before the restart: {t:?}"
        );
        println!("hls.js {m3u8}: from {seek:.1} s across the restart to {last:.1} s");
    }
    if have_mpv {
        for path in [&m3u8, &ts] {
            let mut p = mpv(&origin.url(path), &["--untimed"], Duration::from_secs(60));
            let out = String::from_utf8_lossy(&p.read_all()).into_owned();
            let (_, err) = p.finish();
            let pos = mpv_positions(&format!("{out}{err}"));
            assert!(
                pos >= span_s - 2.0,
                "mpv stopped at {pos:.1} s of {path}, which spans {span_s:.1} s across the restart"
            );
            println!("mpv {path}: played to {pos:.1} s of {span_s:.1} s");
        }
    }
}
