//! The archive route in the pure simulator: an edge answers archive questions (an
//! index, a range; plain, or through a cache) with core's archive-route machines
//! (`RemoteRequest`, `cached_index`, `CachedRange`, `local_index`) against two
//! origin peers, driven the way node's `archive.rs` drives them but on one event
//! queue in simulated time. Each peer either records the stream (a segment every
//! 2 s, the oldest dropped past [`PEER_KEEPS`]) and serves it through core's
//! `ArchiveSender` / `index_answer`, or truly has no archive of it (it answers 404).
//! The links to the peers have delay with jitter, cuts (a reset: the response
//! ends), partitions (connects time out, messages vanish and the response hangs
//! silently), stalls (messages held, shorter and longer than the idle deadline) and
//! peers that are down (connects refused). The cache loses files and holds damaged
//! ones. Readers take their time, sometimes longer than the idle deadline, and
//! sometimes leave.
//!
//! Oracles, checked at the end of every question:
//! - byte identity: every segment delivered is the one the peer it came from stored
//!   at that UTC, byte for byte (and a cached one, the bytes that peer stored);
//!   delivered in UTC order, each once;
//! - completeness: a plain range delivers exactly what the answering peer sent and
//!   says so (`Done(n)`); a cached range delivers every entry of its index but the
//!   ones the peer no longer had when asked (a lost or damaged cache file is
//!   fetched again, never skipped);
//! - an index answer is the answering peer's index clipped to the window, or, with
//!   the peer unreachable, what the cache holds;
//! - 404 only when no reachable peer has an archive: some asked peer truly has
//!   none, and every asked peer that has one was cut off by a fault;
//! - 503 only when a fault hit one of the question's connections;
//! - no hang: while the edge waits for a peer (not for its reader), something
//!   arrives or the question ends within [`ARCHIVE_IDLE_TIMEOUT`];
//! - cluster auth: every request the edge opens is signed (`ClusterAuth::sign`) and
//!   each peer verifies it with its own `ReplayGuard` and its own clock (off by up to
//!   2 s); every genuine request that reaches a peer is accepted, and a
//!   man-in-the-middle that replays an accepted request 0.1-45 s later is refused:
//!   as a replay inside the clock window, for the skew outside it.
//!
//! Owns: this world, its faults and oracles. Must not: decide anything the machines
//! decide (which peer, what a refusal means, when a peer is gone, what is read
//! from the cache), or read a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::events::Events;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::archive_route::{
    cached_index, local_index, ArchiveError, ArchiveIndex, ArchiveSegment, CachedAction,
    CachedRange, Opened, Question, ReadFailure, RemoteAction, RemoteRequest, ARCHIVE_IDLE_TIMEOUT,
};
use tern_core::archive_window::clip_entries;
use tern_core::cluster::archive_sender::{index_answer, ArchiveSender, Outgoing};
use tern_core::cluster::auth::{
    AuthError, ClusterAuth, ReplayGuard, Signature, SignedRequest, MAX_CLOCK_SKEW_MS, NONCE_LEN,
};
use tern_core::cluster::message::{ArchiveEntry, DvrFacts, Message};
use tern_core::cluster::ProtocolVersion;
use tern_core::dvr::machine::Encoded;
use tern_core::dvr::Index;
use tern_core::{segment_codec, Frame, MediaInfo, Position, Segment, StreamName, TrackInfo};

/// The peers the edge asks, in this order.
pub const PEERS: usize = 2;
/// Segments a recording peer keeps (its retention drops the oldest beyond).
pub const PEER_KEEPS: usize = 30;
/// Segments the edge's cache keeps.
pub const CACHE_KEEPS: usize = 20;
/// Segment length of the peers' recordings.
const SEGMENT_MS: u64 = 2000;
/// UTC of simulated time zero.
const BASE_UTC: u64 = 1_764_000_000_000;
/// One-way link delay: between these, in order per connection.
const LINK_MIN: Duration = Duration::from_millis(2);
const LINK_MAX: Duration = Duration::from_millis(15);
/// A connection attempt that gets no answer fails after this (the driver's
/// connect timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Stalls up to this long must not fail a question (the idle deadline is longer
/// than the stall plus the links); longer ones may.
const SHORT_STALL_MAX: Duration = Duration::from_secs(8);
/// Faults arrive on average this often.
pub const FAULT_EVERY: Duration = Duration::from_secs(4);
/// The hang oracle's bound: the idle deadline, and the time until the next event
/// of the world looks (the peers record every 2 s).
const HANG_BOUND: Duration = Duration::from_millis(ARCHIVE_IDLE_TIMEOUT.as_millis() as u64 + 50);

type ConnId = u64;
type JobId = u64;

/// What one archive-world run did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveCounts {
    pub steps: u64,
    pub questions: u64,
    pub ranges: u64,
    pub indexes: u64,
    pub cached: u64,
    /// Answers: a range or index, 404, 503.
    pub answered: u64,
    pub not_found: u64,
    pub unreachable: u64,
    pub segments_delivered: u64,
    pub from_cache: u64,
    /// Cache reads that failed (lost or damaged file) and went to the peer.
    pub refetched: u64,
    /// Cached indexes answered by the cache while the peer was unreachable.
    pub cache_indexes: u64,
    /// Segments listed but gone from the peer when fetched (its retention).
    pub gone_at_peer: u64,
    /// Responses given up by the idle deadline.
    pub idle_timeouts: u64,
    /// Segments a reader held longer than the idle deadline.
    pub slow_reads: u64,
    pub readers_gone: u64,
    pub cuts: u64,
    pub partitions: u64,
    pub short_stalls: u64,
    pub long_stalls: u64,
    pub downs: u64,
    pub cache_faults: u64,
    /// Signed requests verified by a peer; replays refused as replays (inside the
    /// clock window) and for the skew (outside it).
    pub signed: u64,
    pub replays_refused: u64,
    pub replays_too_old: u64,
}

impl ArchiveCounts {
    pub fn add(&mut self, o: &ArchiveCounts) {
        let ArchiveCounts {
            steps,
            questions,
            ranges,
            indexes,
            cached,
            answered,
            not_found,
            unreachable,
            segments_delivered,
            from_cache,
            refetched,
            cache_indexes,
            gone_at_peer,
            idle_timeouts,
            slow_reads,
            readers_gone,
            cuts,
            partitions,
            short_stalls,
            long_stalls,
            downs,
            cache_faults,
            signed,
            replays_refused,
            replays_too_old,
        } = o;
        self.steps += steps;
        self.questions += questions;
        self.ranges += ranges;
        self.indexes += indexes;
        self.cached += cached;
        self.answered += answered;
        self.not_found += not_found;
        self.unreachable += unreachable;
        self.segments_delivered += segments_delivered;
        self.from_cache += from_cache;
        self.refetched += refetched;
        self.cache_indexes += cache_indexes;
        self.gone_at_peer += gone_at_peer;
        self.idle_timeouts += idle_timeouts;
        self.slow_reads += slow_reads;
        self.readers_gone += readers_gone;
        self.cuts += cuts;
        self.partitions += partitions;
        self.short_stalls += short_stalls;
        self.long_stalls += long_stalls;
        self.downs += downs;
        self.cache_faults += cache_faults;
        self.signed += signed;
        self.replays_refused += replays_refused;
        self.replays_too_old += replays_too_old;
    }
}

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct ArchiveReport {
    pub seed: u64,
    pub simulated: Duration,
    pub counts: ArchiveCounts,
    pub violations: Vec<String>,
}

#[derive(Debug)]
enum Ev {
    /// The recording peers close one more segment.
    Record,
    /// The edge starts its next question.
    NextQuestion,
    /// Client side: what opening the path gave.
    Opened(ConnId, Opened),
    /// Client side: one message.
    Deliver(ConnId, Box<Message>),
    /// Client side: the connection broke.
    Closed(ConnId),
    /// Server side: the client took the last message, send the next.
    ServerNext(ConnId),
    /// The reader took the segment it was given.
    ReaderTook(JobId),
    /// The remote request's idle deadline.
    Timeout(JobId, Duration),
    /// The man-in-the-middle replays a captured request.
    Replay(Box<Captured>),
    Fault,
}

/// A signed request the man-in-the-middle saw a peer accept.
#[derive(Debug)]
struct Captured {
    peer: usize,
    path: String,
    host: String,
    /// The `x-tern-auth` header as sent.
    header: String,
}

/// One origin peer: its archive of the stream (if it records it) and its link.
struct Peer {
    /// Its replay guard and how far its clock is off the edge's (ms).
    guard: ReplayGuard,
    clock_off_ms: i64,
    records: bool,
    index: Index,
    /// Stored bytes of the segments it holds now.
    files: BTreeMap<u64, Bytes>,
    /// Every segment it ever stored (for byte identity after its retention).
    ever: BTreeMap<u64, Bytes>,
    down_until: Option<Duration>,
    partitioned_until: Option<Duration>,
    stalled_until: Option<Duration>,
}

impl Peer {
    fn facts(&self) -> DvrFacts {
        DvrFacts {
            depth_secs: PEER_KEEPS as u64 * SEGMENT_MS / 1000,
            ranges: self.index.ranges(),
        }
    }

    fn entries(&self, window: Option<(u64, u64)>) -> Vec<ArchiveEntry> {
        match window {
            Some((from, to)) => self
                .index
                .query(from, to)
                .into_iter()
                .map(|h| ArchiveEntry {
                    utc_start_ms: h.entry.utc_start_ms,
                    duration_ms: h.entry.duration_ms,
                    discontinuity: h.discontinuity,
                })
                .collect(),
            None => Vec::new(),
        }
    }
}

/// What a server sends on one connection.
enum Serving {
    /// The index answer's messages, in order.
    Index(VecDeque<Message>),
    /// A range: core's sender, and the UTC starts still to read (listed at open).
    Range {
        sender: ArchiveSender,
        left: VecDeque<u64>,
        read: u32,
        ended: bool,
    },
}

struct Conn {
    job: JobId,
    peer: usize,
    serving: Option<Serving>,
    /// The index an index question was answered with.
    served: Option<ArchiveIndex>,
    /// The client has its `Opened`.
    opened: bool,
    dead: bool,
    /// Delivery time of the previous message (a connection is in order).
    tail: Duration,
    /// UTC starts of the segments the server put on this connection.
    sent: Vec<u64>,
}

/// The edge's cache: an index and files, as a `cache` DVR keeps them.
struct Cache {
    index: Index,
    files: BTreeMap<u64, (Bytes, bool)>,
    /// The peer each cached segment came from (for the oracle).
    from_peer: BTreeMap<u64, usize>,
}

impl Cache {
    fn answer(&self, window: Option<(u64, u64)>) -> Result<ArchiveIndex, ArchiveError> {
        let entries = match window {
            Some((from, to)) => self
                .index
                .query(from, to)
                .into_iter()
                .map(|h| ArchiveEntry {
                    utc_start_ms: h.entry.utc_start_ms,
                    duration_ms: h.entry.duration_ms,
                    discontinuity: h.discontinuity,
                })
                .collect(),
            None => Vec::new(),
        };
        local_index(
            DvrFacts {
                depth_secs: CACHE_KEEPS as u64 * SEGMENT_MS / 1000,
                ranges: self.index.ranges(),
            },
            entries,
        )
    }

    /// A cache read as the DVR answers it: gone or damaged files are failures, and
    /// either leaves the index, as node's `Dvr::read` does through
    /// `DvrMachine::handle_damaged`, so the refetched segment is kept again.
    fn read(&mut self, utc: u64) -> Result<Bytes, ReadFailure> {
        let got = match (self.index.contains(utc), self.files.get(&utc)) {
            (true, Some((b, false))) => return Ok(b.clone()),
            (true, Some((_, true))) => ReadFailure::Damaged,
            _ => ReadFailure::Missing,
        };
        self.index.remove(utc);
        self.files.remove(&utc);
        self.from_peer.remove(&utc);
        Err(got)
    }

    fn keep(&mut self, seg: &Segment, peer: usize) {
        let Some(enc) = Encoded::new(seg) else {
            return;
        };
        let utc = enc.entry.utc_start_ms;
        if self.index.contains(utc) {
            return;
        }
        self.index.insert(enc.entry);
        self.files.insert(utc, (enc.bytes, false));
        self.from_peer.insert(utc, peer);
        while self.index.len() > CACHE_KEEPS {
            if let Some(e) = self.index.pop_oldest() {
                self.files.remove(&e.utc_start_ms);
                self.from_peer.remove(&e.utc_start_ms);
            }
        }
    }
}

/// What a remote request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Its answer is the question's.
    Answer,
    /// The peer's index for a cached question.
    CachedIndex,
    /// One segment for a cached range.
    Fetch(u64),
}

struct Remote {
    req: RemoteRequest,
    purpose: Purpose,
    conn: Option<ConnId>,
    timer_at: Option<Duration>,
    /// A fetch: the segment picked from the range.
    picked: Option<(Segment, usize)>,
    /// The peer whose connection delivered the index answer, and what it served.
    answered_by: Option<(usize, ArchiveIndex)>,
    /// Every peer asked, and whether a fault hit that attempt.
    attempts: Vec<(usize, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Index,
    Range,
}

/// One archive question of the edge.
struct Job {
    id: JobId,
    kind: Kind,
    window: Option<(u64, u64)>,
    cached: bool,
    remote: Option<Remote>,
    range: Option<CachedRange>,
    /// The cached range's listed entries (for completeness).
    listed: Vec<u64>,
    /// Entries a fetch found gone from the peer that served it.
    gone: BTreeSet<u64>,
    /// Segments given to the reader: UTC start, where from (peer, or `None`:
    /// the cache).
    delivered: Vec<(u64, Option<usize>)>,
    with_reader: bool,
    reader_left: bool,
    /// The attempts of the latest remote request that ended (the one whose error
    /// a failed question carries).
    attempts: Vec<(usize, bool)>,
    /// What the connection that answered a plain range put on the wire.
    sent: Vec<u64>,
    /// The last input to the remote request other than its timeout.
    progress_at: Duration,
}

/// How a question ended.
enum Answer {
    /// The index, and the peer that served it with what it served (`None`: the
    /// cache answered).
    Index(ArchiveIndex, Option<(usize, ArchiveIndex)>),
    Range(u32),
}

pub struct ArchiveWorld {
    now: Duration,
    rng: ChaCha8Rng,
    queue: Events<Ev>,
    peers: Vec<Peer>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    job: Option<Job>,
    next_job: JobId,
    cache: Cache,
    /// The peer a fetched segment came from, until the range keeps it.
    pending_keep: Option<(u64, usize)>,
    next_segment: u64,
    mi: Arc<MediaInfo>,
    stream: StreamName,
    auth: ClusterAuth,
    faults: bool,
    pub counts: ArchiveCounts,
    pub violations: Vec<String>,
}

/// Runs `steps` events of the archive world of `seed` (with faults unless `calm`).
pub fn run(seed: u64, steps: u64, calm: bool) -> ArchiveReport {
    let mut w = ArchiveWorld::new(seed, !calm);
    while w.counts.steps < steps && w.step() {}
    ArchiveReport {
        seed,
        simulated: w.now,
        counts: w.counts.clone(),
        violations: w.violations.clone(),
    }
}

/// Runs seeds `first..` until `steps` steps are done in all, `per_seed` each.
pub fn sweep(first: u64, steps: u64, per_seed: u64) -> Vec<ArchiveReport> {
    super::events::sweep(
        first,
        steps,
        per_seed,
        |seed, n| run(seed, n, false),
        |r| r.counts.steps,
    )
}

impl ArchiveWorld {
    pub fn new(seed: u64, faults: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa4c1_17e5_0b5e_55ed);
        // Which peers record the stream: mostly both, sometimes one, now and then
        // neither (every answer is then a true 404).
        let pattern = rng.next_u32() % 16;
        let records = [pattern != 0 && pattern != 1, pattern != 0 && pattern != 2];
        let peers = records
            .iter()
            .map(|&records| Peer {
                guard: ReplayGuard::new(),
                clock_off_ms: (rng.next_u32() % 4001) as i64 - 2000,
                records,
                index: Index::new(tern_core::dvr::DEFAULT_GAP_TOLERANCE_MS),
                files: BTreeMap::new(),
                ever: BTreeMap::new(),
                down_until: None,
                partitioned_until: None,
                stalled_until: None,
            })
            .collect();
        let mut w = ArchiveWorld {
            now: Duration::ZERO,
            rng,
            queue: Events::default(),
            peers,
            conns: BTreeMap::new(),
            next_conn: 0,
            job: None,
            next_job: 0,
            cache: Cache {
                index: Index::new(tern_core::dvr::DEFAULT_GAP_TOLERANCE_MS),
                files: BTreeMap::new(),
                from_peer: BTreeMap::new(),
            },
            pending_keep: None,
            next_segment: 0,
            mi: Arc::new(MediaInfo {
                tracks: vec![TrackInfo::placeholder_h264(1)],
            }),
            stream: StreamName::new("cams/door").unwrap_or_else(|_| unreachable!()),
            auth: ClusterAuth::new(b"the pure simulator's cluster key"),
            faults,
            counts: ArchiveCounts::default(),
            violations: Vec::new(),
        };
        w.at(Duration::from_millis(SEGMENT_MS), Ev::Record);
        w.at(Duration::from_secs(5), Ev::NextQuestion);
        if faults {
            let d = w.rand_dur(FAULT_EVERY * 2);
            w.at(d, Ev::Fault);
        }
        w
    }

    fn at(&mut self, at: Duration, ev: Ev) {
        self.queue.at(at, ev);
    }

    fn rand_dur(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.rng.next_u64() % ms)
    }

    fn link_delay(&mut self) -> Duration {
        LINK_MIN
            + Duration::from_micros(self.rng.next_u64() % (LINK_MAX - LINK_MIN).as_micros() as u64)
    }

    fn utc_now(&self) -> u64 {
        BASE_UTC + self.now.as_millis() as u64
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={:?}: {what}", self.now));
        }
    }

    /// Runs one event; `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        self.counts.steps += 1;
        match ev {
            Ev::Record => self.record(),
            Ev::NextQuestion => self.next_question(),
            Ev::Opened(id, mut opened) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.opened = true;
                    if c.dead {
                        // Reset before the answer arrived.
                        opened = Opened::Failed("connection reset".into());
                    }
                }
                if let Some(job) = self.current_remote_conn(id) {
                    let now = self.now;
                    if let Some(r) = self.job.as_mut().and_then(|j| j.remote.as_mut()) {
                        r.req.handle_opened(now, opened);
                    }
                    self.progress(job);
                    self.drive(job);
                }
            }
            Ev::Deliver(id, msg) => {
                if let Some(job) = self.current_remote_conn(id) {
                    let now = self.now;
                    let peer = self.conns.get(&id).map(|c| c.peer);
                    let is_index = matches!(*msg, Message::DvrIndex { .. });
                    let is_segment = matches!(*msg, Message::Segment(_));
                    let served = self.conns.get(&id).and_then(|c| c.served.clone());
                    if let Some(r) = self.job.as_mut().and_then(|j| j.remote.as_mut()) {
                        if is_index {
                            r.answered_by = peer.zip(served);
                        }
                        r.req.handle_message(now, *msg);
                    }
                    self.progress(job);
                    self.drive(job);
                    // A segment is paced by its reader; anything else: the server
                    // may go on.
                    if !is_segment {
                        self.server_next_later(id);
                    }
                }
            }
            Ev::Closed(id) => {
                if let Some(job) = self.current_remote_conn(id) {
                    if let Some(r) = self.job.as_mut().and_then(|j| j.remote.as_mut()) {
                        r.req.handle_closed("connection reset".into());
                    }
                    self.progress(job);
                    self.drive(job);
                }
                self.conns.remove(&id);
            }
            Ev::ServerNext(id) => self.server_next(id),
            Ev::ReaderTook(job) => self.reader_took(job),
            Ev::Timeout(job, at) => {
                let now = self.now;
                let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
                    return true;
                };
                let Some(r) = j.remote.as_mut().filter(|r| r.timer_at == Some(at)) else {
                    return true;
                };
                r.timer_at = None;
                let was_waiting = r.req.poll_timeout().is_some_and(|d| d <= now);
                r.req.handle_timeout(now);
                if was_waiting {
                    self.counts.idle_timeouts += 1;
                }
                self.drive(job);
            }
            Ev::Fault => self.fault(),
            Ev::Replay(c) => self.replay(&c),
        }
        self.check_hang();
        true
    }

    /// No hang: a question waiting for a peer (not for its reader) hears something
    /// or ends within the idle deadline (a connect attempt ends sooner).
    fn check_hang(&mut self) {
        let Some(j) = self.job.as_ref() else {
            return;
        };
        if j.remote.is_none() || j.with_reader || self.now <= j.progress_at + HANG_BOUND {
            return;
        }
        let what = format!(
            "question {} waits for a peer with nothing received since {:?}, past the idle deadline ({ARCHIVE_IDLE_TIMEOUT:?})",
            j.id, j.progress_at
        );
        let conn = j.remote.as_ref().and_then(|r| r.conn);
        self.violation(what);
        // Give it up so the run goes on.
        if let Some(c) = conn {
            self.conns.remove(&c);
        }
        self.job = None;
        self.schedule_next_question();
    }

    /// The job whose current remote request is on connection `id`.
    fn current_remote_conn(&self, id: ConnId) -> Option<JobId> {
        let j = self.job.as_ref()?;
        (j.remote.as_ref()?.conn == Some(id)).then_some(j.id)
    }

    fn progress(&mut self, job: JobId) {
        let now = self.now;
        if let Some(j) = self.job.as_mut().filter(|j| j.id == job) {
            j.progress_at = now;
        }
    }

    /// The peers close a segment each; retention drops their oldest.
    fn record(&mut self) {
        let i = self.next_segment;
        self.next_segment += 1;
        let now = self.now;
        self.at(now + Duration::from_millis(SEGMENT_MS), Ev::Record);
        for p in 0..PEERS {
            if !self.peers[p].records {
                continue;
            }
            // Now and then a peer misses a segment (its source stalled): a gap.
            if self.rng.next_u32().is_multiple_of(23) {
                continue;
            }
            let payload = 40 + (self.rng.next_u32() % 160) as usize;
            let seg = segment(&self.mi, i, p, payload);
            let Some(enc) = Encoded::new(&seg) else {
                continue;
            };
            let peer = &mut self.peers[p];
            let utc = enc.entry.utc_start_ms;
            peer.index.insert(enc.entry);
            peer.files.insert(utc, enc.bytes.clone());
            peer.ever.insert(utc, enc.bytes);
            while peer.index.len() > PEER_KEEPS {
                if let Some(e) = peer.index.pop_oldest() {
                    peer.files.remove(&e.utc_start_ms);
                }
            }
        }
    }

    fn schedule_next_question(&mut self) {
        let think = Duration::from_millis(10) + self.rand_dur(Duration::from_millis(1500));
        self.at(self.now + think, Ev::NextQuestion);
    }

    fn next_question(&mut self) {
        if self.job.is_some() {
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let kind = if self.rng.next_u32().is_multiple_of(3) {
            Kind::Index
        } else {
            Kind::Range
        };
        let cached = self.rng.next_u32().is_multiple_of(2);
        // A window somewhere in the last 90 s (partly before what the peers keep,
        // partly not yet recorded), 1-20 s long; an index without one now and then.
        let now_utc = self.utc_now();
        let back = 1 + self.rng.next_u64() % 90_000;
        let from = now_utc.saturating_sub(back);
        let to = from + 1000 + self.rng.next_u64() % 19_000;
        let window = if kind == Kind::Index && self.rng.next_u32().is_multiple_of(6) {
            None
        } else {
            Some((from, to))
        };
        self.counts.questions += 1;
        match kind {
            Kind::Index => self.counts.indexes += 1,
            Kind::Range => self.counts.ranges += 1,
        }
        if cached {
            self.counts.cached += 1;
        }
        self.job = Some(Job {
            id,
            kind,
            window,
            cached,
            remote: None,
            range: None,
            listed: Vec::new(),
            gone: BTreeSet::new(),
            delivered: Vec::new(),
            with_reader: false,
            reader_left: false,
            attempts: Vec::new(),
            sent: Vec::new(),
            progress_at: self.now,
        });
        let (question, purpose) = match (kind, cached) {
            (Kind::Range, false) => {
                let (from_ms, to_ms) = window.unwrap_or((from, to));
                (Question::Range { from_ms, to_ms }, Purpose::Answer)
            }
            (Kind::Index, false) => (Question::Index { window }, Purpose::Answer),
            (_, true) => (Question::Index { window }, Purpose::CachedIndex),
        };
        self.start_remote(question, purpose);
    }

    fn start_remote(&mut self, question: Question, purpose: Purpose) {
        let peers: Vec<(String, u16, StreamName)> = (0..PEERS)
            .map(|i| (format!("origin{i}"), 8000 + i as u16, self.stream.clone()))
            .collect();
        let req = RemoteRequest::new(self.stream.clone(), &peers, question, true);
        let Some(job) = self.job.as_mut() else {
            return;
        };
        job.remote = Some(Remote {
            req,
            purpose,
            conn: None,
            timer_at: None,
            picked: None,
            answered_by: None,
            attempts: Vec::new(),
        });
        let id = job.id;
        self.progress(id);
        self.drive(id);
    }

    /// Drains the current remote request's actions, as node's `RemoteArchive::drive`.
    fn drive(&mut self, job: JobId) {
        loop {
            let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
                return;
            };
            let Some(r) = j.remote.as_mut() else {
                return;
            };
            let Some(action) = r.req.poll_action() else {
                break;
            };
            match action {
                RemoteAction::Open { peer, path } => self.open(job, peer, path),
                RemoteAction::Deliver(seg) => self.remote_deliver(job, seg),
                RemoteAction::Index(ix) => {
                    let by = r.answered_by.take();
                    self.remote_over(Ok(Answer::Index(ix, by)));
                    return;
                }
                RemoteAction::Done(n) => {
                    self.remote_over(Ok(Answer::Range(n)));
                    return;
                }
                RemoteAction::Failed(e) => {
                    self.remote_over(Err(e));
                    return;
                }
            }
        }
        let now = self.now;
        let mut arm = None;
        if let Some(r) = self
            .job
            .as_mut()
            .filter(|j| j.id == job)
            .and_then(|j| j.remote.as_mut())
        {
            if let Some(t) = r.req.poll_timeout() {
                if r.timer_at != Some(t) {
                    r.timer_at = Some(t);
                    arm = Some(t.max(now));
                }
            }
        }
        if let Some(t) = arm {
            self.at(t, Ev::Timeout(job, t));
        }
    }

    /// Opens `path` on `peer` over the simulated network.
    fn open(&mut self, job: JobId, peer: usize, path: String) {
        let id = self.next_conn;
        self.next_conn += 1;
        let now = self.now;
        // The old connection of this request, if any, is dropped.
        if let Some(old) = self
            .job
            .as_mut()
            .and_then(|j| j.remote.as_mut())
            .and_then(|r| r.conn.replace(id))
        {
            self.conns.remove(&old);
        }
        self.expire(peer);
        let d1 = self.link_delay();
        let d2 = self.link_delay();
        let p = &self.peers[peer];
        let down = p.down_until.is_some();
        let partitioned = p.partitioned_until.is_some();
        let held = p
            .stalled_until
            .map_or(Duration::ZERO, |s| s.saturating_sub(now));
        let records = p.records;
        let (at, opened, faulted) = if down {
            (
                now + d1 + d2,
                Opened::Failed("connection refused".into()),
                true,
            )
        } else if partitioned || held + d1 + d2 >= CONNECT_TIMEOUT {
            (
                now + CONNECT_TIMEOUT,
                Opened::Failed(format!("no answer within {CONNECT_TIMEOUT:?}")),
                true,
            )
        } else if !records {
            (
                now + held + d1 + d2,
                Opened::Rejected {
                    status: 404,
                    body: format!(
                        "stream {:?} has no archive on this node",
                        self.stream.as_str()
                    ),
                },
                false,
            )
        } else {
            (now + held + d1 + d2, Opened::Answered, false)
        };
        if let Some(r) = self.job.as_mut().and_then(|j| j.remote.as_mut()) {
            r.attempts.push((peer, faulted));
        }
        if !faulted {
            // The request reached the peer: it checks the signature.
            self.signed_request(peer, &path, d1);
        }
        let (serving, served) = match opened {
            Opened::Answered => {
                let (s, ix) = self.serve(peer, &path);
                (Some(s), ix)
            }
            _ => (None, None),
        };
        let answered = serving.is_some();
        self.conns.insert(
            id,
            Conn {
                job,
                peer,
                serving,
                served,
                opened: false,
                dead: false,
                tail: at,
                sent: Vec::new(),
            },
        );
        self.at(at, Ev::Opened(id, opened));
        if answered {
            // The server starts sending as the response starts.
            self.at(at, Ev::ServerNext(id));
        }
    }

    /// What `peer` answers to `path` (it records the stream), and for an index
    /// question the index it answers.
    fn serve(&mut self, peer: usize, path: &str) -> (Serving, Option<ArchiveIndex>) {
        let window = parse_window(path);
        let p = &self.peers[peer];
        if path.contains("/dvr/") {
            let ix = local_index(p.facts(), p.entries(window));
            let served = ix.as_ref().ok().cloned();
            let msgs = index_answer(ProtocolVersion::LATEST, format!("origin{peer}"), ix);
            (Serving::Index(msgs.into_iter().collect()), served)
        } else {
            let (from, to) = window.unwrap_or((0, 0));
            let left = p
                .index
                .query(from, to)
                .iter()
                .map(|h| h.entry.utc_start_ms)
                .collect();
            let sender = ArchiveSender::new(ProtocolVersion::LATEST, format!("origin{peer}"));
            (
                Serving::Range {
                    sender,
                    left,
                    read: 0,
                    ended: false,
                },
                None,
            )
        }
    }

    /// The edge signs a request for `path` on `peer`, which checks it on arrival,
    /// `delay` later; the man-in-the-middle keeps one in four it saw accepted and
    /// replays it later.
    fn signed_request(&mut self, peer: usize, path: &str, delay: Duration) {
        let host = format!("origin{peer}:{}", 8000 + peer);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let req = SignedRequest {
            method: "GET",
            path_and_query: path,
            host: &host,
            body: b"",
        };
        let header = self.auth.sign(&req, self.utc_now(), nonce).header_value();
        let arrives = self.now + delay;
        match self.verify_at(peer, path, &host, &header, arrives) {
            Ok(()) => {
                self.counts.signed += 1;
                if self.rng.next_u32().is_multiple_of(4) {
                    let later = Duration::from_millis(100 + self.rng.next_u64() % 45_000);
                    let c = Captured {
                        peer,
                        path: path.to_owned(),
                        host,
                        header,
                    };
                    self.at(arrives + later, Ev::Replay(Box::new(c)));
                }
            }
            Err(e) => self.violation(format!(
                "peer {peer} refused a genuine signed request for {path}: {e}"
            )),
        }
    }

    /// What peer `peer`'s server says to the signed request at simulated time `at`
    /// (its own clock), as node's cluster server checks it.
    fn verify_at(
        &mut self,
        peer: usize,
        path: &str,
        host: &str,
        header: &str,
        at: Duration,
    ) -> Result<(), AuthError> {
        let sig = Signature::parse(header)?;
        let req = SignedRequest {
            method: "GET",
            path_and_query: path,
            host,
            body: b"",
        };
        let p = &mut self.peers[peer];
        let now = (BASE_UTC + at.as_millis() as u64).saturating_add_signed(p.clock_off_ms);
        self.auth.verify(&req, &sig, now, &mut p.guard)
    }

    /// The man-in-the-middle sends a captured request again: refused, as a replay
    /// inside the clock window and for the skew outside it.
    fn replay(&mut self, c: &Captured) {
        let now = self.now;
        let got = self.verify_at(c.peer, &c.path, &c.host, &c.header, now);
        match got {
            Err(AuthError::Replay) => self.counts.replays_refused += 1,
            Err(AuthError::ClockSkew { skew_ms, .. }) if skew_ms > MAX_CLOCK_SKEW_MS => {
                self.counts.replays_too_old += 1
            }
            other => self.violation(format!(
                "a request to peer {} for {} replayed later was not refused as a replay: {other:?}",
                c.peer, c.path
            )),
        }
    }

    /// Faults of `peer` that have run their time end.
    fn expire(&mut self, peer: usize) {
        let now = self.now;
        let p = &mut self.peers[peer];
        for until in [
            &mut p.partitioned_until,
            &mut p.stalled_until,
            &mut p.down_until,
        ] {
            if until.is_some_and(|u| u <= now) {
                *until = None;
            }
        }
    }

    /// The client took the last message: tell the server after a link's time.
    fn server_next_later(&mut self, id: ConnId) {
        let d = self.link_delay();
        self.at(self.now + d, Ev::ServerNext(id));
    }

    /// The server sends its next message (one in flight, paced by the client).
    fn server_next(&mut self, id: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        let peer = c.peer;
        self.expire(peer);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let p = &self.peers[peer];
        let msg = match c.serving.as_mut() {
            None => None,
            Some(Serving::Index(q)) => q.pop_front(),
            Some(Serving::Range {
                sender,
                left,
                read,
                ended,
            }) => loop {
                if let Some(out) = sender.poll_transmit() {
                    break Some(out);
                }
                if *ended {
                    break None;
                }
                match left.pop_front() {
                    // Read it now: gone since the listing (retention) is skipped,
                    // as node's `Dvr` range does.
                    Some(utc) => {
                        if let Some(b) = p.files.get(&utc) {
                            *read += 1;
                            sender.handle_segment(ArchiveSegment::Stored(b.clone()));
                        }
                    }
                    None => {
                        sender.handle_end(Ok(*read));
                        *ended = true;
                    }
                }
            }
            .map(|out| match out {
                Outgoing::Message(m) => m,
                // The stored bytes go out as they are; the edge decodes them.
                Outgoing::Stored(b) => match segment_codec::decode(b) {
                    Ok(s) => Message::Segment(s),
                    Err(e) => Message::End {
                        reason: format!("stored segment does not decode: {e}"),
                    },
                },
            }),
        };
        let Some(msg) = msg else {
            return;
        };
        if let Message::Segment(s) = &msg {
            c.sent.push(s.utc_start_ms);
        }
        let p = &self.peers[peer];
        if p.partitioned_until.is_some() {
            // Gone into the partition: the response hangs silently.
            c.dead = true;
            let job = c.job;
            self.mark_faulted(job, id);
            return;
        }
        let stalled = p.stalled_until;
        let long_stall = stalled.is_some_and(|s| s.saturating_sub(now) > SHORT_STALL_MAX);
        let d = self.link_delay();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let at = (stalled.map_or(now, |s| s.max(now)) + d).max(c.tail);
        c.tail = at;
        let job = c.job;
        if long_stall {
            self.mark_faulted(job, id);
        }
        self.at(at, Ev::Deliver(id, Box::new(msg)));
    }

    /// A fault hit the attempt on connection `id` of question `job`.
    fn mark_faulted(&mut self, job: JobId, id: ConnId) {
        let Some(peer) = self.conns.get(&id).map(|c| c.peer) else {
            return;
        };
        let Some(r) = self
            .job
            .as_mut()
            .filter(|j| j.id == job)
            .and_then(|j| j.remote.as_mut())
            .filter(|r| r.conn == Some(id))
        else {
            return;
        };
        // The latest attempt on that peer is this connection's.
        if let Some(a) = r.attempts.iter_mut().rev().find(|(p, _)| *p == peer) {
            a.1 = true;
        }
    }

    /// A segment of a remote range: to the reader (the question's answer) or
    /// picked (a cached range's fetch).
    fn remote_deliver(&mut self, job: JobId, seg: Segment) {
        let now = self.now;
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        let Some(r) = j.remote.as_mut() else {
            return;
        };
        let peer = r
            .conn
            .and_then(|c| self.conns.get(&c))
            .map_or(usize::MAX, |c| c.peer);
        match r.purpose {
            Purpose::Fetch(utc) => {
                // node's `fetch_segment`: the one starting at `utc`; its reader takes
                // each at once.
                if seg.utc_start_ms == utc {
                    r.picked = Some((seg, peer));
                }
                r.req.handle_delivered(now);
                let conn = r.conn;
                self.progress(job);
                if let Some(c) = conn {
                    self.server_next_later(c);
                }
            }
            _ => {
                let utc = seg.utc_start_ms;
                self.check_bytes(&seg, peer);
                self.give_reader(job, utc, Some(peer));
            }
        }
    }

    /// Byte identity: `seg` is what `peer` stored at its UTC start.
    fn check_bytes(&mut self, seg: &Segment, peer: usize) {
        let utc = seg.utc_start_ms;
        let got = segment_codec::encode(seg);
        let want = self.peers.get(peer).and_then(|p| p.ever.get(&utc));
        if want != Some(&got) {
            let what = format!(
                "segment {utc} from peer {peer} is not the one it stored ({} bytes vs {:?})",
                got.len(),
                want.map(|w| w.len())
            );
            self.violation(what);
        }
    }

    /// A segment goes to the reader, who takes its time (sometimes longer than the
    /// idle deadline) or now and then leaves.
    fn give_reader(&mut self, job: JobId, utc: u64, from: Option<usize>) {
        self.counts.segments_delivered += 1;
        let roll = self.rng.next_u32() % 100;
        let slow = roll < 3;
        let hold = if slow {
            self.counts.slow_reads += 1;
            ARCHIVE_IDLE_TIMEOUT + self.rand_dur(Duration::from_secs(20))
        } else {
            self.rand_dur(Duration::from_millis(300))
        };
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        if let Some(&(last, _)) = j.delivered.last() {
            if utc <= last {
                let what = format!("delivered {utc} after {last}: out of order or twice");
                self.violation(what);
            }
        }
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        j.delivered.push((utc, from));
        j.with_reader = true;
        if roll == 99 {
            j.reader_left = true;
        }
        self.at(self.now + hold, Ev::ReaderTook(job));
    }

    fn reader_took(&mut self, job: JobId) {
        let now = self.now;
        let Some(j) = self.job.as_mut().filter(|j| j.id == job && j.with_reader) else {
            return;
        };
        j.with_reader = false;
        let gone = j.reader_left;
        if gone {
            self.counts.readers_gone += 1;
        }
        if let Some(range) = j.range.as_mut() {
            if gone {
                range.handle_reader_gone();
            } else {
                range.handle_delivered();
            }
            self.drive_cached(job);
            return;
        }
        let Some(r) = j.remote.as_mut() else {
            return;
        };
        if gone {
            r.req.handle_reader_gone();
        } else {
            r.req.handle_delivered(now);
        }
        let conn = r.conn;
        self.progress(job);
        self.drive(job);
        if !gone {
            if let Some(c) = conn {
                self.server_next_later(c);
            }
        }
    }

    /// The current remote request ended with `res`.
    fn remote_over(&mut self, res: Result<Answer, ArchiveError>) {
        let Some(j) = self.job.as_mut() else {
            return;
        };
        let Some(mut r) = j.remote.take() else {
            return;
        };
        j.attempts = std::mem::take(&mut r.attempts);
        if let Some(c) = r.conn.and_then(|c| self.conns.remove(&c)) {
            j.sent = c.sent;
        }
        let job = j.id;
        match r.purpose {
            Purpose::Answer => self.finish(res),
            Purpose::CachedIndex => {
                let window = j.window;
                let kind = j.kind;
                let by = match &res {
                    Ok(Answer::Index(_, by)) => by.clone(),
                    _ => None,
                };
                let remote = match res {
                    Ok(Answer::Index(ix, _)) => Ok(ix),
                    Ok(Answer::Range(_)) => Err(ArchiveError::failed(
                        "",
                        "an index question ended without an index",
                    )),
                    Err(e) => Err(e),
                };
                let from_cache = matches!(remote, Err(ArchiveError::Unreachable { .. }));
                let cache = &self.cache;
                let ix = cached_index(window, remote, || cache.answer(window));
                if from_cache && ix.is_ok() {
                    self.counts.cache_indexes += 1;
                }
                let by = if from_cache { None } else { by };
                match (kind, ix) {
                    (Kind::Index, ix) => self.finish(ix.map(|ix| Answer::Index(ix, by))),
                    (Kind::Range, Err(e)) => self.finish(Err(e)),
                    (Kind::Range, Ok(ix)) => {
                        let Some(j) = self.job.as_mut() else {
                            return;
                        };
                        j.listed = ix.entries.iter().map(|e| e.utc_start_ms).collect();
                        j.range = Some(CachedRange::new(ix.entries));
                        self.drive_cached(job);
                    }
                }
            }
            Purpose::Fetch(utc) => {
                let fetched = match res {
                    Ok(Answer::Range(_)) => Ok(r.picked.clone().map(|(s, _)| s)),
                    Ok(_) => Err(ArchiveError::failed(
                        "",
                        "a range question ended with an index",
                    )),
                    Err(e) => Err(e),
                };
                if let Some((s, peer)) = &r.picked {
                    self.check_bytes(s, *peer);
                }
                if matches!(fetched, Ok(None)) {
                    // The oracle: the peer truly lost it (every recording peer
                    // asked no longer holds it).
                    self.counts.gone_at_peer += 1;
                    let still: Vec<usize> = (0..PEERS)
                        .filter(|&p| {
                            self.peers[p].files.contains_key(&utc)
                                && self.peers[p].down_until.is_none()
                                && self.peers[p].partitioned_until.is_none()
                        })
                        .collect();
                    if let Some(j) = self.job.as_mut() {
                        j.gone.insert(utc);
                    }
                    let answered_by_holder = self
                        .job
                        .as_ref()
                        .and_then(|j| j.attempts.last())
                        .is_some_and(|(p, f)| !f && still.contains(p));
                    if answered_by_holder {
                        self.violation(format!(
                            "fetching {utc} found nothing, but the peer that answered holds it"
                        ));
                    }
                }
                if let Some(j) = self.job.as_mut() {
                    if let Some(range) = j.range.as_mut() {
                        range.handle_fetched(fetched);
                    }
                }
                if let Some((s, peer)) = r.picked {
                    // Remember where a kept segment came from (for the cache's oracle).
                    self.pending_keep = Some((s.utc_start_ms, peer));
                }
                self.drive_cached(job);
            }
        }
    }

    /// Drains the cached range's actions, as node's `CachedArchive::range`.
    fn drive_cached(&mut self, job: JobId) {
        loop {
            let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
                return;
            };
            if j.remote.is_some() || j.with_reader {
                return;
            }
            let Some(range) = j.range.as_mut() else {
                return;
            };
            let Some(action) = range.poll_action() else {
                return;
            };
            match action {
                CachedAction::Lookup(utc) => {
                    let cached = self.cache.index.contains(utc);
                    if let Some(range) = self.job.as_mut().and_then(|j| j.range.as_mut()) {
                        range.handle_lookup(cached);
                    }
                }
                CachedAction::ReadCache(utc) => {
                    let read = self.cache.read(utc);
                    let from = self.cache.from_peer.get(&utc).copied();
                    if read.is_err() {
                        self.counts.refetched += 1;
                    }
                    if let Ok(b) = &read {
                        self.check_cached_bytes(utc, b, from);
                    }
                    if let Some(range) = self.job.as_mut().and_then(|j| j.range.as_mut()) {
                        range.handle_cache_read(read);
                    }
                }
                CachedAction::Fetch(utc) => {
                    self.start_remote(
                        Question::Range {
                            from_ms: utc,
                            to_ms: utc.saturating_add(1),
                        },
                        Purpose::Fetch(utc),
                    );
                    return;
                }
                CachedAction::Keep(s) => {
                    let peer = match self.pending_keep.take() {
                        Some((utc, p)) if utc == s.utc_start_ms => p,
                        _ => usize::MAX,
                    };
                    self.cache.keep(&s, peer);
                    self.give_reader(job, s.utc_start_ms, Some(peer));
                }
                CachedAction::Deliver(seg) => match seg {
                    ArchiveSegment::Stored(b) => {
                        self.counts.from_cache += 1;
                        match segment_codec::decode(b) {
                            Ok(s) => self.give_reader(job, s.utc_start_ms, None),
                            Err(e) => {
                                self.violation(format!("a cached segment does not decode: {e}"))
                            }
                        }
                    }
                    ArchiveSegment::Decoded(s) => self.give_reader(job, s.utc_start_ms, None),
                },
                CachedAction::Done(n) => {
                    self.finish(Ok(Answer::Range(n)));
                    return;
                }
                CachedAction::Failed(e) => {
                    self.finish(Err(e));
                    return;
                }
            }
        }
    }

    /// Byte identity of a cache read: the bytes the peer it was fetched from stored.
    fn check_cached_bytes(&mut self, utc: u64, b: &Bytes, from: Option<usize>) {
        let want = from
            .and_then(|p| self.peers.get(p))
            .and_then(|p| p.ever.get(&utc));
        if want != Some(b) {
            let what = format!(
                "cached segment {utc} is not the bytes peer {from:?} stored ({} vs {:?})",
                b.len(),
                want.map(|w| w.len())
            );
            self.violation(what);
        }
    }

    /// The question ended: the oracles, then the next question.
    fn finish(&mut self, res: Result<Answer, ArchiveError>) {
        let Some(j) = self.job.take() else {
            return;
        };
        self.schedule_next_question();
        let mut v = Vec::new();
        let took = j.delivered.len() - usize::from(j.reader_left);
        match res {
            Ok(Answer::Index(ix, by)) => {
                self.counts.answered += 1;
                if j.kind != Kind::Index {
                    v.push("a range question answered with an index".into());
                }
                let want = match &by {
                    // The peer's answer, clipped to the window asked.
                    Some((_, served)) => ArchiveIndex {
                        facts: served.facts.clone(),
                        entries: clip_entries(served.entries.clone(), j.window),
                    },
                    None => match self.cache.answer(j.window) {
                        Ok(ix) => ix,
                        Err(e) => {
                            v.push(format!("the cache cannot answer an index: {e}"));
                            ix.clone()
                        }
                    },
                };
                if ix != want {
                    v.push(format!(
                        "index answer {:?} is not what {} holds: {:?}",
                        ix,
                        by.map_or("the cache".to_string(), |(p, _)| format!("peer {p}")),
                        want
                    ));
                }
            }
            Ok(Answer::Range(n)) => {
                self.counts.answered += 1;
                if n as usize != took {
                    v.push(format!(
                        "range done with {n} segments, the reader took {took}"
                    ));
                }
                if j.reader_left {
                    // What it took is all it gets.
                } else if j.cached {
                    let got: BTreeSet<u64> = j.delivered.iter().map(|d| d.0).collect();
                    for u in &j.listed {
                        if !got.contains(u) && !j.gone.contains(u) {
                            v.push(format!(
                                "cached range listed {u} and neither delivered it nor found it gone at the peer"
                            ));
                        }
                    }
                } else {
                    let got: Vec<u64> = j.delivered.iter().map(|d| d.0).collect();
                    if got != j.sent {
                        v.push(format!(
                            "range delivered {got:?}, the answering peer sent {:?}",
                            j.sent
                        ));
                    }
                }
            }
            Err(e) => match e.status() {
                404 => {
                    self.counts.not_found += 1;
                    // Some peer asked truly has no archive, and each one that has
                    // one was cut off by a fault.
                    let truthful = j
                        .attempts
                        .iter()
                        .any(|(p, f)| !f && !self.peers[*p].records);
                    let holder_reachable =
                        j.attempts.iter().any(|(p, f)| !f && self.peers[*p].records);
                    if !truthful || holder_reachable {
                        v.push(format!(
                            "404 ({e}) but attempts {:?} (peer, faulted) and peers recording {:?}",
                            j.attempts,
                            self.peers.iter().map(|p| p.records).collect::<Vec<_>>()
                        ));
                    }
                }
                503 => {
                    self.counts.unreachable += 1;
                    if !j.attempts.iter().any(|(_, f)| *f) {
                        v.push(format!(
                            "503 ({e}) with no fault on any attempt {:?}",
                            j.attempts
                        ));
                    }
                }
                _ => v.push(format!("failed with {}: {e}", e.status())),
            },
        }
        for what in v {
            let what = format!(
                "question {} ({:?} {:?}, cached {}): {what}",
                j.id, j.kind, j.window, j.cached
            );
            self.violation(what);
        }
    }

    /// Schedules the next fault and applies one now.
    fn fault(&mut self) {
        if !self.faults {
            return;
        }
        let next = self.now + Duration::from_millis(1) + self.rand_dur(FAULT_EVERY * 2);
        self.at(next, Ev::Fault);
        let peer = (self.rng.next_u32() as usize) % PEERS;
        let now = self.now;
        self.expire(peer);
        match self.rng.next_u32() % 12 {
            // A cut: the peer's connections end (a reset reaches the edge).
            0..=2 => {
                let ids: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.peer == peer && !c.dead)
                    .map(|(id, _)| *id)
                    .collect();
                if !ids.is_empty() {
                    self.counts.cuts += 1;
                }
                for id in ids {
                    self.cut(id);
                }
            }
            3 | 4 => {
                if self.peers[peer].partitioned_until.is_none() {
                    self.counts.partitions += 1;
                    let d = Duration::from_millis(500) + self.rand_dur(Duration::from_secs(15));
                    self.peers[peer].partitioned_until = Some(now + d);
                }
            }
            5..=7 => {
                if self.peers[peer].stalled_until.is_none() {
                    let long = self.rng.next_u32().is_multiple_of(3);
                    let d = if long {
                        self.counts.long_stalls += 1;
                        ARCHIVE_IDLE_TIMEOUT + self.rand_dur(Duration::from_secs(10))
                    } else {
                        self.counts.short_stalls += 1;
                        Duration::from_millis(100)
                            + self.rand_dur(SHORT_STALL_MAX - Duration::from_millis(100))
                    };
                    self.peers[peer].stalled_until = Some(now + d);
                }
            }
            8 => {
                if self.peers[peer].down_until.is_none() {
                    self.counts.downs += 1;
                    let d = Duration::from_millis(500) + self.rand_dur(Duration::from_secs(10));
                    self.peers[peer].down_until = Some(now + d);
                    let ids: Vec<ConnId> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.peer == peer && !c.dead)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.cut(id);
                    }
                }
            }
            // The cache loses a file or holds a damaged one.
            _ => {
                let n = self.cache.files.len();
                if n > 0 {
                    let k = (self.rng.next_u64() % n as u64) as usize;
                    if let Some(&utc) = self.cache.files.keys().nth(k) {
                        self.counts.cache_faults += 1;
                        if self.rng.next_u32().is_multiple_of(2) {
                            self.cache.files.remove(&utc);
                        } else if let Some(f) = self.cache.files.get_mut(&utc) {
                            f.1 = true;
                        }
                    }
                }
            }
        }
    }

    /// A reset on connection `id`: before its answer arrived, the attempt fails;
    /// during a response, the response ends; after a refusal, nothing happens.
    fn cut(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.opened && c.serving.is_none() {
            return;
        }
        c.dead = true;
        let (job, opened, tail) = (c.job, c.opened, c.tail);
        self.mark_faulted(job, id);
        if opened {
            let d = self.link_delay();
            self.at((self.now + d).max(tail), Ev::Closed(id));
        }
    }
}

/// `?from=MS&to=MS` of a cluster path.
fn parse_window(path: &str) -> Option<(u64, u64)> {
    let q = path.split_once('?')?.1;
    let get = |k: &str| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((get("from")?, get("to")?))
}

/// Segment `i` of peer `peer` (2 s, three H.264 frames, a payload of this peer's
/// own bytes: two peers' segments of one UTC differ).
fn segment(mi: &Arc<MediaInfo>, i: u64, peer: usize, payload: usize) -> Segment {
    let frames = (0..3u64)
        .map(|k| Frame {
            track: 1,
            dts: i * 180_000 + k * 3600,
            pts: i * 180_000 + k * 3600,
            keyframe: k == 0,
            capture_ms: BASE_UTC + i * SEGMENT_MS + k * 40,
            pos: Position {
                epoch: 1,
                seq: i * 3 + k,
            },
            payload: Bytes::from(vec![((i * 7 + peer as u64 * 101 + k) % 251) as u8; payload]),
        })
        .collect();
    Segment {
        media_info: mi.clone(),
        utc_start_ms: BASE_UTC + i * SEGMENT_MS,
        duration_ms: SEGMENT_MS as u32,
        frames,
    }
}
