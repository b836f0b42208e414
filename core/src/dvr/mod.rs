//! The DVR's pure logic (docs/design.md §6): the in-memory index of a stream's stored
//! segments, the range and window queries the archive outputs need, retention by
//! depth and size, and the on-disk format of the index journal.
//!
//! Owns: [`index::Index`] (sorted entries, cached time ranges, O(log n + k) window
//! queries, retention decisions) and [`journal`] (the append-only, length-prefixed,
//! CRC-checked record format, its replay with torn-tail detection, snapshots and the
//! compaction rule), and [`machine::DvrMachine`], the lifecycle (open and reconcile,
//! record, retention, making room on a full disk, compaction, pause) as a state
//! machine that asks for store operations ([`op::Op`]). Must not: touch a file, a
//! clock or a task — the node's `dvr` module is the driver that runs the operations.

pub mod index;
pub mod journal;
mod log_step;
pub mod machine;
pub mod op;
mod open;
mod record;

pub use index::{Index, IndexEntry, DEFAULT_GAP_TOLERANCE_MS};
pub use journal::{JournalError, Record, Replay, Tail};
