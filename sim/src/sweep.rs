//! The seed sweep: one seed = one cluster, one random fault schedule derived from the
//! seed, ~20 simulated seconds of a small fake stream (256×16, the smallest with a
//! whole barcode), every oracle checked. Used by `tests/sweep.rs` (a fixed range of
//! seeds in CI) and by the `sweep` binary (any range, outside CI; `--long` runs 60 s
//! seeds with faults of up to 15 s, [`Profile::Long`]).
//!
//! The cluster of a seed is the seed cluster of docs/design.md §1 (an origin and an edge
//! with `source m4s://origin:8888`), observed on both nodes over M4S; one seed in four
//! pulls over M4F instead (`source m4f://origin:8888`, the edge observed over M4F), and
//! one in four adds an edge of the edge (`edge2`, `source m4s://edge:9999`), observed
//! too. Faults hit the
//! links between nodes (partitions both ways and one way, holds) and the nodes
//! (crash then restart, instant restart; each a power cut of the node's disks).
//!
//! In half the seeds ([`records`]: four in every eight, so every kind of cluster
//! above) the origin records `main` (`dvr /dvr`, an in-memory disk whose operations
//! take 10–99 ms of simulated time, so that a crash can fall in the middle of a
//! recording), and the schedule also has disk faults: full-disk windows (below one
//! segment, or a few segments) and bursts of I/O errors on writes, fsyncs, directory
//! fsyncs and renames; crashes of the origin cut the disk's power. Two seconds before
//! the end an archive probe looks at the origin's whole index and fetches it from the
//! origin, the edge and `edge2` ([`crate::archive`]); every archive oracle is checked
//! on that look (the index never points to a missing or partial segment, ranges and
//! discontinuities truthful, the same bytes on every node, the frames seen live), and
//! the recording must be live again unless an origin fault ended too recently for it.
//!
//! Owns: the sweep's cluster, schedule bounds and replay instructions. Must not: keep
//! anything between seeds, or skip an oracle for a seed.

use std::time::Duration;

use tern_node::dvr::recorder::PAUSE_RETRY;

use crate::archive::{self, Probe, ProbeSpec};
use crate::faults::{fmt_ms, Schedule, Targets};
use crate::oracle::{self, Observation, ObserverSpec, Report, Violation};
use crate::{node_seed, Cluster, Trace, SIM_EPOCH_MS};

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
/// The sweep's turmoil tick, twice the default [`crate::TICK`]: a step costs about
/// the same whatever its length (every host's runtime is entered, the network
/// scanned), so this halves the steps of a seed. Timers still fire at their time;
/// a link's latency is [`crate::LINK_LATENCY`] minus less than one tick (8–10 ms
/// instead of 9–10 ms), well inside the latency oracle's bound; fault times are
/// rounded up to the tick ([`Schedule::on_ticks`]), which is when they are applied.
pub const TICK: Duration = Duration::from_millis(2);
/// No fault before this (the cluster starts, the observers connect at 1.5 s).
pub const FAULTS_FROM: Duration = Duration::from_secs(2);

pub const ORIGIN: &str =
    "http 8888;\ncluster_key 123;\nstream main {\n  input fake://fake?width=256&height=16;\n}\n";
/// [`ORIGIN`] recording `main` to `/dvr` (an in-memory disk in the simulation).
pub const ORIGIN_DVR: &str = "http 8888;\ncluster_key 123;\nstream main {\n  input fake://fake?width=256&height=16;\n  dvr /dvr;\n}\n";
pub const EDGE: &str = "http 9999;\ncluster_key 123;\nsource m4s://origin:8888 { static; }\n";
pub const EDGE_M4F: &str = "http 9999;\ncluster_key 123;\nsource m4f://origin:8888 { static; }\n";
pub const EDGE2: &str = "http 9998;\ncluster_key 123;\nsource m4s://edge:9999 { static; }\n";

/// The DVR path of [`ORIGIN_DVR`].
pub const DVR_PATH: &str = "/dvr";
/// About the size of one recorded segment of the sweep's stream (2 s of 256×16): the
/// unit of full-disk capacities.
pub const SEGMENT_BYTES: u64 = 318_188;
/// How long before the end of a recording seed the archive probe looks.
pub const LOOK_BEFORE_END: Duration = Duration::from_secs(2);

/// Whether the seed's origin records (with disk faults in its schedule): seeds
/// `8k..8k+4`, which cover every kind of cluster of the sweep.
pub fn records(seed: u64) -> bool {
    seed % 8 < 4
}

/// How long each mutating operation of a recording seed's disk takes.
pub fn disk_latency(seed: u64) -> Duration {
    Duration::from_millis(10 + (seed.wrapping_mul(7919) >> 3) % 90)
}

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
        disks: Vec::new(),
        segment_bytes: SEGMENT_BYTES,
    };
    if records(seed) {
        t.disks.push(("origin".into(), DVR_PATH.into()));
    }
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
    .on_ticks(TICK)
}

/// The result of one seed.
pub struct SeedRun {
    pub seed: u64,
    pub profile: Profile,
    pub schedule: Schedule,
    pub report: Report,
    /// The simulation itself failed (a host returned an error).
    pub sim_error: Option<String>,
    /// What the archive probe saw, for a recording seed.
    pub archive: Option<String>,
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
        if let Some(a) = &self.archive {
            s.push_str(&format!("  {a}\n"));
        }
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
    let mut c = Cluster::with_tick(seed, end + Duration::from_secs(1), trace, TICK);
    let records = records(seed);
    if records {
        c.node("origin", ORIGIN_DVR);
        c.disk("origin", DVR_PATH).set_latency(disk_latency(seed));
    } else {
        c.node("origin", ORIGIN);
    }
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
    let probe = records.then(|| {
        let mut spec =
            ProbeSpec::new("origin", 8888, vec![end - LOOK_BEFORE_END]).also("edge", 9999);
        if has_edge2(seed) {
            spec = spec.also("edge2", 9998);
        }
        spec.seed = node_seed(seed, &spec.host);
        let host = spec.host.clone();
        let (probe, fut) = archive::probe(spec);
        c.client(&host, fut);
        probe
    });
    tracing::info!(target: "tern_sim::sweep", seed, ?profile, schedule = %schedule, "sweep seed");
    let sim_error = c.run_schedule(&schedule, end).err().map(|e| e.to_string());
    let end_ms = c.elapsed().as_millis() as u64;
    let mut report = oracle::check(&observations, &schedule.windows(), end_ms);
    let archive = probe.map(|p| {
        let (v, summary) = check_archive(&p, &schedule, &observations, end_ms);
        report.violations.extend(v);
        summary
    });
    SeedRun {
        seed,
        profile,
        schedule,
        report,
        sim_error,
        archive,
        trace_lines: c.trace().len(),
        trace_hash: c.trace().hash(),
    }
}

/// When the faults of the origin (crashes, restarts, disk faults) stop having effects,
/// at the latest, in simulated ms. A burst of I/O errors fails operations, not a
/// time: each record of a segment uses at least one operation of a kind a pending
/// burst counts (it fails on one, or it succeeds and uses one of every kind), so the
/// bursts pending together spoil at most as many records as they count operations
/// (`skip + n` each), one after the other.
pub fn origin_faults_end(schedule: &Schedule, segment_ms: u64) -> Option<u64> {
    let mut end: Option<u64> = None;
    let mut errors_until = 0u64;
    for f in &schedule.faults {
        if f.fault.host() != Some("origin") {
            continue;
        }
        let at = f.at.as_millis() as u64;
        let mut e = f.end().as_millis() as u64;
        if let crate::faults::Fault::DiskErrors { skip, n, .. } = &f.fault {
            errors_until = errors_until.max(at) + u64::from(skip + n) * segment_ms;
            e = errors_until;
        }
        end = Some(end.unwrap_or(0).max(e));
    }
    end
}

/// The archive oracles on a recording seed's probe ([`archive::check_look`] on its
/// look, which must have happened), and the **archive liveness** oracle: the newest
/// stored segment ended at most two segments before the look (the one closing and
/// the one before it), unless the faults of the origin (crash, restart, disk) have
/// effects until less than the pause's retry interval plus two segments before the
/// look ([`origin_faults_end`]). Returns the violations and a one-line summary.
pub fn check_archive(
    probe: &Probe,
    schedule: &Schedule,
    observations: &[Observation],
    end_ms: u64,
) -> (Vec<Violation>, String) {
    let who = probe.name();
    let looks = probe.looks();
    let Some(look) = looks.first() else {
        let v = Violation {
            oracle: "archive index",
            observer: who.to_owned(),
            at_ms: end_ms,
            detail: "the archive probe did not finish its look before the end".to_owned(),
        };
        return (vec![v], "archive: no look".to_owned());
    };
    let mut v = archive::check_look(who, look, observations);
    let segment_ms = oracle::M4F_SEGMENT.as_millis() as u64;
    let settle = PAUSE_RETRY.as_millis() as u64 + 2 * segment_ms;
    let last_origin_fault = origin_faults_end(schedule, segment_ms);
    let newest_end = look
        .entries()
        .iter()
        .map(|e| e.utc_start_ms + u64::from(e.duration_ms) - SIM_EPOCH_MS)
        .max();
    let quiet = last_origin_fault.is_none_or(|t| t + settle <= look.at_ms);
    if quiet
        && look.index.is_ok()
        && newest_end.is_none_or(|t| t + 2 * segment_ms + 500 < look.at_ms)
    {
        v.push(Violation {
            oracle: "archive liveness",
            observer: who.to_owned(),
            at_ms: look.at_ms,
            detail: format!(
                "the newest stored segment ends at {} (none: recording never started), more \
                 than two segments before the look at {}; the faults of the origin have no \
                 effect after {}",
                newest_end.map_or("-".to_owned(), fmt_ms),
                fmt_ms(look.at_ms),
                last_origin_fault.map_or("-".to_owned(), fmt_ms)
            ),
        });
    }
    let summary = format!(
        "archive at {}: {} entries, {} ranges, liveness {}, fetched {}",
        fmt_ms(look.at_ms),
        look.entries().len(),
        look.index.as_ref().map_or(0, |i| i.facts.ranges.len()),
        if quiet { "checked" } else { "not checked" },
        look.fetched
            .iter()
            .map(|f| format!(
                "{}: {}",
                f.node,
                f.segments
                    .as_ref()
                    .map_or_else(|e| e.to_string(), |s| s.len().to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (v, summary)
}
