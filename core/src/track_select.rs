//! Track selections (`tracks-v1a1/…`): which of a stream's tracks a selection picks,
//! the variants a master playlist offers, a segment cut down to the picked tracks,
//! and the bit rates a master playlist announces.
//!
//! Owns: Flussonic's numbering (`vN` is the N-th video track, `aN` the N-th audio
//! track, both 1-based, in media-info order). Must not: mux or render text.

use std::sync::Arc;

use crate::media::MediaInfo;
use crate::play_url::TrackSelection;
use crate::Segment;

/// The tracks HLS and MPEG-TS carry (pass-through codecs are left out), numbered.
fn playable(mi: &MediaInfo, video: bool) -> Vec<u8> {
    mi.tracks
        .iter()
        .filter(|t| t.muxable_to_ts() && t.is_video() == video)
        .map(|t| t.id)
        .collect()
}

/// The track ids `sel` picks in `mi`, in media-info order, or `None` if it names a
/// track the stream does not have. Pass-through tracks are not numbered.
pub fn select(mi: &MediaInfo, sel: &TrackSelection) -> Option<Vec<u8>> {
    let videos = playable(mi, true);
    let audios = playable(mi, false);
    let mut ids = Vec::with_capacity(sel.video.len() + sel.audio.len());
    for &v in &sel.video {
        ids.push(*videos.get(usize::from(v).checked_sub(1)?)?);
    }
    for &a in &sel.audio {
        ids.push(*audios.get(usize::from(a).checked_sub(1)?)?);
    }
    let mut ordered: Vec<u8> = mi
        .tracks
        .iter()
        .map(|t| t.id)
        .filter(|id| ids.contains(id))
        .collect();
    ordered.dedup();
    Some(ordered)
}

/// The variants of a master playlist: one per video track, each with the first
/// audio track (`tracks-v1a1`, `tracks-v2a1`…); a stream without video gets one
/// audio variant per audio track.
pub fn default_variants(mi: &MediaInfo) -> Vec<TrackSelection> {
    let n_video = playable(mi, true).len();
    let n_audio = playable(mi, false).len();
    let first_audio: Vec<u8> = if n_audio > 0 { vec![1] } else { Vec::new() };
    if n_video > 0 {
        (1..=n_video.min(255) as u8)
            .map(|v| TrackSelection {
                video: vec![v],
                audio: first_audio.clone(),
            })
            .collect()
    } else {
        (1..=n_audio.min(255) as u8)
            .map(|a| TrackSelection {
                video: Vec::new(),
                audio: vec![a],
            })
            .collect()
    }
}

/// Whether `ids` are all of `mi`'s tracks HLS carries (nothing to cut: the muxer
/// leaves pass-through tracks out by itself).
pub fn is_all(mi: &MediaInfo, ids: &[u8]) -> bool {
    mi.tracks
        .iter()
        .filter(|t| t.muxable_to_ts())
        .all(|t| ids.contains(&t.id))
}

/// `seg` with only the tracks `ids` (frames and media info).
pub fn filter_segment(seg: &Segment, ids: &[u8]) -> Segment {
    let media_info = MediaInfo {
        tracks: seg
            .media_info
            .tracks
            .iter()
            .filter(|t| ids.contains(&t.id))
            .cloned()
            .collect(),
    };
    Segment {
        media_info: Arc::new(media_info),
        utc_start_ms: seg.utc_start_ms,
        duration_ms: seg.duration_ms,
        frames: seg
            .frames
            .iter()
            .filter(|f| ids.contains(&f.track))
            .cloned()
            .collect(),
    }
}

/// Peak and average bit rate (bits per second) of segments given as (bytes,
/// duration ms). Segments shorter than 100 ms count as 100 ms, so a one-frame
/// segment cannot announce an absurd peak.
pub fn bitrates(segments: impl IntoIterator<Item = (usize, u32)>) -> (u64, u64) {
    let (mut peak, mut bytes, mut ms) = (0u64, 0u64, 0u64);
    for (b, d) in segments {
        let d = u64::from(d.max(100));
        let b = b as u64;
        peak = peak.max(b.saturating_mul(8000) / d);
        bytes = bytes.saturating_add(b);
        ms = ms.saturating_add(d);
    }
    let avg = bytes.saturating_mul(8000).checked_div(ms).unwrap_or(0);
    (peak, avg)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::{Frame, Position, TrackInfo, TrackParams};

    fn mi(kinds: &str) -> MediaInfo {
        MediaInfo {
            tracks: kinds
                .chars()
                .enumerate()
                .map(|(i, k)| TrackInfo {
                    id: i as u8 + 1,
                    params: if k == 'v' {
                        TrackParams::H264 {
                            sps: Bytes::new(),
                            pps: Bytes::new(),
                            width: 320,
                            height: 240,
                            fps: 25,
                        }
                    } else {
                        TrackParams::Aac {
                            config: Bytes::new(),
                            sample_rate: 48_000,
                            channels: 2,
                            frame_samples: 1024,
                        }
                    },
                })
                .collect(),
        }
    }

    fn sel(video: &[u8], audio: &[u8]) -> TrackSelection {
        TrackSelection {
            video: video.to_vec(),
            audio: audio.to_vec(),
        }
    }

    #[test]
    fn selections_map_to_ids() {
        let m = mi("vaav");
        assert_eq!(select(&m, &sel(&[1], &[1])), Some(vec![1, 2]));
        assert_eq!(select(&m, &sel(&[2], &[2])), Some(vec![3, 4]));
        assert_eq!(select(&m, &sel(&[], &[1, 2])), Some(vec![2, 3]));
        assert_eq!(select(&m, &sel(&[3], &[])), None);
        assert_eq!(select(&m, &sel(&[], &[3])), None);
        assert!(is_all(&m, &[1, 2, 3, 4]));
        assert!(!is_all(&m, &[1, 2]));
    }

    #[test]
    fn variants() {
        let dirs =
            |k: &str| -> Vec<String> { default_variants(&mi(k)).iter().map(|s| s.dir()).collect() };
        assert_eq!(dirs("va"), ["tracks-v1a1"]);
        assert_eq!(dirs("v"), ["tracks-v1"]);
        assert_eq!(dirs("aa"), ["tracks-a1", "tracks-a2"]);
        assert_eq!(dirs("vva"), ["tracks-v1a1", "tracks-v2a1"]);
        assert!(dirs("").is_empty());
    }

    #[test]
    fn filtering_keeps_only_the_picked_tracks() {
        let frame = |track: u8, seq: u64| Frame {
            track,
            dts: seq,
            pts: seq,
            keyframe: true,
            capture_ms: 0,
            pos: Position { epoch: 0, seq },
            payload: Bytes::from_static(b"x"),
        };
        let seg = Segment {
            media_info: Arc::new(mi("va")),
            utc_start_ms: 5,
            duration_ms: 2000,
            frames: vec![frame(1, 0), frame(2, 1), frame(1, 2)],
        };
        let v = filter_segment(&seg, &[1]);
        assert_eq!(v.frames.len(), 2);
        assert_eq!(v.media_info.tracks.len(), 1);
        assert_eq!((v.utc_start_ms, v.duration_ms), (5, 2000));
    }

    #[test]
    fn bitrate_figures() {
        assert_eq!(
            bitrates([(250_000, 2000), (500_000, 2000)]),
            (2_000_000, 1_500_000)
        );
        assert_eq!(bitrates([(100, 10)]), (8000, 8000));
        assert_eq!(bitrates(std::iter::empty()), (0, 0));
    }
}
