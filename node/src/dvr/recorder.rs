//! The recorder: one task per stream with a `dvr`, feeding the hub's closed segments
//! to its [`Dvr`].
//!
//! Owns: the subscription and the retry cadence. While the DVR is paused (a full
//! disk with nothing left to delete) it drops segments and tries again with the
//! first segment after every `retry` interval, so a full disk costs one attempt per
//! interval instead of a loop of errors; after an I/O error it simply tries the next
//! segment. Logging of state changes is `Dvr`'s (one line per change, not per
//! segment). Must not: touch the store itself.
//!
//! Segments wait in the hub's segment fan-out while one is being written; a disk
//! slower than the stream for longer than `SEGMENT_FANOUT_CAPACITY` segments loses
//! the oldest waiting ones (logged).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::warn;

use super::{Dvr, DvrError, RecordingState};
use crate::hub::{LiveSegment, StreamHub};

/// How often a paused recorder tries again.
pub const PAUSE_RETRY: Duration = Duration::from_secs(5);

/// Records `hub`'s segments into `dvr` until the stream is removed. Spawn it; abort
/// it to stop recording (a write cut short is the crash case `Dvr` handles).
pub async fn run(dvr: Arc<Dvr>, hub: Arc<StreamHub>, retry: Duration) {
    let (_media_info, backlog, mut rx) = hub.subscribe_segments(None);
    let mut rec = Recorder {
        dvr,
        retry,
        retry_at: None,
    };
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

struct Recorder {
    dvr: Arc<Dvr>,
    retry: Duration,
    /// While paused: when to try again.
    retry_at: Option<Instant>,
}

impl Recorder {
    async fn handle(&mut self, seg: &LiveSegment) {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return;
            }
        }
        match self.dvr.record(&seg.segment).await {
            Ok(_) => self.retry_at = None,
            Err(DvrError::Full { .. }) => self.retry_at = Some(Instant::now() + self.retry),
            // Logged by the Dvr on the state change; the next segment is tried.
            Err(_) => self.retry_at = None,
        }
        debug_assert!(
            self.retry_at.is_none()
                || matches!(self.dvr.status().state, RecordingState::Paused { .. })
        );
    }
}
