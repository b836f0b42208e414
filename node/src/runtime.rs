//! The node runtime: builds the streams of a config, starts their inputs, the
//! cluster sources and the HTTP listeners, and stops them all on shutdown. Generic
//! over `Net` and `Clock`, so the binary runs it on tokio and tern-sim on turmoil
//! with no other difference.
//!
//! Owns: the table of streams (configured ones and those a `source` discovered), the
//! node's seeded RNG and the cluster key. Must not: speak any protocol itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::cluster::auth::{ClusterAuth, Nonce, ReplayGuard, NONCE_LEN};
use tern_core::config::{ClusterKey, Config};
use tern_core::StreamName;
use tern_net::{Clock, Listener, Net};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{info, Instrument};

use crate::archive::Archive;
use crate::cluster::client::{ClusterClient, SharedRng};
use crate::dvr::{recorder, DvrError, DvrRoot, DvrStores};
use crate::hub::StreamHub;
use crate::input;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source} (is another server using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} is not supported yet by this build of tern")]
    Unsupported { what: String },
    #[error("{what} needs a cluster_key (top level, or on the source/input itself)")]
    NoClusterKey { what: String },
    #[error("cannot open the DVR of stream `{stream}`: {source}")]
    Dvr {
        stream: StreamName,
        source: DvrError,
    },
}

/// Aborts its tasks when the last clone is dropped: a stream's input tasks live as
/// long as its entry in the node's table.
#[derive(Debug, Default)]
pub struct TaskGuard(Vec<AbortHandle>);

impl TaskGuard {
    pub fn new(handles: Vec<AbortHandle>) -> Self {
        Self(handles)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Where a restreamed stream comes from.
#[derive(Clone, Debug)]
pub struct RemoteOrigin {
    /// `host:port` of the peer.
    pub peer: String,
    pub protocol: &'static str,
}

/// One stream of the node: its hub, its inputs as written in the config (or made by
/// discovery), and the tasks feeding it.
#[derive(Clone)]
pub struct StreamEntry {
    pub hub: Arc<StreamHub>,
    pub inputs: Vec<String>,
    /// `Some` for a stream a `source` discovered.
    pub remote: Option<RemoteOrigin>,
    pub tasks: Arc<TaskGuard>,
    /// The stream's archive, if it has a `dvr`.
    pub dvr: Option<Arc<crate::dvr::Dvr>>,
    /// Where archive requests go: the local DVR, or the peer's archive over M4F.
    pub archive: Option<Arc<dyn Archive>>,
}

/// The cluster key of the node, with the server side's replay memory.
pub struct ClusterState {
    pub auth: ClusterAuth,
    pub guard: Mutex<ReplayGuard>,
}

/// What request handlers and tasks share.
pub struct NodeCtx<C: Clock> {
    pub clock: C,
    /// Name sent in `Hello` messages and logs.
    pub node_name: String,
    pub cluster: Option<ClusterState>,
    /// Refusals (connections, cluster auth), logged rate-limited.
    pub refusals: Arc<crate::http::guard::RefusalLog>,
    /// `view_auth` / `edit_auth`: who may use the API and the status page.
    pub api_auth: tern_core::api_auth::ApiAuth,
    /// Bytes and open pulls of the cluster link, per peer.
    pub link: Arc<crate::cluster::link::LinkStats>,
    /// `cluster_bandwidth`: the cap on what peers pull from this node.
    pub budget: Option<Mutex<tern_core::rate::ClusterBudget>>,
    streams: Mutex<BTreeMap<StreamName, StreamEntry>>,
    rng: SharedRng,
}

impl<C: Clock> NodeCtx<C> {
    pub fn stream(&self, name: &StreamName) -> Option<Arc<StreamHub>> {
        self.lock().get(name).map(|e| e.hub.clone())
    }

    pub fn entry(&self, name: &StreamName) -> Option<StreamEntry> {
        self.lock().get(name).cloned()
    }

    /// All streams, in name order.
    pub fn streams(&self) -> Vec<StreamEntry> {
        self.lock().values().cloned().collect()
    }

    /// Adds a stream unless one of that name exists; returns whether it was added.
    pub fn add_stream(&self, name: StreamName, entry: StreamEntry) -> bool {
        let mut map = self.lock();
        if map.contains_key(&name) {
            return false;
        }
        map.insert(name, entry);
        true
    }

    /// Removes a stream: its inputs stop and its viewers and subscribers end.
    pub fn remove_stream(&self, name: &StreamName) {
        let removed = self.lock().remove(name);
        if let Some(e) = removed {
            e.hub.close();
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<StreamName, StreamEntry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's RNG, for clients made outside the runtime's own wiring.
    pub fn shared_rng(&self) -> SharedRng {
        self.rng.clone()
    }

    fn rng(&self) -> MutexGuard<'_, ChaCha8Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh nonce from the node's RNG.
    pub fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        self.rng().fill_bytes(&mut n);
        n
    }

    /// A seed for a task's own RNG (backoff jitter), drawn from the node's.
    pub fn seed(&self) -> u64 {
        self.rng().next_u64()
    }
}

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
        budget: config
            .cluster_bandwidth_bps
            .map(|bps| Mutex::new(tern_core::rate::ClusterBudget::new(bps, clock.now()))),
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
