//! The receiving side of an M4S or M4F connection, kept across reconnects: checks the
//! handshake, drops duplicates after a resume, starts at a keyframe after a gap, marks
//! discontinuities, and notices a dead peer.
//!
//! Contract (core's, see lib.rs): the driver calls `handle_connected` when a response
//! starts, `handle_message` for each decoded message, `handle_timeout` when
//! `poll_timeout` is reached, `handle_disconnected` when the connection ends; after
//! each call it drains `poll_event` until `None`. Must not: do I/O or read a clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::message::{Message, StreamAnnounce};
use crate::keyframe::{video_track, KeyframeGate};
use crate::media::{MediaInfo, UtcMs};
use crate::{Frame, Position, Segment};

/// The sender sends a heartbeat after this long without another message.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A receiver that hears nothing for this long drops the connection and reconnects.
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the receiver tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The stream's tracks (first, and whenever they change).
    MediaInfo(Arc<MediaInfo>),
    /// A frame to publish. `discontinuity`: frames were missed or the source
    /// restarted before this one.
    Frame { frame: Frame, discontinuity: bool },
    /// A segment to publish (M4F).
    Segment {
        segment: Segment,
        discontinuity: bool,
    },
    /// Signaling: the peer's full stream list.
    Streams(Vec<StreamAnnounce>),
    /// The peer's wall clock from a heartbeat.
    PeerClock(UtcMs),
    /// The peer ended the response on purpose.
    Ended(String),
    /// Nothing heard for the dead-peer timeout: drop the connection and reconnect.
    DeadPeer,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    #[error("the peer's first message was not Hello: it is not a Tern node speaking the cluster protocol (v1 or v2)")]
    NoHello,
    #[error("unexpected {0} message on this connection")]
    Unexpected(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Down,
    AwaitingHello,
    Up,
}

/// What the connection carries: media (M4S / M4F) or the signaling stream list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carries {
    Media,
    Signaling,
}

#[derive(Debug)]
pub struct Receiver {
    carries: Carries,
    conn: Conn,
    /// Last frame (or last frame of the last segment) published.
    last: Option<Position>,
    /// Shut after a gap: publish nothing until a keyframe, then mark a discontinuity.
    gate: KeyframeGate,
    last_heard: Duration,
    dead_after: Duration,
    /// The video track of the latest media info, if any.
    video_track: Option<u8>,
    events: VecDeque<Event>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new(DEAD_PEER_TIMEOUT)
    }
}

impl Receiver {
    pub fn new(dead_after: Duration) -> Self {
        Self::carrying(Carries::Media, dead_after)
    }

    /// The receiving side of a signaling connection: Hello, then stream lists and
    /// heartbeats; the same dead-peer rule as media.
    pub fn signaling() -> Self {
        Self::carrying(Carries::Signaling, DEAD_PEER_TIMEOUT)
    }

    pub fn carrying(carries: Carries, dead_after: Duration) -> Self {
        Self {
            carries,
            conn: Conn::Down,
            last: None,
            gate: KeyframeGate::default(),
            last_heard: Duration::ZERO,
            dead_after,
            video_track: None,
            events: VecDeque::new(),
        }
    }

    /// Where to resume: the position of the last frame published (`from=` query).
    pub fn resume_from(&self) -> Option<Position> {
        self.last
    }

    pub fn handle_connected(&mut self, now: Duration) {
        self.conn = Conn::AwaitingHello;
        self.last_heard = now;
    }

    pub fn handle_disconnected(&mut self) {
        self.conn = Conn::Down;
    }

    /// When `handle_timeout` must be called next, if connected.
    pub fn poll_timeout(&self) -> Option<Duration> {
        (self.conn != Conn::Down).then(|| self.last_heard + self.dead_after)
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if self.conn != Conn::Down && now >= self.last_heard + self.dead_after {
            self.conn = Conn::Down;
            self.events.push_back(Event::DeadPeer);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn handle_message(&mut self, now: Duration, msg: Message) -> Result<(), ReceiverError> {
        self.last_heard = now;
        if self.conn == Conn::AwaitingHello {
            return match msg {
                Message::Hello { .. } => {
                    self.conn = Conn::Up;
                    Ok(())
                }
                _ => Err(ReceiverError::NoHello),
            };
        }
        match (self.carries, msg) {
            (_, Message::Hello { .. }) => return Err(ReceiverError::Unexpected("second Hello")),
            (_, Message::Heartbeat { utc_ms }) => self.events.push_back(Event::PeerClock(utc_ms)),
            (_, Message::End { reason }) => self.events.push_back(Event::Ended(reason)),
            (Carries::Signaling, Message::Streams(list)) => {
                self.events.push_back(Event::Streams(list))
            }
            (Carries::Signaling, m) => return Err(ReceiverError::Unexpected(m.name())),
            (Carries::Media, Message::Streams(_)) => {
                return Err(ReceiverError::Unexpected("Streams"))
            }
            (Carries::Media, Message::ArchiveEnd { .. }) => {
                return Err(ReceiverError::Unexpected("ArchiveEnd"))
            }
            (Carries::Media, Message::DvrIndex { .. }) => {
                return Err(ReceiverError::Unexpected("DvrIndex"))
            }
            (Carries::Media, Message::MediaInfo(mi)) => {
                self.video_track = video_track(&mi);
                self.events.push_back(Event::MediaInfo(mi));
            }
            (Carries::Media, Message::Frame(f)) => self.frame(f),
            (Carries::Media, Message::Segment(s)) => self.segment(s),
        }
        Ok(())
    }

    /// Classifies a position against the last published one.
    fn classify(&self, pos: Position) -> Continuity {
        match self.last {
            None => Continuity::Gap,
            Some(last) if last.epoch == pos.epoch && pos.seq <= last.seq => Continuity::Duplicate,
            Some(last) if last.epoch == pos.epoch && pos.seq == last.seq + 1 => Continuity::Next,
            Some(_) => Continuity::Gap,
        }
    }

    fn frame(&mut self, f: Frame) {
        match self.classify(f.pos) {
            Continuity::Duplicate => return,
            Continuity::Next if !self.gate.is_shut() => {
                self.last = Some(f.pos);
                self.events.push_back(Event::Frame {
                    frame: f,
                    discontinuity: false,
                });
                return;
            }
            _ => self.gate.close(),
        }
        // After a gap, start again at a keyframe of the video track (audio frames
        // are all keyframes; with no video any frame will do).
        if !self.gate.admit(self.video_track, &f) {
            return;
        }
        let discontinuity = self.last.is_some();
        self.last = Some(f.pos);
        self.events.push_back(Event::Frame {
            frame: f,
            discontinuity,
        });
    }

    fn segment(&mut self, s: Segment) {
        let (Some(first), Some(last)) = (s.frames.first(), s.frames.last()) else {
            return;
        };
        if self.classify(last.pos) == Continuity::Duplicate {
            return;
        }
        let discontinuity = self.last.is_some() && self.classify(first.pos) != Continuity::Next;
        self.last = Some(last.pos);
        self.events.push_back(Event::Segment {
            segment: s,
            discontinuity,
        });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Continuity {
    Next,
    Duplicate,
    Gap,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{options::FakeOptions, source::FakeSource};

    fn frames(epoch: u64, n: usize) -> (Arc<MediaInfo>, Vec<Frame>) {
        let mut src = FakeSource::new(&FakeOptions::default(), epoch);
        let mi = Arc::new(src.media_info());
        (
            mi,
            (0..n).map(|i| src.next_frame(1000 + i as u64)).collect(),
        )
    }

    fn connected(mi: &Arc<MediaInfo>) -> Receiver {
        let mut r = Receiver::default();
        r.handle_connected(Duration::ZERO);
        r.handle_message(
            Duration::ZERO,
            Message::Hello {
                version: 1,
                node: "o".into(),
            },
        )
        .expect("hello");
        r.handle_message(Duration::ZERO, Message::MediaInfo(mi.clone()))
            .expect("media info");
        assert!(matches!(r.poll_event(), Some(Event::MediaInfo(_))));
        r
    }

    fn published(r: &mut Receiver) -> Vec<(Position, bool)> {
        let mut out = Vec::new();
        while let Some(e) = r.poll_event() {
            if let Event::Frame {
                frame,
                discontinuity,
            } = e
            {
                out.push((frame.pos, discontinuity));
            }
        }
        out
    }

    #[test]
    fn first_message_must_be_hello() {
        let mut r = Receiver::default();
        r.handle_connected(Duration::ZERO);
        assert_eq!(
            r.handle_message(Duration::ZERO, Message::Heartbeat { utc_ms: 1 }),
            Err(ReceiverError::NoHello)
        );
    }

    #[test]
    fn resume_drops_duplicates_and_gap_waits_for_keyframe() {
        let (mi, fs) = frames(5, 200);
        let mut r = connected(&mi);
        for f in &fs[..60] {
            r.handle_message(Duration::ZERO, Message::Frame(f.clone()))
                .expect("frame");
        }
        let first = published(&mut r);
        assert_eq!(first.len(), 60);
        assert!(first.iter().all(|(_, d)| !d));
        assert_eq!(r.resume_from(), Some(fs[59].pos));

        // Reconnect: the sender repeats some frames, then continues.
        r.handle_disconnected();
        r.handle_connected(Duration::from_secs(1));
        r.handle_message(
            Duration::from_secs(1),
            Message::Hello {
                version: 1,
                node: "o".into(),
            },
        )
        .expect("hello");
        for f in &fs[40..80] {
            r.handle_message(Duration::from_secs(1), Message::Frame(f.clone()))
                .expect("frame");
        }
        let resumed = published(&mut r);
        assert_eq!(resumed.first().map(|p| p.0), Some(fs[60].pos));
        assert_eq!(resumed.len(), 20);
        assert!(resumed.iter().all(|(_, d)| !d));

        // A gap: frames 81.. are missed; publishing restarts at the next video
        // keyframe with a discontinuity.
        for f in &fs[100..200] {
            r.handle_message(Duration::from_secs(2), Message::Frame(f.clone()))
                .expect("frame");
        }
        let after = published(&mut r);
        let key = fs[100..]
            .iter()
            .find(|f| f.keyframe && f.track == crate::fake::source::VIDEO_TRACK)
            .expect("a keyframe within 100 frames");
        assert_eq!(after[0], (key.pos, true));
        assert!(after[1..].iter().all(|(_, d)| !d));
    }

    #[test]
    fn new_epoch_is_a_discontinuity() {
        let (mi, a) = frames(1, 10);
        let (_, b) = frames(2, 10);
        let mut r = connected(&mi);
        for f in a.iter().chain(&b) {
            r.handle_message(Duration::ZERO, Message::Frame(f.clone()))
                .expect("frame");
        }
        let p = published(&mut r);
        assert_eq!(p.len(), 20);
        assert_eq!(p[10], (b[0].pos, true));
    }

    #[test]
    fn silence_is_a_dead_peer() {
        let (mi, _) = frames(1, 1);
        let mut r = connected(&mi);
        assert_eq!(r.poll_timeout(), Some(DEAD_PEER_TIMEOUT));
        r.handle_timeout(DEAD_PEER_TIMEOUT - Duration::from_millis(1));
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(DEAD_PEER_TIMEOUT);
        assert_eq!(r.poll_event(), Some(Event::DeadPeer));
        assert_eq!(r.poll_timeout(), None);
    }
}
