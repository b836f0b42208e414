//! `StreamHub`: the live state of one stream on this node — its media info, the
//! segmenter, the window of recent segments for HLS, the current GOP for new viewers,
//! the frame fan-out, and the figures the API shows.
//!
//! Owns: publishing frames (one lock, one broadcast send) and subscribing viewers so
//! that a new viewer starts at the latest keyframe with no gap and no duplicate; the
//! stream's live MPEG-TS, muxed once for all `/NAME/mpegts` viewers while there are
//! any (`core::mux::live_ts`), so that fan-out hands out `Bytes` and copies nothing:
//! each chunk goes once to each of the stream's writers (`TsSink`,
//! `output::ts_writer`) and to the broadcast of viewers served through hyper.
//! Must not: do I/O or anything per viewer (outputs do that on their own tasks).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tern_core::cluster::sender::resume_segments;
use tern_core::demand::{Demand, PullMode, PullState};
use tern_core::frame_sanity::{FrameSanity, Verdict};
use tern_core::gop::Gop;
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tern_core::mux::live_ts::{LiveTs, TsChunk};
use tern_core::rebase::Rebaser;
use tern_core::segmenter::Segmenter;
use tern_core::{Frame, MediaInfo, Position, Segment, StreamName, UtcMs};
use tokio::sync::{broadcast, watch, Notify};

/// Closed segments kept in memory for live HLS (more than the playlist lists, so a
/// player that fetched the playlist just before it slid can still get the segment).
pub const LIVE_WINDOW_KEEP: usize = 10;
/// Segments listed in the live playlist.
pub const LIVE_PLAYLIST_LEN: usize = 6;
/// Frames buffered in the fan-out ring; a viewer that falls further behind is skipped
/// forward to the next keyframe (at 25 fps video + audio, about 10 s).
pub const FANOUT_CAPACITY: usize = 1024;
/// A viewer or peer whose queue stays full this long (its socket drains nothing) is
/// disconnected; a merely slow one is skipped forward to the next keyframe when it
/// falls `FANOUT_CAPACITY` frames behind.
pub const VIEWER_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Closed segments buffered for M4F subscribers.
pub const SEGMENT_FANOUT_CAPACITY: usize = 16;

/// A closed segment in the live window, with its HLS bytes muxed on first request.
pub struct LiveSegment {
    pub segment: Segment,
    /// Node-local HLS media sequence number.
    pub sequence: u64,
    /// The epoch differs from the previous segment's: a source restart or switch.
    pub discontinuity: bool,
    ts: OnceLock<Bytes>,
}

impl LiveSegment {
    pub fn ts_bytes(&self) -> Bytes {
        self.ts
            .get_or_init(|| tern_core::mux::mux_segment(&self.segment))
            .clone()
    }
}

/// The live playlist's segments and counters.
pub struct LiveWindow {
    pub segments: Vec<Arc<LiveSegment>>,
    /// Discontinuities that slid out of the list (HLS DISCONTINUITY-SEQUENCE).
    pub discontinuity_sequence: u64,
    /// The largest target duration announced so far (whole seconds): the
    /// configured segment duration, or a longer segment seen since. It never goes
    /// down (RFC 8216 §6.2.1).
    pub target_duration_s: u64,
}

/// What a new live viewer gets: the media info, the frames since the latest keyframe,
/// and a receiver for every frame after them.
pub struct Subscription {
    pub media_info: Arc<MediaInfo>,
    pub gop: Vec<Frame>,
    pub rx: broadcast::Receiver<Frame>,
}

/// What a new live MPEG-TS viewer gets: the muxed chunks since the latest keyframe
/// (empty before the first one) and a receiver for every chunk after them.
pub struct TsSubscription {
    pub gop: Vec<TsChunk>,
    pub rx: broadcast::Receiver<TsChunk>,
}

/// The shared live TS of a stream and its fan-out, while it has viewers.
struct TsFanout {
    live: LiveTs,
    /// Viewers served through hyper (a live MPEG-TS request that was not the first
    /// on its connection): one task each.
    tx: broadcast::Sender<TsChunk>,
    /// Writers that own many viewers' sockets (`output::ts_writer`).
    sinks: Vec<Arc<dyn TsSink>>,
    /// Sequence number of the next chunk (the writers find their viewers' places
    /// and gaps by it).
    next_seq: u64,
}

impl Drop for TsFanout {
    fn drop(&mut self) {
        for s in &self.sinks {
            s.close();
        }
    }
}

/// Where the hub hands each muxed live MPEG-TS chunk besides its broadcast: a
/// writer of many viewers (`output::ts_writer`). Called under the hub's lock, so
/// it must only queue and wake.
pub trait TsSink: Send + Sync {
    /// Takes chunk `seq`; `false` once the sink is gone (the hub forgets it).
    fn push(&self, seq: u64, chunk: &TsChunk) -> bool;
    /// The stream's live TS ended (the pull went idle): its viewers end.
    fn close(&self);
    /// Viewers it serves (to balance new ones).
    fn load(&self) -> usize;
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What a live MPEG-TS writer gets when it joins a viewer (under the hub's lock):
/// the muxed chunks since the latest keyframe, the sequence number of the chunk
/// after them, and the stream's writers (to pick one or add one).
pub struct TsJoin<'a> {
    pub gop: &'a [TsChunk],
    pub next_seq: u64,
    pub sinks: &'a mut Vec<Arc<dyn TsSink>>,
}

#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Monotonic time of the last frame received.
    pub last_frame_at: Option<Duration>,
    /// Monotonic time the stream started.
    pub started_at: Duration,
    /// Input bitrate in bit/s, measured over the last closed segment.
    pub input_bitrate: u64,
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Discontinuities seen (source restarts, input switches, missed frames).
    pub discontinuities: u64,
    /// Wall-clock delay of the latest frame behind its capture (restreamed streams:
    /// how far this node is behind the origin), in ms.
    pub delay_ms: Option<u64>,
    /// Index (in failover order) of the input whose frames are published.
    pub active_input: usize,
    /// Where an ingesting input takes capture times from (`rtsp://`: the camera's
    /// RTCP sender reports or the arrival time).
    pub capture_source: Option<&'static str>,
    /// Why the input's last attempt was refused in a way retrying will not fix (bad
    /// credentials, no such stream on the camera), until a frame arrives: the
    /// stream's `error` status and `stats.error` (never holds credentials).
    pub refused: Option<String>,
}

struct State {
    segmenter: Segmenter,
    gop: Gop<Frame>,
    window: VecDeque<Arc<LiveSegment>>,
    next_sequence: u64,
    /// Discontinuities that slid out of the window (HLS DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// Position of the latest frame published: a frame that does not follow it is
    /// a discontinuity.
    last_pos: Option<Position>,
    figures: Figures,
    /// `Some` while `/NAME/mpegts` has viewers.
    ts: Option<TsFanout>,
    /// See [`LiveWindow::target_duration_s`].
    target_duration_s: u64,
    timestamps: Timestamps,
    /// Whether the input should be connected, from who watches (core's `Demand`).
    demand: Demand,
    /// The live window was dropped when the pull went idle: the next segment is
    /// marked as a discontinuity.
    discontinuity_next: bool,
    /// Timestamp sanity of frames and segments from a cluster peer.
    sanity: FrameSanity,
    /// Whether the peer says the stream is alive (signaling); shown while idle.
    upstream_alive: bool,
}

/// What the hub does with the timestamps of published frames.
enum Timestamps {
    /// Kept as received: frames from a cluster peer (an edge never rebases, so it
    /// answers with the origin's bytes), and segments cut elsewhere.
    AsReceived,
    /// Moved onto the stream's running timeline (`tern_core::rebase`): the origin's
    /// local inputs, so a restart or an input switch does not send players back to 0.
    Rebased(Rebaser),
}

pub struct StreamHub {
    pub name: StreamName,
    /// The segment duration this node cuts the stream with.
    pub segment_duration_ms: u32,
    state: Mutex<State>,
    tx: broadcast::Sender<Frame>,
    seg_tx: broadcast::Sender<Arc<LiveSegment>>,
    /// `true` once the stream is removed from the node: subscribers end.
    closed: watch::Sender<bool>,
    /// Whether the stream's input should be connected (`Demand::wants_pull`).
    pull_gate: watch::Sender<bool>,
    /// Told whenever a viewer comes or goes, so the demand driver looks at the
    /// next deadline again.
    demand_changed: Notify,
    /// Its clients on this node and the bytes sent to them (`crate::clients`).
    pub clients: Arc<crate::clients::Clients>,
}

/// A viewer whose response is open (MPEG-TS, an M4S or M4F pull): it holds the
/// stream's pull open until dropped.
pub struct ViewerGuard<C: tern_net::Clock> {
    hub: Arc<StreamHub>,
    clock: C,
}

impl<C: tern_net::Clock> Drop for ViewerGuard<C> {
    fn drop(&mut self) {
        self.hub
            .demand_input(self.clock.now(), |d, now| d.handle_viewer_left(now));
    }
}

impl StreamHub {
    pub fn new(name: StreamName, segment_duration_ms: u32, started_at: Duration) -> Self {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        let (seg_tx, _) = broadcast::channel(SEGMENT_FANOUT_CAPACITY);
        StreamHub {
            name,
            segment_duration_ms,
            state: Mutex::new(State {
                segmenter: Segmenter::new(segment_duration_ms, Arc::new(MediaInfo::default())),
                gop: Gop::default(),
                window: VecDeque::new(),
                next_sequence: 0,
                discontinuity_sequence: 0,
                last_pos: None,
                figures: Figures {
                    started_at,
                    ..Figures::default()
                },
                ts: None,
                target_duration_s: rounded_secs(u64::from(segment_duration_ms)).max(1),
                timestamps: Timestamps::AsReceived,
                demand: Demand::new(PullMode::Static),
                discontinuity_next: false,
                upstream_alive: false,
                sanity: FrameSanity::default(),
            }),
            tx,
            seg_tx,
            closed: watch::Sender::new(false),
            pull_gate: watch::Sender::new(true),
            demand_changed: Notify::new(),
            clients: Arc::default(),
        }
    }

    /// Makes the stream's pull follow its viewers (`PullMode::OnDemand`) or keep it
    /// always open (`Static`, the default).
    pub fn set_pull_mode(&self, mode: PullMode) {
        let mut st = self.lock();
        st.demand = Demand::new(mode);
        let open = st.demand.wants_pull();
        drop(st);
        self.pull_gate.send_replace(open);
        self.demand_changed.notify_one();
    }

    /// Whether the stream's input should be connected: the gate its input task
    /// waits on.
    pub fn pull_gate(&self) -> watch::Receiver<bool> {
        self.pull_gate.subscribe()
    }

    /// A viewer with an open response arrived; it counts until the guard drops.
    pub fn hold_viewer<C: tern_net::Clock>(self: &Arc<Self>, clock: C) -> ViewerGuard<C> {
        self.demand_input(clock.now(), |d, now| d.handle_viewer_joined(now));
        ViewerGuard {
            hub: self.clone(),
            clock,
        }
    }

    /// A passing viewer (one HLS request) was served.
    pub fn viewer_passed(&self, now: Duration) {
        self.demand_input(now, |d, now| d.handle_viewer_passed(now));
    }

    /// The demand driver's deadline passed.
    pub fn demand_timeout(&self, now: Duration) {
        self.demand_input(now, |d, now| d.handle_timeout(now));
    }

    /// When the demand driver must call [`StreamHub::demand_timeout`] next.
    pub fn demand_deadline(&self) -> Option<Duration> {
        self.lock().demand.poll_timeout()
    }

    /// Resolves after a viewer came or went (the deadline may have moved).
    pub async fn demand_changed(&self) {
        self.demand_changed.notified().await
    }

    /// What the peer said of this stream over signaling: whether it is alive there,
    /// and its media info, which the stream takes while it is not pulled (a pulled
    /// stream has its own from the frames).
    pub fn set_upstream(&self, alive: bool, mi: Option<MediaInfo>) {
        let no_frames_of_its_own = {
            let mut st = self.lock();
            st.upstream_alive = alive;
            st.demand.state() == PullState::Idle || st.figures.last_frame_at.is_none()
        };
        if let (true, Some(mi)) = (no_frames_of_its_own, mi) {
            self.set_media_info(mi);
        }
    }

    /// Whether the stream is alive at its source, as signaling last said, while it
    /// is not pulled here (`None` once pulled: then this node's own frames tell).
    pub fn upstream_alive(&self) -> Option<bool> {
        let st = self.lock();
        (st.demand.state() == PullState::Idle).then_some(st.upstream_alive)
    }

    /// The pull's state and held viewers, for the API.
    pub fn pull_state(&self) -> (PullMode, PullState, u32) {
        let st = self.lock();
        (st.demand.mode(), st.demand.state(), st.demand.viewers())
    }

    /// Feeds the demand machine one input and applies what it decides: the gate
    /// follows `wants_pull`, and a pull that went idle drops the live state, so
    /// the next viewer never gets minutes-old frames as live.
    fn demand_input(&self, now: Duration, input: impl FnOnce(&mut Demand, Duration)) {
        let mut st = self.lock();
        let was = st.demand.wants_pull();
        input(&mut st.demand, now);
        let open = st.demand.wants_pull();
        if was && !open {
            st.drop_live_state();
        }
        drop(st);
        if was != open {
            tracing::info!(stream = %self.name, pull = if open { "open" } else { "closed" }, "on-demand pull");
            self.pull_gate.send_replace(open);
        }
        self.demand_changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this file; the state stays
        // usable (every update below is a single step), so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the stream's media info (an input started or changed codecs). The same
    /// media info again changes nothing.
    pub fn set_media_info(&self, mi: impl Into<Arc<MediaInfo>>) {
        let mi = mi.into();
        let mut st = self.lock();
        if **st.segmenter.media_info() == *mi {
            return;
        }
        warn_left_out(&self.name, &mi);
        st.replace_ts_program(&mi);
        if let Some(seg) = st.segmenter.set_media_info(mi) {
            st.add_segment(seg, &self.seg_tx);
        }
    }

    pub fn media_info(&self) -> Arc<MediaInfo> {
        self.lock().segmenter.media_info().clone()
    }

    /// From now on, published frames are moved onto the stream's running timeline
    /// (`tern_core::rebase`). For streams whose inputs are this node's own sources,
    /// never for frames from a cluster peer.
    pub fn rebase_timestamps(&self) {
        self.lock().timestamps = Timestamps::Rebased(Rebaser::default());
    }

    /// Publishes one frame to the segmenter, the GOP cache and every live viewer.
    /// `now_utc_ms` is this node's clock (for the sanity of a peer's timestamps).
    pub fn publish(&self, mut frame: Frame, now: Duration, now_utc_ms: u64) {
        let mut st = self.lock();
        let State {
            timestamps,
            segmenter,
            sanity,
            ..
        } = &mut *st;
        let timescale = segmenter
            .media_info()
            .track(frame.track)
            .map_or(tern_core::media::VIDEO_TIMESCALE, |t| t.timescale());
        let jumped = match timestamps {
            Timestamps::Rebased(r) => {
                r.rebase(&mut frame, timescale);
                false
            }
            Timestamps::AsReceived => match sanity.frame(&frame, timescale, now_utc_ms) {
                Verdict::Follows => false,
                Verdict::Jump(why) => {
                    st.note_sanity(
                        &self.name,
                        why,
                        "a peer's timestamps jumped: discontinuity",
                        now,
                    );
                    true
                }
                Verdict::Refused(why) => {
                    st.note_sanity(&self.name, why, "a peer's frame refused", now);
                    return;
                }
            },
        };
        st.demand.handle_media(now);
        if st.note_frame(&frame, now) | jumped {
            // Frames were missed, the source restarted or its timestamps jumped: the
            // running segment ends here, so no segment has a hole inside (or lasts
            // 49 days).
            if let Some(seg) = st.segmenter.flush() {
                st.add_segment(seg, &self.seg_tx);
            }
        }
        if jumped {
            st.figures.discontinuities += 1;
            st.discontinuity_next = true;
        }
        if let Some(seg) = st.segmenter.push(frame.clone()) {
            st.add_segment(seg, &self.seg_tx);
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(frame.clone());
        st.mux_ts(&frame);
    }

    /// Publishes a whole segment cut elsewhere (M4F): its frames go to live viewers
    /// and the GOP cache, the segment itself to the window unchanged.
    pub fn publish_segment(&self, segment: Segment, now: Duration, now_utc_ms: u64) {
        let mut st = self.lock();
        match st.sanity.segment(&segment, now_utc_ms) {
            Verdict::Follows => {}
            Verdict::Jump(why) => {
                st.note_sanity(
                    &self.name,
                    why,
                    "a peer's timestamps jumped: discontinuity",
                    now,
                );
                st.figures.discontinuities += 1;
                st.discontinuity_next = true;
            }
            Verdict::Refused(why) => {
                st.note_sanity(&self.name, why, "a peer's segment refused", now);
                return;
            }
        }
        if **st.segmenter.media_info() != *segment.media_info {
            // Keep the segmenter's idea of the media info current for subscribers.
            warn_left_out(&self.name, &segment.media_info);
            st.replace_ts_program(&segment.media_info);
            let _ = st.segmenter.set_media_info(segment.media_info.clone());
        }
        st.demand.handle_media(now);
        for f in &segment.frames {
            st.note_frame(f, now);
            let _ = self.tx.send(f.clone());
            st.mux_ts(f);
        }
        st.add_segment(segment, &self.seg_tx);
    }

    /// Records how far behind capture the latest frame arrived.
    pub fn note_delay(&self, arrival_utc_ms: UtcMs, capture_ms: UtcMs) {
        self.lock().figures.delay_ms = Some(arrival_utc_ms.saturating_sub(capture_ms));
    }

    /// The input's last attempt was refused in a way retrying will not fix (see
    /// `tern_core::stream_status::lasting_refusal`); cleared by the next frame.
    pub fn note_refused(&self, why: String) {
        self.lock().figures.refused = Some(why);
    }

    pub fn note_capture_source(&self, source: &'static str) {
        self.lock().figures.capture_source = Some(source);
    }

    pub fn set_active_input(&self, index: usize) {
        self.lock().figures.active_input = index;
    }

    /// Ends every subscriber (the stream was removed from the node).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves when the stream is removed.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// An M4F subscriber: the media info, the closed segments after `from` (all of
    /// the window if `from` is not in it), and a receiver for the next ones.
    pub fn subscribe_segments(
        &self,
        from: Option<Position>,
    ) -> (
        Arc<MediaInfo>,
        Vec<Arc<LiveSegment>>,
        broadcast::Receiver<Arc<LiveSegment>>,
    ) {
        let st = self.lock();
        let last: Vec<Option<Position>> = st
            .window
            .iter()
            .map(|s| s.segment.frames.last().map(|l| l.pos))
            .collect();
        let after: Vec<_> = st
            .window
            .range(resume_segments(&last, from))
            .cloned()
            .collect();
        (
            st.segmenter.media_info().clone(),
            after,
            self.seg_tx.subscribe(),
        )
    }

    /// A frame subscriber (M4S): media info, the current GOP and the frames after
    /// it, with no gap and no duplicate between them. Where a resuming subscriber
    /// starts in the GOP is core's `FrameSender` decision.
    pub fn subscribe_frames(&self) -> Subscription {
        let st = self.lock();
        let gop = st.gop.items().to_vec();
        Subscription {
            media_info: st.segmenter.media_info().clone(),
            gop,
            rx: self.tx.subscribe(),
        }
    }

    /// A new live MPEG-TS viewer: the chunks since the latest keyframe and the ones
    /// after them, with no gap and no duplicate. The first viewer starts the shared
    /// muxer, primed with the current GOP.
    pub fn subscribe_ts(&self) -> TsSubscription {
        let mut st = self.lock();
        let ts = st.ts_fanout();
        TsSubscription {
            gop: ts.live.gop().to_vec(),
            rx: ts.tx.subscribe(),
        }
    }

    /// A new live MPEG-TS viewer of a writer (`output::ts_writer`): `join` runs
    /// under the hub's lock with the current GOP and the writers, so the viewer
    /// starts at the latest keyframe with no gap and no duplicate.
    pub fn join_ts<R>(&self, join: impl FnOnce(TsJoin<'_>) -> R) -> R {
        let mut st = self.lock();
        let ts = st.ts_fanout();
        join(TsJoin {
            gop: ts.live.gop(),
            next_seq: ts.next_seq,
            sinks: &mut ts.sinks,
        })
    }

    /// What the live playlist lists.
    pub fn playlist_window(&self) -> LiveWindow {
        let st = self.lock();
        let skip = st.window.len().saturating_sub(LIVE_PLAYLIST_LEN);
        let listed: Vec<_> = st.window.iter().skip(skip).cloned().collect();
        // Discontinuities in the kept-but-unlisted part also count as slid out.
        let hidden = st
            .window
            .iter()
            .take(skip)
            .filter(|s| s.discontinuity)
            .count() as u64;
        LiveWindow {
            segments: listed,
            discontinuity_sequence: st.discontinuity_sequence + hidden,
            target_duration_s: st.target_duration_s,
        }
    }

    /// A segment of the live window by its UTC start.
    pub fn live_segment(&self, utc_start_ms: u64) -> Option<Arc<LiveSegment>> {
        self.lock()
            .window
            .iter()
            .find(|s| s.segment.utc_start_ms == utc_start_ms)
            .cloned()
    }

    pub fn figures(&self) -> Figures {
        self.lock().figures.clone()
    }
}

/// One warning per media info naming the tracks HLS and MPEG-TS leave out
/// (pass-through codecs): they still go through M4S, M4F and the DVR.
fn warn_left_out(name: &StreamName, mi: &MediaInfo) {
    let mux = tern_core::mux::ts::TsMuxer::new(mi);
    for id in mux.left_out() {
        let codec = mi.track(*id).map_or("?", |t| t.codec_name());
        tracing::warn!(stream = %name, track = id, codec, "track left out of HLS and MPEG-TS (passed through M4S, M4F and DVR)");
    }
}

impl State {
    /// The shared MPEG-TS muxer and its writers, started by the first live MPEG-TS
    /// viewer and primed with the current GOP.
    fn ts_fanout(&mut self) -> &mut TsFanout {
        let State {
            segmenter, gop, ts, ..
        } = self;
        ts.get_or_insert_with(|| TsFanout {
            live: LiveTs::new(segmenter.media_info(), gop.items()),
            tx: broadcast::channel(FANOUT_CAPACITY).0,
            sinks: Vec::new(),
            next_seq: 0,
        })
    }

    /// Logs what the timestamp sanity found: one line per reason per 10 s for the
    /// whole node (a peer with many streams must not multiply it), with the count
    /// and the last stream.
    fn note_sanity(&mut self, name: &StreamName, why: &'static str, what: &str, now: Duration) {
        static LOG: Mutex<Option<LogLimiter<&'static str>>> = Mutex::new(None);
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let hit = LOG
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| LogLimiter::new(DEFAULT_LOG_INTERVAL_MS))
            .hit(why, now_ms);
        if let Some(count) = hit {
            tracing::warn!(last_stream = %name, reason = why, count, "{what} (one line per reason per 10 s)");
        }
    }

    /// Updates figures and the GOP cache for a frame about to be published; returns
    /// whether it is a discontinuity (it does not follow the previous frame).
    fn note_frame(&mut self, frame: &Frame, now: Duration) -> bool {
        let video = self.segmenter.media_info().video().map(|t| t.id);
        let discontinuity = self.last_pos.is_some_and(|p| !p.is_followed_by(frame.pos));
        if discontinuity {
            self.figures.discontinuities += 1;
            self.gop.clear();
        }
        self.last_pos = Some(frame.pos);
        self.figures.last_frame_at = Some(now);
        self.figures.refused = None;
        self.figures.frames_in += 1;
        self.figures.bytes_in += frame.payload.len() as u64;
        let key = Some(frame.track) == video && frame.keyframe;
        self.gop.push(frame.clone(), frame.payload.len(), key);
        discontinuity
    }

    /// New media info: live MPEG-TS viewers stay connected, and the new program
    /// starts at the next keyframe.
    fn replace_ts_program(&mut self, mi: &MediaInfo) {
        if let Some(ts) = &mut self.ts {
            ts.live = LiveTs::replacing(mi);
        }
    }

    /// Muxes a published frame for the live MPEG-TS viewers, if there are any; the
    /// muxer stops with the last viewer.
    fn mux_ts(&mut self, frame: &Frame) {
        let Some(ts) = &mut self.ts else {
            return;
        };
        if ts.tx.receiver_count() == 0 && ts.sinks.is_empty() {
            self.ts = None;
            return;
        }
        if let Some(chunk) = ts.live.push(frame) {
            let seq = ts.next_seq;
            ts.next_seq += 1;
            ts.sinks.retain(|s| s.push(seq, &chunk));
            if ts.tx.receiver_count() > 0 {
                let _ = ts.tx.send(chunk);
            }
        }
    }

    /// The pull went idle: the GOP, the open segment and the live window are
    /// dropped (they would be stale when a viewer comes back), and the next segment
    /// is marked as a discontinuity.
    fn drop_live_state(&mut self) {
        self.gop.clear();
        let _ = self.segmenter.flush();
        for old in self.window.drain(..) {
            if old.discontinuity {
                self.discontinuity_sequence += 1;
            }
        }
        self.discontinuity_next = true;
        self.ts = None;
        // The pull starts again later: its first timestamps are not a jump.
        self.sanity = FrameSanity::default();
    }

    fn add_segment(&mut self, segment: Segment, seg_tx: &broadcast::Sender<Arc<LiveSegment>>) {
        let discontinuity = std::mem::take(&mut self.discontinuity_next)
            || match (self.window.back(), segment.frames.first()) {
                (Some(prev), Some(first)) => prev
                    .segment
                    .frames
                    .last()
                    .is_none_or(|last| !last.pos.is_followed_by(first.pos)),
                _ => false,
            };
        self.target_duration_s = self
            .target_duration_s
            .max(rounded_secs(u64::from(segment.duration_ms)));
        if segment.duration_ms > 0 {
            self.figures.input_bitrate =
                segment.payload_bytes() as u64 * 8 * 1000 / segment.duration_ms as u64;
        }
        let live = Arc::new(LiveSegment {
            segment,
            sequence: self.next_sequence,
            discontinuity,
            ts: OnceLock::new(),
        });
        self.window.push_back(live.clone());
        let _ = seg_tx.send(live);
        self.next_sequence += 1;
        while self.window.len() > LIVE_WINDOW_KEEP {
            if let Some(old) = self.window.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
    }
}

/// Milliseconds to whole seconds, rounded to the nearest (as HLS rounds EXTINF).
fn rounded_secs(ms: u64) -> u64 {
    ms.saturating_add(500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::fake::{FakeOptions, FakeSource};

    /// Publishes `secs` seconds of a new fake source with `epoch` (1 s GOPs, its
    /// timestamps from 0), captured from `utc`; returns the UTC after it.
    fn feed(hub: &StreamHub, epoch: u64, secs: u64, utc: u64) -> u64 {
        let mut src = FakeSource::new(&FakeOptions::default(), epoch);
        hub.set_media_info(src.media_info());
        while src.next_due() < Duration::from_secs(secs) {
            let at = src.next_due();
            let capture = utc + at.as_millis() as u64;
            hub.publish(src.next_frame(capture), at, capture);
        }
        utc + secs * 1000
    }

    /// (media sequence of the first listed segment, discontinuity sequence, the
    /// listed segments' discontinuity flags)
    fn window(hub: &StreamHub) -> (u64, u64, Vec<bool>) {
        let LiveWindow {
            segments: listed,
            discontinuity_sequence: dseq,
            target_duration_s,
        } = hub.playlist_window();
        assert_eq!(target_duration_s, 1);
        for w in listed.windows(2) {
            assert_eq!(
                w[1].sequence,
                w[0].sequence + 1,
                "consecutive media sequence"
            );
        }
        let first = listed.first().map_or(u64::MAX, |s| s.sequence);
        (
            first,
            dseq,
            listed.iter().map(|s| s.discontinuity).collect(),
        )
    }

    #[test]
    fn live_window_slides_and_counts_discontinuities() {
        let name = StreamName::new("main").unwrap_or_else(|e| panic!("{e}"));
        let hub = StreamHub::new(name, 1000, Duration::ZERO);
        let utc = feed(&hub, 1, 8, 1_767_225_600_000);
        // Segments 0..=6 closed (the 8th second is open): 1..=6 listed.
        assert_eq!(window(&hub), (1, 0, vec![false; 6]));

        // A restart: the open segment closes (7), and the new source's first one (8)
        // is marked. Listed: 4..=9.
        let utc = feed(&hub, 2, 3, utc);
        assert_eq!(
            window(&hub),
            (4, 0, vec![false, false, false, false, true, false])
        );

        // Another restart, then 8 s: 10 closes epoch 2, 11 (marked) starts epoch 3,
        // 17 is the newest. Kept: 8..=17; listed: 12..=17. The two marked segments
        // that left the list (8 and 11) count in the discontinuity sequence.
        feed(&hub, 3, 8, utc);
        assert_eq!(window(&hub), (12, 2, vec![false; 6]));
        // And that is what the playlist says.
        let text = match crate::output::hls::playlist(&hub, None).into_body() {
            crate::http::body::Body::Full(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:12\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
        assert_eq!(text.matches("#EXTINF:").count(), 6, "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }

    /// A test clock the test moves by hand.
    #[derive(Clone)]
    struct HandClock(Arc<Mutex<Duration>>);

    impl tern_net::Clock for HandClock {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
        fn utc_ms(&self) -> UtcMs {
            1_767_225_600_000
        }
    }

    #[test]
    fn on_demand_gate_follows_viewers_and_idle_drops_the_live_state() {
        let name = StreamName::new("cam").unwrap_or_else(|e| panic!("{e}"));
        let hub = Arc::new(StreamHub::new(name, 1000, Duration::ZERO));
        hub.set_pull_mode(PullMode::OnDemand {
            clients_timeout: Duration::from_secs(3),
        });
        let gate = hub.pull_gate();
        assert!(!*gate.borrow(), "closed with no viewer");
        assert_eq!(hub.pull_state().1, PullState::Idle);

        let clock = HandClock(Arc::new(Mutex::new(Duration::from_secs(1))));
        let viewer = hub.hold_viewer(clock.clone());
        assert!(*gate.borrow(), "the first viewer opens the pull");
        assert_eq!(
            hub.pull_state(),
            (hub.pull_state().0, PullState::Starting, 1)
        );
        let utc = feed(&hub, 1, 4, 1_767_225_600_000);
        assert_eq!(hub.pull_state().1, PullState::Running);
        assert!(!hub.playlist_window().segments.is_empty());
        assert!(!hub.subscribe_frames().gop.is_empty());

        *clock.0.lock().unwrap_or_else(|e| e.into_inner()) = Duration::from_secs(10);
        drop(viewer);
        assert!(*gate.borrow(), "lingers for clients_timeout");
        assert_eq!(hub.demand_deadline(), Some(Duration::from_secs(13)));
        hub.demand_timeout(Duration::from_secs(12));
        assert!(*gate.borrow());
        hub.demand_timeout(Duration::from_secs(13));
        assert!(
            !*gate.borrow(),
            "closed clients_timeout after the last viewer"
        );
        assert_eq!(hub.pull_state().1, PullState::Idle);
        assert!(hub.playlist_window().segments.is_empty(), "no stale window");
        assert!(hub.subscribe_frames().gop.is_empty(), "no stale GOP");

        // An HLS request opens it again; the first new segment is a discontinuity.
        hub.viewer_passed(Duration::from_secs(20));
        assert!(*gate.borrow());
        feed(&hub, 1, 3, utc + 16_000);
        let listed = hub.playlist_window().segments;
        assert!(listed.first().is_some_and(|s| s.discontinuity), "marked");
    }

    fn playlist_text(hub: &StreamHub) -> String {
        match crate::output::hls::playlist(hub, None).into_body() {
            crate::http::body::Body::Full(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        }
    }

    /// Finding 4: M4S frames from a peer with absurd timestamps (dts 2^64-1,
    /// capture 0) left `#EXT-X-TARGETDURATION:4294967` and a year-584556019
    /// `PROGRAM-DATE-TIME` in the live playlist. A jump is a discontinuity, an
    /// absurd capture time is refused, and the playlist keeps sane values.
    #[test]
    fn a_peers_absurd_timestamps_leave_the_playlist_sane() {
        let name = StreamName::new("main").unwrap_or_else(|e| panic!("{e}"));
        let hub = StreamHub::new(name, 1000, Duration::ZERO);
        let utc0 = 1_767_225_600_000;
        let mut src = FakeSource::new(&FakeOptions::default(), 1);
        hub.set_media_info(src.media_info());
        let mut keyframes = 0;
        while src.next_due() < Duration::from_secs(12) {
            let at = src.next_due();
            let now = utc0 + at.as_millis() as u64;
            let mut f = src.next_frame(now);
            let video = f.track == 1;
            if video && f.keyframe {
                keyframes += 1;
                match keyframes {
                    // A keyframe at dts 2^64-1 ...
                    4 => f.dts = u64::MAX,
                    // ... and one captured at 0.
                    7 => f.capture_ms = 0,
                    _ => {}
                }
            }
            hub.publish(f, at, now);
        }
        // And a whole segment (M4F) of 49 days.
        let mut long = hub.playlist_window().segments[0].segment.clone();
        long.duration_ms = u32::MAX;
        hub.publish_segment(long, Duration::from_secs(12), utc0 + 12_000);
        let text = playlist_text(&hub);
        assert!(text.contains("#EXT-X-TARGETDURATION:1\n"), "{text}");
        for line in text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
        {
            assert!(line.contains(":2026-01-01T00:00:"), "{line}\n{text}");
        }
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert!(hub.figures().discontinuities >= 2);
    }

    #[test]
    fn an_idle_stream_shows_what_its_source_says() {
        let name = StreamName::new("cam").unwrap_or_else(|e| panic!("{e}"));
        let hub = Arc::new(StreamHub::new(name, 1000, Duration::ZERO));
        hub.set_pull_mode(PullMode::OnDemand {
            clients_timeout: Duration::from_secs(3),
        });
        let src = FakeSource::new(&FakeOptions::default(), 1);
        hub.set_upstream(true, Some(src.media_info()));
        assert_eq!(hub.upstream_alive(), Some(true));
        assert_eq!(*hub.media_info(), src.media_info());
        hub.set_upstream(false, None);
        assert_eq!(hub.upstream_alive(), Some(false));
        let clock = HandClock(Arc::new(Mutex::new(Duration::from_secs(1))));
        let _viewer = hub.hold_viewer(clock);
        assert_eq!(hub.upstream_alive(), None, "pulled: its own frames tell");
    }
}
