//! HTTP connection limits and the decisions made from them: whether a new
//! connection is admitted, and when an open one is cut (a request head that never
//! ends, an idle keep-alive connection, a reader that takes nothing).
//!
//! Owns: the limit values and their defaults, [`admit`] and [`cut_due`], pure
//! functions of counts and times the caller passes in. Must not: read a clock,
//! count connections itself or touch a socket (that is the node's `http::guard`).

use std::fmt;

/// Default most HTTP connections open at once (lowered further to fit the
/// descriptor limit, see [`effective_max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;
/// Default time a client has to send a whole request head.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default time a response may wait on a reader that takes nothing.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 60_000;
/// File descriptors kept back from HTTP connections for the DVR (segment files,
/// temporary files, journals), cluster connections, listeners and logs.
pub const FD_RESERVE: u64 = 256;

/// The limits of one node's HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once; more are answered 503 and closed.
    pub max_connections: u32,
    /// Most connections from one client IP; `None`: no per-IP limit (the default:
    /// many viewers share an address behind NAT).
    pub max_per_ip: Option<u32>,
    /// A request head must arrive whole within this time of its first byte.
    pub header_timeout_ms: u64,
    /// A connection with no request in progress is closed after this time.
    pub idle_timeout_ms: u64,
    /// A response whose writes have been blocked (the reader takes nothing) for
    /// this long is cut.
    pub stall_timeout_ms: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: None,
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            stall_timeout_ms: DEFAULT_STALL_TIMEOUT_MS,
        }
    }
}

/// The connection limit that leaves [`FD_RESERVE`] descriptors free under a
/// descriptor limit of `fd_limit` (one descriptor per connection).
pub fn effective_max_connections(configured: u32, fd_limit: Option<u64>) -> u32 {
    match fd_limit {
        Some(fds) => {
            let room = fds.saturating_sub(FD_RESERVE).max(1);
            configured.min(u32::try_from(room).unwrap_or(u32::MAX))
        }
        None => configured,
    }
}

/// Why a connection is refused or cut. Also the key of rate-limited log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The node is at `max_connections`.
    TooManyConnections,
    /// The client's address is at `max_connections_per_ip`.
    TooManyFromIp,
    /// The request head did not arrive within `header_timeout`.
    HeaderTimeout,
    /// No request for `idle_timeout`.
    Idle,
    /// The reader took nothing for `stall_timeout`.
    Stalled,
    /// A cluster request whose auth failed.
    ClusterAuth,
    /// `accept` failed (out of descriptors and the like).
    AcceptFailed,
    /// An API or status-page request without the `view_auth` / `edit_auth`
    /// credentials it needs.
    ApiAuth,
    /// A live cluster pull refused at `cluster_bandwidth`.
    Bandwidth,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::TooManyConnections => "connection refused: max_connections reached",
            Refusal::TooManyFromIp => "connection refused: max_connections_per_ip reached",
            Refusal::HeaderTimeout => "connection closed: request head not sent in time",
            Refusal::Idle => "connection closed: idle",
            Refusal::Stalled => "connection cut: the reader took nothing",
            Refusal::ClusterAuth => "cluster request refused: auth failed",
            Refusal::AcceptFailed => "accept failed",
            Refusal::ApiAuth => "API request refused: credentials",
            Refusal::Bandwidth => "cluster pull refused: cluster_bandwidth reached",
        })
    }
}

/// Whether one more connection is admitted, with `open` connections open now and
/// `open_from_ip` of them from the new one's address.
pub fn admit(limits: &ConnLimits, open: u32, open_from_ip: u32) -> Result<(), Refusal> {
    if open >= limits.max_connections {
        return Err(Refusal::TooManyConnections);
    }
    if limits.max_per_ip.is_some_and(|m| open_from_ip >= m) {
        return Err(Refusal::TooManyFromIp);
    }
    Ok(())
}

/// What a connection is doing, with the time (ms, any monotonic origin) it
/// started doing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnPhase {
    /// Waiting for a request (new, or between keep-alive requests).
    Idle { since_ms: u64 },
    /// Part of a request head has arrived.
    ReadingHead { since_ms: u64 },
    /// A response is going out; `blocked_since_ms` is when its writes last
    /// started waiting on the reader, `None` while they go through.
    Responding { blocked_since_ms: Option<u64> },
}

/// Whether a connection in `phase` is due to be cut at `now_ms`.
pub fn cut_due(limits: &ConnLimits, phase: ConnPhase, now_ms: u64) -> Option<Refusal> {
    let over = |since: u64, limit: u64| now_ms.saturating_sub(since) >= limit;
    match phase {
        ConnPhase::Idle { since_ms } if over(since_ms, limits.idle_timeout_ms) => {
            Some(Refusal::Idle)
        }
        ConnPhase::ReadingHead { since_ms } if over(since_ms, limits.header_timeout_ms) => {
            Some(Refusal::HeaderTimeout)
        }
        ConnPhase::Responding {
            blocked_since_ms: Some(since),
        } if over(since, limits.stall_timeout_ms) => Some(Refusal::Stalled),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission() {
        let mut l = ConnLimits {
            max_connections: 3,
            ..ConnLimits::default()
        };
        assert_eq!(admit(&l, 2, 2), Ok(()));
        assert_eq!(admit(&l, 3, 0), Err(Refusal::TooManyConnections));
        // Off by default: one address may take every slot.
        assert_eq!(admit(&l, 2, 100), Ok(()));
        l.max_per_ip = Some(2);
        assert_eq!(admit(&l, 2, 2), Err(Refusal::TooManyFromIp));
        assert_eq!(admit(&l, 2, 1), Ok(()));
    }

    #[test]
    fn descriptor_room() {
        assert_eq!(effective_max_connections(4096, Some(1024)), 768);
        assert_eq!(effective_max_connections(100, Some(1 << 20)), 100);
        assert_eq!(effective_max_connections(100, Some(10)), 1);
        assert_eq!(effective_max_connections(100, None), 100);
    }

    #[test]
    fn cuts() {
        let l = ConnLimits::default();
        let idle = ConnPhase::Idle { since_ms: 1000 };
        assert_eq!(cut_due(&l, idle, 60_999), None);
        assert_eq!(cut_due(&l, idle, 61_000), Some(Refusal::Idle));
        let head = ConnPhase::ReadingHead { since_ms: 0 };
        assert_eq!(cut_due(&l, head, 9_999), None);
        assert_eq!(cut_due(&l, head, 10_000), Some(Refusal::HeaderTimeout));
        let flowing = ConnPhase::Responding {
            blocked_since_ms: None,
        };
        assert_eq!(cut_due(&l, flowing, u64::MAX), None);
        let blocked = ConnPhase::Responding {
            blocked_since_ms: Some(5),
        };
        assert_eq!(cut_due(&l, blocked, 60_004), None);
        assert_eq!(cut_due(&l, blocked, 60_005), Some(Refusal::Stalled));
        // A clock that goes backwards never cuts.
        assert_eq!(cut_due(&l, head, 0), None);
    }
}
