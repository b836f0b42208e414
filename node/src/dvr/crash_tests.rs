//! The crash test of the real filesystem store: `Dvr` on `FsStore` over `CrashFs`
//! records segments (with retention deleting, a stray file and a journal rewrite at
//! reopen), then a crash is simulated after every prefix of its filesystem calls, in
//! every way the model allows, and each crashed disk is reopened through the real
//! `FsStore` and `Dvr::open` and checked. docs/dvr.md argues why this must hold.
//!
//! Owns: the scenario and the invariants of a reopened archive. Must not: assert
//! anything about the model itself (`store/crash.rs` tests that).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tern_core::config::DvrConfig;
use tern_core::segment_codec;

use super::store::crash::{CrashFs, Op};
use super::store::{Fs, StdFs, SEGMENT_SUFFIX};
use super::tests::{config, name, seg, seg_bytes, TempDir, BASE};
use super::*;

const STREAM: &str = "cams/yard";
const PAYLOAD: usize = 200;
/// Segments the scenario records; the first is the one recorded after each crash.
const SEGMENTS: u64 = 10;
const AFTER_CRASH: u64 = 100;

/// Which way old segments go.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// A size limit of four and a half segments: from the fifth on, each record
    /// deletes the oldest (retention).
    Retention,
    /// No limit, but a disk of six segments and a bit: writes fail with `ENOSPC`
    /// (segments and journal records alike) and `Dvr` deletes the oldest to make room.
    DiskFull,
}

impl Setup {
    fn cfg(self) -> DvrConfig {
        match self {
            Setup::Retention => config(None, Some(4 * seg_bytes(PAYLOAD) + seg_bytes(PAYLOAD) / 2)),
            Setup::DiskFull => config(None, None),
        }
    }

    fn capacity(self) -> Option<u64> {
        match self {
            Setup::Retention => None,
            Setup::DiskFull => Some(6 * seg_bytes(PAYLOAD) + 512),
        }
    }
}

fn bytes_of(i: u64) -> Bytes {
    segment_codec::encode(&seg(i, 1, PAYLOAD))
}

/// What the scenario did: for each segment it stored (by UTC start), the number of
/// filesystem calls made when the store acknowledged it.
#[derive(Debug, Default)]
struct Acked(BTreeMap<u64, usize>);

/// The scenario, on any filesystem (`ops`: calls made so far).
async fn scenario<F: Fs>(root: &Path, fs: F, ops: impl Fn() -> usize, setup: Setup) -> Acked {
    let store: Arc<dyn DvrStore> = Arc::new(FsStore::with_fs(root, fs));
    let mut acked = Acked::default();
    let dvr = Dvr::open(store.clone(), name(STREAM), setup.cfg())
        .await
        .unwrap();
    // The first record writes the journal whole (atomic rewrite); the next ones
    // append; from the fifth on, retention deletes the oldest and journals it.
    for i in 0..5 {
        assert_eq!(
            dvr.record(&seg(i, 1, PAYLOAD)).await.unwrap(),
            RecordOutcome::Stored
        );
        acked.0.insert(BASE + i * 2000, ops());
    }
    drop(dvr);
    // A process that died between a segment's write and its journal record: a
    // stray file, which the next open re-indexes (and rewrites the journal).
    store
        .write_segment(&name(STREAM), BASE + 5 * 2000, bytes_of(5))
        .await
        .unwrap();
    acked.0.insert(BASE + 5 * 2000, ops());
    let dvr = Dvr::open(store.clone(), name(STREAM), setup.cfg())
        .await
        .unwrap();
    for i in 6..SEGMENTS {
        assert_eq!(
            dvr.record(&seg(i, 1, PAYLOAD)).await.unwrap(),
            RecordOutcome::Stored
        );
        acked.0.insert(BASE + i * 2000, ops());
    }
    acked
}

fn segment_path(root: &Path, utc: u64) -> PathBuf {
    root.join(STREAM).join(format!("{utc}{SEGMENT_SUFFIX}"))
}

/// The segments a crash after the first `k` calls must not lose: acknowledged by
/// then, and not yet deleted (by retention) by then.
fn must_survive(acked: &Acked, log: &[Op], root: &Path, k: usize) -> Vec<u64> {
    acked
        .0
        .iter()
        .filter(|(_, at)| **at <= k)
        .map(|(utc, _)| *utc)
        .filter(|utc| {
            let p = segment_path(root, *utc);
            !log[..k].iter().any(|op| *op == Op::Remove(p.clone()))
        })
        .collect()
}

/// What [`check`] found.
struct Checked {
    /// The segments indexed at the reopen.
    have: Vec<u64>,
    /// Filesystem calls made (when recording) once the segment recorded after the
    /// reopen was acknowledged.
    next_acked_at: usize,
}

/// Reopens a crashed disk and checks it, then records segment `next` and reopens
/// again; `Err` says what is wrong.
async fn check(
    root: &Path,
    fs: CrashFs,
    must: &[u64],
    next: u64,
    setup: Setup,
) -> Result<Checked, String> {
    let store: Arc<dyn DvrStore> = Arc::new(FsStore::with_fs(root, fs.clone()));
    let dvr = Dvr::open(store.clone(), name(STREAM), setup.cfg())
        .await
        .map_err(|e| format!("open failed: {e}"))?;
    let have: Vec<u64> = dvr
        .segments(0, u64::MAX)
        .iter()
        .map(|s| s.utc_start_ms)
        .collect();
    // Every indexed segment reads back whole and is one the scenario wrote.
    for &utc in &have {
        let i = (utc - BASE) / 2000;
        if utc < BASE || !(utc - BASE).is_multiple_of(2000) || (i >= SEGMENTS && i != AFTER_CRASH) {
            return Err(format!("indexed a segment never written: {utc}"));
        }
        let b = dvr
            .read(utc)
            .await
            .map_err(|e| format!("indexed segment {i} unreadable: {e}"))?;
        if b != bytes_of(i) {
            return Err(format!("segment {i} reads back other bytes"));
        }
    }
    for utc in must {
        if !have.contains(utc) {
            return Err(format!(
                "acknowledged segment {} lost (index holds {:?})",
                (utc - BASE) / 2000,
                have.iter().map(|u| (u - BASE) / 2000).collect::<Vec<_>>()
            ));
        }
    }
    if let Some(p) = fs
        .view()
        .keys()
        .find(|p| p.to_string_lossy().ends_with(".tmp"))
    {
        return Err(format!(
            "a temporary file is left after open: {}",
            p.display()
        ));
    }
    // The reopened archive keeps working: it records, and a clean reopen finds
    // the same index (so the journal it appended to is sound).
    match dvr.record(&seg(next, 1, PAYLOAD)).await {
        Ok(RecordOutcome::Stored) => {}
        other => return Err(format!("recording after the crash: {other:?}")),
    }
    let next_acked_at = fs.ops();
    let before = dvr.segments(0, u64::MAX);
    drop(dvr);
    let dvr = Dvr::open(store, name(STREAM), setup.cfg())
        .await
        .map_err(|e| format!("second open failed: {e}"))?;
    let after = dvr.segments(0, u64::MAX);
    if after != before {
        return Err(format!(
            "a clean reopen after recording found another index: {after:?}, not {before:?}"
        ));
    }
    for s in after {
        dvr.read(s.utc_start_ms)
            .await
            .map_err(|e| format!("after the second open: {e}"))?;
    }
    Ok(Checked {
        have,
        next_acked_at,
    })
}

#[tokio::test]
async fn fs_store_survives_a_crash_after_every_prefix_of_its_filesystem_calls() {
    crash_after_every_prefix(Setup::Retention).await;
}

#[tokio::test]
async fn fs_store_on_a_full_disk_survives_a_crash_after_every_prefix_of_its_calls() {
    crash_after_every_prefix(Setup::DiskFull).await;
}

async fn crash_after_every_prefix(setup: Setup) {
    let started = tokio::time::Instant::now();
    let root = PathBuf::from("/dvr");
    let fs = CrashFs::new(&root);
    fs.set_capacity(setup.capacity());
    fs.record();
    let counter = fs.clone();
    let acked = scenario(&root, fs.clone(), move || counter.ops(), setup).await;
    let log = fs.log();
    assert!(
        log.iter().any(|op| matches!(op, Op::Remove(_))),
        "no segment was deleted: {log:?}"
    );
    assert!(
        log.iter()
            .filter(|op| matches!(op, Op::Rename { to, .. } if to.ends_with("index.journal")))
            .count()
            >= match setup {
                Setup::Retention => 2,
                // The rewrite at the reopen finds no room for a second copy.
                Setup::DiskFull => 1,
            },
        "the journal was not rewritten at the reopen: {log:?}"
    );

    let fail = |k: usize, log: &[Op], how: &str, why: String| -> ! {
        panic!(
            "crash after {k} of {} filesystem calls ({how}): {why}\nlast calls: {:#?}",
            log.len(),
            &log[k.saturating_sub(6)..k]
        )
    };
    let (mut states, mut points2, mut states2) = (0usize, 0usize, 0usize);
    // A disk and what it must hold, checked once: many crash points leave the same.
    let mut done = std::collections::BTreeSet::new();
    for k in 0..=log.len() {
        let must = must_survive(&acked, &log, &root, k);
        for (crashed, how) in fs.crash_states(k) {
            if !done.insert((crashed.fingerprint(), must.clone())) {
                continue;
            }
            states += 1;
            crashed.record();
            let c = check(&root, crashed.clone(), &must, AFTER_CRASH, setup)
                .await
                .unwrap_or_else(|why| fail(k, &log, &how, why));
            // A second crash, during the recovery or the recording after it: what
            // the reopen indexed is as durable as what was acknowledged.
            let log2 = crashed.log();
            let mut acked2 = Acked(c.have.iter().map(|u| (*u, 0)).collect());
            acked2.0.insert(BASE + AFTER_CRASH * 2000, c.next_acked_at);
            for k2 in 0..=log2.len() {
                points2 += 1;
                let must2 = must_survive(&acked2, &log2, &root, k2);
                for (crashed2, how2) in crashed.crash_states(k2) {
                    if !done.insert((crashed2.fingerprint(), must2.clone())) {
                        continue;
                    }
                    states2 += 1;
                    if let Err(why) = check(&root, crashed2, &must2, AFTER_CRASH + 1, setup).await {
                        fail(
                            k2,
                            &log2,
                            &how2,
                            format!(
                                "{why} (a second crash, after the first after {k} calls: {how})"
                            ),
                        );
                    }
                }
            }
        }
    }
    println!(
        "FsStore crash test ({setup:?}): {} crash points (every prefix of {} filesystem calls), {states} \
         distinct crashed disks reopened and checked; then {points2} second crash points \
         during their recovery, {states2} crashed disks; {:.2} s",
        log.len() + 1,
        log.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The model's live view after the scenario is what the real filesystem holds
/// after the same scenario: the crash test runs the store's real calls.
#[tokio::test]
async fn crash_model_matches_the_real_filesystem() {
    let tmp = TempDir::new("crash-model");
    let real_root = tmp.0.join("dvr");
    scenario(&real_root, StdFs, || 0, Setup::Retention).await;
    let model_root = PathBuf::from("/dvr");
    let fs = CrashFs::new(&model_root);
    scenario(&model_root, fs.clone(), || 0, Setup::Retention).await;
    let model: Vec<(PathBuf, Option<Vec<u8>>)> = fs
        .view()
        .into_iter()
        .filter_map(|(p, d)| Some((p.strip_prefix(&model_root).ok()?.to_path_buf(), d)))
        .filter(|(p, _)| !p.as_os_str().is_empty())
        .collect();
    let mut real = Vec::new();
    let mut dirs = vec![real_root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&real_root).unwrap().to_path_buf();
            if p.is_dir() {
                dirs.push(p);
                real.push((rel, None));
            } else {
                real.push((rel, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    real.sort();
    let names =
        |v: &[(PathBuf, Option<Vec<u8>>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&model), names(&real));
    assert!(model == real, "same names, other contents");
}
