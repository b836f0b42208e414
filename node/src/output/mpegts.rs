//! Live MPEG-TS: `/NAME/mpegts` is one endless response. A viewer starts at the
//! latest keyframe (the hub's GOP), continuity counters carry across the whole
//! response, and a source restart sets the discontinuity indicator. A viewer that falls
//! behind the fan-out ring is skipped forward to the next keyframe; its memory is the
//! bounded channel to its connection.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tern_core::mux::ts::TsMuxer;
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::http::body::{respond, Body, Response};
use crate::hub::{follows, StreamHub, Subscription, VIEWER_STALL_TIMEOUT};

/// Chunks (one per frame) queued towards one viewer's socket.
const VIEWER_QUEUE: usize = 64;

pub fn live(hub: &Arc<StreamHub>) -> Response {
    let sub = hub.subscribe();
    let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
    let name = hub.name.clone();
    let h = hub.clone();
    tokio::spawn(async move {
        tokio::select! {
            biased;
            _ = h.closed() => {}
            _ = feed(sub, tx) => {}
        }
        debug!(stream = %name, "mpegts viewer left");
    });
    respond(StatusCode::OK, "video/mp2t", Body::Live(rx))
}

async fn feed(sub: Subscription, tx: mpsc::Sender<Bytes>) {
    let Subscription {
        media_info,
        gop,
        mut rx,
    } = sub;
    let video = media_info.video().map(|t| t.id);
    let mut mux = TsMuxer::new(&media_info);
    let mut buf = Vec::with_capacity(64 * 1024);
    mux.write_tables(&mut buf);
    let mut last = gop.last().map(|f| f.pos);
    for f in &gop {
        mux.write_frame(f, &mut buf);
    }
    if tx
        .send_timeout(Bytes::from(std::mem::take(&mut buf)), VIEWER_STALL_TIMEOUT)
        .await
        .is_err()
    {
        return;
    }
    // Without a GOP the viewer waits for a keyframe before the first frame.
    let mut want_keyframe = gop.is_empty();
    loop {
        let frame = match rx.recv().await {
            Ok(f) => f,
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
        let is_key = Some(frame.track) == video && frame.keyframe;
        if want_keyframe && !is_key {
            continue;
        }
        want_keyframe = false;
        // A skip, a missed stretch upstream or a source restart: timestamps jump.
        if last.is_some_and(|p| !follows(p, frame.pos)) {
            mux.mark_discontinuity();
        }
        last = Some(frame.pos);
        mux.write_frame(&frame, &mut buf);
        if tx
            .send_timeout(Bytes::from(std::mem::take(&mut buf)), VIEWER_STALL_TIMEOUT)
            .await
            .is_err()
        {
            return;
        }
    }
}
