//! Inputs: tasks that feed a stream's hub — `fake://`, `m4s://` / `m4f://` from
//! another node, MPEG-TS over `udp://`, `http://` and `srt://`, RTSP cameras, RTMP
//! publishers (`publish://`) — and the failover between
//! several inputs of one stream.
//!
//! Owns: starting a stream's input tasks and the [`Sink`] they publish into (the hub
//! itself for one input; a failover port for several). Must not: know outputs.

pub mod fake;
pub mod http_ts;
pub mod on_demand;
pub mod remote;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod srt_session;
pub mod ts_pump;
pub mod udp;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tern_core::config::{ClusterKey, InputConfig, InputUrl, StreamConfig};
use tern_core::demand::PullMode;
use tern_core::failover::{Failover, FailoverEvent, DEFAULT_SOURCE_TIMEOUT};
use tern_core::keyframe::{starts_decoding, video_track};
use tern_core::{Frame, MediaInfo, Segment};
use tern_net::{Clock, Net};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{info, Instrument, Span};

use crate::cluster::client::ClusterClient;
use crate::ctx::{NodeCtx, NodeError};
use crate::hub::StreamHub;

/// Makes the cluster client for an input's own `cluster_key=` (or the node's).
pub type ClientFor<'a, N, C> = dyn Fn(Option<&ClusterKey>) -> Option<ClusterClient<N, C>> + 'a;

/// Whether an input task should be connected: always (a stream's only input, a
/// static `source` stream), or while both of its switches, where it has them, are
/// on: the stream's failover (this input is the one in use) and its on-demand pull
/// (`StreamHub::pull_gate`: somebody watches).
pub struct Gate {
    failover: Option<watch::Receiver<bool>>,
    demand: Option<watch::Receiver<bool>>,
}

impl Gate {
    /// Always open.
    pub fn always() -> Gate {
        Gate {
            failover: None,
            demand: None,
        }
    }

    /// Open while the failover uses this input.
    pub fn failover(rx: watch::Receiver<bool>) -> Gate {
        Gate {
            failover: Some(rx),
            demand: None,
        }
    }

    /// Also closed while the stream's on-demand pull is closed.
    pub fn on_demand(mut self, rx: watch::Receiver<bool>) -> Gate {
        self.demand = Some(rx);
        self
    }

    /// The same gate without its failover switch.
    pub fn without_failover(self) -> Gate {
        Gate {
            failover: None,
            demand: self.demand,
        }
    }

    /// Waits until the input may connect; `false` if it never will again (a switch
    /// is gone: the stream was removed).
    pub async fn opened(&mut self) -> bool {
        loop {
            if self.is_open() {
                return true;
            }
            if self.changed().await.is_none() {
                return false;
            }
        }
    }

    /// Resolves when the input is switched off (never for an `always` gate, nor
    /// once a switch is gone).
    pub async fn closed(&mut self) {
        loop {
            if !self.is_open() {
                return;
            }
            if self.changed().await.is_none() {
                return std::future::pending().await;
            }
        }
    }

    /// Whether the input may connect now.
    pub fn is_open(&self) -> bool {
        [&self.failover, &self.demand]
            .into_iter()
            .flatten()
            .all(|rx| *rx.borrow())
    }

    /// Waits until a switch changes and returns whether the gate is open; `None`
    /// when a switch is gone (the input ends). Never resolves for `always`.
    pub async fn changed(&mut self) -> Option<bool> {
        let r = match (&mut self.failover, &mut self.demand) {
            (None, None) => std::future::pending().await,
            (Some(a), None) | (None, Some(a)) => a.changed().await,
            (Some(a), Some(b)) => tokio::select! {
                r = a.changed() => r,
                r = b.changed() => r,
            },
        };
        r.ok()?;
        for rx in [&mut self.failover, &mut self.demand].into_iter().flatten() {
            rx.borrow_and_update();
        }
        Some(self.is_open())
    }
}

/// Where an input task puts what it receives.
pub trait Sink: Send + Sync + 'static {
    fn media_info(&self, mi: Arc<MediaInfo>);
    fn frame(&self, frame: Frame);
    fn segment(&self, segment: Segment);
    fn hub(&self) -> &Arc<StreamHub>;
}

/// The sink of a stream with one input: straight into the hub.
pub struct Direct<C: Clock> {
    pub hub: Arc<StreamHub>,
    pub clock: C,
}

impl<C: Clock> Sink for Direct<C> {
    fn media_info(&self, mi: Arc<MediaInfo>) {
        self.hub.set_media_info(mi);
    }
    fn frame(&self, frame: Frame) {
        self.hub
            .publish(frame, self.clock.now(), self.clock.utc_ms());
    }
    fn segment(&self, segment: Segment) {
        self.hub
            .publish_segment(segment, self.clock.now(), self.clock.utc_ms());
    }
    fn hub(&self) -> &Arc<StreamHub> {
        &self.hub
    }
}

struct FailoverState {
    failover: Failover,
    media_info: Vec<Option<Arc<MediaInfo>>>,
}

/// Shared by the inputs of a stream with several: decides whose frames reach the hub.
struct FailoverShared<C: Clock> {
    hub: Arc<StreamHub>,
    clock: C,
    urls: Vec<String>,
    state: Mutex<FailoverState>,
    enabled: Vec<watch::Sender<bool>>,
}

impl<C: Clock> FailoverShared<C> {
    fn lock(&self) -> MutexGuard<'_, FailoverState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the failover's events and run/stop decisions (called with the lock).
    fn after(&self, st: &mut FailoverState) {
        while let Some(FailoverEvent::Switched { from, to, reason }) = st.failover.poll_event() {
            info!(from = %self.urls[from], to = %self.urls[to], ?reason, "input switched");
            self.hub.set_active_input(to);
            if let Some(mi) = &st.media_info[to] {
                self.hub.set_media_info(mi.clone());
            }
        }
        for (i, e) in self.enabled.iter().enumerate() {
            e.send_if_modified(|v| {
                let want = st.failover.should_run(i);
                let changed = *v != want;
                *v = want;
                changed
            });
        }
    }

    fn accept(&self, st: &mut FailoverState, index: usize, frame: &Frame) -> bool {
        let video = st.media_info[index].as_ref().and_then(|m| video_track(m));
        let key = starts_decoding(video, frame);
        let ok = st.failover.handle_frame(self.clock.now(), index, key);
        self.after(st);
        ok
    }
}

/// The sink of input `index` of a stream with several inputs.
struct FailoverPort<C: Clock> {
    index: usize,
    shared: Arc<FailoverShared<C>>,
}

impl<C: Clock> Sink for FailoverPort<C> {
    fn media_info(&self, mi: Arc<MediaInfo>) {
        let mut st = self.shared.lock();
        st.media_info[self.index] = Some(mi.clone());
        if st.failover.active() == self.index {
            self.shared.hub.set_media_info(mi);
        }
    }
    fn frame(&self, frame: Frame) {
        let mut st = self.shared.lock();
        if self.shared.accept(&mut st, self.index, &frame) {
            self.shared
                .hub
                .publish(frame, self.shared.clock.now(), self.shared.clock.utc_ms());
        }
    }
    fn segment(&self, segment: Segment) {
        let mut st = self.shared.lock();
        let Some(first) = segment.frames.first() else {
            return;
        };
        if self.shared.accept(&mut st, self.index, first) {
            self.shared.hub.publish_segment(
                segment,
                self.shared.clock.now(),
                self.shared.clock.utc_ms(),
            );
        }
    }
    fn hub(&self) -> &Arc<StreamHub> {
        &self.shared.hub
    }
}

/// Checks the failover's timer until the stream goes away.
async fn failover_watchdog<C: Clock>(shared: Arc<FailoverShared<C>>) {
    loop {
        let due = shared.lock().failover.poll_timeout();
        let Some(due) = due else { return };
        let now = shared.clock.now();
        crate::timer::until(Some(due.max(now + Duration::from_millis(1))), now).await;
        let mut st = shared.lock();
        st.failover.handle_timeout(shared.clock.now());
        shared.after(&mut st);
    }
}

/// An input's `source_timeout=`, or the default.
fn source_timeout(input: &InputConfig) -> Duration {
    input
        .source_timeout_ms
        .map_or(DEFAULT_SOURCE_TIMEOUT, |ms| {
            Duration::from_millis(ms.into())
        })
}

/// Starts the input tasks of stream `sc` feeding `hub`; returns their handles.
#[allow(clippy::disallowed_methods)] // driver: one task per stream's failover deadline
pub fn start_inputs<N: Net, C: Clock>(
    ctx: &Arc<NodeCtx<C>>,
    hub: &Arc<StreamHub>,
    sc: &StreamConfig,
    net: &N,
    client_for: &ClientFor<'_, N, C>,
    span: Span,
) -> Result<Vec<AbortHandle>, NodeError> {
    let order = sc.failover_order();
    let mut handles = Vec::new();
    // An `ondemand` stream: every input also waits for viewers, and the demand
    // driver closes the pull `clients_timeout` after the last one.
    let demand = match hub.pull_state().0 {
        PullMode::OnDemand { .. } => {
            let driver = on_demand::drive(hub.clone(), ctx.clock.clone());
            handles.push(tokio::spawn(driver.instrument(span.clone())).abort_handle());
            Some(hub.pull_gate())
        }
        PullMode::Static => None,
    };
    let gate = |g: Gate| match &demand {
        Some(rx) => g.on_demand(rx.clone()),
        None => g,
    };
    if order.len() == 1 {
        let sink = Arc::new(Direct {
            hub: hub.clone(),
            clock: ctx.clock.clone(),
        });
        handles.push(spawn_input(
            ctx,
            order[0],
            sink,
            gate(Gate::always()),
            net,
            client_for,
            span,
        )?);
        return Ok(handles);
    }
    let timeouts = order.iter().map(|i| source_timeout(i)).collect();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..order.len()).map(|i| watch::channel(i == 0)).unzip();
    let shared = Arc::new(FailoverShared {
        hub: hub.clone(),
        clock: ctx.clock.clone(),
        urls: order.iter().map(|i| i.url.to_string()).collect(),
        state: Mutex::new(FailoverState {
            failover: Failover::new(timeouts, ctx.clock.now()),
            media_info: vec![None; order.len()],
        }),
        enabled: senders,
    });
    for (index, (input, rx)) in order.iter().zip(receivers).enumerate() {
        let sink = Arc::new(FailoverPort {
            index,
            shared: shared.clone(),
        });
        let span = tracing::info_span!(parent: &span, "input", index);
        handles.push(spawn_input(
            ctx,
            input,
            sink,
            gate(Gate::failover(rx)),
            net,
            client_for,
            span,
        )?);
    }
    handles.push(tokio::spawn(failover_watchdog(shared).instrument(span)).abort_handle());
    Ok(handles)
}

#[allow(clippy::disallowed_methods)] // driver: one task per input
fn spawn_input<N: Net, C: Clock>(
    ctx: &Arc<NodeCtx<C>>,
    input: &InputConfig,
    sink: Arc<dyn Sink>,
    gate: Gate,
    net: &N,
    client_for: &ClientFor<'_, N, C>,
    span: Span,
) -> Result<AbortHandle, NodeError> {
    let (url, key) = (&input.url, input.cluster_key.as_ref());
    let handle = match url {
        InputUrl::Rtsp(r) => {
            let opts = rtsp::Options {
                input: r.clone(),
                source_timeout: source_timeout(input),
                seed: ctx.seed(),
            };
            tokio::spawn(rtsp::run(sink, opts, ctx.clock.clone(), gate).instrument(span))
        }
        InputUrl::Publish(p) => {
            let name = sink.hub().name.clone();
            let run = rtmp::run(
                ctx.publishers.clone(),
                name,
                sink,
                p.password.clone(),
                source_timeout(input),
                gate,
            );
            tokio::spawn(run.instrument(span))
        }
        InputUrl::Fake(opts) => {
            // The fake camera keeps running while the failover uses another input
            // (so switching back is tested as with a camera that never went away);
            // it follows only the on-demand pull.
            let gate = gate.without_failover();
            tokio::spawn(fake::run(sink, opts.clone(), ctx.clock.clone(), gate).instrument(span))
        }
        InputUrl::M4s { host, port, name } | InputUrl::M4f { host, port, name } => {
            let protocol = if matches!(url, InputUrl::M4s { .. }) {
                remote::Protocol::M4s
            } else {
                remote::Protocol::M4f
            };
            let client = client_for(key).ok_or_else(|| NodeError::NoClusterKey {
                what: format!("input {url}"),
            })?;
            let target = remote::Target {
                host: host.clone(),
                port: *port,
                name: name.clone(),
                protocol,
                discovered: false,
            };
            tokio::spawn(remote::run(sink, client, target, gate).instrument(span))
        }
        InputUrl::Udp {
            addr,
            port,
            interface,
        } => {
            let target = udp::UdpTarget {
                addr: *addr,
                port: *port,
                interface: *interface,
                label: url.to_string(),
            };
            let run = udp::run(sink, target, source_timeout(input), ctx.clock.clone(), gate);
            tokio::spawn(run.instrument(span))
        }
        InputUrl::Srt(s) => {
            let run = srt::run(
                sink,
                s.clone(),
                source_timeout(input),
                ctx.clock.clone(),
                ctx.seed(),
                gate,
            );
            tokio::spawn(run.instrument(span))
        }
        InputUrl::Http { host, port, path } => {
            let target = http_ts::HttpTarget {
                host: host.clone(),
                port: *port,
                path: path.clone(),
                label: url.to_string(),
            };
            let run = http_ts::run(
                sink,
                net.clone(),
                target,
                source_timeout(input),
                ctx.clock.clone(),
                gate,
            );
            tokio::spawn(run.instrument(span))
        }
    };
    Ok(handle.abort_handle())
}

/// The automatic archive route of a stream without its own `dvr` whose inputs pull
/// from other nodes: archive requests go to those peers over M4F, the first that
/// records the stream answering.
pub fn archive_route<N: Net, C: Clock>(
    sc: &StreamConfig,
    client_for: &ClientFor<'_, N, C>,
) -> Option<Arc<dyn crate::archive::Archive>> {
    let mut peers = Vec::new();
    let mut client = None;
    for i in sc.failover_order() {
        if let InputUrl::M4s { host, port, name } | InputUrl::M4f { host, port, name } = &i.url {
            peers.push((host.clone(), *port, name.clone()));
            if client.is_none() {
                client = client_for(i.cluster_key.as_ref());
            }
        }
    }
    let client = client?;
    if peers.is_empty() {
        return None;
    }
    Some(crate::archive::RemoteArchive::new(
        sc.name.clone(),
        peers,
        client,
        false,
    ))
}
