//! `Segment`: a run of frames that starts at a video keyframe, with its UTC start and
//! duration (docs/design.md §3). DVR, M4F and HLS share these boundaries.
//!
//! Owns: the segment value. Must not: decide boundaries (that is `segmenter`) or
//! encode bytes (that is `segment_codec`).

use std::sync::Arc;

use crate::media::{Frame, MediaInfo, Position, UtcMs};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The media info in force for every frame of the segment (a change of media info
    /// starts a new segment).
    pub media_info: Arc<MediaInfo>,
    /// Capture time of the first frame (a video keyframe).
    pub utc_start_ms: UtcMs,
    /// Stream-time length: from the first keyframe's DTS to the next segment's first
    /// keyframe, or to the end of the last frame when the segment was cut short.
    pub duration_ms: u32,
    /// Frames of every track in the order they arrived; the first is a video keyframe.
    pub frames: Vec<Frame>,
}

impl Segment {
    /// Position of the first frame; its epoch is the segment's epoch (a source restart
    /// always closes the running segment).
    pub fn first_pos(&self) -> Position {
        self.frames.first().map(|f| f.pos).unwrap_or_default()
    }

    pub fn epoch(&self) -> u64 {
        self.first_pos().epoch
    }

    pub fn end_utc_ms(&self) -> UtcMs {
        self.utc_start_ms + self.duration_ms as u64
    }

    /// Payload bytes of all frames.
    pub fn payload_bytes(&self) -> usize {
        self.frames.iter().map(|f| f.payload.len()).sum()
    }
}
