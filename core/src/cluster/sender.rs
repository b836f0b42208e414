//! The sending side of the live cluster responses, as pure machines: what an M4S
//! (frames), M4F live (segments) and signaling (stream list) response sends, and
//! when. The node's driver (`node/src/cluster/server.rs`) feeds them frames,
//! segments, lag notices and timeouts and writes out what they queue.
//!
//! Contract (core's, see lib.rs): `handle_*(now, ...)` inputs, `poll_transmit()`
//! drained until `None` after each, `poll_timeout()` for the next deadline (the
//! heartbeat, or signaling's next look at the stream list). Must not: do I/O, read a
//! clock or hold more than the messages of one input.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::message::{Message, StreamAnnounce};
use crate::cluster::receiver::HEARTBEAT_INTERVAL;
use crate::cluster::ProtocolVersion;
use crate::keyframe::{starts_decoding, video_track, KeyframeGate};
use crate::media::UtcMs;
use crate::{Frame, MediaInfo, Position, Segment};

/// How often signaling compares the stream list with what it last sent.
pub const SIGNALING_POLL: Duration = Duration::from_millis(200);

/// What a new M4S subscriber gets of the current GOP: resuming after `from`, if the
/// GOP holds `from` or the frame right after it, only the frames after `from` (no
/// gap, no duplicate; none at all when `from` is the latest frame); otherwise the
/// whole GOP (frames were missed: the receiver restarts at its keyframe and marks
/// the jump).
pub fn resume_gop(gop: &[Frame], from: Option<Position>) -> &[Frame] {
    let Some(p) = from else {
        return gop;
    };
    if let Some(i) = gop.iter().position(|f| f.pos == p) {
        return &gop[i + 1..];
    }
    match gop.iter().position(|f| p.is_followed_by(f.pos)) {
        Some(i) => &gop[i..],
        None => gop,
    }
}

/// What a new M4F subscriber gets of the live window (`last_pos` of each segment,
/// oldest first): the indices of the segments after `from`, or just the newest one
/// when there is no `from`.
pub fn resume_segments(
    last_pos: &[Option<Position>],
    from: Option<Position>,
) -> std::ops::Range<usize> {
    match from {
        Some(p) => {
            let start = last_pos
                .iter()
                .position(|l| l.is_some_and(|l| l > p))
                .unwrap_or(last_pos.len());
            start..last_pos.len()
        }
        None => last_pos.len().saturating_sub(1)..last_pos.len(),
    }
}

/// The one heartbeat rule: a live response sends a heartbeat once
/// `HEARTBEAT_INTERVAL` has passed since it last sent anything.
#[derive(Clone, Debug)]
struct Outbox {
    queue: VecDeque<Message>,
    last_sent: Duration,
    finished: bool,
}

impl Outbox {
    fn new(now: Duration, version: ProtocolVersion, node: String) -> Self {
        let mut o = Outbox {
            queue: VecDeque::new(),
            last_sent: now,
            finished: false,
        };
        o.push(
            now,
            Message::Hello {
                version: version.number(),
                node,
            },
        );
        o
    }

    fn push(&mut self, now: Duration, msg: Message) {
        if self.finished {
            return;
        }
        self.last_sent = self.last_sent.max(now);
        self.queue.push_back(msg);
    }

    fn heartbeat_due(&self) -> Duration {
        self.last_sent + HEARTBEAT_INTERVAL
    }

    fn handle_timeout(&mut self, now: Duration, utc_ms: UtcMs) {
        if now >= self.heartbeat_due() {
            self.push(now, Message::Heartbeat { utc_ms });
        }
    }

    fn end(&mut self, now: Duration, reason: &str) {
        self.push(
            now,
            Message::End {
                reason: reason.to_owned(),
            },
        );
        self.finished = true;
    }

    fn poll_timeout(&self) -> Option<Duration> {
        (!self.finished).then(|| self.heartbeat_due())
    }
}

/// An M4S response: Hello, the media info, the (resumed) GOP, then every frame of
/// the stream's tracks — skipping to the next keyframe after a lag, and sending new
/// media info at the keyframe where it takes effect.
#[derive(Clone, Debug)]
pub struct FrameSender {
    out: Outbox,
    mi: Arc<MediaInfo>,
    gate: KeyframeGate,
    /// The stream's latest frame this response has seen (sent or not): a frame
    /// that does not follow it is a discontinuity (a source restart, frames lost
    /// upstream), after which the response restarts at a keyframe too.
    last_seen: Option<Position>,
    /// Frames the receiver lagged past, in total (for the driver's figures).
    skipped: u64,
}

impl FrameSender {
    /// `gop`: the stream's current GOP; `from`: where the receiver resumes (see
    /// [`resume_gop`]). The first frame sent is a keyframe, or the frame right
    /// after `from`.
    pub fn new(
        now: Duration,
        version: ProtocolVersion,
        node: String,
        mi: Arc<MediaInfo>,
        gop: &[Frame],
        from: Option<Position>,
    ) -> Self {
        let mut out = Outbox::new(now, version, node);
        out.push(now, Message::MediaInfo(mi.clone()));
        let resumed = resume_gop(gop, from);
        for f in resumed {
            out.push(now, Message::Frame(f.clone()));
        }
        let last_seen = gop.last().map(|f| f.pos);
        // The receiver has all of the GOP: what comes next follows on.
        let caught_up = from.is_some() && from == last_seen;
        FrameSender {
            out,
            mi,
            gate: if resumed.is_empty() && !caught_up {
                KeyframeGate::shut()
            } else {
                KeyframeGate::default()
            },
            last_seen,
            skipped: 0,
        }
    }

    /// The next frame of the stream. `current` gives the stream's media info now;
    /// it is asked only where a change may take effect (a video keyframe, or before
    /// the first track is known), so the frame after a new media info starts
    /// decoding.
    pub fn handle_frame(
        &mut self,
        now: Duration,
        frame: Frame,
        current: impl FnOnce() -> Arc<MediaInfo>,
    ) {
        if self.mi.tracks.is_empty() || starts_decoding(video_track(&self.mi), &frame) {
            let cur = current();
            if !Arc::ptr_eq(&cur, &self.mi) && *cur != *self.mi {
                self.mi = cur;
                self.out.push(now, Message::MediaInfo(self.mi.clone()));
            }
        }
        if self.last_seen.is_some_and(|l| !l.is_followed_by(frame.pos)) {
            self.gate.close();
        }
        self.last_seen = Some(frame.pos);
        if self.mi.track(frame.track).is_none() {
            return;
        }
        if !self.gate.admit(video_track(&self.mi), &frame) {
            return;
        }
        self.out.push(now, Message::Frame(frame));
    }

    /// The receiver fell behind and `n` frames are gone: resume at the next keyframe.
    pub fn handle_lagged(&mut self, n: u64) {
        self.skipped = self.skipped.saturating_add(n);
        self.gate.close();
    }

    /// The stream was removed: say so and finish.
    pub fn handle_stream_closed(&mut self, now: Duration) {
        self.out.end(now, "stream removed");
    }

    pub fn handle_timeout(&mut self, now: Duration, utc_ms: UtcMs) {
        self.out.handle_timeout(now, utc_ms);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.out.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.out.queue.pop_front()
    }

    /// The response is complete once what is queued is sent.
    pub fn is_finished(&self) -> bool {
        self.out.finished
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// An M4F live response: Hello, the media info, the backlog chosen by
/// [`resume_segments`], then every closed segment.
#[derive(Clone, Debug)]
pub struct SegmentSender {
    out: Outbox,
    skipped: u64,
}

impl SegmentSender {
    pub fn new(
        now: Duration,
        version: ProtocolVersion,
        node: String,
        mi: Arc<MediaInfo>,
        backlog: impl IntoIterator<Item = Segment>,
    ) -> Self {
        let mut out = Outbox::new(now, version, node);
        out.push(now, Message::MediaInfo(mi));
        for s in backlog {
            out.push(now, Message::Segment(s));
        }
        SegmentSender { out, skipped: 0 }
    }

    pub fn handle_segment(&mut self, now: Duration, segment: Segment) {
        self.out.push(now, Message::Segment(segment));
    }

    /// `n` segments were lost to a slow receiver; it sees the gap (every segment
    /// starts at a keyframe, so nothing needs skipping).
    pub fn handle_lagged(&mut self, n: u64) {
        self.skipped = self.skipped.saturating_add(n);
    }

    pub fn handle_stream_closed(&mut self, now: Duration) {
        self.out.end(now, "stream removed");
    }

    pub fn handle_timeout(&mut self, now: Duration, utc_ms: UtcMs) {
        self.out.handle_timeout(now, utc_ms);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.out.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.out.queue.pop_front()
    }

    pub fn is_finished(&self) -> bool {
        self.out.finished
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// A signaling response: Hello, the stream list, the list again whenever it
/// changes (looked at every [`SIGNALING_POLL`]), a heartbeat when it has not.
#[derive(Clone, Debug)]
pub struct SignalingSender {
    out: Outbox,
    last: Option<Vec<StreamAnnounce>>,
    next_look: Duration,
}

impl SignalingSender {
    /// The driver calls [`SignalingSender::handle_list`] at once, then whenever
    /// `poll_timeout` comes.
    pub fn new(now: Duration, version: ProtocolVersion, node: String) -> Self {
        SignalingSender {
            out: Outbox::new(now, version, node),
            last: None,
            next_look: now,
        }
    }

    /// The node's stream list now.
    pub fn handle_list(&mut self, now: Duration, list: Vec<StreamAnnounce>, utc_ms: UtcMs) {
        if self.last.as_ref() != Some(&list) {
            self.last = Some(list.clone());
            self.out.push(now, Message::Streams(list));
        } else {
            self.out.handle_timeout(now, utc_ms);
        }
        self.next_look = now + SIGNALING_POLL;
    }

    /// When to look at the list again (and maybe send a heartbeat).
    pub fn poll_timeout(&self) -> Option<Duration> {
        Some(self.next_look)
    }

    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.out.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{options::FakeOptions, source::FakeSource, source::VIDEO_TRACK};

    fn stream(n: usize) -> (Arc<MediaInfo>, Vec<Frame>) {
        let mut src = FakeSource::new(&FakeOptions::default(), 3);
        let mi = Arc::new(src.media_info());
        (
            mi,
            (0..n).map(|i| src.next_frame(1000 + i as u64)).collect(),
        )
    }

    fn drain_frames(s: &mut FrameSender) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(m) = s.poll_transmit() {
            if let Message::Frame(f) = m {
                out.push(f);
            }
        }
        out
    }

    fn gop_of(frames: &[Frame]) -> &[Frame] {
        let k = frames
            .iter()
            .rposition(|f| f.keyframe && f.track == VIDEO_TRACK)
            .expect("a keyframe");
        &frames[k..]
    }

    #[test]
    fn resume_sends_exactly_the_frames_after_from() {
        let (_, fs) = stream(120);
        let gop = gop_of(&fs);
        assert!(gop.len() > 3, "the test needs a GOP of a few frames");
        let from = gop[1].pos;
        let resumed = resume_gop(gop, Some(from));
        assert_eq!(resumed[0].pos, gop[2].pos);
        assert_eq!(resumed.len(), gop.len() - 2);
        // The last frame of the GOP: nothing more to send from it.
        let last = gop[gop.len() - 1].pos;
        assert!(resume_gop(gop, Some(last)).is_empty());
        // The frame before the GOP's keyframe: all of it, nothing missed.
        let before = Position {
            seq: gop[0].pos.seq - 1,
            ..gop[0].pos
        };
        assert_eq!(resume_gop(gop, Some(before)), gop);
        // Not in the GOP (older, or another epoch): the whole GOP.
        assert_eq!(resume_gop(gop, Some(Position { epoch: 99, seq: 0 })), gop);
        assert_eq!(resume_gop(gop, None), gop);
    }

    #[test]
    fn resume_segments_after_from() {
        let last = [
            Some(Position { epoch: 1, seq: 9 }),
            Some(Position { epoch: 1, seq: 19 }),
            Some(Position { epoch: 1, seq: 29 }),
        ];
        assert_eq!(resume_segments(&last, None), 2..3);
        assert_eq!(
            resume_segments(&last, Some(Position { epoch: 1, seq: 19 })),
            2..3
        );
        assert_eq!(
            resume_segments(&last, Some(Position { epoch: 1, seq: 12 })),
            1..3
        );
        assert_eq!(
            resume_segments(&last, Some(Position { epoch: 1, seq: 29 })),
            3..3
        );
        assert_eq!(resume_segments(&[], None), 0..0);
    }

    #[test]
    fn starts_with_hello_media_info_and_gop() {
        let (mi, fs) = stream(120);
        let gop = gop_of(&fs);
        let mut s = FrameSender::new(
            Duration::ZERO,
            ProtocolVersion::LATEST,
            "o".into(),
            mi.clone(),
            gop,
            None,
        );
        assert!(matches!(s.poll_transmit(), Some(Message::Hello { .. })));
        assert!(matches!(s.poll_transmit(), Some(Message::MediaInfo(_))));
        let sent = drain_frames(&mut s);
        assert_eq!(sent, gop);
    }

    #[test]
    fn without_a_gop_and_after_a_lag_the_next_frame_sent_is_a_keyframe() {
        let (mi, fs) = stream(300);
        let video = video_track(&mi);
        let mut s = FrameSender::new(
            Duration::ZERO,
            ProtocolVersion::LATEST,
            "o".into(),
            mi.clone(),
            &[],
            None,
        );
        let now = Duration::ZERO;
        // Start mid-GOP: the first frame sent starts decoding.
        for f in &fs[5..150] {
            s.handle_frame(now, f.clone(), || mi.clone());
        }
        let sent = drain_frames(&mut s);
        assert!(
            starts_decoding(video, &sent[0]),
            "first frame sent: {:?}",
            sent[0].pos
        );
        // Consecutive after that.
        assert!(sent.windows(2).all(|w| w[0].pos.is_followed_by(w[1].pos)));
        // A lag: the next frame is a keyframe again, then consecutive.
        s.handle_lagged(10);
        for f in &fs[160..300] {
            s.handle_frame(now, f.clone(), || mi.clone());
        }
        let after = drain_frames(&mut s);
        assert!(starts_decoding(video, &after[0]));
        assert!(after[0].pos.seq > 160);
        assert!(after.windows(2).all(|w| w[0].pos.is_followed_by(w[1].pos)));
        assert_eq!(s.skipped(), 10);
    }

    #[test]
    fn a_receiver_caught_up_with_the_gop_gets_the_next_frame_and_a_new_epoch_waits_for_a_keyframe()
    {
        let (mi, fs) = stream(120);
        let video = video_track(&mi);
        let k = fs
            .iter()
            .rposition(|f| f.keyframe && f.track == VIDEO_TRACK)
            .expect("a keyframe");
        let gop = &fs[k..fs.len() - 1];
        let mut s = FrameSender::new(
            Duration::ZERO,
            ProtocolVersion::LATEST,
            "o".into(),
            mi.clone(),
            gop,
            gop.last().map(|f| f.pos),
        );
        let next = fs[fs.len() - 1].clone();
        s.handle_frame(Duration::ZERO, next.clone(), || mi.clone());
        assert_eq!(drain_frames(&mut s), vec![next]);
        // The source restarts: its first frames up to a video keyframe are not sent.
        let mut again = FakeSource::new(&FakeOptions::default(), 4);
        let restarted: Vec<Frame> = (0..100).map(|i| again.next_frame(i)).collect();
        for f in restarted.iter().skip(1) {
            s.handle_frame(Duration::ZERO, f.clone(), || mi.clone());
        }
        let sent = drain_frames(&mut s);
        assert!(starts_decoding(video, &sent[0]), "{:?}", sent[0].pos);
        assert_eq!(sent[0].pos.epoch, 4);
    }

    #[test]
    fn media_info_change_is_sent_at_the_next_keyframe() {
        let (mi, fs) = stream(300);
        let mut changed = (*mi).clone();
        changed.tracks.retain(|t| t.id == VIDEO_TRACK);
        let changed = Arc::new(changed);
        let mut s = FrameSender::new(
            Duration::ZERO,
            ProtocolVersion::LATEST,
            "o".into(),
            mi.clone(),
            gop_of(&fs[..1]),
            None,
        );
        while s.poll_transmit().is_some() {}
        let mut seen = Vec::new();
        for f in &fs[1..300] {
            s.handle_frame(Duration::ZERO, f.clone(), || changed.clone());
            while let Some(m) = s.poll_transmit() {
                seen.push(m);
            }
        }
        let at = seen
            .iter()
            .position(|m| matches!(m, Message::MediaInfo(_)))
            .expect("the change is sent");
        match seen.get(at + 1) {
            Some(Message::Frame(f)) => assert!(f.keyframe && f.track == VIDEO_TRACK),
            other => panic!("after the media info: {other:?}"),
        }
        // Frames of the dropped audio track are no longer sent.
        assert!(seen[at..]
            .iter()
            .all(|m| !matches!(m, Message::Frame(f) if f.track != VIDEO_TRACK)));
    }

    #[test]
    fn heartbeat_after_the_interval_without_a_message() {
        let (mi, fs) = stream(10);
        let mut s = FrameSender::new(
            Duration::ZERO,
            ProtocolVersion::LATEST,
            "o".into(),
            mi.clone(),
            &fs[..1],
            None,
        );
        while s.poll_transmit().is_some() {}
        assert_eq!(s.poll_timeout(), Some(HEARTBEAT_INTERVAL));
        s.handle_timeout(HEARTBEAT_INTERVAL - Duration::from_millis(1), 5);
        assert_eq!(s.poll_transmit(), None);
        // A frame sent moves the deadline.
        let t = Duration::from_millis(300);
        s.handle_frame(t, fs[1].clone(), || mi.clone());
        assert!(s.poll_transmit().is_some());
        assert_eq!(s.poll_timeout(), Some(t + HEARTBEAT_INTERVAL));
        s.handle_timeout(t + HEARTBEAT_INTERVAL, 7);
        assert_eq!(s.poll_transmit(), Some(Message::Heartbeat { utc_ms: 7 }));
        // End: nothing more, no more deadlines.
        s.handle_stream_closed(Duration::from_secs(2));
        assert!(matches!(s.poll_transmit(), Some(Message::End { .. })));
        assert!(s.is_finished());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn segment_sender_heartbeats_and_ends() {
        let (mi, _) = stream(1);
        let mut s = SegmentSender::new(Duration::ZERO, ProtocolVersion::LATEST, "o".into(), mi, []);
        assert!(matches!(s.poll_transmit(), Some(Message::Hello { .. })));
        assert!(matches!(s.poll_transmit(), Some(Message::MediaInfo(_))));
        s.handle_timeout(HEARTBEAT_INTERVAL, 1);
        assert_eq!(s.poll_transmit(), Some(Message::Heartbeat { utc_ms: 1 }));
        s.handle_lagged(2);
        assert_eq!(s.skipped(), 2);
        s.handle_stream_closed(HEARTBEAT_INTERVAL);
        assert!(matches!(s.poll_transmit(), Some(Message::End { .. })));
        assert!(s.is_finished());
    }

    #[test]
    fn signaling_sends_changes_and_heartbeats_in_between() {
        let mut s = SignalingSender::new(Duration::ZERO, ProtocolVersion::LATEST, "o".into());
        assert!(matches!(s.poll_transmit(), Some(Message::Hello { .. })));
        s.handle_list(Duration::ZERO, vec![], 1);
        assert_eq!(s.poll_transmit(), Some(Message::Streams(vec![])));
        let mut t = Duration::ZERO;
        let mut beats = 0;
        while t < Duration::from_secs(2) {
            t = s.poll_timeout().expect("always looks again");
            s.handle_list(t, vec![], 2);
            while let Some(m) = s.poll_transmit() {
                assert_eq!(m, Message::Heartbeat { utc_ms: 2 });
                beats += 1;
            }
        }
        // 2 s at one look per 200 ms, one heartbeat per 500 ms of silence: at least 3.
        assert!((3..=4).contains(&beats), "{beats} heartbeats in 2 s");
    }
}
