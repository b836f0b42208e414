//! The remote-site scenario of on-demand pulls (README "On-demand pulls"), on turmoil:
//! an origin with 16 fake cameras at 2 Mbit/s, an edge whose `source` pulls on demand
//! (`clients_timeout 3`), and an edge of that edge for the chain. Viewers (MPEG-TS)
//! come and go on a seeded schedule, at the edge and, for one camera, at the far edge
//! (three hops). A monitor polls the origin's API every 250 ms for which cameras
//! are pulled.
//!
//! Oracles:
//! - no camera is pulled at the origin unless a viewer watches it, or watched it in
//!   the last `clients_timeout` + 1 s (two timeouts through the chain);
//! - every viewer's first MPEG-TS bytes arrive within two round trips + 100 ms of the
//!   edge receiving the request (one round trip more for the viewer's own request,
//!   two more through the chain);
//! - the live bytes the origin sent the edge stay within 10% of the bytes of the
//!   cameras that had viewers, over the time they were pulled (plus one GOP per
//!   opening), and are not far below it either.
//!
//!
//! The slow-link variant runs the site over a 10 Mbit/s link (`tern_sim::throttle`,
//! a proxy every pull crosses) with one camera watched live and an archive read at
//! full speed: with the edge's `archive_bandwidth 4M` the live delay at the edge grows
//! by at most 50 ms; without it, the same read must push it further (so the check can
//! fail).
//!
//! Owns: this scenario and its oracles. Must not: read real time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_net::{Net, TurmoilNet};
use tern_sim::{add_node, builder, http_get, sim_ms, LINK_LATENCY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CAMERAS: usize = 16;
const BITRATE_BPS: u64 = 2_000_000;
const CLIENTS_TIMEOUT_MS: u64 = 3_000;
const RUN: Duration = Duration::from_secs(40);
/// How often the monitor asks the origin which cameras are pulled.
const MONITOR_EVERY_MS: u64 = 250;

fn origin_config() -> String {
    let mut c = String::from("http 8888;\ncluster_key 123;\nsegment_duration 1;\n");
    for i in 0..CAMERAS {
        c.push_str(&format!(
            "stream cam{i} {{\n  input fake://fake?bitrate=2M;\n}}\n"
        ));
    }
    c
}

const EDGE: &str =
    "http 9999;\ncluster_key 123;\nsource m4s://origin:8888 { clients_timeout 3; }\n";
const EDGE2: &str = "http 9998;\ncluster_key 123;\nsource m4s://edge:9999 { clients_timeout 3; }\n";

/// One viewer: which camera, where, when it opens and for how long.
#[derive(Clone, Debug)]
struct Viewer {
    camera: usize,
    /// `edge` (2 hops from the camera) or `edge2` (3 hops).
    host: &'static str,
    port: u16,
    start_ms: u64,
    duration_ms: u64,
}

impl Viewer {
    fn hops(&self) -> u64 {
        if self.host == "edge2" {
            2
        } else {
            1
        }
    }
}

/// The seeded schedule: 12 viewers at the edge on cameras 1..=15 (several per
/// camera, some overlapping), and two at the far edge on camera 0.
fn schedule(seed: u64) -> Vec<Viewer> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::new();
    for _ in 0..12 {
        v.push(Viewer {
            camera: 1 + (rng.next_u64() % (CAMERAS as u64 - 1)) as usize,
            host: "edge",
            port: 9999,
            start_ms: 3_000 + rng.next_u64() % 25_000,
            duration_ms: 1_000 + rng.next_u64() % 6_000,
        });
    }
    for start_ms in [4_000, 20_000 + rng.next_u64() % 5_000] {
        v.push(Viewer {
            camera: 0,
            host: "edge2",
            port: 9998,
            start_ms,
            duration_ms: 3_000,
        });
    }
    v
}

/// What a viewer saw: when it asked, when its first body bytes came (sim ms).
#[derive(Clone, Debug, Default)]
struct Seen {
    asked_ms: u64,
    first_ms: Option<u64>,
    bytes: u64,
}

/// Opens `/camN/mpegts`, reads until the viewer's end, then drops the connection.
#[allow(clippy::disallowed_methods)] // sim harness on turmoil time
async fn watch(v: Viewer, seen: Arc<Mutex<Seen>>) -> turmoil::Result {
    tokio::time::sleep(Duration::from_millis(v.start_ms)).await;
    let mut s = TurmoilNet.connect(v.host, v.port).await?;
    let asked = sim_ms();
    s.write_all(
        format!(
            "GET /cam{}/mpegts HTTP/1.1\r\nHost: {}\r\n\r\n",
            v.camera, v.host
        )
        .as_bytes(),
    )
    .await?;
    seen.lock().unwrap_or_else(|e| e.into_inner()).asked_ms = asked;
    let end = asked + v.duration_ms;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head_done = false;
    let mut raw = Vec::new();
    loop {
        let left = end.saturating_sub(sim_ms());
        if left == 0 {
            break;
        }
        let n = match tokio::time::timeout(Duration::from_millis(left), s.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let mut st = seen.lock().unwrap_or_else(|e| e.into_inner());
        if head_done {
            st.bytes += n as u64;
            if st.first_ms.is_none() {
                st.first_ms = Some(sim_ms());
            }
        } else {
            raw.extend_from_slice(&buf[..n]);
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                head_done = true;
                let body = raw.len() - (p + 4);
                if body > 0 {
                    st.bytes += body as u64;
                    st.first_ms = Some(sim_ms());
                }
            }
        }
    }
    Ok(())
}

/// (sim ms, the cameras pulled at the origin, the origin's live bytes sent so far,
/// the cameras' input bitrates in kbit/s).
type Sample = (u64, Vec<bool>, u64, Vec<u64>);

#[allow(clippy::disallowed_methods)] // sim harness on turmoil time
async fn monitor(samples: Arc<Mutex<Vec<Sample>>>) -> turmoil::Result {
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let t = sim_ms();
        let (_, body) = http_get(
            "origin",
            8888,
            "/streamer/api/v3/streams?select=name,stats.online_clients,stats.input_bitrate",
        )
        .await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let mut pulled = vec![false; CAMERAS];
        let mut kbps = vec![0; CAMERAS];
        for s in v["streams"].as_array().cloned().unwrap_or_default() {
            let n = s["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("cam"))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(i) = n.filter(|i| *i < CAMERAS) {
                pulled[i] = s["stats"]["online_clients"].as_u64().unwrap_or(0) > 0;
                kbps[i] = s["stats"]["input_bitrate"].as_u64().unwrap_or(0);
            }
        }
        let (_, body) = http_get("origin", 8888, "/streamer/api/v3/peers").await?;
        let p: serde_json::Value = serde_json::from_slice(&body)?;
        let live_out: u64 = p["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| p["live"]["bytes_out"].as_u64().unwrap_or(0))
            .sum();
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t, pulled, live_out, kbps));
        let next = t + MONITOR_EVERY_MS;
        tokio::time::sleep(Duration::from_millis(next.saturating_sub(sim_ms()))).await;
    }
}

#[test]
fn remote_site_cameras_are_pulled_only_while_watched() {
    let seed = 7;
    let viewers = schedule(seed);
    let mut sim = builder(seed, RUN).build();
    add_node(&mut sim, "origin", &origin_config());
    add_node(&mut sim, "edge", EDGE);
    add_node(&mut sim, "edge2", EDGE2);
    let seen: Vec<Arc<Mutex<Seen>>> = viewers.iter().map(|_| Arc::default()).collect();
    for (i, (v, s)) in viewers.iter().zip(&seen).enumerate() {
        sim.client(format!("viewer{i}"), watch(v.clone(), s.clone()));
    }
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    sim.client("monitor", monitor(samples.clone()));
    // The monitor never ends on its own: the run ends at RUN.
    let r = sim.run();
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(msg.contains("Ran for duration"), "simulation failed: {msg}");
    }

    let seen: Vec<Seen> = seen
        .iter()
        .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut violations = Vec::new();

    // 1. First frame within its bound.
    let rtt = 2 * LINK_LATENCY.as_millis() as u64;
    for (i, (v, s)) in viewers.iter().zip(&seen).enumerate() {
        let bound = (1 + 2 * v.hops()) * rtt + 100 * v.hops();
        match s.first_ms {
            Some(f) if f - s.asked_ms <= bound => {}
            Some(f) => violations.push(format!(
                "viewer{i} ({v:?}): first bytes {} ms after asking, bound {bound} ms",
                f - s.asked_ms
            )),
            None => violations.push(format!("viewer{i} ({v:?}): no bytes at all")),
        }
    }
    let firsts: Vec<u64> = viewers
        .iter()
        .zip(&seen)
        .filter_map(|(_, s)| Some(s.first_ms? - s.asked_ms))
        .collect();

    // 2. Pulled only while watched (plus the timeout tails and one monitor period).
    let tail = |camera: usize| {
        let hops = if camera == 0 { 2 } else { 1 };
        hops * CLIENTS_TIMEOUT_MS + 1_000 + MONITOR_EVERY_MS
    };
    let watched = |camera: usize, t: u64| {
        viewers.iter().zip(&seen).any(|(v, s)| {
            v.camera == camera
                && s.asked_ms > 0
                && t + MONITOR_EVERY_MS >= s.asked_ms
                && t <= s.asked_ms + v.duration_ms + tail(camera)
        })
    };
    // Pulled time per camera, and the bytes it stands for at the camera's bitrate
    // (the API's, over the last segment), sample to sample.
    let mut pulled_ms: BTreeMap<usize, u64> = BTreeMap::new();
    let mut expected: u64 = 0;
    for w in samples.windows(2) {
        let ((t, pulled, _, kbps), (next, _, _, _)) = (&w[0], &w[1]);
        for (camera, on) in pulled.iter().enumerate() {
            if !on {
                continue;
            }
            *pulled_ms.entry(camera).or_default() += next - t;
            expected += (next - t) * kbps[camera] / 8;
            if !watched(camera, *t) {
                violations.push(format!(
                    "cam{camera} pulled at the origin at {t} ms with no viewer in the last \
                     clients_timeout + 1 s"
                ));
            }
        }
    }
    // And a camera with a viewer was pulled at all.
    for v in &viewers {
        if !pulled_ms.contains_key(&v.camera) {
            violations.push(format!("cam{} watched but never pulled", v.camera));
        }
    }

    // 3. Bytes on the link against the cameras that were pulled.
    let sent = samples.last().map_or(0, |s| s.2);
    let pulled_total_ms: u64 = pulled_ms.values().sum();
    let openings = viewers.len() as u64;
    let gop = BITRATE_BPS / 8;
    if sent > expected + expected / 10 + openings * gop {
        violations.push(format!(
            "the origin sent {sent} live bytes, more than 10% over the {expected} bytes of \
             {pulled_total_ms} ms of pulled cameras (+ {openings} GOPs)"
        ));
    }
    if sent < expected / 2 {
        violations.push(format!(
            "the origin sent only {sent} live bytes for {pulled_total_ms} ms of pulled cameras"
        ));
    }
    let all_on = RUN.as_millis() as u64 * CAMERAS as u64 * BITRATE_BPS / 8 / 1000;
    println!(
        "ondemand scenario (seed {seed}): {} viewers, first bytes after {:?} ms; cameras \
         pulled {pulled_total_ms} ms in all; origin sent {sent} live bytes (pulled cameras \
         at their bitrate: {expected}; all {CAMERAS} always on at 2 Mbit/s: {all_on})",
        viewers.len(),
        firsts
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// What the slow-link run saw: the camera's delay at the edge (ms) before and
/// during the archive read, and the archive read itself.
#[derive(Debug, Default, Clone)]
struct SlowLink {
    /// (sim ms, `stats.delay` of the live camera at the edge).
    delays: Vec<(u64, u64)>,
    archive_ms: (u64, u64),
    archive_bytes: usize,
    live_bytes: u64,
}

/// The site over a thin link (a 10 Mbit/s proxy every pull crosses), one camera
/// watched live at the edge, and at 20 s an archive read of 15 s of another camera
/// at full speed, with the edge's `archive_bandwidth` as given.
#[allow(clippy::disallowed_methods)] // sim harness on turmoil time
fn slow_link(archive_bandwidth: &str) -> SlowLink {
    let origin = "http 8888;\ncluster_key 123;\nsegment_duration 1;\n\
                  stream cam0 {\n  input fake://fake?bitrate=1M;\n  dvr /dvr;\n}\n\
                  stream cam1 {\n  input fake://fake?bitrate=1M;\n}\n";
    let edge = format!(
        "http 9999;\ncluster_key 123;\nsource m4s://link:8888 {{ clients_timeout 3; {archive_bandwidth} }}\n"
    );
    let mut sim = builder(11, Duration::from_secs(40)).build();
    add_node(&mut sim, "origin", origin);
    tern_sim::throttle::add_throttled_link(&mut sim, "link", 8888, "origin", 8888, 10_000_000);
    add_node(&mut sim, "edge", &edge);
    let seen = Arc::new(Mutex::new(SlowLink::default()));
    let live = Arc::new(Mutex::new(Seen::default()));
    sim.client(
        "viewer",
        watch(
            Viewer {
                camera: 1,
                host: "edge",
                port: 9999,
                start_ms: 5_000,
                duration_ms: 30_000,
            },
            live.clone(),
        ),
    );
    let s = seen.clone();
    sim.client("archive", async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let from = tern_sim::SIM_EPOCH_UNIX_SECS + 2;
        let t0 = sim_ms();
        let (status, body) = http_get("edge", 9999, &format!("/cam0/archive-{from}-15.ts")).await?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
        s.archive_ms = (t0, sim_ms());
        s.archive_bytes = body.len();
        Ok(())
    });
    let s = seen.clone();
    sim.client("monitor", async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        loop {
            let t = sim_ms();
            let (_, body) = http_get("edge", 9999, "/streamer/api/v3/streams/cam1").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if let Some(d) = v["stats"]["delay"].as_u64() {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .delays
                    .push((t, d));
            }
            tokio::time::sleep(Duration::from_millis((t + 100).saturating_sub(sim_ms()))).await;
        }
    });
    let r = sim.run();
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(msg.contains("Ran for duration"), "simulation failed: {msg}");
    }
    let mut out = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    out.live_bytes = live.lock().unwrap_or_else(|e| e.into_inner()).bytes;
    out
}

/// The live camera's delay at the edge may grow by at most this while an archive
/// read crosses the thin link.
const LIVE_DELAY_BOUND_MS: u64 = 50;

#[test]
fn archive_over_a_thin_link_leaves_live_alone_with_archive_bandwidth() {
    let worst = |s: &SlowLink| {
        let (a, b) = s.archive_ms;
        s.delays
            .iter()
            .filter(|(t, _)| *t >= a && *t <= b + 1_000)
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0)
    };
    let before = |s: &SlowLink| {
        s.delays
            .iter()
            .filter(|(t, _)| *t < s.archive_ms.0)
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0)
    };
    let capped = slow_link("archive_bandwidth 4M;");
    let uncapped = slow_link("");
    for (what, s) in [("archive_bandwidth 4M", &capped), ("no cap", &uncapped)] {
        let (a, b) = s.archive_ms;
        println!(
            "slow link (10 Mbit/s), {what}: archive read of {} bytes in {} ms; live delay at \
             the edge: before it at most {} ms, during it at most {} ms; live bytes {}",
            s.archive_bytes,
            b.saturating_sub(a),
            before(s),
            worst(s),
            s.live_bytes
        );
        assert!(s.archive_bytes > 1_000_000, "{what}: archive read {s:?}");
        assert!(b > a, "{what}: the archive read never ended");
    }
    assert!(
        worst(&capped) <= before(&capped) + LIVE_DELAY_BOUND_MS,
        "with archive_bandwidth the live delay went from {} to {} ms",
        before(&capped),
        worst(&capped)
    );
    // Without the cap the same read does push live back: the check above can fail.
    assert!(
        worst(&uncapped) > before(&uncapped) + LIVE_DELAY_BOUND_MS,
        "without archive_bandwidth the live delay stayed at {} ms: the link is not thin \
         enough for this scenario to test anything",
        worst(&uncapped)
    );
}
