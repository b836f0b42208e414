//! The live MPEG-TS of one stream, muxed once for every viewer of `/NAME/mpegts`.
//!
//! Owns: one [`TsMuxer`] per stream, turning each published frame into a [`TsChunk`]
//! that every viewer sends as it is (a `Bytes` handle, never a copy per viewer); the
//! chunks since the latest video keyframe, where a new viewer starts; the discontinuity
//! indicator when the source restarts or frames were missed; and, for each keyframe
//! chunk, the few packets a viewer that skipped ahead sends first so that its player
//! sees a declared discontinuity instead of a continuity error.
//!
//! Must not: know about viewers, channels or sockets (the node fans the chunks out), or
//! decide where segments start.
//!
//! Continuity: a viewer that starts at a keyframe chunk and takes every chunk after it
//! sees each PID's continuity counter run on by one (any first value is fine for a
//! player). A viewer that misses chunks and rejoins at a later keyframe chunk first
//! sends that chunk's [`TsChunk::resync`]: one adaptation-field-only packet per PID with
//! `discontinuity_indicator` set and the counter just before the chunk's own, which is
//! what ISO 13818-1 (and ffmpeg's demuxer) accept as a declared jump.

use bytes::Bytes;

use crate::gop::Gop;
use crate::media::{Frame, MediaInfo, Position};
use crate::mux::ts::{TsMuxer, PACKET_LEN};

/// One frame's worth of live MPEG-TS, shared by every viewer.
#[derive(Clone, Debug)]
pub struct TsChunk {
    /// Whole TS packets: the frame's PES (a video keyframe's chunk starts with PAT
    /// and PMT).
    pub data: Bytes,
    /// A video keyframe's chunk: a viewer may start or resume here.
    pub keyframe: bool,
    /// For a keyframe chunk: what a viewer that skipped chunks sends before `data`
    /// (see the file comment). Empty for other chunks.
    pub resync: Bytes,
}

/// The shared live TS muxer of one stream.
pub struct LiveTs {
    mux: TsMuxer,
    video: Option<u8>,
    /// Chunks since the latest video keyframe (bounded: see [`Gop`]).
    gop: Gop<TsChunk>,
    /// A keyframe has come since the start or the last discontinuity: chunks are
    /// made (what comes before one cannot be decoded).
    started: bool,
    last: Option<Position>,
    /// The next keyframe chunk starts with its resync packets: this muxer replaced
    /// another (new media info) whose counters the viewers had been following.
    declare_first: bool,
}

impl LiveTs {
    /// A muxer for `media_info`, primed with `gop` (the stream's frames since its
    /// latest keyframe, in order) so that a viewer can start at once.
    pub fn new(media_info: &MediaInfo, gop: &[Frame]) -> Self {
        let mut live = LiveTs {
            mux: TsMuxer::new(media_info),
            video: media_info.video().map(|t| t.id),
            gop: Gop::default(),
            started: false,
            last: None,
            declare_first: false,
        };
        for f in gop {
            live.push(f);
        }
        live
    }

    /// A muxer for new media info that takes over from another one mid-response: it
    /// starts at the next keyframe, and that chunk declares the discontinuity on
    /// every PID, so viewers of the old muxer see no continuity error.
    pub fn replacing(media_info: &MediaInfo) -> Self {
        let mut live = LiveTs::new(media_info, &[]);
        live.declare_first = true;
        live.mux.mark_discontinuity();
        live
    }

    /// Muxes the next frame of the stream. Frames before the first video keyframe
    /// (and after a discontinuity, before the next one) give `None`: no viewer could
    /// decode them. So do frames of a track the program does not carry.
    pub fn push(&mut self, frame: &Frame) -> Option<TsChunk> {
        let keyframe = Some(frame.track) == self.video && frame.keyframe;
        if self.last.is_some_and(|p| !p.is_followed_by(frame.pos)) {
            // A source restart or missed frames: timestamps jump, and what follows
            // cannot be decoded before a keyframe.
            self.mux.mark_discontinuity();
            self.gop.clear();
            self.started = false;
        }
        self.last = Some(frame.pos);
        self.started |= keyframe;
        if !self.started {
            return None;
        }
        let resync = if keyframe {
            let mut r = Vec::with_capacity(self.mux.pid_count() * PACKET_LEN);
            self.mux.write_resync(&mut r);
            Bytes::from(r)
        } else {
            Bytes::new()
        };
        // Room for the PES in whole packets, plus the tables before a keyframe.
        let mut data = Vec::with_capacity(
            (frame.payload.len() / (PACKET_LEN - 4) + 4 + 2 * self.mux.pid_count()) * PACKET_LEN,
        );
        if keyframe && std::mem::take(&mut self.declare_first) {
            data.extend_from_slice(&resync);
        }
        if self.mux.write_frame(frame, &mut data) == 0 {
            return None;
        }
        let chunk = TsChunk {
            data: Bytes::from(data),
            keyframe,
            resync,
        };
        self.gop.push(chunk.clone(), chunk.data.len(), keyframe);
        Some(chunk)
    }

    /// Where a new viewer starts: the chunks since the latest keyframe (empty if
    /// there has been none yet, or the GOP outgrew its bound: the viewer then waits
    /// for the next keyframe chunk).
    pub fn gop(&self) -> &[TsChunk] {
        self.gop.items()
    }
}

// Tests: in `ts/tests.rs`, beside the demuxer they check the bytes with.
