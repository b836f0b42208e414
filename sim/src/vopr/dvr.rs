//! The DVR in the pure simulator: a node's DVR root run by core's `DvrMachine` over an
//! in-memory disk (`MemStore`, run synchronously through `MemStore::run_op`: the
//! same page-cache model and faults as in the turmoil simulation — write errors with
//! half the bytes landed, failed fsyncs and renames, a full disk, and a power cut that
//! loses every name and byte not yet synced). Three streams record under the one
//! root ([`STREAMS`]): the live stream with depth and size limits small enough that
//! retention runs at every segment, one with no limit of its own (only the disk's
//! size, [`ROOT_BYTES`], bounds it), and one that records in bursts and then sits
//! still, so eviction on the full disk runs all the time, across streams. Faults and
//! crashes come from its own random stream, so adding the DVR does not change what
//! the network of a seed does.
//!
//! Oracles, checked as it runs (what `DvrMachine` promises):
//! - retention (a delete after the segment's write succeeded) takes the recording
//!   stream's own oldest segment, never the segment just stored, and never the
//!   stream's newest;
//! - eviction (a delete to make room before the write) takes the oldest segment
//!   under the whole root, of whichever stream holds it;
//! - a journal record never names a segment whose file is not durable (name synced,
//!   data synced, of the recorded size) at the moment the record is written;
//! - after a crash and reopen: open succeeds, every acknowledged segment (its write
//!   answered `Ok`) that the machine had not deleted is indexed (the crash loses at
//!   most the unacknowledged one), every indexed segment reads back byte for byte as
//!   it was recorded, and the journal, the files and the index agree — unless open
//!   could not rewrite the journal (the disk was full at reopen: the journal is
//!   advisory), when the journal must still not name an existing file the index
//!   lacks.
//!
//! [`crash_every_prefix`] is the exhaustive check: it records a run with eviction and
//! compaction, then crashes after every prefix of its store operations.
//!
//! Owns: the simulated DVR, its faults and oracles. Must not: decide anything the
//! machine decides, or read a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::dvr::journal::{self, Record};
use tern_core::dvr::machine::{
    DvrMachine, Encoded, Event, OpenFailure, Outcome, RecordOutcome, JOURNAL_HEADROOM, PAUSE_RETRY,
};
use tern_core::dvr::op::{Done, Op, OpError, Reason};
use tern_core::{Frame, MediaInfo, Position, Segment, StreamName, TrackInfo};
use tern_node::dvr::{Fault, MemStore, StoreError};

/// Retention depth of the simulated live stream: a handful of 2 s segments.
pub const DEPTH_SECS: u64 = 12;
/// The disk under the simulated DVR root (about 35 of the live stream's 2 s
/// segments): the stream without limits of its own fills it, so eviction runs.
pub const ROOT_BYTES: u64 = 250_000;

/// A stream recording under the root: its name's suffix, depth, size limit, the
/// shift of its UTC starts against the live stream's (another camera's clock), and
/// whether it records in bursts.
pub struct StreamSpec {
    pub suffix: &'static str,
    pub depth_secs: Option<u64>,
    /// `true`: the size limit given to [`SimDvr::new`]; `false`: none.
    pub limited: bool,
    pub shift_ms: u64,
    pub bursts: bool,
}

/// The streams under the simulated root; the first is the live stream.
pub const STREAMS: [StreamSpec; 3] = [
    StreamSpec {
        suffix: "main",
        depth_secs: Some(DEPTH_SECS),
        limited: true,
        shift_ms: 0,
        bursts: false,
    },
    StreamSpec {
        suffix: "side",
        depth_secs: None,
        limited: false,
        shift_ms: 500,
        bursts: false,
    },
    StreamSpec {
        suffix: "burst",
        depth_secs: Some(60),
        limited: false,
        shift_ms: 1100,
        bursts: true,
    },
];
/// One fault (an I/O error, a full disk for a while, or a crash) per this many
/// recorded segments on average.
pub const FAULT_EVERY_SEGMENTS: u32 = 8;

/// What the simulated DVR did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DvrCounts {
    pub recorded: u64,
    pub stored: u64,
    pub deleted: u64,
    /// Deletes to make room on a full disk, and those of them that took another
    /// stream's segment than the one recording.
    pub evicted: u64,
    pub evicted_other: u64,
    pub io_faults: u64,
    pub full_disks: u64,
    pub paused: u64,
    pub crashes: u64,
    pub crashes_mid_job: u64,
    pub journal_rewrites: u64,
    /// Reopens after a crash whose journal rewrite failed (the disk was full).
    pub reopen_rewrite_failed: u64,
}

impl DvrCounts {
    pub fn add(&mut self, o: &DvrCounts) {
        let DvrCounts {
            recorded,
            stored,
            deleted,
            evicted,
            evicted_other,
            io_faults,
            full_disks,
            paused,
            crashes,
            crashes_mid_job,
            journal_rewrites,
            reopen_rewrite_failed,
        } = o;
        self.recorded += recorded;
        self.stored += stored;
        self.deleted += deleted;
        self.evicted += evicted;
        self.evicted_other += evicted_other;
        self.io_faults += io_faults;
        self.full_disks += full_disks;
        self.paused += paused;
        self.crashes += crashes;
        self.crashes_mid_job += crashes_mid_job;
        self.journal_rewrites += journal_rewrites;
        self.reopen_rewrite_failed += reopen_rewrite_failed;
    }
}

fn op_error(e: &StoreError) -> OpError {
    OpError {
        kind: e.source.kind(),
        reason: Reason {
            logged: e.to_string(),
            shown: String::new(),
        },
    }
}

/// The path of a segment file in `MemStore`.
fn segment_path(stream: &StreamName, utc: u64) -> String {
    format!("{stream}/{utc}.tseg")
}

/// One recording stream of the root.
struct SimStream {
    name: StreamName,
    depth_secs: Option<u64>,
    limit_bytes: Option<u64>,
    shift_ms: u64,
    bursts: bool,
    /// A bursty stream: recording now, and segments left before it switches.
    on: bool,
    left: u32,
    /// Segments whose write answered `Ok` and that the machine has not deleted.
    acked: BTreeMap<u64, u64>,
    /// Every segment written (its write answered `Ok`): UTC start → its encoding.
    written: BTreeMap<u64, Bytes>,
}

/// A DVR root of several streams on a simulated disk, and what the oracles remember.
pub struct SimDvr {
    pub store: MemStore,
    machine: DvrMachine,
    streams: Vec<SimStream>,
    /// Streams whose journal rewrite failed since the last crash (at reopen: a
    /// full disk).
    rewrite_failed: BTreeSet<StreamName>,
    rng: ChaCha8Rng,
    /// Segments left while the disk is full.
    full_for: u32,
    /// Whether it injects faults and crashes (not in a calm run).
    faults: bool,
    pub counts: DvrCounts,
}

impl SimDvr {
    /// Opens an empty root holding [`STREAMS`] under `prefix/` (the live one with
    /// `limit_bytes`); `seed` drives its faults (if `faults`).
    pub fn new(seed: u64, prefix: &str, limit_bytes: Option<u64>, faults: bool) -> Self {
        let streams = STREAMS
            .iter()
            .map(|spec| SimStream {
                name: StreamName::new(&format!("{prefix}/{}", spec.suffix))
                    .unwrap_or_else(|_| unreachable!()),
                depth_secs: spec.depth_secs,
                limit_bytes: if spec.limited { limit_bytes } else { None },
                shift_ms: spec.shift_ms,
                bursts: spec.bursts,
                on: true,
                left: 4,
                acked: BTreeMap::new(),
                written: BTreeMap::new(),
            })
            .collect();
        let mut d = SimDvr {
            store: MemStore::with_capacity("/sim-dvr", ROOT_BYTES),
            machine: DvrMachine::new(),
            streams,
            rewrite_failed: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xd1b5_4a32_d192_ed03),
            full_for: 0,
            faults,
            counts: DvrCounts::default(),
        };
        let mut v = Vec::new();
        d.open(&mut v);
        d
    }

    /// Opens every stream of the root; `false` if one failed.
    fn open(&mut self, v: &mut Vec<String>) -> bool {
        let mut ok = true;
        for k in 0..self.streams.len() {
            let st = &self.streams[k];
            let id = self.machine.submit_open(
                st.name.clone(),
                st.depth_secs,
                st.limit_bytes,
                "sim".into(),
            );
            self.drive(None, None, v);
            match self.machine.take_outcome(id) {
                Some(Outcome::Opened(Ok(()))) => {}
                o => {
                    v.push(format!(
                        "DVR open of {} failed: {o:?}",
                        self.streams[k].name
                    ));
                    ok = false;
                }
            }
        }
        ok
    }

    fn stream_mut(&mut self, name: &StreamName) -> Option<&mut SimStream> {
        self.streams.iter_mut().find(|s| s.name == *name)
    }

    /// Runs the machine's ops on the disk, checking each; stops after `limit` ops
    /// (a crash during the job) if given. `stored`: the stream and UTC start of the
    /// segment this job is recording.
    fn drive(
        &mut self,
        limit: Option<usize>,
        stored: Option<(&StreamName, u64)>,
        v: &mut Vec<String>,
    ) -> bool {
        let mut n = 0;
        let mut written = false;
        while let Some(op) = self.machine.poll_op() {
            if limit.is_some_and(|l| n >= l) {
                self.machine.handle_abandoned();
                return false;
            }
            n += 1;
            if let Op::Delete {
                stream,
                utc_start_ms,
            } = &op
            {
                if written {
                    self.check_retention(stream, *utc_start_ms, stored, v);
                } else {
                    self.check_eviction(stream, *utc_start_ms, stored, v);
                }
            }
            let res = self.store.run_op(&op);
            match (&op, &res) {
                (
                    Op::Write {
                        stream,
                        utc_start_ms,
                        bytes,
                    },
                    Ok(_),
                ) => {
                    if let Some(st) = self.stream_mut(stream) {
                        st.acked.insert(*utc_start_ms, bytes.len() as u64);
                        // Keyed by UTC start, as the archive is: after a burst (a
                        // stalled source catching up) two segments can share one.
                        st.written.insert(*utc_start_ms, bytes.clone());
                    }
                    written = true;
                }
                (
                    Op::Delete {
                        stream,
                        utc_start_ms,
                    },
                    Ok(_),
                ) => {
                    if let Some(st) = self.stream_mut(stream) {
                        st.acked.remove(utc_start_ms);
                    }
                    self.counts.deleted += 1;
                    if !written {
                        self.counts.evicted += 1;
                        if stored.is_some_and(|(s, _)| s != stream) {
                            self.counts.evicted_other += 1;
                        }
                    }
                }
                (Op::AppendJournal { stream, bytes, .. }, Ok(_)) => {
                    self.check_journal(stream, bytes, true, v)
                }
                (Op::RewriteJournal { stream, bytes }, Ok(_)) => {
                    self.counts.journal_rewrites += 1;
                    self.check_journal(stream, bytes, false, v);
                }
                _ => {}
            }
            self.machine
                .handle_result(res.as_ref().map(|d| d.clone()).map_err(op_error));
            while let Some(ev) = self.machine.poll_event() {
                if let Event::JournalRewriteFailed { stream, .. } = ev {
                    self.rewrite_failed.insert(stream);
                }
            }
        }
        true
    }

    /// Retention (after the write): the recording stream's own oldest, never the
    /// segment just stored nor the stream's newest.
    fn check_retention(
        &self,
        stream: &StreamName,
        utc: u64,
        stored: Option<(&StreamName, u64)>,
        v: &mut Vec<String>,
    ) {
        let Some((recording, just)) = stored else {
            v.push(format!("deletes {stream}/{utc} outside a recording"));
            return;
        };
        if stream != recording {
            v.push(format!(
                "retention of {recording} deletes {stream}/{utc}, another stream's"
            ));
        }
        if utc == just {
            v.push(format!("retention deletes the segment just stored ({utc})"));
        }
        let Some(st) = self.streams.iter().find(|s| s.name == *stream) else {
            return;
        };
        if let (Some((&oldest, _)), Some((&newest, _))) =
            (st.acked.first_key_value(), st.acked.last_key_value())
        {
            if utc == newest {
                v.push(format!(
                    "retention deletes {stream}'s newest segment ({utc})"
                ));
            } else if utc != oldest && st.acked.contains_key(&utc) {
                v.push(format!(
                    "retention deletes {stream}/{utc} while {oldest} is older"
                ));
            }
        }
    }

    /// Eviction (making room before the write): the oldest segment under the root,
    /// of whichever stream holds it.
    fn check_eviction(
        &self,
        stream: &StreamName,
        utc: u64,
        stored: Option<(&StreamName, u64)>,
        v: &mut Vec<String>,
    ) {
        if stored.is_none() {
            v.push(format!("deletes {stream}/{utc} outside a recording"));
            return;
        }
        let oldest = self
            .streams
            .iter()
            .filter_map(|s| s.acked.keys().next().map(|u| (*u, &s.name)))
            .min_by_key(|(u, _)| *u);
        if let Some((oldest, holder)) = oldest {
            if utc != oldest {
                v.push(format!(
                    "eviction deletes {stream}/{utc} while {holder}/{oldest} is the oldest under the root"
                ));
            }
        }
    }

    /// A journal record written now must name only durable, whole segment files.
    fn check_journal(&self, stream: &StreamName, bytes: &Bytes, append: bool, v: &mut Vec<String>) {
        let entries = if append {
            let mut buf = journal::header().to_vec();
            buf.extend_from_slice(bytes);
            let mut adds = Vec::new();
            let read = journal::read_records(&buf, |r| {
                if let Record::Add(e) = r {
                    adds.push(e);
                }
            });
            match read {
                Ok((1, _, journal::Tail::Clean)) => adds,
                r => {
                    v.push(format!(
                        "an appended journal record does not read back: {r:?}"
                    ));
                    return;
                }
            }
        } else {
            match journal::replay(bytes) {
                Ok(r) => r.entries,
                Err(e) => {
                    v.push(format!("a rewritten journal does not replay: {e}"));
                    return;
                }
            }
        };
        for e in entries {
            let path = segment_path(stream, e.utc_start_ms);
            if self.store.durable_len(&path) != Some(e.bytes) {
                v.push(format!(
                    "the journal names {} ({} bytes) before its file is durable ({:?})",
                    e.utc_start_ms,
                    e.bytes,
                    self.store.durable_len(&path)
                ));
            }
        }
    }

    /// Records one closed segment of the live stream at `now` under every stream of
    /// the root that records now (each with its UTC shift), with each job's share of
    /// faults; returns the oracle failures.
    pub fn record(&mut self, now: Duration, seg: &Segment) -> Vec<String> {
        let mut v = Vec::new();
        for k in 0..self.streams.len() {
            let st = &mut self.streams[k];
            if st.bursts {
                if st.left == 0 {
                    st.on = !st.on;
                    let (lo, span) = if st.on { (3, 10) } else { (5, 36) };
                    st.left = lo + self.rng.next_u32() % span;
                }
                st.left -= 1;
                if !st.on {
                    continue;
                }
            }
            let mut seg = seg.clone();
            seg.utc_start_ms += st.shift_ms;
            let name = st.name.clone();
            self.record_one(now, &name, &seg, &mut v);
        }
        v
    }

    fn record_one(&mut self, now: Duration, name: &StreamName, seg: &Segment, v: &mut Vec<String>) {
        let Some(enc) = Encoded::new(seg) else {
            return;
        };
        self.counts.recorded += 1;
        if self.full_for > 0 {
            self.full_for -= 1;
            if self.full_for == 0 {
                self.store.set_capacity(Some(ROOT_BYTES));
            }
        }
        let mut crash_after = None;
        if self.faults && self.rng.next_u32().is_multiple_of(FAULT_EVERY_SEGMENTS) {
            match self.rng.next_u32() % 8 {
                k @ 0..=3 => {
                    let f = [Fault::Write, Fault::Fsync, Fault::FsyncDir, Fault::Rename];
                    self.store.fail_next(f[k as usize], 1);
                    self.counts.io_faults += 1;
                }
                4 | 5 => {
                    // The disk fills up early: room for none to two more segments.
                    let room = (self.rng.next_u32() % 3) as u64 * enc.bytes.len() as u64;
                    let cap = (self.store.used_bytes() + room).min(ROOT_BYTES);
                    self.store.set_capacity(Some(cap));
                    self.full_for = 1 + self.rng.next_u32() % 6;
                    self.counts.full_disks += 1;
                }
                _ => crash_after = Some((self.rng.next_u32() % 8) as usize),
            }
        }
        let utc = enc.entry.utc_start_ms;
        let id = self
            .machine
            .submit_live(name.clone(), enc, now, PAUSE_RETRY);
        let finished = self.drive(crash_after, Some((name, utc)), v);
        if finished {
            match self.machine.take_outcome(id) {
                Some(Outcome::Recorded(Ok(RecordOutcome::Stored))) => self.counts.stored += 1,
                Some(Outcome::Recorded(Err(_))) => {}
                Some(Outcome::Recorded(Ok(RecordOutcome::Skipped))) => self.counts.paused += 1,
                o => v.push(format!("record: unexpected outcome {o:?}")),
            }
        } else {
            self.counts.crashes_mid_job += 1;
        }
        if crash_after.is_some() {
            self.crash(v);
        }
    }

    /// A power cut, then a restart: the machine is rebuilt from the disk.
    fn crash(&mut self, v: &mut Vec<String>) {
        self.counts.crashes += 1;
        self.store.clear_faults();
        self.store.set_capacity(Some(ROOT_BYTES));
        self.full_for = 0;
        self.store.crash();
        self.machine = DvrMachine::new();
        self.rewrite_failed.clear();
        if !self.open(v) {
            return;
        }
        if !self.rewrite_failed.is_empty() {
            self.counts.reopen_rewrite_failed += 1;
        }
        for st in &mut self.streams {
            let found = check_reopened(
                &self.store,
                &self.machine,
                &st.name,
                self.rewrite_failed.contains(&st.name),
                &st.acked,
                &st.written,
                v,
            );
            st.acked = found;
        }
    }
}

/// The oracles of a reopened archive; returns what it indexes (UTC → bytes).
fn check_reopened(
    store: &MemStore,
    machine: &DvrMachine,
    stream: &StreamName,
    rewrite_failed: bool,
    acked: &BTreeMap<u64, u64>,
    written: &BTreeMap<u64, Bytes>,
    v: &mut Vec<String>,
) -> BTreeMap<u64, u64> {
    let Some(st) = machine.stream(stream) else {
        v.push("the reopened stream is not open".into());
        return BTreeMap::new();
    };
    let index: BTreeMap<u64, u64> = st
        .index()
        .iter()
        .map(|e| (e.utc_start_ms, e.bytes))
        .collect();
    for utc in acked.keys() {
        if !index.contains_key(utc) {
            v.push(format!("acknowledged segment {utc} lost in a crash"));
        }
    }
    for (&utc, &len) in &index {
        let read = store.run_op(&Op::ReadSegment {
            stream: stream.clone(),
            utc_start_ms: utc,
            len,
        });
        match (read, written.get(&utc)) {
            (Ok(Done::Segment(b)), Some(w)) if b == *w => {}
            (r, w) => v.push(format!(
                "indexed segment {utc} does not read back as recorded: {:?} vs {:?} bytes",
                r.map(|d| match d {
                    Done::Segment(b) => b.len(),
                    _ => 0,
                }),
                w.map(|w| w.len())
            )),
        }
    }
    let listed: Vec<u64> = match store.run_op(&Op::List {
        stream: stream.clone(),
    }) {
        Ok(Done::Listed(f)) => f.iter().map(|f| f.utc_start_ms).collect(),
        _ => Vec::new(),
    };
    if listed != index.keys().copied().collect::<Vec<_>>() {
        v.push(format!(
            "after reopen the files {listed:?} are not the index {:?}",
            index.keys().collect::<Vec<_>>()
        ));
    }
    let journal: Option<Vec<u64>> = match store.run_op(&Op::ReadJournal {
        stream: stream.clone(),
    }) {
        Ok(Done::Journal(Some(b))) => journal::replay(&b)
            .ok()
            .map(|r| r.entries.iter().map(|e| e.utc_start_ms).collect()),
        _ => None,
    };
    let want = index.keys().copied().collect::<Vec<_>>();
    if rewrite_failed {
        // Open could not rewrite the journal (a full disk): it may still name
        // segments whose files are gone, and miss files open re-indexed; the journal
        // is advisory. It must not name a file that exists but is not indexed.
        for u in journal.iter().flatten() {
            if !index.contains_key(u) && listed.contains(u) {
                v.push(format!(
                    "after reopen the journal names {u}, whose file exists, but the index does not"
                ));
            }
        }
    } else if journal.as_ref().is_some_and(|j| *j != want)
        || (journal.is_none() && !want.is_empty())
    {
        v.push(format!(
            "after reopen the journal {journal:?} is not the index {want:?}"
        ));
    }
    index
}

/// A small synthetic segment `i` (2 s at 25 fps, one H.264 track), for the
/// exhaustive check.
pub fn synthetic_segment(i: u64, payload: usize) -> Segment {
    let info = Arc::new(MediaInfo {
        tracks: vec![TrackInfo::placeholder_h264(1)],
    });
    let base = 1_764_000_000_000u64;
    let frames = (0..3u64)
        .map(|k| Frame {
            track: 1,
            dts: i * 180_000 + k * 3600,
            pts: i * 180_000 + k * 3600,
            keyframe: k == 0,
            capture_ms: base + i * 2000 + k * 40,
            pos: Position {
                epoch: 1,
                seq: i * 3 + k,
            },
            payload: Bytes::from(vec![(i % 251) as u8; payload]),
        })
        .collect();
    Segment {
        media_info: info,
        utc_start_ms: base + i * 2000,
        duration_ms: 2000,
        frames,
    }
}

/// What [`crash_every_prefix`] did.
#[derive(Clone, Debug, Default)]
pub struct PrefixReport {
    /// Store operations of the recording run.
    pub ops: usize,
    /// Crashed disks reopened and checked (after each prefix, and torn variants).
    pub crashes: usize,
    pub deletes: usize,
    pub rewrites: usize,
    /// Deletes while the disk was full (making room rather than retention).
    pub evictions: usize,
    pub violations: Vec<String>,
}

/// The exhaustive crash check: records `segments` segments (depth and size limits,
/// a disk that fills up now and then so that eviction runs, and enough records for
/// journal compaction), capturing every store operation; then, for every prefix `k`
/// of those operations, crashes the disk as it was after op `k` (unsynced names and
/// data lost) and — when op `k + 1` writes data — also with op `k + 1` torn (half of
/// its bytes landed, then the crash); reopens each with a fresh machine and checks
/// the oracles of [`SimDvr`], then that recording still works.
pub fn crash_every_prefix(segments: u64) -> PrefixReport {
    let stream = StreamName::new("cams/prefix").unwrap_or_else(|_| unreachable!());
    let mut rep = PrefixReport::default();
    let store = MemStore::new("/prefix");
    let mut m = DvrMachine::new();
    // (disk after op k, acked after op k).
    let mut states: Vec<(MemStore, BTreeMap<u64, u64>, Option<Op>)> = Vec::new();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut written: BTreeMap<u64, Bytes> = BTreeMap::new();
    let limit = Some(6 * 400);
    let id = m.submit_open(stream.clone(), Some(8), limit, "prefix".into());
    let mut jobs = vec![id];
    let run = |m: &mut DvrMachine,
               acked: &mut BTreeMap<u64, u64>,
               states: &mut Vec<(MemStore, BTreeMap<u64, u64>, Option<Op>)>,
               rep: &mut PrefixReport,
               full: bool| {
        while let Some(op) = m.poll_op() {
            if let Some(last) = states.last_mut() {
                last.2 = Some(op.clone());
            }
            if let Op::Delete { utc_start_ms, .. } = &op {
                let oldest = acked.keys().next().copied();
                if oldest != Some(*utc_start_ms) && rep.violations.len() < 20 {
                    rep.violations.push(format!(
                        "deletes {utc_start_ms} while the oldest stored is {oldest:?}"
                    ));
                }
            }
            let res = store.run_op(&op);
            match (&op, &res) {
                (
                    Op::Write {
                        utc_start_ms,
                        bytes,
                        ..
                    },
                    Ok(_),
                ) => {
                    acked.insert(*utc_start_ms, bytes.len() as u64);
                }
                (Op::Delete { utc_start_ms, .. }, _) => {
                    acked.remove(utc_start_ms);
                    rep.deletes += 1;
                    rep.evictions += usize::from(full);
                }
                (Op::RewriteJournal { .. }, Ok(_)) => rep.rewrites += 1,
                _ => {}
            }
            m.handle_result(res.map_err(|e| op_error(&e)));
            rep.ops += 1;
            states.push((store.snapshot(), acked.clone(), None));
        }
    };
    states.push((store.snapshot(), acked.clone(), None));
    run(&mut m, &mut acked, &mut states, &mut rep, false);
    for i in 0..segments {
        let seg = synthetic_segment(i, 120);
        let Some(enc) = Encoded::new(&seg) else {
            continue;
        };
        written.insert(enc.entry.utc_start_ms, enc.bytes.clone());
        // Every 50th segment the disk is full for a moment (eviction).
        let full = i % 50 == 25;
        // Room for the journal headroom only: one segment must go first.
        store.set_capacity(full.then(|| store.used_bytes() + JOURNAL_HEADROOM));
        jobs.push(m.submit_record(stream.clone(), enc));
        run(&mut m, &mut acked, &mut states, &mut rep, full);
    }
    for j in jobs {
        match m.take_outcome(j) {
            Some(Outcome::Recorded(Err(_))) | Some(Outcome::Opened(Err(_))) | None => {
                rep.violations
                    .push(format!("job {j} of the recording run failed"));
            }
            _ => {}
        }
    }
    let next = synthetic_segment(segments + 1, 120);
    for (k, (disk, acked_k, next_op)) in states.iter().enumerate() {
        let mut variants = vec![disk.snapshot()];
        if let Some(
            op @ (Op::Write { .. } | Op::AppendJournal { .. } | Op::RewriteJournal { .. }),
        ) = next_op
        {
            let torn = disk.snapshot();
            torn.fail_next(Fault::Write, 1);
            let _ = torn.run_op(op);
            variants.push(torn);
        }
        for d in variants {
            d.clear_faults();
            d.set_capacity(None);
            d.crash();
            rep.crashes += 1;
            let mut v = Vec::new();
            let mut m2 = DvrMachine::new();
            let id = m2.submit_open(stream.clone(), Some(8), limit, "prefix".into());
            while let Some(op) = m2.poll_op() {
                let r = d.run_op(&op);
                m2.handle_result(r.map_err(|e| op_error(&e)));
            }
            match m2.take_outcome(id) {
                Some(Outcome::Opened(Ok(()))) => {
                    check_reopened(&d, &m2, &stream, false, acked_k, &written, &mut v);
                    let mut w2 = written.clone();
                    let enc = Encoded::new(&next);
                    if let Some(enc) = enc {
                        w2.insert(enc.entry.utc_start_ms, enc.bytes.clone());
                        let id = m2.submit_record(stream.clone(), enc);
                        while let Some(op) = m2.poll_op() {
                            let r = d.run_op(&op);
                            m2.handle_result(r.map_err(|e| op_error(&e)));
                        }
                        if m2.take_outcome(id) != Some(Outcome::Recorded(Ok(RecordOutcome::Stored)))
                        {
                            v.push("recording after the reopen failed".into());
                        }
                    }
                }
                Some(Outcome::Opened(Err(OpenFailure::Journal(e)))) => {
                    v.push(format!("reopen refuses the journal: {e}"))
                }
                o => v.push(format!("reopen failed: {o:?}")),
            }
            for x in v {
                if rep.violations.len() < 20 {
                    rep.violations.push(format!("crash after op {k}: {x}"));
                }
            }
        }
    }
    rep
}
