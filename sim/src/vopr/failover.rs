//! Input failover in the pure simulator: one node with two inputs (a primary and a
//! backup, each a source with its own GOP length) driven through core's `Failover`
//! in simulated time. The primary stalls now and then, for less and for more than
//! its source timeout, and comes back; the backup stalls now and then too.
//!
//! Oracles:
//! - return: a keyframe from the primary while the backup is active makes the
//!   primary active at once (publishing follows the first input again);
//! - keyframe after a switch: the first frame published from an input after
//!   publishing came from the other one is a video keyframe;
//! - takeover: while the primary is stalled past its timeout and the backup is up,
//!   publishing resumes within the timeout plus the backup's GOP.
//!
//! Owns: this small world. Must not: decide anything `Failover` decides, or read a
//! clock.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::failover::Failover;

/// Frame interval of both inputs (video only: failover looks at video keyframes).
const FRAME: Duration = Duration::from_millis(40);
/// Source timeout of both inputs.
pub const TIMEOUT: Duration = Duration::from_secs(3);

struct Input {
    gop: u64,
    n: u64,
    next: Duration,
    stalled_until: Duration,
    /// Was running at its last tick (a stopped input restarts at a keyframe).
    running: bool,
}

/// What a failover run did and found.
#[derive(Clone, Debug, Default)]
pub struct FailoverReport {
    pub steps: u64,
    pub published: u64,
    pub stalls: u64,
    /// Switches to the backup (timeout) and back to the primary (recovered).
    pub to_backup: u64,
    pub returns: u64,
    pub violations: Vec<String>,
}

/// Runs `steps` events of the failover world of `seed`.
pub fn run(seed: u64, steps: u64) -> FailoverReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5bd1_e995);
    let mut inputs: Vec<Input> = (0..2)
        .map(|_| Input {
            gop: 17 + u64::from(rng.next_u32() % 45),
            n: 0,
            next: Duration::ZERO,
            stalled_until: Duration::ZERO,
            running: true,
        })
        .collect();
    let mut f = Failover::new(vec![TIMEOUT, TIMEOUT], Duration::ZERO);
    let mut rep = FailoverReport::default();
    let mut next_fault = Duration::from_secs(2);
    let mut last_from: Option<usize> = None;
    let mut last_published = Duration::ZERO;
    let mut now;
    let violation = |rep: &mut FailoverReport, now: Duration, what: String| {
        if rep.violations.len() < 20 {
            rep.violations.push(format!("t={now:?}: {what}"));
        }
    };
    while rep.steps < steps {
        rep.steps += 1;
        let timeout = f.poll_timeout().unwrap_or(Duration::MAX);
        let tick = inputs[0].next.min(inputs[1].next);
        now = tick.min(timeout).min(next_fault);
        if now == next_fault {
            // A stall: mostly the primary, shorter or longer than the timeout.
            let i = usize::from(rng.next_u32() % 4 == 0);
            let d = Duration::from_millis(300 + u64::from(rng.next_u32() % 7000));
            inputs[i].stalled_until = inputs[i].stalled_until.max(now + d);
            rep.stalls += 1;
            next_fault = now + Duration::from_millis(2000 + u64::from(rng.next_u32() % 10_000));
            continue;
        }
        if now == timeout {
            let before = f.active();
            f.handle_timeout(now);
            if f.active() != before && f.active() == 1 {
                rep.to_backup += 1;
            }
            continue;
        }
        let i = if inputs[0].next <= inputs[1].next {
            0
        } else {
            1
        };
        inputs[i].next = now + FRAME;
        if !f.should_run(i) {
            inputs[i].running = false;
            continue;
        }
        if !inputs[i].running {
            // Started again: a new connection begins at a keyframe.
            inputs[i].running = true;
            inputs[i].n = 0;
        }
        if now < inputs[i].stalled_until {
            continue;
        }
        let kf = inputs[i].n.is_multiple_of(inputs[i].gop);
        inputs[i].n += 1;
        let before = f.active();
        // Takeover bound: the primary stalled past its timeout while the backup was
        // up; publishing resumes within the timeout and one backup GOP.
        let bound = TIMEOUT + FRAME * (inputs[1].gop as u32 + 2);
        if now.saturating_sub(last_published) > bound
            && inputs[1].stalled_until <= last_published
            && last_published > Duration::ZERO
        {
            violation(
                &mut rep,
                now,
                format!(
                    "nothing published for {:?} while the backup was up",
                    now - last_published
                ),
            );
        }
        let publish = f.handle_frame(now, i, kf);
        if i == 0 && kf && before != 0 {
            if f.active() == 0 {
                rep.returns += 1;
            } else {
                violation(
                    &mut rep,
                    now,
                    "a primary keyframe did not bring publishing back to the first input".into(),
                );
            }
        }
        while f.poll_event().is_some() {}
        if publish {
            if last_from.is_some_and(|l| l != i) && !kf {
                violation(
                    &mut rep,
                    now,
                    format!(
                        "first frame published from input {i} after a switch is not a keyframe"
                    ),
                );
            }
            last_from = Some(i);
            last_published = now;
            rep.published += 1;
        }
    }
    rep
}
