//! Framing of cluster messages on a connection, with a MAC on every message
//! (docs/protocol.md "Framing").
//!
//! Each message is `len: u32 BE` (type + payload bytes), `type: u8`, payload, then a
//! 16-byte tag: HMAC-SHA256 (protocol v1) or keyed BLAKE3 (v2) under the direction's
//! session key over the message's sequence number (u64 BE, counting from 0 on the connection), the length, the type
//! and the payload, truncated to 16 bytes. The sequence number is implicit, so a
//! dropped, repeated, reordered, altered or injected message fails its tag and the
//! connection closes.
//!
//! Owns: byte-level framing in both directions, sans-IO: the encoder returns bytes,
//! the decoder takes whatever bytes arrived and yields whole messages. Must not: do
//! I/O, or act on a message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::bytes_io::DecodeError;
use crate::cluster::auth::MESSAGE_TAG_LEN;
use crate::cluster::message::Message;
use crate::cluster::ProtocolVersion;
use crate::media::MediaInfo;

mod tag;
use tag::Tag;

/// The largest message (type + payload) either side accepts: a segment of a few
/// seconds of high-bitrate video fits; anything larger is refused before it is
/// buffered.
pub const MAX_MESSAGE_LEN: usize = 64 << 20;
const HEADER_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}")]
    TooLarge { len: usize },
    #[error("empty message (no type byte)")]
    Empty,
    #[error(
        "message {seq} failed its MAC: altered, injected or out of order — closing the connection"
    )]
    BadTag { seq: u64 },
    #[error("bad message {seq}: {source}")]
    Decode { seq: u64, source: DecodeError },
}

/// Frames outgoing messages of one direction.
pub struct Encoder {
    version: ProtocolVersion,
    key: [u8; 32],
    seq: u64,
}

impl Encoder {
    /// Frames under `key` with the message MAC of protocol `version`.
    pub fn new(version: ProtocolVersion, key: [u8; 32]) -> Self {
        Self {
            version,
            key,
            seq: 0,
        }
    }

    /// The framed bytes of `msg`, or `TooLarge` (and nothing counted: the next
    /// message takes this one's sequence number) if it exceeds what a receiver
    /// accepts.
    pub fn try_encode(&mut self, msg: &Message) -> Result<Bytes, WireError> {
        let bytes = self.encode(msg);
        let len = bytes.len() - HEADER_LEN - MESSAGE_TAG_LEN;
        if len > MAX_MESSAGE_LEN {
            self.seq -= 1;
            return Err(WireError::TooLarge { len });
        }
        Ok(bytes)
    }

    /// The framed bytes of `msg`.
    pub fn encode(&mut self, msg: &Message) -> Bytes {
        let mut out = Vec::with_capacity(HEADER_LEN + 1 + msg.size_hint() + MESSAGE_TAG_LEN);
        out.put_u32(0);
        out.put_u8(msg.kind());
        msg.encode_payload(&mut out);
        let len = (out.len() - HEADER_LEN) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let mut t = Tag::start(self.version, &self.key, self.seq, len);
        t.update(&out[HEADER_LEN..]);
        out.extend_from_slice(&t.finish());
        self.seq += 1;
        Bytes::from(out)
    }
}

impl Encoder {
    /// Frames a payload that is already encoded (a stored segment for
    /// [`kind::SEGMENT`](crate::cluster::message::kind::SEGMENT)) without copying
    /// it: the header, the payload itself and the tag, to be sent in this order.
    /// [`Encoder::encode_raw`], or `TooLarge` (nothing counted) if the message
    /// exceeds what a receiver accepts.
    pub fn try_encode_raw(&mut self, kind: u8, payload: Bytes) -> Result<[Bytes; 3], WireError> {
        let len = payload.len() + 1;
        if len > MAX_MESSAGE_LEN {
            return Err(WireError::TooLarge { len });
        }
        Ok(self.encode_raw(kind, payload))
    }

    pub fn encode_raw(&mut self, kind: u8, payload: Bytes) -> [Bytes; 3] {
        let len = (payload.len() + 1) as u32;
        let mut head = Vec::with_capacity(HEADER_LEN + 1);
        head.put_u32(len);
        head.put_u8(kind);
        let mut t = Tag::start(self.version, &self.key, self.seq, len);
        t.update(&[kind]);
        t.update(&payload);
        self.seq += 1;
        [
            Bytes::from(head),
            payload,
            Bytes::copy_from_slice(&t.finish()),
        ]
    }
}

/// Reassembles and authenticates incoming messages of one direction. Remembers the
/// latest media info so frames can be decoded against it.
///
/// The tag of a long message is computed as its bytes arrive, so that checking it
/// when the last byte is in costs little (a 10 MB archive segment is not hashed in
/// one go after the transfer); nothing of a message is released before its tag
/// checks.
pub struct Decoder {
    version: ProtocolVersion,
    key: [u8; 32],
    seq: u64,
    buf: BytesMut,
    /// The tag of the message at the head of `buf`, over its first `hashed` body
    /// bytes.
    partial: Option<(Tag, usize)>,
    media_info: Option<std::sync::Arc<MediaInfo>>,
    failed: bool,
}

impl Decoder {
    /// Checks messages framed under `key` with the message MAC of protocol `version`;
    /// a `Hello` must name that version.
    pub fn new(version: ProtocolVersion, key: [u8; 32]) -> Self {
        Self {
            version,
            key,
            seq: 0,
            buf: BytesMut::new(),
            partial: None,
            media_info: None,
            failed: false,
        }
    }

    /// Bytes received from the peer.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an error
    /// the decoder stays failed: the connection must close.
    pub fn poll_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.failed {
            return Ok(None);
        }
        let r = self.next();
        if r.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
            self.partial = None;
        }
        r
    }

    fn next(&mut self) -> Result<Option<Message>, WireError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE_LEN {
            return Err(WireError::TooLarge { len });
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        let total = HEADER_LEN + len + MESSAGE_TAG_LEN;
        let seq = self.seq;
        let (mut mac, mut hashed) = self
            .partial
            .take()
            .unwrap_or_else(|| (Tag::start(self.version, &self.key, seq, len as u32), 0));
        let arrived = self.buf.len().min(HEADER_LEN + len) - HEADER_LEN;
        if arrived > hashed {
            mac.update(&self.buf[HEADER_LEN + hashed..HEADER_LEN + arrived]);
            hashed = arrived;
        }
        if self.buf.len() < total {
            self.partial = Some((mac, hashed));
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(HEADER_LEN);
        let body = frame.split_to(len).freeze();
        if !mac.verify(&frame) {
            return Err(WireError::BadTag { seq });
        }
        self.seq += 1;
        let kind = body[0];
        let msg = Message::decode(kind, body.slice(1..), self.media_info.as_deref())
            .map_err(|source| WireError::Decode { seq, source })?;
        if let Message::Hello { version, .. } = &msg {
            if *version != self.version.number() {
                return Err(WireError::Decode {
                    seq,
                    source: DecodeError::Invalid {
                        what: "Hello",
                        detail: format!(
                            "version {version} on a connection opened as {}",
                            self.version
                        ),
                    },
                });
            }
        }
        if let Message::MediaInfo(mi) = &msg {
            self.media_info = Some(mi.clone());
        }
        if let Message::Segment(s) = &msg {
            self.media_info = Some(s.media_info.clone());
        }
        Ok(Some(msg))
    }

    /// Bytes buffered waiting for the rest of a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests;
