//! The MPEG-TS ingest machine: bytes of a transport stream in (UDP datagrams, an
//! endless HTTP body), Tern's media info and frames out — for `udp://` and `http://`
//! inputs, and for any later input that carries MPEG-TS (SRT).
//!
//! Owns: choosing the program's video (H.264 or H.265) and audio (AAC in ADTS) streams,
//! access units and their keyframes, parameter sets (put in front of a keyframe that
//! came without them; a change makes new media info), timestamps through one
//! [`Timeline`], positions (a new epoch at every discontinuity: a timestamp jump, a
//! declared discontinuity, lost video packets, a program change), and the bounded
//! queue of frames held until the media info is known.
//!
//! Must not: read clocks (arrival time comes in with the bytes), do I/O, or panic on
//! any input. Shape: `handle_bytes` in, `poll_event` out until `None`.
//!
//! Choices: the first video and the first audio stream of the first program are taken;
//! other streams are reported once as [`IngestEvent::Ignored`]. Lost audio packets lose
//! those audio frames only; lost video packets start a new epoch at the next keyframe.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::ingest::adts_frames::AdtsSplitter;
use crate::ingest::h26x::{self, VideoCodec};
use crate::ingest::ts_demux::{DemuxEvent, DemuxStats, EsInfo, Pes, TsDemuxer};
use crate::media::{Frame, MediaInfo, Position, TrackInfo, TrackParams, UtcMs};
use crate::timeline::{Timeline, WRAP_33_BITS};

pub const VIDEO_TRACK: u8 = 1;
pub const AUDIO_TRACK: u8 = 2;
/// Frames held while the media info is not complete (an audio stream that has not
/// sent yet): at most this many, or one second of stream time, then the media info
/// goes out with the tracks known so far.
pub const MAX_HELD_FRAMES: usize = 256;
const HOLD_90K: u64 = 90_000;
/// A PTS more than this after its DTS is not believed (the offset is taken as 0).
const MAX_COMPOSITION_OFFSET_90K: u64 = 10 * 90_000;

const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_TYPE_H265: u8 = 0x24;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;

/// Why a new epoch started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscontinuityReason {
    /// Timestamps jumped beyond the timeline's bound.
    TimestampJump,
    /// The sender set `discontinuity_indicator`.
    Declared,
    /// Video packets were lost or damaged (continuity counter gap).
    LostPackets,
    /// The PMT changed the video stream.
    ProgramChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestEvent {
    /// The media info, before the first frame and whenever it changes.
    MediaInfo(Arc<MediaInfo>),
    Frame(Frame),
    /// Frames after this one start a new epoch.
    Discontinuity(DiscontinuityReason),
    /// A stream of the program Tern does not take (reported once per program).
    Ignored(EsInfo),
}

struct Video {
    pid: u16,
    codec: VideoCodec,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    params: Option<TrackParams>,
}

struct Audio {
    pid: u16,
    splitter: AdtsSplitter,
    params: Option<TrackParams>,
}

/// See the file comment.
pub struct TsIngest {
    demux: TsDemuxer,
    timeline: Timeline,
    video: Option<Video>,
    audio: Option<Audio>,
    sent_info: Option<Arc<MediaInfo>>,
    epoch: u64,
    seq: u64,
    /// Video frames are dropped until the next keyframe.
    need_key: bool,
    /// Frames waiting for the media info (DTS in 90 kHz of the first).
    held: VecDeque<Frame>,
    held_since_90k: Option<u64>,
    out: VecDeque<IngestEvent>,
    now_utc: UtcMs,
    /// The next jump of the timeline is the one the sender declared.
    declared: bool,
}

impl TsIngest {
    /// `epoch`: the first epoch (callers use the connect time in ms, so a reconnect
    /// always gets a new one).
    pub fn new(epoch: u64) -> TsIngest {
        TsIngest {
            demux: TsDemuxer::new(),
            timeline: Timeline::mpeg_ts(),
            video: None,
            audio: None,
            sent_info: None,
            epoch,
            seq: 0,
            need_key: true,
            held: VecDeque::new(),
            held_since_90k: None,
            out: VecDeque::new(),
            now_utc: 0,
            declared: false,
        }
    }

    pub fn stats(&self) -> DemuxStats {
        self.demux.stats()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Feeds bytes that arrived at `utc_ms` (the capture time given to their frames).
    pub fn handle_bytes(&mut self, utc_ms: UtcMs, data: &[u8]) {
        self.now_utc = utc_ms;
        self.demux.push(data);
        while let Some(ev) = self.demux.poll() {
            match ev {
                DemuxEvent::Program(streams) => self.program(&streams),
                DemuxEvent::Pes(pes) => self.pes(pes),
            }
        }
    }

    /// The input ended: frames still being assembled or held go out.
    pub fn handle_end(&mut self) {
        self.demux.flush();
        while let Some(ev) = self.demux.poll() {
            if let DemuxEvent::Pes(pes) = ev {
                self.pes(pes);
            }
        }
        self.release_held(true);
    }

    pub fn poll_event(&mut self) -> Option<IngestEvent> {
        self.out.pop_front()
    }

    fn program(&mut self, streams: &[EsInfo]) {
        let video = streams.iter().find_map(|e| match e.stream_type {
            STREAM_TYPE_H264 => Some((e.pid, VideoCodec::H264)),
            STREAM_TYPE_H265 => Some((e.pid, VideoCodec::H265)),
            _ => None,
        });
        let audio = streams
            .iter()
            .find(|e| e.stream_type == STREAM_TYPE_AAC_ADTS)
            .map(|e| e.pid);
        for e in streams {
            if Some(e.pid) != video.map(|v| v.0) && Some(e.pid) != audio {
                self.out.push_back(IngestEvent::Ignored(*e));
            }
        }
        let same_video = match (&self.video, video) {
            (Some(v), Some((pid, codec))) => v.pid == pid && v.codec == codec,
            (None, None) => true,
            _ => false,
        };
        if !same_video {
            self.video = video.map(|(pid, codec)| Video {
                pid,
                codec,
                vps: None,
                sps: None,
                pps: None,
                params: None,
            });
            if self.sent_info.is_some() {
                self.new_epoch(DiscontinuityReason::ProgramChange);
            }
        }
        if self.audio.as_ref().map(|a| a.pid) != audio {
            self.audio = audio.map(|pid| Audio {
                pid,
                splitter: AdtsSplitter::default(),
                params: None,
            });
        }
        self.update_media_info();
    }

    fn new_epoch(&mut self, reason: DiscontinuityReason) {
        self.epoch = self.epoch.saturating_add(1).max(self.now_utc);
        self.seq = 0;
        self.need_key = true;
        self.out.push_back(IngestEvent::Discontinuity(reason));
    }

    fn pes(&mut self, pes: Pes) {
        if pes.timebase_jump {
            self.timeline.declare_jump();
            self.declared = true;
        }
        let is_video = self.video.as_ref().is_some_and(|v| v.pid == pes.pid);
        let is_audio = self.audio.as_ref().is_some_and(|a| a.pid == pes.pid);
        if is_video {
            if pes.lost_before && self.sent_info.is_some() {
                self.new_epoch(DiscontinuityReason::LostPackets);
            }
            self.video_pes(pes);
        } else if is_audio {
            if pes.lost_before {
                if let Some(a) = &mut self.audio {
                    a.splitter.reset();
                }
            }
            self.audio_pes(pes);
        }
    }

    /// Places a 33-bit timestamp; a jump starts a new epoch.
    fn place(&mut self, raw: u64) -> u64 {
        let p = self.timeline.place(raw);
        let declared = std::mem::take(&mut self.declared);
        if p.jumped && self.sent_info.is_some() {
            self.new_epoch(if declared {
                DiscontinuityReason::Declared
            } else {
                DiscontinuityReason::TimestampJump
            });
        }
        p.ts
    }

    fn video_pes(&mut self, pes: Pes) {
        let Some(pts) = pes.pts else {
            return; // a video PES without PTS cannot be placed
        };
        let dts_raw = pes.dts.unwrap_or(pts);
        let offset = (pts + WRAP_33_BITS - dts_raw) % WRAP_33_BITS;
        let offset = if offset > MAX_COMPOSITION_OFFSET_90K {
            0
        } else {
            offset
        };
        let Some(v) = &mut self.video else { return };
        let au = h26x::inspect(v.codec, &pes.data);
        let mut changed = false;
        for (slot, new) in [
            (&mut v.vps, au.vps),
            (&mut v.sps, au.sps),
            (&mut v.pps, au.pps),
        ] {
            if let Some(n) = new {
                if slot.as_ref() != Some(&n) {
                    *slot = Some(n);
                    changed = true;
                }
            }
        }
        let mut payload = pes.data;
        if au.keyframe {
            if changed || v.params.is_none() {
                v.params = video_params(v);
            }
            // A keyframe that came without its parameter sets gets them in front.
            let sets: Vec<&Bytes> = match v.codec {
                VideoCodec::H264 => [&v.sps, &v.pps].into_iter().flatten().collect(),
                VideoCodec::H265 => [&v.vps, &v.sps, &v.pps].into_iter().flatten().collect(),
            };
            let has_sets = match v.codec {
                VideoCodec::H264 => au_has(&payload, VideoCodec::H264, &[7, 8]),
                VideoCodec::H265 => au_has(&payload, VideoCodec::H265, &[32, 33, 34]),
            };
            if !has_sets && !sets.is_empty() {
                payload = h26x::prepend_parameter_sets(&sets, &payload);
            }
        }
        if v.params.is_none() {
            return; // nothing decodable before the first keyframe with parameter sets
        }
        let dts = self.place(dts_raw);
        if self.need_key && !au.keyframe {
            return;
        }
        if au.keyframe {
            self.need_key = false;
            self.update_media_info();
        }
        let frame = Frame {
            track: VIDEO_TRACK,
            dts,
            pts: dts + offset,
            keyframe: au.keyframe,
            capture_ms: self.now_utc,
            pos: Position::default(),
            payload,
        };
        self.emit(frame, dts);
    }

    fn audio_pes(&mut self, pes: Pes) {
        let Some(pts_raw) = pes.pts else {
            return;
        };
        let Some(a) = &mut self.audio else { return };
        let frames = a.splitter.push(&pes.data);
        let Some(first) = frames.first() else { return };
        let config = first.config;
        let sample_rate = config.sample_rate();
        if sample_rate == 0 {
            return;
        }
        let params = TrackParams::Aac {
            config: Bytes::copy_from_slice(&config.audio_specific_config()),
            sample_rate,
            channels: config.channel_config,
            frame_samples: 1024,
        };
        let changed = a.params.as_ref() != Some(&params);
        if changed {
            a.params = Some(params);
        }
        let base_90k = self.place(pts_raw);
        if changed {
            self.update_media_info();
        }
        let base = (u128::from(base_90k) * u128::from(sample_rate) / 90_000) as u64;
        for (k, f) in frames.into_iter().enumerate() {
            if f.config != config {
                break; // a config change inside one PES: the next PES carries it
            }
            let ts = base + k as u64 * 1024;
            let frame = Frame {
                track: AUDIO_TRACK,
                dts: ts,
                pts: ts,
                keyframe: true,
                capture_ms: self.now_utc,
                pos: Position::default(),
                payload: f.data,
            };
            self.emit(frame, base_90k);
        }
    }

    /// The media info from what is known; sent when complete, or when the held
    /// frames run out of room, and again whenever it changes.
    fn update_media_info(&mut self) {
        let tracks = self.known_tracks();
        let complete = self.video.as_ref().is_none_or(|v| v.params.is_some())
            && self.audio.as_ref().is_none_or(|a| a.params.is_some());
        if tracks.is_empty() || (self.sent_info.is_none() && !complete) {
            return;
        }
        let mi = MediaInfo { tracks };
        if self.sent_info.as_deref() == Some(&mi) {
            return;
        }
        let mi = Arc::new(mi);
        self.sent_info = Some(mi.clone());
        self.out.push_back(IngestEvent::MediaInfo(mi));
        self.release_held(true);
    }

    fn emit(&mut self, mut frame: Frame, at_90k: u64) {
        if self.sent_info.is_none() {
            let since = *self.held_since_90k.get_or_insert(at_90k);
            self.held.push_back(frame);
            if self.held.len() >= MAX_HELD_FRAMES || at_90k.saturating_sub(since) > HOLD_90K {
                self.release_held(false);
            }
            return;
        }
        frame.pos = Position {
            epoch: self.epoch,
            seq: self.seq,
        };
        self.seq += 1;
        self.out.push_back(IngestEvent::Frame(frame));
    }

    /// Sends the held frames, first sending the media info with what is known if it
    /// has not gone out (`sent_only`: only if it has).
    fn release_held(&mut self, sent_only: bool) {
        if self.sent_info.is_none() {
            if sent_only {
                return;
            }
            let mi = Arc::new(MediaInfo {
                tracks: self.known_tracks(),
            });
            self.sent_info = Some(mi.clone());
            self.out.push_back(IngestEvent::MediaInfo(mi));
        }
        self.held_since_90k = None;
        let held = std::mem::take(&mut self.held);
        for f in held {
            self.emit(f, 0);
        }
    }

    /// The tracks whose parameters are known.
    fn known_tracks(&self) -> Vec<TrackInfo> {
        let video = self.video.as_ref().and_then(|v| v.params.clone());
        let audio = self.audio.as_ref().and_then(|a| a.params.clone());
        [(VIDEO_TRACK, video), (AUDIO_TRACK, audio)]
            .into_iter()
            .filter_map(|(id, p)| p.map(|params| TrackInfo { id, params }))
            .collect()
    }
}

fn au_has(au: &Bytes, codec: VideoCodec, types: &[u8]) -> bool {
    h26x::nal_units(au).iter().any(|n| {
        let t = match codec {
            VideoCodec::H264 => n[0] & 0x1F,
            VideoCodec::H265 => (n[0] >> 1) & 0x3F,
        };
        types.contains(&t)
    })
}

/// Track parameters from the parameter sets seen; `None` until they are all in and
/// the SPS parses.
fn video_params(v: &Video) -> Option<TrackParams> {
    h26x::track_params(v.codec, v.vps.as_ref(), v.sps.as_ref(), v.pps.as_ref())
}

#[cfg(test)]
mod tests;
