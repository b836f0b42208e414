//! The seed sweep in CI: seeds `0..SEEDS` (each ~20 simulated seconds with its own
//! random fault schedule, see `tern_sim::sweep`; in half of them the origin records,
//! with disk faults in the schedule and the archive oracles checked at the end), split
//! over several tests so the
//! harness runs them on every core. A failing seed is printed with its schedule,
//! every violation and the command that replays it; `TERN_SIM_SEED=S` runs only seed
//! `S` (in `one_seed_from_the_environment`, the others skip).
//!
//! Owns: which seeds CI runs. Must not: retry a failing seed, drop one from the range,
//! or loosen an oracle for the sweep's sake (a failing seed is a finding to report).

use tern_sim::sweep::{self, SeedRun};

/// Seeds in CI (issue 8 asks for at least 1,000). Measured on 2 cores with a load
/// average of about 1 (nothing else running), `cargo test -p tern-sim`: the 1,000
/// seeds in 63.5 s wall, about 315 simulated s per wall s, 157 per core. One part
/// alone (`cargo test -p tern-sim --test sweep sweep_part_0 -- --test-threads 1
/// --nocapture`, 125 seeds) prints 157–159 simulated s per wall s; before the 2 ms
/// tick and the cheaper trace and observers the same 125 seeds took 27.7–27.9 s
/// (about 90 per wall s). Under a load average of 7–8 the 1,000 took 241 s.
const SEEDS: u64 = 1000;
/// Tests the range is split into.
const PARTS: u64 = 8;

fn env_seed() -> Option<u64> {
    let v = std::env::var("TERN_SIM_SEED").ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("TERN_SIM_SEED={v:?} is not a number")),
    )
}

// Wall time is measured around whole seeds for the printed figure only; nothing in a
// simulation reads it, and no test asserts on it.
#[allow(clippy::disallowed_methods)]
fn wall() -> std::time::Instant {
    std::time::Instant::now()
}

fn run(seeds: impl Iterator<Item = u64>) {
    let mut failed: Vec<SeedRun> = Vec::new();
    let mut n = 0;
    let t0 = wall();
    for seed in seeds {
        // Captured by the harness; shown with the output of a failing part.
        print!("{}", sweep::schedule(seed));
        let r = sweep::run_seed(seed);
        n += 1;
        if !r.ok() {
            eprintln!("{}", r.failure());
            failed.push(r);
        }
    }
    #[allow(clippy::disallowed_methods)] // the figure's wall time, see `wall`
    let secs = t0.elapsed().as_secs_f64();
    let simulated = n * sweep::Profile::Standard.seconds();
    // Shown with --nocapture (one test thread each: the figure is per core, if the
    // machine has one free for each test).
    println!(
        "{n} seeds, {simulated} simulated s in {secs:.1} s wall: {:.0} simulated s per wall s",
        simulated as f64 / secs.max(1e-9)
    );
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|r| r.seed.to_string()).collect();
        panic!(
            "{} of {n} seeds failed: {} (each printed above with its schedule, violations \
             and replay command)\n{}",
            failed.len(),
            list.join(", "),
            sweep::replay(failed[0].seed)
        );
    }
}

fn part(p: u64) {
    if env_seed().is_some() {
        return;
    }
    let per = SEEDS.div_ceil(PARTS);
    run(p * per..((p + 1) * per).min(SEEDS));
}

#[test]
fn one_seed_from_the_environment() {
    if let Some(seed) = env_seed() {
        let r = sweep::run_seed(seed);
        println!("{}", r.schedule);
        println!("{}", r.report.render());
        println!(
            "seed {seed}: trace {} lines, hash {:016x}",
            r.trace_lines, r.trace_hash
        );
        run(std::iter::once(seed));
    }
}

#[test]
fn sweep_part_0() {
    part(0);
}
#[test]
fn sweep_part_1() {
    part(1);
}
#[test]
fn sweep_part_2() {
    part(2);
}
#[test]
fn sweep_part_3() {
    part(3);
}
#[test]
fn sweep_part_4() {
    part(4);
}
#[test]
fn sweep_part_5() {
    part(5);
}
#[test]
fn sweep_part_6() {
    part(6);
}
#[test]
fn sweep_part_7() {
    part(7);
}

/// The schedules are functions of the seed, and the same seed replays byte for byte
/// (a cheap determinism check on a faulty run; `determinism.rs` has the thorough one).
#[test]
fn a_seed_replays_its_schedule_and_trace() {
    if env_seed().is_some() {
        return;
    }
    let seed = 3; // has an edge of the edge, records, has a disk fault
    assert!(sweep::has_edge2(seed) && sweep::records(seed));
    assert!(sweep::schedule(seed).has_disk_faults());
    let a = sweep::run_seed(seed);
    let b = sweep::run_seed(seed);
    assert_eq!(a.schedule, b.schedule);
    assert!(!a.schedule.faults.is_empty(), "{}", a.schedule);
    assert_eq!(
        (a.trace_lines, a.trace_hash),
        (b.trace_lines, b.trace_hash),
        "seed {seed} does not replay: {}",
        sweep::replay(seed)
    );
}
