//! End-to-end tests of the cluster link's caps and counters (README "Bandwidth caps"):
//! `archive_bandwidth` on an edge paces its archive reads from the origin;
//! `cluster_bandwidth` on an origin refuses a new live pull once live takes its share,
//! with a 503 that says why; `/streamer/api/v3/peers` counts bytes and open pulls on
//! both ends. Prints the archive rates measured.

use std::time::Duration;

use serde_json::Value;
use tern_tests::{now, poll_until, try_http_get, utc_now_ms, Node, TempDir};

/// The binary under test (see origin_e2e.rs).
const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const KEY: &str = "e2e-cluster-key-5f1c9a7d3b";

fn json(node: &Node, path: &str) -> Value {
    let (status, body) = node.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The one peer of a node's link counters.
fn only_peer(node: &Node) -> Value {
    let v = json(node, "/streamer/api/v3/peers");
    let peers = v["peers"].as_array().cloned().unwrap_or_default();
    assert_eq!(peers.len(), 1, "{v}");
    peers[0].clone()
}

/// GETs `path` whole and returns (bytes, seconds it took).
fn timed_get(node: &Node, path: &str) -> (usize, f64) {
    let t0 = now();
    let (status, body) =
        try_http_get(node.port(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    (body.len(), (now() - t0).as_secs_f64())
}

#[test]
fn archive_bandwidth_paces_archive_reads_through_the_edge() {
    let dvr = TempDir::new("link-archive");
    let origin = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsegment_duration 1;\nstream main {{\n  input fake://fake?bitrate=2M;\n  dvr \"{}\";\n}}\n",
            dvr.path().display()
        ),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ archive_bandwidth 1M; }}\n",
            origin.port()
        ),
    );
    let start_s = utc_now_ms() / 1000;
    // Six seconds of archive, recorded.
    let from = start_s + 1;
    let recorded = poll_until(Duration::from_secs(20), || {
        (utc_now_ms() / 1000 >= from + 8).then_some(())
    });
    assert!(recorded.is_some());
    let path = format!("/main/archive-{from}-6.ts");
    let (direct_bytes, direct_s) = timed_get(&origin, &path);
    let (edge_bytes, edge_s) = timed_get(&edge, &path);
    let rate = |b: usize, s: f64| b as f64 * 8.0 / s / 1e6;
    println!(
        "archive of 6 s: from the origin {direct_bytes} bytes in {direct_s:.2} s ({:.1} Mbit/s); \
         through the edge with archive_bandwidth 1M {edge_bytes} bytes in {edge_s:.2} s ({:.2} Mbit/s)",
        rate(direct_bytes, direct_s),
        rate(edge_bytes, edge_s)
    );
    assert_eq!(direct_bytes, edge_bytes, "the edge answered other bytes");
    assert!(
        direct_bytes > 1_000_000,
        "a 2 Mbit/s stream gave {direct_bytes} bytes for 6 s"
    );
    // At most 1 Mbit/s after a burst of at most 64 KiB, with the wire's overhead.
    assert!(
        rate(edge_bytes, edge_s) < 1.25,
        "archive_bandwidth 1M not held: {:.2} Mbit/s",
        rate(edge_bytes, edge_s)
    );
    let p = only_peer(&edge);
    assert!(
        p["archive"]["bytes_in"].as_u64().unwrap_or(0) >= direct_bytes as u64 / 2,
        "{p}"
    );
    assert_eq!(
        p["live"]["bytes_in"], 0,
        "no live pull without a viewer: {p}"
    );
}

#[test]
fn cluster_bandwidth_refuses_a_live_pull_past_the_cap_and_peers_are_counted() {
    let origin = Node::start(
        TERN,
        &format!(
            "cluster_key {KEY};\ncluster_bandwidth 500k;\nstream main {{\n  input fake://fake?bitrate=1M;\n}}\n"
        ),
    );
    let edge_config = format!(
        "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
        origin.port()
    );
    let first = Node::start(TERN, &edge_config);
    let alive = |n: &Node| json(n, "/streamer/api/v3/streams/main")["stats"]["alive"] == true;
    assert!(
        poll_until(Duration::from_secs(15), || alive(&first).then_some(())).is_some(),
        "the first edge's pull was not admitted"
    );
    // Two seconds of a 1 Mbit/s stream: live now takes more than 90% of 500k.
    std::thread::sleep(Duration::from_secs(2));
    let second = Node::start(TERN, &edge_config);
    let refused = poll_until(Duration::from_secs(10), || {
        origin
            .log()
            .contains("cluster_bandwidth reached")
            .then_some(())
    });
    assert!(refused.is_some(), "origin log:\n{}", origin.log());
    assert!(!alive(&second), "the second pull went through past the cap");
    assert!(
        second.log().contains("503") || second.log().contains("cluster_bandwidth"),
        "the second edge does not say why:\n{}",
        second.log()
    );

    // Both ends count the first edge's pull.
    let at_origin = json(&origin, "/streamer/api/v3/peers");
    let peers = at_origin["peers"].as_array().cloned().unwrap_or_default();
    let live_open: u64 = peers
        .iter()
        .map(|p| p["live"]["online_clients"].as_u64().unwrap_or(0))
        .sum();
    let live_out: u64 = peers
        .iter()
        .map(|p| p["live"]["bytes_out"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(live_open, 1, "{at_origin}");
    assert!(live_out > 100_000, "{at_origin}");
    let p = only_peer(&first);
    assert_eq!(p["peer"], format!("127.0.0.1:{}", origin.port()), "{p}");
    assert_eq!(p["live"]["online_clients"], 1, "{p}");
    assert!(p["live"]["bytes_in"].as_u64().unwrap_or(0) > 100_000, "{p}");
    assert_eq!(p["signaling"]["online_clients"], 1, "{p}");
    println!("cluster link counted at the origin: {at_origin}");
}
