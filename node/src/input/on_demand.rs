//! The driver of a stream's on-demand pull: wakes the hub's `Demand` machine at the
//! deadline it names (the end of the linger after the last viewer) and again
//! whenever a viewer comes or goes. The machine (`tern_core::demand`, inside the
//! hub) decides; the input task follows the hub's pull gate.
//!
//! Owns: the one timer of on-demand pulls. Must not: decide anything.

use std::sync::Arc;

use tern_net::Clock;

use crate::hub::StreamHub;
use crate::timer::until;

/// Runs until aborted (with the stream's other tasks).
pub async fn drive<C: Clock>(hub: Arc<StreamHub>, clock: C) {
    loop {
        let deadline = hub.demand_deadline();
        tokio::select! {
            () = until(deadline, clock.now()) => hub.demand_timeout(clock.now()),
            () = hub.demand_changed() => {}
        }
    }
}
