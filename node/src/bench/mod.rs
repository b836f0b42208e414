//! `tern bench`: runs an origin and an edge as separate `tern` processes on loopback
//! and prints what the cluster costs — M4S latency added per hop, the edge's CPU and
//! memory when fanning one stream out to many viewers, and time to first frame.
//!
//! Owns: the load generator and the figures. Must not: assert anything (figures are
//! for people; CI runs only `--smoke` to keep the program working). The load
//! generator runs on the same machine and shares its cores with both nodes: read the
//! figures as ratios from one run, not as absolutes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::ClusterAuth;
use tern_core::cluster::message::Message;
use tern_core::cluster::ProtocolVersion;
use tern_core::Position;
use tern_net::{Clock, TokioClock, TokioNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::cluster::client::ClusterClient;

mod ingest;
mod nginx;
mod record;

const KEY: &str = "tern-bench-cluster-key-0123456789";

/// A part of the benchmark (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// M4S latency added per hop.
    Latency,
    /// Fan-out of one stream to many readers.
    Fanout,
    /// DVR index figures and the M4F archive transfer beside a plain read.
    Archive,
    /// RTSP ingest of many cameras (`--cameras`).
    Ingest,
    /// DVR recording of one camera, then of `--cameras` at once, into one root.
    Record,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// Stream counts for the latency phase.
    pub streams: Vec<usize>,
    /// Viewer counts for the fan-out phase.
    pub viewers: Vec<usize>,
    /// Seconds each phase measures.
    pub seconds: u64,
    /// Bit rate of the fanned-out stream (fake filler), bit/s.
    pub bitrate: u64,
    /// MiB of archive to generate for the M4F transfer figure (0: skip the archive
    /// phase).
    pub archive_mib: u64,
    /// Protocol versions the archive transfer runs in, in this order.
    pub archive_versions: Vec<ProtocolVersion>,
    /// Run the same fan-out through nginx-rtmp too, side by side.
    pub peer_nginx: bool,
    /// RTSP cameras for the ingest phase (0: skip it).
    pub cameras: usize,
    /// Cameras recording into one DVR root in the record phase (0: skip it).
    pub record_cameras: usize,
    /// Add the large fan-out: [`LARGE_VIEWERS`] readers of a [`LARGE_BITRATE`]
    /// stream for [`LARGE_SECONDS`].
    pub large: bool,
}

/// The large fan-out (`--large`): readers, the stream's bit rate, seconds measured.
pub const LARGE_VIEWERS: usize = 10_000;
pub const LARGE_BITRATE: u64 = 100_000;
pub const LARGE_SECONDS: u64 = 30;

/// Bit rate of each camera of the ingest phase, bit/s (the 2 Mbit/s).
pub const CAMERA_BITRATE: u64 = 2_000_000;

impl BenchArgs {
    pub fn smoke() -> Self {
        Self {
            streams: vec![1],
            viewers: vec![5],
            seconds: 1,
            bitrate: 1_000_000,
            archive_mib: 8,
            archive_versions: ProtocolVersion::ALL.to_vec(),
            peer_nginx: false,
            cameras: 2,
            record_cameras: 2,
            large: false,
        }
    }
}

/// A `tern run` child process, killed on drop.
struct NodeProc {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn_node(tag: &str, body: &str) -> Result<NodeProc, String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let dir = std::env::temp_dir().join(format!("tern-bench-{}-{tag}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let conf = dir.join("node.conf");
    std::fs::write(&conf, format!("http 127.0.0.1:{port};\n{body}"))
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let log = std::fs::File::create(dir.join("node.log")).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the tern binary: {e}"))?;
    let child = Command::new(exe)
        .arg("run")
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start a node: {e}"))?;
    Ok(NodeProc {
        child,
        port,
        _dir: TempDir(dir),
    })
}

/// User and system CPU time of a process, in seconds (Linux /proc).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTimes {
    pub user: f64,
    pub system: f64,
}

impl CpuTimes {
    pub fn of(pid: u32) -> Option<CpuTimes> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        // USER_HZ is 100 on Linux.
        Some(CpuTimes {
            user: utime / 100.0,
            system: stime / 100.0,
        })
    }

    fn total(self) -> f64 {
        self.user + self.system
    }

    /// What was used between `self` and `later`.
    pub fn until(self, later: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: later.user - self.user,
            system: later.system - self.system,
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    CpuTimes::of(pid).map(CpuTimes::total)
}

/// Peak resident memory (VmHWM) in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn http_get_text(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Waits until the edge's API lists `n` alive streams.
#[allow(clippy::disallowed_methods)] // bench driver: polls a node until it answers
async fn wait_alive(port: u16, n: usize, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(body) = http_get_text(port, "/streamer/api/v3/streams").await {
            if body.matches("\"alive\": true").count() >= n {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the edge did not list {n} alive streams within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The load generator's cluster client. One RNG for every request, so no two
/// requests share a nonce (the server would refuse the second as a replay).
fn client() -> ClusterClient<TokioNet, TokioClock> {
    static RNG: std::sync::OnceLock<crate::cluster::client::SharedRng> = std::sync::OnceLock::new();
    let rng = RNG.get_or_init(|| {
        let seed = TokioClock::new().utc_ms() ^ u64::from(std::process::id());
        Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)))
    });
    ClusterClient::new(
        TokioNet,
        TokioClock::new(),
        rng.clone(),
        ClusterAuth::new(KEY.as_bytes()),
    )
}

type Arrivals = Arc<Mutex<BTreeMap<(usize, Position), Duration>>>;

/// Subscribes to stream `s{i}` over M4S and records when each frame arrives.
#[allow(clippy::disallowed_methods)] // bench driver: reads until the phase ends
async fn record(
    port: u16,
    i: usize,
    arrivals: Arrivals,
    capture_ms: Arc<Mutex<Vec<u64>>>,
    t0: Instant,
    until: Instant,
) {
    let c = client();
    let mut stream = match c
        .open("127.0.0.1", port, &format!("/tern/v1/m4s/s{i}"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tern bench: subscribing to s{i} on port {port} failed: {e}");
            return;
        }
    };
    // The GOP a new subscriber gets first was captured before it subscribed: only
    // frames captured from now on measure the live path.
    let from_utc = c.clock().utc_ms() + 50;
    while Instant::now() < until {
        let next = tokio::time::timeout_at(until, stream.next()).await;
        let msg = match next {
            Ok(Ok(Some(msg))) => msg,
            Ok(Err(e)) => {
                eprintln!("tern bench: s{i} on port {port}: {e}");
                return;
            }
            _ => return,
        };
        if let Message::Frame(f) = msg {
            if f.capture_ms < from_utc {
                continue;
            }
            let at = Instant::now().duration_since(t0);
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((i, f.pos), at);
            let delay = c.clock().utc_ms().saturating_sub(f.capture_ms);
            capture_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(delay);
        }
    }
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(idx).copied()
}

/// Frames timed at an origin's and an edge's M4S subscribers: how much the edge hop
/// adds, and how far behind capture each side is.
struct HopTimes {
    /// Edge arrival minus origin arrival of the same frame, sorted (µs).
    hop_us: Vec<u128>,
    /// Capture to the origin's subscriber, sorted (ms).
    delay_origin_ms: Vec<u64>,
    /// Capture to the edge's subscriber, sorted (ms).
    delay_edge_ms: Vec<u64>,
}

/// Subscribes to streams `s0`..`s{n-1}` on both nodes for `seconds` and times them.
#[allow(clippy::disallowed_methods)] // bench driver: one task per recorder
async fn time_two_hops(origin: u16, edge: u16, n: usize, seconds: u64) -> HopTimes {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds);
    let at_origin: Arrivals = Arc::default();
    let at_edge: Arrivals = Arc::default();
    let delay_origin = Arc::new(Mutex::new(Vec::new()));
    let delay_edge = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (arrivals, delays) = (at_origin.clone(), delay_origin.clone());
        tasks.push(tokio::spawn(record(origin, i, arrivals, delays, t0, until)));
        let (arrivals, delays) = (at_edge.clone(), delay_edge.clone());
        tasks.push(tokio::spawn(record(edge, i, arrivals, delays, t0, until)));
    }
    for t in tasks {
        let _ = t.await;
    }
    let o = at_origin.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let e = at_edge.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut hop_us: Vec<u128> = e
        .iter()
        .filter_map(|(k, te)| o.get(k).map(|to| te.saturating_sub(*to).as_micros()))
        .collect();
    hop_us.sort_unstable();
    let sorted = |v: &Mutex<Vec<u64>>| {
        let mut v = v.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_unstable();
        v
    };
    HopTimes {
        hop_us,
        delay_origin_ms: sorted(&delay_origin),
        delay_edge_ms: sorted(&delay_edge),
    }
}

#[allow(clippy::disallowed_methods)] // bench driver: one task per recorder
async fn latency_phase(n: usize, seconds: u64) -> Result<(), String> {
    let streams: String = (0..n)
        .map(|i| format!("stream s{i} {{ input fake://fake?width=256&height=16; }}\n"))
        .collect();
    let origin = spawn_node(
        "origin",
        &format!("cluster_key {KEY};\nsegment_duration 1;\n{streams}"),
    )?;
    let edge = spawn_node(
        "edge",
        &format!(
            "cluster_key {KEY};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            origin.port
        ),
    )?;
    wait_alive(edge.port, n, Duration::from_secs(30)).await?;
    let t0 = Instant::now();
    let pids = [origin.child.id(), edge.child.id(), std::process::id()];
    let cpu0: Vec<Option<f64>> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let times = time_two_hops(origin.port, edge.port, n, seconds).await;
    let wall = t0.elapsed().as_secs_f64();
    let busy: Vec<String> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| match (c0, cpu_seconds(*p)) {
            (Some(a), Some(b)) => format!("{:.0}%", (b - a) / wall * 100.0),
            _ => "?".into(),
        })
        .collect();
    let (hop, abs_e) = (times.hop_us, times.delay_edge_ms);
    println!(
        "M4S hop, {n} stream(s) x 25 fps (+audio), {} frames matched: edge adds p50 {} us, p99 {} us, max {} us",
        hop.len(),
        percentile(&hop, 0.5).unwrap_or(0),
        percentile(&hop, 0.99).unwrap_or(0),
        hop.last().copied().unwrap_or(0)
    );
    println!(
        "  capture -> edge subscriber (2 hops, ms resolution): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&abs_e, 0.5).unwrap_or(0),
        percentile(&abs_e, 0.99).unwrap_or(0),
        abs_e.last().copied().unwrap_or(0)
    );
    println!(
        "  CPU while measuring (100% = one core): origin {}, edge {}, load generator {}",
        busy[0], busy[1], busy[2]
    );
    drop(edge);
    drop(origin);
    Ok(())
}

/// One MPEG-TS viewer: counts the bytes it reads until `until`; returns the time to
/// its first byte of video.
#[allow(clippy::disallowed_methods)] // bench driver: reads until the phase ends
async fn viewer(
    port: u16,
    bytes: Arc<std::sync::atomic::AtomicU64>,
    until: Instant,
    buf_len: usize,
) -> Reader {
    let start = Instant::now();
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Reader::Nothing;
    };
    if s.write_all(b"GET /main/mpegts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .is_err()
    {
        return Reader::Nothing;
    }
    let mut buf = vec![0u8; buf_len];
    let mut first = None;
    loop {
        let r = tokio::time::timeout_at(until, s.read(&mut buf)).await;
        match r {
            Ok(Ok(n)) if n > 0 => {
                first.get_or_insert_with(|| start.elapsed());
                bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            // The phase ended with the viewer still reading.
            Err(_) => return first.map_or(Reader::Nothing, Reader::ToTheEnd),
            // Cut, refused or closed before the end.
            _ if first.is_some() => return Reader::EndedEarly,
            _ => return Reader::Nothing,
        }
    }
}

/// How a bench reader did.
enum Reader {
    /// Read until the phase ended; its first bytes came after this long.
    ToTheEnd(Duration),
    /// Read, then its response ended (cut, or closed) before the phase did.
    EndedEarly,
    /// Got no byte (not connected, refused, or nothing sent before the end).
    Nothing,
}

/// The edge's `tern_stream_viewer_skips` and `tern_stream_viewer_cuts` (from
/// `/metrics`; NaN when it does not answer).
async fn viewer_skips_and_cuts(port: u16) -> (f64, f64) {
    let text = http_get_text(port, "/metrics").await.unwrap_or_default();
    let get = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (
        get("tern_stream_viewer_skips"),
        get("tern_stream_viewer_cuts"),
    )
}

/// What one server's fan-out measured.
pub(crate) struct FanoutFigures {
    /// Mbit the readers got while measuring.
    pub mbit: f64,
    /// Seconds measured.
    pub wall: f64,
    /// The server's CPU while measuring.
    pub cpu: CpuTimes,
    /// The server's peak resident memory.
    pub rss_mib: f64,
}

impl FanoutFigures {
    fn per_cpu(&self) -> f64 {
        self.mbit / self.cpu.total()
    }

    fn per_user(&self) -> f64 {
        self.mbit / self.cpu.user
    }

    fn print(&self, server: &str, viewers: usize) {
        println!(
            "  {server}: {viewers} readers, {:.1} s: relayed {:.1} Mbit/s; CPU user {:.2} s + system {:.2} s ({:.0}% of one core); {:.0} Mbit per CPU-s, {:.0} Mbit per user CPU-s; peak RSS {:.1} MiB ({:.1} KiB per reader)",
            self.wall,
            self.mbit / self.wall,
            self.cpu.user,
            self.cpu.system,
            self.cpu.total() / self.wall * 100.0,
            self.per_cpu(),
            self.per_user(),
            self.rss_mib,
            self.rss_mib * 1024.0 / viewers.max(1) as f64,
        );
    }
}

#[allow(clippy::disallowed_methods)] // bench driver: one task per viewer, warm-up and measuring windows
async fn fanout_phase(
    viewers: usize,
    seconds: u64,
    bitrate: u64,
    nginx: Option<&nginx::Tools>,
) -> Result<(), String> {
    // Below 1 Mbit/s a small picture at 5 fps: the fake source's own rate (its
    // uncompressed keyframes) would otherwise be several times the bit rate.
    let size = if bitrate < 1_000_000 {
        "&width=256&height=16&fps=5"
    } else {
        ""
    };
    let origin = spawn_node(
        "origin",
        &format!("cluster_key {KEY};\nsegment_duration 1;\nstream main {{ input fake://fake?bitrate={bitrate}{size}; }}\n"),
    )?;
    // Room for every reader (the default max_connections is 4096).
    let edge = spawn_node(
        "edge",
        &format!(
            "cluster_key {KEY};\nmax_connections {};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
            (viewers + 256).max(4096),
            origin.port
        ),
    )?;
    wait_alive(edge.port, 1, Duration::from_secs(30)).await?;
    let pid = edge.child.id();

    // Time to first frame for a new M4S subscriber on the edge.
    let mut ttff = Vec::new();
    for _ in 0..10 {
        let c = client();
        let start = Instant::now();
        if let Ok(mut s) = c.open("127.0.0.1", edge.port, "/tern/v1/m4s/main").await {
            while let Ok(Some(m)) = s.next().await {
                if matches!(m, Message::Frame(_)) {
                    ttff.push(start.elapsed().as_micros());
                    break;
                }
            }
        }
    }
    ttff.sort_unstable();

    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Connecting many viewers takes a while on a busy machine: more warm-up for more.
    let warmup = Instant::now() + Duration::from_secs(1) + Duration::from_millis(viewers as u64);
    let until = warmup + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    // 64 KiB each, 8 KiB past 3000 readers (this process's memory).
    let buf_len = if viewers > 3000 { 8 * 1024 } else { 64 * 1024 };
    for _ in 0..viewers {
        tasks.push(tokio::spawn(viewer(
            edge.port,
            bytes.clone(),
            until,
            buf_len,
        )));
    }
    tokio::time::sleep_until(warmup).await;
    let cpu0 = CpuTimes::of(pid);
    let b0 = bytes.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep_until(until).await;
    let cpu1 = CpuTimes::of(pid);
    let b1 = bytes.load(std::sync::atomic::Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let rss_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let (skips, cuts) = viewer_skips_and_cuts(edge.port).await;
    let mut first_bytes = Vec::new();
    let (mut ended_early, mut never) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(Reader::ToTheEnd(d)) => first_bytes.push(d.as_micros()),
            Ok(Reader::EndedEarly) => ended_early += 1,
            Ok(Reader::Nothing) | Err(_) => never += 1,
        }
    }
    first_bytes.sort_unstable();
    let tern = FanoutFigures {
        mbit: (b1 - b0) as f64 * 8.0 / 1e6,
        wall,
        cpu: match (cpu0, cpu1) {
            (Some(a), Some(b)) => a.until(b),
            _ => return Err("cannot read the edge's CPU time from /proc".into()),
        },
        rss_mib,
    };
    println!(
        "fan-out, 1 stream ({} kbit/s) to {viewers} readers ({} of them reading):",
        bitrate / 1000,
        first_bytes.len()
    );
    tern.print("Tern edge (M4S from the origin, MPEG-TS readers)", viewers);
    println!(
        "  {:.0} kbit/s per reader; readers that ended before the phase did: {ended_early}, that got nothing: {never}; the edge's count of viewers skipped to a keyframe: {skips}, cut: {cuts}",
        tern.mbit * 1000.0 / tern.wall / first_bytes.len().max(1) as f64
    );
    println!(
        "  time to first frame, new M4S subscriber on the edge: p50 {} us, max {} us; MPEG-TS first byte under load: p50 {} us, max {} us",
        percentile(&ttff, 0.5).unwrap_or(0),
        ttff.last().copied().unwrap_or(0),
        percentile(&first_bytes, 0.5).unwrap_or(0),
        first_bytes.last().copied().unwrap_or(0)
    );
    drop(edge);
    if let Some(tools) = nginx {
        // One server at a time: the edge is gone; the origin feeds nginx's publisher.
        match nginx::fanout(tools, origin.port, viewers, seconds).await {
            Ok(ng) => {
                ng.print(
                    "nginx-rtmp (ffmpeg publishing the origin's MPEG-TS, rtmpdump readers)",
                    viewers,
                );
                println!(
                    "  Tern / nginx-rtmp at {viewers} readers: {:.2}x Mbit per CPU-s, {:.2}x Mbit per user CPU-s",
                    tern.per_cpu() / ng.per_cpu(),
                    tern.per_user() / ng.per_user()
                );
            }
            Err(e) => println!("  nginx-rtmp at {viewers} readers: skipped: {e}"),
        }
    }
    Ok(())
}

/// DVR index figures, then the M4F archive transfer rate beside a plain read of the
/// same segment files.
#[allow(clippy::disallowed_methods)] // bench driver: disk reads on the blocking pool, settle time
async fn archive_phase(mib: u64, versions: &[ProtocolVersion]) -> Result<(), String> {
    for n in [1_300_000usize, 100_000] {
        let ib = tokio::task::spawn_blocking(move || crate::dvr::bench_index(n))
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "DVR index of {} segments (journal {:.1} MB): range lookup {:.1} us, ranges() {:.1} us, load {:.0} ms",
            ib.entries,
            ib.journal_bytes as f64 / 1e6,
            ib.lookup.as_secs_f64() * 1e6,
            ib.ranges.as_secs_f64() * 1e6,
            ib.load.as_secs_f64() * 1e3
        );
    }

    // Generate `mib` MiB of 2 s segments an hour in the past, straight into a DVR;
    // less if the disk is short (disks here can be), leaving it at least 3/4 free.
    let tmp = std::env::temp_dir();
    let mib = match free_mib(&tmp) {
        Some(free) if free / 4 < mib => {
            println!(
                "M4F archive: only {free} MiB free under {}; generating {} MiB instead of {mib} MiB",
                tmp.display(),
                free / 4
            );
            free / 4
        }
        Some(free) => {
            println!(
                "M4F archive: generating {mib} MiB under {} ({free} MiB free)",
                tmp.display()
            );
            mib
        }
        None => {
            println!(
                "M4F archive: free space under {} unknown (no `df`); generating {mib} MiB",
                tmp.display()
            );
            mib
        }
    };
    if mib == 0 {
        return Ok(());
    }
    let dir = tmp.join(format!("tern-bench-archive-{}", std::process::id()));
    let _cleanup = TempDir(dir.clone());
    let name = tern_core::StreamName::new("main").map_err(|e| e.to_string())?;
    let store: Arc<dyn crate::dvr::DvrStore> = Arc::new(crate::dvr::FsStore::new(dir.clone()));
    let dvr_config = tern_core::config::DvrConfig {
        path: dir.display().to_string(),
        depth_secs: None,
        limit_bytes: None,
    };
    let dvr = crate::dvr::Dvr::open(store, name.clone(), dvr_config)
        .await
        .map_err(|e| e.to_string())?;
    let opts = tern_core::fake::FakeOptions {
        bitrate: Some(40_000_000),
        ..Default::default()
    };
    let mut src = tern_core::fake::FakeSource::new(&opts, 1);
    let mut segmenter = tern_core::segmenter::Segmenter::new(2000, Arc::new(src.media_info()));
    let base = TokioClock::new().utc_ms().saturating_sub(3_600_000);
    let (mut stored, mut first, mut last_end) = (0u64, None, 0u64);
    while stored < mib << 20 {
        let capture = base + src.next_due().as_millis() as u64;
        if let Some(seg) = segmenter.push(src.next_frame(capture)) {
            first.get_or_insert(seg.utc_start_ms);
            last_end = seg.end_utc_ms();
            stored += seg.payload_bytes() as u64;
            dvr.record(&seg).await.map_err(|e| e.to_string())?;
        }
    }
    let from = first.unwrap_or(base);
    drop(dvr);

    // Plain read of the same files.
    let seg_dir = dir.join("main");
    let files: Vec<PathBuf> = std::fs::read_dir(&seg_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tseg"))
                .collect()
        })
        .unwrap_or_default();
    let t = Instant::now();
    let plain = tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        if let Ok(rd) = std::fs::read_dir(&seg_dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "tseg") {
                    total += std::fs::read(e.path()).map_or(0, |b| b.len() as u64);
                }
            }
        }
        total
    })
    .await
    .map_err(|e| e.to_string())?;
    let plain_s = t.elapsed().as_secs_f64();

    // The same range over M4F from an origin process, in each protocol version.
    let origin = spawn_node(
        "archive-origin",
        &format!(
            "cluster_key {KEY};\nstream main {{ input fake://fake?width=256&height=16; dvr {}; }}\n",
            dir.display()
        ),
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plain_mbs = plain as f64 / 1e6 / plain_s;
    println!(
        "  plain read of the same files: {:.0} MB in {plain_s:.2} s = {plain_mbs:.0} MB/s (page cache warm: the files were just written)",
        plain as f64 / 1e6,
    );
    // What any M4F version is bounded by here: the same files read and written to a
    // loopback socket by one thread, read by another (no HTTP, no framing), then the
    // same with the receiver hashing what it reads (BLAKE3, as a receiver must
    // check a segment's digest).
    for hash in [false, true] {
        let files = files.clone();
        let me0 = CpuTimes::of(std::process::id());
        let t = Instant::now();
        let copied = tokio::task::spawn_blocking(move || tcp_copy(&files, hash))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("loopback copy: {e}"))?;
        let s = t.elapsed().as_secs_f64();
        let mbs = copied as f64 / 1e6 / s;
        let cpu = match (me0, CpuTimes::of(std::process::id())) {
            (Some(a), Some(b)) => {
                let d = a.until(b);
                format!("user {:.2} s, system {:.2} s", d.user, d.system)
            }
            _ => "?".into(),
        };
        println!(
            "  bound: the same files over a bare loopback TCP socket{}: {:.0} MB in {s:.2} s = {mbs:.0} MB/s = {:.0}% of the plain read; CPU of both ends (this process) {cpu}",
            if hash { ", receiver hashing (BLAKE3)" } else { "" },
            copied as f64 / 1e6,
            mbs / plain_mbs * 100.0,
        );
    }
    for &version in versions {
        let path = format!(
            "{}archive/main?from={from}&to={last_end}",
            version.path_prefix()
        );
        let pid = origin.child.id();
        let (origin0, me0) = (CpuTimes::of(pid), CpuTimes::of(std::process::id()));
        let t = Instant::now();
        let mut stream = client()
            .open_version(version, "127.0.0.1", origin.port, &path)
            .await
            .map_err(|e| e.to_string())?;
        let (mut segments, mut bytes) = (0u64, 0u64);
        loop {
            match stream.next().await {
                Ok(Some(Message::Segment(s))) => {
                    segments += 1;
                    bytes += tern_core::segment_codec::encoded_len_hint(&s) as u64;
                }
                Ok(Some(Message::ArchiveEnd { .. })) | Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) => return Err(format!("archive transfer failed: {e}")),
            }
        }
        let m4f_s = t.elapsed().as_secs_f64();
        let cpu = |a: Option<CpuTimes>, pid: u32| match (a, CpuTimes::of(pid)) {
            (Some(a), Some(b)) => {
                let d = a.until(b);
                format!("user {:.2} s, system {:.2} s", d.user, d.system)
            }
            _ => "?".into(),
        };
        let mbs = bytes as f64 / 1e6 / m4f_s;
        println!(
            "  M4F archive {version} ({}) on loopback: {segments} segments, {:.0} MB in {m4f_s:.2} s = {mbs:.0} MB/s = {:.0}% of the plain read; origin CPU {}; receiver (this process) CPU {}",
            match version {
                ProtocolVersion::V1 => "HMAC-SHA256 tags",
                ProtocolVersion::V2 => "keyed BLAKE3 tags",
                ProtocolVersion::V3 => "keyed BLAKE3 tags, segments by digest",
            },
            bytes as f64 / 1e6,
            mbs / plain_mbs * 100.0,
            cpu(origin0, pid),
            cpu(me0, std::process::id()),
        );
    }
    Ok(())
}

/// Reads `files` and writes them to a loopback TCP socket; another blocking thread
/// reads them (1 MiB reads), hashing what it reads if `hash`. Returns the bytes
/// received.
#[allow(clippy::disallowed_methods)] // bench driver: the receiving end on the blocking pool
fn tcp_copy(files: &[PathBuf], hash: bool) -> std::io::Result<u64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    // Connected before the receiver starts (the backlog holds it): nothing waits on
    // a peer that never comes.
    let mut out = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (mut sock, _) = listener.accept()?;
    let receiver = tokio::runtime::Handle::current().spawn_blocking(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if hash {
                hasher.update(&buf[..n]);
            }
            total += n as u64;
        }
        std::hint::black_box(hasher.finalize());
        Ok::<u64, std::io::Error>(total)
    });
    for f in files {
        out.write_all(&std::fs::read(f)?)?;
    }
    drop(out);
    tokio::runtime::Handle::current()
        .block_on(receiver)
        .map_err(std::io::Error::other)?
}

/// Free MiB on the file system holding `dir`, as `df -Pk` reports it.
fn free_mib(dir: &std::path::Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // POSIX format: a header line, then `fs blocks used available capacity mount`.
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Runs the benchmark and prints the figures.
pub fn run(args: BenchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The readers are this process's sockets: as many as the system allows.
    let _ = crate::fd_limit::raise();
    println!(
        "tern bench: origin and edge are separate processes on loopback; the load generator (this process) shares the machine's {} cores with them",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let result = rt.block_on(async move {
        for n in &args.streams {
            latency_phase(*n, args.seconds).await?;
        }
        let nginx = if args.peer_nginx {
            match nginx::Tools::find() {
                Ok(t) => Some(t),
                Err(e) => {
                    println!("--peer-nginx: skipped: {e}");
                    None
                }
            }
        } else {
            None
        };
        for v in &args.viewers {
            fanout_phase(*v, args.seconds, args.bitrate, nginx.as_ref()).await?;
        }
        if args.large {
            // Not through nginx-rtmp: 10 000 rtmpdump processes would measure the
            // machine, not the server.
            fanout_phase(LARGE_VIEWERS, LARGE_SECONDS, LARGE_BITRATE, None).await?;
        }
        if args.archive_mib > 0 {
            archive_phase(args.archive_mib, &args.archive_versions).await?;
        }
        if args.cameras > 0 {
            ingest::ingest_phase(args.cameras, args.seconds, CAMERA_BITRATE).await?;
        }
        if args.record_cameras > 0 {
            record::record_phase(args.record_cameras, args.seconds, CAMERA_BITRATE).await?;
        }
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern bench: {e}");
            ExitCode::FAILURE
        }
    }
}
