//! The cluster endpoints other nodes pull from (docs/protocol.md "Endpoints"):
//! `/tern/v1/streams` (signaling), `/tern/v1/m4s/NAME` (frames), `/tern/v1/m4f/NAME`
//! (segments), and the same under `/tern/v2/` (keyed BLAKE3 message tags) and
//! `/tern/v3/` (segments by digest). Every request is checked with the cluster key before anything about
//! the node is revealed; every answer proves the key and MACs every message.
//!
//! Owns: the sending tasks, which drive core's sender machines
//! (`tern_core::cluster::sender`: what to send and when) and write what they queue.
//! Must not: decide what is sent (the machines do), or block on a slow receiver
//! beyond its own bounded queue (it is skipped forward instead).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use tern_core::cluster::accept::{accept, Accepted, Asked, Endpoint};
use tern_core::cluster::archive_sender::{self, ArchiveSender};
use tern_core::cluster::auth::{AUTH_HEADER, PROOF_HEADER};
use tern_core::cluster::message::{self, Message, StreamAnnounce};
use tern_core::cluster::sender::{FrameSender, SegmentSender, SignalingSender};
use tern_core::cluster::wire::Encoder;
use tern_core::cluster::ProtocolVersion;
use tern_core::Position;
use tern_net::Clock;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn, Instrument};

use crate::api::ALIVE_TIMEOUT_MS;
use crate::archive::Archive;
use crate::cluster::CONTENT_TYPE;
use crate::ctx::NodeCtx;
use crate::http::body::{respond, text, Body, Response};
use crate::hub::{StreamHub, VIEWER_STALL_TIMEOUT};
use crate::timer::until;

/// Messages queued towards one receiver's socket.
const PEER_QUEUE: usize = 64;
/// Messages queued towards an M4F archive reader: a stored segment goes out as three
/// (header, stored bytes, tag), so this holds about two segments, whatever the
/// length of the range; reading from the DVR waits for the reader beyond that.
const ARCHIVE_QUEUE: usize = 6;

use tern_core::limits::Refusal;

use crate::cluster::link::{LinkClass, LinkGuard};

#[allow(clippy::disallowed_methods)] // driver: one task per cluster response, each driving its sender machine
pub fn route<B, C: Clock>(ctx: &Arc<NodeCtx<C>>, req: &Request<B>) -> Response {
    let path = req.uri().path();
    let asked = Asked {
        method: req.method().as_str(),
        path,
        path_and_query: req.uri().path_and_query().map_or(path, |p| p.as_str()),
        host: req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
        auth_header: req.headers().get(AUTH_HEADER).map(|v| v.as_bytes()),
    };
    let (now, nonce) = (ctx.clock.utc_ms(), ctx.nonce());
    let accepted = match &ctx.cluster {
        Some(c) => {
            let mut guard = c.guard.lock().unwrap_or_else(|e| e.into_inner());
            accept(Some((&c.auth, &mut guard)), &asked, now, nonce)
        }
        None => accept(None, &asked, now, nonce),
    };
    let Accepted {
        version,
        endpoint,
        proof,
        encoder: enc,
    } = match accepted {
        Ok(a) => a,
        Err(r) => {
            if let Some(line) = &r.logged {
                ctx.refusals.refused(Refusal::ClusterAuth, line);
            }
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
            return text(status, r.body);
        }
    };
    let from = req.uri().query().and_then(parse_from);

    let queue = match endpoint {
        Endpoint::ArchiveRange(_) => ARCHIVE_QUEUE,
        _ => PEER_QUEUE,
    };
    let class = LinkClass::of_endpoint(&endpoint);
    if class == LinkClass::Live {
        if let Some(budget) = &ctx.budget {
            let admitted = budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit_live(ctx.clock.now());
            if let Err(e) = admitted {
                ctx.refusals.refused(Refusal::Bandwidth, &e);
                return text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
        }
    }
    let remote = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let (tx, rx) = mpsc::channel(queue);
    let budget: Option<BudgetHook> = ctx.budget.clone().map(|budget| {
        let clock = ctx.clock.clone();
        Arc::new(move |class: LinkClass, bytes: u64| {
            let mut b = budget.lock().unwrap_or_else(|e| e.into_inner());
            let now = clock.now();
            match class {
                LinkClass::Archive => b.archive_delay(now, bytes),
                LinkClass::Live | LinkClass::Signaling => {
                    b.handle_live_sent(now, bytes);
                    Duration::ZERO
                }
            }
        }) as BudgetHook
    });
    let mut peer = Peer {
        version,
        enc,
        tx,
        stall: Some(VIEWER_STALL_TIMEOUT),
        link: ctx.link.open(&remote, class),
        budget,
    };
    let node = ctx.node_name.clone();
    let Some(name) = endpoint.stream() else {
        let ctx = ctx.clone();
        tokio::spawn(signaling(ctx, peer, node).instrument(tracing::debug_span!("signaling")));
        return answer(rx, &proof);
    };
    let Some(entry) = ctx.entry(name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream {:?} is not known on this node", name.as_str()),
        );
    };
    let hub = entry.hub.clone();
    let span = tracing::info_span!("peer", stream = %name, kind = endpoint.kind());
    let clock = ctx.clock.clone();
    match &endpoint {
        Endpoint::Streams => {}
        Endpoint::M4s(_) => {
            tokio::spawn(m4s(hub, peer, from, node, clock).instrument(span));
        }
        Endpoint::M4f(_) => {
            tokio::spawn(m4f(hub, peer, from, node, clock).instrument(span));
        }
        Endpoint::ArchiveIndex(_) | Endpoint::ArchiveRange(_) => {
            // Archive reads are paced by the reader, however long it pauses.
            peer.stall = None;
            let Some(archive) = entry.archive.clone() else {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("stream {:?} has no archive on this node", name.as_str()),
                );
            };
            let window = req.uri().query().and_then(parse_window);
            if let Endpoint::ArchiveIndex(_) = endpoint {
                tokio::spawn(dvr_index(archive, peer, window, node).instrument(span));
            } else {
                let Some((from, to)) = window else {
                    return text(StatusCode::BAD_REQUEST, "archive needs ?from=MS&to=MS");
                };
                tokio::spawn(archive_range(archive, peer, from, to, node).instrument(span));
            }
        }
    }
    answer(rx, &proof)
}

/// The `200` of an accepted request: its messages as they are queued, and the
/// proof that this node knows the key.
fn answer(rx: mpsc::Receiver<Bytes>, proof: &str) -> Response {
    let mut resp = respond(StatusCode::OK, CONTENT_TYPE, Body::Live(rx));
    if let Ok(v) = HeaderValue::from_str(proof) {
        resp.headers_mut().insert(PROOF_HEADER, v);
    }
    resp
}

/// `from=MS&to=MS` (UTC milliseconds, `from < to`).
fn parse_window(query: &str) -> Option<(u64, u64)> {
    let get = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (from, to) = (get("from")?, get("to")?);
    (from < to).then_some((from, to))
}

/// M4F archive index: the messages of `archive_sender::index_answer`.
async fn dvr_index(
    archive: Arc<dyn Archive>,
    mut peer: Peer,
    window: Option<(u64, u64)>,
    node: String,
) {
    let index = archive.index(window).await;
    for msg in archive_sender::index_answer(peer.version, node, index) {
        if !peer.send(&msg).await {
            return;
        }
    }
}

/// M4F archive: drives an `ArchiveSender` with the archive's reader (one segment
/// in flight: reading runs only as fast as the peer takes them).
async fn archive_range(
    archive: Arc<dyn Archive>,
    mut peer: Peer,
    from: u64,
    to: u64,
    node: String,
) {
    let mut s = ArchiveSender::new(peer.version, node);
    let (seg_tx, mut seg_rx) = mpsc::channel(1);
    let reading = archive.range(from, to, seg_tx);
    tokio::pin!(reading);
    let mut result = None;
    loop {
        let skipped = s.skipped();
        while let Some(out) = s.poll_transmit() {
            let sent = match out {
                archive_sender::Outgoing::Message(m) => peer.send(&m).await,
                // Stored bytes go out as they are: no decode, no copy.
                archive_sender::Outgoing::Stored(bytes) => {
                    let mut ok = true;
                    for part in peer.enc.encode_raw(message::kind::SEGMENT, bytes) {
                        ok = ok && peer.send_bytes(part).await;
                    }
                    ok
                }
            };
            if !sent {
                return;
            }
        }
        if s.is_finished() {
            return;
        }
        tokio::select! {
            biased;
            seg = seg_rx.recv() => match seg {
                Some(seg) => s.handle_segment(seg),
                None => {
                    let r = match result.take() {
                        Some(r) => r,
                        None => (&mut reading).await,
                    };
                    if let Err(e) = &r {
                        warn!(error = %e, "archive range ended early");
                    }
                    s.handle_end(r);
                }
            },
            r = &mut reading, if result.is_none() => result = Some(r),
        }
        if s.skipped() > skipped {
            warn!("stored segment too large for M4F, skipped (the peer sees a gap)");
        }
    }
}

/// `from=EPOCH.SEQ`.
fn parse_from(query: &str) -> Option<Position> {
    let v = query.split('&').find_map(|kv| kv.strip_prefix("from="))?;
    let (e, s) = v.split_once('.')?;
    Some(Position {
        epoch: e.parse().ok()?,
        seq: s.parse().ok()?,
    })
}

/// The sending side of one cluster response: the connection's encoder (MAC key and
/// sequence) and the bounded queue towards the socket.
struct Peer {
    /// The protocol version the request asked for (its path).
    version: ProtocolVersion,
    enc: Encoder,
    tx: mpsc::Sender<Bytes>,
    /// Live responses drop a receiver that reads nothing for this long; archive
    /// responses (`None`) wait for their reader as long as it keeps the connection.
    stall: Option<std::time::Duration>,
    /// Counts the bytes and the open pull on the link to this peer.
    link: LinkGuard,
    /// `cluster_bandwidth`: how long to wait before sending bytes of a class.
    budget: Option<BudgetHook>,
}

/// Tells the node's `ClusterBudget` what goes out; answers how long to wait first
/// (archive only: live is never paced).
type BudgetHook = Arc<dyn Fn(LinkClass, u64) -> Duration + Send + Sync>;

impl Peer {
    /// Sends one message; `false` when the receiver is gone or stalled.
    /// A message too large for any receiver (a segment of a very long GOP at a
    /// high bitrate) is skipped with a warning: the receiver sees a gap, rather than
    /// refusing the connection again at every reconnect.
    async fn send(&mut self, msg: &Message) -> bool {
        match self.enc.try_encode(msg) {
            Ok(bytes) => self.send_bytes(bytes).await,
            Err(e) => {
                warn!(error = %e, kind = msg.kind(), "message too large for the wire, skipped");
                true
            }
        }
    }

    /// Sends framed bytes; `false` when the receiver is gone or stalled.
    async fn send_bytes(&mut self, bytes: Bytes) -> bool {
        self.link.sent(bytes.len());
        if let Some(budget) = &self.budget {
            let wait = budget(self.link.class(), bytes.len() as u64);
            if !wait.is_zero() {
                crate::timer::pace(wait).await;
            }
        }
        let Some(stall) = self.stall else {
            return self.tx.send(bytes).await.is_ok();
        };
        match self.tx.send_timeout(bytes, stall).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                warn!("peer stalled (nothing read for {stall:?}); disconnecting it");
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }
}

fn announce<C: Clock>(ctx: &NodeCtx<C>) -> Vec<StreamAnnounce> {
    let now = ctx.clock.now();
    ctx.streams()
        .into_iter()
        .map(|e| {
            let fig = e.hub.figures();
            let mi = e.hub.media_info();
            StreamAnnounce {
                name: e.hub.name.clone(),
                // A stream not pulled here is as alive as its source says.
                alive: e.hub.upstream_alive().unwrap_or_else(|| {
                    fig.last_frame_at.is_some_and(|t| {
                        now.saturating_sub(t) < Duration::from_millis(ALIVE_TIMEOUT_MS)
                    })
                }),
                segment_duration_ms: e.hub.segment_duration_ms,
                media_info: (!mi.tracks.is_empty()).then(|| (*mi).clone()),
                dvr: e.archive.as_ref().and_then(|a| a.facts_now()),
            }
        })
        .collect()
}

/// Sends what a machine queued; `false` when the receiver is gone or stalled.
async fn flush(peer: &mut Peer, mut next: impl FnMut() -> Option<Message>) -> bool {
    while let Some(m) = next() {
        if !peer.send(&m).await {
            return false;
        }
    }
    true
}

/// Drives a [`SignalingSender`]: shows it the stream list when it asks.
async fn signaling<C: Clock>(ctx: Arc<NodeCtx<C>>, mut peer: Peer, node: String) {
    let mut s = SignalingSender::new(ctx.clock.now(), peer.version, node);
    loop {
        s.handle_list(ctx.clock.now(), announce(&ctx), ctx.clock.utc_ms());
        if !flush(&mut peer, || s.poll_transmit()).await {
            debug!("signaling receiver left");
            return;
        }
        until(s.poll_timeout(), ctx.clock.now()).await;
    }
}

/// Drives a [`FrameSender`] with the hub's frames.
async fn m4s<C: Clock>(
    hub: Arc<StreamHub>,
    mut peer: Peer,
    from: Option<Position>,
    node: String,
    clock: C,
) {
    let _viewer = hub.hold_viewer(clock.clone());
    let sub = hub.subscribe_frames();
    info!(resume = ?from, gop = sub.gop.len(), "M4S subscriber");
    let mut s = FrameSender::new(
        clock.now(),
        peer.version,
        node,
        sub.media_info,
        &sub.gop,
        from,
    );
    let mut rx = sub.rx;
    loop {
        if !flush(&mut peer, || s.poll_transmit()).await || s.is_finished() {
            return;
        }
        tokio::select! {
            biased;
            _ = hub.closed() => s.handle_stream_closed(clock.now()),
            r = rx.recv() => match r {
                Ok(f) => s.handle_frame(clock.now(), f, || hub.media_info()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(skipped = n, "M4S receiver too slow, skipping to the next keyframe");
                    s.handle_lagged(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = until(s.poll_timeout(), clock.now()) => s.handle_timeout(clock.now(), clock.utc_ms()),
        }
    }
}

/// Drives a [`SegmentSender`] with the hub's closed segments.
async fn m4f<C: Clock>(
    hub: Arc<StreamHub>,
    mut peer: Peer,
    from: Option<Position>,
    node: String,
    clock: C,
) {
    let _viewer = hub.hold_viewer(clock.clone());
    let (mi, backlog, mut rx) = hub.subscribe_segments(from);
    info!(resume = ?from, backlog = backlog.len(), "M4F subscriber");
    let backlog = backlog.iter().map(|s| s.segment.clone());
    let mut s = SegmentSender::new(clock.now(), peer.version, node, mi, backlog);
    loop {
        if !flush(&mut peer, || s.poll_transmit()).await || s.is_finished() {
            return;
        }
        tokio::select! {
            biased;
            _ = hub.closed() => s.handle_stream_closed(clock.now()),
            r = rx.recv() => match r {
                Ok(seg) => s.handle_segment(clock.now(), seg.segment.clone()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(skipped = n, "M4F receiver too slow, segments skipped");
                    s.handle_lagged(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = until(s.poll_timeout(), clock.now()) => s.handle_timeout(clock.now(), clock.utc_ms()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_query() {
        assert_eq!(parse_from("from=3.4"), Some(Position { epoch: 3, seq: 4 }));
        assert_eq!(
            parse_from("a=1&from=3.4"),
            Some(Position { epoch: 3, seq: 4 })
        );
        assert_eq!(parse_from("from=3"), None);
        assert_eq!(parse_from("from=x.4"), None);
    }
}
