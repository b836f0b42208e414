//! Cluster protocols (docs/design.md §5, docs/protocol.md): auth, messages, framing, and
//! the pure session logic (resume, dead-peer detection, backoff) the node's drivers
//! run.
//!
//! Owns: everything about talking to another Tern node except the sockets. Must not:
//! do I/O or read a clock.

pub mod auth;
pub mod backoff;
pub mod message;
pub mod receiver;
pub mod wire;

/// URL prefix of the cluster endpoints; the version is part of the path.
pub const PATH_PREFIX: &str = "/tern/v1/";
