//! Turns the frames an RTP depacketizer hands over (an RTSP camera's H.264 access
//! or H.265 access units and AAC frames) into Tern [`Frame`]s: positions, timestamps on the track's
//! timescale, capture times (see [`crate::capture_clock`]) and the access-unit shape
//! the muxers expect (an AUD first).
//!
//! One `RtpIngest` lives for one RTSP session: a new session is a new epoch, so the
//! outputs mark the reconnect as a discontinuity.
//!
//! Owns: that conversion. Must not: speak RTSP or RTP (the driver's crate does), read
//! a clock (arrival times are passed in) or know sockets.

use bytes::Bytes;

use crate::capture_clock::{CaptureClock, CaptureSource, ReportOutcome};
use crate::ingest::decode_time::{DecodeTimes, NoDts};
pub use crate::ingest::h26x::VideoCodec;
use crate::media::{Frame, Position, UtcMs, VIDEO_TIMESCALE};

/// Track id of the video track of an ingested RTP session.
pub const VIDEO_TRACK: u8 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK: u8 = 2;

/// An H.264 access unit delimiter (primary_pic_type 7: any slice type), with its
/// start code. MPEG-TS and HLS players need one at the start of each access unit.
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
/// The H.265 one (NAL type 35, pic_type 2: any slice type).
const AUD_H265: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];

/// Which track a frame or report belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// Why a frame was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The track was not set up.
    NoTrack,
    /// Its timestamp is before the session's start (negative elapsed time).
    BeforeStart,
    /// Its timestamp does not fit the track's timescale in 64 bits.
    OutOfRange,
    /// Its timestamp is not after the track's previous one (audio), or repeats or
    /// steps back beyond what B-frame reordering explains (video).
    Backwards,
    /// A video frame while the reorder depth of a B-frame source is learnt (until
    /// the next keyframe), or one shown before the keyframe a run starts at
    /// (see [`crate::ingest::decode_time`]).
    Reordering,
    /// An empty access unit.
    Empty,
}

#[derive(Clone, Debug)]
struct Track {
    /// RTP clock rate (Hz).
    clock_rate: u32,
    /// The frame timestamps' timescale (90 kHz video, the sample rate audio).
    timescale: u32,
    clock: CaptureClock,
    /// The previous frame's timestamp (ticks): audio timestamps must go up.
    last: Option<u64>,
}

/// Every track's timeline starts this far above zero, so that the first frames of a
/// B-frame source have room for decode times below their presentation times.
pub const TIMELINE_START_SECS: i64 = 2;

/// A video frame's duration until the stream shows its own (25 fps).
const DEFAULT_FRAME_TICKS: u64 = VIDEO_TIMESCALE as u64 / 25;

impl Track {
    fn ticks(&self, elapsed: i64) -> Result<u64, Dropped> {
        if elapsed < 0 {
            return Err(Dropped::BeforeStart);
        }
        let t = i128::from(elapsed) * i128::from(self.timescale) / i128::from(self.clock_rate)
            + i128::from(TIMELINE_START_SECS) * i128::from(self.timescale);
        u64::try_from(t).map_err(|_| Dropped::OutOfRange)
    }
}

/// The frames of one RTP session.
#[derive(Clone, Debug)]
pub struct RtpIngest {
    epoch: u64,
    codec: VideoCodec,
    next_seq: u64,
    /// The latest capture time given: capture times never go backwards.
    last_capture: UtcMs,
    video: Option<Track>,
    audio: Option<Track>,
    /// Decode times of the video frames (RTP carries presentation times only).
    decode: DecodeTimes,
    /// The smallest gap between two video timestamps seen: a frame's duration.
    frame_ticks: Option<u64>,
}

impl RtpIngest {
    /// A session whose frames get epoch `epoch` (the driver uses the UTC ms at which
    /// it started, so every reconnect is a new epoch).
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            codec: VideoCodec::H264,
            next_seq: 0,
            last_capture: 0,
            video: None,
            audio: None,
            decode: DecodeTimes::new(0),
            frame_ticks: None,
        }
    }

    /// The reorder depth the video's SPS states (B-frames: how many frames may
    /// arrive before one they are shown after), when the driver knows it; without
    /// it the depth is learnt from the timestamps, at the cost of the frames up to a
    /// keyframe once (see [`crate::ingest::decode_time`]).
    pub fn set_reorder_depth(&mut self, depth: usize) {
        self.decode.raise_depth(depth);
    }

    /// The reorder depth assumed now (0: no B-frames seen).
    pub fn reorder_depth(&self) -> usize {
        self.decode.depth()
    }

    /// Sets up the video track (`codec` on a `clock_rate` RTP clock, 90 kHz in
    /// practice).
    pub fn set_video(&mut self, clock_rate: u32, codec: VideoCodec) {
        self.codec = codec;
        self.video = Some(Track {
            clock_rate: clock_rate.max(1),
            timescale: VIDEO_TIMESCALE,
            clock: CaptureClock::default(),
            last: None,
        });
    }

    /// Sets up the audio track (AAC at `sample_rate` on a `clock_rate` RTP clock).
    pub fn set_audio(&mut self, clock_rate: u32, sample_rate: u32) {
        self.audio = Some(Track {
            clock_rate: clock_rate.max(1),
            timescale: sample_rate.max(1),
            clock: CaptureClock::default(),
            last: None,
        });
    }

    fn track(&mut self, kind: Kind) -> Option<&mut Track> {
        match kind {
            Kind::Video => self.video.as_mut(),
            Kind::Audio => self.audio.as_mut(),
        }
    }

    /// An RTCP sender report for a track: RTP time `rtp` (extended) was NTP `ntp`.
    pub fn handle_sender_report(
        &mut self,
        kind: Kind,
        rtp: i64,
        ntp: u64,
        arrival_ms: UtcMs,
    ) -> ReportOutcome {
        match self.track(kind) {
            Some(t) => t
                .clock
                .handle_sender_report(rtp, t.clock_rate, ntp, arrival_ms),
            None => ReportOutcome::Invalid,
        }
    }

    /// Where the video's capture times come from now (audio's when there is no
    /// video).
    pub fn capture_source(&self) -> CaptureSource {
        let synced = self.video.as_ref().or(self.audio.as_ref());
        match synced {
            Some(t) if t.clock.synced() => CaptureSource::SenderReport,
            _ => CaptureSource::Arrival,
        }
    }

    /// A frame of track `kind`: `elapsed` is its RTP time since the session's start
    /// (the presentation time), `rtp` its extended RTP timestamp, `data` an Annex B
    /// access unit (video) or a raw AAC frame (audio).
    pub fn frame(
        &mut self,
        kind: Kind,
        elapsed: i64,
        rtp: i64,
        keyframe: bool,
        data: Vec<u8>,
        arrival_ms: UtcMs,
    ) -> Result<Frame, Dropped> {
        if data.is_empty() {
            return Err(Dropped::Empty);
        }
        let track = self.track(kind).ok_or(Dropped::NoTrack)?;
        let ts = track.ticks(elapsed)?;
        let last = track.last;
        let dts = match kind {
            Kind::Audio => {
                if last.is_some_and(|last| ts <= last) {
                    return Err(Dropped::Backwards);
                }
                ts
            }
            Kind::Video => {
                if let Some(gap) = last.map(|l| l.abs_diff(ts)).filter(|&g| g > 0) {
                    self.frame_ticks = Some(self.frame_ticks.map_or(gap, |f| f.min(gap)));
                }
                let ticks = self.frame_ticks.unwrap_or(DEFAULT_FRAME_TICKS);
                self.decode.dts(ts, keyframe, ticks).map_err(|e| match e {
                    NoDts::Repeated | NoDts::Backwards | NoDts::TooDeep => Dropped::Backwards,
                    NoDts::Relearning | NoDts::Leading => Dropped::Reordering,
                })?
            }
        };
        let track = self.track(kind).ok_or(Dropped::NoTrack)?;
        track.last = Some(ts);
        // When the sender's clock takes over from arrival times (its first report),
        // it usually says frames were captured earlier than they arrived: capture
        // times then hold still until it catches up, so they never go backwards (a
        // DVR segment never starts before the previous one).
        let (mapped, _) = track.clock.capture_ms(rtp, arrival_ms);
        let capture_ms = mapped.max(self.last_capture);
        self.last_capture = capture_ms;
        let (id, keyframe, payload) = match kind {
            Kind::Video => (VIDEO_TRACK, keyframe, with_aud(self.codec, data)),
            Kind::Audio => (AUDIO_TRACK, true, Bytes::from(data)),
        };
        let pos = Position {
            epoch: self.epoch,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        Ok(Frame {
            track: id,
            dts,
            pts: ts,
            keyframe,
            capture_ms,
            pos,
            payload,
        })
    }
}

/// `au` with an access unit delimiter in front, unless it starts with one.
pub fn with_aud(codec: VideoCodec, au: Vec<u8>) -> Bytes {
    // Only the first NAL unit's header matters: find the first start code rather
    // than splitting the whole access unit.
    let first = au
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .and_then(|i| au.get(i + 3))
        .copied();
    let (is_aud, aud) = match codec {
        VideoCodec::H264 => (first.map(|h| h & 0x1F) == Some(9), &AUD[..]),
        VideoCodec::H265 => (first.map(|h| (h >> 1) & 0x3F) == Some(35), &AUD_H265[..]),
    };
    if is_aud {
        return Bytes::from(au);
    }
    let mut out = Vec::with_capacity(aud.len() + au.len());
    out.extend_from_slice(aud);
    out.extend_from_slice(&au);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture_clock::NTP_UNIX_OFFSET_SECS;
    use crate::fake::h264::nal_units;

    const NOW: UtcMs = 1_795_000_000_000;
    /// Where a 90 kHz timeline starts.
    const START: u64 = TIMELINE_START_SECS as u64 * 90_000;
    const IDR: &[u8] = &[
        0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 9,
    ];

    #[test]
    fn frames_get_positions_timestamps_and_an_aud() {
        let mut ing = RtpIngest::new(7);
        ing.set_video(90_000, VideoCodec::H264);
        ing.set_audio(48_000, 48_000);
        let v = ing
            .frame(Kind::Video, 3_600, 1_003_600, true, IDR.to_vec(), NOW)
            .expect("video");
        assert_eq!(
            (v.track, v.dts, v.pts, v.keyframe),
            (VIDEO_TRACK, START + 3_600, START + 3_600, true)
        );
        assert_eq!(v.pos, Position { epoch: 7, seq: 0 });
        assert_eq!(v.capture_ms, NOW);
        assert_eq!(&v.payload[..6], &AUD);
        assert_eq!(&v.payload[6..], IDR);
        let nals: Vec<u8> = nal_units(&v.payload).iter().map(|n| n[0] & 0x1F).collect();
        assert_eq!(nals, [9, 7, 8, 5]);
        // An access unit that has its AUD keeps it, unchanged.
        let with = [&AUD[..], IDR].concat();
        let v = ing
            .frame(Kind::Video, 7_200, 1_007_200, false, with.clone(), NOW + 40)
            .expect("video");
        assert_eq!(&v.payload[..], &with[..]);
        assert_eq!(v.pos.seq, 1);
        assert!(!v.keyframe);
        let a = ing
            .frame(Kind::Audio, 2_048, 9, false, vec![0x21, 0], NOW + 40)
            .expect("audio");
        let audio_start = TIMELINE_START_SECS as u64 * 48_000;
        assert_eq!(
            (a.track, a.dts, a.keyframe),
            (AUDIO_TRACK, audio_start + 2_048, true)
        );
        assert_eq!(a.pos.seq, 2);
        // A step back (or a repeat) of a track's timestamp is dropped, and takes no
        // sequence number; the other track is not affected.
        let back = ing.frame(Kind::Video, 7_200, 0, false, IDR.to_vec(), NOW);
        assert_eq!(back, Err(Dropped::Backwards));
        let a = ing
            .frame(Kind::Audio, 3_072, 9, false, vec![0x21, 0], NOW + 40)
            .expect("audio");
        assert_eq!(a.pos.seq, 3);
    }

    #[test]
    fn h265_access_units_get_their_own_aud() {
        // VPS, SPS, PPS, IDR_W_RADL (NAL types 32, 33, 34, 19).
        let idr: &[u8] = &[
            0, 0, 0, 1, 0x40, 1, 0xA, 0, 0, 0, 1, 0x42, 1, 0xB, 0, 0, 0, 1, 0x44, 1, 0xC, 0, 0, 1,
            0x26, 1, 0xD,
        ];
        let mut ing = RtpIngest::new(3);
        ing.set_video(90_000, VideoCodec::H265);
        let v = ing
            .frame(Kind::Video, 0, 0, true, idr.to_vec(), NOW)
            .expect("video");
        assert_eq!(&v.payload[..7], &AUD_H265);
        let types: Vec<u8> = nal_units(&v.payload)
            .iter()
            .map(|n| (n[0] >> 1) & 0x3F)
            .collect();
        assert_eq!(types, [35, 32, 33, 34, 19]);
        // One that has its AUD keeps it; an H.264 AUD is not mistaken for one.
        let with = [&AUD_H265[..], idr].concat();
        assert_eq!(&with_aud(VideoCodec::H265, with.clone())[..], &with[..]);
        assert_eq!(&with_aud(VideoCodec::H264, with.clone())[..6], &AUD);
    }

    #[test]
    fn bad_frames_are_dropped_not_panicked_on() {
        let mut ing = RtpIngest::new(1);
        assert_eq!(
            ing.frame(Kind::Audio, 0, 0, true, vec![1], NOW),
            Err(Dropped::NoTrack)
        );
        ing.set_video(0, VideoCodec::H264); // a zero clock rate is taken as 1, never divided by
        assert_eq!(
            ing.frame(Kind::Video, -1, 0, true, IDR.to_vec(), NOW),
            Err(Dropped::BeforeStart)
        );
        assert_eq!(
            ing.frame(Kind::Video, 0, 0, true, Vec::new(), NOW),
            Err(Dropped::Empty)
        );
        assert_eq!(
            ing.frame(Kind::Video, i64::MAX, i64::MAX, true, IDR.to_vec(), NOW),
            Err(Dropped::OutOfRange)
        );
        ing.set_video(90_000, VideoCodec::H264);
        let big = ing.frame(Kind::Video, i64::MAX, i64::MAX, true, IDR.to_vec(), NOW);
        assert_eq!(big.map(|f| f.dts), Ok(i64::MAX as u64 + START));
    }

    #[test]
    fn b_frames_get_decode_times_below_their_presentation_times() {
        // Decode order I0 P3 B1 B2 P6 B4 B5 P7, then a closed GOP from I8
        // (presentation times in frames of 3600).
        let order = [0i64, 3, 1, 2, 6, 4, 5, 7, 8, 11, 9, 10];
        let feed = |ing: &mut RtpIngest| -> Vec<Result<(u64, u64), Dropped>> {
            order
                .iter()
                .map(|&p| {
                    let key = p == 0 || p == 8;
                    ing.frame(Kind::Video, p * 3_600, p * 3_600, key, IDR.to_vec(), NOW)
                        .map(|f| (f.dts, f.pts))
                })
                .collect()
        };
        let valid = |out: &[Result<(u64, u64), Dropped>]| {
            let taken: Vec<(u64, u64)> = out.iter().filter_map(|r| (*r).ok()).collect();
            assert!(taken.iter().all(|(d, p)| d <= p), "{out:?}");
            assert!(taken.windows(2).all(|w| w[0].0 < w[1].0), "{out:?}");
            taken.len()
        };
        // The depth stated (the SPS): every frame taken, DTS increasing, none after
        // its PTS.
        let mut ing = RtpIngest::new(1);
        ing.set_video(90_000, VideoCodec::H264);
        ing.set_reorder_depth(1);
        let out = feed(&mut ing);
        assert_eq!(valid(&out), order.len(), "{out:?}");
        // Not stated: learnt from the first B-frame; frames until the next keyframe
        // (presentation 8) are dropped, then every one is taken.
        let mut ing = RtpIngest::new(1);
        ing.set_video(90_000, VideoCodec::H264);
        let out = feed(&mut ing);
        assert_eq!(out[2], Err(Dropped::Reordering));
        assert_eq!(ing.reorder_depth(), 1);
        assert!(out[8..].iter().all(Result::is_ok), "{out:?}");
        valid(&out);
    }

    #[test]
    fn capture_times_follow_sender_reports() {
        let mut ing = RtpIngest::new(1);
        ing.set_video(90_000, VideoCodec::H264);
        assert_eq!(ing.capture_source(), CaptureSource::Arrival);
        // RTP 0 was captured 250 ms before NOW.
        let capture = NOW - 250;
        let ntp = ((capture / 1000 + NTP_UNIX_OFFSET_SECS) << 32)
            | ((((capture % 1000) << 32) / 1000) + 1);
        let out = ing.handle_sender_report(Kind::Video, 0, ntp, NOW);
        assert_eq!(out, ReportOutcome::Accepted);
        assert_eq!(ing.capture_source(), CaptureSource::SenderReport);
        let v = ing
            .frame(Kind::Video, 9_000, 9_000, true, IDR.to_vec(), NOW + 400)
            .expect("video");
        assert_eq!(v.capture_ms, NOW - 150);
        // Once a frame had its arrival time, the sender's earlier clock does not
        // take capture times backwards: they hold until it catches up.
        let mut ing = RtpIngest::new(2);
        ing.set_video(90_000, VideoCodec::H264);
        let v = ing
            .frame(Kind::Video, 0, 0, true, IDR.to_vec(), NOW)
            .expect("video");
        assert_eq!(v.capture_ms, NOW);
        ing.handle_sender_report(Kind::Video, 0, ntp, NOW);
        let times: Vec<UtcMs> = (1..=12)
            .map(|i| {
                let rtp = i * 3_600;
                let f = ing.frame(
                    Kind::Video,
                    rtp,
                    rtp,
                    false,
                    IDR.to_vec(),
                    NOW + 40 * i as u64,
                );
                f.expect("video").capture_ms
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times[0], NOW);
        assert_eq!(times[11], NOW - 250 + 480);
        assert_eq!(
            ing.handle_sender_report(Kind::Audio, 0, ntp, NOW),
            ReportOutcome::Invalid
        );
    }
}
