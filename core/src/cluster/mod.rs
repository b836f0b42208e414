//! Cluster protocols (docs/design.md §5, docs/protocol.md): auth, messages, framing, and
//! the pure session logic (the client's handshake and version negotiation, resume,
//! dead-peer detection, backoff) the node's drivers run.
//!
//! Owns: everything about talking to another Tern node except the sockets. Must not:
//! do I/O or read a clock.

pub mod accept;
pub mod archive_sender;
pub mod auth;
pub mod backoff;
pub mod discovery;
pub mod handshake;
pub mod message;
pub mod pull;
pub mod receiver;
pub mod sender;
pub mod version;
pub mod wire;

pub use version::ProtocolVersion;

/// URL prefix of the cluster endpoints in protocol v1; the version is part of the
/// path. Callers name endpoints with it; the client sends them under the version the
/// peer speaks ([`ProtocolVersion::path_prefix`]).
pub const PATH_PREFIX: &str = "/tern/v1/";
