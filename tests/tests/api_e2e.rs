//! The operator's API with real clients: `view_auth` / `edit_auth` with curl's HTTP
//! Basic and Bearer (players stay open: ffprobe plays without credentials),
//! `select=`, the stats fields (`online_clients` counting an HLS player and an
//! MPEG-TS viewer, `bytes_in` / `bytes_out`, `opened_at`, `ts_delay`, `dvr_enabled` /
//! `dvr_info`, track `bitrate` / `profile` / `level`) and the status values
//! (`starting`, then `waiting` for a stream whose source sends nothing).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tern_tests::{
    curl, free_port, poll_until, require_tool, run_ok, utc_now_ms, Node, TempDir,
    FFMPEG_RW_TIMEOUT_US,
};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn api_auth_select_and_stats() {
    if !require_tool("curl") || !require_tool("ffprobe") {
        return;
    }
    let dvr = TempDir::new("api");
    let silent_port = free_port();
    let node = Node::start(
        TERN,
        &format!(
            "view_auth viewer \"v pass\";\nedit_auth admin e-pass;\nsegment_duration 1;\n\
             stream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n\
             stream silent {{\n  input udp://127.0.0.1:{silent_port};\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    let api = node.url("/streamer/api/v3/streams");

    // A fresh stream whose source sends nothing is `starting`, then `waiting`.
    let early = curl(
        &["-u", "viewer:v pass"],
        &node.url("/streamer/api/v3/streams/silent"),
    );
    assert_eq!(early.status, 200);
    let early = json(&early.body);
    println!("silent stream at start: {}", early["stats"]["status"]);
    assert!(
        early["stats"]["status"] == "starting" || early["stats"]["status"] == "waiting",
        "{early}"
    );
    poll_until(Duration::from_secs(10), || {
        let a = curl(
            &["-u", "viewer:v pass"],
            &node.url("/streamer/api/v3/streams/silent"),
        );
        (json(&a.body)["stats"]["status"] == "waiting").then_some(())
    })
    .expect("the silent stream becomes `waiting`");

    // Auth: the API and `/` need credentials, players do not.
    let none = curl(&[], &api);
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").starts_with("Basic realm="));
    assert_eq!(curl(&[], &node.url("/")).status, 401);
    assert_eq!(curl(&["-u", "viewer:wrong"], &api).status, 401);
    assert_eq!(curl(&["-u", "admin:v pass"], &api).status, 401);
    assert_eq!(curl(&["-u", "viewer:v pass"], &api).status, 200);
    assert_eq!(curl(&["-u", "admin:e-pass"], &api).status, 200);
    assert_eq!(
        curl(&["-H", "Authorization: Bearer v pass"], &api).status,
        200
    );
    assert_eq!(
        curl(&["-H", "Authorization: Bearer e-pass"], &api).status,
        200
    );
    assert_eq!(
        curl(&["-H", "Authorization: Bearer nope"], &api).status,
        401
    );
    assert_eq!(curl(&["-u", "viewer:v pass"], &node.url("/")).status, 200);
    let del = curl(
        &["-u", "viewer:v pass", "-X", "DELETE"],
        &node.url("/streamer/api/v3/streams/main"),
    );
    assert_eq!(del.status, 403, "view credentials cannot change anything");
    let pre = curl(&["-X", "OPTIONS"], &api);
    assert_eq!(pre.status, 204, "a CORS preflight carries no credentials");
    println!(
        "auth: no credentials 401, wrong 401, view/edit Basic 200, Bearer 200, view DELETE 403"
    );

    node.wait_playlist("main", 3, Duration::from_secs(20));
    // Players stay open.
    let mut probe = Command::new("ffprobe");
    probe
        .args(["-v", "error", "-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        .args(["-show_entries", "stream=codec_type", "-of", "csv=p=0"])
        .arg(node.url("/main/index.m3u8"));
    let (out, _) = run_ok(&mut probe, Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&out).contains("video"));
    let rs = curl(&[], &node.url("/main/recording_status.json"));
    assert_eq!(rs.status, 200, "recording_status.json is a player URL");

    // An MPEG-TS viewer, held open while the stats are read.
    let mut viewer =
        TcpStream::connect(("127.0.0.1", node.port())).expect("connect for /main/mpegts");
    write!(
        viewer,
        "GET /main/mpegts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut buf = vec![0u8; 64 * 1024];
    viewer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = viewer.read(&mut buf).expect("MPEG-TS bytes");
    assert!(n > 0);

    let stats = poll_until(Duration::from_secs(5), || {
        let a = curl(
            &["-u", "viewer:v pass"],
            &node.url("/streamer/api/v3/streams/main"),
        );
        let v = json(&a.body);
        (v["stats"]["online_clients"].as_u64() >= Some(2)).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "online_clients did not count the HLS player and the MPEG-TS viewer: {}",
            String::from_utf8_lossy(
                &curl(
                    &["-u", "viewer:v pass"],
                    &node.url("/streamer/api/v3/streams/main")
                )
                .body
            )
        )
    });
    let s = &stats["stats"];
    println!("stats of main: {s}");
    assert_eq!(s["status"], "running");
    assert_eq!(s["alive"], true);
    assert!(s["bytes_in"].as_u64() > Some(10_000), "{s}");
    assert!(s["bytes_out"].as_u64() > Some(10_000), "{s}");
    let opened = s["opened_at"].as_u64().unwrap_or(0);
    assert!(
        opened <= utc_now_ms() && opened + 120_000 > utc_now_ms(),
        "{s}"
    );
    assert!(s["ts_delay"].as_u64() < Some(3000), "{s}");
    assert_eq!(s["dvr_enabled"], true);
    assert!(s["dvr_info"]["segments"].as_u64() >= Some(1), "{s}");
    assert!(s["dvr_info"]["from"].as_u64().is_some(), "{s}");
    let tracks = s["media_info"]["tracks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tracks.len(), 2, "{s}");
    for t in &tracks {
        assert!(t["bitrate"].as_u64() > Some(0), "{t}");
        assert!(t["profile"].is_string(), "{t}");
    }
    assert!(tracks[0]["level"].is_string(), "{}", tracks[0]);
    assert_eq!(tracks[1]["profile"], "LC");
    drop(viewer);

    // select=
    let sel = curl(
        &["-u", "viewer:v pass"],
        &format!("{api}?select=name,stats.status,stats.dvr_info.segments"),
    );
    assert_eq!(sel.status, 200);
    let sel = json(&sel.body);
    let main = sel["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "main"))
        .cloned()
        .unwrap_or_default();
    let keys: Vec<&String> = main
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["name", "stats"], "{sel}");
    let stat_keys: Vec<&String> = main["stats"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(stat_keys, ["dvr_info", "status"], "{sel}");
    assert!(main["stats"]["dvr_info"]["segments"].is_u64());
    assert_eq!(
        curl(&["-u", "viewer:v pass"], &format!("{api}?select=a..b")).status,
        400
    );
    println!("select=name,stats.status,stats.dvr_info.segments: {main}");
}
