//! A `source` directive at work: keeps a signaling connection to the peer, creates a
//! local stream (with an M4S or M4F input) for every peer stream that passes
//! `only`/`except`, and removes the ones the peer no longer has.
//!
//! Owns: the set of streams this source created, and the sockets and timers of its
//! signaling `PullSession`; what to add, remove or update comes from core's
//! `Discovery`. Must not: touch streams from the config or from another source (a
//! name clash is logged and skipped), or decide retries (the session does).

use std::collections::BTreeMap;
use std::sync::Arc;

use tern_core::cluster::backoff::Backoff;
use tern_core::cluster::discovery::{Change, Discovery};
use tern_core::cluster::pull::{Action, PullSession};
use tern_core::cluster::receiver::{Event, Receiver};
use tern_core::config::{CacheConfig, DvrConfig, SourceConfig, SourceProtocol};
use tern_core::demand::PullMode;
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tracing::{info, warn, Instrument};

use crate::archive::{Archive, CachedArchive, RemoteArchive};
use crate::cluster::client::{ClusterClient, MessageStream};
use crate::ctx::{NodeCtx, RemoteOrigin, StreamEntry, TaskGuard};
use crate::dvr::{Dvr, DvrRoot};
use crate::hub::StreamHub;
use crate::input::remote::{self, next_message};
use crate::input::{on_demand, Direct, Gate};
use crate::timer::until;

/// Runs until aborted: drives a signaling [`PullSession`] and the source's
/// [`Discovery`], and adds / removes / updates streams as it says.
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
    let mut discovery = Discovery::new(src.only.clone(), src.except.clone())
        .with_pull(
            src.static_streams.clone(),
            std::time::Duration::from_millis(src.clients_timeout_ms),
        )
        .with_max_streams(src.max_streams);
    let clock = ctx.clock.clone();
    let mut session = PullSession::new(
        clock.now(),
        Receiver::signaling(),
        Backoff::new(ctx.seed()),
        true,
    );
    let mut stream: Option<MessageStream> = None;
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect { .. } => {
                    match client.open(&src.host, src.port, "/tern/v1/streams").await {
                        Ok(s) => {
                            info!(%peer, "signaling connected");
                            stream = Some(s);
                            session.handle_connected(clock.now());
                        }
                        Err(e) => {
                            session.handle_connect_failed(clock.now());
                            if e.is_auth() {
                                e.warn_auth(&peer);
                            } else {
                                info!(%peer, error = %e, "cannot reach source");
                            }
                        }
                    }
                }
                Action::Disconnect { reason, .. } => {
                    stream = None;
                    warn!(%peer, reason, "signaling lost; restreamed streams keep trying on their own");
                }
            }
        }
        while let Some(ev) = session.poll_event() {
            if let Event::Streams(list) = ev {
                discovery.handle_streams(list);
            }
        }
        while let Some(change) = discovery.poll_change() {
            apply(
                change,
                &mut caches,
                &ctx,
                &src,
                &client,
                &peer,
                &mut mine,
                &mut discovery,
                default_segment_ms,
            )
            .await;
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            biased;
            msg = next_message(&mut stream) => match msg {
                Ok(Some(m)) => session.handle_message(clock.now(), m),
                Ok(None) => session.handle_closed(clock.now(), "peer closed the connection".into()),
                Err(e) => session.handle_closed(clock.now(), e.to_string()),
            },
            _ = until(deadline, clock.now()) => session.handle_timeout(clock.now()),
        }
    }
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

/// Carries out one change Discovery asked for.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::disallowed_methods)] // driver: one task per discovered stream's pull (and its on-demand deadline)
async fn apply<N: Net, C: Clock>(
    change: Change,
    caches: &mut Caches,
    ctx: &Arc<NodeCtx<C>>,
    src: &SourceConfig,
    client: &ClusterClient<N, C>,
    peer: &str,
    mine: &mut BTreeMap<StreamName, Arc<RemoteArchive<N, C>>>,
    discovery: &mut Discovery,
    default_segment_ms: u32,
) {
    let s = match change {
        Change::Remove(gone) => {
            info!(stream = %gone, %peer, "stream removed on the source");
            ctx.remove_remote_stream(&gone);
            mine.remove(&gone);
            return;
        }
        Change::Update(s) => {
            // The archive route follows what signaling says about the peer's DVR;
            // a stream not pulled here shows the peer's alive state and media info.
            if let Some(archive) = mine.get(&s.name) {
                archive.set_facts(s.dvr);
            }
            // (Not a configured stream of the same name: it has its own inputs.)
            if let Some(entry) = ctx.entry(&s.name).filter(|e| e.remote.is_some()) {
                entry.hub.set_upstream(s.alive, s.media_info);
            }
            return;
        }
        Change::LeftOut { left_out: 0, max } => {
            info!(%peer, max, "every stream of the source is taken again (under max_streams)");
            return;
        }
        Change::LeftOut { left_out, max } => {
            warn!(%peer, left_out, max,
                "the source announces more streams than max_streams: the rest are left out");
            return;
        }
        Change::Add(s) => s,
    };
    {
        let seg_ms = if s.segment_duration_ms > 0 {
            s.segment_duration_ms
        } else {
            default_segment_ms
        };
        let hub = Arc::new(StreamHub::new(s.name.clone(), seg_ms, ctx.clock.now()));
        hub.set_upstream(s.alive, s.media_info);
        let mode = discovery.mode_for(&s.name);
        hub.set_pull_mode(mode);
        let protocol = match src.protocol {
            SourceProtocol::M4s => remote::Protocol::M4s,
            SourceProtocol::M4f => remote::Protocol::M4f,
        };
        let target = remote::Target {
            host: src.host.clone(),
            port: src.port,
            name: s.name.clone(),
            protocol,
            discovered: true,
        };
        let sink = Arc::new(Direct {
            hub: hub.clone(),
            clock: ctx.clock.clone(),
        });
        let client_for_archive = client.clone();
        let client = client.clone();
        let span = tracing::info_span!("stream", name = %s.name);
        let gate = match mode {
            PullMode::Static => Gate::always(),
            PullMode::OnDemand { .. } => Gate::always().on_demand(hub.pull_gate()),
        };
        let mut tasks =
            vec![
                tokio::spawn(remote::run(sink, client, target, gate).instrument(span.clone()))
                    .abort_handle(),
            ];
        if let PullMode::OnDemand { .. } = mode {
            let driver = on_demand::drive(hub.clone(), ctx.clock.clone());
            tasks.push(tokio::spawn(driver.instrument(span)).abort_handle());
        }
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
            tasks: Arc::new(TaskGuard::new(tasks)),
            dvr: None,
            archive: Some(route),
        };
        if ctx.add_stream(s.name.clone(), entry) {
            info!(stream = %s.name, %peer, "stream discovered on the source");
            mine.insert(s.name, archive);
        } else {
            warn!(stream = %s.name, %peer, "source offers a stream this node already has; ignoring it");
            discovery.handle_refused(&s.name);
        }
    }
}
