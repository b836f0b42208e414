//! The rules of answering an archive question from this node's own DVR: how large an
//! index answer may be, and what a segment that cannot be read means for the range
//! being played (a gap, or the end of the answer).
//!
//! Owns: those decisions. Must not: read the DVR (node's `archive.rs` does, and asks
//! here what each outcome means).

use super::{ArchiveError, ArchiveIndex};
use crate::cluster::message::{ArchiveEntry, DvrFacts, MAX_ARCHIVE_ENTRIES};

/// Why a stored segment of a range could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// Gone since the listing (retention, a full disk's eviction).
    Missing,
    /// Its bytes fail their check at rest (the DVR logs the file).
    Damaged,
    /// Anything else (an I/O error); the detail is for the log.
    Other(String),
}

/// What a range does after a read failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Play on with the next segment: a gap, never corrupt bytes.
    Skip,
    /// End the answer with this error.
    Fail(ArchiveError),
}

/// A range goes on past a missing or damaged segment; any other failure ends it with
/// a 500 whose shown text names no path.
pub fn after_read_failure(f: ReadFailure) -> AfterFailure {
    match f {
        ReadFailure::Missing | ReadFailure::Damaged => AfterFailure::Skip,
        ReadFailure::Other(detail) => AfterFailure::Fail(ArchiveError::failed(
            "the archive cannot be read here (this node's log says why)",
            detail,
        )),
    }
}

/// The index answer of a window holding `entries`: refused as a bad request past
/// [`MAX_ARCHIVE_ENTRIES`] (one answer must fit one M4F message).
pub fn local_index(
    facts: DvrFacts,
    entries: Vec<ArchiveEntry>,
) -> Result<ArchiveIndex, ArchiveError> {
    if entries.len() > MAX_ARCHIVE_ENTRIES {
        return Err(ArchiveError::BadRequest(format!(
            "the window holds {} segments, more than {MAX_ARCHIVE_ENTRIES}: ask for a shorter one",
            entries.len()
        )));
    }
    Ok(ArchiveIndex { facts, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> ArchiveEntry {
        ArchiveEntry {
            utc_start_ms: 1_000 + i * 2_000,
            duration_ms: 2_000,
            discontinuity: false,
        }
    }

    #[test]
    fn missing_and_damaged_segments_are_gaps_other_failures_end_the_range() {
        assert_eq!(after_read_failure(ReadFailure::Missing), AfterFailure::Skip);
        assert_eq!(after_read_failure(ReadFailure::Damaged), AfterFailure::Skip);
        let AfterFailure::Fail(e) = after_read_failure(ReadFailure::Other(
            "/var/lib/tern/cam/1000.seg: Input/output error".into(),
        )) else {
            panic!("an I/O error must end the range");
        };
        assert_eq!(e.status(), 500);
        assert!(!e.shown().contains("/var/lib"), "{}", e.shown());
        assert!(e.to_string().contains("Input/output error"), "{e}");
    }

    #[test]
    fn an_index_answer_holds_at_most_the_message_limit() {
        let facts = DvrFacts::default();
        let full: Vec<ArchiveEntry> = (0..MAX_ARCHIVE_ENTRIES as u64).map(entry).collect();
        let index = local_index(facts.clone(), full.clone()).expect("at the limit");
        assert_eq!(index.entries.len(), MAX_ARCHIVE_ENTRIES);
        let mut over = full;
        over.push(entry(MAX_ARCHIVE_ENTRIES as u64));
        let e = local_index(facts, over).expect_err("past the limit");
        assert_eq!(e.status(), 400);
    }
}
