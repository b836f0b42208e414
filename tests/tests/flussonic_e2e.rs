//! Every Flussonic URL form of the README's URL table, played with ffmpeg (and its
//! text checked where the form is about the playlist): live master and media
//! playlists and track variants, archive master/media playlists of fixed, `-now`
//! and still-open windows, the archive start rule, timeshift and `?utc=` catch-up
//! in MPEG-TS and HLS, and the 400/404 answers for bad and unknown forms.
//!
//! One recording origin with 1 s segments serves all checks; they run one after the
//! other on it (the archive grows meanwhile, which the `-now` checks want).

use std::process::Command;
use std::time::Duration;

use tern_tests::{
    assert_consecutive, capture_utc_ms, decode_all_frames, decode_frames, read_barcode,
    require_tool, run_ok, utc_now_ms, Node, TempDir, FFMPEG_RW_TIMEOUT_US, FRAME_BYTES,
};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");

/// `segment_duration 1;` on the origin.
const SEGMENT_MS: u64 = 1000;
/// Frames decoded from a live or endless form (2 s of 25 fps).
const FRAMES: usize = 50;

fn origin(dvr: &TempDir) -> Node {
    Node::start(
        TERN,
        &format!(
            "segment_duration 1;\nstream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n",
            dvr.path().join("dvr").display()
        ),
    )
}

/// Decodes the first `n` video frames of `url` with extra input options (before
/// `-i`), like `tern_tests::decode_frames`.
fn decode_with(url: &str, input_opts: &[&str], n: usize) -> Vec<Vec<u8>> {
    let frames = n.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-xerror", "-loglevel", "error"])
        .args(input_opts)
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
        .args(["-an", "-frames:v", &frames, "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
    let (out, stderr) = run_ok(&mut cmd, Duration::from_secs(30));
    assert!(
        out.len() == n * FRAME_BYTES,
        "ffmpeg gave {} bytes from {url}, expected {n} frames; stderr:\n{stderr}",
        out.len()
    );
    out.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// Capture times (UTC ms) of decoded frames, checking their barcodes run on by one.
fn captures(what: &str, frames: &[Vec<u8>]) -> Vec<u64> {
    assert_consecutive(what, frames);
    let near = utc_now_ms();
    frames
        .iter()
        .map(|f| capture_utc_ms(read_barcode(f).1, near))
        .collect()
}

/// The first frame is the start of the first segment at or after `from_s`.
fn assert_starts_at(what: &str, caps: &[u64], from_s: u64) {
    let from_ms = from_s * 1000;
    assert!(
        caps[0] >= from_ms && caps[0] <= from_ms + SEGMENT_MS + 200,
        "{what}: the first frame was captured at {} UTC ms, expected the first segment \
         at or after FROM = {from_ms} (within one segment)",
        caps[0]
    );
}

fn get(node: &Node, path: &str) -> String {
    let (status, body) = node.get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The URI lines of a playlist.
fn uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// Streams ffprobe sees in `url`: codec types in stream order (ffprobe lists a
/// stream once per program it is in as well: each index counts once).
fn probe_streams(url: &str) -> String {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        .args([
            "-show_entries",
            "stream=index,codec_type",
            "-of",
            "csv=p=0",
            url,
        ]);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(30));
    let streams: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(i, t)| (i.to_string(), t.to_string()))
        .collect();
    streams.into_values().collect::<Vec<_>>().join(",")
}

#[test]
fn every_flussonic_url_form_plays() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dvr = TempDir::new("flussonic-forms");
    let node = origin(&dvr);
    node.wait_playlist("main", 3, Duration::from_secs(20));
    let first_s = loop {
        let (s, b) = node.get("/main/recording_status.json");
        if s == 200 {
            if let Some(f) = b
                .split("\"from\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                break f;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    // Live: the three master names are one master playlist with one variant.
    let master = get(&node, "/main/index.m3u8");
    for alias in ["/main/video.m3u8", "/main/playlist.m3u8"] {
        let other = get(&node, alias);
        assert_eq!(uris(&other), uris(&master), "{alias}:\n{other}");
    }
    let inf = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap_or_else(|| panic!("index.m3u8 is not a master playlist:\n{master}"));
    assert!(
        inf.contains("CODECS=\"avc1.42")
            && inf.contains(",mp4a.40.2\"")
            && inf.contains("RESOLUTION=320x240"),
        "{master}"
    );
    assert_eq!(uris(&master), ["tracks-v1a1/mono.m3u8"], "{master}");
    for path in [
        "/main/index.m3u8",
        "/main/video.m3u8",
        "/main/mono.m3u8",
        "/main/tracks-v1a1/mono.m3u8",
    ] {
        let caps = captures(path, &decode_frames(&node.url(path), FRAMES));
        println!("{path}: {} frames, consecutive barcodes", caps.len());
    }
    assert_eq!(probe_streams(&node.url("/main/index.m3u8")), "video,audio");
    assert_eq!(
        probe_streams(&node.url("/main/tracks-v1/mono.m3u8")),
        "video"
    );
    assert_eq!(
        probe_streams(&node.url("/main/tracks-a1/mono.m3u8")),
        "audio"
    );
    println!("live master: {inf}; tracks-v1 = video, tracks-a1 = audio");

    // Archive, a closed window: master (index-, video-) and media (archive-, mono-)
    // forms, all starting at the first segment at or after FROM.
    let from = first_s + 2;
    let dur = 4;
    // It is an EVENT playlist until the segment across its end is stored, then VOD.
    let vod_path = format!("/main/mono-{from}-{dur}.m3u8");
    let vod = tern_tests::poll_until(Duration::from_secs(20), || {
        let (s, b) = node.get(&vod_path);
        (s == 200 && b.contains("#EXT-X-ENDLIST")).then_some(b)
    })
    .unwrap_or_else(|| {
        panic!(
            "{vod_path} did not close within 20 s: {:?}",
            node.get(&vod_path)
        )
    });
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.contains("#EXT-X-ENDLIST"),
        "{vod}"
    );
    assert_eq!(vod, get(&node, &format!("/main/archive-{from}-{dur}.m3u8")));
    for form in ["index", "video"] {
        let m = get(&node, &format!("/main/{form}-{from}-{dur}.m3u8"));
        assert_eq!(
            uris(&m),
            [format!("tracks-v1a1/mono-{from}-{dur}.m3u8")],
            "{m}"
        );
    }
    for path in [
        format!("/main/index-{from}-{dur}.m3u8"),
        format!("/main/mono-{from}-{dur}.m3u8"),
        format!("/main/archive-{from}-{dur}.ts"),
    ] {
        let frames = decode_all_frames(&node.url(&path), Duration::from_secs(60));
        let caps = captures(&path, &frames);
        assert_starts_at(&path, &caps, from);
        assert!(
            *caps.last().unwrap_or(&0) + 200 >= (from + dur) * 1000,
            "{path}: ends at {:?}, before the window's end",
            caps.last()
        );
        println!("{path}: {} frames from {} UTC ms", frames.len(), caps[0]);
    }

    // `-now` and a fixed window reaching the present: EVENT playlists (no ENDLIST);
    // -now starts at the live edge, a fixed window at its start.
    let now_s = utc_now_ms() / 1000;
    let event = get(&node, &format!("/main/archive-{from}-now.m3u8"));
    assert!(
        event.contains("#EXT-X-PLAYLIST-TYPE:EVENT")
            && !event.contains("ENDLIST")
            && !event.contains("EXT-X-START"),
        "{event}"
    );
    let m = get(&node, &format!("/main/index-{from}-now.m3u8"));
    assert_eq!(
        uris(&m),
        [format!("tracks-v1a1/mono-{from}-now.m3u8")],
        "{m}"
    );
    let open = get(
        &node,
        &format!("/main/mono-{from}-{}.m3u8", now_s - from + 60),
    );
    assert!(
        open.contains("#EXT-X-PLAYLIST-TYPE:EVENT")
            && open.contains("#EXT-X-START:TIME-OFFSET=0")
            && !open.contains("ENDLIST"),
        "{open}"
    );
    let path = format!("/main/index-{from}-now.m3u8");
    let caps = captures(&path, &decode_frames(&node.url(&path), FRAMES));
    println!(
        "{path} (EVENT, from the live edge): {} frames from {} UTC ms",
        caps.len(),
        caps[0]
    );
    let path = format!("/main/mono-{from}-now.m3u8");
    let caps = captures(
        &path,
        &decode_with(&node.url(&path), &["-live_start_index", "0"], FRAMES),
    );
    assert_starts_at(&path, &caps, from);
    let path = format!("/main/archive-{from}-now.ts");
    let frames = decode_all_frames(&node.url(&path), Duration::from_secs(60));
    let caps = captures(&path, &frames);
    assert_starts_at(&path, &caps, from);
    println!("{path}: {} frames, ends", frames.len());

    // Timeshift and catch-up in MPEG-TS: endless, from FROM, paced.
    let now_s = utc_now_ms() / 1000;
    let back = now_s - from;
    for path in [
        format!("/main/timeshift_abs-{from}.ts"),
        format!("/main/timeshift_rel-{back}.ts"),
        format!("/main/mpegts?utc={from}&lutc={now_s}"),
    ] {
        let caps = captures(&path, &decode_frames(&node.url(&path), FRAMES));
        // timeshift_rel is resolved a moment after `back` was computed: allow 3 s.
        assert!(
            caps[0] >= from * 1000 && caps[0] <= (from + 3) * 1000,
            "{path}: first frame captured at {} UTC ms, FROM = {from} s",
            caps[0]
        );
        println!("{path}: {} frames from {} UTC ms", caps.len(), caps[0]);
    }

    // Timeshift and catch-up in HLS: a master whose variant is the paced EVENT
    // playlist of a viewer N s behind live (`?delay=N`): from FROM up to the viewer's
    // position and three segments more, so a player that starts near the end of a
    // growing playlist (ffmpeg by default) starts at FROM.
    for (path, want) in [
        (format!("/main/timeshift_abs-{from}.m3u8"), Some(from)),
        (format!("/main/timeshift_rel-{back}.m3u8"), None),
        (
            format!("/main/index.m3u8?utc={from}&lutc={now_s}"),
            Some(from),
        ),
    ] {
        let m = get(&node, &path);
        let variant = uris(&m).first().map(|s| s.to_string()).unwrap_or_default();
        let (f, delay): (u64, u64) = variant
            .strip_prefix("tracks-v1a1/mono-timeshift_abs-")
            .and_then(|r| r.split_once(".m3u8?delay="))
            .and_then(|(f, d)| Some((f.parse().ok()?, d.parse().ok()?)))
            .unwrap_or_else(|| panic!("{path}: no timeshift variant in\n{m}"));
        if let Some(w) = want {
            assert_eq!(f, w, "{path}:\n{m}");
        } else {
            assert!(
                f.abs_diff(from) <= 2,
                "{path}: variant starts at {f}, want ~{from}"
            );
        }
        assert!(
            delay.abs_diff(back) <= 2,
            "{path}: delay {delay}, want ~{back}"
        );
        let media = get(&node, &format!("/main/{variant}"));
        assert!(
            media.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !media.contains("ENDLIST"),
            "{media}"
        );
        assert!(
            uris(&media).len() <= 5,
            "{path}: the viewer is at FROM: three segments past it, not the whole archive:\n{media}"
        );
        let caps = captures(&path, &decode_with(&node.url(&path), &[], FRAMES));
        if want.is_some() {
            assert_starts_at(&path, &caps, f);
        } else {
            // ffmpeg asked for the master itself, a moment after this test did: its
            // FROM (now - N then) may be a second or two later.
            assert!(
                caps[0] >= f * 1000 && caps[0] <= (f + 3) * 1000,
                "{path}: first frame captured at {} UTC ms, FROM = {f} s or a little later",
                caps[0]
            );
        }
        println!(
            "{path} -> {variant}: {} frames from {} UTC ms",
            caps.len(),
            caps[0]
        );
    }

    // Bad values are 400s that say why; unknown forms are 404s.
    for path in [
        "/main/archive-01-60.m3u8",
        "/main/archive-1-0.m3u8",
        "/main/mpegts?utc=x",
        "/main/mpegts?utc=10&lutc=5",
        "/main/tracks-v0/mono.m3u8",
        "/main/tracks-v1/index.m3u8",
    ] {
        let (s, b) = node.get(path);
        assert_eq!(s, 400, "{path}: {b}");
    }
    for path in [
        "/main/index.mpd",
        "/main/preview.jpg",
        "/main/tracks-v2/mono.m3u8",
    ] {
        let (s, b) = node.get(path);
        assert_eq!(s, 404, "{path}: {b}");
    }
}
