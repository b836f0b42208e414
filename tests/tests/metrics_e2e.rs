//! `/metrics` read as a scraper reads it: fetched with curl (gzip), parsed by
//! Prometheus' own Python client in both formats (text 0.0.4 and OpenMetrics with
//! `?format=openmetrics`), on an origin with a DVR, an MPEG-TS viewer and an edge
//! pulling from it: per-stream bytes, bit rates in and out, clients, frames,
//! status, DVR bytes and segments, and per-peer cluster bytes on both nodes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tern_tests::{curl, poll_until, require_check, require_tool, Node, Proc, TempDir};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const PARSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/metrics_parse.py");
const KEY: &str = "metrics-test-cluster-key";

/// One parsed sample.
struct Sample {
    name: String,
    labels: serde_json::Value,
    value: f64,
}

/// `/metrics` of `node` in `format`, parsed by prometheus_client.
fn scrape(node: &Node, format: &str) -> Vec<Sample> {
    let path = match format {
        "openmetrics" => "/metrics?format=openmetrics",
        _ => "/metrics",
    };
    let a = curl(&["--compressed", "-u", "ops:pw"], &node.url(path));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-encoding"), "gzip");
    let want_type = match format {
        "openmetrics" => "application/openmetrics-text",
        _ => "text/plain; version=0.0.4",
    };
    assert!(
        a.header("content-type").starts_with(want_type),
        "{:?}",
        a.headers
    );
    let mut child = Command::new("/usr/bin/python3")
        .args([PARSER, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the metrics parser");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(&a.body)
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus_client refused the {format} text: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&a.body)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("parser JSON");
            Sample {
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                labels: v["labels"].clone(),
                value: v["value"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of `name` with these labels (all must match), if present.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels[*k] == *v))
        .map(|s| s.value)
}

#[test]
fn metrics_scraped_in_both_formats() {
    if !require_tool("curl")
        || !require_check(
            "prometheus_client (Python)",
            Command::new("/usr/bin/python3").args([PARSER, "--check"]),
            "python3-prometheus-client",
        )
    {
        return;
    }
    let dvr = TempDir::new("metrics");
    let origin = Node::start(
        TERN,
        &format!(
            "view_auth ops pw;\ncluster_key {KEY};\nsegment_duration 1;\n\
             stream main {{\n  input fake://fake;\n  dvr \"{}\";\n}}\n",
            dvr.path().join("dvr").display()
        ),
    );
    let edge = Node::start(
        TERN,
        &format!(
            "view_auth ops pw;\ncluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            origin.port()
        ),
    );
    origin.wait_playlist("main", 2, Duration::from_secs(20));
    edge.wait_playlist("main", 2, Duration::from_secs(20));

    // Unauthenticated scrapes are refused like the API.
    assert_eq!(curl(&[], &origin.url("/metrics")).status, 401);

    // An MPEG-TS viewer for the out bit rate, read between two scrapes 6 s apart.
    let mut viewer = Proc::spawn(
        Command::new("curl")
            .args(["-s", "--max-time", "9", "-o", "/dev/null"])
            .arg(origin.url("/main/mpegts")),
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_millis(500));
    let first = scrape(&origin, "prometheus");
    let main = [("stream", "main")];
    assert_eq!(
        value(&first, "tern_stream_bitrate_out_bits", &main),
        Some(0.0),
        "the first scrape has nothing to measure from"
    );
    std::thread::sleep(Duration::from_secs(6));
    let prom = scrape(&origin, "prometheus");
    let om = scrape(&origin, "openmetrics");
    let _ = viewer.kill();

    for (what, s) in [("prometheus", &prom), ("openmetrics", &om)] {
        let get = |name: &str| {
            value(s, name, &main).unwrap_or_else(|| panic!("{what}: no {name} for main"))
        };
        assert!(get("tern_stream_bytes_in_total") > 100_000.0, "{what}");
        assert!(get("tern_stream_bytes_out_total") > 100_000.0, "{what}");
        assert!(get("tern_stream_bitrate_in_bits") > 100_000.0, "{what}");
        assert!(get("tern_stream_frames_total") > 100.0, "{what}");
        assert!(get("tern_stream_clients") >= 1.0, "{what}");
        assert!(get("tern_stream_dvr_bytes") > 0.0, "{what}");
        assert!(get("tern_stream_dvr_segments") >= 2.0, "{what}");
        assert!(get("tern_stream_discontinuities_total") >= 0.0, "{what}");
        for (st, want) in [("running", 1.0), ("waiting", 0.0), ("idle", 0.0)] {
            assert_eq!(
                value(
                    s,
                    "tern_stream_status",
                    &[("stream", "main"), ("status", st)]
                ),
                Some(want),
                "{what}: status {st}"
            );
        }
        let out = value(
            s,
            "tern_cluster_peer_bytes_total",
            &[
                ("peer", "127.0.0.1"),
                ("class", "live"),
                ("direction", "out"),
            ],
        );
        assert!(
            out > Some(10_000.0),
            "{what}: cluster bytes out to the edge: {out:?}"
        );
    }
    let rate_out = value(&prom, "tern_stream_bitrate_out_bits", &main).unwrap_or(0.0);
    let rate_in = value(&prom, "tern_stream_bitrate_in_bits", &main).unwrap_or(0.0);
    assert!(
        rate_out > rate_in / 3.0 && rate_out < rate_in * 3.0,
        "one MPEG-TS viewer gets about the input rate: out {rate_out} in {rate_in}"
    );
    println!(
        "origin: bitrate in {rate_in} bit/s, out {rate_out} bit/s (one MPEG-TS viewer), \
         {} samples (prometheus), {} (openmetrics)",
        prom.len(),
        om.len()
    );

    // The edge counts what it read from its peer.
    let peer = format!("127.0.0.1:{}", origin.port());
    let edge_in = poll_until(Duration::from_secs(5), || {
        let s = scrape(&edge, "prometheus");
        value(
            &s,
            "tern_cluster_peer_bytes_total",
            &[("peer", &peer), ("direction", "in")],
        )
        .filter(|v| *v > 10_000.0)
    })
    .expect("the edge counts bytes in from its peer");
    let edge_s = scrape(&edge, "openmetrics");
    assert_eq!(
        value(
            &edge_s,
            "tern_stream_status",
            &[("stream", "main"), ("status", "running")]
        ),
        Some(1.0)
    );
    println!("edge: {edge_in} bytes in from {peer}");
}
