//! [`bench_index`]: times the in-memory index and a journal load, for `tern bench`.
//! Figures, not assertions.
//!
//! Owns: that benchmark. Must not: touch a disk.

use std::time::Duration;

use tern_core::dvr::journal;
use tern_core::dvr::{Index, IndexEntry, DEFAULT_GAP_TOLERANCE_MS};

/// Figures of [`bench_index`].
#[derive(Clone, Debug)]
pub struct IndexBench {
    pub entries: usize,
    pub journal_bytes: usize,
    /// Mean time of one window query (three segments) on the index.
    pub lookup: Duration,
    /// Time of one `ranges()` call.
    pub ranges: Duration,
    /// Time to replay a snapshot journal of `entries` entries from bytes into an
    /// index (what open does before reconciling).
    pub load: Duration,
}

/// Builds an index of `n` back-to-back 2 s segments (with a gap every 10 000) and
/// times queries and a journal load. No disk. For `tern bench` and similar programs:
/// figures, not assertions.
pub fn bench_index(n: usize) -> IndexBench {
    use tern_core::Position;
    use tokio::time::Instant;

    let base = 1_700_000_000_000u64;
    let start_of = |i: u64| base + i * 2000 + (i / 10_000) * 60_000;
    let entries = (0..n as u64).map(|i| IndexEntry {
        utc_start_ms: start_of(i),
        duration_ms: 2000,
        bytes: 1_000_000,
        first_pos: Position {
            epoch: 1,
            seq: i * 75,
        },
        last_pos: Position {
            epoch: 1,
            seq: i * 75 + 74,
        },
    });
    let index = Index::from_entries(entries, DEFAULT_GAP_TOLERANCE_MS);
    let journal_bytes = journal::snapshot(index.iter());

    const QUERIES: u64 = 10_000;
    let mut hits = 0usize;
    let t = Instant::now();
    for k in 0..QUERIES {
        let i = (k * 7919) % (n.max(1) as u64);
        let s = start_of(i);
        hits += index.query(s, s + 6000).len();
    }
    let lookup = t.elapsed() / QUERIES as u32;

    let t = Instant::now();
    let ranges = index.ranges();
    let ranges_time = t.elapsed();

    let t = Instant::now();
    let loaded = journal::replay(&journal_bytes)
        .map(|r| Index::from_entries(r.entries, DEFAULT_GAP_TOLERANCE_MS).len())
        .unwrap_or(0);
    let load = t.elapsed();
    // Keep the work observable.
    std::hint::black_box((hits, ranges.len(), loaded));

    IndexBench {
        entries: n,
        journal_bytes: journal_bytes.len(),
        lookup,
        ranges: ranges_time,
        load,
    }
}
