//! What the node's tasks and request handlers share: the table of streams
//! (configured ones and those a `source` discovered), the node's seeded RNG, the
//! cluster key and the link counters. The runtime builds one `NodeCtx` and hands it
//! to the inputs, the cluster endpoints and the HTTP layer; none of them needs the
//! runtime itself, so `runtime` depends on them and not the other way round.
//!
//! Owns: the stream table and its entries, the node's errors at start. Must not:
//! start anything (the runtime does) or speak any protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use tern_core::cluster::auth::{ClusterAuth, Nonce, ReplayGuard, NONCE_LEN};
use tern_core::StreamName;
use tern_net::Clock;
use tokio::task::AbortHandle;

use crate::archive::Archive;
use crate::cluster::client::SharedRng;
use crate::dvr::DvrError;
use crate::hub::StreamHub;

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
    /// (A reload replaces them: see [`NodeCtx::api_auth`].)
    pub(crate) api_auth: std::sync::RwLock<Arc<tern_core::api_auth::ApiAuth>>,
    /// Bytes and open pulls of the cluster link, per peer.
    pub link: Arc<crate::cluster::link::LinkStats>,
    /// `cluster_bandwidth`: the cap on what peers pull from this node.
    pub budget: Option<Arc<Mutex<tern_core::rate::ClusterBudget>>>,
    /// The streams taking RTMP publishers (`publish://` inputs).
    pub publishers: Arc<crate::input::rtmp::Publishers>,
    pub(crate) streams: Mutex<BTreeMap<StreamName, StreamEntry>>,
    pub(crate) rng: SharedRng,
    /// Where the API's `PUT`/`DELETE` and reloads go: the operator task
    /// (`crate::operator`), which applies them one at a time.
    pub(crate) control: crate::operator::Control,
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

    /// The API's credentials now (`view_auth` / `edit_auth`; a reload may change
    /// them).
    pub fn api_auth(&self) -> Arc<tern_core::api_auth::ApiAuth> {
        self.api_auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the API's credentials (a reload).
    pub fn set_api_auth(&self, auth: tern_core::api_auth::ApiAuth) {
        *self.api_auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
    }

    /// Removes a stream a `source` discovered, but not a configured stream that has
    /// taken its name since (through the API or a reload).
    pub fn remove_remote_stream(&self, name: &StreamName) {
        let removed = {
            let mut map = self.lock();
            match map.get(name) {
                Some(e) if e.remote.is_some() => map.remove(name),
                _ => None,
            }
        };
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
