//! Input failover for a stream with several `input` lines (docs/design.md §2): which input
//! is active, when to give up on it, when to go back to a better one.
//!
//! Rules: inputs are ranked in config order (after `priority=`). The active input's
//! frames are published; when it has delivered nothing for its `source_timeout`, the
//! next one takes over (after the last, the first again) and publishing resumes at
//! the new input's next video keyframe. A better-ranked input that delivers a video
//! keyframe takes over again at once. Inputs ranked at or above the best one tried
//! since the last return keep running (so the primary is retried all the time); the
//! ones below are stopped, so a backup costs nothing while the primary is fine.
//!
//! Owns: the switching decisions. Must not: read clocks, do I/O, or look into frames
//! beyond "is this a video keyframe".

use std::collections::VecDeque;
use std::time::Duration;

/// Default `source_timeout`.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailoverEvent {
    /// Publishing now follows input `to` (index in rank order).
    Switched {
        from: usize,
        to: usize,
        reason: SwitchReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// The active input was silent for its source timeout.
    Timeout,
    /// A better-ranked input delivers again.
    Recovered,
}

#[derive(Debug)]
pub struct Failover {
    timeouts: Vec<Duration>,
    active: usize,
    /// The active input has not yet delivered a keyframe since it became active.
    awaiting_keyframe: bool,
    /// When the active input last delivered (or became active).
    last_active_frame: Duration,
    /// Highest index that should be running.
    max_running: usize,
    events: VecDeque<FailoverEvent>,
}

impl Failover {
    /// `timeouts[i]`: the source timeout of input `i`, in rank order. At least one.
    pub fn new(timeouts: Vec<Duration>, now: Duration) -> Self {
        let timeouts = if timeouts.is_empty() {
            vec![DEFAULT_SOURCE_TIMEOUT]
        } else {
            timeouts
        };
        Self {
            timeouts,
            active: 0,
            awaiting_keyframe: false,
            last_active_frame: now,
            max_running: 0,
            events: VecDeque::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// Whether input `i` should be running now.
    pub fn should_run(&self, i: usize) -> bool {
        i <= self.max_running
    }

    /// A frame from input `index`; returns whether to publish it.
    pub fn handle_frame(&mut self, now: Duration, index: usize, video_keyframe: bool) -> bool {
        if index == self.active {
            if self.awaiting_keyframe && !video_keyframe {
                self.last_active_frame = now;
                return false;
            }
            self.awaiting_keyframe = false;
            self.last_active_frame = now;
            return true;
        }
        if index < self.active && video_keyframe {
            let from = self.active;
            self.active = index;
            self.max_running = index;
            self.awaiting_keyframe = false;
            self.last_active_frame = now;
            self.events.push_back(FailoverEvent::Switched {
                from,
                to: index,
                reason: SwitchReason::Recovered,
            });
            return true;
        }
        false
    }

    /// When `handle_timeout` must be called next (only meaningful with 2+ inputs).
    pub fn poll_timeout(&self) -> Option<Duration> {
        (self.timeouts.len() > 1).then(|| self.last_active_frame + self.timeouts[self.active])
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        let n = self.timeouts.len();
        if n < 2 || now < self.last_active_frame + self.timeouts[self.active] {
            return;
        }
        let from = self.active;
        self.active = (self.active + 1) % n;
        if self.active == 0 {
            // Every backup tried: keep them all running; whoever delivers a keyframe
            // first among the better ones takes over.
            self.max_running = n - 1;
        } else {
            self.max_running = self.max_running.max(self.active);
        }
        self.awaiting_keyframe = true;
        self.last_active_frame = now;
        self.events.push_back(FailoverEvent::Switched {
            from,
            to: self.active,
            reason: SwitchReason::Timeout,
        });
    }

    pub fn poll_event(&mut self) -> Option<FailoverEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn switches_on_silence_and_back_on_keyframe() {
        let mut f = Failover::new(vec![3 * S, 3 * S], Duration::ZERO);
        assert!(f.should_run(0) && !f.should_run(1));
        assert!(f.handle_frame(S, 0, true));
        assert!(
            !f.handle_frame(S, 1, true),
            "backup ignored while primary is fine"
        );
        assert_eq!(f.poll_timeout(), Some(4 * S));
        f.handle_timeout(4 * S - Duration::from_millis(1));
        assert_eq!(f.poll_event(), None);
        f.handle_timeout(4 * S);
        assert_eq!(
            f.poll_event(),
            Some(FailoverEvent::Switched {
                from: 0,
                to: 1,
                reason: SwitchReason::Timeout
            })
        );
        assert!(f.should_run(0) && f.should_run(1));
        assert!(
            !f.handle_frame(5 * S, 1, false),
            "waits for the backup's keyframe"
        );
        assert!(f.handle_frame(5 * S, 1, true));
        assert!(f.handle_frame(5 * S, 1, false));
        assert!(
            !f.handle_frame(6 * S, 0, false),
            "primary back, but not at a keyframe"
        );
        assert!(f.handle_frame(6 * S, 0, true));
        assert_eq!(
            f.poll_event(),
            Some(FailoverEvent::Switched {
                from: 1,
                to: 0,
                reason: SwitchReason::Recovered
            })
        );
        assert!(!f.should_run(1));
        assert!(!f.handle_frame(6 * S, 1, true));
    }

    #[test]
    fn wraps_around_and_single_input_never_times_out() {
        let mut f = Failover::new(vec![S, S, S], Duration::ZERO);
        f.handle_timeout(S);
        f.handle_timeout(2 * S);
        f.handle_timeout(3 * S);
        assert_eq!(f.active(), 0);
        assert!(f.should_run(2));
        let mut one = Failover::new(vec![S], Duration::ZERO);
        assert_eq!(one.poll_timeout(), None);
        one.handle_timeout(100 * S);
        assert_eq!(one.active(), 0);
        assert_eq!(one.poll_event(), None);
    }
}
