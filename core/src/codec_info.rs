//! Human names of a track's codec profile and level, as the API shows them
//! (Flussonic's `media_info.tracks[].profile` / `level`): read from the H.264 SPS,
//! the H.265 profile_tier_level and the AAC AudioSpecificConfig.
//!
//! Owns: those names. Must not: parse more than the few fixed-position bytes it
//! needs (a short or odd configuration gives `None`, never a panic).

use crate::media::{TrackInfo, TrackParams};

/// (profile, level) of a track, each when known.
pub fn profile_level(track: &TrackInfo) -> (Option<String>, Option<String>) {
    match &track.params {
        TrackParams::H264 { sps, .. } => match sps.get(1..4) {
            Some(b) => (h264_profile(b[0], b[1]), h264_level(b[2])),
            None => (None, None),
        },
        TrackParams::H265 { sps, .. } => match sps.get(3..15) {
            Some(ptl) => (h265_profile(ptl[0] & 0x1F), h265_level(ptl[11])),
            None => (None, None),
        },
        TrackParams::Aac { config, .. } => (config.first().and_then(|b| aac_profile(b >> 3)), None),
        TrackParams::Other { .. } => (None, None),
    }
}

fn h264_profile(idc: u8, constraints: u8) -> Option<String> {
    let name = match idc {
        66 if constraints & 0x40 != 0 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        _ => return Some(format!("profile {idc}")),
    };
    Some(name.to_string())
}

/// `level_idc` is ten times the level (`31` is 3.1).
fn h264_level(idc: u8) -> Option<String> {
    (idc > 0).then(|| format!("{}.{}", idc / 10, idc % 10))
}

fn h265_profile(idc: u8) -> Option<String> {
    let name = match idc {
        1 => "Main",
        2 => "Main 10",
        3 => "Main Still Picture",
        4 => "Format Range Extensions",
        0 => return None,
        _ => return Some(format!("profile {idc}")),
    };
    Some(name.to_string())
}

/// `general_level_idc` is thirty times the level (`93` is 3.1, `120` is 4).
fn h265_level(idc: u8) -> Option<String> {
    (idc > 0).then(|| format!("{}.{}", idc / 30, idc % 30 / 3))
}

fn aac_profile(object_type: u8) -> Option<String> {
    let name = match object_type {
        1 => "Main",
        2 => "LC",
        3 => "SSR",
        4 => "LTP",
        5 => "HE-AAC",
        29 => "HE-AACv2",
        0 => return None,
        _ => return Some(format!("object type {object_type}")),
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn track(params: TrackParams) -> TrackInfo {
        TrackInfo { id: 1, params }
    }

    #[test]
    fn names() {
        let h264 = |sps: &'static [u8]| {
            track(TrackParams::H264 {
                sps: Bytes::from_static(sps),
                pps: Bytes::new(),
                width: 320,
                height: 240,
                fps: 25,
            })
        };
        assert_eq!(
            profile_level(&h264(&[0x67, 0x42, 0xc0, 0x1e])),
            (Some("Constrained Baseline".into()), Some("3.0".into()))
        );
        assert_eq!(
            profile_level(&h264(&[0x67, 0x64, 0x00, 0x29])),
            (Some("High".into()), Some("4.1".into()))
        );
        assert_eq!(profile_level(&h264(&[0x67])), (None, None));
        let mut sps = vec![0x42, 0x01, 0x01, 0x01];
        sps.extend_from_slice(&[0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93]);
        let h265 = track(TrackParams::H265 {
            vps: Bytes::new(),
            sps: Bytes::from(sps),
            pps: Bytes::new(),
            width: 320,
            height: 240,
            fps: 0,
        });
        assert_eq!(
            profile_level(&h265),
            (Some("Main".into()), Some("3.1".into()))
        );
        let aac = track(TrackParams::Aac {
            config: Bytes::from_static(&[0x11, 0x90]),
            sample_rate: 48_000,
            channels: 2,
            frame_samples: 1024,
        });
        assert_eq!(profile_level(&aac), (Some("LC".into()), None));
    }
}
