//! `cargo run -p tern-sim --release --bin sweep -- --seeds N --start S [--jobs J]
//! [--long] [--verbose]`: runs seeds `S..S+N` of the seed sweep (`tern_sim::sweep`;
//! `--long`: 60 s seeds with faults of up to 15 s) outside CI,
//! on J threads (default: the number of cores), printing each failing seed with its
//! schedule, violations and replay command, and a summary with the wall time; with
//! `--verbose`, each seed's schedule as it starts and its figures when it ends.
//!
//! Owns: the command line and the parallel loop. Must not: change what a seed runs
//! (a seed gives the same run here as in `tests/sweep.rs`), or let wall time into a
//! simulation (it is only measured around whole seeds, for the summary).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tern_sim::sweep::{self, Profile};

struct Args {
    seeds: u64,
    start: u64,
    jobs: usize,
    verbose: bool,
    profile: Profile,
}

fn usage() -> ! {
    eprintln!(
        "usage: sweep [--seeds N (default 1000)] [--start S (default 0)] [--jobs J] [--long] [--verbose]\n\
         runs seeds S..S+N, each {} simulated seconds with a random fault schedule \
         (--long: {} s, longer faults)",
        Profile::Standard.seconds(),
        Profile::Long.seconds()
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        seeds: 1000,
        start: 0,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        verbose: false,
        profile: Profile::Standard,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--seeds" => a.seeds = num(),
            "--start" => a.start = num(),
            "--jobs" => a.jobs = num().max(1) as usize,
            "--verbose" | "-v" => a.verbose = true,
            "--long" => a.profile = Profile::Long,
            _ => usage(),
        }
    }
    a
}

// Wall time is measured for the summary only; nothing in a simulation reads it.
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

// The sweep runs whole simulations on real threads and times them on the wall clock,
// around them, never inside (see the file comment).
#[allow(clippy::disallowed_methods)]
fn main() -> ExitCode {
    let args = parse();
    let next = AtomicU64::new(args.start);
    let end = args.start.saturating_add(args.seeds);
    let failed: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let out = Mutex::new(());
    let t0 = now();
    println!(
        "sweep: seeds {}..{} on {} threads, {} simulated seconds each ({:?} profile)",
        args.start,
        end,
        args.jobs,
        args.profile.seconds(),
        args.profile
    );
    // One simulation per thread at a time; each is single-threaded and replays from
    // its seed whatever thread runs it (the cluster's crash model does not depend on
    // tokio's process-wide task ids, see `Cluster::apply`).
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                if args.verbose {
                    print!(
                        "starting seed {seed}: {}",
                        sweep::schedule_in(args.profile, seed)
                    );
                }
                let t = now();
                let r = sweep::run_seed_with(args.profile, seed, tern_sim::Trace::new());
                let _g = out.lock().unwrap_or_else(|e| e.into_inner());
                if !r.ok() {
                    eprintln!("{}", r.failure());
                    failed.lock().unwrap_or_else(|e| e.into_inner()).push(seed);
                } else if args.verbose {
                    println!(
                        "seed {seed} ok in {:.2}s wall ({} faults, trace {} lines {:016x})\n{}{}",
                        t.elapsed().as_secs_f64(),
                        r.schedule.faults.len(),
                        r.trace_lines,
                        r.trace_hash,
                        r.schedule,
                        r.report.render()
                    );
                    if let Some(a) = &r.archive {
                        println!("  {a}");
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_unstable();
    let wall = t0.elapsed().as_secs_f64();
    let per_thread = wall * args.jobs as f64;
    println!(
        "sweep: {} seeds in {wall:.1}s wall ({:.3}s per seed per thread, {:.0} simulated s \
         per wall s per thread), {} failed{}",
        args.seeds,
        per_thread / args.seeds.max(1) as f64,
        (args.seeds * args.profile.seconds()) as f64 / per_thread.max(1e-9),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
