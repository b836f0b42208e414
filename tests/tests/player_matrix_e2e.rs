//! The player matrix: every Flussonic URL form of the README's URL table against
//! every real player we test with: ffmpeg, GStreamer (`uridecodebin`), mpv, VLC and
//! hls.js in headless Chromium (the status page's player). Each cell plays the form
//! and reads the `fake://` barcode of the decoded frames back: at least
//! [`MIN_FRAMES`] frames, their indices rising (and consecutive for the players that
//! hand every decoded frame out), and for the forms that start at FROM, a first frame
//! captured at or after FROM. hls.js cells check that the video's time moves on by
//! 2 s (the browser does not hand frames out).
//!
//! Prints the matrix; fails listing every cell that did not play.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tern_tests::{
    capture_utc_ms, read_barcode, require_check, require_tool, run_ok, spawn_thread, utc_now_ms,
    Node, Proc, TempDir, FRAME_BYTES,
};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/browser_check.py");
/// Frames a cell must decode (1 s of the 25 fps fake stream)...
const MIN_FRAMES: usize = 25;
/// ... except VLC, whose dummy output may drop a late picture or show one twice:
/// 10 different ones, rising.
const MIN_FRAMES_VLC: usize = 10;
/// How long one player may take on one form (live forms are cut after it).
const CELL_TIMEOUT: Duration = Duration::from_secs(20);

/// One URL form.
struct Form {
    /// The README's name of the form.
    name: &'static str,
    path: String,
    hls: bool,
    /// UTC ms the first frame must not precede (the archive start rule), when the
    /// form plays from a FROM.
    starts_at_ms: Option<u64>,
    /// For `timeshift_rel-N`: N, how far behind the moment the player started its
    /// first frame must be (within [`REL_SLACK_MS`]).
    behind_s: Option<u64>,
}

/// How far a `timeshift_rel-N` player's first frame may be from N seconds before it
/// started: a segment (1 s) either way, and the player's own start-up.
const REL_SLACK_MS: u64 = 3000;

/// The forms, with FROM a time inside the recording and a 6 s window.
fn forms(from: u64) -> Vec<Form> {
    let f = |name, path: String, hls, starts: bool| Form {
        name,
        behind_s: path.contains("timeshift_rel-10").then_some(10),
        path,
        hls,
        starts_at_ms: starts.then_some(from * 1000),
    };
    vec![
        f(
            "index.m3u8 (live master)",
            "/main/index.m3u8".into(),
            true,
            false,
        ),
        f("video.m3u8", "/main/video.m3u8".into(), true, false),
        f("playlist.m3u8", "/main/playlist.m3u8".into(), true, false),
        f(
            "mono.m3u8 (live media)",
            "/main/mono.m3u8".into(),
            true,
            false,
        ),
        f(
            "tracks-v1a1/mono.m3u8",
            "/main/tracks-v1a1/mono.m3u8".into(),
            true,
            false,
        ),
        f("mpegts (live)", "/main/mpegts".into(), false, false),
        f(
            "index-F-D.m3u8",
            format!("/main/index-{from}-6.m3u8"),
            true,
            true,
        ),
        f(
            "video-F-D.m3u8",
            format!("/main/video-{from}-6.m3u8"),
            true,
            true,
        ),
        f(
            "archive-F-D.m3u8",
            format!("/main/archive-{from}-6.m3u8"),
            true,
            true,
        ),
        f(
            "mono-F-D.m3u8",
            format!("/main/mono-{from}-6.m3u8"),
            true,
            true,
        ),
        f(
            "index-F-now.m3u8",
            format!("/main/index-{from}-now.m3u8"),
            true,
            false,
        ),
        f(
            "archive-F-now.m3u8",
            format!("/main/archive-{from}-now.m3u8"),
            true,
            false,
        ),
        f(
            "archive-F-D.ts",
            format!("/main/archive-{from}-6.ts"),
            false,
            true,
        ),
        f(
            "archive-F-now.ts",
            format!("/main/archive-{from}-now.ts"),
            false,
            true,
        ),
        f(
            "timeshift_abs-F.ts",
            format!("/main/timeshift_abs-{from}.ts"),
            false,
            true,
        ),
        f(
            "timeshift_rel-N.ts",
            "/main/timeshift_rel-10.ts".into(),
            false,
            false,
        ),
        f(
            "mpegts?utc=F&lutc=T",
            format!("/main/mpegts?utc={from}&lutc={}", from + 10),
            false,
            true,
        ),
        f(
            "timeshift_abs-F.m3u8",
            format!("/main/timeshift_abs-{from}.m3u8"),
            true,
            true,
        ),
        f(
            "timeshift_rel-N.m3u8",
            "/main/timeshift_rel-10.m3u8".into(),
            true,
            false,
        ),
        f(
            "index.m3u8?utc=F",
            format!("/main/index.m3u8?utc={from}"),
            true,
            true,
        ),
    ]
}

/// The players that hand out frames.
#[derive(Clone, Copy, Debug)]
enum Player {
    Ffmpeg,
    Gstreamer,
    Mpv,
    Vlc,
}

impl Player {
    fn name(self) -> &'static str {
        match self {
            Player::Ffmpeg => "ffmpeg",
            Player::Gstreamer => "GStreamer",
            Player::Mpv => "mpv",
            Player::Vlc => "VLC",
        }
    }
}

/// Gray 320×240 planes of the PNG pictures in `dir`, in name order (VLC's scene
/// filter writes its decoder's padded surface, 320×258: the picture is its top).
fn planes_of_pictures(dir: &Path) -> Vec<Vec<u8>> {
    // Only pictures count: VLC also makes its config and cache directories here
    // (its HOME), and ffmpeg's glob fails on a directory without a PNG.
    let any = std::fs::read_dir(dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png")))
    });
    if !any {
        return Vec::new();
    }
    let pattern = dir.join("*.png");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-pattern_type", "glob", "-i"])
        .arg(&pattern)
        .args([
            "-vf",
            "crop=320:240:0:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "pipe:1",
        ]);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(30));
    out.chunks_exact(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// Reads `n` gray frames from the stdout of `cmd` (or what it gives before it ends
/// or [`CELL_TIMEOUT`]), then stops it; the frames and its stderr.
fn read_frames(cmd: &mut Command, n: usize) -> (Vec<Vec<u8>>, String) {
    let mut p = Proc::spawn(cmd, CELL_TIMEOUT + Duration::from_secs(10));
    let mut frames = Vec::new();
    while frames.len() < n {
        let mut f = vec![0u8; FRAME_BYTES];
        if p.stdout().read_exact(&mut f).is_err() {
            break;
        }
        frames.push(f);
    }
    let (_, err) = p.kill();
    (frames, err)
}

/// Runs `cmd` to its end or [`CELL_TIMEOUT`]; its stdout and stderr.
fn run(cmd: &mut Command) -> (Vec<u8>, String) {
    let mut p = Proc::spawn(cmd, CELL_TIMEOUT + Duration::from_secs(10));
    let out = p.read_all();
    let (_, err) = p.finish();
    (out, err)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The decoded frames of `url` with `player`, as gray planes, or what went wrong.
fn play(player: Player, url: &str, scratch: &Path) -> Result<Vec<Vec<u8>>, String> {
    let limit = format!("{}", CELL_TIMEOUT.as_secs());
    let dir = scratch.join(format!("{}-{}", player.name(), utc_now_ms()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (planes, err) = match player {
        Player::Ffmpeg => read_frames(
            Command::new("timeout")
                .args([&limit, "ffmpeg", "-nostdin", "-hide_banner"])
                .args(["-loglevel", "error", "-rw_timeout", "5000000", "-i", url])
                .args(["-an", "-fps_mode", "passthrough", "-f", "rawvideo"])
                .args(["-pix_fmt", "gray", "pipe:1"]),
            MIN_FRAMES,
        ),
        // uridecodebin picks hlsdemux or tsdemux itself; only the video is kept.
        Player::Gstreamer => read_frames(
            Command::new("timeout")
                .args([&limit, "gst-launch-1.0", "-q", "uridecodebin"])
                .arg(format!("uri={url}"))
                .args(["caps=video/x-raw", "!", "videoconvert", "!"])
                .args(["video/x-raw,format=GRAY8", "!", "fdsink", "fd=1"]),
            MIN_FRAMES,
        ),
        Player::Mpv => {
            let (_, err) = run(Command::new("timeout")
                .args([&limit, "mpv", "--no-config", "--really-quiet", "--ao=null"])
                .args(["--vo=image", "--vo-image-format=png"])
                .arg(format!("--vo-image-outdir={}", dir.display()))
                .arg(format!("--frames={MIN_FRAMES}"))
                .arg(url));
            (planes_of_pictures(&dir), err)
        }
        Player::Vlc => {
            // VLC refuses to run as root: as root, run it as nobody.
            let mut cmd = Command::new("timeout");
            cmd.arg(&limit);
            if is_root() {
                let _ = Command::new("chmod").arg("777").arg(&dir).status();
                cmd.args([
                    "setpriv",
                    "--reuid=nobody",
                    "--regid=nogroup",
                    "--clear-groups",
                ]);
            }
            cmd.arg("env")
                .arg(format!("HOME={}", dir.display()))
                .args(["cvlc", "-q", "--play-and-exit", "--run-time=4"])
                .args(["--vout=dummy", "--aout=dummy", "--video-filter=scene"])
                .args(["--scene-ratio=1", "--scene-format=png", "--scene-prefix=f"])
                .arg(format!("--scene-path={}", dir.display()))
                .arg(url);
            let (_, err) = run(&mut cmd);
            (planes_of_pictures(&dir), err)
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    if planes.is_empty() {
        let err: String = err.chars().take(400).collect();
        return Err(format!("no frame decoded: {err}"));
    }
    Ok(planes)
}

/// Checks one cell's frames; the figure printed in the matrix, or why it failed.
fn check(
    player: Player,
    form: &Form,
    planes: &[Vec<u8>],
    started_ms: u64,
) -> Result<String, String> {
    let min = match player {
        Player::Vlc => MIN_FRAMES_VLC,
        _ => MIN_FRAMES,
    };
    let mut codes: Vec<(u64, u32)> = planes.iter().map(|p| read_barcode(p)).collect();
    if matches!(player, Player::Vlc) {
        // VLC shows its first picture again while it fills its buffer: one picture
        // shown several times is one frame.
        codes.dedup_by_key(|c| c.0);
    }
    if codes.len() < min {
        return Err(format!("{} frames, want {min}", codes.len()));
    }
    codes.truncate(MIN_FRAMES);
    let consecutive = !matches!(player, Player::Vlc);
    for w in codes.windows(2) {
        let bad = if consecutive {
            w[1].0 != w[0].0 + 1
        } else {
            w[1].0 <= w[0].0
        };
        if bad {
            let idx: Vec<u64> = codes.iter().map(|c| c.0).collect();
            return Err(format!("barcode indices out of order: {idx:?}"));
        }
    }
    let first_ms = capture_utc_ms(codes[0].1, utc_now_ms());
    if let Some(from_ms) = form.starts_at_ms {
        if first_ms < from_ms {
            return Err(format!("starts {} ms before FROM", from_ms - first_ms));
        }
        return Ok(format!(
            "ok {} fr, +{:.1} s",
            planes.len(),
            (first_ms - from_ms) as f64 / 1000.0
        ));
    }
    if let Some(n) = form.behind_s {
        let want = started_ms.saturating_sub(n * 1000);
        if first_ms.abs_diff(want) > REL_SLACK_MS {
            return Err(format!(
                "first frame {} ms behind the start, want {n} s",
                started_ms as i64 - first_ms as i64
            ));
        }
        return Ok(format!(
            "ok {} fr, −{:.1} s",
            planes.len(),
            started_ms.saturating_sub(first_ms) as f64 / 1000.0
        ));
    }
    Ok(format!("ok {} fr", planes.len()))
}

#[test]
fn every_url_form_plays_in_every_player() {
    let players = [Player::Ffmpeg, Player::Gstreamer, Player::Mpv, Player::Vlc];
    if !require_tool("ffmpeg")
        || !require_check(
            "GStreamer (gst-launch-1.0 with hlsdemux)",
            Command::new("gst-inspect-1.0").arg("hlsdemux"),
            "gstreamer1.0-tools gstreamer1.0-plugins-bad",
        )
        || !require_check("mpv", Command::new("mpv").arg("--version"), "mpv")
        || !require_check(
            "VLC (cvlc refuses --version as root: only its presence is checked)",
            Command::new("sh").args(["-c", "command -v cvlc"]),
            "vlc-bin vlc-plugin-base",
        )
        || !require_check(
            "headless Chromium with python3-websocket",
            Command::new("/usr/bin/python3").args([BROWSER, "--check"]),
            "chromium python3-websocket",
        )
    {
        return;
    }
    let dvr = TempDir::new("player-matrix");
    let node = Node::start(
        TERN,
        &format!(
            "segment_duration 1;\nstream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    node.wait_playlist("main", 3, Duration::from_secs(20));
    // FROM: 3 s into a recording at least 14 s long, so a 6 s window is closed.
    let start = tern_tests::poll_until(Duration::from_secs(30), || {
        let a = tern_tests::curl(&[], &node.url("/main/recording_status.json"));
        let rec: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
        let r = &rec["ranges"][0];
        (r["duration"].as_u64()? >= 14).then(|| r["from"].as_u64())?
    })
    .expect("14 s recorded");
    let from = start + 3;
    let forms = Arc::new(forms(from));

    // hls.js in Chromium, beside the other players.
    let hls_urls: Vec<String> = forms
        .iter()
        .filter(|f| f.hls)
        .map(|f| f.path.clone())
        .collect();
    let page = node.url("/");
    let browser = spawn_thread(move || {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args([BROWSER, "--matrix", &page]).args(&hls_urls);
        let (out, _) = run_ok(&mut cmd, Duration::from_secs(600));
        serde_json::from_slice::<serde_json::Value>(&out).unwrap_or_default()
    });
    let scratch = Arc::new(dvr.path().join("frames"));
    let base = node.url("");
    let threads: Vec<_> = players
        .iter()
        .map(|&p| {
            let (forms, scratch, base) = (forms.clone(), scratch.clone(), base.clone());
            spawn_thread(move || {
                forms
                    .iter()
                    .map(|f| {
                        let url = format!("{}{}", base.trim_end_matches('/'), f.path);
                        let started_ms = utc_now_ms();
                        play(p, &url, &scratch).and_then(|planes| check(p, f, &planes, started_ms))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<Result<String, String>>> = threads
        .into_iter()
        .map(|t| t.join().expect("player thread"))
        .collect();
    let hls = browser.join().expect("browser thread");

    let mut failed = Vec::new();
    println!(
        "\n| form | {} | hls.js |\n|---|---|---|---|---|---|",
        players.map(Player::name).join(" | ")
    );
    for (i, f) in forms.iter().enumerate() {
        let mut row = format!("| `{}` |", f.name);
        for (p, r) in players.iter().zip(&results) {
            match &r[i] {
                Ok(s) => row.push_str(&format!(" {s} |")),
                Err(e) => {
                    row.push_str(" FAIL |");
                    failed.push(format!("{} / {}: {e}", f.name, p.name()));
                }
            }
        }
        if f.hls {
            let cell = &hls[&f.path];
            let moved = cell["advanced"].as_f64().unwrap_or(0.0);
            if moved >= 2.0 {
                row.push_str(&format!(" ok {moved:.1} s |"));
            } else {
                row.push_str(" FAIL |");
                failed.push(format!("{} / hls.js: {cell}", f.name));
            }
        } else {
            row.push_str(" (not HLS) |");
        }
        println!("{row}");
    }
    assert!(
        failed.is_empty(),
        "cells that did not play:\n{}",
        failed.join("\n")
    );
}
