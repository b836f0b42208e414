//! The one way a driver waits for its machine: sleep until the deadline the machine
//! gave (`poll_timeout`), on the node's clock.
//!
//! Owns: turning a machine deadline into a tokio sleep. Must not: decide deadlines.

use std::time::Duration;

/// Waits until `deadline` (on the node's clock, whose time is now `now`); never
/// resolves without one.
#[allow(clippy::disallowed_methods)] // driver: the one wait on a machine's deadline
pub async fn until(deadline: Option<Duration>, now: Duration) {
    match deadline {
        Some(d) => tokio::time::sleep(d.saturating_sub(now)).await,
        None => std::future::pending().await,
    }
}

/// Waits `wait`, a pace a machine asked for (`tern_core::rate`: how long before the
/// next bytes may go).
pub async fn pace(wait: Duration) {
    until(Some(wait), Duration::ZERO).await
}
