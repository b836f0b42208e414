//! Rate limit for log lines that a client can cause (refused connections, failed
//! auth, failed accepts): one line per cause per interval, with the count of what
//! happened since the last line, so a flood costs a few lines, not megabytes.
//!
//! Owns: the counting and the decision to log. Must not: read a clock or log
//! itself (the caller passes the time and writes the line).

use std::collections::BTreeMap;

/// Default interval between two lines of one cause.
pub const DEFAULT_LOG_INTERVAL_MS: u64 = 10_000;

/// Counts events per cause `K` and says when to log.
#[derive(Debug)]
pub struct LogLimiter<K: Ord> {
    interval_ms: u64,
    causes: BTreeMap<K, Cause>,
}

#[derive(Debug)]
struct Cause {
    last_logged_ms: u64,
    suppressed: u64,
}

impl<K: Ord> LogLimiter<K> {
    pub fn new(interval_ms: u64) -> Self {
        LogLimiter {
            interval_ms,
            causes: BTreeMap::new(),
        }
    }

    /// One event of `cause` at `now_ms`. `Some(n)`: log a line now, reporting `n`
    /// events (this one and the ones not logged since the last line); `None`: only
    /// counted.
    pub fn hit(&mut self, cause: K, now_ms: u64) -> Option<u64> {
        match self.causes.get_mut(&cause) {
            None => {
                self.causes.insert(
                    cause,
                    Cause {
                        last_logged_ms: now_ms,
                        suppressed: 0,
                    },
                );
                Some(1)
            }
            Some(c) if now_ms.saturating_sub(c.last_logged_ms) >= self.interval_ms => {
                let n = c.suppressed + 1;
                c.suppressed = 0;
                c.last_logged_ms = now_ms;
                Some(n)
            }
            Some(c) => {
                c.suppressed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_interval_with_the_count() {
        let mut l = LogLimiter::new(1000);
        assert_eq!(l.hit("auth", 0), Some(1));
        let logged: Vec<_> = (1..20_000).filter_map(|i| l.hit("auth", i / 100)).collect();
        // 20 000 events over 200 ms: nothing more logged yet.
        assert!(logged.is_empty(), "{logged:?}");
        assert_eq!(l.hit("other", 150), Some(1));
        assert_eq!(l.hit("auth", 1000), Some(20_000));
        assert_eq!(l.hit("auth", 1001), None);
        assert_eq!(l.hit("auth", 2000), Some(2));
    }
}
