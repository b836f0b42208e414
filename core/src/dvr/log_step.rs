//! Journaling one change of a stream's index, a step of the DVR machine's jobs:
//! append a record, or rewrite the journal whole when its length is unknown or it is
//! due for compaction (and append instead if that rewrite fails, trying the
//! compaction again `COMPACTION_RETRY_RECORDS` records later).
//!
//! Owns: that choice and what each result does to the stream's journal state. Must
//! not: touch the index (the change is already in it) or decide when to journal.

use std::io::ErrorKind;

use bytes::Bytes;

use super::journal::{self, Record};
use super::machine::{Event, Shared, COMPACTION_RETRY_RECORDS};
use super::op::{Done, Op, OpError};
use crate::StreamName;

/// Journal change in progress, and what follows it.
#[derive(Clone, Debug)]
pub(super) struct LogStep<T> {
    stream: StreamName,
    rec: Record,
    phase: LogPhase,
    then: T,
}

#[derive(Clone, Copy, Debug)]
enum LogPhase {
    /// A rewrite because the length is unknown; `n` bytes of `records` records.
    Rewrite {
        n: u64,
        records: usize,
    },
    /// A compaction; on failure, append at `at` instead.
    Compact {
        at: u64,
        n: u64,
        records: usize,
    },
    Append {
        at: u64,
        n: u64,
    },
}

/// Starts journaling `rec` (already applied to `stream`'s index): the op to run, or
/// `None` if the stream is gone (closed meanwhile).
pub(super) fn log_start<T>(
    sh: &mut Shared,
    stream: &StreamName,
    rec: Record,
    then: T,
) -> Result<(LogStep<T>, Op), T> {
    let Some(st) = sh.streams.get(stream) else {
        return Err(then);
    };
    let compact = journal::needs_compaction(st.journal_records + 1, st.index.len())
        && st.journal_records >= st.compaction_retry_at;
    let snapshot = || Bytes::from(journal::snapshot(st.index.iter()));
    let (phase, op) = match st.journal_len {
        None => {
            let bytes = snapshot();
            (
                LogPhase::Rewrite {
                    n: bytes.len() as u64,
                    records: st.index.len(),
                },
                Op::RewriteJournal {
                    stream: stream.clone(),
                    bytes,
                },
            )
        }
        Some(at) if compact => {
            let bytes = snapshot();
            (
                LogPhase::Compact {
                    at,
                    n: bytes.len() as u64,
                    records: st.index.len(),
                },
                Op::RewriteJournal {
                    stream: stream.clone(),
                    bytes,
                },
            )
        }
        Some(at) => return Ok(append(stream, rec, at, then)),
    };
    Ok((
        LogStep {
            stream: stream.clone(),
            rec,
            phase,
            then,
        },
        op,
    ))
}

fn append<T>(stream: &StreamName, rec: Record, at: u64, then: T) -> (LogStep<T>, Op) {
    let bytes = Bytes::from(journal::encode_record(&rec));
    (
        LogStep {
            stream: stream.clone(),
            rec,
            phase: LogPhase::Append {
                at,
                n: bytes.len() as u64,
            },
            then,
        },
        Op::AppendJournal {
            stream: stream.clone(),
            at,
            bytes,
        },
    )
}

/// After a journal op's result.
pub(super) enum Logged<T> {
    /// The change is journaled (or given up on: the files are the truth).
    Then(T),
    /// One more op: an append after a failed compaction.
    Next(LogStep<T>, Op),
}

/// Takes a journal op's result.
pub(super) fn log_result<T>(
    sh: &mut Shared,
    step: LogStep<T>,
    res: Result<Done, OpError>,
) -> Logged<T> {
    let LogStep {
        stream,
        rec,
        phase,
        then,
    } = step;
    let Some(st) = sh.streams.get_mut(&stream) else {
        return Logged::Then(then);
    };
    match (phase, res) {
        (LogPhase::Rewrite { n, records } | LogPhase::Compact { n, records, .. }, Ok(_)) => {
            st.journal_len = Some(n);
            st.journal_records = records;
            st.compaction_retry_at = 0;
            Logged::Then(then)
        }
        (LogPhase::Rewrite { .. }, Err(e)) => {
            sh.event(Event::JournalRewriteFailed {
                stream,
                error: e.reason.logged,
            });
            Logged::Then(then)
        }
        (LogPhase::Compact { at, .. }, Err(e)) => {
            // Appending works even when the snapshot did not (a full disk has room
            // for a record more often than for a snapshot); the snapshot is tried
            // again after `COMPACTION_RETRY_RECORDS` more records.
            st.compaction_retry_at = st.journal_records + COMPACTION_RETRY_RECORDS;
            sh.event(Event::JournalRewriteFailed {
                stream: stream.clone(),
                error: e.reason.logged,
            });
            let (step, op) = append(&stream, rec, at, then);
            Logged::Next(step, op)
        }
        (LogPhase::Append { at, n }, Ok(_)) => {
            st.journal_len = Some(at + n);
            st.journal_records += 1;
            Logged::Then(then)
        }
        (LogPhase::Append { .. }, Err(e)) => {
            if matches!(e.kind, ErrorKind::UnexpectedEof | ErrorKind::NotFound) {
                // Not the file this machine wrote: rewrite it at the next change.
                st.journal_len = None;
            }
            sh.event(Event::JournalAppendFailed {
                stream,
                error: e.reason.logged,
            });
            Logged::Then(then)
        }
    }
}
