//! [`RemoteRequest`]: one archive question (an index or a range) asked of a
//! stream's peers over M4F, as a sans-IO machine.
//!
//! Contract (core's, see lib.rs): drain `poll_action` after every input. `Open`
//! asks the driver to open a path on a peer and answer with `handle_opened`; once a
//! peer answered, the driver passes each message in (`handle_message`), or that
//! the response ended (`handle_closed`), and calls `handle_timeout` at
//! `poll_timeout`. A `Deliver`ed segment is answered with `handle_delivered` (the
//! reader took it: the idle deadline starts again) or `handle_reader_gone`. The
//! request is over at `Index`, `Done` or `Failed`.
//!
//! Decisions: peers are asked in their configured order; a 400 from any of them
//! ends the request as a bad request; a 404 means that peer has no such archive,
//! and if no peer answered, 404s make "not found" and anything else "unreachable"
//! (503). A peer that sends nothing for [`ARCHIVE_IDLE_TIMEOUT`] while this node
//! waits for it is taken as gone: archive responses have no heartbeats (the server
//! sends as fast as this node reads), and a cut link can hang a connection silently.

use std::collections::VecDeque;
use std::time::Duration;

use super::{ArchiveError, ArchiveIndex};
use crate::cluster::message::Message;
use crate::{Segment, StreamName};

/// How long an edge waits for the next message of a peer's archive response before
/// it takes the peer as gone (the request then fails with a 503, or ends early).
pub const ARCHIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The question asked of the peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// The facts, and the entries overlapping a window if one is given.
    Index { window: Option<(u64, u64)> },
    /// The segments overlapping `[from_ms, to_ms)`.
    Range { from_ms: u64, to_ms: u64 },
}

impl Question {
    /// The cluster path asking it of a peer that calls the stream `remote`.
    pub fn path(&self, remote: &StreamName) -> String {
        match *self {
            Question::Index { window } => format!(
                "/tern/v1/dvr/{}{}",
                remote.as_str(),
                window.map_or(String::new(), |(f, t)| format!("?from={f}&to={t}"))
            ),
            Question::Range { from_ms, to_ms } => format!(
                "/tern/v1/archive/{}?from={from_ms}&to={to_ms}",
                remote.as_str()
            ),
        }
    }
}

/// What opening the path on a peer gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The peer answered 200: its messages follow.
    Answered,
    /// The peer refused with an HTTP status and its body.
    Rejected { status: u16, body: String },
    /// No answer (connect, handshake, authentication): the driver's text.
    Failed(String),
}

#[derive(Clone, Debug)]
pub enum RemoteAction {
    /// Open `path` on peer number `peer` (in the order given to `new`).
    Open { peer: usize, path: String },
    /// A segment of the range for the reader.
    Deliver(Segment),
    /// The index answer; the request is over.
    Index(ArchiveIndex),
    /// The range is over: this many segments were delivered.
    Done(u32),
    /// The request failed.
    Failed(ArchiveError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for `handle_opened` of this peer.
    Opening(usize),
    /// Waiting for the next message of this peer.
    Reading(usize),
    /// A segment is with the reader.
    Delivering(usize),
    Over,
}

#[derive(Debug)]
pub struct RemoteRequest {
    /// The stream's name on this node (for messages).
    name: StreamName,
    /// `host:port` and the question's path on each peer, in the order they are tried.
    peers: Vec<(String, String)>,
    question: Question,
    state: State,
    not_found: Option<String>,
    errors: Vec<String>,
    sent: u32,
    deadline: Option<Duration>,
    actions: VecDeque<RemoteAction>,
}

impl RemoteRequest {
    /// Asks `question` of `peers` (host, port, the stream's name there), in order.
    /// `recorded`: false when signaling says the source does not record the stream,
    /// which answers "not found" without asking.
    pub fn new(
        name: StreamName,
        peers: &[(String, u16, StreamName)],
        question: Question,
        recorded: bool,
    ) -> Self {
        let mut r = RemoteRequest {
            peers: peers
                .iter()
                .map(|(h, p, remote)| (format!("{h}:{p}"), question.path(remote)))
                .collect(),
            name,
            question,
            state: State::Opening(0),
            not_found: None,
            errors: Vec::new(),
            sent: 0,
            deadline: None,
            actions: VecDeque::new(),
        };
        if !recorded {
            let e = ArchiveError::NotFound(format!(
                "stream {:?} has no archive: its source does not record it",
                r.name.as_str()
            ));
            r.finish(RemoteAction::Failed(e));
        } else {
            r.open(0);
        }
        r
    }

    /// `host:port` of peer number `peer`.
    pub fn peer(&self, peer: usize) -> Option<&str> {
        self.peers.get(peer).map(|(a, _)| a.as_str())
    }

    fn open(&mut self, peer: usize) {
        match self.peers.get(peer) {
            Some((_, path)) => {
                self.state = State::Opening(peer);
                self.actions.push_back(RemoteAction::Open {
                    peer,
                    path: path.clone(),
                });
            }
            None => {
                let e = match self.not_found.take() {
                    Some(nf) => ArchiveError::NotFound(nf),
                    // The OS's and the peers' own words are the detail, not for players.
                    None => ArchiveError::unreachable(
                        format!(
                            "the archive of stream {:?} is on {}, which cannot be reached now",
                            self.name.as_str(),
                            self.peers
                                .iter()
                                .map(|(a, _)| a.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ),
                        self.errors.join("; "),
                    ),
                };
                self.finish(RemoteAction::Failed(e));
            }
        }
    }

    fn finish(&mut self, last: RemoteAction) {
        self.state = State::Over;
        self.deadline = None;
        self.actions.push_back(last);
    }

    /// A peer that stopped answering mid-response, or answered with `End`. `why`
    /// (the peer's own `End` text, the OS's words) is the detail: logs and peers see
    /// it, players get a fixed text.
    fn broke_off(&mut self, peer: usize, why: String) {
        let addr = self.peer(peer).unwrap_or_default().to_owned();
        let e = broke_off(&self.name, &addr, &why);
        self.finish(RemoteAction::Failed(e));
    }

    fn wait(&mut self, now: Duration, peer: usize) {
        self.state = State::Reading(peer);
        self.deadline = Some(now + ARCHIVE_IDLE_TIMEOUT);
    }

    /// What opening the path of the last `Open` gave.
    pub fn handle_opened(&mut self, now: Duration, opened: Opened) {
        let State::Opening(peer) = self.state else {
            return;
        };
        match opened {
            Opened::Answered => self.wait(now, peer),
            // A peer's error text is not passed on to players (its body is not
            // covered by the cluster MAC, and players get this node's words only).
            Opened::Rejected { status: 404, .. } => {
                self.not_found = Some(format!(
                    "stream {:?} has nothing stored in that window; see recording_status.json for what is there",
                    self.name.as_str()
                ));
                self.open(peer + 1);
            }
            Opened::Rejected { status: 400, .. } => {
                self.finish(RemoteAction::Failed(ArchiveError::BadRequest(format!(
                    "the archive of stream {:?} refused the request as bad",
                    self.name.as_str()
                ))))
            }
            Opened::Rejected { status, body } => {
                let addr = self.peer(peer).unwrap_or_default();
                self.errors
                    .push(format!("{addr} refused the request: {status} {body}"));
                self.open(peer + 1);
            }
            Opened::Failed(why) => {
                self.errors.push(why);
                self.open(peer + 1);
            }
        }
    }

    /// The next message of the peer's response.
    pub fn handle_message(&mut self, now: Duration, msg: Message) {
        let State::Reading(peer) = self.state else {
            return;
        };
        match (self.question, msg) {
            (Question::Index { window }, Message::DvrIndex { facts, entries }) => {
                // Only what was asked for, whatever the peer listed.
                let entries = crate::archive_window::clip_entries(entries, window);
                self.finish(RemoteAction::Index(ArchiveIndex { facts, entries }));
            }
            (Question::Index { .. }, Message::Hello { .. }) => self.wait(now, peer),
            (Question::Range { .. }, Message::Segment(s)) => {
                self.state = State::Delivering(peer);
                self.deadline = None;
                self.actions.push_back(RemoteAction::Deliver(s));
            }
            (Question::Range { .. }, Message::ArchiveEnd { .. }) => {
                self.finish(RemoteAction::Done(self.sent))
            }
            (Question::Range { .. }, Message::Hello { .. } | Message::Heartbeat { .. }) => {
                self.wait(now, peer)
            }
            (_, Message::End { reason }) => self.broke_off(peer, reason),
            (_, other) => self.broke_off(peer, format!("unexpected message type {}", other.kind())),
        }
    }

    /// The peer's response ended before the answer (`why`: closed, or the error).
    pub fn handle_closed(&mut self, why: String) {
        if let State::Reading(peer) | State::Delivering(peer) = self.state {
            self.broke_off(peer, why);
        }
    }

    /// The reader took the segment last delivered.
    pub fn handle_delivered(&mut self, now: Duration) {
        if let State::Delivering(peer) = self.state {
            self.sent += 1;
            self.wait(now, peer);
        }
    }

    /// The reader left: the range ends with what it took.
    pub fn handle_reader_gone(&mut self) {
        if let State::Delivering(_) = self.state {
            self.finish(RemoteAction::Done(self.sent));
        }
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if let (State::Reading(peer), Some(d)) = (self.state, self.deadline) {
            if now >= d {
                self.broke_off(
                    peer,
                    format!("nothing received for {ARCHIVE_IDLE_TIMEOUT:?}"),
                );
            }
        }
    }

    /// When `handle_timeout` is due: the idle deadline while waiting for a peer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadline
    }

    pub fn poll_action(&mut self) -> Option<RemoteAction> {
        self.actions.pop_front()
    }

    pub fn is_over(&self) -> bool {
        self.state == State::Over && self.actions.is_empty()
    }
}

/// See [`RemoteRequest::broke_off`].
pub fn broke_off(name: &StreamName, peer: &str, why: &str) -> ArchiveError {
    ArchiveError::unreachable(
        format!(
            "the archive of stream {:?} on {peer} broke off (this node's log says why)",
            name.as_str()
        ),
        why,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::{ArchiveEntry, DvrFacts};

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn peers(n: usize) -> Vec<(String, u16, StreamName)> {
        (0..n)
            .map(|i| (format!("peer{i}"), 8000 + i as u16, name("main")))
            .collect()
    }

    const T0: Duration = Duration::from_secs(100);

    fn range(n: usize) -> RemoteRequest {
        RemoteRequest::new(
            name("cam"),
            &peers(n),
            Question::Range {
                from_ms: 1000,
                to_ms: 5000,
            },
            true,
        )
    }

    fn index(n: usize, window: Option<(u64, u64)>) -> RemoteRequest {
        RemoteRequest::new(name("cam"), &peers(n), Question::Index { window }, true)
    }

    fn actions(r: &mut RemoteRequest) -> Vec<RemoteAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    fn opens(a: &[RemoteAction]) -> Vec<(usize, String)> {
        a.iter()
            .filter_map(|a| match a {
                RemoteAction::Open { peer, path } => Some((*peer, path.clone())),
                _ => None,
            })
            .collect()
    }

    fn failed(a: &[RemoteAction]) -> ArchiveError {
        match a.last() {
            Some(RemoteAction::Failed(e)) => e.clone(),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn seg(utc: u64) -> Segment {
        Segment {
            media_info: std::sync::Arc::new(crate::media::MediaInfo::default()),
            utc_start_ms: utc,
            duration_ms: 2000,
            frames: Vec::new(),
        }
    }

    fn rejected(status: u16, body: &str) -> Opened {
        Opened::Rejected {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn asks_the_peers_in_order_with_the_peers_name_for_the_stream() {
        let mut r = range(3);
        let a = actions(&mut r);
        assert_eq!(
            opens(&a),
            vec![(0, "/tern/v1/archive/main?from=1000&to=5000".to_string())]
        );
        r.handle_opened(T0, Opened::Failed("connection refused".into()));
        assert_eq!(opens(&actions(&mut r))[0].0, 1);
        r.handle_opened(T0, rejected(503, "busy"));
        assert_eq!(opens(&actions(&mut r))[0].0, 2);
        r.handle_opened(T0, Opened::Answered);
        assert!(actions(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), Some(T0 + ARCHIVE_IDLE_TIMEOUT));
        let q = index(1, Some((1, 2)));
        assert_eq!(q.peers[0].1, "/tern/v1/dvr/main?from=1&to=2");
        assert_eq!(index(1, None).peers[0].1, "/tern/v1/dvr/main");
    }

    #[test]
    fn no_peer_answering_is_unreachable_503_with_the_reasons_as_detail() {
        let mut r = range(2);
        actions(&mut r);
        r.handle_opened(T0, Opened::Failed("connection refused".into()));
        actions(&mut r);
        r.handle_opened(T0, rejected(403, "bad signature"));
        let e = failed(&actions(&mut r));
        assert_eq!(e.status(), 503, "{e}");
        assert!(
            e.shown().contains("peer0:8000, peer1:8001"),
            "{}",
            e.shown()
        );
        assert!(!e.shown().contains("refused"), "{}", e.shown());
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert!(e.to_string().contains("403 bad signature"), "{e}");
        assert!(r.is_over());
    }

    #[test]
    fn a_404_is_not_found_only_when_no_peer_could_answer() {
        // 404 from the first, the second unreachable: the archive is not there.
        let mut r = range(2);
        actions(&mut r);
        r.handle_opened(T0, rejected(404, "<script>peer words</script>"));
        actions(&mut r);
        r.handle_opened(T0, Opened::Failed("timed out".into()));
        let e = failed(&actions(&mut r));
        assert!(matches!(e, ArchiveError::NotFound(_)), "{e:?}");
        assert!(e.shown().contains("nothing stored"), "{}", e.shown());
        // The peer's words never reach a player.
        assert!(!e.shown().contains("peer words"), "{}", e.shown());
        // A 404 then a peer that answers: its answer counts.
        let mut r = range(2);
        actions(&mut r);
        r.handle_opened(T0, rejected(404, "no"));
        actions(&mut r);
        r.handle_opened(T0, Opened::Answered);
        r.handle_message(T0, Message::ArchiveEnd { segments: 0 });
        assert!(matches!(actions(&mut r)[..], [RemoteAction::Done(0)]));
    }

    #[test]
    fn a_400_ends_the_request_at_once() {
        let mut r = range(3);
        actions(&mut r);
        r.handle_opened(T0, rejected(400, "window too large"));
        let a = actions(&mut r);
        assert!(opens(&a).is_empty());
        let e = failed(&a);
        assert!(matches!(e, ArchiveError::BadRequest(_)), "{e:?}");
        assert!(!e.shown().contains("window too large"), "{}", e.shown());
    }

    #[test]
    fn not_recorded_is_not_found_without_asking() {
        let mut r = RemoteRequest::new(
            name("cam"),
            &peers(2),
            Question::Index { window: None },
            false,
        );
        let a = actions(&mut r);
        assert!(opens(&a).is_empty());
        assert_eq!(failed(&a).status(), 404);
    }

    #[test]
    fn segments_wait_for_the_reader_and_the_idle_deadline_restarts_after_each() {
        let mut r = range(1);
        actions(&mut r);
        r.handle_opened(T0, Opened::Answered);
        r.handle_message(
            T0,
            Message::Hello {
                version: 1,
                node: "o".into(),
            },
        );
        let t1 = T0 + Duration::from_secs(3);
        r.handle_message(t1, Message::Segment(seg(1000)));
        assert!(matches!(actions(&mut r)[..], [RemoteAction::Deliver(_)]));
        // A reader that takes its time is not the peer's idleness.
        assert_eq!(r.poll_timeout(), None);
        r.handle_timeout(t1 + Duration::from_secs(60));
        assert!(actions(&mut r).is_empty());
        let t2 = t1 + Duration::from_secs(60);
        r.handle_delivered(t2);
        assert_eq!(r.poll_timeout(), Some(t2 + ARCHIVE_IDLE_TIMEOUT));
        r.handle_message(t2, Message::Heartbeat { utc_ms: 1 });
        r.handle_message(t2, Message::Segment(seg(3000)));
        actions(&mut r);
        r.handle_delivered(t2);
        r.handle_message(t2, Message::ArchiveEnd { segments: 2 });
        assert!(matches!(actions(&mut r)[..], [RemoteAction::Done(2)]));
        // The reader leaving ends the range with what it took.
        let mut r = range(1);
        actions(&mut r);
        r.handle_opened(T0, Opened::Answered);
        r.handle_message(T0, Message::Segment(seg(1000)));
        actions(&mut r);
        r.handle_reader_gone();
        assert!(matches!(actions(&mut r)[..], [RemoteAction::Done(0)]));
    }

    #[test]
    fn a_silent_peer_is_gone_after_the_idle_timeout_and_not_before() {
        let mut r = range(2);
        actions(&mut r);
        r.handle_opened(T0, Opened::Answered);
        let due = r.poll_timeout().unwrap_or_else(|| panic!("no deadline"));
        r.handle_timeout(due - Duration::from_millis(1));
        assert!(actions(&mut r).is_empty());
        r.handle_timeout(due);
        let a = actions(&mut r);
        // Mid-response, no other peer is asked: the request fails with a 503.
        assert!(opens(&a).is_empty());
        let e = failed(&a);
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("nothing received for 10s"), "{e}");
        assert!(e.shown().contains("peer0:8000"), "{}", e.shown());
    }

    #[test]
    fn end_closed_and_strange_messages_break_off() {
        for input in 0..3 {
            let mut r = index(1, None);
            actions(&mut r);
            r.handle_opened(T0, Opened::Answered);
            match input {
                0 => r.handle_message(
                    T0,
                    Message::End {
                        reason: "call +1-555-SCAM".into(),
                    },
                ),
                1 => r.handle_closed("connection closed".into()),
                _ => r.handle_message(T0, Message::Segment(seg(1))),
            }
            let e = failed(&actions(&mut r));
            assert_eq!(e.status(), 503);
            assert!(e.shown().contains("broke off"), "{}", e.shown());
            assert!(!e.shown().contains("SCAM"), "{}", e.shown());
        }
    }

    #[test]
    fn an_index_is_clipped_to_the_window_asked() {
        let mut r = index(1, Some((3000, 5000)));
        actions(&mut r);
        r.handle_opened(T0, Opened::Answered);
        let entry = |utc| ArchiveEntry {
            utc_start_ms: utc,
            duration_ms: 2000,
            discontinuity: false,
        };
        let facts = DvrFacts {
            depth_secs: 0,
            ranges: vec![(0, 10_000)],
        };
        r.handle_message(
            T0,
            Message::DvrIndex {
                facts: facts.clone(),
                entries: vec![entry(0), entry(2000), entry(4000), entry(8000)],
            },
        );
        match &actions(&mut r)[..] {
            [RemoteAction::Index(ix)] => {
                assert_eq!(ix.facts, facts);
                assert_eq!(ix.entries, vec![entry(2000), entry(4000)]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A peer's `End` reason is logged and passed to authenticated peers; players
    /// get a fixed text naming the stream and the peer.
    #[test]
    fn a_peers_end_reason_is_not_passed_to_players() {
        let e = broke_off(&name("main"), "origin:8888", "call +1-555-SCAM for support");
        let said = e.shown();
        assert!(!said.contains("SCAM"), "{said}");
        assert!(e.to_string().contains("SCAM"), "{e}");
        assert!(
            said.contains("\"main\"") && said.contains("origin:8888") && said.contains("broke off"),
            "{said}"
        );
    }
}
