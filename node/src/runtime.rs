//! The node runtime: builds the streams of a config, starts their inputs and the HTTP
//! listeners, and stops them all on shutdown. Generic over `Net` and `Clock`, so the
//! binary runs it on tokio and tern-sim on turmoil with no other difference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tern_core::config::{Config, InputUrl};
use tern_core::StreamName;
use tern_net::{Clock, Listener, Net};
use tokio::task::JoinSet;
use tracing::{info, Instrument};

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
}

/// One stream of the node: its hub and its inputs as written in the config.
#[derive(Clone)]
pub struct StreamEntry {
    pub hub: Arc<StreamHub>,
    pub inputs: Vec<String>,
}

/// What request handlers share: the clock and the streams.
pub struct NodeCtx<C: Clock> {
    pub clock: C,
    streams: Mutex<BTreeMap<StreamName, StreamEntry>>,
}

impl<C: Clock> NodeCtx<C> {
    pub fn stream(&self, name: &StreamName) -> Option<Arc<StreamHub>> {
        self.lock().get(name).map(|e| e.hub.clone())
    }

    /// All streams, in name order.
    pub fn streams(&self) -> Vec<StreamEntry> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StreamName, StreamEntry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
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
    }

    /// Runs until a task ends (they do not, unless aborted).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

/// Binds every `http` listener and starts every stream of `config`.
pub async fn start<N: Net, C: Clock>(
    config: &Config,
    net: N,
    clock: C,
) -> Result<RunningNode<C>, NodeError> {
    if let Some(src) = config.sources.first() {
        return Err(NodeError::Unsupported {
            what: format!(
                "`source {}://{}:{}` (cluster restreaming)",
                src.protocol, src.host, src.port
            ),
        });
    }
    let ctx = Arc::new(NodeCtx {
        clock: clock.clone(),
        streams: Mutex::new(BTreeMap::new()),
    });
    let mut tasks = JoinSet::new();
    for sc in &config.streams {
        let hub = Arc::new(StreamHub::new(
            sc.name.clone(),
            sc.segment_duration_ms(config),
            clock.now(),
        ));
        let span = tracing::info_span!("stream", name = %sc.name);
        // Failover between several inputs comes with the cluster issue; the first
        // input runs now and the others are refused rather than silently ignored.
        match sc.inputs.as_slice() {
            [one] => match &one.url {
                InputUrl::Fake(opts) => {
                    tasks.spawn(
                        input::fake::run(hub.clone(), opts.clone(), clock.clone()).instrument(span),
                    );
                }
                other => {
                    return Err(NodeError::Unsupported {
                        what: format!("input {other} of stream {}", sc.name),
                    })
                }
            },
            _ => {
                return Err(NodeError::Unsupported {
                    what: format!("several inputs (failover) on stream {}", sc.name),
                })
            }
        }
        let entry = StreamEntry {
            hub,
            inputs: sc.inputs.iter().map(|i| i.url.to_string()).collect(),
        };
        ctx.lock().insert(sc.name.clone(), entry);
    }
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
        tasks.spawn(crate::http::server::serve(listener, ctx.clone()));
    }
    Ok(RunningNode { ctx, addrs, tasks })
}
