//! The `Clock`: the only way node code learns the time. `now()` is monotonic (tokio's
//! clock, which turmoil virtualises); `utc_ms()` is the wall clock, real in
//! production, the simulation's pinned epoch plus elapsed time under turmoil.

use std::time::Duration;

use tern_core::UtcMs;

pub trait Clock: Clone + Send + Sync + 'static {
    /// Time since the node started, monotonic.
    fn now(&self) -> Duration;
    /// Milliseconds since the Unix epoch.
    fn utc_ms(&self) -> UtcMs;
}

/// Production clock: tokio's monotonic instant and the system's wall clock.
#[derive(Clone, Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    // The one place production reads the wall clock (docs/design.md §4).
    #[allow(clippy::disallowed_methods)]
    fn utc_ms(&self) -> UtcMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as UtcMs)
            .unwrap_or(0)
    }
}
