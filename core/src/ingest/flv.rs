//! FLV-style audio and video of an RTMP publisher to Tern frames: H.264 (an
//! `AVCDecoderConfigurationRecord` for the parameter sets, then length-prefixed NAL
//! units with a composition time offset), H.265 in enhanced RTMP (`hvc1`, an
//! `HEVCDecoderConfigurationRecord`) and AAC (an `AudioSpecificConfig`, then raw
//! frames), with their millisecond timestamps unwrapped, positions, capture times
//! and the media info.
//!
//! One `FlvIngest` lives for one publish: a new publish is a new epoch, so the
//! outputs mark the reconnect as a discontinuity; a timestamp jump of more than
//! 10 s inside one publish starts a new epoch too.
//!
//! Owns: that conversion (Annex B with an AUD first and the parameter sets before
//! every keyframe; `pts = dts + composition offset`, so B-frames keep their order;
//! audio timestamps kept continuous across the millisecond rounding of RTMP), and the
//! bounded hold of frames until the announced tracks' configurations are in. Must
//! not: speak RTMP (the session does), read clocks (arrival times come in) or panic on
//! any input.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::adts_frames::AdtsConfig;
use super::h26x::{self, VideoCodec};
use crate::media::{Frame, MediaInfo, Position, TrackInfo, TrackParams, UtcMs};
use crate::rtp_ingest::with_aud;
pub use crate::rtp_ingest::{AUDIO_TRACK, VIDEO_TRACK};

/// Frames held while a track that `onMetaData` announced has not sent its
/// configuration: at most this many, or one second of stream time.
pub const MAX_HELD_FRAMES: usize = 256;
const HOLD_MS: i64 = 1000;
/// A timestamp more than this from the previous one is a jump (a new epoch).
const MAX_JUMP_MS: i64 = 10_000;
/// The first frame's decode time (ms): room for a track that starts a little
/// earlier than the first frame seen.
const START_MS: i64 = 10_000;
/// A composition offset beyond this is not believed (taken as 0).
const MAX_COMPOSITION_MS: i32 = 10_000;

/// What the conversion hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlvEvent {
    /// Before the first frame and whenever the tracks change.
    MediaInfo(Arc<MediaInfo>),
    Frame(Frame),
    /// Frames after this start a new epoch.
    Discontinuity(&'static str),
    /// Something Tern does not take, said once per kind per publish (the driver logs
    /// it): another codec, a malformed tag.
    Ignored(&'static str),
}

/// What a NAL unit is to the conversion.
enum Nal {
    Key,
    Vps,
    Sps,
    Pps,
    Other,
}

#[derive(Clone, Debug)]
struct Video {
    codec: VideoCodec,
    length_size: usize,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    params: Option<TrackParams>,
}

#[derive(Clone, Debug, Default)]
struct Audio {
    params: Option<TrackParams>,
    sample_rate: u32,
    /// The timestamp (samples) the next frame should have.
    next: Option<u64>,
}

/// See the file comment.
#[derive(Debug)]
pub struct FlvIngest {
    epoch: u64,
    seq: u64,
    video: Video,
    audio: Audio,
    /// From `onMetaData`: which tracks to wait for.
    expect_video: bool,
    expect_audio: bool,
    last_raw: Option<u32>,
    /// The unwrapped timestamp of the last tag (ms).
    ext: i64,
    /// Subtracted from unwrapped timestamps (ms).
    base: i64,
    need_key: bool,
    last_capture: UtcMs,
    sent_info: Option<Arc<MediaInfo>>,
    held: VecDeque<Frame>,
    held_since: Option<i64>,
    ignored: Vec<&'static str>,
    out: VecDeque<FlvEvent>,
}

impl FlvIngest {
    /// The conversion of one publish, its frames in epoch `epoch` (the driver passes
    /// the publish's start in UTC ms, so every reconnect is a new epoch).
    pub fn new(epoch: u64) -> FlvIngest {
        FlvIngest {
            epoch,
            seq: 0,
            video: Video::default(),
            audio: Audio::default(),
            expect_video: false,
            expect_audio: false,
            last_raw: None,
            ext: 0,
            base: 0,
            need_key: true,
            last_capture: 0,
            sent_info: None,
            held: VecDeque::new(),
            held_since: None,
            ignored: Vec::new(),
            out: VecDeque::new(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn poll_event(&mut self) -> Option<FlvEvent> {
        self.out.pop_front()
    }

    fn ignore(&mut self, what: &'static str) {
        if !self.ignored.contains(&what) {
            self.ignored.push(what);
            self.out.push_back(FlvEvent::Ignored(what));
        }
    }

    /// A data message (`@setDataFrame`, `onMetaData`, {...}): says which tracks
    /// will come.
    pub fn metadata(&mut self, payload: &[u8]) {
        use super::rtmp::amf0::{decode_all, Amf};
        let Ok(values) = decode_all(payload) else {
            return self.ignore("a data message that is not AMF0");
        };
        let Some(meta) = values.iter().find(|v| matches!(v, Amf::Object(_))) else {
            return;
        };
        let is = |k: &str| {
            meta.get(k)
                .is_some_and(|v| !matches!(v, Amf::Null | Amf::Undefined | Amf::Bool(false)))
        };
        self.expect_video = is("videocodecid") || is("hasVideo");
        self.expect_audio = is("audiocodecid") || is("hasAudio");
    }

    /// Unwraps a 32-bit millisecond timestamp; a jump starts a new epoch.
    fn time(&mut self, raw: u32, now: UtcMs) -> i64 {
        match self.last_raw {
            None => {
                self.ext = i64::from(raw);
                self.base = self.ext - START_MS;
            }
            Some(last) => {
                let delta = i64::from(raw.wrapping_sub(last) as i32);
                self.ext += delta;
                if delta.abs() > MAX_JUMP_MS {
                    self.base = self.ext - START_MS;
                    if self.sent_info.is_some() {
                        self.epoch = self.epoch.saturating_add(1).max(now);
                        self.seq = 0;
                        self.need_key = true;
                        self.audio.next = None;
                        self.out.push_back(FlvEvent::Discontinuity(
                            "the publisher's timestamps jumped more than 10 s",
                        ));
                    }
                }
            }
        }
        self.last_raw = Some(raw);
        (self.ext - self.base).max(0)
    }

    fn capture(&mut self, now: UtcMs) -> UtcMs {
        self.last_capture = self.last_capture.max(now);
        self.last_capture
    }

    /// A video message (FLV VIDEODATA, or enhanced RTMP's) with timestamp `ts` ms,
    /// arrived at `now`.
    pub fn video(&mut self, ts: u32, payload: &Bytes, now: UtcMs) {
        let Some(&b0) = payload.first() else { return };
        if payload.len() < 5 {
            return self.ignore("a video message too short for its header");
        }
        let si24 = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8;
        if b0 & 0x80 != 0 {
            // Enhanced RTMP: packet type in the low bits, then a FourCC.
            let codec = match &payload[1..5] {
                b"hvc1" => VideoCodec::H265,
                b"avc1" => VideoCodec::H264,
                _ => {
                    return self.ignore("enhanced RTMP video other than H.265 or H.264 (AV1, VP9)")
                }
            };
            match b0 & 0x0F {
                0 => self.config(codec, &payload[5..]),
                1 if payload.len() >= 8 => {
                    let ms = self.time(ts, now);
                    self.coded_frame(codec, ms, si24(&payload[5..8]), payload.slice(8..), now);
                }
                3 => {
                    let ms = self.time(ts, now);
                    self.coded_frame(codec, ms, 0, payload.slice(5..), now);
                }
                _ => {}
            }
            return;
        }
        if b0 & 0x0F != 7 {
            return self.ignore("a video codec other than H.264 (FLV codec id != 7)");
        }
        match payload[1] {
            0 => self.config(VideoCodec::H264, &payload[5..]),
            1 => {
                let ms = self.time(ts, now);
                self.coded_frame(
                    VideoCodec::H264,
                    ms,
                    si24(&payload[2..5]),
                    payload.slice(5..),
                    now,
                );
            }
            _ => {}
        }
    }

    /// A sequence header: `AVCDecoderConfigurationRecord` or
    /// `HEVCDecoderConfigurationRecord`.
    fn config(&mut self, codec: VideoCodec, rec: &[u8]) {
        let parsed = match codec {
            VideoCodec::H264 => parse_avcc(rec).map(|(n, sps, pps)| (n, None, sps, pps)),
            VideoCodec::H265 => parse_hvcc(rec).map(|(n, vps, sps, pps)| (n, Some(vps), sps, pps)),
        };
        let Some((length_size, vps, sps, pps)) = parsed else {
            return self.ignore("a malformed video sequence header");
        };
        let v = &mut self.video;
        if v.codec != codec {
            *v = Video {
                codec,
                ..Video::default()
            };
        }
        v.length_size = length_size;
        if v.vps != vps || v.sps.as_ref() != Some(&sps) || v.pps.as_ref() != Some(&pps) {
            v.vps = vps;
            v.sps = Some(sps);
            v.pps = Some(pps);
            v.params = video_params(v);
            if v.params.is_none() {
                self.ignore("an SPS Tern cannot read");
            }
        }
    }

    fn coded_frame(&mut self, codec: VideoCodec, ms: i64, cts: i32, data: Bytes, now: UtcMs) {
        if self.video.length_size == 0 || self.video.codec != codec {
            return self.ignore("video frames before their sequence header");
        }
        let mut annexb = Vec::with_capacity(data.len() + 64);
        let mut keyframe = false;
        let mut has_sets = false;
        let mut at = 0;
        let n = self.video.length_size;
        let mut changed = false;
        while at + n <= data.len() {
            let len = data[at..at + n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            at += n;
            let Some(nal) = data.get(at..at + len) else {
                return self.ignore("a truncated NAL unit (dropped its frame)");
            };
            at += len;
            let Some(&h) = nal.first() else { continue };
            let kind = match codec {
                VideoCodec::H264 => match h & 0x1F {
                    5 => Nal::Key,
                    7 => Nal::Sps,
                    8 => Nal::Pps,
                    _ => Nal::Other,
                },
                VideoCodec::H265 => match (h >> 1) & 0x3F {
                    16..=21 => Nal::Key,
                    32 => Nal::Vps,
                    33 => Nal::Sps,
                    34 => Nal::Pps,
                    _ => Nal::Other,
                },
            };
            let slot = match kind {
                Nal::Key => {
                    keyframe = true;
                    None
                }
                Nal::Vps => Some(&mut self.video.vps),
                Nal::Sps => Some(&mut self.video.sps),
                Nal::Pps => Some(&mut self.video.pps),
                Nal::Other => None,
            };
            if let Some(slot) = slot {
                has_sets = true;
                if slot.as_deref() != Some(nal) {
                    *slot = Some(Bytes::copy_from_slice(nal));
                    changed = true;
                }
            }
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(nal);
        }
        if annexb.is_empty() {
            return;
        }
        if changed {
            self.video.params = video_params(&self.video);
        }
        if self.video.params.is_none() {
            return;
        }
        if self.need_key && !keyframe {
            return;
        }
        let mut payload = Bytes::from(annexb);
        if keyframe {
            self.need_key = false;
            if !has_sets {
                let v = &self.video;
                let sets: Vec<&Bytes> = [&v.vps, &v.sps, &v.pps].into_iter().flatten().collect();
                payload = h26x::prepend_parameter_sets(&sets, &payload);
            }
            self.media_info_changed();
        }
        let cts = if (0..=MAX_COMPOSITION_MS).contains(&cts) {
            cts
        } else {
            0
        };
        let dts = ms as u64 * 90;
        let frame = Frame {
            track: VIDEO_TRACK,
            dts,
            pts: dts + cts as u64 * 90,
            keyframe,
            capture_ms: self.capture(now),
            pos: Position::default(),
            payload: with_aud(codec, payload.to_vec()),
        };
        self.emit(frame, ms);
    }

    /// An audio message (FLV AUDIODATA) with timestamp `ts` ms, arrived at `now`.
    pub fn audio(&mut self, ts: u32, payload: &Bytes, now: UtcMs) {
        let Some(&b0) = payload.first() else { return };
        if b0 >> 4 != 10 {
            return self.ignore("an audio codec other than AAC (FLV sound format != 10)");
        }
        let Some(&kind) = payload.get(1) else { return };
        let data = payload.slice(2..);
        if kind == 0 {
            if data.is_empty() {
                return; // ffmpeg's first header when copying ADTS: the real one follows
            }
            let Some(cfg) = parse_asc(&data) else {
                return self.ignore("a malformed AudioSpecificConfig");
            };
            let params = TrackParams::Aac {
                config: data,
                sample_rate: cfg.0,
                channels: cfg.1,
                frame_samples: 1024,
            };
            if self.audio.params.as_ref() != Some(&params) {
                self.audio = Audio {
                    params: Some(params),
                    sample_rate: cfg.0,
                    next: None,
                };
                self.media_info_changed();
            }
            return;
        }
        if self.audio.params.is_none() {
            return self.ignore("AAC frames before the AudioSpecificConfig");
        }
        if data.is_empty() {
            return;
        }
        let ms = self.time(ts, now);
        let sr = u64::from(self.audio.sample_rate.max(1));
        let mut t = (u128::from(ms as u64) * u128::from(sr) / 1000) as u64;
        // RTMP rounds to whole ms: a frame within half a frame of where the last one
        // ended follows it exactly.
        if let Some(next) = self.audio.next {
            if t.abs_diff(next) < 512 {
                t = next;
            }
        }
        self.audio.next = Some(t + 1024);
        let frame = Frame {
            track: AUDIO_TRACK,
            dts: t,
            pts: t,
            keyframe: true,
            capture_ms: self.capture(now),
            pos: Position::default(),
            payload: data,
        };
        self.emit(frame, ms);
    }

    /// Whether every track expected has its configuration.
    fn complete(&self) -> bool {
        (!self.expect_video || self.video.params.is_some())
            && (!self.expect_audio || self.audio.params.is_some())
    }

    fn tracks(&self) -> Vec<TrackInfo> {
        [
            (VIDEO_TRACK, self.video.params.clone()),
            (AUDIO_TRACK, self.audio.params.clone()),
        ]
        .into_iter()
        .filter_map(|(id, p)| p.map(|params| TrackInfo { id, params }))
        .collect()
    }

    /// Sends the media info if it differs from what went out (once it went out,
    /// or once complete).
    fn media_info_changed(&mut self) {
        if self.sent_info.is_none() && !self.complete() {
            return;
        }
        self.send_info();
    }

    fn send_info(&mut self) {
        let mi = MediaInfo {
            tracks: self.tracks(),
        };
        if mi.tracks.is_empty() || self.sent_info.as_deref() == Some(&mi) {
            return;
        }
        let mi = Arc::new(mi);
        self.sent_info = Some(mi.clone());
        self.out.push_back(FlvEvent::MediaInfo(mi));
        let held = std::mem::take(&mut self.held);
        self.held_since = None;
        for f in held {
            self.push(f);
        }
    }

    fn emit(&mut self, frame: Frame, ms: i64) {
        if self.sent_info.is_none() {
            if self.complete() {
                self.send_info();
            } else {
                let since = *self.held_since.get_or_insert(ms);
                self.held.push_back(frame);
                if self.held.len() >= MAX_HELD_FRAMES || ms - since > HOLD_MS {
                    self.send_info();
                }
                return;
            }
        }
        self.push(frame);
    }

    fn push(&mut self, mut frame: Frame) {
        frame.pos = Position {
            epoch: self.epoch,
            seq: self.seq,
        };
        self.seq += 1;
        self.out.push_back(FlvEvent::Frame(frame));
    }
}

/// Length size, first SPS and first PPS of an `AVCDecoderConfigurationRecord`.
pub fn parse_avcc(rec: &[u8]) -> Option<(usize, Bytes, Bytes)> {
    let length_size = usize::from(rec.get(4)? & 3) + 1;
    let mut at = 5;
    let first = |at: &mut usize, count_mask: u8| -> Option<Option<Bytes>> {
        let n = rec.get(*at)? & count_mask;
        *at += 1;
        let mut got = None;
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([*rec.get(*at)?, *rec.get(*at + 1)?]));
            let nal = rec.get(*at + 2..*at + 2 + len)?;
            *at += 2 + len;
            if got.is_none() && !nal.is_empty() {
                got = Some(Bytes::copy_from_slice(nal));
            }
        }
        Some(got)
    };
    let sps = first(&mut at, 0x1F)??;
    let pps = first(&mut at, 0xFF)??;
    Some((length_size, sps, pps))
}

impl Default for Video {
    fn default() -> Self {
        Video {
            codec: VideoCodec::H264,
            length_size: 0,
            vps: None,
            sps: None,
            pps: None,
            params: None,
        }
    }
}

/// Length size and the first VPS, SPS and PPS of an
/// `HEVCDecoderConfigurationRecord`.
pub fn parse_hvcc(rec: &[u8]) -> Option<(usize, Bytes, Bytes, Bytes)> {
    let length_size = usize::from(rec.get(21)? & 3) + 1;
    let arrays = *rec.get(22)?;
    let mut at = 23;
    let (mut vps, mut sps, mut pps) = (None, None, None);
    for _ in 0..arrays {
        let kind = rec.get(at)? & 0x3F;
        let count = u16::from_be_bytes([*rec.get(at + 1)?, *rec.get(at + 2)?]);
        at += 3;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*rec.get(at)?, *rec.get(at + 1)?]));
            let nal = rec.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            let slot = match kind {
                32 => &mut vps,
                33 => &mut sps,
                34 => &mut pps,
                _ => continue,
            };
            if slot.is_none() && !nal.is_empty() {
                *slot = Some(Bytes::copy_from_slice(nal));
            }
        }
    }
    Some((length_size, vps?, sps?, pps?))
}

/// Sample rate and channels of an `AudioSpecificConfig`.
pub fn parse_asc(asc: &[u8]) -> Option<(u32, u8)> {
    let bits = u64::from_be_bytes({
        let mut b = [0u8; 8];
        let n = asc.len().min(8);
        b[..n].copy_from_slice(&asc[..n]);
        b
    });
    if asc.len() < 2 {
        return None;
    }
    let mut at = 0u32;
    let mut read = |n: u32| {
        let v = (bits >> (64 - at - n)) & ((1 << n) - 1);
        at += n;
        v
    };
    let mut object_type = read(5);
    if object_type == 31 {
        object_type = 32 + read(6);
    }
    let index = read(4) as u8;
    let rate = if index == 15 {
        read(24) as u32
    } else {
        AdtsConfig {
            object_type: object_type as u8,
            frequency_index: index,
            channel_config: 0,
        }
        .sample_rate()
    };
    let channels = read(4) as u8;
    (rate > 0 && object_type > 0).then_some((rate, channels))
}

fn video_params(v: &Video) -> Option<TrackParams> {
    h26x::track_params(v.codec, v.vps.as_ref(), v.sps.as_ref(), v.pps.as_ref())
}

#[cfg(test)]
mod tests;
