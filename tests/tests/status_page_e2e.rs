//! The status page at `/` in headless Chromium (driven over the DevTools protocol by
//! tests/tools/browser_check.py): behind `view_auth`, it lists the streams, plays one
//! live with the vendored hls.js (the video's time advances) and plays its archive
//! from a click on the DVR timeline. Also checks the hls.js asset's answer with curl
//! (gzip, immutable caching, the very bytes of node/assets/).

use std::process::Command;
use std::time::Duration;

use tern_node::assets::HLS_JS_PATH;
use tern_tests::{curl, poll_until, require_check, require_tool, run_ok, Node, TempDir};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/browser_check.py");
const HLS_JS: &[u8] = include_bytes!("../../node/assets/hls.light.min.js");

#[test]
fn status_page_plays_live_and_archive_in_chromium() {
    if !require_tool("curl")
        || !require_check(
            "headless Chromium with python3-websocket",
            Command::new("/usr/bin/python3").args([BROWSER, "--check"]),
            "chromium python3-websocket",
        )
    {
        return;
    }
    let dvr = TempDir::new("status-page");
    let node = Node::start(
        TERN,
        &format!(
            "view_auth ops pw;\nsegment_duration 1;\n\
             stream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n\
             stream other {{\n  input fake://fake;\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    // Ten seconds of archive, so a click at a fifth of the timeline lands in it.
    node.wait_playlist("main", 3, Duration::from_secs(20));
    poll_until(Duration::from_secs(30), || {
        let a = curl(&[], &node.url("/main/recording_status.json"));
        let rec: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
        (rec["ranges"][0]["duration"].as_u64()? >= 10).then_some(())
    })
    .expect("ten seconds recorded");

    // The page is behind view_auth; the asset and the players are not.
    assert_eq!(curl(&[], &node.url("/")).status, 401);
    let page = curl(&["-u", "ops:pw"], &node.url("/"));
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("data-name=\"main\""), "{html}");
    assert!(html.contains(&format!("<script src=\"{HLS_JS_PATH}\">")));
    let js = curl(&["--compressed"], &node.url(HLS_JS_PATH));
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding"), "gzip");
    assert!(js.header("cache-control").contains("immutable"));
    assert!(js.header("content-type").starts_with("text/javascript"));
    assert!(
        js.body == HLS_JS,
        "the asset is node/assets/hls.light.min.js"
    );

    let (out, _) = run_ok(
        Command::new("/usr/bin/python3").args([BROWSER, &node.url("/"), "main", "ops:pw"]),
        Duration::from_secs(150),
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("browser_check output: {e}"));
    println!("browser saw: {seen}");
    assert_eq!(seen["mse_h264"], true, "Chromium plays H.264 through MSE");
    let rows: Vec<&str> = seen["rows"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(rows, ["main", "other"]);
    assert_eq!(seen["live_url"], "/main/index.m3u8");
    let moved = |what: &str| {
        let t = &seen[format!("{what}_time")];
        t[1].as_f64().unwrap_or(0.0) - t[0].as_f64().unwrap_or(0.0)
    };
    assert!(moved("live") >= 3.0, "live played 3 s: {seen}");

    // The archive click asked for a window inside what was recorded.
    let url = seen["archive_url"].as_str().unwrap_or_default();
    let window = url
        .strip_prefix("/main/index-")
        .and_then(|r| r.strip_suffix(".m3u8"))
        .and_then(|r| r.split_once('-'))
        .and_then(|(f, d)| Some((f.parse::<u64>().ok()?, d.parse::<u64>().ok()?)));
    let Some((from, duration)) = window else {
        panic!("archive URL {url:?} is not /main/index-FROM-DURATION.m3u8");
    };
    let status = curl(&[], &node.url("/main/recording_status.json"));
    let rec: serde_json::Value = serde_json::from_slice(&status.body).unwrap_or_default();
    let start = rec["ranges"][0]["from"].as_u64().unwrap_or(u64::MAX);
    assert!(from >= start, "archive from {from}, recording from {start}");
    assert!((1..=3600).contains(&duration), "{duration}");
    assert!(moved("archive") >= 3.0, "archive played 3 s: {seen}");

    let console: Vec<&str> = seen["console"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        !console.iter().any(|l| l.starts_with("exception")),
        "script exceptions: {console:?}"
    );
}
