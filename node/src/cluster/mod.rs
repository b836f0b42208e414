//! The cluster protocols on this node (docs/design.md §5, docs/protocol.md): the server
//! endpoints other nodes pull from, the signed client that pulls from them, and the
//! `source` task that discovers a peer's streams.
//!
//! Owns: sockets and tasks around tern-core's cluster codecs and session logic. Must
//! not: make protocol decisions core already makes (auth checks, framing, resume).

pub mod client;
pub mod link;
pub mod server;
pub mod source;

/// Content type of cluster responses.
pub const CONTENT_TYPE: &str = "application/x-tern";
