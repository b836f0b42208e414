//! The pure simulator in the test suite: a fault-free run delivers every frame to
//! every edge; seeds replay exactly; and a sweep of at least ten million steps with
//! faults finds no oracle failure (it prints steps per second).

#![allow(clippy::disallowed_methods)] // times the sweep to print its speed

use std::time::Instant;

use tern_sim::vopr;

#[test]
fn calm_run_delivers_everything_in_order() {
    let r = vopr::run(1, 200_000, true);
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    let c = &r.counts;
    assert!(c.frames > 10_000, "{c:?}");
    // Every edge published every origin frame but the last few in flight.
    for node in 1..4 {
        assert!(c.delivered[node] + 10 >= c.frames, "node {node}: {c:?}");
    }
    assert_eq!(c.dead_peers, 0);
}

#[test]
fn a_seed_replays_exactly() {
    let a = vopr::run(42, 300_000, false);
    let b = vopr::run(42, 300_000, false);
    assert_eq!(format!("{:?}", a.counts), format!("{:?}", b.counts));
    assert_eq!(a.simulated, b.simulated);
    assert_eq!(a.violations, b.violations);
}

#[test]
fn ten_million_steps_with_faults() {
    let steps: u64 = std::env::var("TERN_VOPR_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let started = Instant::now();
    let reports = vopr::sweep(1000, steps, 1_000_000);
    let secs = started.elapsed().as_secs_f64();
    let mut total = vopr::Counts::default();
    let mut simulated = 0.0;
    for r in &reports {
        simulated += r.simulated.as_secs_f64();
        total.add(&r.counts);
    }
    println!(
        "vopr: {} steps, {} seeds, {:.0} simulated s in {:.1} wall s: {:.0} steps/s",
        total.steps,
        reports.len(),
        simulated,
        secs,
        total.steps as f64 / secs
    );
    println!("vopr faults and events: {total:?}");
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    for r in &failed {
        println!(
            "seed {}: {} failures, first ones:",
            r.seed,
            r.violations.len()
        );
        for v in r.violations.iter().take(5) {
            println!("  {v}");
        }
    }
    assert!(failed.is_empty(), "{} seeds failed", failed.len());
    // The faults happened (a sweep that injects nothing proves nothing).
    assert!(total.cuts > 0 && total.partitions > 0 && total.stalls > 0 && total.lags > 0);
    assert!(total.source_stalls > 0 && total.restarts > 0 && total.late_deliveries > 0);
    // The origin's DVR root (three streams) stored, deleted (retention and making
    // room), met a full disk and I/O errors, and crashed, also in the middle of a
    // recording.
    let d = &total.dvr;
    assert!(d.stored > 0 && d.deleted > 0 && d.full_disks > 0 && d.io_faults > 0);
    // Eviction across the streams of the root ran.
    assert!(d.evicted > 0 && d.evicted_other > 0, "{d:?}");
    assert!(d.crashes > 0 && d.crashes_mid_job > 0 && d.journal_rewrites > 0);
    assert!(total.steps >= steps);
}

/// The DVR machine crashed after every prefix of its store operations (and with the
/// next data write torn): every reopened disk keeps every acknowledged segment,
/// reads back byte for byte, and its journal, files and index agree.
#[test]
fn dvr_crash_after_every_prefix_of_store_operations() {
    let started = Instant::now();
    let r = vopr::dvr::crash_every_prefix(560);
    println!(
        "dvr prefix check: {} store operations, {} crashed disks reopened and checked, {} deletes ({} to make room on a full disk), {} journal rewrites, in {:.1} s",
        r.ops,
        r.crashes,
        r.deletes,
        r.evictions,
        r.rewrites,
        started.elapsed().as_secs_f64()
    );
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    // Retention, eviction and compaction all ran (one rewrite is the first record).
    assert!(
        r.deletes > 400 && r.evictions >= 10 && r.rewrites >= 2,
        "{r:?}"
    );
    assert!(r.crashes > r.ops);
}

/// Failover: a node with two inputs whose primary stalls (shorter and longer than
/// its timeout) and comes back always returns to the primary, switches at keyframes
/// and takes over within the bound.
#[test]
fn failover_returns_to_the_first_input() {
    let started = Instant::now();
    let mut total = vopr::failover::FailoverReport::default();
    for seed in 0..20 {
        let r = vopr::failover::run(seed, 100_000);
        assert!(r.violations.is_empty(), "seed {seed}: {:#?}", r.violations);
        total.steps += r.steps;
        total.stalls += r.stalls;
        total.to_backup += r.to_backup;
        total.returns += r.returns;
        total.published += r.published;
    }
    println!(
        "failover: {} steps, {} stalls, {} switches to the backup, {} returns, {} frames published, in {:.2} s",
        total.steps,
        total.stalls,
        total.to_backup,
        total.returns,
        total.published,
        started.elapsed().as_secs_f64()
    );
    assert!(total.to_backup > 50 && total.returns > 50, "{total:?}");
}

/// `TERN_VOPR_TRACE=SEED:FROM_S:TO_S cargo test -p tern-sim --test vopr trace -- --nocapture`
/// prints one seed's decisions in a window of simulated time.
#[test]
fn trace() {
    let Some(spec) = std::env::var("TERN_VOPR_TRACE").ok() else {
        return;
    };
    let v: Vec<u64> = spec.split(':').filter_map(|x| x.parse().ok()).collect();
    let [seed, from, to] = v[..] else {
        panic!("TERN_VOPR_TRACE=SEED:FROM_S:TO_S, not {spec:?}");
    };
    let r = vopr::trace(
        seed,
        1_000_000,
        std::time::Duration::from_secs(from),
        std::time::Duration::from_secs(to),
    );
    for v in r.violations.iter().take(5) {
        println!("  {v}");
    }
}

/// The archive route: an edge answers index and range questions, plain and cached,
/// through core's archive-route machines against two origin peers over a faulty
/// network; every answer is byte-identical, a 404 only when no reachable peer has
/// an archive, a 503 only when a fault hit the question, and nothing hangs past the
/// idle deadline; requests replayed by a man-in-the-middle are refused (see
/// `sim/src/vopr/archive.rs`).
#[test]
fn archive_route_answers_byte_identical_404_only_when_absent_503_only_on_faults() {
    let steps: u64 = std::env::var("TERN_VOPR_ARCHIVE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let started = Instant::now();
    let reports = vopr::archive::sweep(2000, steps, 100_000);
    let secs = started.elapsed().as_secs_f64();
    let mut total = vopr::archive::ArchiveCounts::default();
    let mut simulated = 0.0;
    for r in &reports {
        simulated += r.simulated.as_secs_f64();
        total.add(&r.counts);
    }
    println!(
        "archive: {} steps, {} seeds, {:.0} simulated s in {:.2} wall s: {:.0} steps/s",
        total.steps,
        reports.len(),
        simulated,
        secs,
        total.steps as f64 / secs
    );
    println!("archive faults and answers: {total:?}");
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    for r in &failed {
        println!(
            "seed {}: {} failures, first ones:",
            r.seed,
            r.violations.len()
        );
        for v in r.violations.iter().take(5) {
            println!("  {v}");
        }
    }
    assert!(failed.is_empty(), "{} seeds failed", failed.len());
    // Every kind of answer and fault happened.
    let t = &total;
    assert!(
        t.answered > 0 && t.not_found > 0 && t.unreachable > 0,
        "{t:?}"
    );
    assert!(
        t.from_cache > 0 && t.refetched > 0 && t.cache_indexes > 0,
        "{t:?}"
    );
    assert!(
        t.gone_at_peer > 0 && t.idle_timeouts > 0 && t.slow_reads > 0,
        "{t:?}"
    );
    assert!(
        t.cuts > 0 && t.partitions > 0 && t.long_stalls > 0 && t.downs > 0,
        "{t:?}"
    );
    assert!(
        t.short_stalls > 0 && t.readers_gone > 0 && t.cache_faults > 0,
        "{t:?}"
    );
    // Replayed requests were refused inside the clock window and outside it.
    assert!(
        t.signed > 0 && t.replays_refused > 0 && t.replays_too_old > 0,
        "{t:?}"
    );
    assert!(total.steps >= steps);
}
