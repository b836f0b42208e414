//! RTMP publishing, sans-IO: the server side of one connection ([`session`]), its
//! chunk stream ([`chunk`]) and command encoding ([`amf0`]), and which stream a
//! publisher names ([`publish`]). The node's `rtmp` listener moves bytes and time in
//! and out; the turmoil simulation can drive the same machine.
//!
//! Written here rather than taken from `rml_rtmp` (docs/architecture.md, "RTMP"):
//! that crate reads the wall clock and the OS's randomness inside its session and
//! handshake, accepts any chunk size a peer sets (up to 2 GiB) with no cap on a
//! message, keeps one partial message for all chunk streams (interleaved audio and
//! video chunks mix), and pulls a second generation of the RustCrypto crates.
//!
//! Owns: the protocol. Must not: do I/O, read clocks, or know Tern's streams (the
//! caller says which names exist).

pub mod amf0;
pub mod chunk;
pub mod publish;
pub mod session;

pub use publish::{resolve, PublishTarget};
pub use session::{RtmpError, RtmpEvent, RtmpLimits, RtmpSession};
