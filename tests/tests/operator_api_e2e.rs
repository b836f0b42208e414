//! The operator's changes on a real node with curl: `PUT`/`DELETE
//! /streamer/api/v3/streams/NAME` under `edit_auth` (a created stream plays; bad
//! bodies get a 400 that says why; the state file keeps the changes across a
//! restart), and config reloads (`SIGHUP`, `POST /streamer/api/v3/config/reload`)
//! that add a stream while an MPEG-TS viewer of an unchanged stream keeps
//! receiving on the same connection, and keep everything running on a broken
//! config.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tern_tests::{curl, now, poll_until, require_tool, run_ok, Node};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const EDIT: &[&str] = &["-u", "admin:e-pass"];
const AUTH: &str = "view_auth viewer v-pass;\nedit_auth admin e-pass;\nsegment_duration 1;\n";

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// `PUT` of `body` to stream `name` with `auth` (curl arguments).
fn put(node: &Node, auth: &[&str], name: &str, body: &str) -> tern_tests::Answer {
    let mut args = auth.to_vec();
    args.extend([
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    ]);
    curl(
        &args,
        &node.url(&format!("/streamer/api/v3/streams/{name}")),
    )
}

fn get_stream(node: &Node, name: &str) -> u16 {
    curl(EDIT, &node.url(&format!("/streamer/api/v3/streams/{name}"))).status
}

/// Fetches the first segment of `name`'s live playlist: MPEG-TS bytes.
fn first_segment(node: &Node, name: &str) -> usize {
    let playlist = node.wait_playlist(name, 2, Duration::from_secs(20));
    let seg = playlist
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    let a = curl(&[], &node.url(&format!("/{name}/{seg}")));
    assert_eq!(a.status, 200, "segment {seg} of {name}");
    assert_eq!(a.body.first(), Some(&0x47), "an MPEG-TS segment");
    a.body.len()
}

#[test]
fn put_and_delete_persist_in_the_state_file() {
    if !require_tool("curl") {
        return;
    }
    let mut node = Node::start(
        TERN,
        &format!("{AUTH}stream keep {{ input fake://fake; }}\n"),
    );
    let body =
        r#"{"inputs": [{"url": "fake://fake?fps=30", "priority": 1}], "segment_duration": 1}"#;

    // Who may change: edit_auth only.
    let anon = put(&node, &[], "cam", body);
    assert_eq!(anon.status, 401, "no credentials");
    let viewer = put(&node, &["-u", "viewer:v-pass"], "cam", body);
    assert_eq!(viewer.status, 403, "view_auth cannot change");
    assert_eq!(
        get_stream(&node, "cam"),
        404,
        "refused PUTs changed nothing"
    );

    // Created: it plays.
    let created = put(&node, EDIT, "cam", body);
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let j = json(&created.body);
    assert_eq!(j["result"], "created");
    assert!(
        j["config"]
            .as_str()
            .unwrap_or_default()
            .contains("fake://fake?fps=30"),
        "{j}"
    );
    let bytes = first_segment(&node, "cam");
    println!("PUT cam: 201 created, first HLS segment {bytes} bytes");
    let again = put(&node, EDIT, "cam", body);
    assert_eq!(
        (again.status, json(&again.body)["result"].clone()),
        (200, "unchanged".into())
    );

    // Bad bodies: 400 with the reason, as the config parser gives it.
    let cases: [(&str, u16, &str); 7] = [
        (r#"{"inputs": [{"url": "ftp://x/y"}]}"#, 400, "ftp"),
        (r#"{"inputs": []}"#, 400, "has no `input`"),
        (
            r#"{"inputs": [{"url": "fake://fake"}], "segment_duration": 100}"#,
            400,
            "segment_duration",
        ),
        (
            r#"{"inputs": [{"url": "fake://fake"}], "colour": "red"}"#,
            400,
            "unknown field `colour`",
        ),
        (
            r#"{"inputs": [{"url": "fake://fake"}"#,
            400,
            "expected a stream as JSON",
        ),
        (
            r#"{"name": "other", "inputs": [{"url": "fake://fake"}]}"#,
            400,
            "names stream",
        ),
        (
            r#"{"inputs": [{"url": "publish://"}]}"#,
            400,
            "no `rtmp PORT;`",
        ),
    ];
    for (bad, status, says) in cases {
        let a = put(&node, EDIT, "bad", bad);
        let j = json(&a.body);
        assert_eq!(a.status, status, "{bad}: {j}");
        let msg = j["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{bad}: {msg}");
        println!("PUT {bad}\n  -> {} {msg}", a.status);
    }
    // A config-file check outside the parser: a cluster input needs a key.
    let no_key = put(
        &node,
        EDIT,
        "bad",
        r#"{"inputs": [{"url": "m4s://origin:8888/x"}]}"#,
    );
    assert_eq!(no_key.status, 400);
    assert!(json(&no_key.body)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("cluster key"));
    let huge = format!(
        r#"{{"inputs": [{{"url": "fake://fake?{}"}}]}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(
        put(&node, EDIT, "bad", &huge).status,
        413,
        "a body over 64 KiB"
    );
    assert_eq!(get_stream(&node, "bad"), 404);
    let state = std::fs::read_to_string(node.dir().join("tern.conf.state")).unwrap_or_default();
    assert!(
        state.contains("\"cam\"") && !state.contains("\"bad\""),
        "{state}"
    );

    // The state file brings it back after a restart.
    node.restart();
    assert_eq!(
        get_stream(&node, "cam"),
        200,
        "the PUT stream after a restart"
    );
    first_segment(&node, "cam");

    // Deleted: gone, and stays gone after a restart; so does a config-file stream.
    let del = curl(
        &[EDIT, &["-X", "DELETE"]].concat(),
        &node.url("/streamer/api/v3/streams/cam"),
    );
    assert_eq!(del.status, 200, "{}", String::from_utf8_lossy(&del.body));
    assert_eq!(get_stream(&node, "cam"), 404);
    assert_eq!(curl(&[], &node.url("/cam/index.m3u8")).status, 404);
    let del2 = curl(
        &[EDIT, &["-X", "DELETE"]].concat(),
        &node.url("/streamer/api/v3/streams/cam"),
    );
    assert_eq!(del2.status, 404);
    let del_keep = curl(
        &[EDIT, &["-X", "DELETE"]].concat(),
        &node.url("/streamer/api/v3/streams/keep"),
    );
    assert_eq!(del_keep.status, 200);
    node.restart();
    assert_eq!(get_stream(&node, "cam"), 404, "deleted stays deleted");
    assert_eq!(
        get_stream(&node, "keep"),
        404,
        "a deleted config stream stays deleted"
    );
    println!("DELETE: 200, then 404; both still gone after a restart");
}

/// An MPEG-TS viewer on a raw connection: counts the bytes it reads.
struct Viewer {
    s: TcpStream,
    total: usize,
}

impl Viewer {
    fn open(node: &Node, name: &str) -> Viewer {
        let mut s = TcpStream::connect(("127.0.0.1", node.port())).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(s, "GET /{name}/mpegts HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut v = Viewer { s, total: 0 };
        v.read_for(Duration::from_secs(2));
        assert!(v.total > 1000, "the viewer receives ({} bytes)", v.total);
        v
    }

    /// Reads for `d`; panics if the connection ends or stalls for 5 s.
    fn read_for(&mut self, d: Duration) -> usize {
        let t0 = now();
        let before = self.total;
        let mut buf = vec![0u8; 64 * 1024];
        while now() - t0 < d {
            match self.s.read(&mut buf) {
                Ok(0) => panic!("the viewer's connection ended after {} bytes", self.total),
                Ok(n) => self.total += n,
                Err(e) => panic!("the viewer stalled after {} bytes: {e}", self.total),
            }
        }
        self.total - before
    }
}

fn write_config(node: &Node, text: &str) {
    let conf = format!("http 127.0.0.1:{};\n{text}", node.port());
    std::fs::write(node.dir().join("tern.conf"), conf).expect("write the config");
}

fn sighup(node: &Node) {
    run_ok(
        Command::new("kill").args(["-HUP", &node.pid().to_string()]),
        Duration::from_secs(5),
    );
}

/// `stats.opened_at` of `name` (UTC ms; the API computes it from the stream's
/// lifetime, so two reads of a stream that did not restart differ by a ms or so).
fn opened_at(node: &Node, name: &str) -> i64 {
    let a = curl(EDIT, &node.url(&format!("/streamer/api/v3/streams/{name}")));
    let j = json(&a.body);
    j["stats"]["opened_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no opened_at: {j}"))
}

/// `keep` did not restart: it opened when it did before (a restart would make it
/// seconds later).
fn assert_not_restarted(node: &Node, opened: i64) {
    let now = opened_at(node, "keep");
    assert!(
        (now - opened).abs() <= 100,
        "`keep` was restarted: opened at {opened}, now {now}"
    );
}

#[test]
fn reload_keeps_viewers_of_unchanged_streams() {
    if !require_tool("curl") || !require_tool("kill") {
        return;
    }
    let keep = "stream keep { input fake://fake; }\n";
    let node = Node::start(TERN, &format!("{AUTH}{keep}"));
    let mut viewer = Viewer::open(&node, "keep");
    let opened = opened_at(&node, "keep");

    // SIGHUP with a stream added: it starts; the viewer of `keep` reads on.
    write_config(
        &node,
        &format!("{AUTH}{keep}stream added {{ input fake://fake; }}\n"),
    );
    sighup(&node);
    poll_until(Duration::from_secs(10), || {
        (get_stream(&node, "added") == 200).then_some(())
    })
    .expect("SIGHUP starts the added stream");
    let bytes = first_segment(&node, "added");
    let read = viewer.read_for(Duration::from_secs(3));
    assert!(
        read > 1000,
        "the viewer of `keep` kept receiving ({read} bytes)"
    );
    assert_not_restarted(&node, opened);
    assert!(node.log().contains("config reloaded"), "{}", node.log());
    println!("SIGHUP: `added` plays ({bytes}-byte segment); `keep`'s viewer read {read} bytes more on its connection");

    // A broken config: the log and the API say why; everything keeps running.
    write_config(
        &node,
        &format!("{AUTH}{keep}stream broken {{ input fake://fake;\n"),
    );
    sighup(&node);
    poll_until(Duration::from_secs(10), || {
        node.log().contains("config reload failed").then_some(())
    })
    .expect("the log reports the broken config");
    let api = curl(
        &[EDIT, &["-X", "POST"]].concat(),
        &node.url("/streamer/api/v3/config/reload"),
    );
    let j = json(&api.body);
    assert_eq!(api.status, 400, "{j}");
    let msg = j["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("tern.conf:") && msg.contains("expected `}`"),
        "{msg}"
    );
    println!("broken config: {} {msg}", api.status);
    assert_eq!(get_stream(&node, "added"), 200, "the old streams stay");
    assert_eq!(get_stream(&node, "broken"), 404);
    assert!(viewer.read_for(Duration::from_secs(2)) > 1000);

    // Through the API, which answers with the diff: `added` changed (restarted),
    // `third` added, `keep` untouched.
    let anon = curl(&["-X", "POST"], &node.url("/streamer/api/v3/config/reload"));
    assert_eq!(anon.status, 401);
    let get = curl(EDIT, &node.url("/streamer/api/v3/config/reload"));
    assert_eq!((get.status, get.header("allow")), (405, "POST"));
    write_config(&node, &format!("{AUTH}{keep}stream added {{ input fake://fake?fps=30; }}\nstream third {{ input fake://fake; }}\n"));
    let api = curl(
        &[EDIT, &["-X", "POST"]].concat(),
        &node.url("/streamer/api/v3/config/reload"),
    );
    let j = json(&api.body);
    assert_eq!(api.status, 200, "{j}");
    assert_eq!(j["added"], serde_json::json!(["third"]), "{j}");
    assert_eq!(j["changed"], serde_json::json!(["added"]), "{j}");
    assert_eq!(j["unchanged"], serde_json::json!(["keep"]), "{j}");
    assert_eq!(j["removed"], serde_json::json!([]), "{j}");
    // A changed `http` takes a restart: the answer and the log say so.
    write_config(&node, &format!("{AUTH}{keep}"));
    let conf = std::fs::read_to_string(node.dir().join("tern.conf")).unwrap_or_default();
    std::fs::write(
        node.dir().join("tern.conf"),
        format!("http 127.0.0.1:1;\n{conf}"),
    )
    .expect("write");
    let api = curl(
        &[EDIT, &["-X", "POST"]].concat(),
        &node.url("/streamer/api/v3/config/reload"),
    );
    let j = json(&api.body);
    assert_eq!(j["restart_needed"], serde_json::json!(["http"]), "{j}");
    assert_eq!(j["removed"], serde_json::json!(["added", "third"]), "{j}");
    assert!(node
        .log()
        .contains("takes effect only when the node restarts"));
    let read = viewer.read_for(Duration::from_secs(2));
    assert!(read > 1000, "{read}");
    assert_not_restarted(&node, opened);
    println!("API reload: {j}");

    // New API credentials take effect at the reload.
    let rotated = AUTH.replace("admin e-pass", "admin new-pass");
    write_config(&node, &format!("{rotated}{keep}"));
    sighup(&node);
    poll_until(Duration::from_secs(10), || {
        let a = curl(
            &["-u", "admin:new-pass"],
            &node.url("/streamer/api/v3/streams"),
        );
        (a.status == 200).then_some(())
    })
    .expect("the new edit_auth works after the reload");
    assert_eq!(
        get_stream(&node, "keep"),
        401,
        "the old edit_auth is refused"
    );
    let a = curl(
        &["-u", "admin:new-pass", "-X", "POST"],
        &node.url("/streamer/api/v3/config/reload"),
    );
    assert_eq!(
        json(&a.body)["restart_needed"],
        serde_json::json!([]),
        "credentials need no restart"
    );
    println!(
        "`keep`'s viewer read {} bytes in all, on one connection",
        viewer.total
    );
}
