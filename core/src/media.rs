//! The media model shared by every part of Tern: frames, tracks, media info and the
//! position of a frame in its stream (docs/design.md §3).
//!
//! Owns: plain data types and their small invariants. Must not: mux, parse or do I/O.

use bytes::Bytes;

/// Milliseconds since the Unix epoch (UTC). Wall-clock time is always an explicit
/// input in core, never read here.
pub type UtcMs = u64;

/// The 90 kHz timebase of video timestamps (and of MPEG-TS PTS/DTS).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Where a frame sits in its stream: an epoch that changes whenever the source
/// restarts, and a sequence number inside the epoch (counting every frame of every
/// track). "Resume" and "no duplicate" are defined on this pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

impl Position {
    /// Whether `next` comes right after this position in the same source epoch;
    /// anything else is a discontinuity (a restart, or frames missed).
    pub fn is_followed_by(self, next: Position) -> bool {
        self.epoch == next.epoch && self.seq.checked_add(1) == Some(next.seq)
    }
}

/// One access unit of one track. Immutable once made; cloning shares the payload
/// (`Bytes` is reference counted), so fan-out never copies frame bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Track id, as listed in the stream's [`MediaInfo`].
    pub track: u8,
    /// Decode timestamp in the track's timescale (90 kHz video, sample rate audio).
    pub dts: u64,
    /// Presentation timestamp in the same timescale (`pts >= dts`).
    pub pts: u64,
    /// A video keyframe (IDR) where a decoder can start. Audio frames are all `true`.
    pub keyframe: bool,
    /// UTC time at which the ingesting node captured the frame; carried unchanged
    /// through every hop.
    pub capture_ms: UtcMs,
    pub pos: Position,
    /// H.264: one Annex B access unit (start codes, AUD first, SPS/PPS before IDRs).
    /// H.265: one Annex B access unit (VPS/SPS/PPS before IRAP pictures).
    /// AAC: one raw AAC frame (no ADTS header).
    /// [`TrackParams::Other`]: one access unit as the source framed it, untouched.
    pub payload: Bytes,
}

/// Codec and codec configuration of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackParams {
    H264 {
        /// SPS and PPS NAL units without start codes.
        sps: Bytes,
        pps: Bytes,
        width: u16,
        height: u16,
        /// Nominal frame rate (frames per second).
        fps: u16,
    },
    H265 {
        /// VPS, SPS and PPS NAL units without start codes.
        vps: Bytes,
        sps: Bytes,
        pps: Bytes,
        width: u16,
        height: u16,
        /// Nominal frame rate (frames per second, 0 when unknown).
        fps: u16,
    },
    Aac {
        /// AudioSpecificConfig (e.g. `11 90` for 48 kHz stereo AAC-LC).
        config: Bytes,
        sample_rate: u32,
        channels: u8,
        /// Samples per frame (1024 for AAC-LC).
        frame_samples: u16,
    },
    /// A codec Tern carries without understanding it (G.711 from a camera, Opus):
    /// passed through M4S, M4F and the DVR untouched, left out of HLS and MPEG-TS.
    Other {
        kind: TrackKind,
        codec: CodecName,
        /// Ticks per second of the track's timestamps (never 0).
        timescale: u32,
        /// Codec configuration as the source gave it (may be empty).
        config: Bytes,
    },
}

/// Whether a track is pictures or sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// The name of a pass-through codec (`pcm_mulaw`, `opus`): 1 to
/// [`CodecName::MAX_LEN`] characters of `a-z`, `0-9` and `_`, so that it is safe in
/// logs, JSON and playlists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecName(String);

impl CodecName {
    pub const MAX_LEN: usize = 16;

    /// `None` unless `name` has the allowed form.
    pub fn new(name: &str) -> Option<CodecName> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| CodecName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    pub id: u8,
    pub params: TrackParams,
}

impl TrackInfo {
    /// An H.264 track of 320×240 at 25 fps whose SPS and PPS are placeholders (not
    /// decodable): the media info of tests and simulations that carry segments
    /// without decoding them.
    pub fn placeholder_h264(id: u8) -> TrackInfo {
        TrackInfo {
            id,
            params: TrackParams::H264 {
                sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x28]),
                pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
                width: 320,
                height: 240,
                fps: 25,
            },
        }
    }

    /// Ticks per second of this track's timestamps.
    pub fn timescale(&self) -> u32 {
        match &self.params {
            TrackParams::H264 { .. } | TrackParams::H265 { .. } => VIDEO_TIMESCALE,
            TrackParams::Aac { sample_rate, .. } => (*sample_rate).max(1),
            TrackParams::Other { timescale, .. } => (*timescale).max(1),
        }
    }

    pub fn kind(&self) -> TrackKind {
        match &self.params {
            TrackParams::H264 { .. } | TrackParams::H265 { .. } => TrackKind::Video,
            TrackParams::Aac { .. } => TrackKind::Audio,
            TrackParams::Other { kind, .. } => *kind,
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind() == TrackKind::Video
    }

    /// The name players and the API use for the codec (ffmpeg's names).
    pub fn codec_name(&self) -> &str {
        match &self.params {
            TrackParams::H264 { .. } => "h264",
            TrackParams::H265 { .. } => "hevc",
            TrackParams::Aac { .. } => "aac",
            TrackParams::Other { codec, .. } => codec.as_str(),
        }
    }

    /// Nominal frame rate of a video track (`None` for audio, pass-through codecs
    /// and an unknown rate).
    pub fn fps(&self) -> Option<u16> {
        match &self.params {
            TrackParams::H264 { fps, .. } | TrackParams::H265 { fps, .. } => {
                Some(*fps).filter(|&f| f > 0)
            }
            _ => None,
        }
    }

    /// Whether HLS and MPEG-TS can carry this track (H.264, H.265, AAC).
    pub fn muxable_to_ts(&self) -> bool {
        !matches!(self.params, TrackParams::Other { .. })
    }
}

/// What a stream carries: its tracks, in track-id order. Travels first on every
/// protocol connection.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MediaInfo {
    pub tracks: Vec<TrackInfo>,
}

impl MediaInfo {
    pub fn track(&self, id: u8) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.id == id)
    }

    pub fn video(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.is_video())
    }

    pub fn audio(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| !t.is_video())
    }
}

/// Converts a timestamp in `timescale` ticks to milliseconds (rounding down).
pub fn ticks_to_ms(ticks: u64, timescale: u32) -> u64 {
    ((ticks as u128 * 1000) / timescale.max(1) as u128) as u64
}

/// Converts a timestamp in `timescale` ticks to the 90 kHz MPEG timebase.
pub fn ticks_to_90k(ticks: u64, timescale: u32) -> u64 {
    ((ticks as u128 * 90_000) / timescale.max(1) as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions() {
        assert_eq!(ticks_to_ms(90_000, 90_000), 1000);
        assert_eq!(ticks_to_ms(1024, 48_000), 21);
        assert_eq!(ticks_to_90k(48_000, 48_000), 90_000);
        assert_eq!(ticks_to_90k(1024, 48_000), 1920);
    }

    #[test]
    fn codec_names_are_checked() {
        assert_eq!(
            CodecName::new("pcm_mulaw").map(|c| c.0),
            Some("pcm_mulaw".into())
        );
        assert!(CodecName::new("").is_none());
        assert!(CodecName::new("Opus").is_none());
        assert!(CodecName::new("a\"b").is_none());
        assert!(CodecName::new("a_very_long_codec_name").is_none());
    }
}
