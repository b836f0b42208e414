//! # tern-sim
//!
//! Runs real Tern node runtimes as turmoil hosts on simulated network and time
//! (SIM-NOTES.md). This first cut gives: a simulation builder with a pinned epoch and
//! seed, hosts built from config text, an HTTP client for the test's own host, a
//! [`Cluster`] wrapping them, and trace fingerprints ([`Trace`]) to check that a seed
//! replays byte for byte. Fault schedules and oracles come with the cluster issue.
//!
//! Owns: the harness. Must not: be depended on by core, net or node, or read the real
//! clock or the OS's randomness (the simulation must replay from its seed).

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tern_net::{Net, TurmoilClock, TurmoilNet};

pub mod cluster;
pub mod trace;

pub use cluster::Cluster;
pub use trace::{fnv1a64, Trace};

/// The simulation's wall-clock origin, pinned so traces do not depend on the real
/// date: 2026-01-01T00:00:00Z.
pub const SIM_EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// A turmoil simulation with Tern's defaults: the given seed, a pinned epoch, 1 ms
/// ticks and `duration` of simulated time.
pub fn builder(seed: u64, duration: Duration) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_UNIX_SECS))
        .simulation_duration(duration)
        .tick_duration(Duration::from_millis(1));
    b
}

/// Adds a host named `name` running a Tern node with `config` (config text). The
/// host can be crashed and restarted: each start parses the config anew.
pub fn add_node(sim: &mut turmoil::Sim<'_>, name: &str, config: &str) {
    let config = config.to_owned();
    sim.host(name, move || {
        let config = config.clone();
        async move {
            let cfg = tern_core::config::parse(&config).map_err(|e| e.to_string())?;
            let mut node = tern_node::start(&cfg, TurmoilNet, TurmoilClock::new())
                .await
                .map_err(|e| e.to_string())?;
            node.wait().await;
            Ok(())
        }
    });
}

/// One HTTP/1.1 GET from inside the simulation (a client host). Logs the status,
/// length and FNV-1a of the body, so the trace fingerprints what clients received.
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
