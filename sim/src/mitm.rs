//! A man in the middle for the tampering scenario. turmoil 0.7 lets a test look at
//! the segments in flight (`Sim::links`) but not change them, so tampering is done by
//! a tiny TCP proxy host: the edge's `source` points at it, it forwards every
//! connection to the real upstream byte for byte, and once — in the first response
//! body that has carried at least `flip_after` bytes — it flips one bit of a message
//! in the middle: byte [`FLIP_OFFSET`] of the first HTTP chunk of at least
//! [`FLIP_MIN_CHUNK`] bytes (the cluster server writes one message per chunk, so
//! this lands inside a video frame's payload, past the framing header, and the
//! message's MAC must fail).
//!
//! Owns: the proxy host and its record of what it flipped. Must not: parse or
//! re-encode cluster messages (it only follows HTTP/1.1 chunked framing so that it
//! alters a message, not the chunk framing around it), or alter anything twice.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, Instrument};

use crate::sim_ms;
use tern_net::{Net as _, TurmoilNet};

/// Offset, within a chunk's data, of the byte flipped.
pub const FLIP_OFFSET: u64 = 100;
/// Only a chunk at least this long is altered (a video frame, not a heartbeat).
pub const FLIP_MIN_CHUNK: u64 = 1024;

/// What the proxy did.
#[derive(Clone, Debug, Default)]
pub struct MitmLog {
    pub connections: u32,
    pub flipped: Option<Flip>,
}

/// The one alteration.
#[derive(Clone, Debug)]
pub struct Flip {
    pub at_ms: u64,
    /// The proxied connection (1-based, in accept order).
    pub conn: u32,
    /// Index of the chunk — the message's sequence number on its connection (0 is
    /// `Hello`).
    pub message: u64,
    /// Response bytes forwarded on that connection before the flipped one.
    pub stream_offset: u64,
}

/// The shared record of a proxy host.
#[derive(Clone, Default)]
pub struct Mitm(Arc<Mutex<MitmLog>>);

impl Mitm {
    pub fn log(&self) -> MutexGuard<'_, MitmLog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds host `name` listening on `port` and forwarding to `upstream:upstream_port`.
#[allow(clippy::disallowed_methods)] // sim harness: one task per proxied connection
pub fn add_tamper_proxy(
    sim: &mut turmoil::Sim<'_>,
    name: &str,
    port: u16,
    upstream: &str,
    upstream_port: u16,
    flip_after: u64,
) -> Mitm {
    let mitm = Mitm::default();
    let m = mitm.clone();
    let upstream = upstream.to_owned();
    sim.host(name, move || {
        let m = m.clone();
        let upstream = upstream.clone();
        async move {
            let listener = TurmoilNet
                .bind((std::net::Ipv4Addr::UNSPECIFIED, port).into())
                .await?;
            loop {
                let (client, peer) = listener.accept().await?;
                let conn = {
                    let mut log = m.log();
                    log.connections += 1;
                    log.connections
                };
                let m = m.clone();
                let upstream = upstream.clone();
                let span = tracing::info_span!("mitm", conn, %peer);
                tokio::spawn(
                    async move {
                        match TurmoilNet.connect(&upstream, upstream_port).await {
                            Ok(up) => proxy(client, up, conn, flip_after, m).await,
                            Err(e) => info!(error = %e, "upstream unreachable"),
                        }
                    }
                    .instrument(span),
                );
            }
        }
    });
    mitm
}

#[allow(clippy::disallowed_methods)] // sim harness: one task per proxied direction
async fn proxy(
    client: turmoil::net::TcpStream,
    up: turmoil::net::TcpStream,
    conn: u32,
    flip_after: u64,
    m: Mitm,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    // Requests go up untouched.
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    });
    let mut parser = Chunks::default();
    let mut forwarded = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for b in &mut buf[..n] {
            if let Some(message) = parser.push(*b) {
                let mut log = m.log();
                if forwarded >= flip_after && log.flipped.is_none() {
                    *b ^= 0x01;
                    let flip = Flip {
                        at_ms: sim_ms(),
                        conn,
                        message,
                        stream_offset: forwarded,
                    };
                    info!(message, stream_offset = forwarded, "flipped one bit");
                    log.flipped = Some(flip);
                }
            }
            forwarded += 1;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    upward.abort();
}

/// Follows HTTP/1.1 response framing byte by byte: head, then chunked body.
#[derive(Default)]
struct Chunks {
    state: State,
    head: Vec<u8>,
    size_line: Vec<u8>,
    chunk: u64,
}

#[derive(Default, Clone, Copy)]
enum State {
    #[default]
    Head,
    Size,
    Data {
        len: u64,
        offset: u64,
    },
    /// The CRLF after a chunk's data.
    DataEnd(u8),
    /// Not chunked, or after the last chunk: nothing to follow.
    Opaque,
}

impl Chunks {
    /// Takes the next response byte; `Some(chunk index)` when it is the byte to flip
    /// of a chunk long enough.
    fn push(&mut self, b: u8) -> Option<u64> {
        match self.state {
            State::Head => {
                self.head.push(b);
                if self.head.ends_with(b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
                    self.state = if head.contains("transfer-encoding: chunked") {
                        State::Size
                    } else {
                        State::Opaque
                    };
                    self.head.clear();
                }
                None
            }
            State::Size => {
                self.size_line.push(b);
                if self.size_line.ends_with(b"\r\n") {
                    let line = String::from_utf8_lossy(&self.size_line).into_owned();
                    let hex = line.trim().split(';').next().unwrap_or("");
                    self.size_line.clear();
                    self.state = match u64::from_str_radix(hex, 16) {
                        Ok(0) | Err(_) => State::Opaque,
                        Ok(len) => State::Data { len, offset: 0 },
                    };
                }
                None
            }
            State::Data { len, offset } => {
                let hit = len >= FLIP_MIN_CHUNK && offset == FLIP_OFFSET;
                let index = self.chunk;
                self.state = if offset + 1 == len {
                    self.chunk += 1;
                    State::DataEnd(2)
                } else {
                    State::Data {
                        len,
                        offset: offset + 1,
                    }
                };
                hit.then_some(index)
            }
            State::DataEnd(left) => {
                self.state = if left <= 1 {
                    State::Size
                } else {
                    State::DataEnd(left - 1)
                };
                None
            }
            State::Opaque => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_byte_inside_a_long_chunk_only() {
        let mut bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(b"3\r\nabc\r\n");
        let long = vec![7u8; 2000];
        bytes.extend_from_slice(format!("{:x}\r\n", long.len()).as_bytes());
        let data_start = bytes.len();
        bytes.extend_from_slice(&long);
        bytes.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut p = Chunks::default();
        let hits: Vec<(usize, u64)> = bytes
            .iter()
            .enumerate()
            .filter_map(|(i, b)| p.push(*b).map(|c| (i, c)))
            .collect();
        assert_eq!(hits, vec![(data_start + FLIP_OFFSET as usize, 1)]);
    }

    #[test]
    fn a_plain_response_is_left_alone() {
        let bytes = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2000\r\n\r\n".to_vec();
        let mut p = Chunks::default();
        let mut all = bytes.clone();
        all.extend(std::iter::repeat_n(1u8, 2000));
        assert!(all.iter().all(|b| p.push(*b).is_none()));
    }
}
