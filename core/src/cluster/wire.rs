//! Framing of cluster messages on a connection, with a MAC on every message
//! (docs/protocol.md "Framing").
//!
//! Each message is `len: u32 BE` (type + payload bytes), `type: u8`, payload, then a
//! 16-byte tag: HMAC-SHA256 (protocol v1) or keyed BLAKE3 (v2, v3) under the
//! direction's session key over the message's sequence number (u64 BE, counting
//! from 0 on the connection), the length, the type and the payload, truncated to 16
//! bytes. The sequence number is implicit, so a dropped, repeated, reordered,
//! altered or injected message fails its tag and the connection closes.
//!
//! In v3 a segment with a digest goes out as `SegmentByDigest`: its tag covers the
//! length, the type and the segment's header and digest (the payload's first 38
//! bytes), and the receiver checks the digest (BLAKE3) against the rest before the
//! message is released; the sender hashes none of the segment's bytes for the tag
//! (docs/protocol.md "Segments by digest").
//!
//! Owns: byte-level framing in both directions, sans-IO: the encoder returns bytes,
//! the decoder takes whatever bytes arrived and yields whole messages. Must not: do
//! I/O, or act on a message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::bytes_io::DecodeError;
use crate::cluster::auth::MESSAGE_TAG_LEN;
use crate::cluster::message::{self, Message};
use crate::cluster::ProtocolVersion;
use crate::media::MediaInfo;
use crate::segment_codec::{self, DIGESTED_FROM, DIGEST_LEN};

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
    #[error(
        "message {seq}: the segment does not match the digest its MAC covers (altered on \
         the way, or damaged in the peer's store and sent unchecked) — closing the \
         connection"
    )]
    BadDigest { seq: u64 },
    #[error("bad message {seq}: {source}")]
    Decode { seq: u64, source: DecodeError },
}

/// The type a message of `kind` goes out as in `version`, given its payload: a
/// segment with a digest is a `SegmentByDigest` in v3 and later.
fn wire_kind(version: ProtocolVersion, kind: u8, payload: &[u8]) -> u8 {
    if kind == message::kind::SEGMENT
        && version.segments_by_digest()
        && segment_codec::stored_digest(payload).is_some()
    {
        message::kind::SEGMENT_BY_DIGEST
    } else {
        kind
    }
}

/// How many bytes of a message body (type + payload, `len` in all) its tag covers:
/// all of them, but for a `SegmentByDigest` the type, the segment's header and its
/// digest (the digest covers the rest).
fn tagged_len(kind: u8, len: usize) -> usize {
    if kind == message::kind::SEGMENT_BY_DIGEST {
        len.min(1 + DIGESTED_FROM)
    } else {
        len
    }
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
        let kind = wire_kind(self.version, msg.kind(), &out[HEADER_LEN + 1..]);
        out[HEADER_LEN] = kind;
        let len = (out.len() - HEADER_LEN) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let mut t = Tag::start(self.version, &self.key, self.seq, len);
        t.update(&out[HEADER_LEN..HEADER_LEN + tagged_len(kind, len as usize)]);
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
    /// exceeds what a receiver accepts. In v3 a segment with a digest goes out as a
    /// `SegmentByDigest`, tagged over its header and digest only: a receiver
    /// refuses it if the bytes do not match the digest, so a stored segment should
    /// be checked before it is sent (the DVR checks every read).
    pub fn try_encode_raw(&mut self, kind: u8, payload: Bytes) -> Result<[Bytes; 3], WireError> {
        let len = payload.len() + 1;
        if len > MAX_MESSAGE_LEN {
            return Err(WireError::TooLarge { len });
        }
        Ok(self.encode_raw(kind, payload))
    }

    pub fn encode_raw(&mut self, kind: u8, payload: Bytes) -> [Bytes; 3] {
        let len = (payload.len() + 1) as u32;
        let kind = wire_kind(self.version, kind, &payload);
        let mut head = Vec::with_capacity(HEADER_LEN + 1);
        head.put_u32(len);
        head.put_u8(kind);
        let mut t = Tag::start(self.version, &self.key, self.seq, len);
        t.update(&[kind]);
        t.update(&payload[..tagged_len(kind, len as usize) - 1]);
        self.seq += 1;
        [
            Bytes::from(head),
            payload,
            Bytes::copy_from_slice(&t.finish()),
        ]
    }
}

/// What is hashed of the message at the head of a decoder's buffer.
struct Partial {
    /// Its tag, over the body bytes it covers (`tagged_len`).
    tag: Tag,
    /// A `SegmentByDigest`'s digest, over the body bytes after those.
    /// Boxed: a BLAKE3 hasher carries a stack of chaining values (about 1.9 KB).
    digest: Option<Box<blake3::Hasher>>,
    /// Body bytes hashed (by one or the other).
    hashed: usize,
}

/// Reassembles and authenticates incoming messages of one direction. Remembers the
/// latest media info so frames can be decoded against it.
///
/// The tag of a long message (and the digest of a `SegmentByDigest`) is computed
/// as its bytes arrive, so that checking it when the last byte is in costs little
/// (a 10 MB archive segment is not hashed in one go after the transfer); nothing of
/// a message is released before its tag (and digest) check.
pub struct Decoder {
    version: ProtocolVersion,
    key: [u8; 32],
    seq: u64,
    buf: BytesMut,
    /// The message at the head of `buf`, hashed so far.
    partial: Option<Partial>,
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
        if self.buf.len() < HEADER_LEN + 1 {
            return Ok(None);
        }
        let total = HEADER_LEN + len + MESSAGE_TAG_LEN;
        let seq = self.seq;
        let kind = self.buf[HEADER_LEN];
        let by_digest = kind == message::kind::SEGMENT_BY_DIGEST;
        if by_digest && !self.version.segments_by_digest() {
            return Err(WireError::Decode {
                seq,
                source: DecodeError::Invalid {
                    what: "message",
                    detail: format!("SegmentByDigest on a {} connection", self.version),
                },
            });
        }
        if by_digest && len < 1 + DIGESTED_FROM {
            return Err(WireError::Decode {
                seq,
                source: DecodeError::Truncated {
                    what: "SegmentByDigest header",
                    needed: 1 + DIGESTED_FROM - len,
                },
            });
        }
        let covered = tagged_len(kind, len);
        let mut p = self.partial.take().unwrap_or_else(|| Partial {
            tag: Tag::start(self.version, &self.key, seq, len as u32),
            digest: by_digest.then(|| Box::new(blake3::Hasher::new())),
            hashed: 0,
        });
        let arrived = self.buf.len().min(HEADER_LEN + len) - HEADER_LEN;
        if arrived > p.hashed {
            let body = &self.buf[HEADER_LEN..HEADER_LEN + arrived];
            if p.hashed < covered {
                p.tag.update(&body[p.hashed..arrived.min(covered)]);
            }
            if let Some(d) = &mut p.digest {
                if arrived > covered {
                    d.update(&body[p.hashed.max(covered)..]);
                }
            }
            p.hashed = arrived;
        }
        if self.buf.len() < total {
            self.partial = Some(p);
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(HEADER_LEN);
        let body = frame.split_to(len).freeze();
        if !p.tag.verify(&frame) {
            return Err(WireError::BadTag { seq });
        }
        self.seq += 1;
        let msg = match p.digest {
            Some(d) => {
                let computed: [u8; DIGEST_LEN] = *d.finalize().as_bytes();
                match segment_codec::decode_with_digest(body.slice(1..), &computed) {
                    Ok(seg) => Message::Segment(seg),
                    Err(DecodeError::Damaged { .. }) => return Err(WireError::BadDigest { seq }),
                    Err(source) => return Err(WireError::Decode { seq, source }),
                }
            }
            None => Message::decode(kind, body.slice(1..), self.media_info.as_deref())
                .map_err(|source| WireError::Decode { seq, source })?,
        };
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
