//! HLS master playlists (RFC 8216 §4.3.4): one `#EXT-X-STREAM-INF` per variant with
//! `BANDWIDTH`, `AVERAGE-BANDWIDTH`, `CODECS` (RFC 6381 strings from the codec
//! configuration) and `RESOLUTION`.
//!
//! Owns: master playlist text and codec strings. Must not: measure bitrates or pick
//! which variants exist (the caller passes both).

use std::fmt::Write;

use crate::media::{TrackInfo, TrackParams};

/// One variant stream of a master playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// URI of the variant's media playlist, relative to the master.
    pub uri: String,
    /// Peak segment bit rate, bits per second.
    pub bandwidth: u64,
    /// Average segment bit rate, bits per second.
    pub average_bandwidth: u64,
    /// The variant's tracks (codecs and resolution come from them).
    pub tracks: Vec<TrackInfo>,
}

/// The RFC 6381 codec string of a track: `avc1.PPCCLL` from the SPS (profile,
/// constraint flags, level), `mp4a.40.N` from the AudioSpecificConfig (object type).
pub fn codec_string(track: &TrackInfo) -> String {
    match &track.params {
        TrackParams::H264 { sps, .. } => match sps.get(1..4) {
            Some(b) => format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]),
            // An SPS too short to read: the most common profile, so players try.
            None => "avc1.42e01e".to_string(),
        },
        TrackParams::H265 { sps, .. } => hevc_codec_string(sps),
        TrackParams::Aac { config, .. } => {
            let object_type = config.first().map_or(2, |b| b >> 3);
            format!("mp4a.40.{}", if object_type == 0 { 2 } else { object_type })
        }
        // Not carried in HLS: callers leave pass-through tracks out.
        TrackParams::Other { codec, .. } => codec.as_str().to_string(),
    }
}

/// `hvc1.P.C.TL.B…` (ISO/IEC 14496-15 E.3) from the profile_tier_level at the start
/// of an H.265 SPS (after its 2-byte NAL header and 1 byte of ids): profile space and
/// idc, the compatibility flags bit-reversed in hex, tier and level, and the
/// constraint bytes without trailing zeros.
fn hevc_codec_string(sps: &[u8]) -> String {
    let Some(ptl) = sps.get(3..15) else {
        return "hvc1.1.6.L93.B0".to_string(); // Main, level 3.1: players try it
    };
    let space = ["", "A", "B", "C"][usize::from(ptl[0] >> 6)];
    let tier = if ptl[0] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = ptl[0] & 0x1F;
    let compat = u32::from_be_bytes([ptl[1], ptl[2], ptl[3], ptl[4]]).reverse_bits();
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", ptl[11]);
    let constraints = &ptl[5..11];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

pub fn master_playlist(variants: &[Variant]) -> String {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let codecs: Vec<String> = v.tracks.iter().map(codec_string).collect();
        let _ = write!(
            s,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            v.bandwidth.max(1),
            v.average_bandwidth.clamp(1, v.bandwidth.max(1)),
            codecs.join(",")
        );
        let size = v.tracks.iter().find_map(|t| match t.params {
            TrackParams::H264 { width, height, .. } | TrackParams::H265 { width, height, .. } => {
                Some((width, height))
            }
            TrackParams::Aac { .. } | TrackParams::Other { .. } => None,
        });
        if let Some((w, h)) = size {
            let _ = write!(s, ",RESOLUTION={w}x{h}");
        }
        let _ = writeln!(s, "\n{}", v.uri);
    }
    s
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn video() -> TrackInfo {
        TrackInfo {
            id: 1,
            params: TrackParams::H264 {
                sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac]),
                pps: Bytes::from_static(&[0x68]),
                width: 1280,
                height: 720,
                fps: 25,
            },
        }
    }

    fn audio() -> TrackInfo {
        TrackInfo {
            id: 2,
            params: TrackParams::Aac {
                config: Bytes::from_static(&[0x11, 0x90]),
                sample_rate: 48_000,
                channels: 2,
                frame_samples: 1024,
            },
        }
    }

    #[test]
    fn codec_strings() {
        assert_eq!(codec_string(&video()), "avc1.64001f");
        assert_eq!(codec_string(&audio()), "mp4a.40.2");
        // An x265 Main SPS: NAL header 42 01, ids 01, then profile_tier_level
        // (Main, compatibility Main + Main10, constraint 0x90, level 93 = 3.1).
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x5d,
        ];
        let hevc = TrackInfo {
            id: 1,
            params: TrackParams::H265 {
                vps: Bytes::new(),
                sps: Bytes::copy_from_slice(&sps),
                pps: Bytes::new(),
                width: 1920,
                height: 1080,
                fps: 25,
            },
        };
        assert_eq!(codec_string(&hevc), "hvc1.1.6.L93.90");
    }

    #[test]
    fn master_text() {
        let m = master_playlist(&[
            Variant {
                uri: "tracks-v1a1/mono.m3u8".into(),
                bandwidth: 2_000_000,
                average_bandwidth: 1_500_000,
                tracks: vec![video(), audio()],
            },
            Variant {
                uri: "tracks-a1/mono.m3u8".into(),
                bandwidth: 130_000,
                average_bandwidth: 200_000,
                tracks: vec![audio()],
            },
        ]);
        assert_eq!(
            m,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2000000,AVERAGE-BANDWIDTH=1500000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720\n\
             tracks-v1a1/mono.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=130000,CODECS=\"mp4a.40.2\"\n\
             tracks-a1/mono.m3u8\n"
        );
    }
}
