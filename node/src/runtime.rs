//! The node runtime: builds the streams of a config, starts their inputs, the
//! cluster sources and the HTTP listeners, and stops them all on shutdown. Generic
//! over `Net` and `Clock`, so the binary runs it on tokio and tern-sim on turmoil
//! with no other difference.
//!
//! Owns: starting and stopping the node's tasks; the shared state it builds for
//! them is `ctx.rs`. Must not: speak any protocol itself, or be needed by what it
//! starts (inputs, sources, the HTTP layer depend on `ctx`, not on the runtime).

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

use crate::archive::Archive;
use crate::cluster::client::ClusterClient;
use crate::dvr::{recorder, DvrRoot, DvrStores};
use crate::hub::StreamHub;
use crate::input;

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
#[allow(clippy::disallowed_methods)] // driver: the runtime spawns the node's tasks
pub async fn start_seeded_with<N: Net, C: Clock>(
    config: &Config,
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
        api_auth: config.api_auth.clone(),
        link: Arc::default(),
        budget: config.cluster_bandwidth_bps.map(|bps| {
            Arc::new(Mutex::new(tern_core::rate::ClusterBudget::new(
                bps,
                clock.now(),
            )))
        }),
        streams: Mutex::new(BTreeMap::new()),
        rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
    });
    let client_for = |key: Option<&ClusterKey>| {
        key.or(config.cluster_key.as_ref()).map(|k| {
            ClusterClient::new(
                net.clone(),
                ctx.clock.clone(),
                ctx.shared_rng(),
                ClusterAuth::new(k.as_bytes()),
            )
            .with_link(ctx.link.clone())
        })
    };
    let mut tasks = JoinSet::new();
    // Streams recording under the same `dvr PATH` share one root (one disk).
    let mut dvr_roots: BTreeMap<String, Arc<DvrRoot>> = BTreeMap::new();
    for sc in &config.streams {
        let hub = Arc::new(StreamHub::new(
            sc.name.clone(),
            sc.segment_duration_ms(config),
            clock.now(),
        ));
        // The origin of a stream (its inputs are this node's own sources) rebases
        // timestamps onto one running timeline; a stream pulled from a cluster peer
        // keeps the origin's timestamps.
        let from_peer = sc.inputs.iter().any(|i| {
            matches!(
                i.url,
                tern_core::config::InputUrl::M4s { .. } | tern_core::config::InputUrl::M4f { .. }
            )
        });
        if !from_peer {
            hub.rebase_timestamps();
        }
        if let Some(ms) = sc.on_demand_ms {
            hub.set_pull_mode(tern_core::demand::PullMode::OnDemand {
                clients_timeout: std::time::Duration::from_millis(ms),
            });
        }
        // The DVR opens first: a path it cannot use stops the start before any
        // task runs.
        let dvr = match &sc.dvr {
            Some(dc) => {
                let root = dvr_roots
                    .entry(dc.path.clone())
                    .or_insert_with(|| DvrRoot::new(dvr_stores.store_for(&dc.path)))
                    .clone();
                let dvr = root
                    .open(sc.name.clone(), dc.clone())
                    .await
                    .map_err(|source| NodeError::Dvr {
                        stream: sc.name.clone(),
                        source,
                    })?;
                Some(dvr)
            }
            None => None,
        };
        let span = tracing::info_span!("stream", name = %sc.name);
        let mut handles = input::start_inputs(&ctx, &hub, sc, &net, &client_for, span)?;
        if let Some(dvr) = &dvr {
            let span = tracing::info_span!("dvr", stream = %sc.name);
            let task = tokio::spawn(
                recorder::run(dvr.clone(), hub.clone(), recorder::PAUSE_RETRY).instrument(span),
            );
            handles.push(task.abort_handle());
        }
        let entry = StreamEntry {
            hub,
            inputs: sc
                .failover_order()
                .iter()
                .map(|i| i.url.to_string())
                .collect(),
            remote: None,
            tasks: Arc::new(TaskGuard::new(handles)),
            archive: match &dvr {
                Some(d) => Some(d.clone() as Arc<dyn Archive>),
                None => input::archive_route(sc, &client_for),
            },
            dvr,
        };
        ctx.add_stream(sc.name.clone(), entry);
    }
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
        let cache_root = src.cache.as_ref().map(|c| {
            dvr_roots
                .entry(c.path.clone())
                .or_insert_with(|| DvrRoot::new(dvr_stores.store_for(&c.path)))
                .clone()
        });
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
    Ok(RunningNode { ctx, addrs, tasks })
}
