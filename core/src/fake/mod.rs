//! The `fake://` source: real, decodable H.264 (Constrained Baseline, I_PCM + P_Skip)
//! and silent AAC-LC, made without any encoder library, every video frame carrying a
//! barcode with its frame index and capture time (docs/design.md §3, docs/media.md).
//!
//! Owns: the modules below. Must not: read clocks or do I/O; the driver paces
//! [`FakeSource`] with [`FakeSource::next_due`] and passes the wall clock in.
//!
//! - [`options`]: the URL options and their ranges.
//! - [`source`]: the state machine making frames ([`FakeSource`]).
//! - [`h264`]: the H.264 syntax; [`bits`]: bit writer and emulation prevention.
//! - [`picture`]: the static test pattern; [`barcode`]: drawing and reading the barcode.
//! - [`aac`]: the silent AAC frames and AudioSpecificConfig.

pub mod aac;
pub mod barcode;
pub mod bits;
pub mod h264;
pub mod options;
pub mod picture;
pub mod source;

pub use options::FakeOptions;
pub use source::FakeSource;
