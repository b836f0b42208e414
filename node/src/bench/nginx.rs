//! `tern bench --peer-nginx`: the fan-out of one stream through nginx-rtmp, measured
//! the way the Tern edge is (bytes the readers got, the server's user and system
//! CPU from /proc), so both servers' figures come from one run.
//!
//! Owns: finding nginx (with its RTMP module), rtmpdump and ffmpeg; nginx's temporary
//! config; the ffmpeg publisher (which pulls the Tern origin's MPEG-TS output and
//! pushes it to nginx as RTMP, so both servers relay the same stream); the rtmpdump
//! readers. Must not: assert anything, or leave a process behind (every child is
//! killed on drop).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{free_port, peak_rss_mib, CpuTimes, FanoutFigures, TempDir};

/// Where Debian puts the RTMP module.
const MODULE_PATHS: [&str; 2] = [
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
];
/// The command that installs what `--peer-nginx` needs on Debian.
pub const INSTALL: &str = "apt-get install -y nginx libnginx-mod-rtmp rtmpdump ffmpeg";

/// The programs the comparison runs.
pub struct Tools {
    nginx: PathBuf,
    module: PathBuf,
    rtmpdump: PathBuf,
    ffmpeg: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    /// The tools, or a sentence naming what is missing and how to install it.
    pub fn find() -> Result<Tools, String> {
        let module = MODULE_PATHS.iter().map(Path::new).find(|p| p.is_file());
        let (nginx, rtmpdump, ffmpeg) = (which("nginx"), which("rtmpdump"), which("ffmpeg"));
        let mut missing = Vec::new();
        if nginx.is_none() {
            missing.push("nginx");
        }
        if module.is_none() {
            missing.push("the nginx RTMP module (libnginx-mod-rtmp)");
        }
        if rtmpdump.is_none() {
            missing.push("rtmpdump");
        }
        if ffmpeg.is_none() {
            missing.push("ffmpeg");
        }
        match (nginx, module, rtmpdump, ffmpeg) {
            (Some(nginx), Some(module), Some(rtmpdump), Some(ffmpeg)) => Ok(Tools {
                nginx,
                module: module.to_path_buf(),
                rtmpdump,
                ffmpeg,
            }),
            _ => Err(format!("{} not installed ({INSTALL})", missing.join(", "))),
        }
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child, String> {
    cmd.kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))
}

/// Reads one reader's output until `until`, counting bytes.
#[allow(clippy::disallowed_methods)] // bench driver: reads until the phase ends
async fn count(mut child: Child, bytes: Arc<AtomicU64>, until: Instant) {
    let Some(mut out) = child.stdout.take() else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(until, out.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ => break,
        }
    }
    let _ = child.kill().await;
}

/// nginx-rtmp relaying the origin's stream `main` to `viewers` rtmpdump readers for
/// `seconds` (after a 2 s warm-up).
#[allow(clippy::disallowed_methods)] // bench driver: nginx start-up, one task per reader, measuring windows
pub async fn fanout(
    tools: &Tools,
    origin_port: u16,
    viewers: usize,
    seconds: u64,
) -> Result<FanoutFigures, String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let dir = std::env::temp_dir().join(format!("tern-bench-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());
    // One process, no master: the PID measured is the one doing the work.
    let conf = format!(
        "load_module {module};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
         worker_rlimit_nofile 30000;\nerror_log {dir}/logs/error.log warn;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 25000; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n  application live {{ live on; }} }} }}\n",
        module = tools.module.display(),
        dir = dir.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
    let nginx = spawn(
        Command::new(&tools.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "nginx",
    )?;
    let pid = nginx.id().ok_or("nginx exited at once")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("rtmp://127.0.0.1:{port}/live/main");
    let _publisher = spawn(
        Command::new(&tools.ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(format!("http://127.0.0.1:{origin_port}/main/mpegts"))
            .args(["-c", "copy", "-bsf:a", "aac_adtstoasc", "-f", "flv"])
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "ffmpeg (the RTMP publisher)",
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let bytes = Arc::new(AtomicU64::new(0));
    let warmup =
        Instant::now() + Duration::from_secs(2) + Duration::from_millis(5 * viewers as u64);
    let until = warmup + Duration::from_secs(seconds);
    let mut readers = Vec::with_capacity(viewers);
    for _ in 0..viewers {
        let child = spawn(
            Command::new(&tools.rtmpdump)
                .args(["-q", "--live", "-r"])
                .arg(&url)
                .args(["-o", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "rtmpdump",
        )?;
        readers.push(tokio::spawn(count(child, bytes.clone(), until)));
    }
    tokio::time::sleep_until(warmup).await;
    let cpu0 = CpuTimes::of(pid);
    let b0 = bytes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep_until(until).await;
    let cpu1 = CpuTimes::of(pid);
    let b1 = bytes.load(Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let rss_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
    for r in readers {
        let _ = r.await;
    }
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => a.until(b),
        _ => return Err("cannot read nginx's CPU time from /proc".into()),
    };
    if b1 == b0 {
        return Err(format!(
            "the rtmpdump readers got nothing from nginx-rtmp (see {}/logs/error.log)",
            dir.display()
        ));
    }
    Ok(FanoutFigures {
        mbit: (b1 - b0) as f64 * 8.0 / 1e6,
        wall,
        cpu,
        rss_mib,
    })
}
