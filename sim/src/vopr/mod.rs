//! The pure simulator (VOPR style): core's machines driven directly — no tokio, no
//! turmoil, no sockets — by one deterministic event loop with a simulated network
//! (delay with jitter, cuts, partitions, stalls, late messages of an old connection,
//! duplicated requests) and a source that stalls and restarts. A seed replays a run
//! exactly. It runs millions of steps per minute, so it explores far more fault
//! interleavings than the turmoil scenarios, which stay for hyper and the wiring.
//!
//! Topology: an origin (node 0) with a source; edges 1 and 3 pull from it over M4S,
//! edge 2 pulls from edge 1. Oracles: see [`oracle`].
//!
//! Owns: running worlds and reporting. Must not: read the real clock inside a run
//! (the caller times it), or share anything between runs.

pub mod archive;
pub mod dvr;
pub mod events;
pub mod failover;
pub mod oracle;
pub mod source;
pub mod world;

use std::time::Duration;

pub use oracle::Violation;
pub use world::{Counts, World};

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub simulated: Duration,
    pub counts: Counts,
    pub violations: Vec<Violation>,
}

/// Faults arrive on average this often (spread over the three links and the
/// source).
pub const FAULT_EVERY: Duration = Duration::from_secs(3);

/// Runs `steps` events of the world of `seed` (with faults unless `calm`).
pub fn run(seed: u64, steps: u64, calm: bool) -> Report {
    let mut w = World::new(seed, (!calm).then_some(FAULT_EVERY));
    while w.counts.steps < steps && w.step() {}
    report(seed, &w)
}

/// Runs `seed` like [`run`], printing what happens between `from` and `to`.
pub fn trace(seed: u64, steps: u64, from: Duration, to: Duration) -> Report {
    let mut w = World::new(seed, Some(FAULT_EVERY));
    w.trace = Some((from, to));
    while w.counts.steps < steps && w.step() {}
    report(seed, &w)
}

fn report(seed: u64, w: &World) -> Report {
    let mut counts = w.counts.clone();
    counts.gaps = w.gaps();
    counts.dvr = w.dvr_counts();
    Report {
        seed,
        simulated: w.now(),
        counts,
        violations: w.violations.clone(),
    }
}

/// Runs seeds `first..` until `steps` steps are done in all, `per_seed` steps each;
/// returns every run's report.
pub fn sweep(first: u64, steps: u64, per_seed: u64) -> Vec<Report> {
    events::sweep(
        first,
        steps,
        per_seed,
        |seed, n| run(seed, n, false),
        |r| r.counts.steps,
    )
}
