//! What the DVR machine ([`super::machine::DvrMachine`]) asks its driver to do to a
//! store ([`Op`]), what comes back ([`Done`], [`OpError`]), and the recording state
//! it reports ([`RecordingState`]).
//!
//! Owns: these types and the store contract each `Op` relies on (see each variant).
//! Must not: perform an operation or hold a file.

use std::io::ErrorKind;

use bytes::Bytes;

use crate::StreamName;

/// One store operation, for the driver to run and answer with
/// [`super::machine::DvrMachine::handle_result`]. Exactly one is out at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the stream's directory durably if it does not exist. `Done::Ok`.
    Prepare { stream: StreamName },
    /// The journal's bytes. `Done::Journal`.
    ReadJournal { stream: StreamName },
    /// The stream's segment files (removing `*.tmp` leftovers). `Done::Listed`.
    List { stream: StreamName },
    /// One segment file's bytes, refused (`InvalidData`) if it is not `len` bytes.
    /// `Done::Segment`.
    ReadSegment {
        stream: StreamName,
        utc_start_ms: u64,
        len: u64,
    },
    /// Bytes free for the store, when it knows. `Done::FreeSpace`.
    FreeSpace,
    /// Write the segment durably under its final name (temporary file, fsync,
    /// rename, directory fsync) before answering `Done::Ok`; on an error no file of
    /// that name is left. `Ok` is the segment's acknowledgement.
    Write {
        stream: StreamName,
        utc_start_ms: u64,
        bytes: Bytes,
    },
    /// Unlink the segment file (a missing file is `Ok`); the directory need not be
    /// synced. `Done::Ok`.
    Delete {
        stream: StreamName,
        utc_start_ms: u64,
    },
    /// Cut the journal back to `at` bytes, append `bytes`, fsync. `NotFound` if there
    /// is no journal, `UnexpectedEof` if it is shorter than `at`. `Done::Ok`.
    AppendJournal {
        stream: StreamName,
        at: u64,
        bytes: Bytes,
    },
    /// Replace the journal atomically (temporary file, fsync, rename, directory
    /// fsync). `Done::Ok`.
    RewriteJournal { stream: StreamName, bytes: Bytes },
}

impl Op {
    /// The stream it touches (`None`: the whole store).
    pub fn stream(&self) -> Option<&StreamName> {
        match self {
            Op::Prepare { stream }
            | Op::ReadJournal { stream }
            | Op::List { stream }
            | Op::ReadSegment { stream, .. }
            | Op::Write { stream, .. }
            | Op::Delete { stream, .. }
            | Op::AppendJournal { stream, .. }
            | Op::RewriteJournal { stream, .. } => Some(stream),
            Op::FreeSpace => None,
        }
    }
}

/// A stored segment file, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub utc_start_ms: u64,
    pub bytes: u64,
}

/// A successful operation's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Ok,
    Journal(Option<Bytes>),
    /// Sorted by UTC start.
    Listed(Vec<SegmentFile>),
    Segment(Bytes),
    FreeSpace(Option<u64>),
}

/// A failed operation: its kind (what the machine decides on) and its text (what
/// it logs and shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub kind: ErrorKind,
    pub reason: Reason,
}

impl OpError {
    pub fn is_full(&self) -> bool {
        matches!(self.kind, ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
    }
}

/// Why the DVR is not recording, twice: in full for the log (paths, the OS's text)
/// and without paths or OS text for anyone who asks the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub logged: String,
    pub shown: String,
}

impl Reason {
    /// The reason of a pause: the disk is full and nothing under the DVR root is
    /// left to delete. The same words as node's `DvrError::Full`.
    pub fn full(location: &str) -> Reason {
        Reason {
            logged: format!(
                "the disk holding the DVR at {location} is full and deleting the oldest \
                 segments under that DVR root did not make room (none is left, or the space \
                 is taken by other files): free space on that disk; recording resumes by itself"
            ),
            shown: "the disk holding the DVR is full and nothing of Tern's under its DVR root \
                    is left to delete; recording resumes by itself once there is room"
                .into(),
        }
    }
}

/// What the DVR is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordingState {
    /// Opened; no segment has arrived yet.
    Waiting,
    /// The last segment was stored.
    Recording,
    /// The disk is full and nothing under the DVR root is left to delete; the
    /// recorder retries by itself.
    Paused { reason: Reason },
    /// The last segment could not be stored (an I/O error); the next one is tried.
    Failing { error: Reason },
}
