//! A pull session: one node pulling from another across connects, cuts and
//! refusals — the reconnect loop of an `m4s://` / `m4f://` input and of a source's
//! signaling. It wraps the [`Receiver`] (handshake, duplicates, keyframe after a
//! gap, the dead-peer rule) and the [`Backoff`].
//!
//! Rules it owns:
//! - connect at once when started (or when its gate opens), from where the receiver
//!   stopped (`resume_from`);
//! - a failed attempt waits the next backoff delay, less the time the attempt took
//!   (a connect timeout counts towards the wait);
//! - a session made [`PullSession::with_not_found_backoff`] (a stream discovered on
//!   a peer) waits longer when the peer answered that it has no such stream (404):
//!   from [`NOT_FOUND_BACKOFF_BASE`] doubling to [`NOT_FOUND_BACKOFF_CAP`], so a peer
//!   announcing many streams it does not serve costs a few requests a minute each,
//!   not one or two a second;
//! - a connection that carried something after its handshake (a frame, a segment,
//!   a stream list, a heartbeat) resets the backoff when it ends; one that carried
//!   nothing does not, so a peer that accepts and then fails at once is not
//!   hammered;
//! - the gate (failover: is this input needed?) closing drops the connection
//!   without counting as a failure; opening it again connects once any backoff wait
//!   still pending from a failure has passed, so a flapping gate cannot make a
//!   connect storm.
//!
//! Contract (core's, see lib.rs): `handle_*(now, ...)`, then drain `poll_action`
//! (connect / disconnect) and `poll_event` (what the receiver delivers);
//! `poll_timeout` for the next deadline. Must not: do I/O or read a clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::cluster::backoff::Backoff;
use crate::cluster::message::Message;
use crate::cluster::receiver::{Event, Receiver};
use crate::Position;

/// First wait after a peer answered 404 to a discovered stream (before jitter).
pub const NOT_FOUND_BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between two attempts at a discovered stream the peer answers 404.
pub const NOT_FOUND_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Why an attempt to connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The peer could not be reached, or refused for another reason.
    Unreachable,
    /// The peer answered that it has no such stream (404).
    NotFound,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection, resuming after `from`; then call `handle_connected` or
    /// `handle_connect_failed`.
    Connect { from: Option<Position> },
    /// Drop the connection (and log why); the session retries after `retry_in`, or
    /// when its gate opens again (`retry_in` is `None`).
    Disconnect {
        cause: Cause,
        reason: String,
        retry_in: Option<Duration>,
    },
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The connection was cut or closed (by the peer or the network).
    Closed,
    /// Nothing heard within the dead-peer timeout.
    DeadPeer,
    /// The peer ended the response on purpose (`End`).
    Ended,
    /// The peer broke the protocol (no Hello, a message that does not belong).
    Protocol,
    /// The gate closed: the input is not needed.
    NotNeeded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The gate is shut: not connected, not trying.
    Idle,
    /// Waiting out a backoff delay.
    Waiting { until: Duration },
    /// The driver is opening a connection.
    Connecting { started: Duration },
    /// Connected; `delivered`: a frame, segment or list came on this connection.
    Connected { delivered: bool },
}

#[derive(Debug)]
pub struct PullSession {
    receiver: Receiver,
    backoff: Backoff,
    state: State,
    gate_open: bool,
    /// Waits after a 404 (`with_not_found_backoff`): base and cap.
    not_found: Option<(Duration, Duration)>,
    /// No attempt before this (the end of the last backoff delay).
    not_before: Duration,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl PullSession {
    /// A session that starts at once if `gate_open`.
    pub fn new(now: Duration, receiver: Receiver, backoff: Backoff, gate_open: bool) -> Self {
        let mut s = PullSession {
            receiver,
            backoff,
            state: State::Idle,
            gate_open,
            not_found: None,
            not_before: now,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        if gate_open {
            s.connect(now);
        }
        s
    }

    /// A 404 from the peer waits from [`NOT_FOUND_BACKOFF_BASE`] doubling to
    /// [`NOT_FOUND_BACKOFF_CAP`] (with jitter) instead of the usual delays: for the
    /// streams a `source` discovers, which the peer said it has.
    pub fn with_not_found_backoff(mut self) -> Self {
        self.not_found = Some((NOT_FOUND_BACKOFF_BASE, NOT_FOUND_BACKOFF_CAP));
        self
    }

    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    fn connect(&mut self, now: Duration) {
        self.state = State::Connecting { started: now };
        self.actions.push_back(Action::Connect {
            from: self.receiver.resume_from(),
        });
    }

    /// The gate (is this input needed now?) opened or closed.
    pub fn handle_gate(&mut self, now: Duration, open: bool) {
        if open == self.gate_open {
            return;
        }
        self.gate_open = open;
        match (self.state, open) {
            (State::Idle, true) if now >= self.not_before => self.connect(now),
            (State::Idle, true) => {
                self.state = State::Waiting {
                    until: self.not_before,
                }
            }
            (State::Waiting { .. }, false) => self.state = State::Idle,
            (State::Connected { delivered }, false) => {
                self.receiver.handle_disconnected();
                if delivered {
                    self.backoff.reset();
                }
                self.state = State::Idle;
                self.actions.push_back(Action::Disconnect {
                    cause: Cause::NotNeeded,
                    reason: "input not needed (failover)".into(),
                    retry_in: None,
                });
            }
            // Connecting: decided when the attempt ends.
            _ => {}
        }
    }

    /// The attempt failed; returns how long the session waits before the next.
    pub fn handle_connect_failed(&mut self, now: Duration) -> Duration {
        self.handle_failed(now, Failure::Unreachable)
    }

    /// The attempt failed for `why`; returns how long the session waits before the
    /// next.
    pub fn handle_failed(&mut self, now: Duration, why: Failure) -> Duration {
        let started = match self.state {
            State::Connecting { started } => started,
            _ => now,
        };
        let next = match (why, self.not_found) {
            (Failure::NotFound, Some((base, cap))) => self.backoff.next_delay_within(base, cap),
            _ => self.backoff.next_delay(),
        };
        let delay = next.saturating_sub(now.saturating_sub(started));
        self.wait(now, delay);
        delay
    }

    fn wait(&mut self, now: Duration, delay: Duration) {
        self.not_before = now + delay;
        self.state = if self.gate_open {
            State::Waiting {
                until: self.not_before,
            }
        } else {
            State::Idle
        };
    }

    /// The connection is open (the response started).
    pub fn handle_connected(&mut self, now: Duration) {
        self.receiver.handle_connected(now);
        self.state = State::Connected { delivered: false };
        if !self.gate_open {
            self.gate_open = true;
            self.handle_gate(now, false);
        }
    }

    /// One decoded message from the connection.
    pub fn handle_message(&mut self, now: Duration, msg: Message) {
        if !self.is_connected() {
            return;
        }
        if let Err(e) = self.receiver.handle_message(now, msg) {
            self.close(now, Cause::Protocol, e.to_string());
            return;
        }
        self.drain_receiver(now);
    }

    /// The connection ended (peer closed, read error, bad frame): `reason` says why.
    pub fn handle_closed(&mut self, now: Duration, reason: String) {
        if self.is_connected() {
            self.close(now, Cause::Closed, reason);
        }
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        match self.state {
            State::Connected { .. } => {
                self.receiver.handle_timeout(now);
                self.drain_receiver(now);
            }
            State::Waiting { until } if now >= until => self.connect(now),
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Connected { .. } => self.receiver.poll_timeout(),
            State::Waiting { until } => Some(until),
            State::Idle | State::Connecting { .. } => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the receiver delivers: media info, frames, segments, stream lists,
    /// peer clocks. (Its `Ended` and `DeadPeer` become a `Disconnect` action.)
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn drain_receiver(&mut self, now: Duration) {
        while let Some(ev) = self.receiver.poll_event() {
            match ev {
                Event::Ended(why) => {
                    self.close(now, Cause::Ended, format!("peer ended the stream: {why}"));
                    return;
                }
                Event::DeadPeer => {
                    self.close(
                        now,
                        Cause::DeadPeer,
                        "no message within the dead-peer timeout".into(),
                    );
                    return;
                }
                Event::Frame { .. } | Event::Segment { .. } | Event::Streams(_) => {
                    if let State::Connected { delivered } = &mut self.state {
                        *delivered = true;
                    }
                    self.events.push_back(ev);
                }
                Event::PeerClock(_) => {
                    // A heartbeat: the peer is alive, only its stream is quiet.
                    if let State::Connected { delivered } = &mut self.state {
                        *delivered = true;
                    }
                    self.events.push_back(ev);
                }
                Event::MediaInfo(_) => self.events.push_back(ev),
            }
        }
    }

    fn close(&mut self, now: Duration, cause: Cause, reason: String) {
        let State::Connected { delivered } = self.state else {
            return;
        };
        self.receiver.handle_disconnected();
        // Events the receiver queued before the end are dropped with it.
        while self.receiver.poll_event().is_some() {}
        if delivered {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        self.wait(now, delay);
        self.actions.push_back(Action::Disconnect {
            cause,
            reason,
            retry_in: Some(delay),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::backoff::{BACKOFF_BASE, BACKOFF_CAP};
    use crate::cluster::receiver::DEAD_PEER_TIMEOUT;
    use crate::fake::{options::FakeOptions, source::FakeSource};
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    fn session(gate: bool) -> PullSession {
        PullSession::new(Duration::ZERO, Receiver::default(), Backoff::new(1), gate)
    }

    fn hello() -> Message {
        Message::Hello {
            version: 1,
            node: "o".into(),
        }
    }

    fn expect_connect(s: &mut PullSession) -> Option<Position> {
        match s.poll_action() {
            Some(Action::Connect { from }) => from,
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    fn expect_disconnect(s: &mut PullSession) -> Option<Duration> {
        match s.poll_action() {
            Some(Action::Disconnect { retry_in, .. }) => retry_in,
            other => panic!("expected Disconnect, got {other:?}"),
        }
    }

    /// Runs the session's timers until it asks to connect; returns when.
    fn next_connect(s: &mut PullSession) -> Duration {
        let t = s.poll_timeout().expect("a retry is scheduled");
        s.handle_timeout(t);
        expect_connect(s);
        t
    }

    #[test]
    fn failed_attempts_back_off_up_to_the_cap_counting_the_attempts_time() {
        let mut s = session(true);
        assert_eq!(expect_connect(&mut s), None);
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..10 {
            now += 30 * MS; // the attempt's own time
            let d = s.handle_connect_failed(now);
            waits.push(d);
            let at = next_connect(&mut s);
            assert_eq!(at, now + d);
            now = at;
        }
        assert!(waits[0] <= BACKOFF_BASE);
        assert!(waits.iter().all(|d| *d <= BACKOFF_CAP));
        assert!(waits[9] >= BACKOFF_CAP / 2 - 30 * MS);
    }

    #[test]
    fn a_connection_that_delivered_resets_the_backoff_one_that_did_not_does_not() {
        let mut src = FakeSource::new(&FakeOptions::default(), 1);
        let mi = Arc::new(src.media_info());
        let mut s = session(true);
        expect_connect(&mut s);
        let mut now = Duration::ZERO;
        // Five refusals: the delay has grown.
        for _ in 0..5 {
            s.handle_connect_failed(now);
            now = next_connect(&mut s);
        }
        // Accepted, handshake, but nothing delivered: no reset.
        s.handle_connected(now);
        s.handle_message(now, hello());
        s.handle_closed(now, "cut".into());
        let grown = expect_disconnect(&mut s).expect("retries");
        assert!(grown >= BACKOFF_CAP / 2, "{grown:?}");
        now = next_connect(&mut s);
        // Delivers a frame: the next delay is from the base again.
        s.handle_connected(now);
        s.handle_message(now, hello());
        s.handle_message(now, Message::MediaInfo(mi));
        s.handle_message(now, Message::Frame(src.next_frame(1)));
        assert!(matches!(s.poll_event(), Some(Event::MediaInfo(_))));
        assert!(matches!(s.poll_event(), Some(Event::Frame { .. })));
        s.handle_closed(now, "cut".into());
        let reset = expect_disconnect(&mut s).expect("retries");
        assert!(reset <= BACKOFF_BASE, "{reset:?}");
        // And it resumes from the frame it delivered.
        let t = s.poll_timeout().expect("retry");
        s.handle_timeout(t);
        assert_eq!(expect_connect(&mut s), Some(Position { epoch: 1, seq: 0 }));
    }

    #[test]
    fn silence_then_dead_peer_then_reconnect() {
        let mut s = session(true);
        expect_connect(&mut s);
        s.handle_connected(Duration::ZERO);
        s.handle_message(Duration::ZERO, hello());
        assert_eq!(s.poll_timeout(), Some(DEAD_PEER_TIMEOUT));
        s.handle_timeout(DEAD_PEER_TIMEOUT);
        assert!(matches!(
            s.poll_action(),
            Some(Action::Disconnect {
                cause: Cause::DeadPeer,
                retry_in: Some(_),
                ..
            })
        ));
        assert!(!s.is_connected());
        next_connect(&mut s);
    }

    #[test]
    fn a_peer_that_is_not_tern_is_dropped() {
        let mut s = session(true);
        expect_connect(&mut s);
        s.handle_connected(Duration::ZERO);
        s.handle_message(Duration::ZERO, Message::Heartbeat { utc_ms: 1 });
        match s.poll_action() {
            Some(Action::Disconnect { reason, .. }) => {
                assert!(reason.contains("Hello"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gate_flapping_does_not_connect_faster_than_the_backoff() {
        let mut s = session(false);
        assert_eq!(s.poll_action(), None, "shut gate: no attempt");
        assert_eq!(s.poll_timeout(), None);
        s.handle_gate(Duration::ZERO, true);
        expect_connect(&mut s);
        let d = s.handle_connect_failed(10 * MS);
        // The gate closes and opens again at once: still waits out the delay.
        s.handle_gate(11 * MS, false);
        assert_eq!(s.poll_timeout(), None);
        s.handle_gate(12 * MS, true);
        assert_eq!(s.poll_action(), None);
        assert_eq!(s.poll_timeout(), Some(10 * MS + d));
        let t = next_connect(&mut s);
        // Connected, then not needed: dropped with no retry scheduled.
        s.handle_connected(t);
        s.handle_gate(t, false);
        assert_eq!(expect_disconnect(&mut s), None);
        assert_eq!(s.poll_timeout(), None);
        // Needed again after the wait: at once.
        s.handle_gate(t + BACKOFF_CAP, true);
        expect_connect(&mut s);
        // The gate closes while connecting: the new connection is dropped at once.
        s.handle_gate(t + BACKOFF_CAP, false);
        s.handle_connected(t + BACKOFF_CAP);
        assert_eq!(expect_disconnect(&mut s), None);
        assert!(!s.is_connected());
    }

    /// Issue 11, finding 4: a discovered stream the peer answers 404 backs off on its
    /// own, from 5 s doubling to 60 s; without `with_not_found_backoff` (a configured
    /// input) a 404 is an ordinary failure.
    #[test]
    fn a_404_backs_off_from_5_s_to_60_s_for_a_discovered_stream() {
        let mut s = session(true).with_not_found_backoff();
        expect_connect(&mut s);
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let d = s.handle_failed(now, Failure::NotFound);
            waits.push(d);
            now = next_connect(&mut s);
        }
        assert!(
            waits[0] >= NOT_FOUND_BACKOFF_BASE / 2 && waits[0] <= NOT_FOUND_BACKOFF_BASE,
            "{waits:?}"
        );
        for w in waits.windows(2) {
            // Doubling (jitter is a factor in [0.5, 1]) until the cap.
            assert!(w[1] >= w[0] / 2, "{waits:?}");
        }
        assert!(waits.iter().all(|d| *d <= NOT_FOUND_BACKOFF_CAP));
        assert!(waits[9] >= NOT_FOUND_BACKOFF_CAP / 2, "{waits:?}");
        // Ten attempts take minutes, not seconds.
        assert!(now >= Duration::from_secs(180), "{now:?}");
        // An unreachable peer in between: the usual, short delays (same count).
        let d = s.handle_failed(now, Failure::Unreachable);
        assert!(d <= BACKOFF_CAP, "{d:?}");
        // A configured input: a 404 is like any failure.
        let mut s = session(true);
        expect_connect(&mut s);
        let d = s.handle_failed(Duration::ZERO, Failure::NotFound);
        assert!(d <= BACKOFF_BASE, "{d:?}");
    }

    /// Each discovered stream has its own session: one that keeps failing does not
    /// slow another, and 100 streams answered 404 make at most 2 attempts each in
    /// their first 6 s (the usual 2 s cap made 5 or more).
    #[test]
    fn many_streams_answering_404_cost_few_attempts_each() {
        let attempts_in = |not_found: bool, seed: u64, horizon: Duration| -> usize {
            let mut s = PullSession::new(
                Duration::ZERO,
                Receiver::default(),
                Backoff::new(seed),
                true,
            );
            if not_found {
                s = s.with_not_found_backoff();
            }
            expect_connect(&mut s);
            let mut n = 1;
            let mut now = Duration::ZERO;
            loop {
                s.handle_failed(now, Failure::NotFound);
                let t = s.poll_timeout().expect("retry");
                if t >= horizon {
                    return n;
                }
                s.handle_timeout(t);
                expect_connect(&mut s);
                now = t;
                n += 1;
            }
        };
        let six = Duration::from_secs(6);
        let after: Vec<usize> = (0..100).map(|i| attempts_in(true, i, six)).collect();
        let before: Vec<usize> = (0..100).map(|i| attempts_in(false, i, six)).collect();
        assert!(after.iter().all(|n| *n <= 2), "{after:?}");
        assert!(before.iter().all(|n| *n >= 5), "{before:?}");
    }

    #[test]
    fn signaling_session_delivers_lists_and_resets_on_them() {
        let mut s = PullSession::new(Duration::ZERO, Receiver::signaling(), Backoff::new(2), true);
        expect_connect(&mut s);
        for _ in 0..4 {
            s.handle_connect_failed(Duration::ZERO);
            let t = s.poll_timeout().expect("retry");
            s.handle_timeout(t);
            expect_connect(&mut s);
        }
        s.handle_connected(Duration::ZERO);
        s.handle_message(Duration::ZERO, hello());
        s.handle_message(Duration::ZERO, Message::Streams(vec![]));
        assert_eq!(s.poll_event(), Some(Event::Streams(vec![])));
        s.handle_closed(Duration::ZERO, "cut".into());
        assert!(expect_disconnect(&mut s).is_some_and(|d| d <= BACKOFF_BASE));
    }
}
