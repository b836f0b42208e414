//! The sending side of the M4F archive responses, as a pure machine: the range
//! (`m4f-archive`: Hello, the window's segments one by one as they are read, then
//! `ArchiveEnd` with the count or `End` with why the range stopped) and the index
//! (`dvr-index`: Hello, then `DvrIndex` or `End`).
//!
//! The node's driver (`node/src/cluster/server.rs`) reads the archive (one segment in
//! flight: reading runs at the peer's pace), hands each segment and then the
//! reader's result in, and writes out what `poll_transmit` gives: messages to
//! encode, or stored segment bytes to frame as they are (no decode, no copy).
//!
//! Contract (core's, see lib.rs): `handle_*` inputs, `poll_transmit()` drained until
//! `None` after each. No timer: an archive response waits for its reader as long as
//! the connection stays open (the node's stall cut applies to live responses only).
//! Must not: do I/O, read a clock, or hold more than one segment.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::archive_route::{ArchiveError, ArchiveIndex, ArchiveSegment};
use crate::cluster::message::Message;
use crate::cluster::wire::MAX_MESSAGE_LEN;
use crate::cluster::ProtocolVersion;

/// What to send next.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A message to encode.
    Message(Message),
    /// A stored segment's canonical bytes, to send as a `Segment` message as they
    /// are (`Encoder::encode_raw`).
    Stored(Bytes),
}

/// One M4F archive range response.
#[derive(Debug)]
pub struct ArchiveSender {
    queue: VecDeque<Outgoing>,
    skipped: u64,
    finished: bool,
}

impl ArchiveSender {
    /// A response to a peer that asked in `version`; `node` is this node's name.
    pub fn new(version: ProtocolVersion, node: String) -> Self {
        let mut queue = VecDeque::new();
        queue.push_back(Outgoing::Message(Message::Hello {
            version: version.number(),
            node,
        }));
        ArchiveSender {
            queue,
            skipped: 0,
            finished: false,
        }
    }

    /// The next segment of the range, as the archive read it. A stored segment too
    /// large for any receiver (a very long GOP at a high rate) is skipped: the
    /// receiver sees a gap, rather than refusing the connection at every retry.
    pub fn handle_segment(&mut self, segment: ArchiveSegment) {
        if self.finished {
            return;
        }
        match segment {
            ArchiveSegment::Stored(bytes) if bytes.len() + 1 > MAX_MESSAGE_LEN => {
                self.skipped += 1;
            }
            ArchiveSegment::Stored(bytes) => self.queue.push_back(Outgoing::Stored(bytes)),
            ArchiveSegment::Decoded(seg) => self
                .queue
                .push_back(Outgoing::Message(Message::Segment(seg))),
        }
    }

    /// The reader is done: it read `Ok(n)` segments of the window, or stopped. The
    /// response ends here.
    pub fn handle_end(&mut self, result: Result<u32, ArchiveError>) {
        if self.finished {
            return;
        }
        let msg = match result {
            Ok(segments) => Message::ArchiveEnd { segments },
            Err(e) => Message::End {
                reason: e.to_string(),
            },
        };
        self.queue.push_back(Outgoing::Message(msg));
        self.finished = true;
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.queue.pop_front()
    }

    /// Whether the last message is queued (the driver closes once it is sent).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Stored segments skipped as too large for the wire.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// The messages of an M4F index response: Hello, then the window's index or why it
/// cannot be had.
pub fn index_answer(
    version: ProtocolVersion,
    node: String,
    index: Result<ArchiveIndex, ArchiveError>,
) -> [Message; 2] {
    let answer = match index {
        Ok(ix) => Message::DvrIndex {
            facts: ix.facts,
            entries: ix.entries,
        },
        Err(e) => Message::End {
            reason: e.to_string(),
        },
    };
    [
        Message::Hello {
            version: version.number(),
            node,
        },
        answer,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &mut ArchiveSender) -> Vec<String> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|o| match o {
                Outgoing::Message(m) => format!("{}", m.kind()),
                Outgoing::Stored(b) => format!("stored:{}", b.len()),
            })
            .collect()
    }

    #[test]
    fn hello_segments_in_order_then_the_count() {
        let mut s = ArchiveSender::new(ProtocolVersion::V1, "origin".into());
        s.handle_segment(ArchiveSegment::Stored(Bytes::from_static(b"abc")));
        s.handle_segment(ArchiveSegment::Stored(Bytes::from_static(b"defg")));
        let hello = crate::cluster::message::kind::HELLO.to_string();
        assert_eq!(kinds(&mut s), [hello, "stored:3".into(), "stored:4".into()]);
        assert!(!s.is_finished());
        s.handle_end(Ok(2));
        match s.poll_transmit() {
            Some(Outgoing::Message(Message::ArchiveEnd { segments: 2 })) => {}
            other => panic!("{other:?}"),
        }
        assert!(s.is_finished() && s.poll_transmit().is_none());
        // Nothing after the end.
        s.handle_segment(ArchiveSegment::Stored(Bytes::from_static(b"x")));
        s.handle_end(Ok(3));
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn a_reader_that_stops_ends_with_why() {
        let mut s = ArchiveSender::new(ProtocolVersion::V2, "origin".into());
        let _ = kinds(&mut s);
        s.handle_end(Err(ArchiveError::failed("disk", "read error")));
        match s.poll_transmit() {
            Some(Outgoing::Message(Message::End { reason })) => {
                assert!(reason.contains("disk"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_segment_too_large_for_the_wire_is_a_gap() {
        let mut s = ArchiveSender::new(ProtocolVersion::V1, "origin".into());
        let _ = kinds(&mut s);
        s.handle_segment(ArchiveSegment::Stored(Bytes::from(vec![
            0u8;
            MAX_MESSAGE_LEN
        ])));
        s.handle_segment(ArchiveSegment::Stored(Bytes::from(vec![
            0u8;
            MAX_MESSAGE_LEN - 1
        ])));
        assert_eq!(kinds(&mut s), [format!("stored:{}", MAX_MESSAGE_LEN - 1)]);
        assert_eq!(s.skipped(), 1);
    }
}
