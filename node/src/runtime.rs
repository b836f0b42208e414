//! The node runtime: builds the streams of a config, starts their inputs, the
//! cluster sources, the HTTP listeners and the RTMP listener, and stops them all on shutdown. Generic
//! over `Net` and `Clock`, so the binary runs it on tokio and tern-sim on turmoil
//! with no other difference.
//!
//! Owns: starting and stopping the node's tasks; the streams start through
//! `stream_set.rs` (the same step as a reload's) and the shared state it builds for
//! them is `ctx.rs`. Must not: speak any protocol itself, or be needed by what it
//! starts (inputs, sources, the operator task and the HTTP layer depend on `ctx` and
//! `stream_set`, not on the runtime).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::{ClusterAuth, ReplayGuard};
use tern_core::config::{ClusterKey, Config};
use tern_net::{Clock, Listener, Net};
use tokio::task::JoinSet;
use tracing::{info, Instrument};

use crate::dvr::DvrStores;
use crate::input;
use crate::stream_set::{client_for, StreamSet};

pub use crate::ctx::{ClusterState, NodeCtx, NodeError, RemoteOrigin, StreamEntry, TaskGuard};

/// A started node. Dropping it (or calling [`RunningNode::shutdown`]) stops every task.
pub struct RunningNode<C: Clock> {
    pub ctx: Arc<NodeCtx<C>>,
    addrs: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

impl<C: Clock> RunningNode<C> {
    /// The addresses the HTTP listeners are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Reloads the config file (what `SIGHUP` does): see [`crate::operator`].
    pub async fn reload(&self) -> Result<crate::operator::Reloaded, crate::operator::OpError> {
        crate::operator::reload(&self.ctx.control).await
    }

    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        for e in self.ctx.streams() {
            self.ctx.remove_stream(&e.hub.name);
        }
    }

    /// Runs until a task ends (they do not, unless aborted).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

/// Binds every `http` listener and starts every stream and source of `config`, with
/// the node's RNG seeded from the wall clock (fine for the simulation, whose clock is
/// pinned; the binary passes a seed from the OS).
pub async fn start<N: Net, C: Clock>(
    config: &Config,
    net: N,
    clock: C,
) -> Result<RunningNode<C>, NodeError> {
    let seed = clock.utc_ms();
    start_seeded(config, net, clock, seed).await
}

/// [`start`] with an explicit RNG seed.
pub async fn start_seeded<N: Net, C: Clock>(
    config: &Config,
    net: N,
    clock: C,
    seed: u64,
) -> Result<RunningNode<C>, NodeError> {
    start_seeded_with(config, net, clock, seed, DvrStores::Fs).await
}

/// [`start_seeded`] with the DVR storage to use: the filesystem (the binary) or
/// in-memory disks (the simulation, which keeps them across node restarts).
pub async fn start_seeded_with<N: Net, C: Clock>(
    config: &Config,
    net: N,
    clock: C,
    seed: u64,
    dvr_stores: DvrStores,
) -> Result<RunningNode<C>, NodeError> {
    start_full(config, None, net, clock, seed, dvr_stores).await
}

/// Starts the node of a config file and its state file (read by
/// [`crate::operator::load_files`]): the API's `PUT`/`DELETE` and reloads work
/// on them.
pub async fn start_from_files<N: Net, C: Clock>(
    files: crate::operator::Files,
    net: N,
    clock: C,
    seed: u64,
) -> Result<RunningNode<C>, NodeError> {
    let running = files.running();
    start_full(&running, Some(files), net, clock, seed, DvrStores::Fs).await
}

#[allow(clippy::disallowed_methods)] // driver: the runtime spawns the node's tasks
async fn start_full<N: Net, C: Clock>(
    config: &Config,
    files: Option<crate::operator::Files>,
    net: N,
    clock: C,
    seed: u64,
    dvr_stores: DvrStores,
) -> Result<RunningNode<C>, NodeError> {
    let node_name = config
        .http
        .first()
        .map(|l| format!("tern:{}", l.socket_addr().port()))
        .unwrap_or_else(|| "tern".into());
    let ctx = Arc::new(NodeCtx {
        clock: clock.clone(),
        node_name,
        cluster: config.cluster_key.as_ref().map(|k| ClusterState {
            auth: ClusterAuth::new(k.as_bytes()),
            guard: Mutex::new(ReplayGuard::new()),
        }),
        refusals: crate::http::guard::RefusalLog::new(),
        api_auth: std::sync::RwLock::new(Arc::new(config.api_auth.clone())),
        link: Arc::default(),
        budget: config.cluster_bandwidth_bps.map(|bps| {
            Arc::new(Mutex::new(tern_core::rate::ClusterBudget::new(
                bps,
                clock.now(),
            )))
        }),
        publishers: Arc::default(),
        streams: Mutex::new(BTreeMap::new()),
        rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        control: crate::operator::Control::default(),
    });
    let control_rx = ctx.control.connect();
    let mut set = StreamSet::new(ctx.clone(), net.clone(), dvr_stores.clone());
    // The streams start through the same step as a reload's: from no streams to
    // the config's. A DVR it cannot open stops the start.
    let none = Config {
        streams: Vec::new(),
        ..config.clone()
    };
    let applied = set.apply(&none, config).await;
    if let Some((_, e)) = applied.failed.into_iter().next() {
        for e in ctx.streams() {
            ctx.remove_stream(&e.hub.name);
        }
        return Err(e);
    }
    let client_for = |key: Option<&ClusterKey>| client_for(&ctx, &net, config, key);
    let mut tasks = JoinSet::new();
    for src in &config.sources {
        let client =
            client_for(src.cluster_key.as_ref()).ok_or_else(|| NodeError::NoClusterKey {
                what: format!("`source {}://{}:{}`", src.protocol, src.host, src.port),
            })?;
        let client = match src.archive_bandwidth_bps {
            Some(bps) => client.with_archive_bandwidth(bps),
            None => client,
        };
        let span = tracing::info_span!("source", peer = %format!("{}:{}", src.host, src.port));
        let seg_ms = config
            .segment_duration_ms
            .unwrap_or(tern_core::config::DEFAULT_SEGMENT_DURATION_MS);
        // A source's `cache` shares a root with any DVR on the same path.
        let cache_root = src.cache.as_ref().map(|c| set.root(&c.path));
        tasks.spawn(
            crate::cluster::source::run(ctx.clone(), src.clone(), client, seg_ms, cache_root)
                .instrument(span),
        );
    }
    // One guard for every listener: the limits are the node's. The real
    // descriptor limit counts only for the binary; the simulation has none.
    let fd_limit = match dvr_stores {
        DvrStores::Fs => crate::fd_limit::current(),
        DvrStores::Memory(_) => None,
    };
    let mut limits = config.limits;
    limits.max_connections =
        tern_core::limits::effective_max_connections(limits.max_connections, fd_limit);
    if limits.max_connections < config.limits.max_connections {
        info!(max_connections = limits.max_connections, fd_limit = ?fd_limit,
            "HTTP connection limit lowered to leave descriptors for the DVR and the cluster");
    }
    let guard = crate::http::guard::Guard::new(limits, ctx.refusals.clone());
    let mut addrs = Vec::new();
    for listen in &config.http {
        let addr = listen.socket_addr();
        let listener = net
            .bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(%bound, "listening for HTTP");
        addrs.push(bound);
        tasks.spawn(crate::http::server::serve(
            listener,
            ctx.clone(),
            guard.clone(),
        ));
    }
    if let Some(listen) = &config.rtmp {
        let addr = listen.socket_addr();
        let listener = net
            .bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(%bound, "listening for RTMP publishers");
        tasks.spawn(
            input::rtmp::serve(listener, ctx.publishers.clone(), clock.clone(), ctx.seed())
                .instrument(tracing::info_span!("rtmp")),
        );
    }
    if let Some(control_rx) = control_rx {
        tasks.spawn(
            crate::operator::task::run(set, config.clone(), files, control_rx)
                .instrument(tracing::info_span!("operator")),
        );
    }
    Ok(RunningNode { ctx, addrs, tasks })
}
