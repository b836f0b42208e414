//! `Index`: what one stream's DVR holds, in memory, so that ranges, recording status
//! and archive playlists never touch the disk (docs/design.md §6, §9 "listing the archive
//! scans the disk").
//!
//! Entries are kept sorted by UTC start in a `VecDeque` (recording appends at the
//! back, retention removes at the front, both O(1)); a window query is a binary
//! search plus the hits. The time ranges (runs of segments with no gap longer than
//! the tolerance) are cached and kept current on append and on removal of the
//! oldest entry; any other change recomputes them once.
//!
//! Owns: the entries, their totals, the ranges, window queries, the discontinuity
//! flag of a listed segment and the retention decision. Must not: do I/O.

use std::collections::VecDeque;

use crate::cluster::message::MAX_RANGES;
use crate::media::{Position, UtcMs};
use crate::segment::Segment;

/// Two stored segments with at most this much time between the end of one and the
/// start of the next are one range. Segment boundaries come from stream time while
/// UTC starts are capture times, so back-to-back segments may be a few ms apart.
pub const DEFAULT_GAP_TOLERANCE_MS: u64 = 1000;

/// One stored segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Capture time of the first frame; also the segment's key (its file name).
    pub utc_start_ms: UtcMs,
    pub duration_ms: u32,
    /// Size of the stored (canonical) encoding.
    pub bytes: u64,
    /// Position of the first and the last frame.
    pub first_pos: Position,
    pub last_pos: Position,
}

impl IndexEntry {
    /// The entry of `seg`, stored as `bytes` bytes.
    pub fn from_segment(seg: &Segment, bytes: u64) -> Self {
        IndexEntry {
            utc_start_ms: seg.utc_start_ms,
            duration_ms: seg.duration_ms,
            bytes,
            first_pos: seg.first_pos(),
            last_pos: seg.frames.last().map(|f| f.pos).unwrap_or_default(),
        }
    }

    pub fn end_ms(&self) -> UtcMs {
        self.utc_start_ms.saturating_add(self.duration_ms as u64)
    }

    pub fn epoch(&self) -> u64 {
        self.first_pos.epoch
    }

    /// Whether `next`, stored right after `self`, does not continue it: another
    /// source epoch, frames missing in between, or a time gap beyond `tolerance_ms`.
    pub fn breaks_before(&self, next: &IndexEntry, tolerance_ms: u64) -> bool {
        let follows = self.last_pos.epoch == next.first_pos.epoch
            && self.last_pos.seq.checked_add(1) == Some(next.first_pos.seq);
        !follows || next.utc_start_ms > self.end_ms().saturating_add(tolerance_ms)
    }
}

/// A listed segment with its discontinuity flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub entry: IndexEntry,
    /// It does not continue the previous stored segment (see
    /// [`IndexEntry::breaks_before`]); `false` for the oldest stored segment.
    pub discontinuity: bool,
}

/// The index of one stream's stored segments.
#[derive(Clone, Debug)]
pub struct Index {
    entries: VecDeque<IndexEntry>,
    total_bytes: u64,
    /// Longest duration ever inserted (never lowered): bounds how far before a
    /// window's start an overlapping segment can begin.
    max_duration_ms: u32,
    gap_tolerance_ms: u64,
    /// Cached ranges, oldest first: (start, end) in UTC ms.
    ranges: VecDeque<(UtcMs, UtcMs)>,
}

impl Default for Index {
    fn default() -> Self {
        Index::new(DEFAULT_GAP_TOLERANCE_MS)
    }
}

impl Index {
    pub fn new(gap_tolerance_ms: u64) -> Self {
        Index {
            entries: VecDeque::new(),
            total_bytes: 0,
            max_duration_ms: 0,
            gap_tolerance_ms,
            ranges: VecDeque::new(),
        }
    }

    /// An index of `entries` in any order; of several entries with the same start,
    /// the last one wins.
    pub fn from_entries(
        entries: impl IntoIterator<Item = IndexEntry>,
        gap_tolerance_ms: u64,
    ) -> Self {
        let mut v: Vec<IndexEntry> = entries.into_iter().collect();
        // Stable: equal starts keep their order, so "last wins" below is well defined.
        v.sort_by_key(|e| e.utc_start_ms);
        let mut deduped: Vec<IndexEntry> = Vec::with_capacity(v.len());
        for e in v {
            match deduped.last_mut() {
                Some(last) if last.utc_start_ms == e.utc_start_ms => *last = e,
                _ => deduped.push(e),
            }
        }
        let mut idx = Index::new(gap_tolerance_ms);
        idx.total_bytes = deduped.iter().map(|e| e.bytes).sum();
        idx.max_duration_ms = deduped.iter().map(|e| e.duration_ms).max().unwrap_or(0);
        idx.entries = deduped.into();
        idx.recompute_ranges();
        idx
    }

    pub fn gap_tolerance_ms(&self) -> u64 {
        self.gap_tolerance_ms
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all stored segments.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The oldest entry.
    pub fn first(&self) -> Option<&IndexEntry> {
        self.entries.front()
    }

    /// The newest entry.
    pub fn last(&self) -> Option<&IndexEntry> {
        self.entries.back()
    }

    /// All entries, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &IndexEntry> + '_ {
        self.entries.iter()
    }

    fn position(&self, utc_start_ms: UtcMs) -> Result<usize, usize> {
        self.entries
            .binary_search_by_key(&utc_start_ms, |e| e.utc_start_ms)
    }

    /// The entry starting at `utc_start_ms`.
    pub fn get(&self, utc_start_ms: UtcMs) -> Option<&IndexEntry> {
        self.position(utc_start_ms)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    pub fn contains(&self, utc_start_ms: UtcMs) -> bool {
        self.position(utc_start_ms).is_ok()
    }

    /// Inserts `e`; returns the entry it replaced (same start), if any. Appending
    /// after the newest entry is O(1); inserting elsewhere is O(n).
    pub fn insert(&mut self, e: IndexEntry) -> Option<IndexEntry> {
        self.max_duration_ms = self.max_duration_ms.max(e.duration_ms);
        let at_end = self
            .entries
            .back()
            .is_none_or(|l| l.utc_start_ms < e.utc_start_ms);
        if at_end {
            self.entries.push_back(e);
            self.total_bytes += e.bytes;
            self.extend_ranges(&e);
            return None;
        }
        let old = match self.position(e.utc_start_ms) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i], e)),
            Err(i) => {
                self.entries.insert(i, e);
                None
            }
        };
        self.total_bytes += e.bytes;
        if let Some(o) = &old {
            self.total_bytes -= o.bytes;
        }
        self.recompute_ranges();
        old
    }

    /// Removes the oldest entry, O(1).
    pub fn pop_oldest(&mut self) -> Option<IndexEntry> {
        let e = self.entries.pop_front()?;
        self.total_bytes -= e.bytes;
        match self.entries.front() {
            None => self.ranges.clear(),
            Some(next) if e.end_ms() <= next.utc_start_ms => {
                // `e` overlaps nothing after it, so the merge of the rest is the same
                // with or without it, except that `next` now opens the first range.
                if next.utc_start_ms > e.end_ms().saturating_add(self.gap_tolerance_ms) {
                    self.ranges.pop_front();
                } else if let Some(r) = self.ranges.front_mut() {
                    r.0 = next.utc_start_ms;
                }
            }
            Some(_) => self.recompute_ranges(),
        }
        Some(e)
    }

    /// Removes the entry starting at `utc_start_ms`; O(1) for the oldest, O(n)
    /// elsewhere.
    pub fn remove(&mut self, utc_start_ms: UtcMs) -> Option<IndexEntry> {
        let i = self.position(utc_start_ms).ok()?;
        if i == 0 {
            return self.pop_oldest();
        }
        let e = self.entries.remove(i)?;
        self.total_bytes -= e.bytes;
        self.recompute_ranges();
        Some(e)
    }

    fn extend_ranges(&mut self, e: &IndexEntry) {
        let tol = self.gap_tolerance_ms;
        match self.ranges.back_mut() {
            Some(r) if e.utc_start_ms <= r.1.saturating_add(tol) => r.1 = r.1.max(e.end_ms()),
            _ => self.ranges.push_back((e.utc_start_ms, e.end_ms())),
        }
    }

    fn recompute_ranges(&mut self) {
        self.ranges.clear();
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            self.extend_ranges(e);
        }
        self.entries = entries;
    }

    /// Time covered, oldest first, as (UTC start ms, duration ms): runs of segments
    /// with no gap longer than the gap tolerance. Source restarts do not split a
    /// range (they are reported per segment by [`Index::query`]). At most
    /// [`MAX_RANGES`] (what signaling and the M4F index carry): beyond that the
    /// shortest gaps are closed, so a long archive of a flaky camera still lists its
    /// longest gaps. O(ranges), O(ranges log ranges) when over the limit.
    pub fn ranges(&self) -> Vec<(UtcMs, u64)> {
        let ranges: Vec<(UtcMs, UtcMs)> = self.ranges.iter().copied().collect();
        close_shortest_gaps(&ranges, MAX_RANGES)
            .into_iter()
            .map(|(s, e)| (s, e - s))
            .collect()
    }

    /// The entries overlapping `[from_ms, to_ms)`, oldest first, each with its
    /// discontinuity flag (relative to the previous stored entry, even one before
    /// the window). A zero-length entry counts if it starts inside the window.
    /// O(log n + k): a binary search, then the hits (plus the few entries that start
    /// less than the longest segment duration before `from_ms`).
    pub fn query(&self, from_ms: UtcMs, to_ms: UtcMs) -> Vec<Hit> {
        let mut out = Vec::new();
        if to_ms <= from_ms {
            return out;
        }
        let reach = self.max_duration_ms as u64;
        let lo = self
            .entries
            .partition_point(|e| e.utc_start_ms.saturating_add(reach) < from_ms);
        let mut prev = lo.checked_sub(1).and_then(|i| self.entries.get(i));
        for e in self.entries.range(lo..) {
            if e.utc_start_ms >= to_ms {
                break;
            }
            if e.end_ms().max(e.utc_start_ms.saturating_add(1)) > from_ms {
                out.push(Hit {
                    entry: *e,
                    discontinuity: prev.is_some_and(|p| p.breaks_before(e, self.gap_tolerance_ms)),
                });
            }
            prev = Some(e);
        }
        out
    }

    /// How many of the oldest entries retention deletes when the newest data is at
    /// `now_utc_ms`: those that ended `depth_secs` or more before it, then more of
    /// the oldest until the rest fit in `limit_bytes`. The newest entry is always
    /// kept. `None` or 0 means no limit of that kind.
    pub fn retention(
        &self,
        now_utc_ms: UtcMs,
        depth_secs: Option<u64>,
        limit_bytes: Option<u64>,
    ) -> usize {
        let keep_min = 1;
        let max_drop = self.entries.len().saturating_sub(keep_min);
        let mut n = 0;
        if let Some(depth) = depth_secs.filter(|d| *d > 0) {
            let cutoff = now_utc_ms.saturating_sub(depth.saturating_mul(1000));
            while n < max_drop && self.entries[n].end_ms() <= cutoff {
                n += 1;
            }
        }
        if let Some(limit) = limit_bytes.filter(|l| *l > 0) {
            let mut left: u64 =
                self.total_bytes - self.entries.range(..n).map(|e| e.bytes).sum::<u64>();
            while n < max_drop && left > limit {
                left -= self.entries[n].bytes;
                n += 1;
            }
        }
        n
    }
}

/// `ranges` (start, end), oldest first and disjoint, with the shortest gaps closed
/// until at most `max` remain (ties: the older gap first).
fn close_shortest_gaps(ranges: &[(UtcMs, UtcMs)], max: usize) -> Vec<(UtcMs, UtcMs)> {
    if ranges.len() <= max.max(1) {
        return ranges.to_vec();
    }
    let mut gaps: Vec<(u64, usize)> = ranges
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].0.saturating_sub(w[0].1), i))
        .collect();
    gaps.sort_unstable();
    let mut close = vec![false; ranges.len()];
    for &(_, i) in &gaps[..ranges.len() - max.max(1)] {
        close[i] = true;
    }
    let mut out: Vec<(UtcMs, UtcMs)> = Vec::with_capacity(max);
    let mut join_next = false;
    for (i, &r) in ranges.iter().enumerate() {
        match out.last_mut() {
            Some(last) if join_next => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
        join_next = close[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_gaps_close_first_when_there_are_too_many_ranges() {
        // Gaps of 5, 1, 9, 1 ms between five ranges.
        let r = [(0, 10), (15, 20), (21, 30), (39, 40), (41, 50)];
        assert_eq!(close_shortest_gaps(&r, 5), r.to_vec());
        assert_eq!(
            close_shortest_gaps(&r, 3),
            vec![(0, 10), (15, 30), (39, 50)],
            "the two 1 ms gaps close"
        );
        assert_eq!(close_shortest_gaps(&r, 2), vec![(0, 30), (39, 50)]);
        assert_eq!(close_shortest_gaps(&r, 1), vec![(0, 50)]);
        assert_eq!(close_shortest_gaps(&r, 0), vec![(0, 50)]);
        assert!(close_shortest_gaps(&[], 3).is_empty());
    }

    #[test]
    fn ranges_stay_within_what_the_wire_carries() {
        // A camera that drops for 5 s after every segment: one range per segment.
        let n = MAX_RANGES as u64 + 500;
        let entries: Vec<IndexEntry> = (0..n).map(|i| e(i * 7000, 2000, i, 0)).collect();
        let ranges = Index::from_entries(entries, DEFAULT_GAP_TOLERANCE_MS).ranges();
        assert_eq!(ranges.len(), MAX_RANGES);
        assert_eq!(ranges.first().map(|r| r.0), Some(0));
        let end = |r: &(u64, u64)| r.0 + r.1;
        assert_eq!(ranges.last().map(end), Some((n - 1) * 7000 + 2000));
    }

    fn e(start: u64, dur: u32, epoch: u64, seq: u64) -> IndexEntry {
        IndexEntry {
            utc_start_ms: start,
            duration_ms: dur,
            bytes: 100,
            first_pos: Position { epoch, seq },
            last_pos: Position {
                epoch,
                seq: seq + 9,
            },
        }
    }

    /// Back-to-back 2 s segments from `start`, continuing positions.
    fn run(start: u64, n: u64, epoch: u64) -> Vec<IndexEntry> {
        (0..n)
            .map(|i| e(start + i * 2000, 2000, epoch, i * 10))
            .collect()
    }

    /// The ranges recomputed from scratch, to check the incremental cache against.
    fn naive_ranges(idx: &Index) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for e in idx.iter() {
            match out.last_mut() {
                Some(r) if e.utc_start_ms <= r.1 + idx.gap_tolerance_ms() => {
                    r.1 = r.1.max(e.end_ms())
                }
                _ => out.push((e.utc_start_ms, e.end_ms())),
            }
        }
        out.into_iter().map(|(s, e)| (s, e - s)).collect()
    }

    #[test]
    fn ranges_merge_and_split_on_gaps_not_epochs() {
        let mut idx = Index::new(500);
        for x in run(10_000, 3, 1) {
            idx.insert(x);
        }
        // A source restart right after: new epoch, no time gap → same range.
        idx.insert(e(16_100, 2000, 2, 0));
        // A gap of 5 s → new range.
        idx.insert(e(23_100, 2000, 2, 500));
        assert_eq!(idx.ranges(), vec![(10_000, 8_100), (23_100, 2000)]);
        assert_eq!(idx.ranges(), naive_ranges(&idx));
        assert_eq!(idx.total_bytes(), 500);
        assert_eq!(idx.len(), 5);
    }

    #[test]
    fn pop_oldest_keeps_ranges_current() {
        let mut idx = Index::new(0);
        for x in run(0, 3, 1) {
            idx.insert(x);
        }
        idx.insert(e(10_000, 2000, 1, 30));
        idx.insert(e(10_500, 100, 1, 40)); // overlaps the previous one
        idx.insert(e(13_000, 2000, 1, 50));
        let mut seen = vec![idx.ranges()];
        let mut popped = Vec::new();
        while let Some(old) = idx.pop_oldest() {
            // The oldest goes first: what is left all starts at or after it.
            assert!(
                idx.iter().all(|x| x.utc_start_ms >= old.utc_start_ms),
                "popped {} while older entries remain",
                old.utc_start_ms
            );
            popped.push(old.utc_start_ms);
            assert_eq!(idx.ranges(), naive_ranges(&idx));
            seen.push(idx.ranges());
        }
        assert_eq!(popped, vec![0, 2000, 4000, 10_000, 10_500, 13_000]);
        assert_eq!(seen[0], vec![(0, 6000), (10_000, 2000), (13_000, 2000)]);
        assert!(idx.ranges().is_empty());
        assert_eq!(idx.total_bytes(), 0);
    }

    #[test]
    fn insert_out_of_order_replace_and_remove() {
        let mut idx = Index::new(0);
        idx.insert(e(4000, 2000, 1, 20));
        idx.insert(e(0, 2000, 1, 0));
        assert_eq!(idx.ranges(), vec![(0, 2000), (4000, 2000)]);
        idx.insert(e(2000, 2000, 1, 10));
        assert_eq!(idx.ranges(), vec![(0, 6000)]);
        let mut bigger = e(2000, 2000, 1, 10);
        bigger.bytes = 300;
        assert_eq!(idx.insert(bigger).map(|o| o.bytes), Some(100));
        assert_eq!(idx.total_bytes(), 500);
        assert_eq!(idx.remove(2000).map(|o| o.bytes), Some(300));
        assert_eq!(idx.remove(2000), None);
        assert_eq!(idx.ranges(), vec![(0, 2000), (4000, 2000)]);
        assert_eq!(idx.ranges(), naive_ranges(&idx));
        assert_eq!(idx.total_bytes(), 200);
    }

    #[test]
    fn from_entries_sorts_and_last_wins() {
        let mut dup = e(2000, 2000, 1, 10);
        dup.bytes = 7;
        let idx = Index::from_entries([e(2000, 2000, 1, 10), e(0, 2000, 1, 0), dup], 0);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.get(2000).map(|x| x.bytes), Some(7));
        assert_eq!(idx.total_bytes(), 107);
        assert_eq!(idx.ranges(), vec![(0, 4000)]);
    }

    #[test]
    fn query_window_and_discontinuities() {
        let mut idx = Index::new(500);
        for x in run(0, 5, 1) {
            idx.insert(x); // 0..10_000
        }
        idx.insert(e(10_000, 2000, 2, 0)); // restart: new epoch
        idx.insert(e(20_000, 2000, 2, 10)); // gap
        idx.insert(e(22_000, 2000, 2, 30)); // frames missing (seq 20..29)
        let starts = |v: &[Hit]| v.iter().map(|h| h.entry.utc_start_ms).collect::<Vec<_>>();
        let flags = |v: &[Hit]| v.iter().map(|h| h.discontinuity).collect::<Vec<_>>();

        let all = idx.query(0, u64::MAX);
        assert_eq!(
            starts(&all),
            vec![0, 2000, 4000, 6000, 8000, 10_000, 20_000, 22_000]
        );
        assert_eq!(
            flags(&all),
            vec![false, false, false, false, false, true, true, true]
        );
        // A window inside a segment finds it; the end is exclusive.
        assert_eq!(starts(&idx.query(2500, 2600)), vec![2000]);
        assert_eq!(starts(&idx.query(3999, 4001)), vec![2000, 4000]);
        assert_eq!(starts(&idx.query(4000, 6000)), vec![4000]);
        // The flag is relative to the previous stored segment, outside the window too.
        assert_eq!(flags(&idx.query(10_000, 10_001)), vec![true]);
        assert_eq!(flags(&idx.query(2000, 2001)), vec![false]);
        // Nothing in a gap; empty and inverted windows are empty.
        assert!(idx.query(13_000, 19_000).is_empty());
        assert!(idx.query(5000, 5000).is_empty());
        assert!(idx.query(6000, 5000).is_empty());
    }

    #[test]
    fn query_finds_long_segment_before_window() {
        let mut idx = Index::new(0);
        idx.insert(e(0, 60_000, 1, 0));
        for x in run(60_000, 40, 1) {
            idx.insert(x);
        }
        assert_eq!(
            idx.query(59_000, 60_500)
                .iter()
                .map(|h| h.entry.utc_start_ms)
                .collect::<Vec<_>>(),
            vec![0, 60_000]
        );
    }

    #[test]
    fn zero_length_segment_is_found_inside_window() {
        let mut idx = Index::new(0);
        idx.insert(e(1000, 0, 1, 0));
        assert_eq!(idx.query(1000, 1001).len(), 1);
        assert_eq!(idx.query(0, 1000).len(), 0);
        assert_eq!(idx.query(1001, 2000).len(), 0);
    }

    #[test]
    fn retention_by_depth_and_size_keeps_newest() {
        let mut idx = Index::new(0);
        for x in run(0, 10, 1) {
            idx.insert(x); // 0..20_000, 100 bytes each
        }
        // Depth 10 s at 20 s: segments ending at or before 10 s go (5 of them).
        assert_eq!(idx.retention(20_000, Some(10), None), 5);
        // Size: 1000 bytes held, limit 350 → keep 3.
        assert_eq!(idx.retention(20_000, None, Some(350)), 7);
        // Both: the larger wins.
        assert_eq!(idx.retention(20_000, Some(10), Some(750)), 5);
        assert_eq!(idx.retention(20_000, Some(2), Some(750)), 9);
        // Never the newest, even if it alone is over the limit or too old.
        assert_eq!(idx.retention(1_000_000, Some(1), Some(1)), 9);
        // No limits, or zero meaning unlimited.
        assert_eq!(idx.retention(1_000_000, None, None), 0);
        assert_eq!(idx.retention(1_000_000, Some(0), Some(0)), 0);
        assert_eq!(Index::new(0).retention(5, Some(1), Some(1)), 0);
    }

    /// About 30 days of 2 s segments. Checks results only: the figures are for
    /// `bench_index` (no timing assertions in tests, docs/design.md §8).
    #[test]
    fn query_on_1_3_million_entries() {
        const N: u64 = 1_300_000;
        let base = 1_700_000_000_000u64;
        let mut idx = Index::new(DEFAULT_GAP_TOLERANCE_MS);
        for i in 0..N {
            // A 10 s hole every 100 000 segments.
            let start = base + i * 2000 + (i / 100_000) * 10_000;
            idx.insert(IndexEntry {
                utc_start_ms: start,
                duration_ms: 2000,
                bytes: 1_000_000,
                first_pos: Position {
                    epoch: 1,
                    seq: i * 50,
                },
                last_pos: Position {
                    epoch: 1,
                    seq: i * 50 + 49,
                },
            });
        }
        assert_eq!(idx.len(), N as usize);
        assert_eq!(idx.ranges().len(), 13);
        // Many queries, each one a binary search plus a handful of hits: a linear
        // scan per query would make this test take minutes.
        for k in 0..20_000u64 {
            let i = k * 61 % (N - 10);
            let start = base + i * 2000 + (i / 100_000) * 10_000;
            let hits = idx.query(start + 1, start + 3 * 2000);
            assert!(hits.len() == 3 || hits.len() == 2, "{i}: {}", hits.len());
            assert_eq!(hits[0].entry.utc_start_ms, start);
        }
        for _ in 0..1000 {
            assert_eq!(
                idx.retention(base + N * 2000 + 130_000, Some(31 * 86_400), None),
                0
            );
        }
    }
}
