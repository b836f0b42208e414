//! The archive route: what an archive question gets as its answer when the archive
//! lives on peers (an edge, an edge of an edge), optionally with a local cache.
//!
//! Owns: the answer types every archive gives ([`ArchiveIndex`], [`ArchiveSegment`],
//! [`ArchiveError`] with the HTTP status class each error stands for), the order in
//! which peers are asked and what their refusals mean ([`RemoteRequest`]: 404 is
//! "not found", 400 a bad request, anything else "unreachable", i.e. 503), the idle
//! deadline of a peer's response, and for a cached archive which segment is read
//! from the cache and which is fetched ([`CachedRange`], [`cached_index`]); for the
//! node's own DVR, the size of an index answer and what an unreadable segment means
//! ([`local_index`], [`after_read_failure`]).
//! Must not: open connections, read files or wait (node's `archive.rs` drives these
//! machines), render playlists.

mod cached;
mod local;
mod remote;

use bytes::Bytes;

pub use cached::{cached_index, CachedAction, CachedRange};
pub use local::{after_read_failure, local_index, AfterFailure, ReadFailure};
pub use remote::{broke_off, Opened, Question, RemoteAction, RemoteRequest, ARCHIVE_IDLE_TIMEOUT};

use crate::cluster::message::{ArchiveEntry, DvrFacts};
use crate::{segment_codec, Segment};

/// Why an archive question has no answer. `Unreachable` and `Failed` carry two
/// texts: `shown`, all a player (no key) is told, and `detail` (the OS's words,
/// paths, a peer's own text) for the log and for authenticated peers (`End`).
/// `Display` gives both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Nothing stored there (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The archive lives on peers that cannot be reached now (HTTP 503).
    #[error("{shown}{}", with_detail(detail))]
    Unreachable { shown: String, detail: String },
    /// The request is too large or malformed (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Reading failed (HTTP 500).
    #[error("{shown}{}", with_detail(detail))]
    Failed { shown: String, detail: String },
}

fn with_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl ArchiveError {
    /// What a player may be told: no paths, no OS text, no peer's own words.
    pub fn shown(&self) -> &str {
        match self {
            ArchiveError::NotFound(s) | ArchiveError::BadRequest(s) => s,
            ArchiveError::Unreachable { shown, .. } | ArchiveError::Failed { shown, .. } => shown,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            ArchiveError::NotFound(_) => 404,
            ArchiveError::Unreachable { .. } => 503,
            ArchiveError::BadRequest(_) => 400,
            ArchiveError::Failed { .. } => 500,
        }
    }

    pub fn unreachable(shown: impl Into<String>, detail: impl Into<String>) -> Self {
        ArchiveError::Unreachable {
            shown: shown.into(),
            detail: detail.into(),
        }
    }

    pub fn failed(shown: impl Into<String>, detail: impl Into<String>) -> Self {
        ArchiveError::Failed {
            shown: shown.into(),
            detail: detail.into(),
        }
    }
}

/// One segment of an archive range: the stored canonical bytes (local DVR: sent on
/// over M4F without decoding or copying) or a segment already decoded (from a peer).
#[derive(Clone, Debug)]
pub enum ArchiveSegment {
    Stored(Bytes),
    Decoded(Segment),
}

impl ArchiveSegment {
    pub fn into_segment(self) -> Result<Segment, ArchiveError> {
        match self {
            ArchiveSegment::Decoded(s) => Ok(s),
            ArchiveSegment::Stored(b) => segment_codec::decode(b)
                .map_err(|e| ArchiveError::failed("a stored segment is damaged", e.to_string())),
        }
    }
}

/// The facts and the stored segments of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveIndex {
    pub facts: DvrFacts,
    pub entries: Vec<ArchiveEntry>,
}
