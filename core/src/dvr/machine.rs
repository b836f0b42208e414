//! [`DvrMachine`]: the DVR's lifecycle as a pure state machine, one per DVR root (the
//! streams recording under one `dvr PATH`, which share a disk). Modelled on
//! quinn-proto's `Connection`: jobs and operation results go in (`submit_*`,
//! [`DvrMachine::handle_result`]), store operations, events and job outcomes come out
//! (`poll_op`, `poll_event`, `take_outcome`), and time is passed in.
//!
//! Owns: opening a stream's archive (the plan from journal + listing, `open.rs`),
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
use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;

use super::journal::{self, JournalError, Record};
use super::op::{Done, Op, OpError, Reason, RecordingState};
use super::open::OpenJob;
use super::{Index, IndexEntry};
use crate::{segment_codec, Segment, StreamName};

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

    fn set_state(&mut self, name: &StreamName, new: RecordingState) {
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
    fn oldest_stream(&self) -> Option<StreamName> {
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

/// A segment to record, encoded (outside the machine's lock if the driver likes).
#[derive(Clone, Debug)]
pub struct Encoded {
    pub entry: IndexEntry,
    pub bytes: Bytes,
}

impl Encoded {
    /// `None` for an empty segment (nothing to record).
    pub fn new(segment: &Segment) -> Option<Encoded> {
        if segment.frames.is_empty() {
            return None;
        }
        let bytes = segment_codec::encode(segment);
        Some(Encoded {
            entry: IndexEntry::from_segment(segment, bytes.len() as u64),
            bytes,
        })
    }
}

/// Where a record job is.
enum RecAt {
    Start,
    /// `Op::FreeSpace` is out.
    Free,
    /// `Op::Write` is out.
    Write,
    /// Deleting `entry` of `victim` to make room.
    Evict {
        victim: StreamName,
        entry: IndexEntry,
    },
    Log(LogStep<Then>),
    /// Retention deleting `entry`, `left` more to go after it.
    Retain {
        entry: IndexEntry,
        left: usize,
    },
}

#[derive(Clone, Copy, Debug)]
enum Then {
    /// Back to writing (after making room).
    Write,
    /// Retention of the newly stored segment.
    RetentionStart,
    Retention {
        left: usize,
    },
}

struct RecordJob {
    stream: StreamName,
    seg: Encoded,
    /// A live recording: (now, retry interval).
    live: Option<(Duration, Duration)>,
    evicted: usize,
    at: RecAt,
}

impl RecordJob {
    fn advance(&mut self, sh: &mut Shared, input: Option<Result<Done, OpError>>) -> Step {
        let at = std::mem::replace(&mut self.at, RecAt::Start);
        match (at, input) {
            (RecAt::Start, _) => {
                let utc = self.seg.entry.utc_start_ms;
                let Some(st) = sh.streams.get(&self.stream) else {
                    return Step::Done(Outcome::Recorded(Ok(RecordOutcome::Skipped)));
                };
                if let (Some((now, _)), Some(retry_at)) = (self.live, st.retry_at) {
                    if now < retry_at {
                        return Step::Done(Outcome::Recorded(Ok(RecordOutcome::Skipped)));
                    }
                }
                if st.index.contains(utc) {
                    return Step::Done(Outcome::Recorded(Ok(RecordOutcome::Skipped)));
                }
                self.at = RecAt::Free;
                Step::Op(Op::FreeSpace)
            }
            (RecAt::Free, res) => {
                let fits = match res {
                    Some(Ok(Done::FreeSpace(Some(free)))) => {
                        free >= self.seg.entry.bytes.saturating_add(JOURNAL_HEADROOM)
                    }
                    _ => true,
                };
                if fits {
                    self.at = RecAt::Write;
                    Step::Op(Op::Write {
                        stream: self.stream.clone(),
                        utc_start_ms: self.seg.entry.utc_start_ms,
                        bytes: self.seg.bytes.clone(),
                    })
                } else {
                    self.make_room(sh)
                }
            }
            (RecAt::Write, Some(Ok(_))) => {
                // Durable under its final name: now it may be indexed and journaled.
                let entry = self.seg.entry;
                if let Some(st) = sh.streams.get_mut(&self.stream) {
                    st.index.insert(entry);
                }
                let stream = self.stream.clone();
                self.log(sh, &stream, Record::Add(entry), Then::RetentionStart)
            }
            (RecAt::Write, Some(Err(e))) if e.is_full() => self.make_room(sh),
            (RecAt::Write, Some(Err(e))) => self.fail(sh, e),
            (RecAt::Evict { victim, entry }, Some(Ok(_))) => {
                sh.event(Event::Evicted {
                    stream: self.stream.clone(),
                    deleted_stream: victim.clone(),
                    utc: entry.utc_start_ms,
                    bytes: entry.bytes,
                });
                self.log(
                    sh,
                    &victim,
                    Record::Remove {
                        utc_start_ms: entry.utc_start_ms,
                    },
                    Then::Write,
                )
            }
            (RecAt::Evict { victim, entry }, Some(Err(e))) => {
                // Still there and whole: it stays indexed.
                if let Some(st) = sh.streams.get_mut(&victim) {
                    st.index.insert(entry);
                }
                self.fail(sh, e)
            }
            (RecAt::Log(step), Some(res)) => match log_result(sh, step, res) {
                Logged::Then(then) => self.then(sh, then),
                Logged::Next(step, op) => {
                    self.at = RecAt::Log(step);
                    Step::Op(op)
                }
            },
            (RecAt::Retain { entry, left }, Some(Ok(_))) => {
                let stream = self.stream.clone();
                self.log(
                    sh,
                    &stream,
                    Record::Remove {
                        utc_start_ms: entry.utc_start_ms,
                    },
                    Then::Retention { left },
                )
            }
            (RecAt::Retain { entry, .. }, Some(Err(e))) => {
                if let Some(st) = sh.streams.get_mut(&self.stream) {
                    st.index.insert(entry);
                }
                sh.event(Event::RetentionFailed {
                    stream: self.stream.clone(),
                    error: e.reason.logged,
                });
                self.stored(sh)
            }
            // An op's answer is missing: the driver broke the protocol. Treat it as
            // the job's end, as an abandoned op is.
            (_, None) => Step::Done(Outcome::Recorded(Ok(RecordOutcome::Skipped))),
        }
    }

    fn log(&mut self, sh: &mut Shared, stream: &StreamName, rec: Record, then: Then) -> Step {
        match log_start(sh, stream, rec, then) {
            Ok((step, op)) => {
                self.at = RecAt::Log(step);
                Step::Op(op)
            }
            Err(then) => self.then(sh, then),
        }
    }

    fn then(&mut self, sh: &mut Shared, then: Then) -> Step {
        match then {
            Then::Write => {
                self.at = RecAt::Free;
                Step::Op(Op::FreeSpace)
            }
            Then::RetentionStart => {
                let n = sh.streams.get(&self.stream).map_or(0, |st| {
                    st.index
                        .retention(self.seg.entry.end_ms(), st.depth_secs, st.limit_bytes)
                });
                self.retain(sh, n)
            }
            Then::Retention { left } => self.retain(sh, left),
        }
    }

    /// Deletes the oldest of the stream, `left` times (oldest first; the newest is
    /// never among them: `Index::retention` keeps it).
    fn retain(&mut self, sh: &mut Shared, left: usize) -> Step {
        if left == 0 {
            return self.stored(sh);
        }
        let Some(entry) = sh
            .streams
            .get_mut(&self.stream)
            .and_then(|st| st.index.pop_oldest())
        else {
            return self.stored(sh);
        };
        self.at = RecAt::Retain {
            entry,
            left: left - 1,
        };
        Step::Op(Op::Delete {
            stream: self.stream.clone(),
            utc_start_ms: entry.utc_start_ms,
        })
    }

    /// The disk is full: delete the oldest segment under the root, or pause.
    fn make_room(&mut self, sh: &mut Shared) -> Step {
        let victim = if self.evicted < MAX_EVICTIONS_PER_WRITE {
            sh.oldest_stream().and_then(|v| {
                let e = sh.streams.get_mut(&v)?.index.pop_oldest()?;
                Some((v, e))
            })
        } else {
            None
        };
        let Some((victim, entry)) = victim else {
            let location = sh
                .streams
                .get(&self.stream)
                .map(|s| s.location.clone())
                .unwrap_or_default();
            sh.set_state(
                &self.stream,
                RecordingState::Paused {
                    reason: Reason::full(&location),
                },
            );
            if let (Some((now, retry)), Some(st)) = (self.live, sh.streams.get_mut(&self.stream)) {
                st.retry_at = Some(now.saturating_add(retry));
            }
            return Step::Done(Outcome::Recorded(Err(RecordFailure::Full { location })));
        };
        self.evicted += 1;
        self.at = RecAt::Evict {
            victim: victim.clone(),
            entry,
        };
        Step::Op(Op::Delete {
            stream: victim,
            utc_start_ms: entry.utc_start_ms,
        })
    }

    fn fail(&mut self, sh: &mut Shared, e: OpError) -> Step {
        sh.set_state(
            &self.stream,
            RecordingState::Failing {
                error: e.reason.clone(),
            },
        );
        self.clear_retry(sh);
        Step::Done(Outcome::Recorded(Err(RecordFailure::Store(e))))
    }

    fn stored(&mut self, sh: &mut Shared) -> Step {
        sh.set_state(&self.stream, RecordingState::Recording);
        self.clear_retry(sh);
        Step::Done(Outcome::Recorded(Ok(RecordOutcome::Stored)))
    }

    fn clear_retry(&self, sh: &mut Shared) {
        if self.live.is_some() {
            if let Some(st) = sh.streams.get_mut(&self.stream) {
                st.retry_at = None;
            }
        }
    }
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

    /// A read found the segment damaged: it leaves the index (served as a gap).
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
