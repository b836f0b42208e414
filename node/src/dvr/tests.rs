//! Tests of `Dvr` on `MemStore` (with faults) and `FsStore` (a temporary directory).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::config::DvrConfig;
use tern_core::{Frame, MediaInfo, Position, Segment, StreamName, TrackInfo};

use super::*;

pub(super) const BASE: u64 = 1_764_000_000_000;

pub(super) fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

fn media_info() -> Arc<MediaInfo> {
    Arc::new(MediaInfo {
        tracks: vec![TrackInfo::placeholder_h264(1)],
    })
}

/// Segment `i` of epoch `epoch`: 2 s at `BASE + i * 2 s`, five frames of `payload`
/// bytes each, positions continuing from segment `i - 1`.
pub(super) fn seg(i: u64, epoch: u64, payload: usize) -> Segment {
    let frames = (0..5u64)
        .map(|k| Frame {
            track: 1,
            dts: i * 180_000 + k * 3600,
            pts: i * 180_000 + k * 3600,
            keyframe: k == 0,
            capture_ms: BASE + i * 2000 + k * 40,
            pos: Position {
                epoch,
                seq: i * 5 + k,
            },
            payload: Bytes::from(vec![k as u8; payload]),
        })
        .collect();
    Segment {
        media_info: media_info(),
        utc_start_ms: BASE + i * 2000,
        duration_ms: 2000,
        frames,
    }
}

pub(super) fn seg_bytes(payload: usize) -> u64 {
    tern_core::segment_codec::encode(&seg(0, 1, payload)).len() as u64
}

pub(super) fn config(depth_secs: Option<u64>, limit_bytes: Option<u64>) -> DvrConfig {
    DvrConfig {
        path: "/dvr".into(),
        depth_secs,
        limit_bytes,
    }
}

async fn open_mem(store: &Arc<MemStore>, stream: &str, cfg: DvrConfig) -> Arc<Dvr> {
    Dvr::open(store.clone(), name(stream), cfg).await.unwrap()
}

fn starts(dvr: &Dvr) -> Vec<u64> {
    dvr.segments(0, u64::MAX)
        .iter()
        .map(|s| (s.utc_start_ms - BASE) / 2000)
        .collect()
}

/// Every indexed segment is on the store, whole, and is the segment it says.
async fn assert_index_sound(dvr: &Dvr) {
    for s in dvr.segments(0, u64::MAX) {
        let b = dvr
            .read(s.utc_start_ms)
            .await
            .unwrap_or_else(|e| panic!("indexed segment {} unreadable: {e}", s.utc_start_ms));
        assert_eq!(b.len() as u64, s.bytes);
        let decoded = tern_core::segment_codec::decode(b).unwrap();
        assert_eq!(decoded.utc_start_ms, s.utc_start_ms);
    }
}

#[tokio::test]
async fn record_query_read_and_reopen() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "cams/yard", config(Some(3600), None)).await;
    assert_eq!(dvr.status().state, RecordingState::Waiting);
    for i in 0..5 {
        assert_eq!(
            dvr.record(&seg(i, 1, 100)).await.unwrap(),
            RecordOutcome::Stored
        );
    }
    // A source restart (new epoch), then a gap of 10 s.
    dvr.record(&seg(5, 2, 100)).await.unwrap();
    dvr.record(&seg(11, 2, 100)).await.unwrap();
    // The same segment again (an M4F resubscribe) is skipped.
    assert_eq!(
        dvr.record(&seg(11, 2, 100)).await.unwrap(),
        RecordOutcome::Skipped
    );

    assert_eq!(dvr.ranges(), vec![(BASE, 12_000), (BASE + 22_000, 2000)]);
    let list = dvr.segments(BASE + 7000, BASE + 30_000);
    assert_eq!(
        list.iter()
            .map(|s| ((s.utc_start_ms - BASE) / 2000, s.discontinuity))
            .collect::<Vec<_>>(),
        vec![(3, false), (4, false), (5, true), (11, true)]
    );
    let st = dvr.status();
    assert_eq!(st.from_ms, Some(BASE));
    assert_eq!(st.depth_secs, 3600);
    assert_eq!(st.segments, 7);
    assert_eq!(st.bytes, 7 * seg_bytes(100));
    assert_eq!(st.state, RecordingState::Recording);
    assert_eq!(dvr.facts().ranges, dvr.ranges());
    assert_eq!(dvr.facts().depth_secs, 3600);

    let want = tern_core::segment_codec::encode(&seg(3, 1, 100));
    assert_eq!(dvr.read(BASE + 6000).await.unwrap(), want);
    assert!(matches!(
        dvr.read(BASE + 6001).await,
        Err(DvrError::NotFound { .. })
    ));

    // A second open of the same stream under the same root is refused.
    let second = dvr.root().open(name("cams/yard"), config(None, None)).await;
    assert!(
        matches!(second, Err(DvrError::AlreadyOpen { .. })),
        "{:?}",
        second.as_ref().map(|_| ())
    );

    drop(dvr);
    let again = open_mem(&store, "cams/yard", config(Some(3600), None)).await;
    assert_eq!(again.ranges(), vec![(BASE, 12_000), (BASE + 22_000, 2000)]);
    assert_eq!(starts(&again), vec![0, 1, 2, 3, 4, 5, 11]);
    assert_index_sound(&again).await;
}

#[tokio::test]
async fn retention_by_depth_and_size() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(Some(10), None)).await;
    for i in 0..20 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    // Newest ends at 40 s; depth 10 s keeps segments ending after 30 s.
    assert_eq!(starts(&dvr), (15..20).collect::<Vec<_>>());
    assert_eq!(store.files().len(), 5 + 1); // + index.journal

    let b = seg_bytes(100);
    let dvr2 = open_mem(&store, "b", config(None, Some(3 * b + 1))).await;
    for i in 0..10 {
        dvr2.record(&seg(i, 1, 100)).await.unwrap();
    }
    assert_eq!(starts(&dvr2), vec![7, 8, 9]);
    drop(dvr2);
    let reopened = open_mem(&store, "b", config(None, Some(3 * b + 1))).await;
    assert_eq!(starts(&reopened), vec![7, 8, 9]);
}

#[tokio::test]
async fn disk_full_deletes_own_oldest_and_keeps_recording() {
    let b = seg_bytes(1000);
    // Room for about six segments and the journal.
    let store = Arc::new(MemStore::with_capacity("/dvr", 6 * b + 8 * 1024));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..30 {
        dvr.record(&seg(i, 1, 1000)).await.unwrap();
        assert_eq!(dvr.status().state, RecordingState::Recording);
    }
    let kept = starts(&dvr);
    assert!(kept.len() >= 3, "{kept:?}");
    assert_eq!(kept.last(), Some(&29));
    // Contiguous newest segments: only the oldest were deleted.
    assert_eq!(kept, (30 - kept.len() as u64..30).collect::<Vec<_>>());
    assert_index_sound(&dvr).await;
    drop(dvr);
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), kept);
}

#[tokio::test]
async fn disk_full_makes_room_from_the_oldest_stream_of_the_root() {
    let b = seg_bytes(1000);
    let store: Arc<MemStore> = Arc::new(MemStore::with_capacity("/dvr", 8 * b + 8 * 1024));
    let root = DvrRoot::new(store.clone());
    let old = root.open(name("old"), config(None, None)).await.unwrap();
    let new = root.open(name("new"), config(None, None)).await.unwrap();
    for i in 0..4 {
        old.record(&seg(i, 1, 1000)).await.unwrap();
    }
    for i in 100..120 {
        new.record(&seg(i, 1, 1000)).await.unwrap();
    }
    // `old`'s segments were the oldest under the root: they went first.
    assert!(starts(&old).is_empty());
    assert!(!starts(&new).is_empty());
    assert_eq!(new.status().state, RecordingState::Recording);
}

#[tokio::test]
async fn nothing_left_pauses_then_resumes() {
    let b = seg_bytes(1000);
    let store = Arc::new(MemStore::with_capacity("/dvr", b / 2));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    let err = dvr.record(&seg(0, 1, 1000)).await.unwrap_err();
    assert!(matches!(err, DvrError::Full { .. }), "{err}");
    assert!(err.to_string().contains("free space on that disk"), "{err}");
    assert!(matches!(dvr.status().state, RecordingState::Paused { .. }));
    assert!(starts(&dvr).is_empty());
    store.set_capacity(Some(10 * b));
    dvr.record(&seg(1, 1, 1000)).await.unwrap();
    assert_eq!(dvr.status().state, RecordingState::Recording);
    assert_eq!(starts(&dvr), vec![1]);
}

/// Polls `cond` every 10 ms for up to 5 s.
#[allow(clippy::disallowed_methods)] // test: polls a condition
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: runs the recorder driver and waits past its retry
async fn recorder_pauses_and_retries_by_itself() {
    const RETRY: Duration = Duration::from_millis(1000);
    let b = seg_bytes(1000);
    let store = Arc::new(MemStore::with_capacity("/dvr", b / 2));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    let hub = Arc::new(crate::hub::StreamHub::new(name("a"), 2000, Duration::ZERO));
    let task = tokio::spawn(recorder::run(
        dvr.clone(),
        hub.clone(),
        RETRY,
        tern_net::TokioClock::new(),
    ));
    tokio::task::yield_now().await;
    hub.publish_segment(seg(0, 1, 1000), Duration::ZERO, BASE);
    eventually("the pause", || {
        matches!(dvr.status().state, RecordingState::Paused { .. })
    })
    .await;
    let paused_at = tokio::time::Instant::now();
    // More room; a segment inside the retry interval is not tried.
    store.set_capacity(Some(20 * b));
    hub.publish_segment(seg(1, 1, 1000), Duration::ZERO, BASE);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(starts(&dvr).is_empty());
    assert!(matches!(dvr.status().state, RecordingState::Paused { .. }));
    tokio::time::sleep_until(paused_at + RETRY + Duration::from_millis(50)).await;
    hub.publish_segment(seg(2, 1, 1000), Duration::ZERO, BASE);
    hub.publish_segment(seg(3, 1, 1000), Duration::ZERO, BASE);
    eventually("two segments", || dvr.status().segments == 2).await;
    assert_eq!(dvr.status().state, RecordingState::Recording);
    assert_eq!(starts(&dvr), vec![2, 3]);
    hub.close();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn io_errors_never_leave_index_pointing_at_missing_segment() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    let mut ok = Vec::new();
    for i in 0..12u64 {
        match i % 4 {
            1 => store.fail_next(Fault::Rename, 1),
            2 => store.fail_next(Fault::Fsync, 1),
            3 => store.fail_next(Fault::FsyncDir, 1),
            _ => {}
        }
        match dvr.record(&seg(i, 1, 100)).await {
            Ok(_) => ok.push(i),
            Err(e) => {
                assert!(matches!(dvr.status().state, RecordingState::Failing { .. }));
                assert!(e.to_string().contains("(simulated)"), "{e}");
            }
        }
        assert_index_sound(&dvr).await;
    }
    assert_eq!(ok, vec![0, 4, 8]);
    assert_eq!(starts(&dvr), ok);
    // No partial or temporary file was left behind.
    let files: Vec<String> = store.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|p| !p.ends_with(".tmp")));
    drop(dvr);
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), ok);
    assert_index_sound(&again).await;
}

#[tokio::test]
async fn failed_journal_writes_are_recovered_from_the_files() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    dvr.record(&seg(0, 1, 100)).await.unwrap();
    // The segment's own write passes, the journal append after it writes half a
    // record and fails: the segment is stored (and indexed) all the same.
    store.fail_later(Fault::Write, 1, 1);
    assert_eq!(
        dvr.record(&seg(1, 1, 100)).await.unwrap(),
        RecordOutcome::Stored
    );
    // The next append cuts the half record off first.
    dvr.record(&seg(2, 1, 100)).await.unwrap();
    // The journal append's fsync fails: visible, not durable.
    store.fail_later(Fault::Fsync, 1, 1);
    dvr.record(&seg(3, 1, 100)).await.unwrap();
    assert_eq!(starts(&dvr), vec![0, 1, 2, 3]);
    let r = tern_core::dvr::journal::replay(&store.read_file("a/index.journal").unwrap()).unwrap();
    assert_eq!(r.tail, tern_core::dvr::Tail::Clean);
    drop(dvr);
    store.crash();
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), vec![0, 1, 2, 3]);
    assert_index_sound(&again).await;
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: cuts a write short with a zero timeout
async fn crash_loses_at_most_the_segment_being_written() {
    // 1. The process dies while segment 5 is being written (its write never
    //    completes), then the power goes: segment 5 is lost, nothing else.
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..5 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    store.set_latency(Duration::from_secs(3600));
    // Polled once (the write is under way), then dropped.
    let cut = tokio::time::timeout(Duration::ZERO, dvr.record(&seg(5, 1, 100))).await;
    assert!(cut.is_err());
    store.set_latency(Duration::ZERO);
    drop(dvr);
    store.crash();
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), vec![0, 1, 2, 3, 4]);
    assert_index_sound(&again).await;

    // 2. It dies after segment 6 is durable but while its journal record is being
    //    appended (half of it lands): nothing is lost, the file is re-indexed.
    again.record(&seg(5, 1, 100)).await.unwrap();
    store.fail_later(Fault::Write, 1, 1);
    again.record(&seg(6, 1, 100)).await.unwrap();
    drop(again);
    store.crash();
    let third = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&third), vec![0, 1, 2, 3, 4, 5, 6]);
    assert_index_sound(&third).await;
}

/// Random faults and crashes: after every crash and reopen, every segment whose
/// `record` returned `Stored` is there, and the index only lists sound segments.
#[tokio::test]
async fn random_faults_and_crashes_keep_every_stored_segment() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let store = Arc::new(MemStore::new("/dvr"));
        let mut dvr = open_mem(&store, "s", config(None, None)).await;
        let mut stored = std::collections::BTreeSet::new();
        for i in 0..60u64 {
            match rng.next_u32() % 10 {
                0 => store.fail_next(Fault::Write, 1),
                1 => store.fail_next(Fault::Fsync, 1),
                2 => store.fail_next(Fault::FsyncDir, 1),
                3 => store.fail_next(Fault::Rename, 1),
                _ => {}
            }
            if let Ok(RecordOutcome::Stored) = dvr.record(&seg(i, 1, 50)).await {
                stored.insert(i);
            }
            if rng.next_u32() % 8 == 0 {
                store.clear_faults();
                drop(dvr);
                store.crash();
                dvr = open_mem(&store, "s", config(None, None)).await;
                let have: std::collections::BTreeSet<u64> = starts(&dvr).into_iter().collect();
                assert!(
                    stored.is_subset(&have),
                    "seed {seed} step {i}: lost {:?}",
                    stored.difference(&have).collect::<Vec<_>>()
                );
                assert_index_sound(&dvr).await;
            }
        }
    }
}

#[tokio::test]
async fn torn_journal_tail_at_reopen() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..5 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    drop(dvr);
    let journal = store.read_file("a/index.journal").unwrap();
    // Cut inside the last record, at every byte of it.
    let rec = tern_core::dvr::journal::RECORD_HEADER_LEN + 53;
    for cut in (journal.len() - rec + 1)..journal.len() {
        store.put_file("a/index.journal", &journal[..cut]);
        let again = open_mem(&store, "a", config(None, None)).await;
        // The segment whose record was torn is re-indexed from its file.
        assert_eq!(starts(&again), vec![0, 1, 2, 3, 4], "cut {cut}");
        // The journal was rewritten whole: appends after it work.
        again.record(&seg(5, 1, 100)).await.unwrap();
        drop(again);
        let third = open_mem(&store, "a", config(None, None)).await;
        assert_eq!(starts(&third), vec![0, 1, 2, 3, 4, 5], "cut {cut}");
        drop(third);
        store
            .delete_segment(&name("a"), BASE + 5 * 2000)
            .await
            .unwrap();
    }
    // Garbage after the last record is ignored and cut off by the next append.
    let mut j = store.read_file("a/index.journal").unwrap().to_vec();
    j.extend_from_slice(&[0, 0, 0, 40, 1, 2, 3]);
    store.put_file("a/index.journal", &j);
    let again = open_mem(&store, "a", config(None, None)).await;
    again.record(&seg(6, 1, 100)).await.unwrap();
    drop(again);
    let last = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&last), vec![0, 1, 2, 3, 4, 6]);
    let r = tern_core::dvr::journal::replay(&store.read_file("a/index.journal").unwrap()).unwrap();
    assert_eq!(r.tail, tern_core::dvr::Tail::Clean);
}

#[tokio::test]
async fn damaged_and_stray_files_at_open() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..4 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    drop(dvr);
    let good = tern_core::segment_codec::encode(&seg(9, 1, 100));
    // The newest indexed file damaged (same size), a whole stray, a damaged stray,
    // a stray holding another segment than its name says, a leftover temp file.
    let mut bad = store
        .read_file(&format!("a/{}.tseg", BASE + 6000))
        .unwrap()
        .to_vec();
    bad[0] = b'X';
    store.put_file(&format!("a/{}.tseg", BASE + 6000), &bad);
    store.put_file(&format!("a/{}.tseg", BASE + 18_000), &good);
    store.put_file(&format!("a/{}.tseg", BASE + 20_000), b"garbage");
    store.put_file(&format!("a/{}.tseg", BASE + 22_000), &good);
    store.put_file(&format!("a/{}.tseg.tmp", BASE + 24_000), b"half");
    // An indexed file gone.
    store.delete_segment(&name("a"), BASE).await.unwrap();
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), vec![1, 2, 9]);
    assert_index_sound(&again).await;
    let files: Vec<String> = store.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(files.len(), 4, "{files:?}"); // three segments + the journal
}

/// A segment file lost from the disk while the DVR runs (someone deleted it, a
/// cache's disk was cleaned): the read that finds it gone takes it out of the index,
/// so it is a gap, and the same segment coming again (a cache fetching it from its
/// peer) is stored again. Before, the index kept it and every later copy was
/// "already stored": a cache fetched it over the link on every read until a restart.
#[tokio::test]
async fn a_segment_lost_from_the_disk_leaves_the_index_and_can_be_stored_again() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..3 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    let lost = BASE + 2000;
    let want = dvr.read(lost).await.unwrap();
    store.delete_segment(&name("a"), lost).await.unwrap();
    assert!(matches!(
        dvr.read(lost).await,
        Err(DvrError::NotFound { .. })
    ));
    assert_eq!(starts(&dvr), vec![0, 2]);
    assert!(matches!(
        dvr.record(&seg(1, 1, 100)).await,
        Ok(RecordOutcome::Stored)
    ));
    assert_eq!(dvr.read(lost).await.unwrap(), want);
    assert_eq!(starts(&dvr), vec![0, 1, 2]);
    assert_index_sound(&dvr).await;
    // And after a restart, the journal agrees.
    drop(dvr);
    let again = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&again), vec![0, 1, 2]);
    assert_index_sound(&again).await;
}

#[tokio::test]
async fn foreign_journal_is_refused_with_its_path() {
    let store = Arc::new(MemStore::new("/dvr"));
    store.put_file("a/index.journal", b"something else entirely");
    let err = Dvr::open(store, name("a"), config(None, None))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("mem:/dvr/a/index.journal"), "{msg}");
    assert!(msg.contains("move it away"), "{msg}");
}

#[tokio::test]
async fn compaction_keeps_the_journal_bounded() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(Some(10), None)).await;
    for i in 0..3000 {
        dvr.record(&seg(i, 1, 10)).await.unwrap();
    }
    let j = store.read_file("a/index.journal").unwrap();
    let r = tern_core::dvr::journal::replay(&j).unwrap();
    assert!(
        r.records <= 2 * 5 + tern_core::dvr::journal::COMPACT_SLACK + 2,
        "{}",
        r.records
    );
    assert_eq!(r.entries.len(), 5);
    drop(dvr);
    let again = open_mem(&store, "a", config(Some(10), None)).await;
    assert_eq!(starts(&again), (2995..3000).collect::<Vec<_>>());
}

/// A unique empty directory under the system's temp dir, removed on drop.
pub(super) struct TempDir(pub(super) std::path::PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tern-dvr-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn fs_store_writes_reopens_and_recovers() {
    let tmp = TempDir::new("fs");
    let root = tmp.0.join("storage");
    let fs_store = || -> Arc<dyn DvrStore> { Arc::new(FsStore::new(&root)) };
    let dvr = Dvr::open(fs_store(), name("cams/yard/3"), config(None, None))
        .await
        .unwrap();
    for i in 0..4 {
        dvr.record(&seg(i, 1, 500)).await.unwrap();
    }
    let dir = root.join("cams/yard/3");
    let first = dir.join(format!("{BASE}.tseg"));
    assert_eq!(
        std::fs::read(&first).unwrap(),
        tern_core::segment_codec::encode(&seg(0, 1, 500)).to_vec()
    );
    assert_eq!(dvr.read(BASE).await.unwrap().len() as u64, seg_bytes(500));
    drop(dvr);

    // A leftover temp file, a stray segment and a torn journal tail.
    std::fs::write(dir.join("123.tseg.tmp"), b"partial").unwrap();
    std::fs::write(
        dir.join(format!("{}.tseg", BASE + 10_000)),
        tern_core::segment_codec::encode(&seg(5, 1, 500)),
    )
    .unwrap();
    let jpath = dir.join("index.journal");
    let j = std::fs::read(&jpath).unwrap();
    std::fs::write(&jpath, &j[..j.len() - 7]).unwrap();

    let again = Dvr::open(fs_store(), name("cams/yard/3"), config(None, None))
        .await
        .unwrap();
    assert_eq!(starts(&again), vec![0, 1, 2, 3, 5]);
    assert!(!dir.join("123.tseg.tmp").exists());
    assert_index_sound(&again).await;
    again.record(&seg(6, 1, 500)).await.unwrap();
    drop(again);
    let third = Dvr::open(fs_store(), name("cams/yard/3"), config(None, None))
        .await
        .unwrap();
    assert_eq!(starts(&third), vec![0, 1, 2, 3, 5, 6]);
    assert_eq!(third.ranges(), vec![(BASE, 8000), (BASE + 10_000, 4000)]);
}

#[tokio::test]
async fn fs_store_unwritable_path_is_a_clear_error() {
    let tmp = TempDir::new("ro");
    std::fs::create_dir_all(&tmp.0).unwrap();
    // A file where the DVR root's directory should be.
    let blocker = tmp.0.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = Dvr::open(
        Arc::new(FsStore::new(blocker.join("dvr"))),
        name("a"),
        config(None, None),
    )
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("cannot create directory"), "{msg}");
    assert!(msg.contains(&blocker.display().to_string()), "{msg}");
}

#[test]
fn bench_index_runs() {
    let b = bench_index(50_000);
    assert_eq!(b.entries, 50_000);
    assert!(b.journal_bytes > 50_000 * 60);
}

/// The runtime opens a DVR per stream with `dvr` and records the hub's segments.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: lets the runtime record
async fn runtime_records_streams_with_dvr() {
    let cfg = tern_core::config::parse(
        "http 127.0.0.1:0;\nsegment_duration 0.5;\n\
         stream main { input fake://fake?width=256&height=16&gop=0.2; dvr /storage 1h; }\n\
         stream plain { input fake://fake?width=256&height=16; }\n",
    )
    .unwrap();
    let disks = MemDisks::new();
    let node = crate::runtime::start_seeded_with(
        &cfg,
        tern_net::TokioNet,
        tern_net::TokioClock::new(),
        1,
        DvrStores::Memory(disks.clone()),
    )
    .await
    .unwrap();
    let main = node.ctx.entry(&name("main")).unwrap();
    assert!(node.ctx.entry(&name("plain")).unwrap().dvr.is_none());
    let dvr = main.dvr.clone().unwrap();
    let mut waited = 0;
    while dvr.status().segments < 2 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let st = dvr.status();
    assert!(st.segments >= 2, "{st:?}");
    assert_eq!(st.state, RecordingState::Recording);
    assert_eq!(st.ranges.len(), 1, "{st:?}");
    let first = dvr.segments(0, u64::MAX)[0];
    let bytes = dvr.read(first.utc_start_ms).await.unwrap();
    assert!(tern_core::segment_codec::decode(bytes).is_ok());
    assert!(disks
        .disk("/storage")
        .files()
        .iter()
        .any(|(p, _)| p == "main/index.journal"));
    node.shutdown().await;
}

/// Two viewers filling a cache with the same segment at the same time: one writes
/// it, the other skips it (they never write the same file at once), and what is
/// indexed is whole.
#[tokio::test]
async fn the_same_segment_recorded_twice_at_once_is_written_once() {
    let tmp = TempDir::new("twice");
    let store: Arc<dyn DvrStore> = Arc::new(FsStore::new(tmp.0.join("cache")));
    let dvr = Dvr::open(store, name("main"), config(None, None))
        .await
        .unwrap();
    for i in 0..5 {
        let s = seg(i, 1, 200_000);
        let (a, b) = tokio::join!(dvr.record(&s), dvr.record(&s));
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o == RecordOutcome::Skipped);
        assert_eq!(outcomes, [RecordOutcome::Stored, RecordOutcome::Skipped]);
    }
    assert_eq!(starts(&dvr), vec![0, 1, 2, 3, 4]);
    assert_index_sound(&dvr).await;
    // Nothing is left marked as being written: a later record of a new one works.
    assert_eq!(
        dvr.record(&seg(5, 1, 100)).await.unwrap(),
        RecordOutcome::Stored
    );
}

/// A journal compaction that fails (here its rename; on a full disk, its write) does
/// not stop the journal: the change is appended instead, the snapshot is tried again
/// later, and a power cut then loses nothing.
#[tokio::test]
async fn a_failed_compaction_falls_back_to_appending() {
    use tern_core::dvr::journal::{needs_compaction, replay};
    let store = Arc::new(MemStore::new("/dvr"));
    // 20 s of depth: 10 segments live, two records (add, delete) per new segment.
    let dvr = open_mem(&store, "a", config(Some(20), None)).await;
    let records = || replay(&store.read_file("a/index.journal").unwrap_or_default()).unwrap();
    let mut i = 0;
    loop {
        let before = records().records;
        // Due at this segment's add, or at the delete that retention then logs.
        let live = dvr.status().segments;
        let due = needs_compaction(before + 1, live + 1) || needs_compaction(before + 2, live);
        if due {
            // The segment's own rename passes, the snapshot's fails.
            store.fail_later(Fault::Rename, 1, 1);
        }
        dvr.record(&seg(i, 1, 100)).await.unwrap();
        i += 1;
        if due {
            let after = records();
            assert_eq!(after.records, before + 2, "appended, not lost");
            let journaled: Vec<u64> = after
                .entries
                .iter()
                .map(|e| (e.utc_start_ms - BASE) / 2000)
                .collect();
            assert_eq!(journaled, starts(&dvr));
            break;
        }
        assert!(i < 5000, "compaction never came due");
    }
    // Later the snapshot is tried again, works, and the journal shrinks (without
    // it, 600 more records would make it over 1600).
    let at_failure = records().records;
    for _ in 0..300 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
        i += 1;
    }
    assert!(records().records < at_failure, "{}", records().records);
    drop(dvr);
    store.crash();
    let again = open_mem(&store, "a", config(Some(20), None)).await;
    // Nothing lost; a segment whose deletion was not yet durable may come back.
    let kept = starts(&again);
    assert!(
        kept.ends_with(&((i - 10)..i).collect::<Vec<_>>()),
        "{kept:?}"
    );
    assert!(kept.len() <= 11, "{kept:?}");
    assert_index_sound(&again).await;
}

/// Finding 5: a segment overwritten on disk (same size, so the index and the
/// listing agree) was served whole as 200 with corrupt content. Now the digest check
/// makes it a gap: `read` refuses it naming the file, and a range skips it.
#[tokio::test]
async fn overwritten_segment_is_a_gap_not_corrupt_bytes() {
    use crate::archive::{Archive, ArchiveSegment};
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    for i in 0..3 {
        dvr.record(&seg(i, 1, 100)).await.unwrap();
    }
    let path = format!("a/{}.tseg", BASE + 2000);
    let mut bad = store.read_file(&path).unwrap().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55; // inside a frame payload: structurally still a segment
    store.put_file(&path, &bad);

    let err = dvr.read(BASE + 2000).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DvrError::Damaged { .. }), "{msg}");
    assert!(
        msg.contains(&format!("mem:/dvr/a/{}.tseg", BASE + 2000)),
        "{msg}"
    );
    assert!(msg.contains("digest"), "{msg}");
    // Out of the index: the archive shows a gap where it was.
    assert_eq!(starts(&dvr), vec![0, 2]);

    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let sent = dvr.range(BASE, BASE + 6000, tx).await.unwrap();
    assert_eq!(sent, 2);
    let mut got = Vec::new();
    while let Some(s) = rx.recv().await {
        let ArchiveSegment::Stored(b) = s else {
            panic!("a local DVR sends stored bytes")
        };
        got.push(tern_core::segment_codec::decode(b).unwrap().utc_start_ms);
    }
    assert_eq!(got, vec![BASE, BASE + 4000]);
}

/// A file of another size than the index recorded is refused without being read.
#[tokio::test]
async fn segment_of_another_size_is_refused() {
    let store = Arc::new(MemStore::new("/dvr"));
    let dvr = open_mem(&store, "a", config(None, None)).await;
    dvr.record(&seg(0, 1, 100)).await.unwrap();
    dvr.record(&seg(1, 1, 100)).await.unwrap();
    let path = format!("a/{BASE}.tseg");
    let mut b = store.read_file(&path).unwrap().to_vec();
    b.truncate(b.len() - 10);
    store.put_file(&path, &b);
    let msg = dvr.read(BASE).await.unwrap_err().to_string();
    assert!(msg.contains("not the"), "{msg}");
    assert!(msg.contains(&format!("{BASE}.tseg")), "{msg}");
    assert!(dvr.read(BASE + 2000).await.is_ok());
}

/// Old files (segment encoding version 1, no digest) stay readable.
#[tokio::test]
async fn version_1_files_stay_readable() {
    let store = Arc::new(MemStore::new("/dvr"));
    let v2 = tern_core::segment_codec::encode(&seg(0, 1, 100));
    let mut v1 = v2[..6].to_vec();
    v1[4] = 1;
    v1.extend_from_slice(&v2[tern_core::segment_codec::DIGESTED_FROM..]);
    store.put_file(&format!("a/{BASE}.tseg"), &v1);
    let dvr = open_mem(&store, "a", config(None, None)).await;
    assert_eq!(starts(&dvr), vec![0]);
    assert_eq!(dvr.read(BASE).await.unwrap().as_ref(), &v1[..]);
}

/// Finding 6: a sparse 200 MB `.tseg` was read whole at start. Now it is refused
/// from its metadata (larger than any segment), and so is a sparse file under the
/// size limit; a FIFO under a segment's name does not hang the open.
#[cfg(unix)]
#[tokio::test]
async fn fs_store_refuses_impossible_files_without_reading_them() {
    let tmp = TempDir::new("sparse");
    let root = tmp.0.join("storage");
    let dir = root.join("a");
    std::fs::create_dir_all(&dir).unwrap();
    let big = std::fs::File::create(dir.join(format!("{BASE}.tseg"))).unwrap();
    big.set_len(200 << 20).unwrap();
    let sparse = std::fs::File::create(dir.join(format!("{}.tseg", BASE + 2000))).unwrap();
    sparse.set_len(8 << 20).unwrap();
    let store = FsStore::new(&root);
    let e = store
        .read_segment(&name("a"), BASE, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than any segment"), "{e}");
    let e = store
        .read_segment(&name("a"), BASE + 2000, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("sparse"), "{e}");
    let fifo = dir.join(format!("{}.tseg", BASE + 4000));
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if status.map(|s| s.success()).unwrap_or(false) {
        let e = store
            .read_segment(&name("a"), BASE + 4000, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
    // Open lists them as strays, refuses each, and indexes nothing.
    let dvr = Dvr::open(Arc::new(store), name("a"), config(None, None))
        .await
        .unwrap();
    assert_eq!(starts(&dvr), Vec::<u64>::new());
}
