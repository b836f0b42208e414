//! The `tern` command line: `tern [run [CONFIG]]`, `tern check CONFIG`. Sets up logs
//! (tracing to stderr, time since start), the tokio runtime and signal handling
//! (`SIGINT`/`SIGTERM` stop, `SIGHUP` reloads the config file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_core::config::{self, Config};
use tern_net::{TokioClock, TokioNet};
use tracing::{error, info};

/// The config `tern` runs with no arguments.
pub const DEMO_CONFIG: &str = include_str!("demo.conf");

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Tern: a media-server node for clusters (live HLS / MPEG-TS, cluster restreaming, DVR)",
    long_about = "Tern: a media-server node for clusters.\n\nWith no command, runs an embedded demo config: one fake stream on port 8080."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with CONFIG (or the embedded demo config when CONFIG is omitted).
    Run {
        /// Path of the config file.
        config: Option<PathBuf>,
    },
    /// Check a config file and report errors with line and column, like `nginx -t`.
    Check {
        /// Path of the config file.
        config: PathBuf,
    },
    /// Run an origin and an edge on loopback and print latency, CPU and memory
    /// figures (see README "Benchmark").
    Bench {
        /// Stream counts for the M4S latency phase.
        #[arg(long, value_delimiter = ',', default_value = "1,100")]
        streams: Vec<usize>,
        /// Reader counts for the fan-out phase.
        #[arg(long, value_delimiter = ',', default_value = "100,300,1000")]
        viewers: Vec<usize>,
        /// Add a fan-out run with 10 000 readers of a 100 kbit/s stream for 30 s
        /// (peak RSS per reader, skipped and cut viewers printed).
        #[arg(long)]
        large: bool,
        /// Run each fan-out through nginx-rtmp too (nginx, libnginx-mod-rtmp,
        /// rtmpdump, ffmpeg), side by side; skipped with a message when missing.
        #[arg(long)]
        peer_nginx: bool,
        /// Seconds each phase measures.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Bit rate of the fanned-out stream, bit/s.
        #[arg(long, default_value_t = 2_400_000)]
        bitrate: u64,
        /// MiB of archive to generate for the M4F transfer figure (0 skips it).
        #[arg(long, default_value_t = 300)]
        archive_mib: u64,
        /// Cameras of 2 Mbit/s: RTSP cameras (from GStreamer's RTSP server) for the
        /// ingest phase, and cameras recording into one DVR root for the record
        /// phase; 0 skips both.
        #[arg(long, default_value_t = 100)]
        cameras: usize,
        /// Cluster protocol versions the M4F archive transfer runs in (default: all
        /// this build speaks), e.g. `--archive-versions 3` to profile one.
        #[arg(long, value_delimiter = ',')]
        archive_versions: Vec<u16>,
        /// A tiny run that only checks the benchmark works (1 stream, 5 viewers, 1 s).
        #[arg(long)]
        smoke: bool,
        /// Run only these parts: `latency`, `fanout`, `archive`, `ingest`
        /// (comma-separated; default all).
        #[arg(long, value_delimiter = ',', value_enum)]
        only: Vec<crate::bench::Part>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => check(&config),
        Some(Command::Run { config }) => run(config.as_deref()),
        Some(Command::Bench {
            streams,
            viewers,
            seconds,
            bitrate,
            archive_mib,
            archive_versions,
            large,
            peer_nginx,
            cameras,
            smoke,
            only,
        }) => crate::bench::run(if smoke {
            crate::bench::BenchArgs::smoke()
        } else {
            use crate::bench::Part;
            let wants = |part| only.is_empty() || only.contains(&part);
            let streams = if wants(Part::Latency) {
                streams
            } else {
                vec![]
            };
            let mut viewers = viewers;
            if !wants(Part::Fanout) {
                viewers.clear();
            }
            let large = large && wants(Part::Fanout);
            let archive_mib = if wants(Part::Archive) { archive_mib } else { 0 };
            let ingest_cameras = if wants(Part::Ingest) { cameras } else { 0 };
            let record_cameras = if wants(Part::Record) { cameras } else { 0 };
            let mut versions = Vec::new();
            for n in archive_versions {
                match tern_core::cluster::ProtocolVersion::from_number(n) {
                    Some(v) => versions.push(v),
                    None => {
                        eprintln!(
                            "tern bench: --archive-versions: this build speaks {}, not v{n}",
                            tern_core::cluster::ProtocolVersion::spoken()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
            if versions.is_empty() {
                versions = tern_core::cluster::ProtocolVersion::ALL.to_vec();
            }
            crate::bench::BenchArgs {
                streams,
                viewers,
                seconds,
                bitrate,
                archive_mib,
                archive_versions: versions,
                peer_nginx,
                cameras: ingest_cameras,
                record_cameras,
                large,
            }
        }),
        None => run(None),
    }
}

/// Threads for blocking file I/O (DVR reads and writes), at most: 100 archive
/// readers must not mean 100 threads, each with its own allocator arena (tokio's
/// default is 512). Past it, file operations wait their turn.
pub const MAX_BLOCKING_THREADS: usize = 32;

pub use crate::operator::MAX_CONFIG_BYTES;

/// `1 stream`, `2 streams`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `tern check CONFIG`: the config file, and its state file (`CONFIG.state`, the
/// API's changes) when there is one, checked as `tern run` would read them.
fn check(path: &Path) -> ExitCode {
    match crate::operator::load_files(path) {
        Ok(files) => {
            let cfg = &files.file;
            for w in cfg.warnings() {
                eprintln!("{}: warning: {w}", path.display());
            }
            println!(
                "{}: configuration is valid ({}, {})",
                path.display(),
                count(cfg.streams.len(), "stream"),
                count(cfg.sources.len(), "source")
            );
            let st = &files.state;
            if !st.put.is_empty() || !st.deleted.is_empty() {
                println!(
                    "{}: valid: {} put and {} deleted through the API; the node runs {}",
                    files.state_path.display(),
                    count(st.put.len(), "stream"),
                    st.deleted.len(),
                    count(files.running().streams.len(), "stream")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .init();
}

fn run(path: Option<&Path>) -> ExitCode {
    init_logs();
    let files = match path.map(crate::operator::load_files) {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let (cfg, demo) = match &files {
        Some(f) => {
            if !f.state.put.is_empty() || !f.state.deleted.is_empty() {
                info!(
                    put = f.state.put.len(),
                    deleted = f.state.deleted.len(),
                    "applying the streams changed through the API from {}",
                    f.state_path.display()
                );
            }
            (f.running(), false)
        }
        None => match config::parse(DEMO_CONFIG) {
            Ok(c) => (c, true),
            Err(e) => {
                error!("embedded demo config is invalid: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::fd_limit::raise() {
        Some(l) => info!(
            soft_before = l.before,
            soft = l.now,
            hard = l.hard,
            "file descriptor limit"
        ),
        None => tracing::warn!("cannot read the file descriptor limit"),
    }
    rt.block_on(async move {
        crate::malloc_trim::start();
        let seed = os_seed();
        info!(seed, "node RNG seeded from the OS");
        let started = match files {
            Some(f) => crate::runtime::start_from_files(f, TokioNet, TokioClock::new(), seed).await,
            None => crate::start_seeded(&cfg, TokioNet, TokioClock::new(), seed).await,
        };
        let node = match started {
            Ok(n) => n,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        print_urls(&cfg, node.local_addrs(), demo);
        signals(&node).await;
        info!("stopping");
        node.shutdown().await;
        info!("stopped");
        ExitCode::SUCCESS
    })
}

/// 8 bytes from the OS for the node's RNG (nonces, backoff jitter); the wall clock
/// if /dev/urandom is unreadable (nonces then stay unique, just predictable).
fn os_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => tern_net::Clock::utc_ms(&TokioClock::new()) ^ u64::from(std::process::id()),
    }
}

fn print_urls(cfg: &Config, addrs: &[std::net::SocketAddr], demo: bool) {
    let Some(addr) = addrs.first() else { return };
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    if demo {
        eprintln!("tern: running the embedded demo config (see `tern --help` to run your own)");
    }
    for s in &cfg.streams {
        eprintln!(
            "  {}: http://{host}/{}/index.m3u8   http://{host}/{}/mpegts",
            s.name, s.name, s.name
        );
        eprintln!(
            "      watch: ffplay -fflags nobuffer http://{host}/{}/mpegts",
            s.name
        );
    }
    eprintln!("  API: http://{host}/streamer/api/v3/streams");
}

/// Waits for `SIGINT`/`SIGTERM` (then returns, to stop the node); on each
/// `SIGHUP`, reloads the config file and logs what changed.
#[cfg(unix)]
async fn signals<C: tern_net::Clock>(node: &crate::RunningNode<C>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload through the API instead");
        return shutdown_signal().await;
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return,
            Some(()) = hup.recv() => {
                info!("SIGHUP: reloading the config");
                match node.reload().await {
                    // The operator task logged what changed.
                    Ok(r) => {
                        for f in &r.failed {
                            error!(stream = %f.name, "did not start: {}", f.error);
                        }
                    }
                    Err(e) => error!("{e}"),
                }
            }
        }
    }
}

#[cfg(not(unix))]
async fn signals<C: tern_net::Clock>(_node: &crate::RunningNode<C>) {
    shutdown_signal().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 6: `tern check /dev/zero` grew memory without bound and a FIFO hung.
    /// Both are refused from their metadata, and so is a file over the size limit.
    #[test]
    fn check_refuses_what_cannot_be_a_config() {
        let e = crate::operator::load_config(Path::new("/dev/zero"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("not a regular file"), "{e}");
        let dir = std::env::temp_dir().join(format!("tern-cli-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("fifo.conf");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if made {
            let e = crate::operator::load_config(&fifo)
                .err()
                .unwrap_or_default();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let big = dir.join("big.conf");
        let f = std::fs::File::create(&big).unwrap_or_else(|e| panic!("{e}"));
        f.set_len(MAX_CONFIG_BYTES + 1)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = crate::operator::load_config(&big).err().unwrap_or_default();
        assert!(e.contains("larger than 4 MiB"), "{e}");
        let ok = dir.join("ok.conf");
        std::fs::write(&ok, "http 8080;\nstream main {\n  input fake://fake;\n}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            crate::operator::load_config(&ok).is_ok(),
            "{:?}",
            crate::operator::load_config(&ok).err()
        );
        // `tern check` reads the state file beside it too, as `tern run` does.
        let state = dir.join("ok.conf.state");
        assert!(crate::operator::load_files(&ok).is_ok());
        std::fs::write(
            &state,
            r#"{"tern_state": 1, "streams": {"x": {"inputs": []}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = crate::operator::load_files(&ok).err().unwrap_or_default();
        assert!(
            e.contains("ok.conf.state") && e.contains("has no `input`"),
            "{e}"
        );
        std::fs::write(&state, r#"{"tern_state": 1, "deleted": ["main"]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let files = crate::operator::load_files(&ok).unwrap_or_else(|e| panic!("{e}"));
        assert!(files.running().streams.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
