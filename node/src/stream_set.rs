//! The node's configured streams: [`StreamSet`] holds what starting a stream needs
//! (the shared `NodeCtx`, the network, the DVR stores and roots) and
//! [`StreamSet::apply`] is the one step that goes from one set of configured
//! streams to another, at start, for the API's `PUT`/`DELETE` and for a reload;
//! which streams to start, stop or keep is core's `config::diff`.
//!
//! Owns: building a stream (its hub, DVR, inputs and recorder) and the DVR roots
//! shared by streams on one path. Must not: be needed by what it starts (inputs,
//! sources and the HTTP layer depend on `ctx.rs`), or decide when a change is
//! applied (`operator/task.rs` does, one at a time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tern_core::cluster::auth::ClusterAuth;
use tern_core::config::{ClusterKey, Config, StreamConfig, StreamDiff};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tracing::{info, Instrument};

use crate::archive::Archive;
use crate::cluster::client::ClusterClient;
use crate::ctx::{NodeCtx, NodeError, StreamEntry, TaskGuard};
use crate::dvr::{recorder, Dvr, DvrError, DvrRoot, DvrStores};
use crate::hub::StreamHub;
use crate::input;

/// How long a restarted or re-added stream waits for its DVR to be let go by the
/// stream it replaces (archive readers still holding it), polled every
/// [`DVR_REOPEN_POLL`].
pub const DVR_REOPEN_WAIT: Duration = Duration::from_secs(5);
const DVR_REOPEN_POLL: Duration = Duration::from_millis(100);

/// The node's configured streams and what starting one needs. [`StreamSet::apply`]
/// is the one step that changes them: at start, for the API's `PUT` and `DELETE`,
/// and for a reload.
pub struct StreamSet<N: Net, C: Clock> {
    ctx: Arc<NodeCtx<C>>,
    net: N,
    dvr_stores: DvrStores,
    /// Streams recording under the same `dvr PATH` share one root (one disk).
    dvr_roots: BTreeMap<String, Arc<DvrRoot>>,
}

/// What [`StreamSet::apply`] did.
pub struct Applied {
    pub diff: StreamDiff,
    /// Streams of the new config that could not start (they are not running).
    pub failed: Vec<(StreamName, NodeError)>,
}

impl<N: Net, C: Clock> StreamSet<N, C> {
    /// No streams yet: [`StreamSet::apply`] from an empty config starts them.
    pub fn new(ctx: Arc<NodeCtx<C>>, net: N, dvr_stores: DvrStores) -> Self {
        StreamSet {
            ctx,
            net,
            dvr_stores,
            dvr_roots: BTreeMap::new(),
        }
    }

    /// The DVR root of `path`, shared by every stream (and cache) on it.
    pub fn root(&mut self, path: &str) -> Arc<DvrRoot> {
        self.dvr_roots
            .entry(path.to_owned())
            .or_insert_with(|| DvrRoot::new(self.dvr_stores.store_for(path)))
            .clone()
    }

    pub fn ctx(&self) -> &Arc<NodeCtx<C>> {
        &self.ctx
    }

    /// Goes from the streams of `old` (running) to those of `new`: stops the
    /// removed ones, restarts the changed ones and starts the added ones
    /// (`tern_core::config::diff`); the unchanged ones are not touched, so their
    /// viewers keep playing.
    pub async fn apply(&mut self, old: &Config, new: &Config) -> Applied {
        let diff = tern_core::config::diff(old, new);
        for name in &diff.removed {
            self.ctx.remove_stream(name);
            info!(stream = %name, "stream stopped");
        }
        let mut failed = Vec::new();
        for name in diff.changed.iter().chain(&diff.added) {
            let Some(sc) = new.stream(name) else { continue };
            // A restarted stream whose `dvr` is the same keeps its open DVR.
            let reuse = self
                .ctx
                .entry(name)
                .and_then(|e| e.dvr)
                .filter(|d| sc.dvr.as_ref() == Some(d.config()));
            // A stream a `source` discovered gives way to a configured one.
            self.ctx.remove_stream(name);
            match self.start_stream(new, sc, reuse).await {
                Ok(entry) => {
                    self.ctx.add_stream(name.clone(), entry);
                    info!(stream = %name, "stream started");
                }
                Err(e) => {
                    tracing::error!(stream = %name, "{e}");
                    failed.push((name.clone(), e));
                }
            }
        }
        Applied { diff, failed }
    }

    /// Opens the DVR of `sc` (waiting up to [`DVR_REOPEN_WAIT`] for a stream it
    /// replaces to let it go).
    async fn open_dvr(&mut self, sc: &StreamConfig) -> Result<Option<Arc<Dvr>>, NodeError> {
        let Some(dc) = &sc.dvr else { return Ok(None) };
        let root = self.root(&dc.path);
        let deadline = self.ctx.clock.now() + DVR_REOPEN_WAIT;
        loop {
            match root.open(sc.name.clone(), dc.clone()).await {
                Ok(d) => return Ok(Some(d)),
                Err(DvrError::AlreadyOpen { .. }) if self.ctx.clock.now() < deadline => {
                    crate::timer::pace(DVR_REOPEN_POLL).await;
                }
                Err(source) => {
                    return Err(NodeError::Dvr {
                        stream: sc.name.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Builds the hub of `sc`, opens its DVR (or takes `reuse`) and starts its
    /// inputs and recorder.
    #[allow(clippy::disallowed_methods)] // driver: the runtime spawns a stream's recorder
    async fn start_stream(
        &mut self,
        config: &Config,
        sc: &StreamConfig,
        reuse: Option<Arc<Dvr>>,
    ) -> Result<StreamEntry, NodeError> {
        let ctx = self.ctx.clone();
        let hub = Arc::new(StreamHub::new(
            sc.name.clone(),
            sc.segment_duration_ms(config),
            ctx.clock.now(),
        ));
        // The origin of a stream (its inputs are this node's own sources) rebases
        // timestamps onto one running timeline; a stream pulled from a cluster peer
        // keeps the origin's timestamps.
        if !sc.inputs.iter().any(|i| i.url.is_cluster()) {
            hub.rebase_timestamps();
        }
        if let Some(ms) = sc.on_demand_ms {
            hub.set_pull_mode(tern_core::demand::PullMode::OnDemand {
                clients_timeout: Duration::from_millis(ms),
            });
        }
        // The DVR opens first: a path it cannot use stops the stream before any
        // task runs.
        let dvr = match reuse {
            Some(d) => Some(d),
            None => self.open_dvr(sc).await?,
        };
        let net = self.net.clone();
        let client_for = |key: Option<&ClusterKey>| client_for(&ctx, &net, config, key);
        let span = tracing::info_span!("stream", name = %sc.name);
        let mut handles = input::start_inputs(&ctx, &hub, sc, &net, &client_for, span)?;
        if let Some(dvr) = &dvr {
            let span = tracing::info_span!("dvr", stream = %sc.name);
            let task = tokio::spawn(
                recorder::run(
                    dvr.clone(),
                    hub.clone(),
                    recorder::PAUSE_RETRY,
                    ctx.clock.clone(),
                )
                .instrument(span),
            );
            handles.push(task.abort_handle());
        }
        Ok(StreamEntry {
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
        })
    }
}

/// A cluster client with `key`, else the top-level key of `config`.
pub fn client_for<N: Net, C: Clock>(
    ctx: &Arc<NodeCtx<C>>,
    net: &N,
    config: &Config,
    key: Option<&ClusterKey>,
) -> Option<ClusterClient<N, C>> {
    key.or(config.cluster_key.as_ref()).map(|k| {
        ClusterClient::new(
            net.clone(),
            ctx.clock.clone(),
            ctx.shared_rng(),
            ClusterAuth::new(k.as_bytes()),
        )
        .with_link(ctx.link.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvr::MemDisks;
    use crate::runtime::start_seeded_with;

    fn cfg(streams: &str) -> Config {
        tern_core::config::parse(&format!(
            "http 127.0.0.1:0;\nsegment_duration 0.5;\n{streams}"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One `apply` step: unchanged streams keep their hub (their viewers), changed
    /// ones get a new hub (and keep their DVR when its `dvr` is the same), removed
    /// ones are gone and their hub closed.
    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // test: a bounded wait for the closed hub
    async fn apply_keeps_unchanged_streams_and_restarts_changed_ones() {
        let empty = cfg("");
        let node = start_seeded_with(
            &empty,
            tern_net::TokioNet,
            tern_net::TokioClock::new(),
            1,
            DvrStores::Memory(MemDisks::new()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let disks = MemDisks::new();
        let mut set = StreamSet::new(
            node.ctx.clone(),
            tern_net::TokioNet,
            DvrStores::Memory(disks),
        );
        let fake = "input fake://fake?width=256&height=16;";
        let a = cfg(&format!(
            "stream keep {{ {fake} }}\nstream gone {{ {fake} }}\n\
             stream rec {{ {fake} dvr /d 1h; }}\n"
        ));
        let applied = set.apply(&empty, &a).await;
        assert!(applied.failed.is_empty());
        assert_eq!(applied.diff.added.len(), 3);
        let hub = |n: &str| node.ctx.stream(&name(n));
        let dvr = |n: &str| node.ctx.entry(&name(n)).and_then(|e| e.dvr);
        let (keep, gone, rec) = (hub("keep"), hub("gone"), hub("rec"));
        let rec_dvr = dvr("rec");
        assert!(rec_dvr.is_some());

        // `rec` changes its segment duration (same dvr), `gone` goes, `new` comes.
        let b = cfg(&format!(
            "stream keep {{ {fake} }}\nstream new {{ {fake} }}\n\
             stream rec {{ {fake} dvr /d 1h; segment_duration 1; }}\n"
        ));
        let applied = set.apply(&a, &b).await;
        assert!(applied.failed.is_empty());
        let names = |v: &[StreamName]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&applied.diff.changed), ["rec"]);
        assert_eq!(names(&applied.diff.removed), ["gone"]);
        assert_eq!(names(&applied.diff.added), ["new"]);
        let same = |x: &Option<Arc<StreamHub>>, y: &Option<Arc<StreamHub>>| match (x, y) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        assert!(
            same(&keep, &hub("keep")),
            "an unchanged stream keeps its hub"
        );
        assert!(!same(&rec, &hub("rec")), "a changed stream gets a new hub");
        assert_eq!(hub("rec").map(|h| h.segment_duration_ms), Some(1000));
        assert!(
            matches!((&rec_dvr, dvr("rec")), (Some(x), Some(y)) if Arc::ptr_eq(x, &y)),
            "the same `dvr` keeps its open DVR"
        );
        assert!(hub("gone").is_none() && hub("new").is_some());
        if let Some(g) = gone {
            // Closed: its viewers end.
            tokio::time::timeout(Duration::from_secs(1), g.closed())
                .await
                .unwrap_or_else(|_| panic!("the removed stream's hub is closed"));
        }

        // A new depth reopens the DVR once the old one is let go.
        drop(rec_dvr);
        let c = cfg(&format!(
            "stream keep {{ {fake} }}\nstream new {{ {fake} }}\n\
             stream rec {{ {fake} dvr /d 2h; segment_duration 1; }}\n"
        ));
        let applied = set.apply(&b, &c).await;
        assert!(
            applied.failed.is_empty(),
            "{:?}",
            applied.failed.first().map(|f| f.1.to_string())
        );
        assert_eq!(dvr("rec").and_then(|d| d.config().depth_secs), Some(7200));
        node.shutdown().await;
    }
}
