//! The `fake://` input task: drives a `tern_core::fake::FakeSource` on the node's
//! clock and publishes its frames into the stream's hub, each when it is due.
//!
//! Owns: pacing (sleeping until the next frame is due). Must not: generate media
//! (core does) or know about outputs.

use std::sync::Arc;

use tern_core::fake::{FakeOptions, FakeSource};
use tern_net::Clock;
use tracing::info;

use crate::input::{Gate, Sink};

/// Runs until the task is aborted. The epoch is the wall-clock start time in ms, so a
/// restarted source always gets a new one.
#[allow(clippy::disallowed_methods)] // driver: paces the fake source at its next_due
pub async fn run<C: Clock>(sink: Arc<dyn Sink>, opts: FakeOptions, clock: C, mut gate: Gate) {
    // Each time the gate opens (an `ondemand` stream got a viewer) the camera starts
    // again, with a new epoch, as a real camera reconnected to would.
    while gate.opened().await {
        let epoch = clock.utc_ms();
        let mut source = FakeSource::new(&opts, epoch);
        sink.media_info(Arc::new(source.media_info()));
        info!(stream = %sink.hub().name, epoch, width = opts.width, height = opts.height, fps = opts.fps, "fake source started");
        // Real cameras are not in phase with each other: each fake stream starts at
        // its own offset within one frame interval (from its name, so runs repeat),
        // instead of every stream of a node producing its frames in the same
        // millisecond.
        let start = tokio::time::Instant::now() + phase(sink.hub().name.as_str(), opts.fps);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(start + source.next_due()) => {}
                () = gate.closed() => break,
            }
            // Make every frame that is due now (after a stall, catch up without
            // sleeping).
            while start + source.next_due() <= tokio::time::Instant::now() {
                let frame = source.next_frame(clock.utc_ms());
                sink.frame(frame);
            }
        }
        info!(stream = %sink.hub().name, "fake source stopped: input not needed (failover, or no viewers)");
    }
}

/// An offset in `[0, 1/fps)` derived from the stream name (FNV-1a).
fn phase(name: &str, fps: u16) -> std::time::Duration {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let interval_us = 1_000_000 / u64::from(fps.max(1));
    std::time::Duration::from_micros(hash % interval_us)
}

#[cfg(test)]
mod tests {
    use super::phase;

    #[test]
    fn phases_differ_and_stay_within_a_frame() {
        let a = phase("s1", 25);
        let b = phase("s2", 25);
        assert_ne!(a, b);
        assert!(a.as_micros() < 40_000 && b.as_micros() < 40_000);
        assert_eq!(phase("s1", 25), a);
    }
}
