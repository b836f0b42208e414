//! The messages of Tern's cluster protocols (signaling, M4S, M4F) and their payload
//! encodings. docs/protocol.md is the reference; golden bytes are pinned below.
//!
//! Owns: message types and payload layouts. Must not: frame, authenticate or decide
//! what to send (wire.rs frames, the sessions decide).

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::bytes_io::{put_bytes16, DecodeError, Reader};
use crate::cluster::ProtocolVersion;
use crate::media::{MediaInfo, UtcMs};
use crate::segment_codec::{
    decode_frame, decode_media_info, encode_frame, encode_media_info, CodecSet,
};
use crate::{segment_codec, Frame, Segment, StreamName};

/// Streams listed in one `Streams` message.
pub const MAX_STREAMS: usize = 10_000;
/// DVR ranges listed per stream.
pub const MAX_RANGES: usize = 10_000;

/// What a node says about one of its streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAnnounce {
    pub name: StreamName,
    /// Frames are arriving now.
    pub alive: bool,
    /// The sender's segment duration, so a receiver cuts the same segments from the
    /// same frames.
    pub segment_duration_ms: u32,
    /// `None` until the stream has produced its first frame.
    pub media_info: Option<MediaInfo>,
    /// `Some` if the node records the stream.
    pub dvr: Option<DvrFacts>,
}

/// What a node records of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DvrFacts {
    /// Configured depth in seconds (0: unlimited).
    pub depth_secs: u64,
    /// Recorded ranges, oldest first: (UTC start ms, duration ms).
    pub ranges: Vec<(UtcMs, u64)>,
}

/// A stored segment as an archive index lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub utc_start_ms: UtcMs,
    pub duration_ms: u32,
    /// The source restarted or frames are missing before this segment.
    pub discontinuity: bool,
}

/// Segments listed in one `DvrIndex` message.
pub const MAX_ARCHIVE_ENTRIES: usize = 200_000;

/// One message of a cluster connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// First message of every response: the protocol version and the sender's name.
    Hello { version: u16, node: String },
    /// Signaling: the full list of the sender's streams, sent at the start and on
    /// every change.
    Streams(Vec<StreamAnnounce>),
    /// The stream's tracks; precedes any frame or segment, and again on a change.
    MediaInfo(Arc<MediaInfo>),
    /// M4S: one frame.
    Frame(Frame),
    /// M4F: one closed segment (the canonical segment encoding).
    Segment(Segment),
    /// Nothing to send for a while; the sender's wall clock, for the delay figure.
    Heartbeat { utc_ms: UtcMs },
    /// The sender ends the response on purpose (stream removed, node stopping).
    End { reason: String },
    /// M4F archive: every segment of the requested range was sent.
    ArchiveEnd { segments: u32 },
    /// The archive facts of a stream and the stored segments of a requested window.
    DvrIndex {
        facts: DvrFacts,
        entries: Vec<ArchiveEntry>,
    },
}

/// Message type bytes on the wire.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const STREAMS: u8 = 2;
    pub const MEDIA_INFO: u8 = 3;
    pub const FRAME: u8 = 4;
    pub const SEGMENT: u8 = 5;
    pub const HEARTBEAT: u8 = 6;
    pub const END: u8 = 7;
    pub const ARCHIVE_END: u8 = 8;
    pub const DVR_INDEX: u8 = 9;
    /// Protocol v3 and later: a [`SEGMENT`] whose payload is a segment encoding with a
    /// digest (version 2), tagged over its first
    /// [`DIGESTED_FROM`](crate::segment_codec::DIGESTED_FROM) payload bytes only;
    /// the receiver checks the digest against the rest (docs/protocol.md
    /// "Segments by digest"). Decodes to [`Message::Segment`](super::Message::Segment).
    pub const SEGMENT_BY_DIGEST: u8 = 10;
}

impl Message {
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => kind::HELLO,
            Message::Streams(_) => kind::STREAMS,
            Message::MediaInfo(_) => kind::MEDIA_INFO,
            Message::Frame(_) => kind::FRAME,
            Message::Segment(_) => kind::SEGMENT,
            Message::Heartbeat { .. } => kind::HEARTBEAT,
            Message::End { .. } => kind::END,
            Message::ArchiveEnd { .. } => kind::ARCHIVE_END,
            Message::DvrIndex { .. } => kind::DVR_INDEX,
        }
    }

    /// The message type's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Streams(_) => "Streams",
            Message::MediaInfo(_) => "MediaInfo",
            Message::Frame(_) => "Frame",
            Message::Segment(_) => "Segment",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::End { .. } => "End",
            Message::ArchiveEnd { .. } => "ArchiveEnd",
            Message::DvrIndex { .. } => "DvrIndex",
        }
    }

    /// About how many bytes the payload takes (to size buffers once).
    pub fn size_hint(&self) -> usize {
        match self {
            Message::Frame(f) => segment_codec::FRAME_HEADER_LEN + f.payload.len(),
            Message::Segment(s) => segment_codec::encoded_len_hint(s),
            _ => 256,
        }
    }

    /// Appends the payload (without type or framing) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello { version, node } => {
                out.put_u16(*version);
                put_bytes16(out, node.as_bytes());
            }
            Message::Streams(list) => {
                out.put_u32(list.len() as u32);
                for s in list {
                    put_bytes16(out, s.name.as_str().as_bytes());
                    let flags = (s.alive as u8)
                        | ((s.media_info.is_some() as u8) << 1)
                        | ((s.dvr.is_some() as u8) << 2);
                    out.put_u8(flags);
                    out.put_u32(s.segment_duration_ms);
                    if let Some(mi) = &s.media_info {
                        encode_media_info(mi, out);
                    }
                    if let Some(d) = &s.dvr {
                        encode_facts(d, out);
                    }
                }
            }
            Message::MediaInfo(mi) => encode_media_info(mi, out),
            Message::Frame(f) => encode_frame(f, out),
            Message::Segment(s) => segment_codec::encode_into(s, out),
            Message::Heartbeat { utc_ms } => out.put_u64(*utc_ms),
            Message::End { reason } => put_bytes16(out, reason.as_bytes()),
            Message::ArchiveEnd { segments } => out.put_u32(*segments),
            Message::DvrIndex { facts, entries } => {
                encode_facts(facts, out);
                out.put_u32(entries.len() as u32);
                for e in entries {
                    out.put_u64(e.utc_start_ms);
                    out.put_u32(e.duration_ms);
                    out.put_u8(e.discontinuity as u8);
                }
            }
        }
    }

    /// Decodes a payload of type `kind`. Frames need the media info that preceded
    /// them on the connection (`None`: a frame is an error).
    pub fn decode(
        kind: u8,
        payload: Bytes,
        media_info: Option<&MediaInfo>,
    ) -> Result<Message, DecodeError> {
        let mut r = Reader::new(payload);
        let msg = match kind {
            kind::HELLO => {
                let version = r.u16("hello version")?;
                if ProtocolVersion::from_number(version).is_none() {
                    return Err(DecodeError::UnsupportedVersion {
                        what: "Tern cluster protocol",
                        found: version.min(255) as u8,
                        supported: ProtocolVersion::LATEST.number() as u8,
                    });
                }
                let node = utf8(r.bytes16("node name")?, "node name")?;
                Message::Hello { version, node }
            }
            kind::STREAMS => {
                let n = r.u32("stream count")? as usize;
                if n > MAX_STREAMS {
                    return Err(DecodeError::TooLarge {
                        what: "stream list",
                        len: n,
                        limit: MAX_STREAMS,
                    });
                }
                let mut list = Vec::with_capacity(n.min(r.remaining() / 3));
                for _ in 0..n {
                    let name = utf8(r.bytes16("stream name")?, "stream name")?;
                    let name = StreamName::new(&name).map_err(|e| DecodeError::Invalid {
                        what: "stream name",
                        detail: e.to_string(),
                    })?;
                    let flags = r.u8("stream flags")?;
                    let segment_duration_ms = r.u32("segment duration")?;
                    let media_info = if flags & 2 != 0 {
                        Some(decode_media_info(&mut r, CodecSet::All)?)
                    } else {
                        None
                    };
                    let dvr = if flags & 4 != 0 {
                        Some(decode_facts(&mut r)?)
                    } else {
                        None
                    };
                    list.push(StreamAnnounce {
                        name,
                        alive: flags & 1 != 0,
                        segment_duration_ms,
                        media_info,
                        dvr,
                    });
                }
                Message::Streams(list)
            }
            kind::MEDIA_INFO => {
                Message::MediaInfo(Arc::new(decode_media_info(&mut r, CodecSet::All)?))
            }
            kind::FRAME => {
                let mi = media_info.ok_or(DecodeError::Invalid {
                    what: "frame",
                    detail: "frame before any media info".into(),
                })?;
                Message::Frame(decode_frame(&mut r, mi)?)
            }
            kind::SEGMENT => {
                let rest = r.bytes(r.remaining(), "segment")?;
                return Ok(Message::Segment(segment_codec::decode(rest)?));
            }
            kind::SEGMENT_BY_DIGEST => {
                let rest = r.bytes(r.remaining(), "segment")?;
                if segment_codec::stored_digest(&rest).is_none() {
                    return Err(DecodeError::Invalid {
                        what: "SegmentByDigest",
                        detail: "the segment has no digest".into(),
                    });
                }
                return Ok(Message::Segment(segment_codec::decode(rest)?));
            }
            kind::HEARTBEAT => Message::Heartbeat {
                utc_ms: r.u64("heartbeat time")?,
            },
            kind::END => Message::End {
                reason: utf8(r.bytes16("end reason")?, "end reason")?,
            },
            kind::ARCHIVE_END => Message::ArchiveEnd {
                segments: r.u32("archive segment count")?,
            },
            kind::DVR_INDEX => {
                let facts = decode_facts(&mut r)?;
                let n = r.u32("archive entry count")? as usize;
                if n > MAX_ARCHIVE_ENTRIES {
                    return Err(DecodeError::TooLarge {
                        what: "archive index",
                        len: n,
                        limit: MAX_ARCHIVE_ENTRIES,
                    });
                }
                let mut entries = Vec::with_capacity(n.min(r.remaining() / 13));
                for _ in 0..n {
                    entries.push(ArchiveEntry {
                        utc_start_ms: r.u64("entry start")?,
                        duration_ms: r.u32("entry duration")?,
                        discontinuity: r.u8("entry flags")? & 1 != 0,
                    });
                }
                Message::DvrIndex { facts, entries }
            }
            other => {
                return Err(DecodeError::Invalid {
                    what: "message",
                    detail: format!("unknown message type {other}"),
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

fn encode_facts(d: &DvrFacts, out: &mut Vec<u8>) {
    out.put_u64(d.depth_secs);
    out.put_u32(d.ranges.len() as u32);
    for (from, dur) in &d.ranges {
        out.put_u64(*from);
        out.put_u64(*dur);
    }
}

fn decode_facts(r: &mut Reader) -> Result<DvrFacts, DecodeError> {
    let depth_secs = r.u64("dvr depth")?;
    let count = r.u32("dvr range count")? as usize;
    if count > MAX_RANGES {
        return Err(DecodeError::TooLarge {
            what: "dvr ranges",
            len: count,
            limit: MAX_RANGES,
        });
    }
    let mut ranges = Vec::with_capacity(count.min(r.remaining() / 16));
    for _ in 0..count {
        ranges.push((r.u64("range start")?, r.u64("range duration")?));
    }
    Ok(DvrFacts { depth_secs, ranges })
}

fn utf8(b: Bytes, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid {
        what,
        detail: "not UTF-8".into(),
    })
}
