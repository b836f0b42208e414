//! # tern-sim
//!
//! Runs real Tern node runtimes as turmoil hosts on simulated network and time
//! (docs/simulation.md): a simulation builder with a pinned epoch, a seed and a fixed link
//! latency, hosts built from config text (seeded per node, restartable, optionally with
//! a config the test switches between starts), an HTTP client for client hosts, a
//! [`Cluster`] wrapping them, trace fingerprints ([`Trace`]), fault schedules
//! ([`faults`]), observers and oracles ([`oracle`]), the archive client and its
//! oracles ([`archive`]), a tampering man in the middle ([`mitm`]) and the seed sweep
//! ([`sweep`]); and beside all that, the pure simulator ([`vopr`]), which drives
//! core's machines directly with no runtime at all.
//!
//! Simulated nodes never touch the real disk: every node records to in-memory disks
//! ([`tern_node::dvr::MemDisks`], one set per host, kept across its restarts; see
//! [`NodeSpec::disks`]), and the [`Cluster`] cuts their power when it crashes the host.
//!
//! Owns: the harness. Must not: be depended on by core, net or node, read the real
//! clock or the OS's randomness (the simulation must replay from its seed), or let a
//! node use the real filesystem.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tern_net::{Net, TurmoilClock, TurmoilNet};
use tern_node::dvr::{DvrStores, MemDisks};

pub mod archive;
pub mod cluster;
pub mod faults;
pub mod mitm;
pub mod oracle;
pub mod sweep;
pub mod throttle;
pub mod trace;
pub mod vopr;

pub use cluster::Cluster;
pub use trace::{fnv1a64, Trace};

/// The simulation's wall-clock origin, pinned so traces do not depend on the real
/// date: 2026-01-01T00:00:00Z.
pub const SIM_EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// [`SIM_EPOCH_UNIX_SECS`] in milliseconds: subtract it from a UTC time of the
/// simulation to get simulated milliseconds since the start.
pub const SIM_EPOCH_MS: u64 = SIM_EPOCH_UNIX_SECS * 1000;

/// The one-way latency of every simulated link, fixed (min = max) so that the latency
/// oracles have an exact bound: a hop may take this plus [`oracle::HOP_SLACK`].
pub const LINK_LATENCY: Duration = Duration::from_millis(10);

/// The default turmoil tick: each step of a simulation advances every host by this.
/// Timers fire at their exact time within a tick; a message is handed to its host at
/// the start of a tick, so a link's latency is [`LINK_LATENCY`] minus less than one
/// tick (turmoil stamps a message sent during a tick as sent at the tick's end).
pub const TICK: Duration = Duration::from_millis(1);

/// A turmoil simulation with Tern's defaults: the given seed, a pinned epoch, a
/// [`TICK`] tick, every link [`LINK_LATENCY`] exactly, and `duration` of simulated
/// time.
pub fn builder(seed: u64, duration: Duration) -> turmoil::Builder {
    builder_with_tick(seed, duration, TICK)
}

/// As [`builder`], with a tick of `tick` (see [`TICK`]; at most [`LINK_LATENCY`]).
pub fn builder_with_tick(seed: u64, duration: Duration, tick: Duration) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_UNIX_SECS))
        .simulation_duration(duration)
        .tick_duration(tick.min(LINK_LATENCY))
        .min_message_latency(LINK_LATENCY)
        .max_message_latency(LINK_LATENCY);
    b
}

/// A config the test can change between two starts of a host (crash, then bounce):
/// each start of the node reads the current text.
#[derive(Clone, Debug)]
pub struct ConfigSlot(Arc<Mutex<String>>);

impl ConfigSlot {
    pub fn new(config: &str) -> Self {
        ConfigSlot(Arc::new(Mutex::new(config.to_owned())))
    }

    /// The config the next start of the host will use.
    pub fn set(&self, config: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = config.to_owned();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How to start a node host.
#[derive(Clone)]
pub struct NodeSpec {
    pub config: ConfigSlot,
    /// Seed of the node's RNG (nonces, backoff jitter); each restart mixes in the
    /// number of the start, so a restarted node does not replay its nonces.
    pub seed: u64,
    /// Simulated time the host waits before starting the node (to give two origins
    /// started together different source epochs, which are UTC ms of the start).
    pub start_delay: Duration,
    /// The host's disks: every `dvr PATH` (and `cache PATH`) of the node is an
    /// in-memory store here, never a real directory. Shared by every start of the
    /// host, so a restarted node finds what it recorded, minus what the power cut of
    /// a crash ([`MemDisks::crash`], applied by [`Cluster::apply`]) dropped.
    pub disks: Arc<MemDisks>,
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .field("start_delay", &self.start_delay)
            .field(
                "disks",
                &self
                    .disks
                    .disks()
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NodeSpec {
    pub fn new(config: &str, seed: u64) -> Self {
        NodeSpec {
            config: ConfigSlot::new(config),
            seed,
            start_delay: Duration::ZERO,
            disks: MemDisks::new(),
        }
    }
}

/// A node's seed from the simulation's seed and the host name.
pub fn node_seed(sim_seed: u64, name: &str) -> u64 {
    let mut h = trace::Fnv64::new();
    h.write(&sim_seed.to_be_bytes());
    h.write(name.as_bytes());
    h.finish()
}

/// Adds a host named `name` running a Tern node with `config` (config text), its
/// RNG seeded from the name. The host can be crashed and restarted: each start parses
/// the config anew.
pub fn add_node(sim: &mut turmoil::Sim<'_>, name: &str, config: &str) {
    add_node_with(sim, name, NodeSpec::new(config, node_seed(0, name)));
}

/// Adds a host named `name` running a Tern node as `spec` says, recording to
/// `spec.disks` (in memory).
#[allow(clippy::disallowed_methods)] // sim harness on turmoil time: a node starts after its delay
pub fn add_node_with(sim: &mut turmoil::Sim<'_>, name: &str, spec: NodeSpec) {
    let starts = Arc::new(AtomicU64::new(0));
    let host = name.to_owned();
    sim.host(name, move || {
        let config = spec.config.get();
        let start = starts.fetch_add(1, Ordering::Relaxed);
        let seed = spec.seed ^ start.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let delay = spec.start_delay;
        let stores = DvrStores::Memory(spec.disks.clone());
        let host = host.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            tracing::info!(target: "tern_sim", host, start, seed, "node starting");
            let cfg = tern_core::config::parse(&config).map_err(|e| e.to_string())?;
            let mut node = tern_node::runtime::start_seeded_with(
                &cfg,
                TurmoilNet,
                TurmoilClock::new(),
                seed,
                stores,
            )
            .await
            .map_err(|e| e.to_string())?;
            node.wait().await;
            Ok(())
        }
    });
}

/// Simulated milliseconds since the start, read on the current host.
pub fn sim_ms() -> u64 {
    tern_net::Clock::utc_ms(&TurmoilClock::new()).saturating_sub(SIM_EPOCH_MS)
}

/// One HTTP/1.1 GET from inside the simulation (a client host). Logs the status,
/// length and FNV-1a of the body, so the trace fingerprints what clients received.
#[allow(clippy::disallowed_methods)] // sim harness: hyper's connection task
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
) -> Result<(http::StatusCode, Bytes), Box<dyn std::error::Error>> {
    let stream = TurmoilNet.connect(host, port).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    tracing::info!(
        target: "tern_sim::http",
        host,
        port,
        path,
        status = status.as_u16(),
        len = body.len(),
        fnv = %format_args!("{:016x}", fnv1a64(&body)),
        "GET"
    );
    Ok((status, body))
}
