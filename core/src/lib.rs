//! # tern-core
//!
//! The pure heart of Tern: the media model, the `fake://` source, the segmenter, the
//! muxers (MPEG-TS, HLS playlists), the config language, and (in later issues) the wire
//! codecs and protocol state machines.
//!
//! ## Contract
//!
//! Nothing in this crate touches a socket, a file, a thread or a clock, and nothing
//! depends on tokio. Time is always an input: a monotonic `now` (a `Duration` since the
//! node started, given by the driver) and, where the wall clock matters (capture times,
//! UTC in playlists), an explicit [`media::UtcMs`].
//!
//! State machines follow the quinn-proto / str0m shape: the driver feeds events in
//! (`handle_*(now, ...)`) and drains outputs (`poll_*()` until `None`) after every
//! input. Bad input from a peer becomes an error value, never a panic.
//!
//! Determinism: no `HashMap` iteration, no randomness except from a seed the caller
//! passes, no reading of real time — enforced by `clippy.toml`.

pub mod api_auth;
pub mod archive_route;
pub mod archive_window;
pub mod bytes_io;
pub mod capture_clock;
pub mod cluster;
pub mod codec_info;
pub mod config;
pub mod demand;
pub mod dvr;
pub mod failover;
pub mod fake;
pub mod frame_sanity;
pub mod gop;
pub mod http_manners;
pub mod ingest;
pub mod keyframe;
pub mod limits;
pub mod log_limit;
pub mod media;
pub mod metrics;
pub mod mux;
pub mod play_url;
pub mod rate;
pub mod rebase;
pub mod rtp_ingest;
pub mod segment;
pub mod segment_codec;
pub mod segmenter;
pub mod stream_name;
pub mod stream_status;
pub mod timeline;
pub mod track_select;

pub use media::{CodecName, Frame, MediaInfo, Position, TrackInfo, TrackKind, TrackParams, UtcMs};
pub use segment::Segment;
pub use stream_name::StreamName;
