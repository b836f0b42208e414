//! Unit tests of the DVR machine, driven without tokio over a tiny in-memory disk
//! (every op atomic and durable on `Ok`, with injectable failures and a capacity).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::dvr::op::{Done, Op, OpError, Reason, RecordingState, SegmentFile};
use crate::{Frame, MediaInfo, Position, Segment, StreamName, TrackInfo};

const BASE: u64 = 1_764_000_000_000;

fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

fn seg(i: u64, payload: usize) -> Segment {
    let info = Arc::new(MediaInfo {
        tracks: vec![TrackInfo::placeholder_h264(1)],
    });
    let frames = (0..5u64)
        .map(|k| Frame {
            track: 1,
            dts: i * 180_000 + k * 3600,
            pts: i * 180_000 + k * 3600,
            keyframe: k == 0,
            capture_ms: BASE + i * 2000 + k * 40,
            pos: Position {
                epoch: 1,
                seq: i * 5 + k,
            },
            payload: Bytes::from(vec![k as u8; payload]),
        })
        .collect();
    Segment {
        media_info: info,
        utc_start_ms: BASE + i * 2000,
        duration_ms: 2000,
        frames,
    }
}

fn utc(i: u64) -> u64 {
    BASE + i * 2000
}

/// Which op kinds fail next, and how.
#[derive(Default)]
struct Disk {
    files: BTreeMap<(StreamName, u64), Bytes>,
    journals: BTreeMap<StreamName, Vec<u8>>,
    capacity: Option<u64>,
    /// Op name → (kind, how many more times).
    fail: BTreeMap<&'static str, (ErrorKind, u32)>,
    log: Vec<String>,
}

fn err(kind: ErrorKind) -> OpError {
    OpError {
        kind,
        reason: Reason {
            logged: format!("{kind:?} (test)"),
            shown: "test".into(),
        },
    }
}

impl Disk {
    fn used(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum::<u64>()
            + self.journals.values().map(|j| j.len() as u64).sum::<u64>()
    }

    fn failing(&mut self, op: &'static str) -> Option<OpError> {
        let (kind, n) = self.fail.get_mut(op)?;
        if *n == 0 {
            return None;
        }
        *n -= 1;
        Some(err(*kind))
    }

    fn run(&mut self, op: &Op) -> Result<Done, OpError> {
        let label = match op {
            Op::Prepare { .. } => "prepare",
            Op::ReadJournal { .. } => "read_journal",
            Op::List { .. } => "list",
            Op::ReadSegment { .. } => "read",
            Op::FreeSpace => "free",
            Op::Write { .. } => "write",
            Op::Delete { .. } => "delete",
            Op::AppendJournal { .. } => "append",
            Op::RewriteJournal { .. } => "rewrite",
        };
        self.log.push(match op {
            Op::Write { utc_start_ms, .. } => format!("write {}", (utc_start_ms - BASE) / 2000),
            Op::Delete { utc_start_ms, .. } => {
                format!("delete {}", (utc_start_ms - BASE) / 2000)
            }
            _ => label.to_string(),
        });
        if let Some(e) = self.failing(label) {
            return Err(e);
        }
        let free = self.capacity.map(|c| c.saturating_sub(self.used()));
        let fits = |n: usize| free.is_none_or(|f| n as u64 <= f);
        Ok(match op {
            Op::Prepare { .. } => Done::Ok,
            Op::ReadJournal { stream } => {
                Done::Journal(self.journals.get(stream).map(|j| Bytes::from(j.clone())))
            }
            Op::List { stream } => Done::Listed(
                self.files
                    .iter()
                    .filter(|((s, _), _)| s == stream)
                    .map(|((_, u), b)| SegmentFile {
                        utc_start_ms: *u,
                        bytes: b.len() as u64,
                    })
                    .collect(),
            ),
            Op::ReadSegment {
                stream,
                utc_start_ms,
                len,
            } => match self.files.get(&(stream.clone(), *utc_start_ms)) {
                Some(b) if b.len() as u64 == *len => Done::Segment(b.clone()),
                Some(_) => return Err(err(ErrorKind::InvalidData)),
                None => return Err(err(ErrorKind::NotFound)),
            },
            Op::FreeSpace => Done::FreeSpace(free),
            Op::Write {
                stream,
                utc_start_ms,
                bytes,
            } => {
                if !fits(bytes.len()) {
                    return Err(err(ErrorKind::StorageFull));
                }
                self.files
                    .insert((stream.clone(), *utc_start_ms), bytes.clone());
                Done::Ok
            }
            Op::Delete {
                stream,
                utc_start_ms,
            } => {
                self.files.remove(&(stream.clone(), *utc_start_ms));
                Done::Ok
            }
            Op::AppendJournal { stream, at, bytes } => {
                let Some(j) = self.journals.get(stream) else {
                    return Err(err(ErrorKind::NotFound));
                };
                if (j.len() as u64) < *at {
                    return Err(err(ErrorKind::UnexpectedEof));
                }
                if !fits(bytes.len()) {
                    return Err(err(ErrorKind::StorageFull));
                }
                let j = self.journals.entry(stream.clone()).or_default();
                j.truncate(*at as usize);
                j.extend_from_slice(bytes);
                Done::Ok
            }
            Op::RewriteJournal { stream, bytes } => {
                if !fits(bytes.len()) {
                    return Err(err(ErrorKind::StorageFull));
                }
                self.journals.insert(stream.clone(), bytes.to_vec());
                Done::Ok
            }
        })
    }

    /// Runs every op of `m` until it has none.
    fn drive(&mut self, m: &mut DvrMachine) {
        while let Some(op) = m.poll_op() {
            let r = self.run(&op);
            m.handle_result(r);
        }
    }

    fn ops(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

fn open(
    disk: &mut Disk,
    m: &mut DvrMachine,
    s: &str,
    depth: Option<u64>,
    limit: Option<u64>,
) -> Result<(), OpenFailure> {
    let id = m.submit_open(name(s), depth, limit, format!("test:{s}"));
    disk.drive(m);
    match m.take_outcome(id) {
        Some(Outcome::Opened(r)) => r,
        o => panic!("open: {o:?}"),
    }
}

fn record(
    disk: &mut Disk,
    m: &mut DvrMachine,
    s: &str,
    i: u64,
    payload: usize,
) -> Result<RecordOutcome, RecordFailure> {
    let id = m.submit_record(name(s), Encoded::new(&seg(i, payload)).unwrap());
    disk.drive(m);
    match m.take_outcome(id) {
        Some(Outcome::Recorded(r)) => r,
        o => panic!("record: {o:?}"),
    }
}

fn starts(m: &DvrMachine, s: &str) -> Vec<u64> {
    m.stream(&name(s))
        .unwrap()
        .index()
        .iter()
        .map(|e| (e.utc_start_ms - BASE) / 2000)
        .collect()
}

fn journal_entries(disk: &Disk, s: &str) -> Vec<u64> {
    let j = disk.journals.get(&name(s)).unwrap();
    crate::dvr::journal::replay(j)
        .unwrap()
        .entries
        .iter()
        .map(|e| (e.utc_start_ms - BASE) / 2000)
        .collect()
}

#[test]
fn a_segment_is_written_before_it_is_indexed_and_journaled() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", None, None).unwrap();
    assert_eq!(disk.ops(), ["prepare", "read_journal", "list"]);
    assert_eq!(
        m.stream(&name("a")).unwrap().state(),
        &RecordingState::Waiting
    );
    assert_eq!(
        record(&mut disk, &mut m, "a", 0, 100),
        Ok(RecordOutcome::Stored)
    );
    // No journal yet: the first record rewrites it whole.
    assert_eq!(disk.ops(), ["free", "write 0", "rewrite"]);
    assert_eq!(
        record(&mut disk, &mut m, "a", 1, 100),
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(disk.ops(), ["free", "write 1", "append"]);
    assert_eq!(
        record(&mut disk, &mut m, "a", 1, 100),
        Ok(RecordOutcome::Skipped)
    );
    assert!(disk.ops().is_empty());
    assert_eq!(
        m.stream(&name("a")).unwrap().state(),
        &RecordingState::Recording
    );
    assert_eq!(journal_entries(&disk, "a"), [0, 1]);

    // Reopen (a new machine, the same disk): the journal and the files agree, so
    // only the newest three are decoded and nothing is rewritten.
    record(&mut disk, &mut m, "a", 2, 100).unwrap();
    record(&mut disk, &mut m, "a", 3, 100).unwrap();
    let mut m2 = DvrMachine::new();
    disk.ops();
    open(&mut disk, &mut m2, "a", None, None).unwrap();
    assert_eq!(
        disk.ops(),
        ["prepare", "read_journal", "list", "read", "read", "read"]
    );
    assert_eq!(starts(&m2, "a"), [0, 1, 2, 3]);
    assert_eq!(
        open(&mut disk, &mut m2, "a", None, None),
        Err(OpenFailure::AlreadyOpen)
    );
}

#[test]
fn a_failed_write_indexes_nothing_and_says_failing() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", None, None).unwrap();
    disk.ops();
    disk.fail.insert("write", (ErrorKind::Other, 1));
    let r = record(&mut disk, &mut m, "a", 0, 100);
    assert!(
        matches!(r, Err(RecordFailure::Store(ref e)) if e.kind == ErrorKind::Other),
        "{r:?}"
    );
    assert_eq!(
        disk.ops(),
        ["free", "write 0"],
        "no journal op after a failed write"
    );
    assert!(starts(&m, "a").is_empty());
    assert!(matches!(
        m.stream(&name("a")).unwrap().state(),
        RecordingState::Failing { .. }
    ));
    record(&mut disk, &mut m, "a", 1, 100).unwrap();
    assert_eq!(starts(&m, "a"), [1]);
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::State {
            to: RecordingState::Recording,
            ..
        }
    )));
}

#[test]
fn retention_deletes_oldest_first_never_the_newest_and_journals_after() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    // 5 s of depth: segments that ended 5 s or more before the newest's end go.
    open(&mut disk, &mut m, "a", Some(5), None).unwrap();
    for i in 0..6 {
        record(&mut disk, &mut m, "a", i, 100).unwrap();
    }
    assert_eq!(starts(&m, "a"), [3, 4, 5]);
    disk.ops();
    record(&mut disk, &mut m, "a", 6, 100).unwrap();
    assert_eq!(
        disk.ops(),
        ["free", "write 6", "append", "delete 3", "append"]
    );
    assert_eq!(journal_entries(&disk, "a"), [4, 5, 6]);
    assert_eq!(disk.files.len(), 3);

    // A size limit smaller than one segment keeps the newest anyway.
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "b", None, Some(1)).unwrap();
    for i in 0..4 {
        record(&mut disk, &mut m, "b", i, 100).unwrap();
        assert_eq!(starts(&m, "b"), [i], "the newest stays");
    }
    // A failed delete keeps the entry (the file is still there) and stops retention.
    disk.fail.insert("delete", (ErrorKind::Other, 1));
    record(&mut disk, &mut m, "b", 4, 100).unwrap();
    assert_eq!(starts(&m, "b"), [3, 4]);
    record(&mut disk, &mut m, "b", 5, 100).unwrap();
    assert_eq!(starts(&m, "b"), [5]);
}

#[test]
fn a_full_disk_takes_the_oldest_under_the_root_then_pauses_and_retries_live() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "old", None, None).unwrap();
    open(&mut disk, &mut m, "new", None, None).unwrap();
    for i in 0..3 {
        record(&mut disk, &mut m, "old", i, 1000).unwrap();
    }
    for i in 3..6 {
        record(&mut disk, &mut m, "new", i, 1000).unwrap();
    }
    // Room for about five segments and the journals.
    let one = Encoded::new(&seg(0, 1000)).unwrap().bytes.len() as u64;
    disk.capacity = Some(disk.used() - one + 2 * JOURNAL_HEADROOM);
    disk.ops();
    record(&mut disk, &mut m, "new", 6, 1000).unwrap();
    let ops = disk.ops();
    // Two deleted (space for the segment plus the journal headroom), oldest first,
    // from the stream that has them, each journaled before the next.
    assert_eq!(ops[..4], ["free", "delete 0", "append", "free"], "{ops:?}");
    assert_eq!(starts(&m, "old"), [2]);
    assert_eq!(starts(&m, "new"), [3, 4, 5, 6]);
    let evicted: Vec<u64> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::Evicted { utc, .. } => Some((utc - BASE) / 2000),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, [0, 1]);

    // Nothing fits at all: everything under the root goes, then it pauses.
    disk.capacity = Some(0);
    let id = m.submit_live(
        name("new"),
        Encoded::new(&seg(7, 1000)).unwrap(),
        Duration::from_secs(100),
        PAUSE_RETRY,
    );
    disk.drive(&mut m);
    assert!(matches!(
        m.take_outcome(id),
        Some(Outcome::Recorded(Err(RecordFailure::Full { .. })))
    ));
    assert!(starts(&m, "old").is_empty() && starts(&m, "new").is_empty());
    assert!(matches!(
        m.stream(&name("new")).unwrap().state(),
        RecordingState::Paused { .. }
    ));
    assert_eq!(m.poll_timeout(), Some(Duration::from_secs(105)));
    // Before the retry time a live segment is dropped without touching the disk.
    disk.capacity = None;
    disk.ops();
    let id = m.submit_live(
        name("new"),
        Encoded::new(&seg(8, 1000)).unwrap(),
        Duration::from_secs(104),
        PAUSE_RETRY,
    );
    disk.drive(&mut m);
    assert_eq!(
        m.take_outcome(id),
        Some(Outcome::Recorded(Ok(RecordOutcome::Skipped)))
    );
    assert!(disk.ops().is_empty());
    let id = m.submit_live(
        name("new"),
        Encoded::new(&seg(9, 1000)).unwrap(),
        Duration::from_secs(105),
        PAUSE_RETRY,
    );
    disk.drive(&mut m);
    assert_eq!(
        m.take_outcome(id),
        Some(Outcome::Recorded(Ok(RecordOutcome::Stored)))
    );
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(
        m.stream(&name("new")).unwrap().state(),
        &RecordingState::Recording
    );
}

#[test]
fn a_failed_compaction_falls_back_to_appending_and_is_retried_later() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", Some(4), None).unwrap();
    record(&mut disk, &mut m, "a", 0, 10).unwrap();
    disk.ops();
    let mut i = 1;
    // Run until a compaction is due: its rewrite fails once.
    disk.fail.insert("rewrite", (ErrorKind::StorageFull, 1));
    let mut fell_back = None;
    while i < 5000 && fell_back.is_none() {
        record(&mut disk, &mut m, "a", i, 10).unwrap();
        let ops = disk.ops();
        if ops.contains(&"rewrite".to_string()) {
            fell_back = Some((i, ops));
        }
        i += 1;
    }
    let (at, ops) = fell_back.expect("a compaction was due");
    assert!(
        ops.windows(2).any(|w| w == ["rewrite", "append"]),
        "{ops:?}"
    );
    assert_eq!(journal_entries(&disk, "a"), starts(&m, "a"));
    // The next attempts append; the snapshot is tried after the retry distance.
    let mut next_rewrite = None;
    for k in 0..(COMPACTION_RETRY_RECORDS as u64 + 10) {
        record(&mut disk, &mut m, "a", at + 1 + k, 10).unwrap();
        if disk.ops().contains(&"rewrite".to_string()) {
            next_rewrite = Some(k);
            break;
        }
    }
    let k = next_rewrite.expect("compaction tried again");
    // Two records (add, remove) per segment: about half the retry distance.
    assert!(k as usize >= COMPACTION_RETRY_RECORDS / 2 - 2, "{k}");
    let r = crate::dvr::journal::replay(disk.journals.get(&name("a")).unwrap()).unwrap();
    assert_eq!(r.records, starts(&m, "a").len());
}

#[test]
fn open_reconciles_the_journal_with_the_files() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", None, None).unwrap();
    for i in 0..8 {
        record(&mut disk, &mut m, "a", i, 100).unwrap();
    }
    drop(m);
    let a = name("a");
    // Missing file (2), other size (3), damaged newest (7), stray whole file the
    // journal does not name (9), stray garbage (10).
    disk.files.remove(&(a.clone(), utc(2)));
    let mut three = disk.files[&(a.clone(), utc(3))].to_vec();
    three.push(0);
    disk.files.insert((a.clone(), utc(3)), Bytes::from(three));
    let mut seven = disk.files[&(a.clone(), utc(7))].to_vec();
    let mid = seven.len() / 2;
    seven[mid] ^= 0xff;
    disk.files.insert((a.clone(), utc(7)), Bytes::from(seven));
    disk.files.insert(
        (a.clone(), utc(9)),
        Encoded::new(&seg(9, 100)).unwrap().bytes,
    );
    disk.files
        .insert((a.clone(), utc(10)), Bytes::from_static(b"not a segment"));
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", None, None).unwrap();
    // 3 is dropped from the journal's entries, then decoded as a file the journal
    // does not name: with a byte too many it is not a segment, so it is deleted.
    assert_eq!(starts(&m, "a"), [0, 1, 4, 5, 6, 9]);
    assert!(!disk.files.contains_key(&(a.clone(), utc(3))));
    assert!(!disk.files.contains_key(&(a.clone(), utc(7))));
    assert!(!disk.files.contains_key(&(a.clone(), utc(10))));
    assert_eq!(journal_entries(&disk, "a"), [0, 1, 4, 5, 6, 9]);
    let ev: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e, Event::Missing { .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::SizeMismatch { .. })));
    assert!(ev.iter().any(|e| matches!(e, Event::Damaged { .. })));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::DamagedUnlisted { .. })));

    // A journal this build cannot read is refused; a failed listing too.
    let mut m = DvrMachine::new();
    disk.journals
        .insert(name("b"), b"garbage!garbage!".to_vec());
    assert!(matches!(
        open(&mut disk, &mut m, "b", None, None),
        Err(OpenFailure::Journal(_))
    ));
    disk.fail.insert("list", (ErrorKind::PermissionDenied, 1));
    assert!(matches!(
        open(&mut disk, &mut m, "c", None, None),
        Err(OpenFailure::Store(_))
    ));
    assert!(m.stream(&name("c")).is_none());
}

#[test]
fn an_abandoned_op_ends_its_job_and_the_next_job_runs() {
    let mut disk = Disk::default();
    let mut m = DvrMachine::new();
    open(&mut disk, &mut m, "a", None, None).unwrap();
    record(&mut disk, &mut m, "a", 0, 100).unwrap();
    let id = m.submit_record(name("a"), Encoded::new(&seg(1, 100)).unwrap());
    assert_eq!(m.poll_op(), Some(Op::FreeSpace));
    assert_eq!(m.poll_op(), None, "one op out at a time");
    m.handle_result(Ok(Done::FreeSpace(None)));
    assert!(matches!(m.poll_op(), Some(Op::Write { .. })));
    m.handle_abandoned();
    assert!(!m.is_busy());
    assert_eq!(m.take_outcome(id), None);
    assert_eq!(starts(&m, "a"), [0]);
    record(&mut disk, &mut m, "a", 2, 100).unwrap();
    assert_eq!(starts(&m, "a"), [0, 2]);

    // An open abandoned during its journal rewrite leaves the stream closed, so it
    // can be opened again.
    let mut m = DvrMachine::new();
    disk.journals.clear();
    let id = m.submit_open(name("a"), None, None, "t".into());
    loop {
        let op = m.poll_op().unwrap();
        if matches!(op, Op::RewriteJournal { .. }) {
            m.handle_abandoned();
            break;
        }
        let r = disk.run(&op);
        m.handle_result(r);
    }
    assert_eq!(m.take_outcome(id), None);
    assert!(m.stream(&name("a")).is_none());
    open(&mut disk, &mut m, "a", None, None).unwrap();
    assert_eq!(starts(&m, "a"), [0, 2]);
}
