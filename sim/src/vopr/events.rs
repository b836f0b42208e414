//! The pure simulator's event queue: events at simulated times, taken earliest
//! first, and in the order they were queued when their times are equal (so a seed
//! replays exactly).
//!
//! Owns: that order. Must not: know what an event means.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

struct Queued<E> {
    at: Duration,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Queued<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Queued<E> {}
impl<E> PartialOrd for Queued<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Queued<E> {
    // Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Events of type `E`, each due at a simulated time.
pub struct Events<E> {
    heap: BinaryHeap<Queued<E>>,
    seq: u64,
}

impl<E> Default for Events<E> {
    fn default() -> Self {
        Events {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> Events<E> {
    /// Queues `ev` at `at`.
    pub fn at(&mut self, at: Duration, ev: E) {
        self.seq += 1;
        self.heap.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|q| (q.at, q.ev))
    }
}

/// Runs seeds `first..` with `run(seed, steps)` until `steps` steps are done in all,
/// at most `per_seed` each (`steps_of` says how many a run took); every run's
/// report.
pub fn sweep<R>(
    first: u64,
    steps: u64,
    per_seed: u64,
    run: impl Fn(u64, u64) -> R,
    steps_of: impl Fn(&R) -> u64,
) -> Vec<R> {
    let mut out = Vec::new();
    let mut done = 0;
    let mut seed = first;
    while done < steps {
        let r = run(seed, per_seed.min(steps - done));
        done += steps_of(&r);
        out.push(r);
        seed += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_in_queue_order() {
        let mut q = Events::default();
        q.at(Duration::from_millis(5), 'c');
        q.at(Duration::from_millis(1), 'a');
        q.at(Duration::from_millis(5), 'd');
        q.at(Duration::from_millis(1), 'b');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ['a', 'b', 'c', 'd']);
    }
}
