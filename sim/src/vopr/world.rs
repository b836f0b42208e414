//! The pure simulator's world: nodes made of core machines (an origin with a source,
//! edges pulling over M4S with `PullSession` and serving with `FrameSender`), links
//! between them carrying messages with delay, and the faults that hit them, all on
//! one event queue in simulated time. One step is one event.
//!
//! Owns: the event queue, the simulated connections and fault injection. Must not:
//! read a clock, spawn, or decide anything a machine decides (it only moves
//! messages and deadlines between machines, as the node's drivers do).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::cluster::backoff::{Backoff, BACKOFF_BASE, BACKOFF_CAP};
use tern_core::cluster::message::Message;
use tern_core::cluster::pull::{Action, Cause, PullSession};
use tern_core::cluster::receiver::{Event, Receiver, DEAD_PEER_TIMEOUT};
use tern_core::cluster::sender::FrameSender;
use tern_core::cluster::ProtocolVersion;
use tern_core::gop::Gop;
use tern_core::keyframe::{starts_decoding, video_track};
use tern_core::segmenter::Segmenter;
use tern_core::{Frame, MediaInfo, Position};

use super::dvr::{DvrCounts, SimDvr};
use super::events::Events;
use super::oracle::{Excuses, Published, Violation, WireCheck};
use super::source::SimSource;

/// Which node each node pulls from (`None`: the origin). Node 0 is the origin;
/// 1 and 3 pull from it, 2 pulls from 1 (an edge of an edge).
pub const UPSTREAM: [Option<usize>; 4] = [None, Some(0), Some(1), Some(0)];
/// Size limit of the origin's simulated DVR (with its depth limit, retention runs
/// at every segment).
pub const DVR_LIMIT_BYTES: u64 = 400_000;
/// Frames kept in each node's fan-out ring (a slower receiver lags past them).
pub const RING: usize = 48;
/// One-way link delay: between these, in order per connection.
pub const LINK_MIN: Duration = Duration::from_millis(2);
pub const LINK_MAX: Duration = Duration::from_millis(15);
/// A connection attempt across a partition fails after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Segment target of every node's segmenter.
pub const SEGMENT_MS: u32 = 2000;
/// Frames published by the origin reach a node `hops` links away within
/// `hops * LATENCY_PER_HOP`.
pub const LATENCY_PER_HOP: Duration = Duration::from_millis(16);
/// After a cut (a TCP reset) a receiver that had been receiving reconnects after
/// the backoff's base delay at most and resumes where it stopped: frames from just
/// before the cut to this long after it are excused.
pub const CUT_RECOVERY: Duration =
    Duration::from_millis(BACKOFF_BASE.as_millis() as u64 + 4 * 15 + 10);
/// After a partition or a stall: the dead-peer timeout, a connect timeout, the
/// longest backoff, the longest GOP (61 frames at 40 ms) and the links.
pub const LONG_RECOVERY: Duration = Duration::from_millis(
    DEAD_PEER_TIMEOUT.as_millis() as u64
        + CONNECT_TIMEOUT.as_millis() as u64
        + BACKOFF_CAP.as_millis() as u64
        + 61 * 40
        + 200,
);

/// The longest an epoch's first video frame trails its first audio frame.
const VIDEO_LEAD: Duration = Duration::from_millis(40);

type ConnId = u64;

#[derive(Debug)]
enum Ev {
    SourceTick,
    PullTimer(usize),
    SenderTimer(ConnId),
    /// The request reaches the server.
    ConnectArrives(ConnId),
    /// Client side: the attempt failed.
    ConnectFailed(ConnId),
    /// Client side: the response started.
    Opened(ConnId),
    /// Client side: one message.
    Deliver(ConnId, Box<Message>),
    /// Client side: the connection broke.
    Closed(ConnId),
    /// The fault scheduler's next move.
    Fault,
    /// A fault on a link or the source ends.
    PartitionEnds(usize),
    StallEnds(usize),
    SourceResumes,
}

/// One node's live state: what a `StreamHub` keeps that the senders read.
struct Hub {
    mi: Arc<MediaInfo>,
    gop: Gop<Frame>,
    ring: VecDeque<Frame>,
    /// Index of the next frame published (the ring holds `next - ring.len()..next`).
    next: u64,
    last: Option<Position>,
    segmenter: Segmenter,
    /// The latest frame published after a discontinuity.
    last_gap: Option<Position>,
    /// The last frame of the latest segment closed.
    last_segment_end: Option<Position>,
}

impl Hub {
    fn new(mi: Arc<MediaInfo>) -> Self {
        Hub {
            segmenter: Segmenter::new(SEGMENT_MS, mi.clone()),
            mi,
            gop: Gop::default(),
            ring: VecDeque::with_capacity(RING),
            next: 0,
            last: None,
            last_gap: None,
            last_segment_end: None,
        }
    }

    /// Publishes a frame; returns the segments it closed, each with the latest
    /// discontinuity before its end.
    fn publish(&mut self, f: Frame) -> Vec<(tern_core::Segment, Option<Position>)> {
        let mut closed = Vec::new();
        if self.last.is_some_and(|l| !l.is_followed_by(f.pos)) {
            self.gop.clear();
            closed.extend(self.segmenter.flush().map(|s| (s, self.last_gap)));
            self.last_gap = Some(f.pos);
        }
        self.last = Some(f.pos);
        let key = starts_decoding(video_track(&self.mi), &f);
        self.gop.push(f.clone(), f.payload.len(), key);
        closed.extend(self.segmenter.push(f.clone()).map(|s| (s, self.last_gap)));
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(f);
        self.next += 1;
        closed
    }
}

/// A response being sent by a node.
struct Conn {
    client: usize,
    server: usize,
    sender: Option<FrameSender>,
    /// Next ring index this response reads.
    cursor: u64,
    /// Broken or dropped: nothing more is delivered.
    dead: bool,
    /// Delivery of the previous message (a connection is in order).
    tail: Duration,
    wire: WireCheck,
    timer_at: Option<Duration>,
}

struct Puller {
    session: PullSession,
    conn: Option<ConnId>,
    timer_at: Option<Duration>,
}

struct Link {
    partitioned_until: Option<Duration>,
    stalled_until: Option<Duration>,
    excuses: Excuses,
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub steps: u64,
    pub frames: u64,
    pub delivered: [u64; 4],
    pub gaps: [u64; 4],
    pub segments: u64,
    pub connects: u64,
    pub failed_connects: u64,
    pub dead_peers: u64,
    pub lags: u64,
    pub cuts: u64,
    pub partitions: u64,
    pub stalls: u64,
    pub source_stalls: u64,
    pub restarts: u64,
    pub duplicated_requests: u64,
    pub late_deliveries: u64,
    /// The origin's DVR.
    pub dvr: DvrCounts,
}

impl Counts {
    /// Adds another run's totals (every field: a new one must be added here too, or
    /// this does not compile).
    pub fn add(&mut self, o: &Counts) {
        let Counts {
            steps,
            frames,
            delivered,
            gaps,
            segments,
            connects,
            failed_connects,
            dead_peers,
            lags,
            cuts,
            partitions,
            stalls,
            source_stalls,
            restarts,
            duplicated_requests,
            late_deliveries,
            dvr,
        } = o;
        self.steps += steps;
        self.frames += frames;
        for (a, b) in self.delivered.iter_mut().zip(delivered) {
            *a += b;
        }
        for (a, b) in self.gaps.iter_mut().zip(gaps) {
            *a += b;
        }
        self.segments += segments;
        self.connects += connects;
        self.failed_connects += failed_connects;
        self.dead_peers += dead_peers;
        self.lags += lags;
        self.cuts += cuts;
        self.partitions += partitions;
        self.stalls += stalls;
        self.source_stalls += source_stalls;
        self.restarts += restarts;
        self.duplicated_requests += duplicated_requests;
        self.late_deliveries += late_deliveries;
        self.dvr.add(dvr);
    }
}

pub struct World {
    now: Duration,
    rng: ChaCha8Rng,
    queue: Events<Ev>,
    source: SimSource,
    source_paused: bool,
    hubs: Vec<Hub>,
    pullers: Vec<Option<Puller>>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    links: Vec<Link>,
    published: Vec<Published>,
    /// Per node, origin frames still to be checked: (due, position, published at).
    pending: Vec<VecDeque<(Duration, Position, Duration)>>,
    pub counts: Counts,
    pub violations: Vec<Violation>,
    /// The origin's archive (node 0 records every segment it cuts).
    dvr: SimDvr,
    /// Mean time between faults (`None`: a fault-free run).
    fault_every: Option<Duration>,
    /// Prints the world's decisions between these times (to debug a seed).
    pub trace: Option<(Duration, Duration)>,
}

fn hops(mut node: usize) -> u32 {
    let mut n = 0;
    while let Some(up) = UPSTREAM[node] {
        n += 1;
        node = up;
    }
    n
}

impl World {
    pub fn new(seed: u64, fault_every: Option<Duration>) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let source = SimSource::new(&mut rng, 0);
        let mi = source.mi.clone();
        let n = UPSTREAM.len();
        let mut w = World {
            now: Duration::ZERO,
            rng,
            queue: Events::default(),
            source,
            source_paused: false,
            hubs: (0..n).map(|_| Hub::new(mi.clone())).collect(),
            pullers: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            links: (0..n)
                .map(|_| Link {
                    partitioned_until: None,
                    stalled_until: None,
                    excuses: Excuses::default(),
                })
                .collect(),
            published: (0..n).map(|_| Published::default()).collect(),
            pending: (0..n).map(|_| VecDeque::new()).collect(),
            counts: Counts::default(),
            violations: Vec::new(),
            dvr: SimDvr::new(seed, "origin", Some(DVR_LIMIT_BYTES), fault_every.is_some()),
            fault_every,
            trace: None,
        };
        for (node, up) in UPSTREAM.iter().enumerate() {
            let p = up.map(|_| Puller {
                session: PullSession::new(
                    Duration::ZERO,
                    Receiver::default(),
                    Backoff::new(seed ^ ((node as u64 + 1) * 0x9e37_79b9)),
                    true,
                ),
                conn: None,
                timer_at: None,
            });
            w.pullers.push(p);
        }
        // The first connections take a link's time to open.
        for l in 1..n {
            w.links[l].excuses.add(Duration::ZERO, LINK_MAX * 4);
        }
        w.at(Duration::ZERO, Ev::SourceTick);
        if let Some(every) = fault_every {
            let d = w.rand_dur(every * 2);
            w.at(d, Ev::Fault);
        }
        for node in 0..n {
            w.after_pull(node);
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

    fn log(&self, what: std::fmt::Arguments<'_>) {
        if self
            .trace
            .is_some_and(|(a, b)| a <= self.now && self.now <= b)
        {
            println!("{:?} {what}", self.now);
        }
    }

    fn violation(&mut self, node: usize, what: String) {
        if self.violations.len() < 100 {
            self.violations.push(Violation {
                at: self.now,
                node,
                what,
            });
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
            Ev::SourceTick => self.source_tick(),
            Ev::PullTimer(node) => {
                let now = self.now;
                if let Some(p) = self.pullers[node].as_mut() {
                    if p.timer_at == Some(now) {
                        p.timer_at = None;
                        p.session.handle_timeout(now);
                    }
                }
                self.after_pull(node);
            }
            Ev::SenderTimer(id) => {
                let now = self.now;
                if let Some(c) = self.conns.get_mut(&id) {
                    if c.timer_at == Some(now) {
                        c.timer_at = None;
                        if let Some(s) = c.sender.as_mut() {
                            s.handle_timeout(now, now.as_millis() as u64);
                        }
                        self.flush(id);
                    }
                }
            }
            Ev::ConnectArrives(id) => self.connect_arrives(id),
            Ev::ConnectFailed(id) => {
                let node = self.conns.get(&id).map(|c| c.client);
                if let Some(node) = node {
                    self.conns.remove(&id);
                    let now = self.now;
                    if let Some(p) = self.pullers[node].as_mut() {
                        if p.conn == Some(id) {
                            p.conn = None;
                            p.session.handle_connect_failed(now);
                            self.counts.failed_connects += 1;
                        }
                    }
                    self.after_pull(node);
                }
            }
            Ev::Opened(id) => {
                let Some(node) = self.conns.get(&id).map(|c| c.client) else {
                    return true;
                };
                let now = self.now;
                if let Some(p) = self.pullers[node].as_mut() {
                    if p.conn == Some(id) {
                        p.session.handle_connected(now);
                        self.counts.connects += 1;
                    }
                }
                self.after_pull(node);
            }
            Ev::Deliver(id, msg) => {
                let Some(c) = self.conns.get(&id) else {
                    return true;
                };
                let node = c.client;
                let now = self.now;
                if let Some(p) = self.pullers[node].as_mut() {
                    // Only the connection the session is on: a late message of an
                    // older one (reordered behind a reconnect) is not its business.
                    if p.conn == Some(id) {
                        p.session.handle_message(now, *msg);
                    } else {
                        self.counts.late_deliveries += 1;
                    }
                }
                self.after_pull(node);
            }
            Ev::Closed(id) => {
                let Some(node) = self.conns.get(&id).map(|c| c.client) else {
                    return true;
                };
                let now = self.now;
                if let Some(p) = self.pullers[node].as_mut() {
                    if p.conn == Some(id) {
                        if p.session.is_connected() {
                            p.session.handle_closed(now, "cut".into());
                        } else {
                            // Cut before the response started: the attempt failed.
                            p.conn = None;
                            p.session.handle_connect_failed(now);
                            self.counts.failed_connects += 1;
                        }
                    }
                }
                self.conns.remove(&id);
                self.after_pull(node);
            }
            Ev::Fault => self.fault(),
            Ev::PartitionEnds(l) => {
                if self.links[l].partitioned_until == Some(self.now) {
                    self.links[l].partitioned_until = None;
                }
            }
            Ev::StallEnds(l) => {
                if self.links[l].stalled_until == Some(self.now) {
                    self.log(format_args!("stall ends on link {l}"));
                    self.links[l].stalled_until = None;
                    let ids: Vec<ConnId> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.client == l)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.feed(id);
                    }
                }
            }
            Ev::SourceResumes => {
                self.source_paused = false;
                let due = Duration::from_millis(self.source.next_due_ms()).max(self.now);
                self.at(due, Ev::SourceTick);
            }
        }
        self.check_latency();
        true
    }

    fn source_tick(&mut self) {
        if self.source_paused {
            return;
        }
        let now_ms = self.now.as_millis() as u64;
        let f = self.source.next_frame(now_ms);
        self.counts.frames += 1;
        for node in 1..UPSTREAM.len() {
            let due = self.now + LATENCY_PER_HOP * hops(node);
            self.pending[node].push_back((due, f.pos, self.now));
        }
        self.publish(0, f);
        let due = Duration::from_millis(self.source.next_due_ms()).max(self.now);
        self.at(due, Ev::SourceTick);
    }

    /// A node publishes a frame: oracles, hub, and every response it serves.
    fn publish(&mut self, node: usize, f: Frame) {
        let video = video_track(&self.hubs[node].mi);
        let receiver = UPSTREAM[node].is_some();
        if let Some(p) = self.published[node].publish(video, &f, receiver) {
            self.violation(node, p);
        }
        for (seg, last_gap) in self.hubs[node].publish(f) {
            self.counts.segments += 1;
            if node == 0 {
                // The origin records it (with the DVR's own faults and crashes).
                for what in self.dvr.record(self.now, &seg) {
                    self.violation(0, format!("DVR: {what}"));
                }
            }
            if self
                .trace
                .is_some_and(|(a, b)| a <= self.now && self.now <= b)
            {
                println!(
                    "{:?} node {node}: segment {:?}..{:?} ({} frames, {} ms), last gap {last_gap:?}",
                    self.now,
                    seg.frames.first().map(|f| f.pos.seq),
                    seg.frames.last().map(|f| f.pos.seq),
                    seg.frames.len(),
                    seg.duration_ms
                );
            }
            let (Some(first), Some(last)) = (seg.frames.first(), seg.frames.last()) else {
                continue;
            };
            if !starts_decoding(video, first) {
                let what = format!("segment starts at {:?}, not a keyframe", first.pos);
                self.violation(node, what);
            }
            // Segments cover the published stream: within an epoch and with no
            // discontinuity since the previous segment, a segment starts right after
            // the previous one.
            let hub = &mut self.hubs[node];
            if let Some(end) = hub.last_segment_end {
                let gap_between = last_gap.is_some_and(|g| end < g && g <= first.pos);
                if end.epoch == first.pos.epoch && !end.is_followed_by(first.pos) && !gap_between {
                    let what = format!(
                        "segment starts at {:?} but the previous one ended at {end:?}: frames between were cut out",
                        first.pos
                    );
                    hub.last_segment_end = Some(last.pos);
                    self.violation(node, what);
                    continue;
                }
            }
            hub.last_segment_end = Some(last.pos);
        }
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server == node && c.sender.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.feed(id);
        }
    }

    /// Moves ring frames to a response (unless its link is stalled), as a
    /// broadcast receiver would: lagged past the ring, it hears how many it missed.
    fn feed(&mut self, id: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if self.links[c.client].stalled_until.is_some() || c.dead {
            return;
        }
        let hub = &self.hubs[c.server];
        let Some(sender) = c.sender.as_mut() else {
            return;
        };
        let oldest = hub.next - hub.ring.len() as u64;
        if c.cursor < oldest {
            if self.trace.is_some_and(|(a, b)| a <= now && now <= b) {
                println!("{now:?} conn {id}: lagged {}", oldest - c.cursor);
            }
            sender.handle_lagged(oldest - c.cursor);
            self.counts.lags += 1;
            c.cursor = oldest;
        }
        while c.cursor < hub.next {
            let f = hub.ring[(c.cursor - oldest) as usize].clone();
            c.cursor += 1;
            sender.handle_frame(now, f, || hub.mi.clone());
        }
        self.flush(id);
    }

    /// Puts what a response's sender queued on the link, and re-arms its timer.
    fn flush(&mut self, id: ConnId) {
        let now = self.now;
        let mut out = Vec::new();
        let mut timer = None;
        let mut problems = Vec::new();
        {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(sender) = c.sender.as_mut() else {
                return;
            };
            let video = video_track(&self.hubs[c.server].mi);
            let stalled = self.links[c.client].stalled_until;
            let black_hole = self.links[c.client].partitioned_until.is_some();
            while let Some(m) = sender.poll_transmit() {
                if let Message::Frame(f) = &m {
                    if let Some(p) = c.wire.frame(video, f) {
                        problems.push((c.server, p));
                    }
                }
                if c.dead || black_hole {
                    continue;
                }
                let jitter = LINK_MIN
                    + Duration::from_micros(
                        self.rng.next_u64() % (LINK_MAX - LINK_MIN).as_micros() as u64,
                    );
                let base = stalled.map_or(now, |s| s.max(now));
                let at = (base + jitter).max(c.tail);
                c.tail = at;
                out.push((at, m));
            }
            if let Some(t) = sender.poll_timeout() {
                if c.timer_at != Some(t) {
                    c.timer_at = Some(t);
                    timer = Some(t);
                }
            }
        }
        for (node, p) in problems {
            self.violation(node, p);
        }
        for (at, m) in out {
            self.at(at, Ev::Deliver(id, Box::new(m)));
        }
        if let Some(t) = timer {
            self.at(t.max(now), Ev::SenderTimer(id));
        }
    }

    fn connect_arrives(&mut self, id: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        let hub = &self.hubs[c.server];
        let from = c.wire_from();
        c.sender = Some(FrameSender::new(
            now,
            ProtocolVersion::LATEST,
            format!("n{}", c.server),
            hub.mi.clone(),
            hub.gop.items(),
            from,
        ));
        c.cursor = hub.next;
        let open_at = now + LINK_MIN;
        c.tail = open_at;
        self.at(open_at, Ev::Opened(id));
        self.flush(id);
    }

    /// Applies what a pull session asked for, delivers what it published, and
    /// re-arms its timer.
    fn after_pull(&mut self, node: usize) {
        loop {
            let now = self.now;
            let Some(p) = self.pullers[node].as_mut() else {
                return;
            };
            let mut frames = Vec::new();
            while let Some(ev) = p.session.poll_event() {
                match ev {
                    Event::Frame { frame, .. } => frames.push(frame),
                    Event::MediaInfo(mi) if *mi != *self.hubs[node].mi => {
                        self.hubs[node].mi = mi;
                    }
                    _ => {}
                }
            }
            let action = p.session.poll_action();
            let deadline = p.session.poll_timeout();
            let rearm = deadline.filter(|d| p.timer_at != Some(*d));
            if let Some(d) = rearm {
                p.timer_at = Some(d);
            }
            for f in frames {
                self.counts.delivered[node] += 1;
                self.publish(node, f);
            }
            if let Some(d) = rearm {
                self.at(d.max(now), Ev::PullTimer(node));
            }
            if let Some(a) = &action {
                self.log(format_args!("node {node}: {a:?}"));
            }
            match action {
                None => return,
                Some(Action::Connect { from }) => self.start_connect(node, from),
                Some(Action::Disconnect { cause, .. }) => {
                    let Some(p) = self.pullers[node].as_mut() else {
                        return;
                    };
                    if let Some(id) = p.conn.take() {
                        // The server sees the socket close; what is in flight is lost.
                        self.conns.remove(&id);
                    }
                    if cause == Cause::DeadPeer {
                        self.counts.dead_peers += 1;
                        let l = &self.links[node].excuses;
                        if !l.overlaps(now.saturating_sub(DEAD_PEER_TIMEOUT), now) {
                            self.violation(
                                node,
                                "gave up on a peer as dead on a healthy link".into(),
                            );
                        }
                    }
                }
            }
        }
    }

    fn start_connect(&mut self, node: usize, from: Option<Position>) {
        let Some(server) = UPSTREAM[node] else {
            return;
        };
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                client: node,
                server,
                sender: None,
                cursor: 0,
                dead: false,
                tail: self.now,
                wire: WireCheck::new(from),
                timer_at: None,
            },
        );
        if let Some(p) = self.pullers[node].as_mut() {
            p.conn = Some(id);
        }
        if self.links[node].partitioned_until.is_some() {
            self.at(self.now + CONNECT_TIMEOUT, Ev::ConnectFailed(id));
            return;
        }
        let jitter = self.rand_dur(LINK_MAX);
        self.at(self.now + LINK_MIN + jitter, Ev::ConnectArrives(id));
    }

    /// Schedules the next fault and applies one now.
    fn fault(&mut self) {
        let Some(every) = self.fault_every else {
            return;
        };
        let next = self.now + Duration::from_millis(1) + self.rand_dur(every * 2);
        self.at(next, Ev::Fault);
        let link = 1 + (self.rng.next_u32() as usize) % (UPSTREAM.len() - 1);
        let now = self.now;
        let back = LINK_MAX * 2;
        let kind = self.rng.next_u32() % 16;
        self.log(format_args!("fault {kind} on link {link}"));
        match kind {
            // A cut (TCP reset): the connection ends at both sides.
            0..=5 => {
                let ids: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.client == link && !c.dead)
                    .map(|(id, _)| *id)
                    .collect();
                if ids.is_empty() {
                    return;
                }
                self.counts.cuts += 1;
                // An isolated cut recovers within CUT_RECOVERY (the connection had
                // delivered, so the backoff starts again from its base); one soon
                // after another fault on the link may need the long bound.
                let recovery = if self.links[link]
                    .excuses
                    .overlaps(now.saturating_sub(LONG_RECOVERY), now)
                {
                    LONG_RECOVERY
                } else {
                    CUT_RECOVERY
                };
                self.links[link]
                    .excuses
                    .add(now.saturating_sub(back), now + recovery);
                for id in ids {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.dead = true;
                        c.sender = None;
                    }
                    let at = now + LINK_MIN + self.rand_dur(LINK_MAX);
                    self.at(at, Ev::Closed(id));
                }
            }
            // A partition: nothing crosses the link for a while; connections go
            // silent (the receiver must notice) and attempts time out.
            6..=7 => {
                let d = Duration::from_millis(200) + self.rand_dur(Duration::from_secs(5));
                let until = now + d;
                self.counts.partitions += 1;
                let end = self.links[link]
                    .partitioned_until
                    .map_or(until, |u| u.max(until));
                self.links[link].partitioned_until = Some(end);
                self.links[link]
                    .excuses
                    .add(now.saturating_sub(back), end + LONG_RECOVERY);
                self.at(end, Ev::PartitionEnds(link));
            }
            // A stall: the receiver reads nothing for a while (its sender lags).
            8..=10 => {
                let d = Duration::from_millis(100) + self.rand_dur(Duration::from_millis(1500));
                let until = now + d;
                if self.links[link].stalled_until.is_some() {
                    return;
                }
                self.counts.stalls += 1;
                self.links[link].stalled_until = Some(until);
                self.links[link]
                    .excuses
                    .add(now.saturating_sub(back), until + LONG_RECOVERY);
                self.at(until, Ev::StallEnds(link));
            }
            // The source goes silent while every node stays up (heartbeats carry
            // the connections).
            11..=12 => {
                if self.source_paused {
                    return;
                }
                self.counts.source_stalls += 1;
                self.source_paused = true;
                let d = Duration::from_millis(500) + self.rand_dur(Duration::from_secs(4));
                self.at(now + d, Ev::SourceResumes);
            }
            // The source restarts: a new epoch, after a short pause.
            13 => {
                if self.source_paused {
                    return;
                }
                self.counts.restarts += 1;
                self.source_paused = true;
                let d = Duration::from_millis(100) + self.rand_dur(Duration::from_secs(1));
                let now_ms = (now + d).as_millis() as u64;
                self.source.restart(&mut self.rng, now_ms);
                // Audio before the new epoch's first video keyframe is not
                // restreamed (a receiver restarts at a keyframe).
                for l in 1..UPSTREAM.len() {
                    self.links[l].excuses.add(now, now + d + VIDEO_LEAD);
                }
                self.at(now + d, Ev::SourceResumes);
            }
            // A duplicated request: the server starts a second response nobody
            // reads (its messages must not reach the session).
            _ => {
                let Some(id) = self.pullers[link].as_ref().and_then(|p| p.conn) else {
                    return;
                };
                let Some(c) = self.conns.get(&id) else {
                    return;
                };
                if c.sender.is_none() || self.links[link].partitioned_until.is_some() {
                    return;
                }
                self.counts.duplicated_requests += 1;
                let dup = self.next_conn;
                self.next_conn += 1;
                let from = c.wire_from();
                let (client, server) = (c.client, c.server);
                self.conns.insert(
                    dup,
                    Conn {
                        client,
                        server,
                        sender: None,
                        cursor: 0,
                        dead: false,
                        tail: now,
                        wire: WireCheck::new(from),
                        timer_at: None,
                    },
                );
                let at = now + LINK_MIN + self.rand_dur(LINK_MAX);
                self.at(at, Ev::ConnectArrives(dup));
                // It is dropped a little later (the server notices nobody reads).
                let at = at + Duration::from_millis(300);
                self.at(at, Ev::Closed(dup));
            }
        }
    }

    /// Every origin frame due at an edge by now must have been published there,
    /// unless a fault on its path excuses it.
    fn check_latency(&mut self) {
        for node in 1..UPSTREAM.len() {
            while let Some(&(due, pos, published_at)) = self.pending[node].front() {
                if due > self.now {
                    break;
                }
                self.pending[node].pop_front();
                if self.published[node].take(pos) {
                    continue;
                }
                let mut n = node;
                let mut excused = false;
                while let Some(up) = UPSTREAM[n] {
                    excused |= self.links[n].excuses.covers(published_at);
                    n = up;
                }
                if !excused {
                    let lat = LATENCY_PER_HOP * hops(node);
                    self.violation(
                        node,
                        format!(
                            "frame {pos:?} published by the origin at {published_at:?} not here within {lat:?}"
                        ),
                    );
                }
            }
        }
        if self.counts.steps.is_multiple_of(4096) {
            let horizon = self.now.saturating_sub(LONG_RECOVERY * 4);
            for l in &mut self.links {
                l.excuses.prune(horizon);
            }
        }
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    /// What the origin's DVR did.
    pub fn dvr_counts(&self) -> DvrCounts {
        self.dvr.counts.clone()
    }

    pub fn gaps(&self) -> [u64; 4] {
        let mut g = [0; 4];
        for (i, p) in self.published.iter().enumerate() {
            g[i] = p.gaps;
        }
        g
    }
}

impl Conn {
    fn wire_from(&self) -> Option<Position> {
        self.wire.from()
    }
}
