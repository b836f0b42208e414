//! `tern bench`'s ingest phase: an origin reading many RTSP cameras at once, and what
//! that costs it — CPU per camera, memory, and the latency of the ingest hop (camera →
//! origin) and of the M4S hop that follows (origin → edge).
//!
//! The cameras are one GStreamer RTSP server (the end-to-end tests' stand-in camera,
//! `tests/tools/rtsp_camera.py --shared`: one pipeline, a session per client) reading
//! a source node's `fake://` stream (256×16 padded to the rate: a picture small enough
//! that filler, not pictures, makes the 2 Mbit/s) over HTTP. Only the origin's CPU is counted.
//!
//! Owns: that phase. Must not: assert anything (figures for people), or run when the
//! camera cannot (it says why and skips).

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    cpu_seconds, free_port, http_get_text, peak_rss_mib, percentile, spawn_node, time_two_hops,
    wait_alive, CpuTimes, KEY,
};

/// The stand-in camera script, in the repository this binary was built from.
const CAMERA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tools/rtsp_camera.py");

/// Streams whose frames are timed for the latency figures (subscribing to all of
/// them would load the origin being measured).
const TIMED_STREAMS: usize = 10;

/// The camera process, killed on drop.
struct Camera(std::process::Child);

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether GStreamer's RTSP server can run here; the reason when not.
fn camera_usable() -> Result<(), String> {
    let status = Command::new("/usr/bin/python3")
        .args([CAMERA, "--check"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run /usr/bin/python3: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{CAMERA} --check failed (needs python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)"
        ))
    }
}

/// Sums a numeric field over the streams of an API answer (`"input_bitrate":2421`).
fn sum_field(body: &str, field: &str) -> u64 {
    let key = format!("\"{field}\":");
    // Compact or pretty JSON: the value may follow a space.
    body.match_indices(&key)
        .filter_map(|(i, _)| {
            let rest = body.get(i + key.len()..)?.trim_start();
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest.get(..end)?.parse::<u64>().ok()
        })
        .sum()
}

/// `cameras` RTSP cameras of `bitrate` bit/s each into one origin, with an edge
/// pulling them all over M4S.
#[allow(clippy::disallowed_methods)] // bench driver: processes, warm-up and measuring windows, recorder tasks
pub(super) async fn ingest_phase(cameras: usize, seconds: u64, bitrate: u64) -> Result<(), String> {
    if let Err(why) = camera_usable() {
        println!("RTSP ingest: skipped: {why}");
        return Ok(());
    }
    let source = spawn_node(
        "camera-source",
        &format!("stream src {{ input fake://fake?width=256&height=16&bitrate={bitrate}; }}\n"),
    )?;
    wait_alive(source.port, 1, Duration::from_secs(20)).await?;
    let rtsp_port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let camera = Command::new("/usr/bin/python3")
        .args([CAMERA, "--shared"])
        .arg(rtsp_port.to_string())
        .arg(format!("http://127.0.0.1:{}/src/mpegts", source.port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the RTSP camera: {e}"))?;
    let camera = Camera(camera);
    let streams: String = (0..cameras)
        .map(|i| format!("stream s{i} {{ input rtsp://127.0.0.1:{rtsp_port}/cam; }}\n"))
        .collect();
    let origin = spawn_node(
        "ingest-origin",
        &format!("cluster_key {KEY};\nsegment_duration 1;\n{streams}"),
    )?;
    wait_alive(origin.port, cameras, Duration::from_secs(60)).await?;
    let edge = spawn_node(
        "ingest-edge",
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            origin.port
        ),
    )?;
    wait_alive(edge.port, cameras, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // CPU window: nothing but the cameras and the edge's pulls.
    let pid = origin.child.id();
    let cpu0 = CpuTimes::of(pid);
    let camera_cpu0 = cpu_seconds(camera.0.id());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu1 = CpuTimes::of(pid);
    let camera_cpu1 = cpu_seconds(camera.0.id());
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => a.until(b),
        _ => return Err("cannot read the origin's CPU time from /proc".into()),
    };
    let api = http_get_text(origin.port, "/streamer/api/v3/streams")
        .await
        .unwrap_or_default();
    let alive = api.matches("\"alive\":true").count() + api.matches("\"alive\": true").count();
    let kbit_in = sum_field(&api, "input_bitrate");
    let from_sr = api
        .matches("\"capture_time\":\"rtcp_sender_report\"")
        .count()
        + api
            .matches("\"capture_time\": \"rtcp_sender_report\"")
            .count();
    let per_camera_ms = (cpu.user + cpu.system) / wall / cameras.max(1) as f64 * 1000.0;
    println!(
        "RTSP ingest, {cameras} cameras ({} kbit/s each, GStreamer's RTSP server, TCP interleaved), {wall:.1} s:",
        bitrate / 1000
    );
    println!(
        "  origin CPU user {:.2} s + system {:.2} s ({:.0}% of one core): {per_camera_ms:.2} ms of CPU per camera per second ({:.2}% of a core each); peak RSS {:.1} MiB",
        cpu.user,
        cpu.system,
        (cpu.user + cpu.system) / wall * 100.0,
        per_camera_ms / 10.0,
        peak_rss_mib(pid).unwrap_or(f64::NAN),
    );
    println!(
        "  {alive} of {cameras} streams alive, {:.1} Mbit/s in all by the API ({} kbit/s per camera); capture times from RTCP sender reports on {from_sr}; camera server CPU {}",
        kbit_in as f64 / 1000.0,
        kbit_in / cameras.max(1) as u64,
        match (camera_cpu0, camera_cpu1) {
            (Some(a), Some(b)) => format!("{:.0}% of one core", (b - a) / wall * 100.0),
            _ => "?".into(),
        }
    );

    // Latency window: frames of a few streams timed at the origin and at the edge.
    let timed = cameras.min(TIMED_STREAMS);
    let times = time_two_hops(origin.port, edge.port, timed, seconds).await;
    let (hop, ingest) = (times.hop_us, times.delay_origin_ms);
    println!(
        "  ingest hop (camera's capture time by its RTCP sender reports -> origin's M4S subscriber), {} frames of {timed} streams: p50 {} ms, p99 {} ms, max {} ms",
        ingest.len(),
        percentile(&ingest, 0.5).unwrap_or(0),
        percentile(&ingest, 0.99).unwrap_or(0),
        ingest.last().copied().unwrap_or(0),
    );
    println!(
        "  M4S hop origin -> edge, {} frames matched: p50 {} us, p99 {} us, max {} us",
        hop.len(),
        percentile(&hop, 0.5).unwrap_or(0),
        percentile(&hop, 0.99).unwrap_or(0),
        hop.last().copied().unwrap_or(0),
    );
    drop(edge);
    drop(origin);
    drop(camera);
    drop(source);
    Ok(())
}
