//! The one keyframe rule and the one keyframe gate: where a decoder can start, and
//! "publish nothing until such a frame" after a gap, a lag skip or a fresh start.
//! The cluster receiver, the M4S sender and the failover inputs all use these.
//!
//! Owns: what counts as a starting frame (a keyframe of the stream's video track;
//! with no video track, any keyframe). Must not: hold frames or know about sockets.

use crate::{Frame, MediaInfo};

/// The video track of `mi`, if it has one: the track whose keyframes start decoding.
pub fn video_track(mi: &MediaInfo) -> Option<u8> {
    mi.video().map(|t| t.id)
}

/// Whether a decoder can start at `frame` in a stream whose video track is `video`
/// (audio frames are all keyframes; with no video any keyframe will do).
pub fn starts_decoding(video: Option<u8>, frame: &Frame) -> bool {
    frame.keyframe && video.is_none_or(|v| v == frame.track)
}

/// Lets frames through only from a starting frame on, once shut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyframeGate {
    shut: bool,
}

impl KeyframeGate {
    /// A gate that lets the first frame through only if it starts decoding.
    pub fn shut() -> Self {
        KeyframeGate { shut: true }
    }

    /// Something was missed: wait for the next starting frame.
    pub fn close(&mut self) {
        self.shut = true;
    }

    pub fn is_shut(&self) -> bool {
        self.shut
    }

    /// Whether `frame` passes; a starting frame opens a shut gate.
    pub fn admit(&mut self, video: Option<u8>, frame: &Frame) -> bool {
        if self.shut && !starts_decoding(video, frame) {
            return false;
        }
        self.shut = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{options::FakeOptions, source::FakeSource, source::VIDEO_TRACK};

    #[test]
    fn shut_gate_opens_only_at_a_video_keyframe() {
        let mut src = FakeSource::new(&FakeOptions::default(), 1);
        let mi = src.media_info();
        let video = video_track(&mi);
        let frames: Vec<Frame> = (0..200).map(|i| src.next_frame(1000 + i)).collect();
        let mut gate = KeyframeGate::shut();
        let passed: Vec<&Frame> = frames
            .iter()
            .skip(3)
            .filter(|f| gate.admit(video, f))
            .collect();
        let first = passed.first().expect("a keyframe within 200 frames");
        assert!(first.keyframe && first.track == VIDEO_TRACK);
        // Once open, everything passes (audio included).
        let start = frames
            .iter()
            .position(|f| f.pos == first.pos)
            .expect("from the list");
        assert_eq!(passed.len(), frames.len() - start);
        // Audio keyframes do not open a gate while the stream has video.
        let audio = frames
            .iter()
            .find(|f| f.track != VIDEO_TRACK)
            .expect("audio");
        let mut g = KeyframeGate::shut();
        assert!(!g.admit(video, audio));
        assert!(g.admit(None, audio), "with no video, any keyframe starts");
        let mut open = KeyframeGate::default();
        assert!(open.admit(video, audio));
    }
}
