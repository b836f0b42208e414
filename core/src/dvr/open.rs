//! The open plan of one stream's archive, a job of [`super::machine::DvrMachine`]:
//! prepare the directory, replay the journal up to its first torn record, list the
//! files, drop every entry whose file is missing or has another size, decode the
//! newest [`VERIFY_TAIL`] entries' files (deleting those that fail), decode every file
//! the journal does not name (index it if whole, delete it if not), register the
//! stream, and rewrite the journal if any of that changed something (docs/dvr.md,
//! "What a crash at each step leaves").
//!
//! Owns: that plan. Must not: do I/O or touch another stream.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::journal::{self, Replay, Tail};
use super::machine::{
    check_segment, Event, OpenFailure, Outcome, Shared, Step, Stream, VERIFY_TAIL,
};
use super::op::{Done, Op, OpError, RecordingState};
use super::{Index, IndexEntry, DEFAULT_GAP_TOLERANCE_MS};
use crate::StreamName;

enum At {
    Start,
    Prepare,
    ReadJournal,
    List,
    /// Reading `verify[i]`.
    Verify(usize),
    /// Deleting `verify[i]` (damaged).
    VerifyDelete(usize),
    /// Reading `unknown[i]`.
    Unknown(usize),
    /// Deleting `unknown[i]` (damaged).
    UnknownDelete(usize),
    /// The stream is registered; the journal rewrite of `n` bytes, `records`
    /// records, is out.
    Rewrite {
        n: u64,
        records: usize,
    },
}

pub(super) struct OpenJob {
    stream: StreamName,
    depth_secs: Option<u64>,
    limit_bytes: Option<u64>,
    location: String,
    at: At,
    replay: Option<Replay>,
    journal_present: bool,
    on_disk: BTreeMap<u64, u64>,
    entries: BTreeMap<u64, IndexEntry>,
    changed: bool,
    /// (UTC start, bytes) of the newest entries, newest first.
    verify: Vec<(u64, u64)>,
    /// (UTC start, bytes) of files the journal does not name.
    unknown: Vec<(u64, u64)>,
}

impl OpenJob {
    pub(super) fn new(
        stream: StreamName,
        depth_secs: Option<u64>,
        limit_bytes: Option<u64>,
        location: String,
    ) -> Self {
        OpenJob {
            stream,
            depth_secs,
            limit_bytes,
            location,
            at: At::Start,
            replay: None,
            journal_present: false,
            on_disk: BTreeMap::new(),
            entries: BTreeMap::new(),
            changed: false,
            verify: Vec::new(),
            unknown: Vec::new(),
        }
    }

    fn fail(e: OpenFailure) -> Step {
        Step::Done(Outcome::Opened(Err(e)))
    }

    fn read(&self, utc: u64, len: u64) -> Op {
        Op::ReadSegment {
            stream: self.stream.clone(),
            utc_start_ms: utc,
            len,
        }
    }

    fn delete(&self, utc: u64) -> Op {
        Op::Delete {
            stream: self.stream.clone(),
            utc_start_ms: utc,
        }
    }

    pub(super) fn advance(
        &mut self,
        sh: &mut Shared,
        input: Option<Result<Done, OpError>>,
    ) -> Step {
        let at = std::mem::replace(&mut self.at, At::Start);
        match (at, input) {
            (At::Start, _) => {
                if sh.streams.contains_key(&self.stream) {
                    return Self::fail(OpenFailure::AlreadyOpen);
                }
                self.at = At::Prepare;
                Step::Op(Op::Prepare {
                    stream: self.stream.clone(),
                })
            }
            (_, None) => Self::fail(OpenFailure::AlreadyOpen),
            (At::Prepare, Some(Ok(_))) => {
                self.at = At::ReadJournal;
                Step::Op(Op::ReadJournal {
                    stream: self.stream.clone(),
                })
            }
            (At::ReadJournal, Some(Ok(done))) => {
                let raw = match done {
                    Done::Journal(raw) => raw,
                    _ => None,
                };
                let replay = match &raw {
                    Some(b) => match journal::replay(b) {
                        Ok(r) => r,
                        Err(e) => return Self::fail(OpenFailure::Journal(e)),
                    },
                    None => Replay {
                        entries: Vec::new(),
                        records: 0,
                        valid_len: 0,
                        tail: Tail::Clean,
                    },
                };
                if let Tail::Torn { at, reason } = replay.tail {
                    sh.event(Event::JournalTorn {
                        stream: self.stream.clone(),
                        at,
                        reason,
                    });
                }
                self.journal_present = raw.is_some();
                self.entries = replay
                    .entries
                    .iter()
                    .map(|e| (e.utc_start_ms, *e))
                    .collect();
                self.replay = Some(replay);
                self.at = At::List;
                Step::Op(Op::List {
                    stream: self.stream.clone(),
                })
            }
            (At::List, Some(Ok(done))) => {
                let files = match done {
                    Done::Listed(f) => f,
                    _ => Vec::new(),
                };
                self.on_disk = files.iter().map(|f| (f.utc_start_ms, f.bytes)).collect();
                // Entries whose file is gone, or is not the file that was indexed.
                let mut dropped = Vec::new();
                for (utc, e) in &self.entries {
                    match self.on_disk.get(utc) {
                        Some(len) if *len == e.bytes => {}
                        Some(len) => dropped.push(Event::SizeMismatch {
                            stream: self.stream.clone(),
                            utc: *utc,
                            expected: e.bytes,
                            found: *len,
                        }),
                        None => dropped.push(Event::Missing {
                            stream: self.stream.clone(),
                            utc: *utc,
                        }),
                    }
                }
                for ev in dropped {
                    if let Event::SizeMismatch { utc, .. } | Event::Missing { utc, .. } = ev {
                        self.entries.remove(&utc);
                    }
                    self.changed = true;
                    sh.event(ev);
                }
                // The newest entries are decoded: they are the ones a crash could touch.
                self.verify = self
                    .entries
                    .values()
                    .rev()
                    .take(VERIFY_TAIL)
                    .map(|e| (e.utc_start_ms, e.bytes))
                    .collect();
                self.next_verify(sh, 0)
            }
            (At::Verify(i), Some(res)) => {
                let (utc, _) = self.verify[i];
                match res {
                    Ok(Done::Segment(b)) => match check_segment(b, utc) {
                        Ok(_) => self.next_verify(sh, i + 1),
                        Err(why) => {
                            sh.event(Event::Damaged {
                                stream: self.stream.clone(),
                                utc,
                                why,
                            });
                            self.forget(utc);
                            self.at = At::VerifyDelete(i);
                            Step::Op(self.delete(utc))
                        }
                    },
                    Ok(_) => self.unreadable(sh, utc, "not a segment read".into(), i, true),
                    Err(e) => self.unreadable(sh, utc, e.reason.logged, i, true),
                }
            }
            (At::VerifyDelete(i), Some(Ok(_))) => self.next_verify(sh, i + 1),
            (At::Unknown(i), Some(res)) => {
                let (utc, len) = self.unknown[i];
                match res {
                    Ok(Done::Segment(b)) => match check_segment(b, utc) {
                        Ok(seg) => {
                            sh.event(Event::Reindexed {
                                stream: self.stream.clone(),
                                utc,
                            });
                            self.entries
                                .insert(utc, IndexEntry::from_segment(&seg, len));
                            self.next_unknown(sh, i + 1)
                        }
                        Err(why) => {
                            sh.event(Event::DamagedUnlisted {
                                stream: self.stream.clone(),
                                utc,
                                why,
                            });
                            self.at = At::UnknownDelete(i);
                            Step::Op(self.delete(utc))
                        }
                    },
                    Ok(_) => self.unreadable(sh, utc, "not a segment read".into(), i, false),
                    Err(e) => self.unreadable(sh, utc, e.reason.logged, i, false),
                }
            }
            (At::UnknownDelete(i), Some(Ok(_))) => self.next_unknown(sh, i + 1),
            (At::Rewrite { n, records }, Some(res)) => {
                match res {
                    Ok(_) => {
                        if let Some(st) = sh.streams.get_mut(&self.stream) {
                            st.journal_len = Some(n);
                            st.journal_records = records;
                            st.compaction_retry_at = 0;
                        }
                    }
                    Err(e) => sh.event(Event::JournalRewriteFailed {
                        stream: self.stream.clone(),
                        error: e.reason.logged,
                    }),
                }
                self.opened(sh)
            }
            // Prepare, the journal read, the listing or a delete failed: open
            // cannot go on without them.
            (_, Some(Err(e))) => Self::fail(OpenFailure::Store(e)),
        }
    }

    fn forget(&mut self, utc: u64) {
        self.entries.remove(&utc);
        self.on_disk.remove(&utc);
        self.changed = true;
    }

    fn unreadable(
        &mut self,
        sh: &mut Shared,
        utc: u64,
        error: String,
        i: usize,
        verifying: bool,
    ) -> Step {
        sh.event(Event::Unreadable {
            stream: self.stream.clone(),
            utc,
            error,
        });
        if verifying {
            self.forget(utc);
            self.next_verify(sh, i + 1)
        } else {
            self.next_unknown(sh, i + 1)
        }
    }

    fn next_verify(&mut self, sh: &mut Shared, i: usize) -> Step {
        if let Some(&(utc, len)) = self.verify.get(i) {
            self.at = At::Verify(i);
            return Step::Op(self.read(utc, len));
        }
        // Files the journal does not know: written just before a crash (or a
        // failed journal append). Re-indexed if whole, deleted if not.
        self.unknown = self
            .on_disk
            .iter()
            .filter(|(utc, _)| !self.entries.contains_key(utc))
            .map(|(u, l)| (*u, *l))
            .collect();
        if !self.unknown.is_empty() {
            self.changed = true;
        }
        self.next_unknown(sh, 0)
    }

    fn next_unknown(&mut self, sh: &mut Shared, i: usize) -> Step {
        if let Some(&(utc, len)) = self.unknown.get(i) {
            self.at = At::Unknown(i);
            return Step::Op(self.read(utc, len));
        }
        self.register(sh)
    }

    fn register(&mut self, sh: &mut Shared) -> Step {
        if sh.streams.contains_key(&self.stream) {
            return Self::fail(OpenFailure::AlreadyOpen);
        }
        let entries = std::mem::take(&mut self.entries);
        let index = Index::from_entries(entries.into_values(), DEFAULT_GAP_TOLERANCE_MS);
        let (records, valid_len) = self
            .replay
            .as_ref()
            .map_or((0, 0), |r| (r.records, r.valid_len));
        let journal_len =
            (self.journal_present && valid_len >= journal::HEADER_LEN).then_some(valid_len as u64);
        let rewrite = self.changed
            || (journal_len.is_none() && !index.is_empty())
            || journal::needs_compaction(records, index.len());
        let snapshot = rewrite.then(|| Bytes::from(journal::snapshot(index.iter())));
        let live = index.len();
        sh.streams.insert(
            self.stream.clone(),
            Stream {
                index,
                state: RecordingState::Waiting,
                depth_secs: self.depth_secs,
                limit_bytes: self.limit_bytes,
                location: self.location.clone(),
                journal_len,
                journal_records: records,
                compaction_retry_at: 0,
                retry_at: None,
            },
        );
        match snapshot {
            Some(bytes) => {
                self.at = At::Rewrite {
                    n: bytes.len() as u64,
                    records: live,
                };
                Step::Op(Op::RewriteJournal {
                    stream: self.stream.clone(),
                    bytes,
                })
            }
            None => self.opened(sh),
        }
    }

    fn opened(&mut self, sh: &mut Shared) -> Step {
        let facts = sh.streams.get(&self.stream).map(|st| {
            (
                st.index.len(),
                st.index.total_bytes(),
                st.index.ranges().len(),
            )
        });
        if let Some((segments, bytes, ranges)) = facts {
            sh.event(Event::Opened {
                stream: self.stream.clone(),
                segments,
                bytes,
                ranges,
            });
        }
        Step::Done(Outcome::Opened(Ok(())))
    }

    /// The driver gave up during this job: a stream registered by it leaves again
    /// (no handle will ever close it).
    pub(super) fn abandon(&self, sh: &mut Shared) {
        if matches!(self.at, At::Rewrite { .. }) {
            sh.streams.remove(&self.stream);
        }
    }
}
