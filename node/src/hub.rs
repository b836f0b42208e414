//! `StreamHub`: the live state of one stream on this node — its media info, the
//! segmenter, the window of recent segments for HLS, the current GOP for new viewers,
//! the frame fan-out, and the figures the API shows.
//!
//! Owns: publishing frames (one lock, one broadcast send) and subscribing viewers so
//! that a new viewer starts at the latest keyframe with no gap and no duplicate.
//! Must not: do I/O or mux for viewers (outputs do that on their own tasks).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tern_core::segmenter::Segmenter;
use tern_core::{Frame, MediaInfo, Segment, StreamName};
use tokio::sync::broadcast;

/// Closed segments kept in memory for live HLS (more than the playlist lists, so a
/// player that fetched the playlist just before it slid can still get the segment).
pub const LIVE_WINDOW_KEEP: usize = 10;
/// Segments listed in the live playlist.
pub const LIVE_PLAYLIST_LEN: usize = 6;
/// Frames buffered in the fan-out ring; a viewer that falls further behind is skipped
/// forward to the next keyframe (at 25 fps video + audio, about 10 s).
pub const FANOUT_CAPACITY: usize = 1024;

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

/// What a new live viewer gets: the media info, the frames since the latest keyframe,
/// and a receiver for every frame after them.
pub struct Subscription {
    pub media_info: Arc<MediaInfo>,
    pub gop: Vec<Frame>,
    pub rx: broadcast::Receiver<Frame>,
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
    /// Discontinuities seen (source restarts, input switches).
    pub discontinuities: u64,
}

struct State {
    segmenter: Segmenter,
    gop: Vec<Frame>,
    window: VecDeque<Arc<LiveSegment>>,
    next_sequence: u64,
    /// Discontinuities that slid out of the window (HLS DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    last_epoch: Option<u64>,
    figures: Figures,
}

pub struct StreamHub {
    pub name: StreamName,
    state: Mutex<State>,
    tx: broadcast::Sender<Frame>,
}

impl StreamHub {
    pub fn new(name: StreamName, segment_duration_ms: u32, started_at: Duration) -> Self {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        StreamHub {
            name,
            state: Mutex::new(State {
                segmenter: Segmenter::new(segment_duration_ms, Arc::new(MediaInfo::default())),
                gop: Vec::new(),
                window: VecDeque::new(),
                next_sequence: 0,
                discontinuity_sequence: 0,
                last_epoch: None,
                figures: Figures {
                    started_at,
                    ..Figures::default()
                },
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this file; the state stays
        // usable (every update below is a single step), so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the stream's media info (an input started or changed codecs).
    pub fn set_media_info(&self, mi: MediaInfo) {
        let mut st = self.lock();
        if let Some(seg) = st.segmenter.set_media_info(Arc::new(mi)) {
            st.add_segment(seg);
        }
    }

    pub fn media_info(&self) -> Arc<MediaInfo> {
        self.lock().segmenter.media_info().clone()
    }

    /// Publishes one frame to the segmenter, the GOP cache and every live viewer.
    pub fn publish(&self, frame: Frame, now: Duration) {
        let mut st = self.lock();
        let video = st.segmenter.media_info().video().map(|t| t.id);
        if st.last_epoch.is_some_and(|e| e != frame.pos.epoch) {
            st.figures.discontinuities += 1;
            st.gop.clear();
        }
        st.last_epoch = Some(frame.pos.epoch);
        st.figures.last_frame_at = Some(now);
        st.figures.frames_in += 1;
        st.figures.bytes_in += frame.payload.len() as u64;
        if Some(frame.track) == video && frame.keyframe {
            st.gop.clear();
        }
        if !st.gop.is_empty() || (Some(frame.track) == video && frame.keyframe) {
            st.gop.push(frame.clone());
        }
        if let Some(seg) = st.segmenter.push(frame.clone()) {
            st.add_segment(seg);
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(frame);
    }

    /// A new live viewer: media info, the current GOP and the frames after it.
    pub fn subscribe(&self) -> Subscription {
        let st = self.lock();
        Subscription {
            media_info: st.segmenter.media_info().clone(),
            gop: st.gop.clone(),
            rx: self.tx.subscribe(),
        }
    }

    /// The segments the live playlist lists, and its discontinuity sequence.
    pub fn playlist_window(&self) -> (Vec<Arc<LiveSegment>>, u64) {
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
        (listed, st.discontinuity_sequence + hidden)
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

impl State {
    fn add_segment(&mut self, segment: Segment) {
        let discontinuity = self
            .window
            .back()
            .is_some_and(|prev| prev.segment.epoch() != segment.epoch());
        if segment.duration_ms > 0 {
            self.figures.input_bitrate =
                segment.payload_bytes() as u64 * 8 * 1000 / segment.duration_ms as u64;
        }
        self.window.push_back(Arc::new(LiveSegment {
            segment,
            sequence: self.next_sequence,
            discontinuity,
            ts: OnceLock::new(),
        }));
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
