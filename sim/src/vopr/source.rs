//! The simulator's media source: a cheap, irregular stream of frame headers (tiny
//! payloads) with a video GOP length that does not divide the segment length and
//! audio that drifts against video, so boundaries and keyframe rules are exercised.
//!
//! Owns: frame timing and the GOP pattern. Must not: encode real media (the pure
//! simulator checks positions and keyframes, not pictures).

use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use tern_core::fake::options::FakeOptions;
use tern_core::fake::source::FakeSource;
use tern_core::{Frame, MediaInfo, Position};

/// Video frame interval (25 fps).
pub const VIDEO_MS: u64 = 40;
/// Audio frame interval (AAC at 44.1 kHz, rounded to a millisecond grid with drift).
pub const AUDIO_US: u64 = 23_220;

#[derive(Debug)]
pub struct SimSource {
    pub mi: Arc<MediaInfo>,
    video: u8,
    audio: u8,
    epoch: u64,
    seq: u64,
    gop: u64,
    video_n: u64,
    audio_n: u64,
    /// Times of the next video / audio frame, in µs since the epoch started.
    next_video_us: u64,
    next_audio_us: u64,
    /// Start of the current epoch, in ms of simulated time.
    epoch_start_ms: u64,
}

impl SimSource {
    pub fn new(rng: &mut ChaCha8Rng, now_ms: u64) -> Self {
        let mi = Arc::new(FakeSource::new(&FakeOptions::default(), 0).media_info());
        let video = mi.video().map_or(1, |t| t.id);
        let audio = mi.tracks.iter().find(|t| t.id != video).map_or(2, |t| t.id);
        let mut s = SimSource {
            mi,
            video,
            audio,
            epoch: 0,
            seq: 0,
            gop: 0,
            video_n: 0,
            audio_n: 0,
            next_video_us: 0,
            next_audio_us: 0,
            epoch_start_ms: now_ms,
        };
        s.restart(rng, now_ms);
        s
    }

    /// A new epoch (the source restarted): sequences from 0, a fresh GOP length
    /// (17..=61 frames: rarely a divisor of a 2 s segment), audio may lead video.
    pub fn restart(&mut self, rng: &mut ChaCha8Rng, now_ms: u64) {
        self.epoch += 1;
        self.seq = 0;
        self.gop = 17 + u64::from(rng.next_u32() % 45);
        self.video_n = 0;
        self.audio_n = 0;
        // Audio leads video by up to 30 ms half of the time: an epoch may start
        // with audio frames before its first video keyframe.
        self.next_audio_us = 0;
        self.next_video_us = if rng.next_u32().is_multiple_of(2) {
            0
        } else {
            u64::from(rng.next_u32() % 30) * 1000
        };
        self.epoch_start_ms = now_ms;
    }

    /// When the next frame is due, in ms of simulated time.
    pub fn next_due_ms(&self) -> u64 {
        self.epoch_start_ms + self.next_video_us.min(self.next_audio_us) / 1000
    }

    /// The next frame (call at `next_due_ms`).
    pub fn next_frame(&mut self, now_ms: u64) -> Frame {
        let pos = Position {
            epoch: self.epoch,
            seq: self.seq,
        };
        self.seq += 1;
        if self.next_video_us <= self.next_audio_us {
            let n = self.video_n;
            self.video_n += 1;
            self.next_video_us += VIDEO_MS * 1000;
            Frame {
                track: self.video,
                dts: n * 3600,
                pts: n * 3600,
                keyframe: n.is_multiple_of(self.gop),
                capture_ms: now_ms,
                pos,
                payload: Bytes::from_static(b"v"),
            }
        } else {
            let n = self.audio_n;
            self.audio_n += 1;
            self.next_audio_us += AUDIO_US;
            Frame {
                track: self.audio,
                dts: n * 1024,
                pts: n * 1024,
                keyframe: true,
                capture_ms: now_ms,
                pos,
                payload: Bytes::from_static(b"a"),
            }
        }
    }
}
