//! The archive scenarios (docs/design.md §5 archive fallback, §6 DVR, §8): the
//! seed cluster with `dvr /dvr` on the origin, its disk in memory
//! (`tern_node::dvr::MemDisks`, kept across restarts, power-cut by a crash), one named
//! test per scenario. Each checks the live oracles of `tern_sim::oracle` on the
//! origin's and the edge's live stream (a DVR in trouble must not disturb live: disk
//! faults get no fault window), and the archive oracles of `tern_sim::archive` on
//! every look of an archive probe: the index never lists a segment that cannot be
//! fetched whole, the ranges show every gap, discontinuity flags are truthful, the
//! edge answers byte for byte what the origin answers, and stored frames are the
//! frames seen live.
//!
//! The scenarios (lettered a to e):
//! - (a) `ten_minutes_of_archive_identical_on_edge_and_origin`: 10 simulated minutes
//!   recorded (about 6 s of wall time, optimised), all 299 segments byte-identical
//!   from the edge and the origin, and identical to what live M4F carried;
//! - (b) `origin_crash_loses_at_most_the_segment_being_written`;
//! - (c) `archive_through_the_edge_during_a_partition`, and
//!   `an_archive_read_through_the_edge_ends_when_the_origin_goes_silent` (found that
//!   a cut link mid-range left the edge's request hanging for good; fixed: the edge
//!   gives up after `ARCHIVE_IDLE_TIMEOUT` of silence and says why);
//! - (d) `disk_full_deletes_the_oldest_then_pauses_and_resumes`,
//!   `power_cut_while_making_room_brings_back_a_whole_segment`, and
//!   `a_slow_archive_reader_while_the_disk_fills_gets_what_exists` (found that a
//!   segment deleted mid-range ended the range; fixed: it is skipped);
//! - (e) `io_errors_and_power_cuts_never_leave_a_dangling_index_entry`;
//! - `a_paused_archive_reader_gets_the_whole_range` (found that the live 5 s stall
//!   cut applied to archive readers; fixed: archive responses wait for their reader).
//!
//! A segment of the 256×16 fake stream is 2 s and about 318 KB (`SEGMENT_BYTES`); on
//! this cluster the origin closes one every 2 s from 28 ms after its start, and after
//! a restart from the first frame of the new source.
//!
//! Owns: the archive scenarios and their specific checks. Must not: loosen an oracle
//! for one scenario (a scenario that needs it has found something to report), read
//! a node's disk to judge the archive (the cluster endpoints are what is judged; the
//! disk is only filled and broken), or depend on wall time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_node::dvr::recorder::PAUSE_RETRY;
use tern_sim::archive::{self, ArchiveClient, FetchError, Look, Probe, ProbeSpec};
use tern_sim::faults::{fmt_ms, Action, DiskFault, Fault, Schedule};
use tern_sim::oracle::{self, Observation, ObserverSpec, Report, SeenSegment};
use tern_sim::sweep::{EDGE, ORIGIN_DVR, SEGMENT_BYTES};
use tern_sim::{http_get, node_seed, sim_ms, Cluster, SIM_EPOCH_MS, SIM_EPOCH_UNIX_SECS};

/// The origin's segment duration (the default).
const SEGMENT_MS: u64 = 2000;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// The seed cluster with a recording origin, observed live on both nodes (M4S) and
/// on the origin's M4F (every segment it closes): `[m4s origin, m4s edge, m4f origin]`.
fn recording_cluster(seed: u64, duration: Duration) -> (Cluster, Vec<Observation>) {
    let mut c = Cluster::new(seed, duration);
    c.node("origin", ORIGIN_DVR).node("edge", EDGE);
    let obs = vec![
        c.observe(ObserverSpec::m4s("origin", 8888, 1)),
        c.observe(ObserverSpec::m4s("edge", 9999, 2)),
        c.observe(ObserverSpec::m4f("origin", 8888, 1)),
    ];
    (c, obs)
}

/// Adds an archive probe of `main` on the origin (also fetching from the edge) that
/// looks at each time of `at`.
fn add_probe(c: &mut Cluster, at: Vec<Duration>) -> Probe {
    let mut spec = ProbeSpec::new("origin", 8888, at).also("edge", 9999);
    spec.seed = node_seed(c.seed(), &spec.host);
    let host = spec.host.clone();
    let (probe, fut) = archive::probe(spec);
    c.client(&host, fut);
    probe
}

/// The live oracles over `obs` with the schedule's windows (disk faults have none).
fn check_live(
    name: &str,
    c: &Cluster,
    schedule: &Schedule,
    end: Duration,
    obs: &[Observation],
) -> Report {
    let report = oracle::check(obs, &schedule.windows(), end.as_millis() as u64);
    println!("{name} (seed {}):\n{}{schedule}", c.seed(), report.render());
    report.assert_ok(&format!(
        "{schedule}scenario {name}, seed {}: cargo test -p tern-sim --test archive_scenarios \
         {name} -- --nocapture (TERN_SIM_TRACE=1 prints the trace)",
        c.seed()
    ));
    report
}

/// The archive oracles over every look of `probe` that `keep` selects; panics with
/// every violation. Returns how many looks were checked.
fn check_looks(
    name: &str,
    probe: &Probe,
    obs: &[Observation],
    keep: impl Fn(&Look) -> bool,
) -> usize {
    let looks = probe.looks();
    let mut all = Vec::new();
    let mut checked = 0;
    for l in looks.iter().filter(|l| keep(l)) {
        checked += 1;
        println!(
            "{name}: look at {}: {} entries, ranges {:?}, fetched {:?}",
            fmt_ms(l.at_ms),
            l.entries().len(),
            l.index.as_ref().map(|i| ranges_sim(&i.facts.ranges)),
            l.fetched
                .iter()
                .map(|f| (
                    f.node.as_str(),
                    f.segments
                        .as_ref()
                        .map(|s| s.len())
                        .map_err(|e| e.to_string())
                ))
                .collect::<Vec<_>>()
        );
        all.extend(archive::check_look(probe.name(), l, obs));
    }
    if !all.is_empty() {
        let list: Vec<String> = all.iter().take(25).map(|v| format!("  {v}")).collect();
        panic!(
            "{name}: {} archive oracle violation(s):\n{}\nreplay: cargo test -p tern-sim \
             --test archive_scenarios {name} -- --nocapture",
            all.len(),
            list.join("\n")
        );
    }
    checked
}

/// Ranges in simulated ms (start, end), for messages.
fn ranges_sim(r: &[(u64, u64)]) -> Vec<(String, String)> {
    r.iter()
        .map(|(s, d)| (fmt_ms(s - SIM_EPOCH_MS), fmt_ms(s + d - SIM_EPOCH_MS)))
        .collect()
}

/// Lines of the trace from `host` containing `needle`.
fn trace_has(c: &Cluster, host: &str, needle: &str) -> Vec<String> {
    let host = format!(" {host} ");
    c.trace()
        .lines()
        .into_iter()
        .filter(|l| l.contains(&host) && l.contains(needle))
        .collect()
}

/// When the origin next closes a segment after `after_ms` (simulated ms), from what
/// its M4F observer `live` saw so far: segments close every [`SEGMENT_MS`] after
/// the end of the last one seen.
fn next_close(live: &Observation, after_ms: u64) -> u64 {
    let log = live.log();
    let last = log.segments.last().expect("no segment seen yet");
    let mut t = last.start_ms + u64::from(last.duration_ms);
    while t <= after_ms {
        t += SEGMENT_MS;
    }
    t
}

/// Crashes the origin at `at` (its disk loses what it had not synced) and starts it
/// again `down` later; adds the fault to `s` (for the oracles' windows).
fn crash_origin(c: &mut Cluster, s: &mut Schedule, at: Duration, down: Duration) {
    c.run_until(at).expect("simulation");
    c.apply(&Action::Crash("origin".into()));
    c.run_until(at + down).expect("simulation");
    c.apply(&Action::Bounce("origin".into()));
    s.add(
        at,
        down,
        Fault::Crash {
            host: "origin".into(),
        },
    );
}

/// (a) Ten simulated minutes of recording on the origin: every segment of the origin's
/// index, fetched over M4F from the edge (through its archive route) and from the
/// origin, is byte-identical in the canonical encoding; it is the very segment the
/// origin's live M4F carried, none is missing; the player URLs (recording status,
/// archive playlist, a segment, a continuous range) answer the same bytes on both.
///
/// Outside CI, `TERN_SIM_ARCHIVE_MINUTES=60 cargo test -p tern-sim --test
/// archive_scenarios ten_minutes -- --nocapture` runs a simulated hour (1799
/// segments, 572 MB, all identical: 138 s of wall time here; the simulated disk
/// holds it all in memory).
#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn ten_minutes_of_archive_identical_on_edge_and_origin() {
    let minutes: u64 = std::env::var("TERN_SIM_ARCHIVE_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .filter(|&m| m > 0)
        .unwrap_or(10);
    println!("recording {minutes} simulated minutes (TERN_SIM_ARCHIVE_MINUTES)");
    let recorded = Duration::from_secs(minutes * 60);
    let end = recorded + secs(3.0);
    let (mut c, obs) = recording_cluster(41, end + secs(1.0));
    let probe = add_probe(&mut c, vec![recorded]);
    type Answers = Vec<(String, u16, u16, bool, usize)>;
    let answers: Arc<Mutex<Answers>> = Arc::default();
    let a = answers.clone();
    c.client("player", async move {
        tokio::time::sleep(recorded + secs(1.0)).await;
        let from = SIM_EPOCH_UNIX_SECS + 60;
        let mut paths = vec![
            "/main/recording_status.json".to_owned(),
            format!("/main/archive-{from}-20.m3u8"),
            format!("/main/archive-{from}-6.ts"),
        ];
        let (_, playlist) = http_get("origin", 8888, &paths[1]).await?;
        let text = String::from_utf8_lossy(&playlist).into_owned();
        paths.extend(
            text.lines()
                .filter(|l| l.starts_with("dvr-"))
                .take(2)
                .map(|l| format!("/main/{l}")),
        );
        for p in paths {
            let (so, bo) = http_get("origin", 8888, &p).await?;
            let (se, be) = http_get("edge", 9999, &p).await?;
            a.lock()
                .unwrap()
                .push((p, so.as_u16(), se.as_u16(), bo == be, bo.len()));
        }
        Ok(())
    });
    c.run_until(end).expect("simulation");
    check_live(
        "ten_minutes_of_archive_identical_on_edge_and_origin",
        &c,
        &Schedule::new(),
        end,
        &obs,
    );
    check_looks(
        "ten_minutes_of_archive_identical_on_edge_and_origin",
        &probe,
        &obs,
        |_| true,
    );
    let looks = probe.looks();
    let look = &looks[0];
    let n = look.entries().len() as u64;
    println!(
        "{n} segments ({} MB) identical on edge and origin; fetched from the origin by {}, \
         from the edge by {}",
        archive::encodings(look.recorded())
            .values()
            .map(|b| b.len())
            .sum::<usize>()
            / 1_000_000,
        fmt_ms(look.fetched[0].done_ms),
        fmt_ms(look.fetched[1].done_ms)
    );
    assert!(
        n >= minutes * 60 * 1000 / SEGMENT_MS - 2,
        "only {n} segments in {minutes} minutes"
    );
    assert_eq!(look.fetched.len(), 2);
    assert_eq!(
        look.index.as_ref().unwrap().facts.ranges.len(),
        1,
        "one unbroken range"
    );
    let (missing, v) = archive::compare_with_live("archivist", look, &obs[2], 100);
    assert!(v.is_empty(), "{v:#?}");
    assert!(
        missing.is_empty(),
        "segments the origin closed but did not record: {missing:#?}"
    );
    let answers = answers.lock().unwrap();
    println!("{answers:#?}");
    assert_eq!(answers.len(), 5, "{answers:#?}");
    for (p, so, se, same, len) in answers.iter() {
        assert_eq!((*so, *se), (200, 200), "{p}");
        assert!(*same, "{p}: the edge answers other bytes than the origin");
        assert!(*len > 0, "{p}");
    }
}

/// (b) The origin crashes twice (its disk losing what it had not synced) and comes
/// back 3 s later each time. The first crash falls 15 ms after a segment closed, while
/// that segment is being written (each disk operation takes 30 ms here): that segment
/// is lost, and only it. The second falls 45 ms after a close, once the segment is
/// durable but before its journal record is: the restarted node re-indexes the file,
/// nothing is lost. The ranges (DVR facts, `recording_status.json` on origin and
/// edge) show a gap around each crash, and the index flags the segment after each gap
/// as a discontinuity.
#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn origin_crash_loses_at_most_the_segment_being_written() {
    let name = "origin_crash_loses_at_most_the_segment_being_written";
    let end = secs(40.0);
    let (mut c, obs) = recording_cluster(42, end + secs(1.0));
    c.disk("origin", "/dvr").set_latency(ms(30));
    let probe = add_probe(&mut c, vec![secs(8.0), secs(38.0)]);
    // (origin's status, edge's status, same bytes, origin's body).
    type Status = Vec<(u16, u16, bool, String)>;
    let status: Arc<Mutex<Status>> = Arc::default();
    let st = status.clone();
    c.client("player", async move {
        tokio::time::sleep(secs(38.5)).await;
        let p = "/main/recording_status.json";
        let (so, bo) = http_get("origin", 8888, p).await?;
        let (se, be) = http_get("edge", 9999, p).await?;
        st.lock().unwrap().push((
            so.as_u16(),
            se.as_u16(),
            bo == be,
            String::from_utf8_lossy(&bo).into_owned(),
        ));
        Ok(())
    });
    let mut s = Schedule::new();
    c.run_until(secs(10.0)).expect("simulation");
    let crash1 = next_close(&obs[2], 10_000) + 15;
    crash_origin(&mut c, &mut s, ms(crash1), secs(3.0));
    c.run_until(secs(22.0)).expect("simulation");
    let crash2 = next_close(&obs[2], 22_000) + 45;
    crash_origin(&mut c, &mut s, ms(crash2), secs(3.0));
    c.run_until(end).expect("simulation");
    check_live(name, &c, &s, end, &obs);
    check_looks(name, &probe, &obs, |_| true);

    let looks = probe.looks();
    let look = looks.last().unwrap();
    let (missing, v) = archive::compare_with_live("archivist", look, &obs[2], 100);
    assert!(v.is_empty(), "{v:#?}");
    println!(
        "crashes at {} and {}; missing: {:?}",
        fmt_ms(crash1),
        fmt_ms(crash2),
        missing
            .iter()
            .map(|m| fmt_ms(m.start_ms))
            .collect::<Vec<_>>()
    );
    // The segment being written at the first crash, and nothing else.
    let lost: Vec<&SeenSegment> = missing.iter().collect();
    assert!(lost.len() <= 1, "more than one segment lost: {missing:#?}");
    for m in &lost {
        let closed = m.start_ms + u64::from(m.duration_ms);
        assert!(
            closed <= crash1 && crash1 - closed <= 100,
            "lost segment {m:?} is not the one being written at the first crash"
        );
    }
    assert!(
        !trace_has(
            &c,
            "origin",
            "re-indexed a DVR segment file the index did not list"
        )
        .is_empty(),
        "the second crash left a durable segment the journal did not know: it must be \
         re-indexed at the restart"
    );
    // The ranges show both gaps, and each gap covers no more than the crash, its
    // downtime and what a crash may lose (the open segment and the one being written).
    let ix = look.index.as_ref().unwrap();
    let ranges = &ix.facts.ranges;
    assert_eq!(ranges.len(), 3, "{:?}", ranges_sim(ranges));
    for (i, crash) in [crash1, crash2].into_iter().enumerate() {
        let (a, b) = (ranges[i], ranges[i + 1]);
        let gap_from = a.0 + a.1 - SIM_EPOCH_MS;
        let gap_to = b.0 - SIM_EPOCH_MS;
        let restart = crash + 3000;
        println!(
            "crash {} at {}: gap {}..{}",
            i + 1,
            fmt_ms(crash),
            fmt_ms(gap_from),
            fmt_ms(gap_to)
        );
        assert!(
            gap_from <= crash && gap_to >= restart,
            "the gap hides the crash"
        );
        assert!(
            crash - gap_from <= 2 * SEGMENT_MS + 100,
            "more than the open segment and the one being written lost before the crash"
        );
        assert!(
            gap_to - restart <= 500,
            "recording resumed {} ms after the restart",
            gap_to - restart
        );
    }
    let flagged = ix.entries.iter().filter(|e| e.discontinuity).count();
    assert_eq!(flagged, 2, "one discontinuity after each crash");
    // recording_status.json: same on both nodes, three ranges.
    let status = status.lock().unwrap();
    let (so, se, same, body) = status.first().expect("no recording_status.json answer");
    assert_eq!((*so, *se), (200, 200), "{body}");
    assert!(
        *same,
        "the edge's recording_status.json differs from the origin's"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let r = json["ranges"].as_array().unwrap();
    assert_eq!(r.len(), 3, "{body}");
    for (i, crash) in [crash1, crash2].into_iter().enumerate() {
        let end_s = r[i]["from"].as_u64().unwrap() + r[i]["duration"].as_u64().unwrap();
        let next_s = r[i + 1]["from"].as_u64().unwrap();
        let (crash_s, restart_s) = (
            SIM_EPOCH_UNIX_SECS + crash / 1000,
            SIM_EPOCH_UNIX_SECS + (crash + 3000) / 1000,
        );
        assert!(
            end_s <= crash_s + 1 && next_s >= restart_s,
            "recording_status.json does not show the gap around {}: {body}",
            fmt_ms(crash)
        );
    }
}

/// One archive request a player made.
#[derive(Clone, Debug)]
struct Asked {
    sent_ms: u64,
    done_ms: u64,
    path: String,
    status: u16,
    body: String,
}

/// (c) The link edge <-> origin is cut for 6 s. Every archive request a player makes
/// on the edge in that time (recording status, archive playlist, a segment) gets a 503
/// saying the origin cannot be reached, and so does the edge's own archive index for
/// a peer; every request made once the link is back succeeds. Live delivery follows
/// the partition oracles.
#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn archive_through_the_edge_during_a_partition() {
    let name = "archive_through_the_edge_during_a_partition";
    let (cut, heal, end) = (10_000u64, 16_000u64, secs(24.0));
    let (mut c, obs) = recording_cluster(43, end + secs(1.0));
    let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
    let a = asked.clone();
    c.client("player", async move {
        tokio::time::sleep(secs(6.0)).await;
        let from = SIM_EPOCH_UNIX_SECS + 2;
        let mut i = 0u32;
        while sim_ms() < 23_000 {
            let mut paths = vec![
                "/main/recording_status.json".to_owned(),
                format!("/main/archive-{from}-4.m3u8"),
            ];
            if i.is_multiple_of(2) {
                paths.push(format!("/main/dvr-{}.ts", SIM_EPOCH_MS + 2028));
            }
            for path in paths {
                let sent_ms = sim_ms();
                let (status, body) = http_get("edge", 9999, &path).await?;
                a.lock().unwrap().push(Asked {
                    sent_ms,
                    done_ms: sim_ms(),
                    path,
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                });
            }
            i += 1;
            tokio::time::sleep(secs(0.5)).await;
        }
        Ok(())
    });
    // (simulated ms, entries listed or why not).
    type Indexes = Vec<(u64, Result<usize, FetchError>)>;
    let peer: Arc<Mutex<Indexes>> = Arc::default();
    let p = peer.clone();
    let seed = node_seed(c.seed(), "peer");
    c.client("peer", async move {
        let client = ArchiveClient::new(seed, "123");
        for at in [8_000u64, 12_000, 15_000, 17_000] {
            tokio::time::sleep(ms(at.saturating_sub(sim_ms()))).await;
            let r = client
                .index("edge", 9999, "main", Some(archive::EVERYTHING))
                .await
                .map(|ix| ix.entries.len());
            p.lock().unwrap().push((at, r));
        }
        Ok(())
    });
    let mut s = Schedule::new();
    s.add(
        ms(cut),
        ms(heal - cut),
        Fault::Partition {
            a: "origin".into(),
            b: "edge".into(),
        },
    );
    c.run_schedule(&s, end).expect("simulation");
    check_live(name, &c, &s, end, &obs);
    let asked = asked.lock().unwrap();
    let mut during = 0;
    let mut after = 0;
    for q in asked.iter() {
        let line = format!(
            "{} sent at {}, answered at {}: {} {}",
            q.path,
            fmt_ms(q.sent_ms),
            fmt_ms(q.done_ms),
            q.status,
            q.body
        );
        if q.sent_ms >= cut && q.sent_ms < heal {
            during += 1;
            assert_eq!(q.status, 503, "during the partition: {line}");
            assert!(q.body.contains("cannot be reached"), "{line}");
        } else if q.done_ms < cut || q.sent_ms >= heal {
            after += usize::from(q.sent_ms >= heal);
            assert_eq!(q.status, 200, "outside the partition: {line}");
        }
    }
    let slowest = asked
        .iter()
        .filter(|q| q.sent_ms >= cut && q.sent_ms < heal)
        .map(|q| q.done_ms - q.sent_ms)
        .max();
    println!(
        "{} requests, {during} during the partition (slowest answer {slowest:?} ms), \
         {after} after",
        asked.len()
    );
    assert!(
        during >= 10 && after >= 10,
        "{during} during, {after} after"
    );
    let peer = peer.lock().unwrap();
    println!("{peer:?}");
    for (at, r) in peer.iter() {
        if (cut..heal).contains(at) {
            assert!(
                matches!(r, Err(FetchError::Ended(why)) if why.contains("cannot be reached")),
                "the edge's archive index at {} during the partition: {r:?}",
                fmt_ms(*at)
            );
        } else {
            assert!(
                matches!(r, Ok(n) if *n >= 3),
                "the edge's archive index at {}: {r:?}",
                fmt_ms(*at)
            );
        }
    }
}

/// (d) The origin's disk fills up. At 20 s it is made to hold about four segments:
/// Tern deletes its own oldest segments (and says so) and keeps recording, the newest
/// ones all kept, each readable and whole; the disk never holds more than its
/// capacity. At 44 s it is made smaller than one segment: Tern deletes what it has,
/// then pauses (and says so); at 56 s the room comes back and recording resumes by
/// itself within the pause's retry interval. Live delivery never notices.
#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn disk_full_deletes_the_oldest_then_pauses_and_resumes() {
    let name = "disk_full_deletes_the_oldest_then_pauses_and_resumes";
    let end = secs(70.0);
    let (mut c, obs) = recording_cluster(44, end + secs(1.0));
    let looks_at: Vec<Duration> = [18.0, 30.0, 40.0, 50.0, 68.0]
        .into_iter()
        .map(secs)
        .collect();
    let probe = add_probe(&mut c, looks_at);
    // The API tells an operator the recording is paused, and then that it is not.
    let api: Arc<Mutex<Vec<(u64, serde_json::Value)>>> = Arc::default();
    let api2 = api.clone();
    c.client("operator", async move {
        for at in [50_000u64, 68_000] {
            tokio::time::sleep(ms(at.saturating_sub(sim_ms()))).await;
            let (status, body) = http_get("origin", 8888, "/streamer/api/v3/streams/main").await?;
            assert_eq!(status, 200);
            let json: serde_json::Value = serde_json::from_slice(&body)?;
            api2.lock().unwrap().push((at, json["dvr"].clone()));
        }
        Ok(())
    });
    let few = 4 * SEGMENT_BYTES + 64 * 1024;
    let tiny = 100_000;
    let mut s = Schedule::new();
    let disk = |capacity| Fault::DiskFull {
        host: "origin".into(),
        path: "/dvr".into(),
        capacity,
    };
    s.add(secs(20.0), secs(24.0), disk(few))
        .add(secs(44.0), secs(12.0), disk(tiny));
    // Step by 100 ms, checking the disk: a capacity lowered below what is stored
    // deletes nothing by itself, but from then on the disk never grows while over its
    // capacity, and once the next segment has closed it is within it.
    let store = c.disk("origin", "/dvr");
    let actions = s.actions();
    let mut next = 0;
    let mut capacity: Option<(u64, Duration)> = None;
    let mut peak = 0;
    let mut prev = 0;
    let mut t = Duration::ZERO;
    while t < end {
        t += ms(100);
        while next < actions.len() && actions[next].0 <= t {
            c.run_until(actions[next].0).expect("simulation");
            c.apply(&actions[next].1);
            if let Action::DiskCapacity(_, _, cap) = actions[next].1 {
                capacity = cap.map(|cap| (cap, actions[next].0));
            }
            next += 1;
        }
        c.run_until(t).expect("simulation");
        let used = store.used_bytes();
        if let Some((cap, since)) = capacity {
            let at = fmt_ms(t.as_millis() as u64);
            assert!(
                used <= cap.max(prev),
                "at {at} the disk grew to {used} bytes, over its capacity of {cap}"
            );
            if t >= since + ms(SEGMENT_MS + 500) {
                peak = peak.max(used);
                assert!(
                    used <= cap,
                    "at {at} the disk still holds {used} bytes, more than its {cap}"
                );
            }
        }
        prev = used;
    }
    check_live(name, &c, &s, end, &obs);
    assert_eq!(check_looks(name, &probe, &obs, |_| true), 5);
    let looks = probe.looks();
    println!("peak use under a capacity: {peak} bytes");
    // While the disk holds ~4 segments: a few, the newest, none missing since the
    // oldest kept.
    for l in &looks[1..3] {
        let n = l.entries().len();
        assert!((2..=4).contains(&n), "{n} segments at {}", fmt_ms(l.at_ms));
        let (missing, v) = archive::compare_with_live("archivist", l, &obs[2], 100);
        assert!(v.is_empty(), "{v:#?}");
        assert!(missing.is_empty(), "lost beyond the oldest: {missing:#?}");
        let newest = l.entries().last().unwrap();
        assert!(
            newest.utc_start_ms + u64::from(newest.duration_ms) + SEGMENT_MS + 200
                >= SIM_EPOCH_MS + l.at_ms,
            "recording stopped: the newest segment is {} at {}",
            newest.utc_start_ms,
            fmt_ms(l.at_ms)
        );
    }
    let evicted = trace_has(&c, "origin", "disk full: deleted the oldest DVR segment");
    assert!(evicted.len() >= 5, "{evicted:#?}");
    // Below one segment: nothing left, paused.
    assert!(
        looks[3].entries().is_empty(),
        "{} segments kept on a disk smaller than one",
        looks[3].entries().len()
    );
    assert!(!trace_has(&c, "origin", "DVR recording paused").is_empty());
    let api = api.lock().unwrap();
    println!("API dvr: {api:?}");
    assert_eq!(api.len(), 2, "{api:?}");
    assert_eq!(api[0].1["state"], "paused", "at 50 s: {}", api[0].1);
    assert!(
        api[0].1["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        api[0].1
    );
    assert_eq!(api[1].1["state"], "recording", "at 68 s: {}", api[1].1);
    // Room again at 56 s: recording resumed within the retry interval (and the
    // segment that then closes), and nothing since is missing.
    assert!(!trace_has(&c, "origin", "DVR recording resumed").is_empty());
    let last = &looks[4];
    let first = last.entries().first().expect("recording never resumed");
    let resumed = first.utc_start_ms - SIM_EPOCH_MS;
    println!(
        "recording resumed with the segment from {}",
        fmt_ms(resumed)
    );
    assert!(
        resumed >= 56_000 - SEGMENT_MS
            && resumed <= 56_000 + PAUSE_RETRY.as_millis() as u64 + SEGMENT_MS,
        "recording resumed at {}",
        fmt_ms(resumed)
    );
    let (missing, v) = archive::compare_with_live("archivist", last, &obs[2], 100);
    assert!(v.is_empty(), "{v:#?}");
    assert!(missing.is_empty(), "lost after resuming: {missing:#?}");
}

/// (e) Disk I/O errors of every kind (a segment write, its fsync, the rename, the
/// directory fsync; a journal append and its fsync), and power cuts that drop what
/// was not synced — one right after a journal record failed to sync, one while a
/// journal record is on its way, one instant restart. Whatever happens, every entry
/// the origin's index lists (looked at every 1.5 s while the origin is up) can be
/// fetched whole over M4F, from the origin and through the edge; each error costs at
/// most the segment it hit, and a power cut at most the segment being written.
#[test]
fn io_errors_and_power_cuts_never_leave_a_dangling_index_entry() {
    let name = "io_errors_and_power_cuts_never_leave_a_dangling_index_entry";
    let end = secs(56.0);
    let (mut c, obs) = recording_cluster(45, end + secs(1.0));
    c.disk("origin", "/dvr").set_latency(ms(20));
    let looks_at: Vec<Duration> = (2..37).map(|i| secs(f64::from(i) * 1.5)).collect();
    let probe = add_probe(&mut c, looks_at);
    let errors = |at: f64, kind, skip, n| {
        (
            secs(at),
            Fault::DiskErrors {
                host: "origin".into(),
                path: "/dvr".into(),
                kind,
                skip,
                n,
            },
        )
    };
    // Segment closes: 28 ms + 2 s·k until the first crash. Each burst lands on the
    // record of the next segment to close.
    let bursts = [
        errors(5.0, DiskFault::Write, 0, 1),     // the segment's data
        errors(9.0, DiskFault::Fsync, 0, 1),     // the segment's fsync
        errors(13.0, DiskFault::Rename, 0, 1),   // its rename
        errors(17.0, DiskFault::FsyncDir, 0, 1), // the directory fsync after it
        errors(21.0, DiskFault::Write, 1, 1),    // the journal record after a segment
        errors(25.0, DiskFault::Fsync, 1, 1),    // the journal record's fsync
    ];
    let mut s = Schedule::new();
    for (at, f) in &bursts {
        c.run_until(*at).expect("simulation");
        let Fault::DiskErrors {
            host,
            path,
            kind,
            skip,
            n,
        } = f
        else {
            unreachable!()
        };
        c.apply(&Action::DiskErrors(
            host.clone(),
            path.clone(),
            *kind,
            *skip,
            *n,
        ));
        s.add(*at, Duration::ZERO, f.clone());
    }
    // The journal record of the segment closing after the last burst is written but
    // not synced: a power cut 100 ms after that close drops it, and the restarted node
    // must find the segment from its file.
    let crash1 = next_close(&obs[2], 25_000) + 100;
    crash_origin(&mut c, &mut s, ms(crash1), secs(2.0));
    // A power cut while a journal record is on its way (the segment is durable).
    c.run_until(secs(38.0)).expect("simulation");
    let crash2 = next_close(&obs[2], 38_000) + 30;
    crash_origin(&mut c, &mut s, ms(crash2), secs(1.5));
    // An instant restart in the middle of a segment's write.
    c.run_until(secs(46.0)).expect("simulation");
    let bounce = next_close(&obs[2], 46_000) + 15;
    c.run_until(ms(bounce)).expect("simulation");
    c.apply(&Action::Bounce("origin".into()));
    s.add(
        ms(bounce),
        Duration::ZERO,
        Fault::Bounce {
            host: "origin".into(),
        },
    );
    c.run_until(end).expect("simulation");
    check_live(name, &c, &s, end, &obs);
    // Looks while the origin is down (or starting) fail to get an index: not judged.
    let down: Vec<(u64, u64)> = vec![
        (crash1, crash1 + 2000),
        (crash2, crash2 + 1500),
        (bounce, bounce),
    ];
    let up = |l: &Look| {
        !down
            .iter()
            .any(|(a, b)| l.at_ms + 200 >= *a && l.at_ms <= b + 500)
    };
    let checked = check_looks(name, &probe, &obs, up);
    assert!(checked >= 28, "only {checked} looks checked");
    let looks = probe.looks();
    let last = looks.last().unwrap();
    let (missing, v) = archive::compare_with_live("archivist", last, &obs[2], 100);
    assert!(v.is_empty(), "{v:#?}");
    println!(
        "missing: {:?}",
        missing
            .iter()
            .map(|m| fmt_ms(m.start_ms + u64::from(m.duration_ms)))
            .collect::<Vec<_>>()
    );
    // Each segment lost closed right after an error burst hit (within one segment of
    // it) or right before a power cut.
    let cuts = [crash1, crash2, bounce];
    for m in &missing {
        let closed = m.start_ms + u64::from(m.duration_ms);
        let by_error = bursts.iter().any(|(at, _)| {
            let at = at.as_millis() as u64;
            closed >= at && closed <= at + SEGMENT_MS + 100
        });
        let by_cut = cuts.iter().any(|t| closed <= *t && t - closed <= 150);
        assert!(
            by_error || by_cut,
            "segment closed at {} lost with no fault to explain it; missing: {missing:#?}",
            fmt_ms(closed)
        );
    }
    // Errors on segment writes lose those segments (4); errors on journal records
    // lose nothing; power cuts lose at most the segment being written.
    assert!(missing.len() <= 4 + cuts.len(), "{missing:#?}");
    assert!(
        !trace_has(
            &c,
            "origin",
            "re-indexed a DVR segment file the index did not list"
        )
        .is_empty(),
        "a power cut after an unsynced journal record must leave a file to re-index"
    );
}

/// (d, e) A power cut in the middle of making room on a full disk. The disk (each
/// operation 30 ms) is made to hold three segments at 10 s; at the next close Tern
/// deletes its oldest segments one by one, and the origin loses power 45 ms after
/// that close: the first deletion was done but neither made durable (a deletion is
/// durable once the directory is synced, by the next segment's write) nor journaled.
/// The segment comes back with the power, whole, and the restarted node lists it
/// again; at the next close it deletes it again. Every index entry stays fetchable
/// whole, from the origin and through the edge, and the disk ends within its
/// capacity.
#[test]
fn power_cut_while_making_room_brings_back_a_whole_segment() {
    let name = "power_cut_while_making_room_brings_back_a_whole_segment";
    let end = secs(24.0);
    let (mut c, obs) = recording_cluster(47, end + secs(1.0));
    c.disk("origin", "/dvr").set_latency(ms(30));
    let probe = add_probe(
        &mut c,
        [9.0, 12.0, 13.5, 17.0, 23.0]
            .into_iter()
            .map(secs)
            .collect(),
    );
    let capacity = 3 * SEGMENT_BYTES + 64 * 1024;
    let mut s = Schedule::new();
    s.add(
        secs(10.0),
        end - secs(10.0),
        Fault::DiskFull {
            host: "origin".into(),
            path: "/dvr".into(),
            capacity,
        },
    );
    c.run_until(secs(10.0)).expect("simulation");
    c.apply(&Action::DiskCapacity(
        "origin".into(),
        "/dvr".into(),
        Some(capacity),
    ));
    let cut = next_close(&obs[2], 10_000) + 45;
    // The scenario's premise (not an oracle): the oldest segment is deleted, not
    // durably, when the power goes.
    let oldest = format!("main/{}.tseg", SIM_EPOCH_MS + 28);
    let on_disk = |c: &Cluster| {
        c.disk("origin", "/dvr")
            .files()
            .iter()
            .any(|(p, _)| p.ends_with(&oldest))
    };
    c.run_until(ms(cut)).expect("simulation");
    assert!(
        !on_disk(&c),
        "the first deletion has not happened at the cut"
    );
    crash_origin(&mut c, &mut s, ms(cut), secs(1.0));
    assert!(
        on_disk(&c),
        "the power cut did not bring the deleted file back"
    );
    c.run_until(end).expect("simulation");
    check_live(name, &c, &s, end, &obs);
    let down = (cut, cut + 1000);
    let checked = check_looks(name, &probe, &obs, |l| {
        l.at_ms + 200 < down.0 || l.at_ms > down.1 + 500
    });
    assert_eq!(checked, 5);
    let looks = probe.looks();
    let after_cut = &looks[1];
    assert!(
        after_cut
            .entries()
            .iter()
            .any(|e| e.utc_start_ms == SIM_EPOCH_MS + 28),
        "the oldest segment, deleted but not durably, is not listed after the restart: {:?}",
        after_cut.entries()
    );
    let deleted = trace_has(&c, "origin", "disk full: deleted the oldest DVR segment");
    assert!(
        deleted
            .iter()
            .any(|l| l.contains(&format!("deleted_segment={}", SIM_EPOCH_MS + 28))),
        "the segment that came back was not deleted again: {deleted:#?}"
    );
    let used = c.disk("origin", "/dvr").used_bytes();
    assert!(used <= capacity, "{used} bytes on a disk of {capacity}");
    let last = looks.last().unwrap();
    let (missing, v) = archive::compare_with_live("archivist", last, &obs[2], 100);
    assert!(v.is_empty(), "{v:#?}");
    assert!(missing.is_empty(), "{missing:#?}");
}

/// What a slow M4F archive reader got.
#[derive(Debug, Default)]
struct Slow {
    listed: usize,
    segments: Vec<u64>,
    end: Option<Result<u32, String>>,
    /// Simulated ms when the response ended, and when its last segment came.
    ended_at: Option<u64>,
    last_segment_at: Option<u64>,
}

/// A stream of few but large frames (2 fps padded to 2 Mbit/s: 500 KB segments of 4
/// frames), so that an archive range longer than what one connection holds in flight
/// (turmoil holds 64 writes; hyper writes a large message as one) is cheap to record.
const ORIGIN_BIG_FRAMES_DVR: &str = "http 8888;\ncluster_key 123;\nstream main {\n  input fake://fake?width=256&height=16&fps=2&bitrate=2000000;\n  dvr /dvr;\n}\n";

/// A client host that at `ask_at` asks `origin` for its whole archive over M4F, reads
/// `Hello`, waits `pause`, then reads each segment and waits `per_segment` after it,
/// until `ArchiveEnd`, `End` or the end of the response.
fn m4f_archive_reader(
    c: &mut Cluster,
    ask_at: Duration,
    pause: Duration,
    per_segment: Duration,
) -> Arc<Mutex<Slow>> {
    m4f_archive_reader_of(c, ("origin", 8888), ask_at, pause, per_segment)
}

/// [`m4f_archive_reader`] asking `node` (host, port).
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn m4f_archive_reader_of(
    c: &mut Cluster,
    node: (&'static str, u16),
    ask_at: Duration,
    pause: Duration,
    per_segment: Duration,
) -> Arc<Mutex<Slow>> {
    let (host, port) = node;
    let got: Arc<Mutex<Slow>> = Arc::default();
    let g = got.clone();
    let seed = node_seed(c.seed(), "reader");
    c.client("reader", async move {
        use tern_core::cluster::message::Message;
        tokio::time::sleep(ask_at).await;
        let client = ArchiveClient::new(seed, "123");
        let ix = client
            .index(host, port, "main", Some(archive::EVERYTHING))
            .await
            .map_err(|e| e.to_string())?;
        let (from, to) = (
            ix.entries[0].utc_start_ms,
            ix.entries.last().map(|e| e.utc_start_ms + 1).unwrap(),
        );
        g.lock().unwrap().listed = ix.entries.len();
        let path = format!("/tern/v1/archive/main?from={from}&to={to}");
        let mut s = client.raw().open(host, port, &path).await?;
        let mut hello = false;
        loop {
            let end = match s.next().await {
                Ok(Some(Message::Hello { .. })) if !hello => {
                    hello = true;
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Ok(Some(Message::Heartbeat { .. })) => continue,
                Ok(Some(Message::Segment(seg))) => {
                    {
                        let mut got = g.lock().unwrap();
                        got.segments.push(seg.utc_start_ms);
                        got.last_segment_at = Some(sim_ms());
                    }
                    tokio::time::sleep(per_segment).await;
                    continue;
                }
                Ok(Some(Message::ArchiveEnd { segments })) => Ok(segments),
                Ok(Some(Message::End { reason })) => Err(reason),
                Ok(None) => Err("the response ended with neither ArchiveEnd nor End".into()),
                other => Err(format!("{other:?}")),
            };
            let mut g = g.lock().unwrap();
            g.end = Some(end);
            g.ended_at = Some(sim_ms());
            return Ok(());
        }
    });
    got
}

/// (d, a reader) A reader of the M4F archive asks for the origin's whole archive
/// (150 segments, more than a connection holds in flight) and reads one segment every
/// 100 ms. Meanwhile the disk fills up and Tern deletes its oldest segments to keep
/// recording, among them segments of the range not sent yet. Those are skipped: the
/// reader gets the segments that still existed, then `ArchiveEnd` — a range plays
/// what exists (docs/design.md §9: a playback range across a gap does not error out; the
/// source `cache` skips segments gone meanwhile the same way).
#[test]
fn a_slow_archive_reader_while_the_disk_fills_gets_what_exists() {
    let name = "a_slow_archive_reader_while_the_disk_fills_gets_what_exists";
    let (ask_at, full_at, end) = (secs(300.5), secs(303.0), secs(330.0));
    let mut c = Cluster::new(46, end + secs(1.0));
    c.node("origin", ORIGIN_BIG_FRAMES_DVR);
    let got = m4f_archive_reader(&mut c, ask_at, Duration::ZERO, ms(100));
    let mut s = Schedule::new();
    s.add(
        full_at,
        end - full_at,
        Fault::DiskFull {
            host: "origin".into(),
            path: "/dvr".into(),
            capacity: 200_000,
        },
    );
    c.run_schedule(&s, end).expect("simulation");
    let got = got.lock().unwrap();
    println!(
        "{name}: listed {}, got {} segments, then {:?}",
        got.listed,
        got.segments.len(),
        got.end
    );
    assert!(got.listed >= 145, "{got:?}");
    assert!(
        got.segments.len() < got.listed,
        "nothing was deleted under the reader: the scenario did not test anything"
    );
    assert_eq!(
        got.end,
        Some(Ok(got.segments.len() as u32)),
        "the range must end with ArchiveEnd after the segments that still existed"
    );
    assert!(
        got.segments.windows(2).all(|w| w[0] < w[1]),
        "segments out of order"
    );
}

/// (a reader pausing) A reader of the M4F archive asks for the origin's whole archive
/// (150 segments, more than a connection holds in flight), then reads nothing for 10 s
/// (a paused player behind an edge: the edge reads the origin's archive only as fast
/// as its own viewer takes it), then everything. The archive is paced by its reader
/// (docs/protocol.md, M4F archive): the reader gets every segment, then `ArchiveEnd`.
/// Were it cut off, it must at least be told (`End`), not see the response just stop.
#[test]
fn a_paused_archive_reader_gets_the_whole_range() {
    let name = "a_paused_archive_reader_gets_the_whole_range";
    let (ask_at, end) = (secs(300.5), secs(330.0));
    let mut c = Cluster::new(48, end + secs(1.0));
    c.node("origin", ORIGIN_BIG_FRAMES_DVR);
    let got = m4f_archive_reader(&mut c, ask_at, secs(10.0), Duration::ZERO);
    c.run_until(end).expect("simulation");
    let got = got.lock().unwrap();
    println!(
        "{name}: listed {}, got {} segments, then {:?}",
        got.listed,
        got.segments.len(),
        got.end
    );
    assert!(got.listed >= 145, "{got:?}");
    assert_eq!(
        got.end,
        Some(Ok(got.listed as u32)),
        "a paused reader must get the whole range (got {} of {} segments)",
        got.segments.len(),
        got.listed
    );
}

/// (partition mid-range) A reader of the edge's M4F archive (which the edge answers
/// from the origin's, over M4F) reads one segment every 200 ms; 4.5 s in, the link
/// edge↔origin is cut for good. A cut link can hang a connection silently, and an
/// archive response has no heartbeats: once the edge has passed on what had reached
/// it, it gives up on the origin after `ARCHIVE_IDLE_TIMEOUT` of silence and tells
/// its reader why (`End`), instead of leaving the request hanging.
#[test]
fn an_archive_read_through_the_edge_ends_when_the_origin_goes_silent() {
    let name = "an_archive_read_through_the_edge_ends_when_the_origin_goes_silent";
    let (ask_at, cut_at, end) = (secs(300.5), secs(305.0), secs(345.0));
    let mut c = Cluster::new(49, end + secs(1.0));
    c.node("origin", ORIGIN_BIG_FRAMES_DVR).node("edge", EDGE);
    let got = m4f_archive_reader_of(&mut c, ("edge", 9999), ask_at, Duration::ZERO, ms(200));
    let mut s = Schedule::new();
    s.add(
        cut_at,
        end - cut_at,
        Fault::Partition {
            a: "edge".into(),
            b: "origin".into(),
        },
    );
    c.run_schedule(&s, end).expect("simulation");
    let got = got.lock().unwrap();
    println!(
        "{name}: listed {}, got {} segments, then {:?} at {:?} ms",
        got.listed,
        got.segments.len(),
        got.end,
        got.ended_at
    );
    assert!(got.listed >= 145, "{got:?}");
    assert!(
        !got.segments.is_empty() && got.segments.len() < got.listed,
        "the cut must land mid-range: {got:?}"
    );
    // The edge gave up on the origin (and said so in its log) ...
    let gave_up = trace_has(&c, "edge", "archive range ended early");
    assert_eq!(gave_up.len(), 1, "{gave_up:#?}");
    assert!(gave_up[0].contains("nothing received"), "{}", gave_up[0]);
    // ... and its reader, once it had read what was on its way, was told why, within
    // the idle timeout of the last segment (the edge waits for the origin only once
    // what had reached it is passed on).
    match &got.end {
        Some(Err(reason)) => assert!(reason.contains("nothing received"), "{reason}"),
        other => panic!("the reader must be told the range broke off, got {other:?}"),
    }
    let (Some(last), Some(ended)) = (got.last_segment_at, got.ended_at) else {
        panic!("{got:?}");
    };
    let idle = tern_node::archive::ARCHIVE_IDLE_TIMEOUT.as_millis() as u64;
    assert!(
        ended <= last + idle + 3000,
        "told {} ms after the last segment",
        ended - last
    );
}
