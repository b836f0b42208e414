//! Player outputs, each muxed from the hub's frames or segments by tern-core.

pub mod archive;
pub mod hls;
pub mod mpegts;
pub mod ts_writer;
