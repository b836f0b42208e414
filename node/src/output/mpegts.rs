//! Live MPEG-TS: `/NAME/mpegts` is one endless response. A viewer starts at the
//! latest keyframe (the hub's muxed GOP), continuity counters carry across the whole
//! response, and a source restart sets the discontinuity indicator. The stream is
//! muxed once for all viewers (`core::mux::live_ts`, driven by the hub); a viewer's
//! task only forwards the shared chunks. A viewer that falls behind the fan-out ring
//! is skipped forward to the next keyframe, where it first sends that chunk's resync
//! packets (the jump is declared, not a continuity error); its memory is the bounded
//! channel to its connection.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tern_net::Clock;
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::http::body::{respond, Body, Response};
use crate::hub::{StreamHub, TsSubscription, VIEWER_STALL_TIMEOUT};

/// Chunks (one per frame) queued towards one viewer's socket.
const VIEWER_QUEUE: usize = 64;

#[allow(clippy::disallowed_methods)] // driver: one task per live MPEG-TS viewer
pub fn live<C: Clock>(hub: &Arc<StreamHub>, clock: C) -> Response {
    // Held first: a pull that went idle in between would drop the fan-out.
    let viewer = hub.hold_viewer(clock);
    let sub = hub.subscribe_ts();
    let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
    let name = hub.name.clone();
    let h = hub.clone();
    tokio::spawn(async move {
        let _viewer = viewer;
        tokio::select! {
            biased;
            _ = h.closed() => {}
            _ = feed(sub, tx) => {}
        }
        debug!(stream = %name, "mpegts viewer left");
    });
    respond(StatusCode::OK, "video/mp2t", Body::Live(rx))
}

async fn feed(sub: TsSubscription, tx: mpsc::Sender<Bytes>) {
    let TsSubscription { gop, mut rx } = sub;
    let send = |b: Bytes| tx.send_timeout(b, VIEWER_STALL_TIMEOUT);
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
