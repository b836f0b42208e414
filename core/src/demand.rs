//! On-demand pulls: whether a stream's input should be connected, from who is
//! watching. A restreamed stream of a `source` (and an `ondemand` stream of the
//! origin) opens its pull when the first viewer arrives and closes it
//! `clients_timeout` after the last one left; a `static` stream is always pulled.
//!
//! Viewers come in two kinds. A held viewer (an MPEG-TS response, an M4S or M4F
//! pull from a further node) counts while its response is open. A passing viewer
//! (an HLS playlist or segment request) counts as one that arrived and left at that
//! instant: players ask every segment duration, so a playing HLS viewer keeps the
//! stream wanted, and one that stopped lets it go `clients_timeout` later.
//!
//! Contract (core's, see lib.rs): `handle_*(now, ...)` inputs, `wants_pull()` and
//! `state()` read after each, `poll_timeout()` for the next deadline (the end of the
//! linger after the last viewer). Must not: do I/O, read a clock or count bytes.

use std::time::Duration;

/// Default `clients_timeout`: how long a pull stays open after its last viewer.
pub const DEFAULT_CLIENTS_TIMEOUT: Duration = Duration::from_secs(30);

/// Range accepted for `clients_timeout` (seconds in the config).
pub const CLIENTS_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 0..=86_400_000;

/// How a stream's pull is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullMode {
    /// Always pulled (`static`, a `stream` with an `m4s://` input, a recorded stream).
    Static,
    /// Pulled while watched, and `clients_timeout` after the last viewer left.
    OnDemand { clients_timeout: Duration },
}

/// What the API shows of a stream's pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullState {
    /// Nobody watches: no connection is open.
    Idle,
    /// Wanted, the pull is open, and no media has arrived on it yet.
    Starting,
    /// Wanted, and media arrived since the pull opened.
    Running,
}

#[derive(Clone, Debug)]
pub struct Demand {
    mode: PullMode,
    /// Held viewers now.
    held: u32,
    /// Until when the stream stays wanted without a held viewer: the last passing
    /// viewer, or the last held one leaving, plus `clients_timeout`.
    linger_until: Option<Duration>,
    /// Whether the pull is open (the last answer of `wants_pull`).
    open: bool,
    /// Whether media arrived since the pull last opened.
    media_since_open: bool,
}

impl Demand {
    pub fn new(mode: PullMode) -> Self {
        let open = mode == PullMode::Static;
        Demand {
            mode,
            held: 0,
            linger_until: None,
            open,
            media_since_open: false,
        }
    }

    pub fn mode(&self) -> PullMode {
        self.mode
    }

    /// A held viewer arrived (its response is open).
    pub fn handle_viewer_joined(&mut self, now: Duration) {
        self.held = self.held.saturating_add(1);
        self.update(now);
    }

    /// A held viewer left. It keeps the stream wanted for `clients_timeout`.
    pub fn handle_viewer_left(&mut self, now: Duration) {
        self.held = self.held.saturating_sub(1);
        self.extend_linger(now);
        self.update(now);
    }

    /// A passing viewer (one HLS request) was served.
    pub fn handle_viewer_passed(&mut self, now: Duration) {
        self.extend_linger(now);
        self.update(now);
    }

    /// Media arrived on the pull.
    pub fn handle_media(&mut self, _now: Duration) {
        if self.open {
            self.media_since_open = true;
        }
    }

    /// The deadline of `poll_timeout` passed (or any later time).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.update(now);
    }

    /// When `handle_timeout` must be called next: the end of the linger, while the
    /// pull is open without a held viewer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.mode {
            PullMode::Static => None,
            PullMode::OnDemand { .. } if self.open && self.held == 0 => self.linger_until,
            PullMode::OnDemand { .. } => None,
        }
    }

    /// Whether the stream's input should be connected now.
    pub fn wants_pull(&self) -> bool {
        self.open
    }

    pub fn state(&self) -> PullState {
        match (self.open, self.media_since_open) {
            (false, _) => PullState::Idle,
            (true, false) => PullState::Starting,
            (true, true) => PullState::Running,
        }
    }

    /// Held viewers now (the API's `online_clients` for streaming responses).
    pub fn viewers(&self) -> u32 {
        self.held
    }

    fn extend_linger(&mut self, now: Duration) {
        if let PullMode::OnDemand { clients_timeout } = self.mode {
            let until = now.saturating_add(clients_timeout);
            self.linger_until = Some(self.linger_until.map_or(until, |u| u.max(until)));
        }
    }

    fn update(&mut self, now: Duration) {
        let want = match self.mode {
            PullMode::Static => true,
            PullMode::OnDemand { .. } => {
                self.held > 0 || self.linger_until.is_some_and(|u| now < u)
            }
        };
        if want && !self.open {
            self.open = true;
            self.media_since_open = false;
        } else if !want && self.open {
            self.open = false;
            self.media_since_open = false;
            self.linger_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn on_demand(timeout: u64) -> Demand {
        Demand::new(PullMode::OnDemand {
            clients_timeout: s(timeout),
        })
    }

    #[test]
    fn static_is_always_pulled_and_never_times_out() {
        let mut d = Demand::new(PullMode::Static);
        assert!(d.wants_pull());
        assert_eq!(d.state(), PullState::Starting);
        d.handle_viewer_joined(s(1));
        d.handle_viewer_left(s(2));
        d.handle_timeout(s(1000));
        assert!(d.wants_pull());
        assert_eq!(d.poll_timeout(), None);
        d.handle_media(s(1001));
        assert_eq!(d.state(), PullState::Running);
    }

    #[test]
    fn first_viewer_opens_and_the_last_closes_after_the_timeout() {
        let mut d = on_demand(30);
        assert!(!d.wants_pull());
        assert_eq!(d.state(), PullState::Idle);
        d.handle_viewer_joined(s(10));
        assert!(d.wants_pull());
        assert_eq!(d.state(), PullState::Starting);
        d.handle_media(s(10));
        assert_eq!(d.state(), PullState::Running);
        d.handle_viewer_joined(s(11));
        d.handle_viewer_left(s(20));
        // One viewer still holds it: no deadline.
        assert_eq!(d.poll_timeout(), None);
        d.handle_viewer_left(s(40));
        assert_eq!(d.poll_timeout(), Some(s(70)));
        d.handle_timeout(s(69));
        assert!(d.wants_pull());
        d.handle_timeout(s(70));
        assert!(!d.wants_pull());
        assert_eq!(d.state(), PullState::Idle);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_viewer_returning_within_the_timeout_keeps_the_pull() {
        let mut d = on_demand(30);
        d.handle_viewer_joined(s(0));
        d.handle_media(s(0));
        d.handle_viewer_left(s(5));
        d.handle_viewer_joined(s(20));
        d.handle_timeout(s(35));
        assert!(d.wants_pull());
        assert_eq!(d.state(), PullState::Running, "never reopened");
        d.handle_viewer_left(s(50));
        assert_eq!(d.poll_timeout(), Some(s(80)));
    }

    #[test]
    fn hls_requests_keep_the_stream_wanted_while_they_come() {
        let mut d = on_demand(3);
        for t in [0, 2, 4, 6] {
            d.handle_viewer_passed(s(t));
            d.handle_timeout(s(t));
            assert!(d.wants_pull(), "at {t}s");
        }
        assert_eq!(d.poll_timeout(), Some(s(9)));
        d.handle_timeout(s(9));
        assert!(!d.wants_pull());
    }

    #[test]
    fn reopening_waits_for_new_media_before_running() {
        let mut d = on_demand(1);
        d.handle_viewer_passed(s(0));
        d.handle_media(s(0));
        d.handle_timeout(s(1));
        assert_eq!(d.state(), PullState::Idle);
        // Media still in flight from the closed pull does not count.
        d.handle_media(s(1));
        d.handle_viewer_joined(s(2));
        assert_eq!(d.state(), PullState::Starting);
        d.handle_media(s(2));
        assert_eq!(d.state(), PullState::Running);
    }

    #[test]
    fn a_zero_timeout_closes_when_the_last_viewer_leaves() {
        let mut d = on_demand(0);
        d.handle_viewer_joined(s(1));
        d.handle_viewer_left(s(2));
        assert!(!d.wants_pull());
    }

    #[test]
    fn more_leaves_than_joins_never_underflow() {
        let mut d = on_demand(1);
        d.handle_viewer_left(s(0));
        assert_eq!(d.viewers(), 0);
        assert!(d.wants_pull(), "a leave counts as a passing viewer");
        d.handle_timeout(s(1));
        assert!(!d.wants_pull());
    }
}
