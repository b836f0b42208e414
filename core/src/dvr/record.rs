//! The record job of the DVR machine: one segment in, then, in this order, the free
//! space check, the write (making room from the oldest segment under the root on a
//! full disk, or pausing when nothing is left), the index, the journal `Add`, and
//! retention (oldest first, never the newest). docs/dvr.md argues the order.
//!
//! Owns: that sequence and the recording state it sets. Must not: do I/O, or touch
//! the journal other than through `log_step.rs`.

use std::time::Duration;

use bytes::Bytes;

use super::journal::Record;
use super::log_step::{log_result, log_start, LogStep, Logged};
use super::machine::{
    Event, Outcome, RecordFailure, RecordOutcome, Shared, Step, JOURNAL_HEADROOM,
    MAX_EVICTIONS_PER_WRITE,
};
use super::op::{Done, Op, OpError, Reason, RecordingState};
use super::IndexEntry;
use crate::{segment_codec, Segment, StreamName};

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
pub(super) enum RecAt {
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
pub(super) enum Then {
    /// Back to writing (after making room).
    Write,
    /// Retention of the newly stored segment.
    RetentionStart,
    Retention {
        left: usize,
    },
}

pub(super) struct RecordJob {
    pub(super) stream: StreamName,
    pub(super) seg: Encoded,
    /// A live recording: (now, retry interval).
    pub(super) live: Option<(Duration, Duration)>,
    pub(super) evicted: usize,
    pub(super) at: RecAt,
}

impl RecordJob {
    pub(super) fn advance(
        &mut self,
        sh: &mut Shared,
        input: Option<Result<Done, OpError>>,
    ) -> Step {
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
