//! The DVR driver: [`DvrRoot`] (one `dvr PATH`: one store, one
//! [`DvrMachine`]) and [`Dvr`] (one stream's handle under it).
//!
//! Owns: moving operations between the machine and the store — take an op from the
//! machine, run it on the [`DvrStore`], hand the result back — and logging the
//! machine's events; answering queries from the machine's index; reading a stored
//! segment for playback. Must not: decide what to record, delete, journal or when
//! (the machine does), or hold a timer (the recorder passes time in).
//!
//! One job runs at a time per root: the caller that holds `drive` submits its job and
//! runs ops until the job's outcome is there. If that caller is cancelled while an op
//! is out (an aborted recorder task), [`Abandon`] tells the machine, which ends the
//! job as a crash of it would (docs/dvr.md: a cut-short write is the crash case).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tern_core::cluster::message::DvrFacts;
use tern_core::config::DvrConfig;
use tern_core::dvr::machine::{
    DvrMachine, Encoded, Event, JobId, OpenFailure, Outcome, RecordFailure, RecordOutcome, Stream,
};
use tern_core::dvr::op::{Done, Op, OpError, Reason, RecordingState};
use tern_core::segment_codec;
use tern_core::{Segment, StreamName};
use tracing::{info, warn};

use super::store::{self, DvrStore, StoreError};
use super::{store_public_reason, DvrError, DvrSummary, RecordingStatus, StoredSegment};

/// The streams recording under one DVR root (`dvr PATH`): one store, one disk, one
/// machine.
pub struct DvrRoot {
    store: Arc<dyn DvrStore>,
    machine: Mutex<DvrMachine>,
    /// Held by the caller running the machine's ops (one job at a time).
    drive: tokio::sync::Mutex<()>,
}

/// Tells the machine its op will not be answered if the driving future is dropped.
struct Abandon<'a> {
    root: &'a DvrRoot,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.root.machine().handle_abandoned();
        }
    }
}

fn op_error(e: &StoreError) -> OpError {
    OpError {
        kind: e.source.kind(),
        reason: Reason {
            logged: e.to_string(),
            shown: store_public_reason(e),
        },
    }
}

/// Runs one op on the store.
async fn execute(store: &dyn DvrStore, op: Op) -> Result<Done, StoreError> {
    Ok(match op {
        Op::Prepare { stream } => {
            store.prepare(&stream).await?;
            Done::Ok
        }
        Op::ReadJournal { stream } => Done::Journal(store.read_journal(&stream).await?),
        Op::List { stream } => Done::Listed(store.list_segments(&stream).await?),
        Op::ReadSegment {
            stream,
            utc_start_ms,
            len,
        } => Done::Segment(store.read_segment(&stream, utc_start_ms, Some(len)).await?),
        Op::FreeSpace => Done::FreeSpace(store.free_space().await?),
        Op::Write {
            stream,
            utc_start_ms,
            bytes,
        } => {
            store.write_segment(&stream, utc_start_ms, bytes).await?;
            Done::Ok
        }
        Op::Delete {
            stream,
            utc_start_ms,
        } => {
            store.delete_segment(&stream, utc_start_ms).await?;
            Done::Ok
        }
        Op::AppendJournal { stream, at, bytes } => {
            store.append_journal(&stream, at, bytes).await?;
            Done::Ok
        }
        Op::RewriteJournal { stream, bytes } => {
            store.rewrite_journal(&stream, bytes).await?;
            Done::Ok
        }
    })
}

impl DvrRoot {
    pub fn new(store: Arc<dyn DvrStore>) -> Arc<Self> {
        Arc::new(DvrRoot {
            store,
            machine: Mutex::new(DvrMachine::new()),
            drive: tokio::sync::Mutex::new(()),
        })
    }

    pub fn store(&self) -> &Arc<dyn DvrStore> {
        &self.store
    }

    fn machine(&self) -> MutexGuard<'_, DvrMachine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits a job and runs the machine's ops until its outcome is there; also
    /// the store error of the last failed op, for the caller's error.
    async fn run(
        &self,
        submit: impl FnOnce(&mut DvrMachine) -> JobId,
    ) -> (Option<Outcome>, Option<StoreError>) {
        let _drive = self.drive.lock().await;
        let id = submit(&mut self.machine());
        let mut last_err = None;
        loop {
            let op = {
                let mut m = self.machine();
                let op = m.poll_op();
                self.log_events(&mut m);
                match op {
                    Some(op) => op,
                    // No op due: the job is done (`None` is not reached: a
                    // submitted job runs to an outcome).
                    None => return (m.take_outcome(id), last_err),
                }
            };
            let mut guard = Abandon {
                root: self,
                armed: true,
            };
            let res = execute(&*self.store, op).await;
            guard.armed = false;
            let res = res.map_err(|e| {
                let oe = op_error(&e);
                last_err = Some(e);
                oe
            });
            self.machine().handle_result(res);
        }
    }

    /// Opens the DVR of stream `name` under this root: replays its journal and
    /// reconciles it with the files (docs/dvr.md).
    pub async fn open(
        self: &Arc<Self>,
        name: StreamName,
        config: DvrConfig,
    ) -> Result<Arc<Dvr>, DvrError> {
        let location = self.store.location(&name);
        let (outcome, last_err) = self
            .run(|m| {
                m.submit_open(
                    name.clone(),
                    config.depth_secs,
                    config.limit_bytes,
                    location.clone(),
                )
            })
            .await;
        let store_err = |e: Option<OpError>| {
            DvrError::Store(last_err.unwrap_or_else(|| {
                let (kind, text) = e.map_or((io::ErrorKind::Other, String::new()), |e| {
                    (e.kind, e.reason.logged)
                });
                StoreError::new("open", location.clone(), io::Error::new(kind, text))
            }))
        };
        match outcome {
            Some(Outcome::Opened(Ok(()))) => Ok(Arc::new(Dvr {
                root: self.clone(),
                name,
                config,
                location,
            })),
            Some(Outcome::Opened(Err(OpenFailure::AlreadyOpen))) => Err(DvrError::AlreadyOpen {
                stream: name,
                location,
            }),
            Some(Outcome::Opened(Err(OpenFailure::Journal(e)))) => Err(DvrError::Journal {
                path: format!("{location}/{}", store::JOURNAL_FILE),
                reason: e.to_string(),
            }),
            Some(Outcome::Opened(Err(OpenFailure::Store(e)))) => Err(store_err(Some(e))),
            _ => Err(store_err(None)),
        }
    }

    /// Logs what the machine reports.
    fn log_events(&self, m: &mut DvrMachine) {
        while let Some(e) = m.poll_event() {
            let at = |s: &StreamName| self.store.location(s);
            match e {
                Event::JournalTorn {
                    stream,
                    at: pos,
                    reason,
                } => warn!(path = %at(&stream), at = pos, reason,
                    "the DVR index journal ends in a torn record (a crash or a failed write); ignoring it"),
                Event::SizeMismatch {
                    stream,
                    utc,
                    expected,
                    found,
                } => warn!(path = %at(&stream), segment = utc, expected, found,
                    "DVR segment file has another size than indexed; checking it again"),
                Event::Missing { stream, utc } => warn!(path = %at(&stream), segment = utc,
                    "DVR segment file is missing; dropping it from the index"),
                Event::Damaged { stream, utc, why } => {
                    warn!(path = %at(&stream), segment = utc, %why,
                    "DVR segment file is damaged; deleting it")
                }
                Event::DamagedUnlisted { stream, utc, why } => {
                    warn!(path = %at(&stream), segment = utc, %why,
                    "DVR segment file the index did not list is damaged; deleting it")
                }
                Event::Unreadable { stream, utc, error } => {
                    warn!(path = %at(&stream), segment = utc, %error,
                    "cannot read a DVR segment file; leaving it out of the index")
                }
                Event::Reindexed { stream, utc } => info!(path = %at(&stream), segment = utc,
                    "re-indexed a DVR segment file the index did not list"),
                Event::Opened {
                    stream,
                    segments,
                    bytes,
                    ranges,
                } => info!(path = %at(&stream), %stream, segments, bytes, ranges,
                    "DVR opened"),
                Event::Evicted {
                    stream,
                    deleted_stream,
                    utc,
                    bytes,
                } => warn!(%stream, %deleted_stream, deleted_segment = utc, bytes,
                    path = %at(&stream), "disk full: deleted the oldest DVR segment under this DVR root to make room"),
                Event::RetentionFailed { stream, error } => warn!(%stream, %error,
                    "DVR retention could not delete a segment; trying again after the next one"),
                Event::JournalAppendFailed { stream, error } => warn!(%stream, %error,
                    "cannot update the DVR index journal; the segment files are re-indexed at the next start"),
                Event::JournalRewriteFailed { stream, error } => warn!(%stream, %error,
                    "cannot rewrite the DVR index journal; the segment files are re-indexed at the next start"),
                Event::State { stream, from, to } => match (&from, &to) {
                    (_, RecordingState::Paused { reason }) => {
                        warn!(%stream, reason = %reason.logged,
                        "DVR recording paused; retrying by itself")
                    }
                    (_, RecordingState::Failing { error }) => warn!(%stream, error = %error.logged,
                        "DVR could not record a segment; trying again with the next one"),
                    (
                        RecordingState::Paused { .. } | RecordingState::Failing { .. },
                        RecordingState::Recording,
                    ) => {
                        info!(%stream, "DVR recording resumed")
                    }
                    _ => {}
                },
            }
        }
    }
}

/// One stream's DVR: a handle on its part of the root's machine. Dropping it closes
/// the stream (it stops being a candidate for making room and can be opened again).
pub struct Dvr {
    root: Arc<DvrRoot>,
    name: StreamName,
    config: DvrConfig,
    location: String,
}

impl Drop for Dvr {
    fn drop(&mut self) {
        self.root.machine().close(&self.name);
    }
}

impl Dvr {
    /// Opens the DVR of `name` in `store`, as the only stream of its root.
    pub async fn open(
        store: Arc<dyn DvrStore>,
        name: StreamName,
        config: DvrConfig,
    ) -> Result<Arc<Dvr>, DvrError> {
        DvrRoot::new(store).open(name, config).await
    }

    pub fn name(&self) -> &StreamName {
        &self.name
    }

    pub fn config(&self) -> &DvrConfig {
        &self.config
    }

    /// Where the stream's files are (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn root(&self) -> &Arc<DvrRoot> {
        &self.root
    }

    /// Reads this stream's state in the machine.
    fn with<R: Default>(&self, f: impl FnOnce(&Stream) -> R) -> R {
        self.root
            .machine()
            .stream(&self.name)
            .map(f)
            .unwrap_or_default()
    }

    /// Records one closed segment: writes it durably, indexes it, then applies
    /// retention. On a full disk, deletes the oldest segments under this DVR root
    /// until it fits; `Err(DvrError::Full)` if nothing is left (state `Paused`).
    /// Other errors leave nothing behind (state `Failing`).
    pub async fn record(&self, segment: &Segment) -> Result<RecordOutcome, DvrError> {
        let Some(enc) = Encoded::new(segment) else {
            return Ok(RecordOutcome::Skipped);
        };
        self.finish(
            self.root
                .run(|m| m.submit_record(self.name.clone(), enc))
                .await,
        )
    }

    /// Records a live segment at `now` (the recorder's clock): while paused, segments
    /// before the retry time are skipped; a full disk pauses for `retry`.
    pub async fn record_live(
        &self,
        segment: &Segment,
        now: std::time::Duration,
        retry: std::time::Duration,
    ) -> Result<RecordOutcome, DvrError> {
        let Some(enc) = Encoded::new(segment) else {
            return Ok(RecordOutcome::Skipped);
        };
        self.finish(
            self.root
                .run(|m| m.submit_live(self.name.clone(), enc, now, retry))
                .await,
        )
    }

    fn finish(
        &self,
        (outcome, last_err): (Option<Outcome>, Option<StoreError>),
    ) -> Result<RecordOutcome, DvrError> {
        match outcome {
            Some(Outcome::Recorded(Ok(o))) => Ok(o),
            Some(Outcome::Recorded(Err(RecordFailure::Full { location }))) => {
                Err(DvrError::Full { location })
            }
            Some(Outcome::Recorded(Err(RecordFailure::Store(e)))) => {
                Err(DvrError::Store(last_err.unwrap_or_else(|| {
                    StoreError::new(
                        "write segment in",
                        self.location.clone(),
                        io::Error::new(e.kind, e.reason.logged),
                    )
                })))
            }
            _ => Ok(RecordOutcome::Skipped),
        }
    }

    /// Recorded time, oldest first: (UTC start ms, duration ms). From memory.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.with(|s| s.index().ranges())
    }

    /// The stored segments overlapping `[from_ms, to_ms)` (UTC ms), oldest first.
    /// From memory, O(log n + k).
    pub fn segments(&self, from_ms: u64, to_ms: u64) -> Vec<StoredSegment> {
        self.with(|s| {
            s.index()
                .query(from_ms, to_ms)
                .into_iter()
                .map(|h| StoredSegment {
                    utc_start_ms: h.entry.utc_start_ms,
                    duration_ms: h.entry.duration_ms,
                    bytes: h.entry.bytes,
                    discontinuity: h.discontinuity,
                })
                .collect()
        })
    }

    fn state(&self) -> RecordingState {
        self.root
            .machine()
            .stream(&self.name)
            .map_or(RecordingState::Waiting, |s| s.state().clone())
    }

    /// From memory.
    pub fn status(&self) -> RecordingStatus {
        let (from_ms, ranges, segments, bytes) = self.with(|s| {
            let i = s.index();
            (
                i.first().map(|e| e.utc_start_ms),
                i.ranges(),
                i.len(),
                i.total_bytes(),
            )
        });
        RecordingStatus {
            from_ms,
            depth_secs: self.config.depth_secs.unwrap_or(0),
            limit_bytes: self.config.limit_bytes,
            ranges,
            segments,
            bytes,
            state: self.state(),
        }
    }

    /// The recording state and the archive's size, for the API. From memory.
    pub fn summary(&self) -> DvrSummary {
        let (from_ms, segments, bytes) = self.with(|s| {
            let i = s.index();
            (i.first().map(|e| e.utc_start_ms), i.len(), i.total_bytes())
        });
        DvrSummary {
            state: self.state(),
            from_ms,
            segments,
            bytes,
        }
    }

    /// What signaling announces. From memory.
    pub fn facts(&self) -> DvrFacts {
        DvrFacts {
            depth_secs: self.config.depth_secs.unwrap_or(0),
            ranges: self.ranges(),
        }
    }

    /// The stored bytes (canonical segment encoding) of the segment starting at
    /// `utc_start_ms`. The only query that reads the disk.
    pub async fn read(&self, utc_start_ms: u64) -> Result<Bytes, DvrError> {
        let not_found = || DvrError::NotFound {
            stream: self.name.clone(),
            utc_start_ms,
        };
        let Some(len) = self.with(|s| s.index().get(utc_start_ms).map(|e| e.bytes)) else {
            return Err(not_found());
        };
        let res = self
            .root
            .store
            .read_segment(&self.name, utc_start_ms, Some(len))
            .await;
        let damaged = |reason: String| {
            let path = format!("{}/{utc_start_ms}{}", self.location, store::SEGMENT_SUFFIX);
            // Out of the index: served as a gap from now on, and logged once. The
            // file stays for inspection; the next open checks it again.
            self.root.machine().handle_damaged(&self.name, utc_start_ms);
            warn!(stream = %self.name, %path, %reason,
                "DVR segment file is damaged; leaving it out (a gap in the archive)");
            DvrError::Damaged { path, reason }
        };
        let bytes = match res {
            Ok(b) => b,
            // Deleted by retention since the check (the index no longer holds it:
            // retention takes it out before the file), or lost from the disk
            // outside Tern: out of the index too, so it is a gap from now on and a
            // cache that fetches it again can keep it again.
            Err(e) if e.is_not_found() => {
                self.root.machine().handle_damaged(&self.name, utc_start_ms);
                return Err(not_found());
            }
            Err(e) if e.source.kind() == std::io::ErrorKind::InvalidData => {
                return Err(damaged(e.source.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        // The digest is checked on every read: damaged bytes are never served.
        if let Err(e) = segment_codec::verify(&bytes) {
            return Err(damaged(e.to_string()));
        }
        let utc = segment_codec::header_utc_start(&bytes);
        if utc != Some(utc_start_ms) {
            return Err(damaged(format!(
                "it holds the segment starting at {utc:?}, not {utc_start_ms}"
            )));
        }
        Ok(bytes)
    }
}
