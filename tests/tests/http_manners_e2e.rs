//! HTTP manners with real clients (curl, ffmpeg): the CORS preflight and the
//! `Access-Control-Allow-Origin` of normal answers, `Cache-Control` of live
//! playlists, segments and closed archive playlists, `Range` on `seg-…` and `dvr-…`
//! (206, 416, ffmpeg reading a segment through ranges), `ETag` / `Last-Modified` and
//! `304`, gzip of playlists and JSON, and the HTML page at `/`.

use std::process::Command;
use std::time::Duration;

use tern_tests::{curl, poll_until, require_tool, run_ok, Node, TempDir, FFMPEG_RW_TIMEOUT_US};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");

fn uris(playlist: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(playlist)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn http_manners_with_curl_and_ffmpeg() {
    if !require_tool("curl") || !require_tool("ffmpeg") {
        return;
    }
    let dvr = TempDir::new("http-manners");
    let node = Node::start(
        TERN,
        &format!(
            "segment_duration 1;\nstream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    node.wait_playlist("main", 3, Duration::from_secs(20));

    // CORS preflight, as a browser sends it before a ranged or authorised request.
    let pre = curl(
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: http://player.example",
            "-H",
            "Access-Control-Request-Method: GET",
            "-H",
            "Access-Control-Request-Headers: range, authorization",
        ],
        &node.url("/main/index.m3u8"),
    );
    assert_eq!(pre.status, 204, "{:?}", pre.headers);
    assert_eq!(pre.header("access-control-allow-origin"), "*");
    assert!(pre.header("access-control-allow-methods").contains("GET"));
    let allowed = pre
        .header("access-control-allow-headers")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("range") && allowed.contains("authorization"),
        "{allowed}"
    );
    assert!(pre.header("access-control-max-age").parse::<u32>().is_ok());
    println!("OPTIONS: 204 {:?}", pre.headers);

    // Live playlists: short cache, CORS, gzip when asked for.
    let live = curl(&[], &node.url("/main/mono.m3u8"));
    assert_eq!(live.status, 200);
    assert_eq!(live.header("cache-control"), "public, max-age=1");
    assert_eq!(live.header("access-control-allow-origin"), "*");
    assert_eq!(live.header("content-encoding"), "");
    let master = curl(&["--compressed"], &node.url("/main/index.m3u8"));
    assert_eq!(master.status, 200);
    assert_eq!(master.header("content-encoding"), "gzip");
    assert_eq!(master.header("vary"), "Accept-Encoding");
    assert_eq!(uris(&master.body), ["tracks-v1a1/mono.m3u8"]);
    println!(
        "live master with --compressed: {} bytes gzip, decoded {} bytes",
        master.header("content-length"),
        master.body.len()
    );
    // ffmpeg plays the live HLS as before.
    let mut probe = Command::new("ffprobe");
    probe
        .args(["-v", "error", "-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        .args(["-show_entries", "stream=codec_type", "-of", "csv=p=0"])
        .arg(node.url("/main/index.m3u8"));
    let (out, _) = run_ok(&mut probe, Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&out).contains("video"));

    // JSON gzip.
    let api = curl(&["--compressed"], &node.url("/streamer/api/v3/streams"));
    assert_eq!(api.status, 200);
    assert_eq!(api.header("content-encoding"), "gzip");
    assert_eq!(api.header("cache-control"), "no-cache");
    let v: serde_json::Value = serde_json::from_slice(&api.body).expect("gzip JSON decodes");
    assert_eq!(v["streams"][0]["name"], "main");

    // A live segment: immutable, ranges, ETag and Last-Modified, 304.
    let seg_uri = uris(&live.body).into_iter().next().expect("a live segment");
    let seg_url = node.url(&format!("/main/{seg_uri}"));
    let seg = curl(&["--compressed"], &seg_url);
    assert_eq!(seg.status, 200);
    assert_eq!(
        seg.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(seg.header("accept-ranges"), "bytes");
    assert_eq!(
        seg.header("content-encoding"),
        "",
        "segments are not gzipped"
    );
    let etag = seg.header("etag").to_owned();
    let last_modified = seg.header("last-modified").to_owned();
    assert!(etag.starts_with('"') && last_modified.ends_with(" GMT"));
    let part = curl(&["-r", "188-375"], &seg_url);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 188-375/{}", seg.body.len())
    );
    assert_eq!(part.body, seg.body[188..376]);
    assert_eq!(part.body[0], 0x47, "a TS packet starts at byte 188");
    let past = curl(&["-r", &format!("{}-", seg.body.len())], &seg_url);
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        format!("bytes */{}", seg.body.len())
    );
    let again = curl(&["-H", &format!("If-None-Match: {etag}")], &seg_url);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let since = curl(
        &["-H", &format!("If-Modified-Since: {last_modified}")],
        &seg_url,
    );
    assert_eq!(since.status, 304);
    println!(
        "live segment {seg_uri}: {} bytes, ETag {etag}, Last-Modified {last_modified}; \
         range 188-375 -> 206, past the end -> 416, If-None-Match / If-Modified-Since -> 304",
        seg.body.len()
    );

    // A closed archive window: long cache, Last-Modified; its dvr- segments take
    // ranges, and ffmpeg reads one through them (it asks `Range: bytes=0-`).
    let first_s = poll_until(Duration::from_secs(10), || {
        let (s, b) = node.get("/main/recording_status.json");
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        (s == 200).then(|| v["from"].as_u64()).flatten()
    })
    .expect("recording_status.json names where the archive starts");
    let vod_path = format!("/main/archive-{}-3.m3u8", first_s + 1);
    let vod = poll_until(Duration::from_secs(20), || {
        let a = curl(&["--compressed"], &node.url(&vod_path));
        (a.status == 200 && String::from_utf8_lossy(&a.body).contains("#EXT-X-ENDLIST"))
            .then_some(a)
    })
    .unwrap_or_else(|| panic!("{vod_path} did not close within 20 s"));
    assert_eq!(vod.header("cache-control"), "public, max-age=86400");
    assert_eq!(vod.header("content-encoding"), "gzip");
    assert!(vod.header("last-modified").ends_with(" GMT"));
    let growing = curl(&[], &node.url(&format!("/main/archive-{first_s}-now.m3u8")));
    assert_eq!(growing.status, 200);
    assert_eq!(growing.header("cache-control"), "public, max-age=1");
    let dvr_uri = uris(&vod.body).into_iter().next().expect("a dvr segment");
    let dvr_url = node.url(&format!("/main/{dvr_uri}"));
    let whole = curl(&[], &dvr_url);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), "bytes");
    let tail = curl(&["-r", "-188"], &dvr_url);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, whole.body[whole.body.len() - 188..]);
    let mut ff = Command::new("ffmpeg");
    ff.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-seekable", "1", "-i", &dvr_url])
        .args(["-map", "0:v", "-c", "copy", "-f", "null", "-"]);
    let (_, stderr) = run_ok(&mut ff, Duration::from_secs(30));
    println!(
        "archive {vod_path}: {}; {dvr_uri}: {} bytes, suffix range -> 206, ffmpeg -seekable 1 read it{}",
        vod.header("cache-control"),
        whole.body.len(),
        if stderr.is_empty() { "" } else { " (with messages)" }
    );

    // `/` is a page, not a plain-text error.
    let page = curl(&["--compressed"], &node.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("<table") && html.contains("main"), "{html}");
}
