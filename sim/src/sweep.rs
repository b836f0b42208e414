//! The seed sweep: one seed = one cluster, one random fault schedule derived from the
//! seed, ~20 simulated seconds of a small fake stream (256×16, the smallest with a
//! whole barcode), every oracle checked. Used by `tests/sweep.rs` (a fixed range of
//! seeds in CI) and by the `sweep` binary (any range, outside CI; `--long` runs 60 s
//! seeds with faults of up to 15 s, [`Profile::Long`]).
//!
//! The cluster of a seed is the seed cluster of DESIGN.md §1 (an origin and an edge
//! with `source m4s://origin:8888`), observed on both nodes over M4S; one seed in four
//! pulls over M4F instead (`source m4f://origin:8888`, the edge observed over M4F), and
//! one in four adds an edge of the edge (`edge2`, `source m4s://edge:9999`), observed
//! too. Faults hit the
//! links between nodes (partitions both ways and one way, holds) and the nodes
//! (crash then restart, instant restart).
//!
//! Owns: the sweep's cluster, schedule bounds and replay instructions. Must not: keep
//! anything between seeds, or skip an oracle for a seed.

use std::time::Duration;

use crate::faults::{Schedule, Targets};
use crate::oracle::{self, ObserverSpec, Report};
use crate::{Cluster, Trace};

/// How long a seed runs and how long its faults may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// CI's: 20 simulated seconds, faults of 0.1–4 s.
    Standard,
    /// The sweep binary's `--long`: 60 simulated seconds, faults of 0.1–15 s (long
    /// enough for reconnect backoffs to reach their cap).
    Long,
}

impl Profile {
    /// Simulated length of one seed's run.
    pub fn seconds(self) -> u64 {
        match self {
            Profile::Standard => SECONDS,
            Profile::Long => 60,
        }
    }

    /// The longest fault.
    pub fn longest_fault(self) -> Duration {
        match self {
            Profile::Standard => Duration::from_secs(4),
            Profile::Long => Duration::from_secs(15),
        }
    }

    /// Every fault has ended by this, leaving time to check the recovery after the
    /// last one.
    pub fn faults_until(self) -> Duration {
        Duration::from_secs(self.seconds() - 4)
    }

    fn flag(self) -> &'static str {
        match self {
            Profile::Standard => "",
            Profile::Long => " --long",
        }
    }
}

/// Simulated length of one seed's run (standard profile).
pub const SECONDS: u64 = 20;
/// No fault before this (the cluster starts, the observers connect at 1.5 s).
pub const FAULTS_FROM: Duration = Duration::from_secs(2);

pub const ORIGIN: &str =
    "http 8888;\ncluster_key 123;\nstream main {\n  input fake://fake?width=256&height=16;\n}\n";
pub const EDGE: &str = "http 9999;\ncluster_key 123;\nsource m4s://origin:8888;\n";
pub const EDGE_M4F: &str = "http 9999;\ncluster_key 123;\nsource m4f://origin:8888;\n";
pub const EDGE2: &str = "http 9998;\ncluster_key 123;\nsource m4s://edge:9999;\n";

/// Whether the seed's edge pulls over M4F.
pub fn m4f_edge(seed: u64) -> bool {
    seed % 4 == 1
}

/// Whether the seed's cluster has an edge of the edge.
pub fn has_edge2(seed: u64) -> bool {
    seed % 4 == 3
}

/// What the schedule of `seed` may break.
pub fn targets(seed: u64) -> Targets {
    let mut t = Targets {
        links: vec![("origin".into(), "edge".into())],
        hosts: vec!["origin".into(), "edge".into()],
    };
    if has_edge2(seed) {
        t.links.push(("edge".into(), "edge2".into()));
        t.hosts.push("edge2".into());
    }
    t
}

/// The fault schedule of `seed` (standard profile).
pub fn schedule(seed: u64) -> Schedule {
    schedule_in(Profile::Standard, seed)
}

/// The fault schedule of `seed` in `profile`.
pub fn schedule_in(profile: Profile, seed: u64) -> Schedule {
    Schedule::random_up_to(
        seed,
        &targets(seed),
        FAULTS_FROM,
        profile.faults_until(),
        profile.longest_fault(),
    )
}

/// The result of one seed.
pub struct SeedRun {
    pub seed: u64,
    pub profile: Profile,
    pub schedule: Schedule,
    pub report: Report,
    /// The simulation itself failed (a host returned an error).
    pub sim_error: Option<String>,
    pub trace_lines: usize,
    pub trace_hash: u64,
}

impl SeedRun {
    pub fn ok(&self) -> bool {
        self.sim_error.is_none() && self.report.is_ok()
    }

    /// What to print when the seed failed: the violations, the schedule, the replay
    /// commands.
    pub fn failure(&self) -> String {
        let mut s = format!("seed {} FAILED\n", self.seed);
        if let Some(e) = &self.sim_error {
            s.push_str(&format!("  simulation error: {e}\n"));
        }
        s.push_str(&self.report.render());
        s.push_str(&self.schedule.to_string());
        s.push_str(&replay_in(self.profile, self.seed));
        s
    }
}

/// How to replay `seed` of the standard profile (on the same commit).
pub fn replay(seed: u64) -> String {
    replay_in(Profile::Standard, seed)
}

/// How to replay `seed` of `profile` (on the same commit).
pub fn replay_in(profile: Profile, seed: u64) -> String {
    let mut s = format!(
        "replay: cargo run -p tern-sim --release --bin sweep -- --seeds 1 --start {seed}{} --verbose\n",
        profile.flag()
    );
    if profile == Profile::Standard {
        s.push_str(&format!(
            "   or: TERN_SIM_SEED={seed} cargo test -p tern-sim --test sweep -- --nocapture (TERN_SIM_TRACE=1 prints the trace)\n"
        ));
    }
    s
}

/// Runs `seed` (standard profile).
pub fn run_seed(seed: u64) -> SeedRun {
    run_seed_with(Profile::Standard, seed, Trace::new())
}

/// Runs `seed` of `profile`, recording into `trace`.
pub fn run_seed_with(profile: Profile, seed: u64, trace: Trace) -> SeedRun {
    let schedule = schedule_in(profile, seed);
    let end = Duration::from_secs(profile.seconds());
    let mut c = Cluster::with_trace(seed, end + Duration::from_secs(1), trace);
    c.node("origin", ORIGIN);
    let mut observations = vec![c.observe(ObserverSpec::m4s("origin", 8888, 1))];
    if m4f_edge(seed) {
        c.node("edge", EDGE_M4F);
        observations.push(c.observe(ObserverSpec::m4f("edge", 9999, 2)));
    } else {
        c.node("edge", EDGE);
        observations.push(c.observe(ObserverSpec::m4s("edge", 9999, 2)));
    }
    if has_edge2(seed) {
        c.node("edge2", EDGE2);
        observations.push(c.observe(ObserverSpec::m4s("edge2", 9998, 3)));
    }
    tracing::info!(target: "tern_sim::sweep", seed, ?profile, schedule = %schedule, "sweep seed");
    let sim_error = c.run_schedule(&schedule, end).err().map(|e| e.to_string());
    let end_ms = c.elapsed().as_millis() as u64;
    let report = oracle::check(&observations, &schedule.windows(), end_ms);
    SeedRun {
        seed,
        profile,
        schedule,
        report,
        sim_error,
        trace_lines: c.trace().len(),
        trace_hash: c.trace().hash(),
    }
}
