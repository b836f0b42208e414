//! [`DvrMachine`]: the DVR's lifecycle as a pure state machine, one per DVR root (the
//! streams recording under one `dvr PATH`, which share a disk). Modelled on
//! quinn-proto's `Connection`: jobs and operation results go in (`submit_*`,
//! [`DvrMachine::handle_result`]), store operations, events and job outcomes come out
//! (`poll_op`, `poll_event`, `take_outcome`), and time is passed in.
//!
//! Owns: the jobs and their order (one store operation out at a time), the open
//! streams, outcomes and events. The jobs are `open.rs` (the plan from journal +
//! listing) and `record.rs` (record, retention, making room), journaling one change
//! is `log_step.rs`. Together they decide: opening a stream's archive,
//! recording a segment (write, index, journal, retention), making room on a full disk
//! from the oldest segment under the root, journal compaction and its retry, and the
//! recording state (pause on a full disk and its retry time). Must not: do I/O, read a
//! clock, or log (it emits [`Event`]s; the driver logs them).
//!
//! # The crash-safety rule (docs/dvr.md)
//!
//! - A segment enters the index and its `Add` record is asked for only after its
//!   `Op::Write` answered `Ok` (the store's contract makes that "durable under its
//!   final name"): the journal never runs ahead of the files.
//! - Deleting goes the other way: the entry leaves the index, then `Op::Delete`, then
//!   the `Remove` record.
//! - The journal is advisory: a failed append or rewrite is an event, never a failed
//!   recording, because open re-learns the files.
//! - Retention never deletes the newest segment (`Index::retention` keeps it) and
//!   takes the oldest first.
//!
//! One operation is out at a time; the driver answers it before asking for the next.
//! If the driver gives up on an operation (its task was cancelled), it calls
//! [`DvrMachine::handle_abandoned`]: the job ends there, as a crash of that job would.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::journal::JournalError;
use super::op::{Done, Op, OpError, RecordingState};
use super::open::OpenJob;
use super::record::{RecAt, RecordJob};
use super::Index;
use crate::{segment_codec, Segment, StreamName};

pub use super::record::Encoded;

/// The newest entries decoded at open (the only ones a crash can have touched).
pub const VERIFY_TAIL: usize = 3;
/// Most segments deleted to make room for one new segment on a full disk before a
/// recording gives up for now (pauses); the next retry deletes more. Bounds the work
/// of one write when deleting does not free space (files held open elsewhere).
pub const MAX_EVICTIONS_PER_WRITE: usize = 256;
/// Room kept free beyond a segment's size when the store knows its free space: the
/// journal records that follow.
pub const JOURNAL_HEADROOM: u64 = 4096;
/// Journal records appended after a failed compaction before it is tried again.
pub const COMPACTION_RETRY_RECORDS: usize = 256;
/// How often a paused recorder tries again (the default of `submit_live`'s `retry`).
pub const PAUSE_RETRY: Duration = Duration::from_secs(5);

/// A job's handle, to collect its outcome.
pub type JobId = u64;

/// What a record job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    /// Already stored (same UTC start), empty, or dropped while paused: nothing
    /// written.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenFailure {
    /// The stream is already open under this root.
    AlreadyOpen,
    /// A store operation that open cannot do without failed.
    Store(OpError),
    /// The journal is not one this build reads.
    Journal(JournalError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordFailure {
    /// The segment could not be written (an I/O error); nothing of it is indexed.
    Store(OpError),
    /// The disk is full and nothing under the root is left to delete (paused).
    Full { location: String },
}

/// A finished job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Opened(Result<(), OpenFailure>),
    Recorded(Result<RecordOutcome, RecordFailure>),
}

/// Something worth a log line (the driver logs it) or an oracle's attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    JournalTorn {
        stream: StreamName,
        at: usize,
        reason: &'static str,
    },
    SizeMismatch {
        stream: StreamName,
        utc: u64,
        expected: u64,
        found: u64,
    },
    Missing {
        stream: StreamName,
        utc: u64,
    },
    /// A journal-listed file failed its check at open; it is deleted.
    Damaged {
        stream: StreamName,
        utc: u64,
        why: String,
    },
    /// A file the journal did not list failed its check at open; it is deleted.
    DamagedUnlisted {
        stream: StreamName,
        utc: u64,
        why: String,
    },
    Unreadable {
        stream: StreamName,
        utc: u64,
        error: String,
    },
    Reindexed {
        stream: StreamName,
        utc: u64,
    },
    Opened {
        stream: StreamName,
        segments: usize,
        bytes: u64,
        ranges: usize,
    },
    /// Deleted to make room on a full disk for `stream`'s segment.
    Evicted {
        stream: StreamName,
        deleted_stream: StreamName,
        utc: u64,
        bytes: u64,
    },
    RetentionFailed {
        stream: StreamName,
        error: String,
    },
    JournalAppendFailed {
        stream: StreamName,
        error: String,
    },
    JournalRewriteFailed {
        stream: StreamName,
        error: String,
    },
    State {
        stream: StreamName,
        from: RecordingState,
        to: RecordingState,
    },
}

/// One open stream's archive.
#[derive(Clone, Debug)]
pub struct Stream {
    pub(super) index: Index,
    pub(super) state: RecordingState,
    pub(super) depth_secs: Option<u64>,
    pub(super) limit_bytes: Option<u64>,
    pub(super) location: String,
    /// Length of the journal's valid prefix; `None`: missing or unknown, the next
    /// change rewrites it.
    pub(super) journal_len: Option<u64>,
    pub(super) journal_records: usize,
    /// After a failed compaction, the record count at which it is tried again.
    pub(super) compaction_retry_at: usize,
    /// While paused by a live recording: when to try again.
    pub(super) retry_at: Option<Duration>,
}

impl Stream {
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn state(&self) -> &RecordingState {
        &self.state
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The journal length this machine wrote (`None`: the next change rewrites it).
    pub fn journal_len(&self) -> Option<u64> {
        self.journal_len
    }
}

/// What jobs share: the open streams and the events.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) streams: BTreeMap<StreamName, Stream>,
    pub(super) events: VecDeque<Event>,
}

impl Shared {
    pub(super) fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    pub(super) fn set_state(&mut self, name: &StreamName, new: RecordingState) {
        let Some(st) = self.streams.get_mut(name) else {
            return;
        };
        if st.state == new {
            return;
        }
        let from = std::mem::replace(&mut st.state, new.clone());
        self.events.push_back(Event::State {
            stream: name.clone(),
            from,
            to: new,
        });
    }

    /// The stream holding the oldest segment under the root.
    pub(super) fn oldest_stream(&self) -> Option<StreamName> {
        self.streams
            .iter()
            .filter_map(|(n, s)| s.index.first().map(|e| (e.utc_start_ms, n)))
            .min_by_key(|(utc, _)| *utc)
            .map(|(_, n)| n.clone())
    }
}

/// What a job does next.
pub(super) enum Step {
    Op(Op),
    Done(Outcome),
}

/// Decodes a stored segment and checks it is the one its file name says.
pub(super) fn check_segment(bytes: Bytes, utc: u64) -> Result<Segment, String> {
    let seg = segment_codec::decode(bytes).map_err(|e| e.to_string())?;
    if seg.utc_start_ms != utc {
        return Err(format!(
            "it holds the segment starting at {}, not {utc}",
            seg.utc_start_ms
        ));
    }
    Ok(seg)
}

enum Job {
    Open(Box<OpenJob>),
    Record(Box<RecordJob>),
}

impl Job {
    fn advance(&mut self, sh: &mut Shared, input: Option<Result<Done, OpError>>) -> Step {
        match self {
            Job::Open(j) => j.advance(sh, input),
            Job::Record(j) => j.advance(sh, input),
        }
    }
}

/// The DVR lifecycle of one DVR root. See the module doc.
#[derive(Default)]
pub struct DvrMachine {
    sh: Shared,
    queue: VecDeque<(JobId, Job)>,
    /// The running job, and whether its op is out (awaiting its result).
    current: Option<(JobId, Job)>,
    /// The op the running job asked for, not yet handed out.
    next_op: Option<Op>,
    in_flight: bool,
    outcomes: VecDeque<(JobId, Outcome)>,
    next_id: JobId,
}

impl DvrMachine {
    pub fn new() -> Self {
        DvrMachine::default()
    }

    fn submit(&mut self, job: Job) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, job));
        id
    }

    /// Opens stream `name`: replays its journal, reconciles it with the files and
    /// registers the stream under this root. `location` names it in messages.
    pub fn submit_open(
        &mut self,
        name: StreamName,
        depth_secs: Option<u64>,
        limit_bytes: Option<u64>,
        location: String,
    ) -> JobId {
        self.submit(Job::Open(Box::new(OpenJob::new(
            name,
            depth_secs,
            limit_bytes,
            location,
        ))))
    }

    /// Records one segment of an open stream (a cache fill, a test): no pause gate.
    pub fn submit_record(&mut self, name: StreamName, seg: Encoded) -> JobId {
        self.submit_record_job(name, seg, None)
    }

    /// Records one segment of a live stream at `now`: while paused, segments before
    /// the retry time are dropped; a full disk sets the retry time `retry` later.
    pub fn submit_live(
        &mut self,
        name: StreamName,
        seg: Encoded,
        now: Duration,
        retry: Duration,
    ) -> JobId {
        self.submit_record_job(name, seg, Some((now, retry)))
    }

    fn submit_record_job(
        &mut self,
        stream: StreamName,
        seg: Encoded,
        live: Option<(Duration, Duration)>,
    ) -> JobId {
        self.submit(Job::Record(Box::new(RecordJob {
            stream,
            seg,
            live,
            evicted: 0,
            at: RecAt::Start,
        })))
    }

    /// The next store operation to run, if one is due and none is out.
    pub fn poll_op(&mut self) -> Option<Op> {
        if self.in_flight {
            return None;
        }
        loop {
            if let Some(op) = self.next_op.take() {
                self.in_flight = true;
                return Some(op);
            }
            if self.current.is_none() {
                let (id, job) = self.queue.pop_front()?;
                self.current = Some((id, job));
            }
            self.step(None);
        }
    }

    /// The answer to the op last handed out by [`DvrMachine::poll_op`].
    pub fn handle_result(&mut self, res: Result<Done, OpError>) {
        if !self.in_flight {
            return;
        }
        self.in_flight = false;
        self.step(Some(res));
    }

    /// The driver will not answer the op out (its task was cancelled): the job ends
    /// here, as if the process had died during that op.
    pub fn handle_abandoned(&mut self) {
        self.in_flight = false;
        self.next_op = None;
        if let Some((_, Job::Open(j))) = self.current.take() {
            j.abandon(&mut self.sh);
        }
    }

    fn step(&mut self, input: Option<Result<Done, OpError>>) {
        let Some((id, mut job)) = self.current.take() else {
            return;
        };
        match job.advance(&mut self.sh, input) {
            Step::Op(op) => {
                self.next_op = Some(op);
                self.current = Some((id, job));
            }
            Step::Done(o) => self.outcomes.push_back((id, o)),
        }
    }

    /// Whether a job is running or waiting.
    pub fn is_busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty() || self.next_op.is_some()
    }

    /// The outcome of job `id`, once it finished.
    pub fn take_outcome(&mut self, id: JobId) -> Option<Outcome> {
        let i = self.outcomes.iter().position(|(j, _)| *j == id)?;
        self.outcomes.remove(i).map(|(_, o)| o)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.sh.events.pop_front()
    }

    /// When a paused live recording will try again (the earliest over the root).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.sh.streams.values().filter_map(|s| s.retry_at).min()
    }

    pub fn stream(&self, name: &StreamName) -> Option<&Stream> {
        self.sh.streams.get(name)
    }

    pub fn streams(&self) -> impl Iterator<Item = (&StreamName, &Stream)> + '_ {
        self.sh.streams.iter()
    }

    /// A read found the segment damaged or its file gone: it leaves the index
    /// (served as a gap, and recorded again if it comes again: a cache's refetch).
    pub fn handle_damaged(&mut self, name: &StreamName, utc_start_ms: u64) {
        if let Some(st) = self.sh.streams.get_mut(name) {
            st.index.remove(utc_start_ms);
        }
    }

    /// The stream's handle is gone: it leaves the root (no longer a candidate for
    /// making room, and may be opened again).
    pub fn close(&mut self, name: &StreamName) {
        self.sh.streams.remove(name);
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
