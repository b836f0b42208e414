//! The recorder: one task per stream with a `dvr`, feeding the hub's closed segments
//! to its [`Dvr`].
//!
//! Owns: the subscription, and passing the node's `Clock` to the DVR machine. The retry
//! cadence is the machine's (`DvrMachine::submit_live`): while the DVR is paused (a
//! full disk with nothing left to delete) it drops segments and tries again with the
//! first segment after every `retry` interval, so a full disk costs one attempt per
//! interval instead of a loop of errors; after an I/O error the next segment is
//! tried. Logging of state changes is the driver's (one line per change, not per
//! segment). Must not: touch the store itself.
//!
//! Segments wait in the hub's segment fan-out while one is being written; a disk
//! slower than the stream for longer than `SEGMENT_FANOUT_CAPACITY` segments loses
//! the oldest waiting ones (logged).

use std::sync::Arc;
use std::time::Duration;

use tern_net::Clock;
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use super::Dvr;
use crate::hub::{LiveSegment, StreamHub};

/// How often a paused recorder tries again.
pub use tern_core::dvr::machine::PAUSE_RETRY;

/// Records `hub`'s segments into `dvr` until the stream is removed, on the time of
/// `clock`. Spawn it; abort it to stop recording (a write cut short is the crash
/// case `Dvr` handles).
pub async fn run<C: Clock>(dvr: Arc<Dvr>, hub: Arc<StreamHub>, retry: Duration, clock: C) {
    let (_media_info, backlog, mut rx) = hub.subscribe_segments(None);
    let rec = Recorder { dvr, retry, clock };
    for seg in backlog {
        rec.handle(&seg).await;
    }
    let closed = hub.closed();
    tokio::pin!(closed);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut closed => return,
            r = rx.recv() => r,
        };
        match next {
            Ok(seg) => rec.handle(&seg).await,
            Err(RecvError::Lagged(n)) => {
                warn!(stream = %rec.dvr.name(), missed = n,
                    "the DVR fell behind the stream (the disk is slower than the stream): {n} segments were not recorded");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

struct Recorder<C: Clock> {
    dvr: Arc<Dvr>,
    retry: Duration,
    /// The time passed to the machine.
    clock: C,
}

impl<C: Clock> Recorder<C> {
    async fn handle(&self, seg: &LiveSegment) {
        // Errors are logged by the driver on the state change; the machine keeps
        // the pause and its retry time.
        let _ = self
            .dvr
            .record_live(&seg.segment, self.clock.now(), self.retry)
            .await;
    }
}
