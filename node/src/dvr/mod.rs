//! The DVR (docs/design.md §6, docs/dvr.md): records a stream's closed segments to a
//! [`DvrStore`] and answers archive queries from memory.
//!
//! The lifecycle (open and reconcile, record, retention, making room on a full disk,
//! journal compaction, pause and retry) is [`tern_core::dvr::machine::DvrMachine`],
//! one per DVR root; this module is its driver. docs/dvr.md argues the crash safety
//! step by step, `crash_tests.rs` checks it on the real filesystem store after every
//! prefix of its filesystem calls.
//!
//! Owns: the error type and the status types of the API ([`DvrError`],
//! [`RecordingStatus`], [`DvrSummary`], [`StoredSegment`]). The driver is `root.rs`
//! ([`DvrRoot`], [`Dvr`]), the stores `store/`, the recorder task `recorder.rs`, the
//! simulation's disks `sim_disks.rs`, the index benchmark `bench.rs`. Must not: parse
//! or mux media (the segments are stored in their canonical encoding, unchanged),
//! serve HTTP, or decide anything about the archive's lifecycle (the machine does).

mod bench;
pub mod recorder;
mod root;
mod sim_disks;
pub mod store;

pub use bench::{bench_index, IndexBench};
pub use root::{Dvr, DvrRoot};
pub use sim_disks::{DvrStores, MemDisks};
pub use store::{DvrStore, Fault, FsStore, MemStore, SegmentFile, StoreError};
pub use tern_core::dvr::machine::{
    RecordOutcome, JOURNAL_HEADROOM, MAX_EVICTIONS_PER_WRITE, VERIFY_TAIL,
};
pub use tern_core::dvr::op::{Reason, RecordingState};
use tern_core::StreamName;

#[derive(Debug, thiserror::Error)]
pub enum DvrError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the disk holding the DVR at {location} is full and deleting the oldest segments \
         under that DVR root did not make room (none is left, or the space is taken by \
         other files): free space on that disk; recording resumes by itself"
    )]
    Full { location: String },
    #[error("no recorded segment of `{stream}` starts at {utc_start_ms} (UTC ms)")]
    NotFound {
        stream: StreamName,
        utc_start_ms: u64,
    },
    #[error(
        "the DVR index {path} cannot be used: {reason}; move it away and tern rebuilds \
         the index from the segment files"
    )]
    Journal { path: String, reason: String },
    /// A stored segment that cannot be valid (digest mismatch, wrong size, sparse).
    /// Served as a gap.
    #[error("the DVR segment file {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error("stream `{stream}` is already recording to {location}")]
    AlreadyOpen {
        stream: StreamName,
        location: String,
    },
}

impl DvrError {
    /// The reason logged and shown (API) for a recording state.
    pub fn reason(&self) -> Reason {
        Reason {
            logged: self.to_string(),
            shown: self.public_reason(),
        }
    }

    /// What an unauthenticated client may read of this error: its kind, never a
    /// path or the OS's own text (those are in the log).
    pub fn public_reason(&self) -> String {
        match self {
            DvrError::Store(e) => store_public_reason(e),
            DvrError::Full { .. } => "the disk holding the DVR is full and nothing of Tern's \
                 under its DVR root is left to delete; recording resumes by itself once there \
                 is room"
                .into(),
            DvrError::Damaged { .. } => "a stored segment is damaged".into(),
            DvrError::Journal { .. } => "the DVR index cannot be used".into(),
            DvrError::NotFound { .. } | DvrError::AlreadyOpen { .. } => {
                "the DVR failed; this node's log says why".into()
            }
        }
    }
}

/// `recording_status.json` and the API's DVR facts, from memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingStatus {
    /// UTC start (ms) of the oldest stored segment.
    pub from_ms: Option<u64>,
    /// Configured depth in seconds (0: unlimited).
    pub depth_secs: u64,
    /// Configured size limit in bytes.
    pub limit_bytes: Option<u64>,
    /// (UTC start ms, duration ms), oldest first.
    pub ranges: Vec<(u64, u64)>,
    pub segments: usize,
    pub bytes: u64,
    pub state: RecordingState,
}

/// What the API shows of a local DVR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvrSummary {
    pub state: RecordingState,
    /// UTC start (ms) of the oldest stored segment.
    pub from_ms: Option<u64>,
    pub segments: usize,
    pub bytes: u64,
}

/// A stored segment listed by [`Dvr::segments`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSegment {
    pub utc_start_ms: u64,
    pub duration_ms: u32,
    pub bytes: u64,
    /// It does not continue the previous stored segment: another source epoch,
    /// missing frames, or a time gap (HLS: `EXT-X-DISCONTINUITY` before it).
    pub discontinuity: bool,
}

/// What an unauthenticated client may read of a store error (see
/// [`DvrError::public_reason`]).
pub(crate) fn store_public_reason(e: &StoreError) -> String {
    format!(
        "cannot {} a DVR file: {}{}; this node's log names the file",
        e.op.split(' ').next().unwrap_or("write"),
        e.source.kind(),
        store::hint(e.source.kind())
    )
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
