//! The archive side of the simulation: a signed client for a node's archive index
//! (`/tern/v1/dvr/NAME`) and M4F archive (`/tern/v1/archive/NAME`), a probe host that
//! looks at the archive of several nodes at given times, and the archive oracles
//! (docs/design.md §5, §6, §8).
//!
//! A [`Look`] is one visit of the probe: the index of the recording node (all of it:
//! the window `[0, u64::MAX)`), then the segments of that window fetched from the
//! recording node and from each other node asked (an edge answers through its archive
//! route). [`check_look`] then runs the oracles:
//!
//! - **archive index**: the recording node answers its index;
//! - **archive fetch**: every entry the index lists can be fetched from the recording
//!   node: the range is answered to its end (`ArchiveEnd`, not `End`), each segment
//!   decodes (the client decodes them), and each listed entry comes back with its
//!   start and duration — unless it was deleted meanwhile (retention, a full disk):
//!   then it is one of the oldest and the index taken after the fetch no longer lists
//!   it. This is the oracle that the index never points to a missing or partial
//!   segment;
//! - **archive segment**: each fetched segment is whole: it has frames, starts at a
//!   video keyframe, its frames follow on (one epoch, sequence +1), and each video
//!   frame carries a barcode that agrees with its capture time and sequence number
//!   (the live **barcode** oracle);
//! - **archive continuity**: an entry flagged as a discontinuity does not continue
//!   the entry before it (its frames do not follow on, or there is a time gap beyond
//!   the index's tolerance), and an entry not flagged does;
//! - **archive ranges**: the ranges of the DVR facts are exactly the runs of entries
//!   with no gap beyond the tolerance ([`ranges_of`]): a gap in the archive shows;
//! - **archive identical**: every other node asked answers the same range with the
//!   same segments, byte for byte in the canonical encoding (`segment_codec::encode`);
//! - **archive integrity**: a frame of the archive and a frame a live observer saw at
//!   the same (epoch, sequence) are the same frame.
//!
//! Owns: the archive client, the probe and these oracles. Must not: read a node's
//! disk behind its back (the oracles judge what the cluster endpoints answer), or
//! read real time.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::ClusterAuth;
use tern_core::cluster::message::{ArchiveEntry, DvrFacts, Message};
use tern_core::dvr::DEFAULT_GAP_TOLERANCE_MS;
use tern_core::{segment_codec, Position, Segment};
use tern_net::{TurmoilClock, TurmoilNet};
use tern_node::cluster::client::{ClientError, ClusterClient};

use crate::oracle::{self, frame_digest, pos, violation, Observation, Tracks, Violation};
use crate::{sim_ms, SIM_EPOCH_MS};

/// Why an archive request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The node answered with an HTTP error status.
    Status(u16, String),
    /// The node answered, then ended the response with `End` and this reason.
    Ended(String),
    /// No answer, or the response broke off (connection, wire or protocol error).
    Broken(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s, body) => write!(f, "HTTP {s}: {body}"),
            FetchError::Ended(r) => write!(f, "ended: {r}"),
            FetchError::Broken(e) => write!(f, "{e}"),
        }
    }
}

fn client_error(e: ClientError) -> FetchError {
    match e.refusal() {
        Some((status, body)) => FetchError::Status(status, body.to_owned()),
        None => FetchError::Broken(e.to_string()),
    }
}

/// An archive index as a node answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub facts: DvrFacts,
    pub entries: Vec<ArchiveEntry>,
}

/// How long one archive request may take before the client gives up on it (a
/// partition leaves a connection hanging silently).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A signed archive client, as another node would be.
pub struct ArchiveClient {
    client: ClusterClient<TurmoilNet, TurmoilClock>,
}

impl ArchiveClient {
    /// A client with key `key`, its nonces from `seed`.
    pub fn new(seed: u64, key: &str) -> Self {
        ArchiveClient {
            client: ClusterClient::new(
                TurmoilNet,
                TurmoilClock::new(),
                Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
                ClusterAuth::new(key.as_bytes()),
            ),
        }
    }

    /// The signed client itself, for requests read message by message.
    pub fn raw(&self) -> &ClusterClient<TurmoilNet, TurmoilClock> {
        &self.client
    }

    /// `GET /tern/v1/dvr/STREAM[?from=&to=]`: `Hello`, then `DvrIndex`.
    #[allow(clippy::disallowed_methods)] // sim harness on turmoil time: a request is bounded
    pub async fn index(
        &self,
        host: &str,
        port: u16,
        stream: &str,
        window: Option<(u64, u64)>,
    ) -> Result<Index, FetchError> {
        let q = window.map_or(String::new(), |(f, t)| format!("?from={f}&to={t}"));
        let path = format!("/tern/v1/dvr/{stream}{q}");
        let fut = async {
            let mut s = self
                .client
                .open(host, port, &path)
                .await
                .map_err(client_error)?;
            let mut hello = false;
            loop {
                match s.next().await.map_err(client_error)? {
                    Some(Message::Hello { .. }) if !hello => hello = true,
                    Some(Message::DvrIndex { facts, entries }) if hello => {
                        return Ok(Index { facts, entries })
                    }
                    Some(Message::End { reason }) if hello => {
                        return Err(FetchError::Ended(reason))
                    }
                    Some(other) => {
                        return Err(FetchError::Broken(format!(
                            "unexpected message {} on the archive index",
                            other.kind()
                        )))
                    }
                    None => return Err(FetchError::Broken("closed before the index".into())),
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Broken(format!(
                "no index within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }

    /// `GET /tern/v1/archive/STREAM?from=&to=`: `Hello`, the segments, `ArchiveEnd`
    /// (whose count must match).
    #[allow(clippy::disallowed_methods)] // sim harness on turmoil time: a request is bounded
    pub async fn range(
        &self,
        host: &str,
        port: u16,
        stream: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Segment>, FetchError> {
        let path = format!("/tern/v1/archive/{stream}?from={from_ms}&to={to_ms}");
        let fut = async {
            let mut s = self
                .client
                .open(host, port, &path)
                .await
                .map_err(client_error)?;
            let mut hello = false;
            let mut out = Vec::new();
            loop {
                match s.next().await.map_err(client_error)? {
                    Some(Message::Hello { .. }) if !hello => hello = true,
                    Some(Message::Heartbeat { .. }) if hello => {}
                    Some(Message::Segment(seg)) if hello => out.push(seg),
                    Some(Message::ArchiveEnd { segments }) if hello => {
                        if segments as usize != out.len() {
                            return Err(FetchError::Broken(format!(
                                "ArchiveEnd says {segments} segments, {} arrived",
                                out.len()
                            )));
                        }
                        return Ok(out);
                    }
                    Some(Message::End { reason }) if hello => {
                        return Err(FetchError::Ended(format!(
                            "{reason} (after {} segments)",
                            out.len()
                        )))
                    }
                    Some(other) => {
                        return Err(FetchError::Broken(format!(
                            "unexpected message {} on the M4F archive",
                            other.kind()
                        )))
                    }
                    None => {
                        return Err(FetchError::Broken(format!(
                            "closed before ArchiveEnd (after {} segments)",
                            out.len()
                        )))
                    }
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Broken(format!(
                "no ArchiveEnd within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }
}

/// The window of the whole archive.
pub const EVERYTHING: (u64, u64) = (0, u64::MAX);

/// One node's answer to the range of a [`Look`].
#[derive(Clone, Debug)]
pub struct Fetched {
    pub node: String,
    pub port: u16,
    /// Simulated ms when the answer was complete.
    pub done_ms: u64,
    pub segments: Result<Vec<Segment>, FetchError>,
}

/// One visit of the probe.
#[derive(Clone, Debug)]
pub struct Look {
    /// Simulated ms when the index was asked for.
    pub at_ms: u64,
    /// The recording node's whole index.
    pub index: Result<Index, FetchError>,
    /// The index's window (first entry's start to last entry's end) fetched from the
    /// recording node first, then from each other node. Empty when the index failed
    /// or is empty.
    pub fetched: Vec<Fetched>,
    /// The recording node's index again, once everything was fetched: an entry
    /// deleted in between (retention, a full disk) is no longer in it.
    pub index_after: Option<Result<Index, FetchError>>,
}

impl Look {
    /// The recording node's entries (none if its index failed).
    pub fn entries(&self) -> &[ArchiveEntry] {
        self.index.as_ref().map_or(&[], |i| &i.entries)
    }

    /// The segments the recording node answered (none if it failed).
    pub fn recorded(&self) -> &[Segment] {
        self.fetched
            .first()
            .and_then(|f| f.segments.as_ref().ok())
            .map_or(&[], |v| v)
    }
}

/// What a probe does.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    /// The probe's own host name.
    pub host: String,
    pub stream: String,
    pub key: String,
    /// The node that records the stream (its index is the reference).
    pub recorder: (String, u16),
    /// Other nodes that must answer the same range the same way.
    pub others: Vec<(String, u16)>,
    /// When to look, simulated time since the start.
    pub at: Vec<Duration>,
    pub seed: u64,
}

impl ProbeSpec {
    /// Looks at `main` on `recorder:port` (key `123`) at each time of `at`.
    pub fn new(recorder: &str, port: u16, at: Vec<Duration>) -> Self {
        ProbeSpec {
            host: "archivist".to_owned(),
            stream: "main".to_owned(),
            key: "123".to_owned(),
            recorder: (recorder.to_owned(), port),
            others: Vec::new(),
            at,
            seed: 0,
        }
    }

    /// Also fetches the range from `node:port`.
    pub fn also(mut self, node: &str, port: u16) -> Self {
        self.others.push((node.to_owned(), port));
        self
    }
}

/// A running or finished probe: its spec and its looks so far.
#[derive(Clone)]
pub struct Probe {
    pub spec: Arc<ProbeSpec>,
    looks: Arc<Mutex<Vec<Look>>>,
}

impl Probe {
    pub fn looks(&self) -> MutexGuard<'_, Vec<Look>> {
        self.looks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.spec.host
    }
}

/// A probe as `spec` says, and the future to run as its client host (it returns
/// after its last look).
#[allow(clippy::disallowed_methods)] // sim harness on turmoil time: the probe starts at its time
pub fn probe(spec: ProbeSpec) -> (Probe, impl Future<Output = turmoil::Result>) {
    let p = Probe {
        spec: Arc::new(spec),
        looks: Arc::default(),
    };
    let p2 = p.clone();
    (p, async move {
        let spec = p2.spec.clone();
        let client = ArchiveClient::new(spec.seed, &spec.key);
        for at in &spec.at {
            let now = sim_ms();
            let at = at.as_millis() as u64;
            if now < at {
                tokio::time::sleep(Duration::from_millis(at - now)).await;
            }
            let look = look(&client, &spec).await;
            p2.looks().push(look);
        }
        Ok(())
    })
}

/// Takes one look: the recorder's whole index, then its window from every node.
pub async fn look(client: &ArchiveClient, spec: &ProbeSpec) -> Look {
    let at_ms = sim_ms();
    let (rec, rec_port) = (&spec.recorder.0, spec.recorder.1);
    let index = client
        .index(rec, rec_port, &spec.stream, Some(EVERYTHING))
        .await;
    let mut fetched = Vec::new();
    let mut index_after = None;
    let window = index.as_ref().ok().and_then(|ix| {
        let first = ix.entries.first()?;
        let end = ix.entries.iter().map(end_of).max()?;
        Some((first.utc_start_ms, end.max(first.utc_start_ms + 1)))
    });
    if let Some((from, to)) = window {
        for (node, port) in std::iter::once(&spec.recorder).chain(&spec.others) {
            let segments = client.range(node, *port, &spec.stream, from, to).await;
            fetched.push(Fetched {
                node: node.clone(),
                port: *port,
                done_ms: sim_ms(),
                segments,
            });
        }
        index_after = Some(
            client
                .index(rec, rec_port, &spec.stream, Some(EVERYTHING))
                .await,
        );
    }
    tracing::info!(
        target: "tern_sim::archive",
        probe = spec.host,
        entries = index.as_ref().map_or(0, |i| i.entries.len()),
        index_ok = index.is_ok(),
        fetched = ?fetched.iter().map(|f| (f.node.as_str(), f.segments.as_ref().map(|s| s.len()).map_err(|e| e.to_string()))).collect::<Vec<_>>(),
        "archive look"
    );
    Look {
        at_ms,
        index,
        fetched,
        index_after,
    }
}

fn end_of(e: &ArchiveEntry) -> u64 {
    e.utc_start_ms + u64::from(e.duration_ms)
}

/// The ranges an index with `entries` (all of them, oldest first) must report: runs
/// with no gap longer than `tolerance_ms` between the end of one entry and the start
/// of the next, as (UTC start ms, duration ms).
pub fn ranges_of(entries: &[ArchiveEntry], tolerance_ms: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in entries {
        match out.last_mut() {
            Some(r) if e.utc_start_ms <= r.1 + tolerance_ms => r.1 = r.1.max(end_of(e)),
            _ => out.push((e.utc_start_ms, end_of(e))),
        }
    }
    out.into_iter().map(|(s, e)| (s, e - s)).collect()
}

/// The canonical encoding of each segment, by UTC start.
pub fn encodings(segments: &[Segment]) -> BTreeMap<u64, Bytes> {
    segments
        .iter()
        .map(|s| (s.utc_start_ms, segment_codec::encode(s)))
        .collect()
}

fn last_pos(s: &Segment) -> Position {
    s.frames.last().map(|f| f.pos).unwrap_or_default()
}

fn follows(a: Position, b: Position) -> bool {
    a.epoch == b.epoch && a.seq.checked_add(1) == Some(b.seq)
}

/// Runs every archive oracle over `look` (see the module doc), with the live
/// `observations` of the same run for the integrity oracle. `who` names the probe
/// in violations.
pub fn check_look(who: &str, look: &Look, observations: &[Observation]) -> Vec<Violation> {
    let mut v = Vec::new();
    let at = look.at_ms;
    let index = match &look.index {
        Ok(i) => i,
        Err(e) => {
            v.push(violation(
                who,
                "archive index",
                at,
                format!("the recording node did not answer its index: {e}"),
            ));
            return v;
        }
    };
    let entries = &index.entries;
    // Ranges.
    let want = ranges_of(entries, DEFAULT_GAP_TOLERANCE_MS);
    if index.facts.ranges != want {
        v.push(violation(
            who,
            "archive ranges",
            at,
            format!(
                "the DVR facts say ranges {:?}, the {} entries make {:?}",
                index.facts.ranges,
                entries.len(),
                want
            ),
        ));
    }
    let Some(rec) = look.fetched.first() else {
        return v;
    };
    let segments = match &rec.segments {
        Ok(s) => s,
        Err(e) => {
            v.push(violation(
                who,
                "archive fetch",
                rec.done_ms,
                format!(
                    "{} lists {} segments in its index but fetching them from it failed: {e}",
                    rec.node,
                    entries.len()
                ),
            ));
            return v;
        }
    };
    let by_start: BTreeMap<u64, &Segment> = segments.iter().map(|s| (s.utc_start_ms, s)).collect();
    let after: Option<&Index> = match &look.index_after {
        Some(Ok(i)) => Some(i),
        Some(Err(e)) => {
            v.push(violation(
                who,
                "archive index",
                rec.done_ms,
                format!("the recording node did not answer its index a second time: {e}"),
            ));
            None
        }
        None => None,
    };
    let oldest_sent = segments.iter().map(|s| s.utc_start_ms).min();
    // Every entry fetchable, as listed: an entry not sent must have been deleted
    // since the index was taken (no longer listed after), and only from the old end.
    let mut listed: Vec<&Segment> = Vec::new();
    for e in entries {
        match by_start.get(&e.utc_start_ms) {
            None => {
                let still = after
                    .is_none_or(|a| a.entries.iter().any(|x| x.utc_start_ms == e.utc_start_ms));
                let old_end = oldest_sent.is_none_or(|o| e.utc_start_ms < o);
                if still || !old_end {
                    v.push(violation(
                        who,
                        "archive fetch",
                        rec.done_ms,
                        format!(
                            "index entry {} ({} ms) of {} is not among the {} segments it sent \
                             for the index's window, {}",
                            e.utc_start_ms,
                            e.duration_ms,
                            rec.node,
                            segments.len(),
                            if still {
                                "and the index still lists it"
                            } else {
                                "and newer segments were sent (only the oldest may be deleted)"
                            }
                        ),
                    ));
                }
            }
            Some(s) => {
                if s.duration_ms != e.duration_ms {
                    v.push(violation(
                        who,
                        "archive fetch",
                        rec.done_ms,
                        format!(
                            "index entry {} says {} ms, the stored segment {} ms",
                            e.utc_start_ms, e.duration_ms, s.duration_ms
                        ),
                    ));
                }
                listed.push(s);
            }
        }
    }
    // Segments inside the index's span that the index does not list.
    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
        for s in segments {
            let inside = s.utc_start_ms > first.utc_start_ms && s.utc_start_ms < last.utc_start_ms;
            if inside && !entries.iter().any(|e| e.utc_start_ms == s.utc_start_ms) {
                v.push(violation(
                    who,
                    "archive fetch",
                    rec.done_ms,
                    format!(
                        "{} sent segment {} which its index does not list",
                        rec.node, s.utc_start_ms
                    ),
                ));
            }
        }
    }
    // Each segment whole.
    for s in &listed {
        segment_violations(who, rec.done_ms, s, &mut v);
    }
    // Discontinuity flags.
    for (i, e) in entries.iter().enumerate() {
        let (Some(s), Some(prev_e)) = (
            by_start.get(&e.utc_start_ms),
            i.checked_sub(1).map(|j| &entries[j]),
        ) else {
            if i == 0 && e.discontinuity {
                v.push(violation(
                    who,
                    "archive continuity",
                    at,
                    format!(
                        "the oldest entry {} is flagged a discontinuity",
                        e.utc_start_ms
                    ),
                ));
            }
            continue;
        };
        let Some(prev) = by_start.get(&prev_e.utc_start_ms) else {
            continue;
        };
        let gap = e.utc_start_ms > end_of(prev_e) + DEFAULT_GAP_TOLERANCE_MS;
        let breaks = !follows(last_pos(prev), s.first_pos()) || gap;
        if breaks != e.discontinuity {
            v.push(violation(
                who,
                "archive continuity",
                at,
                format!(
                    "entry {} is {}flagged a discontinuity, but its first frame {} {} the \
                     last frame {} of entry {} (ending {}){}",
                    e.utc_start_ms,
                    if e.discontinuity { "" } else { "not " },
                    pos(s.first_pos()),
                    if follows(last_pos(prev), s.first_pos()) {
                        "follows"
                    } else {
                        "does not follow"
                    },
                    pos(last_pos(prev)),
                    prev_e.utc_start_ms,
                    end_of(prev_e),
                    if gap { ", with a time gap" } else { "" }
                ),
            ));
        }
    }
    let still_listed =
        |utc: u64| after.is_none_or(|a| a.entries.iter().any(|x| x.utc_start_ms == utc));
    // Other nodes: the same bytes (of the entries not deleted since).
    let mine = encodings(segments);
    for f in &look.fetched[1..] {
        match &f.segments {
            Err(e) => v.push(violation(
                who,
                "archive identical",
                f.done_ms,
                format!(
                    "{} did not answer the range {} answered: {e}",
                    f.node, rec.node
                ),
            )),
            Ok(theirs) => {
                let theirs = encodings(theirs);
                for e in entries {
                    match (mine.get(&e.utc_start_ms), theirs.get(&e.utc_start_ms)) {
                        (Some(a), Some(b)) if a == b => {}
                        (Some(a), Some(b)) => v.push(violation(
                            who,
                            "archive identical",
                            f.done_ms,
                            format!(
                                "segment {} from {} ({} bytes, fnv {:016x}) differs from {}'s \
                                 ({} bytes, fnv {:016x})",
                                e.utc_start_ms,
                                f.node,
                                b.len(),
                                crate::fnv1a64(b),
                                rec.node,
                                a.len(),
                                crate::fnv1a64(a)
                            ),
                        )),
                        // Deleted (retention, a full disk) before this node read it.
                        (Some(_), None) if !still_listed(e.utc_start_ms) => {}
                        (Some(_), None) => v.push(violation(
                            who,
                            "archive identical",
                            f.done_ms,
                            format!(
                                "{} did not send segment {}, which {} has",
                                f.node, e.utc_start_ms, rec.node
                            ),
                        )),
                        (None, _) => {}
                    }
                }
            }
        }
    }
    // Integrity against the live observers.
    let mut live: BTreeMap<Position, (u64, String)> = BTreeMap::new();
    for o in observations {
        for f in &o.log().frames {
            live.entry(f.pos)
                .or_insert_with(|| (f.digest, o.name().to_owned()));
        }
    }
    for s in &listed {
        for f in &s.frames {
            if let Some((d, name)) = live.get(&f.pos) {
                if *d != frame_digest(f) {
                    v.push(violation(
                        who,
                        "archive integrity",
                        rec.done_ms,
                        format!(
                            "frame {} of archive segment {} differs from the frame {name} saw \
                             live at that position",
                            pos(f.pos),
                            s.utc_start_ms
                        ),
                    ));
                }
            }
        }
    }
    v
}

/// The **archive segment** oracle on one segment.
pub fn segment_violations(who: &str, at_ms: u64, s: &Segment, v: &mut Vec<Violation>) {
    let Some(first) = s.frames.first() else {
        v.push(violation(
            who,
            "archive segment",
            at_ms,
            format!("segment {} has no frames", s.utc_start_ms),
        ));
        return;
    };
    let video = s.media_info.video().map(|t| t.id);
    if video != Some(first.track) || !first.keyframe {
        v.push(violation(
            who,
            "archive segment",
            at_ms,
            format!(
                "segment {} does not start with a video keyframe",
                s.utc_start_ms
            ),
        ));
    }
    if first.capture_ms != s.utc_start_ms {
        v.push(violation(
            who,
            "archive segment",
            at_ms,
            format!(
                "segment {} starts with a frame captured at {}",
                s.utc_start_ms, first.capture_ms
            ),
        ));
    }
    for w in s.frames.windows(2) {
        if !follows(w[0].pos, w[1].pos) {
            v.push(violation(
                who,
                "archive segment",
                at_ms,
                format!(
                    "in segment {}, frame {} follows frame {}",
                    s.utc_start_ms,
                    pos(w[1].pos),
                    pos(w[0].pos)
                ),
            ));
            break;
        }
    }
    let mut tracks = Tracks::default();
    tracks.set(&s.media_info);
    let seen: Vec<oracle::SeenFrame> = s
        .frames
        .iter()
        .map(|f| tracks.seen(f, at_ms, 0, true))
        .collect();
    let mut bv = Vec::new();
    oracle::barcode_violations(who, &seen, &mut bv);
    for mut b in bv.into_iter().take(3) {
        b.detail = format!("archive segment {}: {}", s.utc_start_ms, b.detail);
        v.push(b);
    }
}

/// Simulated ms of a UTC ms of the simulation.
pub fn sim_of(utc_ms: u64) -> u64 {
    utc_ms.saturating_sub(SIM_EPOCH_MS)
}

/// What the live M4F observer `live` of the recording node saw and the look's index
/// lacks: each distinct segment that reached `live` at least `margin_ms` before the
/// look and starts no earlier than the oldest index entry (older ones may have been
/// deleted on purpose: retention, a full disk). Also returns violations of the
/// **archive identical** oracle between the live segments and the stored ones (the
/// DVR stores the segment M4F carried, unchanged: same canonical bytes).
pub fn compare_with_live(
    who: &str,
    look: &Look,
    live: &Observation,
    margin_ms: u64,
) -> (Vec<oracle::SeenSegment>, Vec<Violation>) {
    let mut missing = Vec::new();
    let mut v = Vec::new();
    let Some(oldest) = look.entries().first().map(|e| sim_of(e.utc_start_ms)) else {
        return (missing, v);
    };
    let stored = encodings(look.recorded());
    let listed: BTreeMap<u64, &ArchiveEntry> = look
        .entries()
        .iter()
        .map(|e| (sim_of(e.utc_start_ms), e))
        .collect();
    let mut seen: BTreeMap<u64, oracle::SeenSegment> = BTreeMap::new();
    for s in &live.log().segments {
        if s.at_ms + margin_ms <= look.at_ms && s.start_ms >= oldest {
            seen.entry(s.start_ms).or_insert_with(|| s.clone());
        }
    }
    for (start, s) in seen {
        if !listed.contains_key(&start) {
            missing.push(s);
            continue;
        }
        if let Some(b) = stored.get(&(start + SIM_EPOCH_MS)) {
            let fnv = crate::fnv1a64(b);
            if fnv != s.fnv {
                v.push(violation(
                    who,
                    "archive identical",
                    look.at_ms,
                    format!(
                        "stored segment {} (fnv {fnv:016x}) is not the segment {} saw live over \
                         M4F (fnv {:016x})",
                        start + SIM_EPOCH_MS,
                        live.name(),
                        s.fnv
                    ),
                ));
            }
        }
    }
    (missing, v)
}
