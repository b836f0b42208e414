//! The `fake://` input task: drives a `tern_core::fake::FakeSource` on the node's
//! clock and publishes its frames into the stream's hub, each when it is due.
//!
//! Owns: pacing (sleeping until the next frame is due). Must not: generate media
//! (core does) or know about outputs.

use std::sync::Arc;

use tern_core::fake::{FakeOptions, FakeSource};
use tern_net::Clock;
use tracing::info;

use crate::input::Sink;

/// Runs until the task is aborted. The epoch is the wall-clock start time in ms, so a
/// restarted source always gets a new one.
pub async fn run<C: Clock>(sink: Arc<dyn Sink>, opts: FakeOptions, clock: C) {
    let epoch = clock.utc_ms();
    let mut source = FakeSource::new(&opts, epoch);
    sink.media_info(Arc::new(source.media_info()));
    info!(stream = %sink.hub().name, epoch, width = opts.width, height = opts.height, fps = opts.fps, "fake source started");
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::sleep_until(start + source.next_due()).await;
        // Make every frame that is due now (after a stall, catch up without sleeping).
        while start + source.next_due() <= tokio::time::Instant::now() {
            let frame = source.next_frame(clock.utc_ms());
            sink.frame(frame);
        }
    }
}
