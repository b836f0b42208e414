//! The RTMP chunk stream: messages cut into chunks of at most the sender's chunk
//! size, interleaved over chunk stream ids, with compressed headers.
//!
//! Owns: reading chunks back into messages (per chunk stream state, extended
//! timestamps, the peer's chunk size) within caps — a chunk size, a message size
//! and a number of chunk streams, with partial messages growing only as their bytes
//! arrive — and writing Tern's own messages. Must not: interpret messages (the
//! session does) or do I/O.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// Chunk streams a peer may use at once (2 for control, a few for commands,
/// audio and video: encoders use fewer than 10).
pub const MAX_CHUNK_STREAMS: usize = 64;

/// One RTMP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub type_id: u8,
    /// The message stream (0: the connection, then the ids of `createStream`).
    pub stream_id: u32,
    /// Milliseconds, as sent (it wraps at 2^32).
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("a message of {len} bytes is over the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    #[error("chunk stream {0} continues a message it never started")]
    NoPreviousHeader(u32),
    #[error("bytes of partial messages over the limit of {0}")]
    TooMuchPending(usize),
}

#[derive(Clone, Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// The last header had an extended timestamp (then type 3 chunks carry it too).
    extended: bool,
    partial: Vec<u8>,
}

/// Reads messages out of chunks.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: usize,
    max_message: usize,
    streams: BTreeMap<u32, ChunkStream>,
    pending: usize,
}

impl ChunkReader {
    pub fn new(max_message: usize) -> ChunkReader {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message,
            streams: BTreeMap::new(),
            pending: 0,
        }
    }

    /// The peer's `SetChunkSize` (the session checks its bound).
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size.max(1);
    }

    /// A new message size cap (a publisher, once accepted, gets a larger one).
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    /// The peer's `Abort`: the partial message of `csid` is dropped.
    pub fn abort(&mut self, csid: u32) {
        if let Some(cs) = self.streams.get_mut(&csid) {
            self.pending -= cs.partial.len();
            cs.partial = Vec::new();
        }
    }

    /// Reads one chunk from the front of `buf` if it is all there; returns the
    /// message it completes, if any. `Ok(None)` with `buf` untouched: more bytes are
    /// needed. Call again until it leaves `buf` unchanged.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let b = &buf[..];
        let Some(&b0) = b.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + 256 * u32::from(y), 3),
                _ => return Ok(Step::NeedMore),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = b.get(at..at + header_len) else {
            return Ok(Step::NeedMore);
        };
        at += header_len;
        let u24 = |s: &[u8]| u32::from_be_bytes([0, s[0], s[1], s[2]]);
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(ChunkError::NoPreviousHeader(csid));
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams);
            }
        }
        let prev = self.streams.get(&csid).cloned().unwrap_or_default();
        let mut cs = ChunkStream {
            partial: Vec::new(),
            ..prev
        };
        let starts = prev.partial.is_empty();
        let ts_field = if fmt < 3 { u24(&h[0..3]) } else { 0 };
        if fmt <= 1 {
            cs.length = u24(&h[3..6]) as usize;
            cs.type_id = h[6];
        }
        if fmt == 0 {
            cs.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        let extended = if fmt < 3 {
            ts_field == 0xFF_FFFF
        } else {
            prev.extended
        };
        let mut ext = None;
        if extended {
            let Some(e) = b.get(at..at + 4) else {
                return Ok(Step::NeedMore);
            };
            ext = Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]));
            at += 4;
        }
        if fmt < 3 {
            cs.extended = extended;
            let field = ext.unwrap_or(ts_field);
            if fmt == 0 {
                cs.timestamp = field;
                cs.delta = 0;
            } else {
                cs.delta = field;
                cs.timestamp = prev.timestamp.wrapping_add(field);
            }
        } else if starts {
            // A new message with the previous header: the previous delta again.
            cs.timestamp = prev.timestamp.wrapping_add(prev.delta);
        }
        if cs.length > self.max_message {
            return Err(ChunkError::MessageTooLarge {
                len: cs.length,
                max: self.max_message,
            });
        }
        // A new header in the middle of a message drops the old message.
        let kept = if fmt < 3 { 0 } else { prev.partial.len() };
        let take = cs.length.saturating_sub(kept).min(self.chunk_size);
        if b.len() < at + take {
            return Ok(Step::NeedMore);
        }
        let others = self.pending - prev.partial.len();
        if others + kept + take > self.max_message {
            return Err(ChunkError::TooMuchPending(self.max_message));
        }
        buf.advance(at);
        let data = buf.split_to(take);
        let mut partial = if fmt < 3 { Vec::new() } else { prev.partial };
        partial.extend_from_slice(&data);
        self.pending = others;
        let msg = if partial.len() >= cs.length {
            Some(Message {
                type_id: cs.type_id,
                stream_id: cs.stream_id,
                timestamp: cs.timestamp,
                payload: Bytes::from(partial),
            })
        } else {
            self.pending += partial.len();
            cs.partial = partial;
            None
        };
        self.streams.insert(csid, cs);
        Ok(match msg {
            Some(m) => Step::Message(m),
            None => Step::Chunk,
        })
    }
}

/// What one [`ChunkReader::read`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a whole chunk yet: nothing was taken.
    NeedMore,
    /// A chunk was taken; its message is not complete yet.
    Chunk,
    /// A chunk was taken and completed this message.
    Message(Message),
}

/// Appends `msg` cut into chunks of `chunk_size` on chunk stream `csid` (2..=63):
/// a full header first, type 3 headers after.
pub fn write(out: &mut Vec<u8>, csid: u8, chunk_size: usize, msg: &Message) {
    let csid = csid.clamp(2, 63);
    let len = msg.payload.len().min(0xFF_FFFF);
    let extended = msg.timestamp >= 0xFF_FFFF;
    let ts_field = if extended { 0xFF_FFFF } else { msg.timestamp };
    out.push(csid);
    out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(msg.type_id);
    out.extend_from_slice(&msg.stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&msg.timestamp.to_be_bytes());
    }
    for (i, chunk) in msg.payload[..len].chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
            if extended {
                out.extend_from_slice(&msg.timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(type_id: u8, ts: u32, len: usize) -> Message {
        Message {
            type_id,
            stream_id: 1,
            timestamp: ts,
            payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
    }

    fn read_all(r: &mut ChunkReader, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match r.read(&mut buf)? {
                Step::NeedMore => return Ok(out),
                Step::Chunk => {}
                Step::Message(m) => out.push(m),
            }
        }
    }

    #[test]
    fn written_messages_read_back_at_any_split() {
        let msgs = [
            msg(9, 0, 300),
            msg(8, 23, 10),
            msg(9, 0x0100_0000, 129),
            msg(9, 40, 0),
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            write(&mut bytes, 6, 128, m);
        }
        // Fed whole, and fed one byte at a time.
        let mut r = ChunkReader::new(1 << 20);
        assert_eq!(read_all(&mut r, &bytes), Ok(msgs.to_vec()));
        let mut r = ChunkReader::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Step::Chunk | Step::Message(_) = {
                let s = r.read(&mut buf).expect("reads");
                if let Step::Message(m) = &s {
                    got.push(m.clone());
                }
                s
            } {}
        }
        assert_eq!(got, msgs.to_vec());
    }

    #[test]
    fn compressed_headers_and_interleaved_chunk_streams() {
        let mut b = Vec::new();
        // csid 4, fmt 0: ts 1000, len 200, video, stream 1; first 128 bytes.
        b.extend_from_slice(&[0x04, 0, 0x03, 0xE8, 0, 0, 200, 9, 1, 0, 0, 0]);
        b.extend_from_slice(&[1u8; 128]);
        // csid 5 (audio) interleaved, fmt 0: ts 1010, 4 bytes.
        b.extend_from_slice(&[0x05, 0, 0x03, 0xF2, 0, 0, 4, 8, 1, 0, 0, 0, 7, 7, 7, 7]);
        // csid 4 continues (fmt 3): the last 72 bytes.
        b.push(0xC4);
        b.extend_from_slice(&[2u8; 72]);
        // csid 5, fmt 2: delta 20; same length and type.
        b.extend_from_slice(&[0x85, 0, 0, 20, 8, 8, 8, 8]);
        // csid 5, fmt 3 new message: delta 20 again.
        b.extend_from_slice(&[0xC5, 9, 9, 9, 9]);
        let mut r = ChunkReader::new(1 << 20);
        let got = read_all(&mut r, &b).expect("reads");
        let seen: Vec<(u8, u32, usize)> = got
            .iter()
            .map(|m| (m.type_id, m.timestamp, m.payload.len()))
            .collect();
        assert_eq!(
            seen,
            [(8, 1010, 4), (9, 1000, 200), (8, 1030, 4), (8, 1050, 4)]
        );
        assert_eq!(&got[1].payload[126..130], &[1, 1, 2, 2]);
        // A larger chunk size from the peer.
        r.set_chunk_size(4096);
        let mut b = Vec::new();
        write(&mut b, 4, 4096, &msg(9, 2000, 3000));
        assert_eq!(read_all(&mut r, &b).map(|v| v.len()), Ok(1));
    }

    #[test]
    fn hostile_chunks_are_errors_not_allocations() {
        // A message claiming 16 MiB is refused at its header.
        let mut r = ChunkReader::new(65_536);
        let b = [0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        assert_eq!(
            read_all(&mut r, &b),
            Err(ChunkError::MessageTooLarge {
                len: 0xFF_FFFF,
                max: 65_536
            })
        );
        // A continuation on a chunk stream never opened.
        let mut r = ChunkReader::new(65_536);
        assert_eq!(
            read_all(&mut r, &[0xC7, 1, 2]),
            Err(ChunkError::NoPreviousHeader(7))
        );
        // Partial messages on many chunk streams: bounded in total.
        let mut r = ChunkReader::new(1000);
        let mut b = Vec::new();
        for csid in 3..20u8 {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
            b.extend_from_slice(&[0u8; 128]);
        }
        assert_eq!(read_all(&mut r, &b), Err(ChunkError::TooMuchPending(1000)));
        // Too many chunk streams.
        let mut r = ChunkReader::new(1 << 20);
        let mut b = Vec::new();
        for i in 0..=MAX_CHUNK_STREAMS as u32 {
            let id = i + 64;
            b.extend_from_slice(&[1, (id - 64) as u8, ((id - 64) >> 8) as u8]);
            b.extend_from_slice(&[0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0]);
        }
        assert_eq!(read_all(&mut r, &b), Err(ChunkError::TooManyChunkStreams));
    }
}
