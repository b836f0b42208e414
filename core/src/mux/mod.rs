//! Muxers: MPEG-TS for HLS segments and the continuous `/NAME/mpegts` output (muxed
//! once per stream, [`live_ts`]), HLS playlists, and the small pieces they share
//! (CRC-32, ADTS).
//!
//! Owns: turning frames into container bytes and segment lists into playlist text.
//! Must not: decide segment boundaries (the segmenter does) or do I/O.

pub mod adts;
pub mod crc32;
pub mod hls;
pub mod hls_master;
pub mod live_ts;
pub mod ts;

use bytes::Bytes;

use crate::Segment;

/// Muxes one closed segment into a self-contained MPEG-TS file for HLS. See
/// [`ts::mux_segment`] for the continuity-counter rule that lets segments follow one
/// another without a continuity error.
pub fn mux_segment(segment: &Segment) -> Bytes {
    Bytes::from(ts::mux_segment(segment))
}
