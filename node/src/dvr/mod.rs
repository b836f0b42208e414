//! The DVR (docs/design.md §6): records a stream's closed segments to a [`DvrStore`] and
//! answers archive queries from memory.
//!
//! Owns: [`Dvr`] (one stream's archive: open and reconcile, record, retention,
//! queries, `read`), [`DvrRoot`] (the streams recording under one `dvr PATH`, which
//! share a disk and so make room for each other), [`DvrStores`] (which store a DVR
//! path gets: the filesystem, or memory in the simulation), and the recorder task
//! ([`recorder`]). Must not: parse or mux media (the segments are stored in their
//! canonical encoding, unchanged), or serve HTTP.
//!
//! # Crash safety
//!
//! docs/dvr.md argues this in full, step by step, and `crash_tests.rs` checks it on
//! the real filesystem store after every prefix of its filesystem calls. In short:
//!
//! Each stream has a directory of segment files, one per segment, named by the
//! segment's UTC start, and an index journal (`tern_core::dvr::journal`). The index
//! lives in memory ([`tern_core::dvr::Index`]); the journal is how it survives a
//! restart, and the segment files are the truth the journal is checked against.
//!
//! A segment is recorded in two steps. First its file is written whole under a
//! temporary name, fsynced, renamed to `<utc_start_ms>.tseg`, and the directory is
//! fsynced: from then on the file is durable under its final name, and at no moment
//! did a partial file carry that name. Only then is the segment added to the
//! in-memory index (so queries never list a segment that is not on disk) and an
//! `Add` record appended to the journal and fsynced. Deleting (retention, or making
//! room on a full disk) goes the other way: the entry leaves the index, the file is
//! deleted, then a `Remove` record is appended.
//!
//! Consider a crash (power cut, `kill -9`) at any point:
//! - during the first step: a temporary file or nothing is left; the temporary file
//!   is removed at the next open. The segment being written is lost — this is the
//!   bound: **a crash loses at most the segment being written** (one
//!   `segment_duration`, 2 s by default, plus whatever the recorder had queued; see
//!   `recorder`).
//! - between the rename and the journal record: the file is durable but the
//!   journal does not know it. Open lists the directory, finds the stray file,
//!   decodes it, and indexes it again. Nothing is lost.
//! - during a journal append: the journal ends in a torn record. Its records are
//!   length-prefixed and CRC-checked, so replay stops at the tear and ignores it;
//!   the next append cuts the file back to the last whole record first. The change
//!   the torn record described is recovered from the files as above.
//! - between deleting a file and its `Remove` record: the journal names a file that
//!   is gone; open drops the entry.
//! - during a journal rewrite (compaction): it is atomic (temporary file, fsync,
//!   rename, directory fsync), so the old or the new journal is found.
//!
//! At open, every journal entry is also checked against the directory listing (the
//! file exists and has the recorded size) and the newest [`VERIFY_TAIL`] entries are
//! decoded with `segment_codec::decode`; a file that fails is deleted. Older files
//! are not read at open: with atomic renames a file is whole or absent, and reading
//! a month of archive at every start would take minutes. The journal is rewritten
//! whenever reconciliation changed anything.
//!
//! Every read ([`Dvr::read`]) checks the file before its bytes go anywhere: its size
//! against the index (from metadata, without reading it; sparse and oversize files
//! are refused the same way) and its BLAKE3 digest (segment encoding version 2). A
//! file that fails is a gap: it leaves the in-memory index, a warning names the file,
//! and archive ranges skip it. Version 1 files (no digest) are still read.
//!
//! Errors never corrupt what is stored: a failed segment write leaves no file under
//! the final name and no index entry; a failed journal append leaves at most a tail
//! the next append cuts off (and open recovers from the files). A full disk makes
//! [`Dvr::record`] delete the oldest segment under the same DVR root — of whichever
//! stream recording there has the oldest — and try again, logging each deletion;
//! only when nothing is left does it give up with [`DvrError::Full`], and the
//! recorder pauses and retries by itself every few seconds.

pub mod recorder;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tern_core::cluster::message::DvrFacts;
use tern_core::config::DvrConfig;
use tern_core::dvr::journal::{self, Record, Replay, Tail};
use tern_core::dvr::{Index, IndexEntry, DEFAULT_GAP_TOLERANCE_MS};
use tern_core::segment_codec;
use tern_core::{Segment, StreamName};
use tracing::{info, warn};

pub use store::{DvrStore, Fault, FsStore, MemStore, SegmentFile, StoreError};

/// The newest entries decoded at open (the only ones a crash can have touched).
pub const VERIFY_TAIL: usize = 3;
/// Most segments deleted to make room for one new segment on a full disk before
/// `record` gives up for now (pauses); the next retry deletes more. Bounds the work
/// of one write when deleting does not free space (files held open elsewhere).
pub const MAX_EVICTIONS_PER_WRITE: usize = 256;
/// Room kept free beyond a segment's size when the store knows its free space: the
/// journal records that follow.
pub const JOURNAL_HEADROOM: u64 = 4096;

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

/// Why the DVR is not recording, twice: in full for the log (paths, the OS's text)
/// and without paths or OS text for anyone who asks the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub logged: String,
    pub shown: String,
}

impl Reason {
    pub fn of(e: &DvrError) -> Self {
        Reason {
            logged: e.to_string(),
            shown: e.public_reason(),
        }
    }
}

impl DvrError {
    /// What an unauthenticated client may read of this error: its kind, never a
    /// path or the OS's own text (those are in the log).
    pub fn public_reason(&self) -> String {
        match self {
            DvrError::Store(e) => format!(
                "cannot {} a DVR file: {}{}; this node's log names the file",
                e.op.split(' ').next().unwrap_or("write"),
                e.source.kind(),
                store::hint(e.source.kind())
            ),
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

/// What [`Dvr::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    /// Already stored (same UTC start), or empty: nothing written.
    Skipped,
}

struct State {
    index: Index,
    rec: RecordingState,
    /// Length of the journal's valid prefix; `None`: missing or unknown, the next
    /// change rewrites it.
    journal_len: Option<u64>,
    journal_records: usize,
    /// After a failed compaction, the journal's record count at which it is tried
    /// again (0: whenever it is due).
    compaction_retry_at: usize,
    /// Segments being written now (by UTC start): a second `record` of one of them
    /// (two viewers filling a cache with the same segment) skips it rather than
    /// writing the same file at the same time.
    writing: BTreeSet<u64>,
}

/// Journal records appended after a failed compaction before it is tried again.
const COMPACTION_RETRY_RECORDS: usize = 256;

/// Marks a segment as being written for as long as it lives.
struct Writing<'a> {
    dvr: &'a Dvr,
    utc: u64,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.dvr.lock().writing.remove(&self.utc);
    }
}

/// The streams recording under one DVR root (`dvr PATH`): one store, one disk.
pub struct DvrRoot {
    store: Arc<dyn DvrStore>,
    members: Mutex<Vec<Weak<Dvr>>>,
}

impl DvrRoot {
    pub fn new(store: Arc<dyn DvrStore>) -> Arc<Self> {
        Arc::new(DvrRoot {
            store,
            members: Mutex::new(Vec::new()),
        })
    }

    pub fn store(&self) -> &Arc<dyn DvrStore> {
        &self.store
    }

    fn members(&self) -> MutexGuard<'_, Vec<Weak<Dvr>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_members(&self) -> Vec<Arc<Dvr>> {
        let mut m = self.members();
        m.retain(|w| w.strong_count() > 0);
        m.iter().filter_map(Weak::upgrade).collect()
    }

    fn already_open(&self, name: &StreamName) -> Result<(), DvrError> {
        if self.live_members().iter().any(|d| d.name == *name) {
            return Err(DvrError::AlreadyOpen {
                stream: name.clone(),
                location: self.store.location(name),
            });
        }
        Ok(())
    }

    /// Opens the DVR of stream `name` under this root: replays its journal and
    /// reconciles it with the files (see the module doc).
    pub async fn open(
        self: &Arc<Self>,
        name: StreamName,
        config: DvrConfig,
    ) -> Result<Arc<Dvr>, DvrError> {
        self.already_open(&name)?;
        let store = &self.store;
        let location = store.location(&name);
        let journal_path = format!("{location}/{}", store::JOURNAL_FILE);
        store.prepare(&name).await?;
        let raw = store.read_journal(&name).await?;
        let replay = match &raw {
            Some(b) => journal::replay(b).map_err(|e| DvrError::Journal {
                path: journal_path.clone(),
                reason: e.to_string(),
            })?,
            None => Replay {
                entries: Vec::new(),
                records: 0,
                valid_len: 0,
                tail: Tail::Clean,
            },
        };
        if let Tail::Torn { at, reason } = replay.tail {
            warn!(path = %journal_path, at, reason,
                "the DVR index journal ends in a torn record (a crash or a failed write); ignoring it");
        }
        let files = store.list_segments(&name).await?;
        let mut on_disk: BTreeMap<u64, u64> =
            files.iter().map(|f| (f.utc_start_ms, f.bytes)).collect();
        let mut entries: BTreeMap<u64, IndexEntry> = replay
            .entries
            .iter()
            .map(|e| (e.utc_start_ms, *e))
            .collect();
        let mut changed = false;

        // Entries whose file is gone, or is not the file that was indexed.
        entries.retain(|utc, e| match on_disk.get(utc) {
            Some(len) if *len == e.bytes => true,
            Some(len) => {
                warn!(path = %location, segment = utc, expected = e.bytes, found = len,
                    "DVR segment file has another size than indexed; checking it again");
                changed = true;
                false
            }
            None => {
                warn!(path = %location, segment = utc,
                    "DVR segment file is missing; dropping it from the index");
                changed = true;
                false
            }
        });

        // The newest entries are decoded: they are the ones a crash could touch.
        let newest: Vec<(u64, u64)> = entries
            .values()
            .rev()
            .take(VERIFY_TAIL)
            .map(|e| (e.utc_start_ms, e.bytes))
            .collect();
        for (utc, len) in newest {
            match store.read_segment(&name, utc, Some(len)).await {
                Ok(b) => {
                    if let Err(why) = check_segment(b, utc) {
                        warn!(path = %location, segment = utc, %why,
                            "DVR segment file is damaged; deleting it");
                        entries.remove(&utc);
                        on_disk.remove(&utc);
                        store.delete_segment(&name, utc).await?;
                        changed = true;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read a DVR segment file; leaving it out of the index");
                    entries.remove(&utc);
                    on_disk.remove(&utc);
                    changed = true;
                }
            }
        }

        // Files the journal does not know: written just before a crash (or a failed
        // journal append). Re-indexed if whole, deleted if not.
        for (&utc, &len) in &on_disk {
            if entries.contains_key(&utc) {
                continue;
            }
            changed = true;
            let bytes = match store.read_segment(&name, utc, Some(len)).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot read a DVR segment file; leaving it out of the index");
                    continue;
                }
            };
            match check_segment(bytes, utc) {
                Ok(seg) => {
                    info!(path = %location, segment = utc, "re-indexed a DVR segment file the index did not list");
                    entries.insert(utc, IndexEntry::from_segment(&seg, len));
                }
                Err(why) => {
                    warn!(path = %location, segment = utc, %why,
                        "DVR segment file the index did not list is damaged; deleting it");
                    store.delete_segment(&name, utc).await?;
                }
            }
        }

        let index = Index::from_entries(entries.into_values(), DEFAULT_GAP_TOLERANCE_MS);
        let journal_len = match raw {
            Some(_) if replay.valid_len >= journal::HEADER_LEN => Some(replay.valid_len as u64),
            _ => None,
        };
        let rewrite = changed
            || (journal_len.is_none() && !index.is_empty())
            || journal::needs_compaction(replay.records, index.len());
        let dvr = Arc::new(Dvr {
            root: self.clone(),
            name: name.clone(),
            config,
            location,
            state: Mutex::new(State {
                index,
                rec: RecordingState::Waiting,
                journal_len,
                journal_records: replay.records,
                compaction_retry_at: 0,
                writing: BTreeSet::new(),
            }),
            writer: tokio::sync::Mutex::new(()),
        });
        if rewrite {
            let _w = dvr.writer.lock().await;
            dvr.rewrite_journal().await;
        }
        {
            self.already_open(&name)?;
            self.members().push(Arc::downgrade(&dvr));
        }
        let st = dvr.status();
        info!(stream = %name, path = %dvr.location, segments = st.segments, bytes = st.bytes,
            ranges = st.ranges.len(), "DVR opened");
        Ok(dvr)
    }

    /// Deletes the oldest segment under this root (of whichever stream has it);
    /// `None` if no stream here has any.
    async fn evict_oldest(&self) -> Result<Option<(StreamName, IndexEntry)>, DvrError> {
        // A few rounds in case another task empties the chosen stream meanwhile.
        for _ in 0..4 {
            let members = self.live_members();
            let victim = members
                .iter()
                .filter_map(|d| d.oldest().map(|e| (e.utc_start_ms, d)))
                .min_by_key(|(utc, _)| *utc);
            let Some((_, dvr)) = victim else {
                return Ok(None);
            };
            if let Some(e) = dvr.evict_oldest().await? {
                return Ok(Some((dvr.name.clone(), e)));
            }
        }
        Ok(None)
    }
}

/// Decodes a stored segment and checks it is the one its file name says.
fn check_segment(bytes: Bytes, utc: u64) -> Result<Segment, String> {
    let seg = segment_codec::decode(bytes).map_err(|e| e.to_string())?;
    if seg.utc_start_ms != utc {
        return Err(format!(
            "it holds the segment starting at {}, not {utc}",
            seg.utc_start_ms
        ));
    }
    Ok(seg)
}

/// One stream's DVR.
pub struct Dvr {
    root: Arc<DvrRoot>,
    name: StreamName,
    config: DvrConfig,
    location: String,
    state: Mutex<State>,
    /// Serialises changes (index + journal) between the recorder, retention and
    /// other streams making room on the same root. Never held while taking another
    /// DVR's.
    writer: tokio::sync::Mutex<()>,
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn oldest(&self) -> Option<IndexEntry> {
        self.lock().index.first().copied()
    }

    fn set_state(&self, new: RecordingState) {
        let old = std::mem::replace(&mut self.lock().rec, new.clone());
        if old == new {
            return;
        }
        match (&old, &new) {
            (_, RecordingState::Paused { reason }) => {
                warn!(stream = %self.name, reason = %reason.logged, "DVR recording paused; retrying by itself");
            }
            (_, RecordingState::Failing { error }) => {
                warn!(stream = %self.name, error = %error.logged,
                    "DVR could not record a segment; trying again with the next one");
            }
            (
                RecordingState::Paused { .. } | RecordingState::Failing { .. },
                RecordingState::Recording,
            ) => {
                info!(stream = %self.name, "DVR recording resumed");
            }
            _ => {}
        }
    }

    /// Records one closed segment: writes it durably, indexes it, then applies
    /// retention. On a full disk, deletes the oldest segments under this DVR root
    /// until it fits; `Err(DvrError::Full)` if nothing is left (state `Paused`).
    /// Other errors leave nothing behind (state `Failing`).
    pub async fn record(&self, segment: &Segment) -> Result<RecordOutcome, DvrError> {
        let utc = segment.utc_start_ms;
        let _writing = {
            let mut st = self.lock();
            if segment.frames.is_empty() || st.index.contains(utc) || !st.writing.insert(utc) {
                return Ok(RecordOutcome::Skipped);
            }
            Writing { dvr: self, utc }
        };
        let bytes = segment_codec::encode(segment);
        let entry = IndexEntry::from_segment(segment, bytes.len() as u64);
        let store = self.root.store.clone();
        let mut evicted = 0;
        loop {
            let fits = match store.free_space().await {
                Ok(Some(free)) => free >= entry.bytes.saturating_add(JOURNAL_HEADROOM),
                _ => true,
            };
            let res = if fits {
                store.write_segment(&self.name, utc, bytes.clone()).await
            } else {
                Err(StoreError::new(
                    "write segment in",
                    self.location.clone(),
                    std::io::Error::new(std::io::ErrorKind::StorageFull, "not enough free space"),
                ))
            };
            match res {
                Ok(()) => break,
                Err(e) if e.is_full() => {
                    let victim = if evicted < MAX_EVICTIONS_PER_WRITE {
                        match self.root.evict_oldest().await {
                            Ok(v) => v,
                            Err(err) => {
                                self.set_state(RecordingState::Failing {
                                    error: Reason::of(&err),
                                });
                                return Err(err);
                            }
                        }
                    } else {
                        None
                    };
                    let Some((stream, old)) = victim else {
                        let err = DvrError::Full {
                            location: self.location.clone(),
                        };
                        self.set_state(RecordingState::Paused {
                            reason: Reason::of(&err),
                        });
                        return Err(err);
                    };
                    evicted += 1;
                    warn!(stream = %self.name, deleted_stream = %stream, deleted_segment = old.utc_start_ms,
                        bytes = old.bytes, path = %self.location,
                        "disk full: deleted the oldest DVR segment under this DVR root to make room");
                }
                Err(e) => {
                    let err = DvrError::from(e);
                    self.set_state(RecordingState::Failing {
                        error: Reason::of(&err),
                    });
                    return Err(err);
                }
            }
        }
        {
            let _w = self.writer.lock().await;
            self.lock().index.insert(entry);
            self.log_change(Record::Add(entry)).await;
            self.apply_retention(entry.end_ms()).await;
        }
        self.set_state(RecordingState::Recording);
        Ok(RecordOutcome::Stored)
    }

    /// Deletes what retention says must go. Called with the writer lock held.
    async fn apply_retention(&self, now_utc_ms: u64) {
        let n = self.lock().index.retention(
            now_utc_ms,
            self.config.depth_secs,
            self.config.limit_bytes,
        );
        for _ in 0..n {
            if let Err(e) = self.delete_oldest_locked().await {
                warn!(stream = %self.name, error = %e,
                    "DVR retention could not delete a segment; trying again after the next one");
                break;
            }
        }
    }

    /// Deletes the oldest segment (file, then journal). Writer lock held.
    async fn delete_oldest_locked(&self) -> Result<Option<IndexEntry>, DvrError> {
        let Some(e) = self.lock().index.pop_oldest() else {
            return Ok(None);
        };
        if let Err(err) = self
            .root
            .store
            .delete_segment(&self.name, e.utc_start_ms)
            .await
        {
            // Still there and whole: it stays indexed.
            self.lock().index.insert(e);
            return Err(err.into());
        }
        self.log_change(Record::Remove {
            utc_start_ms: e.utc_start_ms,
        })
        .await;
        Ok(Some(e))
    }

    async fn evict_oldest(&self) -> Result<Option<IndexEntry>, DvrError> {
        let _w = self.writer.lock().await;
        self.delete_oldest_locked().await
    }

    /// Journals one change already applied to the index. Writer lock held. A
    /// failure is logged and otherwise ignored: open recovers the change from the
    /// files.
    async fn log_change(&self, rec: Record) {
        let (journal_len, compact) = {
            let st = self.lock();
            let compact = journal::needs_compaction(st.journal_records + 1, st.index.len())
                && st.journal_records >= st.compaction_retry_at;
            (st.journal_len, compact)
        };
        // The index already holds the change, so a snapshot records it too.
        let at = match journal_len {
            None => {
                self.rewrite_journal().await;
                return;
            }
            Some(_) if compact && self.rewrite_journal().await => return,
            Some(at) => at,
        };
        // Appending works even when the snapshot did not (a full disk has room for a
        // record more often than for a snapshot of the whole index); the snapshot is
        // tried again after another `COMPACTION_RETRY_RECORDS` records.
        if compact {
            let mut st = self.lock();
            st.compaction_retry_at = st.journal_records + COMPACTION_RETRY_RECORDS;
        }
        let bytes = Bytes::from(journal::encode_record(&rec));
        let n = bytes.len() as u64;
        match self.root.store.append_journal(&self.name, at, bytes).await {
            Ok(()) => {
                let mut st = self.lock();
                st.journal_len = Some(at + n);
                st.journal_records += 1;
            }
            Err(e) => {
                if matches!(
                    e.source.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::NotFound
                ) {
                    // Not the file this node wrote: rewrite it at the next change.
                    self.lock().journal_len = None;
                }
                warn!(stream = %self.name, error = %e,
                    "cannot update the DVR index journal; the segment files are re-indexed at the next start");
            }
        }
    }

    /// Rewrites the journal from the index; whether it worked. Writer lock held.
    async fn rewrite_journal(&self) -> bool {
        let (bytes, records) = {
            let st = self.lock();
            (
                Bytes::from(journal::snapshot(st.index.iter())),
                st.index.len(),
            )
        };
        let n = bytes.len() as u64;
        match self.root.store.rewrite_journal(&self.name, bytes).await {
            Ok(()) => {
                let mut st = self.lock();
                st.journal_len = Some(n);
                st.journal_records = records;
                st.compaction_retry_at = 0;
                true
            }
            Err(e) => {
                warn!(stream = %self.name, error = %e,
                    "cannot rewrite the DVR index journal; the segment files are re-indexed at the next start");
                false
            }
        }
    }

    /// Recorded time, oldest first: (UTC start ms, duration ms). From memory.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.lock().index.ranges()
    }

    /// The stored segments overlapping `[from_ms, to_ms)` (UTC ms), oldest first.
    /// From memory, O(log n + k).
    pub fn segments(&self, from_ms: u64, to_ms: u64) -> Vec<StoredSegment> {
        self.lock()
            .index
            .query(from_ms, to_ms)
            .into_iter()
            .map(|h| StoredSegment {
                utc_start_ms: h.entry.utc_start_ms,
                duration_ms: h.entry.duration_ms,
                bytes: h.entry.bytes,
                discontinuity: h.discontinuity,
            })
            .collect()
    }

    /// From memory.
    pub fn status(&self) -> RecordingStatus {
        let st = self.lock();
        RecordingStatus {
            from_ms: st.index.first().map(|e| e.utc_start_ms),
            depth_secs: self.config.depth_secs.unwrap_or(0),
            limit_bytes: self.config.limit_bytes,
            ranges: st.index.ranges(),
            segments: st.index.len(),
            bytes: st.index.total_bytes(),
            state: st.rec.clone(),
        }
    }

    /// The recording state and the archive's size, for the API. From memory.
    pub fn summary(&self) -> DvrSummary {
        let st = self.lock();
        DvrSummary {
            state: st.rec.clone(),
            from_ms: st.index.first().map(|e| e.utc_start_ms),
            segments: st.index.len(),
            bytes: st.index.total_bytes(),
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
        let Some(len) = self.lock().index.get(utc_start_ms).map(|e| e.bytes) else {
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
            self.lock().index.remove(utc_start_ms);
            warn!(stream = %self.name, %path, %reason,
                "DVR segment file is damaged; leaving it out (a gap in the archive)");
            DvrError::Damaged { path, reason }
        };
        let bytes = match res {
            Ok(b) => b,
            // Deleted by retention since the check.
            Err(e) if e.is_not_found() => return Err(not_found()),
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

/// In-memory disks of a simulated node, by DVR path. Kept by the simulation across
/// restarts of the node, so that a restarted node finds what it recorded (minus
/// what [`MemDisks::crash`] drops).
#[derive(Default)]
pub struct MemDisks {
    disks: Mutex<BTreeMap<String, Arc<MemStore>>>,
}

impl MemDisks {
    pub fn new() -> Arc<Self> {
        Arc::new(MemDisks::default())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<MemStore>>> {
        self.disks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disk of `path` (made, of unlimited capacity, on first use).
    pub fn disk(&self, path: &str) -> Arc<MemStore> {
        self.lock()
            .entry(path.to_owned())
            .or_insert_with(|| Arc::new(MemStore::new(path)))
            .clone()
    }

    /// Every disk made so far, by path.
    pub fn disks(&self) -> Vec<(String, Arc<MemStore>)> {
        self.lock()
            .iter()
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect()
    }

    /// A power cut on every disk.
    pub fn crash(&self) {
        for (_, d) in self.disks() {
            d.crash();
        }
    }
}

/// Which store a DVR path gets.
#[derive(Clone, Default)]
pub enum DvrStores {
    /// Directories on the real filesystem (the binary).
    #[default]
    Fs,
    /// In-memory disks (the simulation: no real files, no blocking threads).
    Memory(Arc<MemDisks>),
}

impl DvrStores {
    pub fn store_for(&self, path: &str) -> Arc<dyn DvrStore> {
        match self {
            DvrStores::Fs => Arc::new(FsStore::new(path)),
            DvrStores::Memory(d) => d.disk(path),
        }
    }
}

/// Figures of [`bench_index`].
#[derive(Clone, Debug)]
pub struct IndexBench {
    pub entries: usize,
    pub journal_bytes: usize,
    /// Mean time of one window query (three segments) on the index.
    pub lookup: Duration,
    /// Time of one `ranges()` call.
    pub ranges: Duration,
    /// Time to replay a snapshot journal of `entries` entries from bytes into an
    /// index (what open does before reconciling).
    pub load: Duration,
}

/// Builds an index of `n` back-to-back 2 s segments (with a gap every 10 000) and
/// times queries and a journal load. No disk. For `tern bench` and similar programs:
/// figures, not assertions.
pub fn bench_index(n: usize) -> IndexBench {
    use tern_core::Position;
    use tokio::time::Instant;

    let base = 1_700_000_000_000u64;
    let start_of = |i: u64| base + i * 2000 + (i / 10_000) * 60_000;
    let entries = (0..n as u64).map(|i| IndexEntry {
        utc_start_ms: start_of(i),
        duration_ms: 2000,
        bytes: 1_000_000,
        first_pos: Position {
            epoch: 1,
            seq: i * 75,
        },
        last_pos: Position {
            epoch: 1,
            seq: i * 75 + 74,
        },
    });
    let index = Index::from_entries(entries, DEFAULT_GAP_TOLERANCE_MS);
    let journal_bytes = journal::snapshot(index.iter());

    const QUERIES: u64 = 10_000;
    let mut hits = 0usize;
    let t = Instant::now();
    for k in 0..QUERIES {
        let i = (k * 7919) % (n.max(1) as u64);
        let s = start_of(i);
        hits += index.query(s, s + 6000).len();
    }
    let lookup = t.elapsed() / QUERIES as u32;

    let t = Instant::now();
    let ranges = index.ranges();
    let ranges_time = t.elapsed();

    let t = Instant::now();
    let loaded = journal::replay(&journal_bytes)
        .map(|r| Index::from_entries(r.entries, DEFAULT_GAP_TOLERANCE_MS).len())
        .unwrap_or(0);
    let load = t.elapsed();
    // Keep the work observable.
    std::hint::black_box((hits, ranges.len(), loaded));

    IndexBench {
        entries: n,
        journal_bytes: journal_bytes.len(),
        lookup,
        ranges: ranges_time,
        load,
    }
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
