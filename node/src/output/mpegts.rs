//! Live MPEG-TS: `/NAME/mpegts` is one endless response. A viewer starts at the
//! latest keyframe (the hub's muxed GOP), continuity counters carry across the whole
//! response, and a source restart sets the discontinuity indicator. The stream is
//! muxed once for all viewers (`core::mux::live_ts`, driven by the hub).
//!
//! The handler answers with [`Body::LiveTs`]: a viewer held on the stream, not yet
//! fed. When the request was the first on its connection, the server takes the
//! socket from there and hands it to a writer that owns many viewers
//! (`output::ts_writer`, the usual path). Otherwise hyper serves it and
//! [`spawn_feed`] gives the viewer a task of its own that forwards the shared
//! chunks through a bounded channel. Either way a viewer that falls behind the
//! fan-out ring is skipped forward to the next keyframe, where it first sends that
//! chunk's resync packets (the jump is declared, not a continuity error).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tern_net::Clock;
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::clients::Clients;
use crate::http::body::{respond, Body, LiveTsStart, Response};
use crate::hub::{StreamHub, TsSubscription, VIEWER_STALL_TIMEOUT};

/// Chunks (one per frame) queued towards one viewer's socket.
const VIEWER_QUEUE: usize = 64;

pub fn live<C: Clock>(hub: &Arc<StreamHub>, clock: C) -> Response {
    // Held first: a pull that went idle in between would drop the fan-out.
    let hold = Box::new(hub.hold_viewer(clock));
    respond(
        StatusCode::OK,
        "video/mp2t",
        Body::LiveTs(LiveTsStart {
            hub: hub.clone(),
            hold,
        }),
    )
}

/// `body` as hyper serves it: a live MPEG-TS viewer gets its own feeding task
/// ([`spawn_feed`]); any other body is served as it is.
pub fn for_hyper(body: Body) -> Body {
    match body {
        Body::LiveTs(start) => spawn_feed(start),
        Body::Counted(inner, c, open) => Body::Counted(Box::new(for_hyper(*inner)), c, open),
        b => b,
    }
}

/// The body hyper serves for a live MPEG-TS viewer: a task of its own forwards the
/// shared chunks.
#[allow(clippy::disallowed_methods)] // driver: one task per live MPEG-TS viewer served through hyper
pub fn spawn_feed(start: LiveTsStart) -> Body {
    let LiveTsStart { hub, hold } = start;
    let sub = hub.subscribe_ts();
    let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
    let name = hub.name.clone();
    let h = hub;
    tokio::spawn(async move {
        let _viewer = hold;
        tokio::select! {
            biased;
            _ = h.closed() => {}
            _ = feed(sub, tx, &h.clients) => {}
        }
        debug!(stream = %name, "mpegts viewer left");
    });
    Body::Live(rx)
}

async fn feed(sub: TsSubscription, tx: mpsc::Sender<Bytes>, clients: &Clients) {
    let TsSubscription { gop, mut rx } = sub;
    let send = |b: Bytes| async {
        let r = tx.send_timeout(b, VIEWER_STALL_TIMEOUT).await;
        if let Err(mpsc::error::SendTimeoutError::Timeout(_)) = r {
            clients.cut();
        }
        r
    };
    // The GOP goes out as one write (copied once per viewer, at its start).
    if !gop.is_empty() {
        let mut first = Vec::with_capacity(gop.iter().map(|c| c.data.len()).sum());
        for c in &gop {
            first.extend_from_slice(&c.data);
        }
        if send(Bytes::from(first)).await.is_err() {
            return;
        }
    }
    // Without a GOP the viewer waits for a keyframe chunk (it starts with PAT/PMT).
    let mut want_keyframe = gop.is_empty();
    // Whether this viewer has been sent anything: after a skip it must declare the
    // jump in continuity counters.
    let mut started = !gop.is_empty();
    loop {
        let chunk = match rx.recv().await {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(
                    skipped = n,
                    "mpegts viewer too slow, skipping to next keyframe"
                );
                if !want_keyframe {
                    clients.skipped(1);
                }
                want_keyframe = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if want_keyframe {
            if !chunk.keyframe {
                continue;
            }
            want_keyframe = false;
            if started && send(chunk.resync).await.is_err() {
                return;
            }
        }
        started = true;
        if send(chunk.data).await.is_err() {
            return;
        }
    }
}
