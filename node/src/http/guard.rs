//! The one place every HTTP connection goes through, whatever it serves (players,
//! the API, archive responses, cluster endpoints): admission (total and per-IP
//! connection counts), the header-read and idle timeouts, the stalled-reader cut,
//! and rate-limited log lines for refusals.
//!
//! Owns: [`Guard`] (counts and the refusal log of one node), [`GuardedIo`] (watches
//! a connection's reads and writes), [`GuardedBody`] (marks a response as in
//! progress until hyper drops it) and [`watch`] (says when to cut). The decisions
//! themselves are `tern_core::limits`. Must not: know URLs or outputs, buffer
//! anything, or read the real clock (tokio's clock, which the simulation drives).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tern_core::limits::{admit, cut_due, ConnLimits, ConnPhase, Refusal};
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::warn;

use crate::http::body::Body;

/// Refusals of one node, logged at most one line per cause per 10 s with the
/// count (shared by the connection guard and the cluster endpoints).
pub struct RefusalLog {
    origin: tokio::time::Instant,
    log: Mutex<LogLimiter<Refusal>>,
}

impl RefusalLog {
    pub fn new() -> Arc<Self> {
        Arc::new(RefusalLog {
            origin: tokio::time::Instant::now(),
            log: Mutex::new(LogLimiter::new(DEFAULT_LOG_INTERVAL_MS)),
        })
    }

    /// Milliseconds since the log was made (tokio's clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Logs a refusal unless one of the same cause was logged in the last 10 s;
    /// the line counts the refusals since the previous line.
    pub fn refused(&self, cause: Refusal, detail: &dyn std::fmt::Display) {
        let now = self.now_ms();
        if let Some(count) = lock(&self.log).hit(cause, now) {
            warn!(%cause, count, last = %detail, "refused (one line per cause per 10 s)");
        }
    }
}

/// Counts open connections for one node.
pub struct Guard {
    limits: ConnLimits,
    log: Arc<RefusalLog>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: u32,
    by_ip: BTreeMap<IpAddr, u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guard {
    /// `limits.max_connections` should already fit the descriptor limit
    /// (`tern_core::limits::effective_max_connections`).
    pub fn new(limits: ConnLimits, log: Arc<RefusalLog>) -> Arc<Self> {
        Arc::new(Guard {
            limits,
            log,
            open: Mutex::new(Open::default()),
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Milliseconds on the refusal log's clock (tokio's clock).
    pub fn now_ms(&self) -> u64 {
        self.log.now_ms()
    }

    /// Open connections now.
    pub fn open_connections(&self) -> u32 {
        lock(&self.open).total
    }

    /// Admits a connection from `ip`, or says why not. The ticket holds the slot
    /// until dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnTicket, Refusal> {
        let mut open = lock(&self.open);
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        admit(&self.limits, open.total, from_ip)?;
        open.total += 1;
        *open.by_ip.entry(ip).or_insert(0) += 1;
        Ok(ConnTicket {
            guard: self.clone(),
            ip,
        })
    }

    /// Logs a refusal, rate-limited ([`RefusalLog`]).
    pub fn refused(&self, cause: Refusal, detail: &dyn std::fmt::Display) {
        self.log.refused(cause, detail);
    }
}

/// An admitted connection's slot.
pub struct ConnTicket {
    guard: Arc<Guard>,
    ip: IpAddr,
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let mut open = lock(&self.guard.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// What one connection is doing (shared by its I/O, its responses and its watch).
pub struct ConnState {
    guard: Arc<Guard>,
    inner: Mutex<StateInner>,
    /// Whether `inner`'s phase is `Responding` with writes blocked: lets a write
    /// that changes nothing skip the lock and the clock.
    blocked: AtomicBool,
}

struct StateInner {
    phase: ConnPhase,
    responses: u32,
}

impl ConnState {
    pub fn new(guard: Arc<Guard>) -> Arc<Self> {
        let since_ms = guard.now_ms();
        Arc::new(ConnState {
            guard,
            inner: Mutex::new(StateInner {
                phase: ConnPhase::Idle { since_ms },
                responses: 0,
            }),
            blocked: AtomicBool::new(false),
        })
    }

    fn update(&self, f: impl FnOnce(&mut StateInner, u64)) {
        let now = self.guard.now_ms();
        let mut s = lock(&self.inner);
        f(&mut s, now);
        let blocked = matches!(
            s.phase,
            ConnPhase::Responding {
                blocked_since_ms: Some(_)
            }
        );
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// Whether the connection is due to be cut now, and why (`tern_core::limits`).
    pub fn cut_due(&self) -> Option<Refusal> {
        cut_due(self.guard.limits(), self.phase(), self.guard.now_ms())
    }

    /// Logs a refusal or cut of this connection, rate-limited ([`RefusalLog`]).
    pub fn refused(&self, cause: Refusal, detail: &dyn std::fmt::Display) {
        self.guard.refused(cause, detail);
    }

    /// A request was dispatched: a response is in progress until the returned
    /// value (wrapped into the body by [`GuardedBody`]) is dropped.
    pub fn begin_response(self: &Arc<Self>) -> ResponseTicket {
        self.update(|s, _| {
            s.responses += 1;
            if !matches!(s.phase, ConnPhase::Responding { .. }) {
                s.phase = ConnPhase::Responding {
                    blocked_since_ms: None,
                };
            }
        });
        ResponseTicket(self.clone())
    }

    fn phase(&self) -> ConnPhase {
        lock(&self.inner).phase
    }
}

/// A response in progress.
pub struct ResponseTicket(Arc<ConnState>);

impl Drop for ResponseTicket {
    fn drop(&mut self) {
        self.0.update(|s, now| {
            s.responses = s.responses.saturating_sub(1);
            if s.responses == 0 {
                s.phase = ConnPhase::Idle { since_ms: now };
            }
        });
    }
}

/// A connection's stream, watched: the first bytes of a request head start the
/// header timer; writes that wait on the reader start the stall timer.
pub struct GuardedIo<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> GuardedIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Self {
        GuardedIo { inner, state }
    }

    fn wrote(&self, pending: bool) {
        // Most writes change nothing (not blocked before, not now): no lock.
        if pending == self.state.blocked.load(Ordering::Relaxed) {
            return;
        }
        self.state.update(|s, now| {
            if let ConnPhase::Responding { blocked_since_ms } = &mut s.phase {
                match (pending, *blocked_since_ms) {
                    (true, None) => *blocked_since_ms = Some(now),
                    (false, Some(_)) => *blocked_since_ms = None,
                    _ => {}
                }
            }
        });
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.update(|s, now| {
                if let ConnPhase::Idle { .. } = s.phase {
                    s.phase = ConnPhase::ReadingHead { since_ms: now };
                }
            });
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r.is_pending());
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(r.is_pending());
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection taken out of hyper after its request head, to be written by an
/// output's own writer (`output::ts_writer`): its slot, its state (which its
/// [`GuardedIo`] keeps up to date) and its response in progress. The writer asks
/// [`Handed::cut_due`] — the same decision [`watch`] makes — at least once a second.
pub struct Handed {
    pub state: Arc<ConnState>,
    _ticket: ConnTicket,
    _response: ResponseTicket,
}

impl Handed {
    pub fn new(state: Arc<ConnState>, ticket: ConnTicket, response: ResponseTicket) -> Self {
        Handed {
            state,
            _ticket: ticket,
            _response: response,
        }
    }

    pub fn cut_due(&self) -> Option<Refusal> {
        self.state.cut_due()
    }
}

/// A response body that keeps its response "in progress" until hyper drops it.
pub struct GuardedBody {
    inner: Body,
    _ticket: ResponseTicket,
}

impl GuardedBody {
    pub fn new(inner: Body, ticket: ResponseTicket) -> Self {
        GuardedBody {
            inner,
            _ticket: ticket,
        }
    }
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves when the connection is due to be cut, with the reason. Checks a few
/// times per shortest timeout (at most once a second, at least every 50 ms).
#[allow(clippy::disallowed_methods)] // driver: ticks the pure cut_due decision of a connection
pub async fn watch(state: Arc<ConnState>) -> Refusal {
    let limits = *state.guard.limits();
    let shortest = limits
        .header_timeout_ms
        .min(limits.idle_timeout_ms)
        .min(limits.stall_timeout_ms);
    let tick = Duration::from_millis((shortest / 4).clamp(50, 1000));
    loop {
        tokio::time::sleep(tick).await;
        if let Some(cause) = cut_due(&limits, state.phase(), state.guard.now_ms()) {
            return cause;
        }
    }
}

/// The answer to a connection refused at admission, written before closing it.
pub fn refused_response() -> Vec<u8> {
    let body = "this node is at its connection limit; retry later\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\nretry-after: 5\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
