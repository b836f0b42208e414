//! The segmenter: cuts a stream's frames into [`Segment`]s (docs/design.md §3).
//!
//! A segment starts at the first video keyframe at or after each multiple of
//! `segment_duration` of stream time (the video frames' own DTS), so every node that
//! holds the same frames cuts the same segments, whenever it joined. A new epoch (source
//! restart), a timestamp going backwards or a media-info change closes the running
//! segment early; frames before the first keyframe of an epoch are dropped.
//!
//! Owns: boundary decisions and segment durations. Must not: read clocks, encode
//! bytes or keep closed segments (callers own the window / the DVR).

use std::sync::Arc;

use crate::media::{Frame, MediaInfo, VIDEO_TIMESCALE};
use crate::segment::Segment;

pub struct Segmenter {
    /// Target duration in 90 kHz ticks.
    target: u64,
    media_info: Arc<MediaInfo>,
    video_track: Option<u8>,
    open: Option<Open>,
}

struct Open {
    frames: Vec<Frame>,
    epoch: u64,
    start_dts: u64,
    last_video_dts: u64,
    video_frames: u64,
    utc_start_ms: u64,
}

impl Open {
    /// Length when no following keyframe tells it: up to the last video frame plus
    /// one average frame interval (with a single frame, the interval the media info's
    /// frame rate gives, so that no segment is 0 s long).
    fn estimated_duration_ticks(&self, fps: Option<u16>) -> u64 {
        let span = self.last_video_dts - self.start_dts;
        if self.video_frames > 1 {
            span.saturating_add(span / (self.video_frames - 1))
        } else {
            fps.filter(|&f| f > 0)
                .map_or(0, |f| VIDEO_TIMESCALE as u64 / u64::from(f))
        }
    }

    fn close(self, media_info: &Arc<MediaInfo>, duration_ticks: u64) -> Segment {
        Segment {
            media_info: media_info.clone(),
            utc_start_ms: self.utc_start_ms,
            // u128: timestamps come from peers and may be anything.
            duration_ms: (u128::from(duration_ticks) * 1000 / u128::from(VIDEO_TIMESCALE))
                .min(u128::from(u32::MAX)) as u32,
            frames: self.frames,
        }
    }
}

impl Segmenter {
    /// `segment_duration_ms`: the target; values below 1 ms are treated as 1 ms.
    pub fn new(segment_duration_ms: u32, media_info: Arc<MediaInfo>) -> Self {
        let video_track = media_info.video().map(|t| t.id);
        Segmenter {
            target: segment_duration_ms.max(1) as u64 * (VIDEO_TIMESCALE as u64 / 1000),
            media_info,
            video_track,
            open: None,
        }
    }

    pub fn media_info(&self) -> &Arc<MediaInfo> {
        &self.media_info
    }

    fn video_fps(&self) -> Option<u16> {
        self.media_info.video().and_then(|t| t.fps())
    }

    /// Replaces the media info; a real change closes the running segment.
    pub fn set_media_info(&mut self, mi: Arc<MediaInfo>) -> Option<Segment> {
        if *mi == *self.media_info {
            return None;
        }
        let closed = self.flush();
        self.video_track = mi.video().map(|t| t.id);
        self.media_info = mi;
        closed
    }

    /// Feeds one frame; returns the segment it closed, if any.
    pub fn push(&mut self, frame: Frame) -> Option<Segment> {
        let is_video = Some(frame.track) == self.video_track;
        let mut closed = None;
        if let Some(open) = &self.open {
            let restart =
                frame.pos.epoch != open.epoch || (is_video && frame.dts < open.last_video_dts);
            let boundary = is_video
                && frame.keyframe
                && frame.dts / self.target > open.start_dts / self.target;
            if restart {
                closed = self.flush();
            } else if boundary {
                if let Some(open) = self.open.take() {
                    let d = frame.dts - open.start_dts;
                    closed = Some(open.close(&self.media_info, d));
                }
            }
        }
        match &mut self.open {
            Some(open) => {
                if is_video {
                    open.last_video_dts = frame.dts;
                    open.video_frames += 1;
                }
                open.frames.push(frame);
            }
            None if is_video && frame.keyframe => {
                self.open = Some(Open {
                    epoch: frame.pos.epoch,
                    start_dts: frame.dts,
                    last_video_dts: frame.dts,
                    video_frames: 1,
                    utc_start_ms: frame.capture_ms,
                    frames: vec![frame],
                });
            }
            None => {} // waiting for a keyframe
        }
        closed
    }

    /// Closes the running segment (source gone, restart, shutdown).
    pub fn flush(&mut self) -> Option<Segment> {
        let open = self.open.take()?;
        let d = open.estimated_duration_ticks(self.video_fps());
        Some(open.close(&self.media_info, d))
    }

    /// Frames in the running (not yet closed) segment.
    pub fn open_frames(&self) -> &[Frame] {
        self.open.as_ref().map(|o| &o.frames[..]).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Position, TrackInfo, TrackParams};
    use bytes::Bytes;

    fn mi() -> Arc<MediaInfo> {
        Arc::new(MediaInfo {
            tracks: vec![
                TrackInfo {
                    id: 1,
                    params: TrackParams::H264 {
                        sps: Bytes::new(),
                        pps: Bytes::new(),
                        width: 320,
                        height: 240,
                        fps: 25,
                    },
                },
                TrackInfo {
                    id: 2,
                    params: TrackParams::Aac {
                        config: Bytes::new(),
                        sample_rate: 48_000,
                        channels: 2,
                        frame_samples: 1024,
                    },
                },
            ],
        })
    }

    /// Video at 25 fps, keyframe every `gop` frames, starting at frame `from`.
    fn video(epoch: u64, from: u64, to: u64, gop: u64) -> Vec<Frame> {
        (from..to)
            .map(|i| Frame {
                track: 1,
                dts: i * 3600,
                pts: i * 3600,
                keyframe: i % gop == 0,
                capture_ms: 1_000_000 + i * 40,
                pos: Position { epoch, seq: i },
                payload: Bytes::new(),
            })
            .collect()
    }

    fn cut(s: &mut Segmenter, frames: Vec<Frame>) -> Vec<Segment> {
        frames.into_iter().filter_map(|f| s.push(f)).collect()
    }

    #[test]
    fn absurd_timestamps_from_a_peer_give_a_capped_duration_not_a_panic() {
        let mut s = Segmenter::new(2000, mi());
        let mut frames = video(1, 0, 3, 1);
        frames[1].dts = 1 << 62; // a keyframe 2^62 ticks (1.6 million years) later
        frames[2].dts = u64::MAX;
        let segs = cut(&mut s, frames);
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.duration_ms == u32::MAX));
        let last = s.flush().expect("the open segment");
        assert_eq!(
            last.duration_ms, 40,
            "one frame: one frame interval at 25 fps"
        );
    }

    #[test]
    fn cuts_at_first_keyframe_after_each_multiple() {
        // 2 s target, keyframes every 0.6 s (15 frames): multiples at 0, 2, 4 s; first
        // keyframes at/after them: 0, 2.4, 4.2 s.
        let mut s = Segmenter::new(2000, mi());
        let segs = cut(&mut s, video(1, 0, 151, 15));
        let starts: Vec<u64> = segs.iter().map(|s| s.frames[0].dts / 90).collect();
        assert_eq!(starts, vec![0, 2400, 4200]);
        let durs: Vec<u32> = segs.iter().map(|s| s.duration_ms).collect();
        assert_eq!(durs, vec![2400, 1800, 1800]);
        assert_eq!(segs[1].utc_start_ms, 1_000_000 + 60 * 40);
    }

    #[test]
    fn same_boundaries_whenever_a_node_joined() {
        let mut a = Segmenter::new(2000, mi());
        let mut b = Segmenter::new(2000, mi());
        let full = cut(&mut a, video(1, 0, 300, 25));
        // b joins at frame 37 (mid-GOP): drops to the next keyframe, then agrees.
        let late = cut(&mut b, video(1, 37, 300, 25));
        assert_eq!(late[0].frames[0].dts, 50 * 3600); // partial first segment
        assert_eq!(&late[1..], &full[2..]);
    }

    #[test]
    fn epoch_change_closes_and_waits_for_keyframe() {
        let mut s = Segmenter::new(2000, mi());
        let mut segs = cut(&mut s, video(1, 0, 30, 25));
        let mut second = video(2, 0, 50, 25);
        second.remove(0); // the restarted source's first keyframe is lost
        segs.extend(cut(&mut s, second));
        assert_eq!(segs[0].epoch(), 1);
        assert_eq!(segs[0].frames.len(), 30);
        assert_eq!(segs[0].duration_ms, 1200);
        assert_eq!(s.open_frames()[0].pos, Position { epoch: 2, seq: 25 });
    }

    #[test]
    fn audio_before_first_keyframe_is_dropped() {
        let mut s = Segmenter::new(2000, mi());
        let audio = Frame {
            track: 2,
            dts: 0,
            pts: 0,
            keyframe: true,
            capture_ms: 0,
            pos: Position { epoch: 1, seq: 0 },
            payload: Bytes::new(),
        };
        assert!(s.push(audio.clone()).is_none());
        assert!(s.open_frames().is_empty());
        cut(&mut s, video(1, 0, 1, 25));
        s.push(audio);
        assert_eq!(s.open_frames().len(), 2);
    }
}
