//! A `source` directive at work: keeps a signaling connection to the peer, creates a
//! local stream (with an M4S or M4F input) for every peer stream that passes
//! `only`/`except`, and removes the ones the peer no longer has.
//!
//! Owns: the set of streams this source created. Must not: touch streams from the
//! config or from another source (a name clash is logged and skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tern_core::cluster::backoff::Backoff;
use tern_core::cluster::message::{Message, StreamAnnounce};
use tern_core::cluster::receiver::DEAD_PEER_TIMEOUT;
use tern_core::config::{CacheConfig, DvrConfig, SourceConfig, SourceProtocol};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tracing::{info, warn, Instrument};

use crate::archive::{Archive, CachedArchive, RemoteArchive};
use crate::cluster::client::ClusterClient;
use crate::dvr::{Dvr, DvrRoot};
use crate::hub::StreamHub;
use crate::input::{remote, Direct, Gate};
use crate::runtime::{NodeCtx, RemoteOrigin, StreamEntry, TaskGuard};

/// Runs until aborted.
pub async fn run<N: Net, C: Clock>(
    ctx: Arc<NodeCtx<C>>,
    src: SourceConfig,
    client: ClusterClient<N, C>,
    default_segment_ms: u32,
    cache_root: Option<Arc<DvrRoot>>,
) {
    let peer = format!("{}:{}", src.host, src.port);
    let mut mine: BTreeMap<StreamName, Arc<RemoteArchive<N, C>>> = BTreeMap::new();
    let mut caches = Caches {
        root: cache_root,
        open: BTreeMap::new(),
    };
    let mut backoff = Backoff::new(ctx.seed());
    loop {
        let attempt_started = ctx.clock.now();
        match client.open(&src.host, src.port, "/tern/v1/streams").await {
            Ok(mut stream) => {
                info!(%peer, "signaling connected");
                let mut hello = false;
                let reason = loop {
                    let msg = tokio::select! {
                        biased;
                        m = stream.next() => m,
                        _ = tokio::time::sleep(DEAD_PEER_TIMEOUT) => break "no message within the dead-peer timeout".to_owned(),
                    };
                    match msg {
                        Ok(Some(Message::Hello { .. })) if !hello => hello = true,
                        Ok(Some(Message::Streams(list))) if hello => {
                            backoff.reset();
                            reconcile(
                                &mut caches,
                                &ctx,
                                &src,
                                &client,
                                &peer,
                                &mut mine,
                                list,
                                default_segment_ms,
                            )
                            .await;
                        }
                        Ok(Some(Message::Heartbeat { .. })) if hello => {}
                        Ok(Some(other)) => {
                            break format!("unexpected message type {} on signaling", other.kind())
                        }
                        Ok(None) => break "peer closed the connection".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                warn!(%peer, reason, "signaling lost; restreamed streams keep trying on their own");
            }
            Err(e) if e.is_auth() => {
                e.warn_auth(&peer);
            }
            Err(e) => info!(%peer, error = %e, "cannot reach source"),
        }
        // Time spent in the attempt (a connect timeout) counts towards the backoff.
        let spent = ctx.clock.now().saturating_sub(attempt_started);
        tokio::time::sleep(backoff.next_delay().saturating_sub(spent)).await;
    }
}

/// Whether a source takes the peer's stream `name`: it matches `only` (if any) and
/// no `except`.
fn takes(src: &SourceConfig, name: &StreamName) -> bool {
    (src.only.is_empty() || src.only.iter().any(|p| p.matches(name)))
        && !src.except.iter().any(|p| p.matches(name))
}

/// The `cache` of a source: one store, a DVR per stream kept open across the
/// stream's removal and return.
struct Caches {
    root: Option<Arc<DvrRoot>>,
    open: BTreeMap<StreamName, Arc<Dvr>>,
}

impl Caches {
    async fn for_stream(&mut self, name: &StreamName, cfg: &CacheConfig) -> Option<Arc<Dvr>> {
        let root = self.root.as_ref()?;
        if let Some(d) = self.open.get(name) {
            return Some(d.clone());
        }
        let dc = DvrConfig {
            path: cfg.path.clone(),
            depth_secs: Some(cfg.depth_secs),
            limit_bytes: Some(cfg.limit_bytes),
        };
        match root.open(name.clone(), dc).await {
            Ok(d) => {
                self.open.insert(name.clone(), d.clone());
                Some(d)
            }
            Err(e) => {
                warn!(stream = %name, error = %e, "cannot open the archive cache; archive requests will all cross the link");
                None
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn reconcile<N: Net, C: Clock>(
    caches: &mut Caches,
    ctx: &Arc<NodeCtx<C>>,
    src: &SourceConfig,
    client: &ClusterClient<N, C>,
    peer: &str,
    mine: &mut BTreeMap<StreamName, Arc<RemoteArchive<N, C>>>,
    list: Vec<StreamAnnounce>,
    default_segment_ms: u32,
) {
    let wanted: Vec<StreamAnnounce> = list.into_iter().filter(|s| takes(src, &s.name)).collect();
    let names: BTreeSet<StreamName> = wanted.iter().map(|s| s.name.clone()).collect();
    let gone: Vec<StreamName> = mine
        .keys()
        .filter(|n| !names.contains(*n))
        .cloned()
        .collect();
    for gone in gone {
        info!(stream = %gone, %peer, "stream removed on the source");
        ctx.remove_stream(&gone);
        mine.remove(&gone);
    }
    for s in wanted {
        if let Some(archive) = mine.get(&s.name) {
            // The archive route follows what signaling says about the peer's DVR.
            archive.set_facts(s.dvr);
            continue;
        }
        let seg_ms = if s.segment_duration_ms > 0 {
            s.segment_duration_ms
        } else {
            default_segment_ms
        };
        let hub = Arc::new(StreamHub::new(s.name.clone(), seg_ms, ctx.clock.now()));
        if let Some(mi) = s.media_info {
            hub.set_media_info(mi);
        }
        let protocol = match src.protocol {
            SourceProtocol::M4s => remote::Protocol::M4s,
            SourceProtocol::M4f => remote::Protocol::M4f,
        };
        let target = remote::Target {
            host: src.host.clone(),
            port: src.port,
            name: s.name.clone(),
            protocol,
        };
        let sink = Arc::new(Direct {
            hub: hub.clone(),
            clock: ctx.clock.clone(),
        });
        let client_for_archive = client.clone();
        let client = client.clone();
        let span = tracing::info_span!("stream", name = %s.name);
        let task = tokio::spawn(remote::run(sink, client, target, Gate::Always).instrument(span));
        let archive = RemoteArchive::new(
            s.name.clone(),
            vec![(src.host.clone(), src.port, s.name.clone())],
            client_for_archive,
            true,
        );
        archive.set_facts(s.dvr.clone());
        let route: Arc<dyn Archive> = match &src.cache {
            Some(cfg) => match caches.for_stream(&s.name, cfg).await {
                Some(cache) => Arc::new(CachedArchive {
                    remote: archive.clone(),
                    cache,
                }),
                None => archive.clone(),
            },
            None => archive.clone(),
        };
        let entry = StreamEntry {
            hub,
            inputs: vec![format!("{}://{}/{}", protocol.as_str(), peer, s.name)],
            remote: Some(RemoteOrigin {
                peer: peer.to_owned(),
                protocol: protocol.as_str(),
            }),
            tasks: Arc::new(TaskGuard::new(vec![task.abort_handle()])),
            dvr: None,
            archive: Some(route),
        };
        if ctx.add_stream(s.name.clone(), entry) {
            info!(stream = %s.name, %peer, "stream discovered on the source");
            mine.insert(s.name, archive);
        } else {
            warn!(stream = %s.name, %peer, "source offers a stream this node already has; ignoring it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(block: &str) -> SourceConfig {
        let text =
            format!("http 1;\ncluster_key 0123456789abcdef;\nsource m4s://o:1 {{ {block} }}\n");
        match tern_core::config::parse(&text) {
            Ok(c) => c.sources[0].clone(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid name")
    }

    #[test]
    fn only_and_except_with_prefixes() {
        let src = source("only cams/*; except cams/private/*;");
        assert!(takes(&src, &name("cams/yard/3")));
        assert!(!takes(&src, &name("cams/private/1")));
        assert!(!takes(&src, &name("main")));
        let src = source("except main;");
        assert!(!takes(&src, &name("main")));
        assert!(takes(&src, &name("other")));
    }
}
