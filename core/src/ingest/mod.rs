//! Ingest: turning what real sources send into Tern's media model — the MPEG-TS
//! demuxer (packets, PSI, PES), access units of H.264, H.265 and AAC, and the
//! [`ts_ingest::TsIngest`] machine the `udp://` and `http://` inputs drive, and RTMP
//! publishing: the [`rtmp`] session and the [`flv::FlvIngest`] conversion.
//!
//! Owns: parsing untrusted source bytes, bounded and panic-free. Must not: do I/O or
//! read clocks (the node's input drivers own sockets and give arrival times).

pub mod adts_frames;
pub mod decode_time;
pub mod flv;
pub mod h26x;
pub mod rtmp;
pub mod ts_demux;
pub mod ts_ingest;
