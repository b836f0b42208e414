//! Live MPEG-TS writers: a few tasks per stream (one per runtime worker), each
//! owning the sockets of many `/NAME/mpegts` viewers. The hub hands each writer
//! every muxed chunk once ([`TsSink`]); the writer keeps the last
//! [`FANOUT_CAPACITY`] in a ring and, when woken, writes to each viewer whatever
//! it has not sent yet as one chunk of the HTTP/1.1 chunked body, with one
//! vectored write of the shared `Bytes` (no copy of frame bytes per viewer, no
//! task, channel or hyper body per viewer).
//!
//! A viewer's socket is read only every cut tick, to see its client close (a
//! write to a closed socket fails too, but not on every transport).
//!
//! Owns: the viewers' places in the ring (a viewer behind the ring's start skips
//! to the next keyframe and sends its resync packets first), the chunked framing,
//! and cutting a viewer whose socket takes nothing for [`VIEWER_STALL_TIMEOUT`]
//! (its body ends: no more chunks, then the chunked body's last chunk; the socket
//! closes once that is written, or at the guard's own stall cut).
//! The connection's own limits (the stall and idle cuts, its slot) stay with
//! `http::guard`: the writer writes through its `GuardedIo` and asks
//! `Handed::cut_due` every tick. Must not: mux, copy frame bytes, or block on one
//! viewer.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tern_core::limits::Refusal;
use tern_core::mux::live_ts::TsChunk;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::http::body::LiveTsStart;
use crate::http::guard::Handed;
use crate::hub::{StreamHub, TsJoin, TsSink, FANOUT_CAPACITY, VIEWER_STALL_TIMEOUT};

/// Shared chunks one vectored write carries at most (one HTTP chunk).
const MAX_IOVECS: usize = 64;
/// Viewer writes one poll of a writer makes before it yields to other tasks.
const WRITE_BUDGET: usize = 1024;
/// How often a writer looks for viewers to cut.
const CUT_TICK: Duration = Duration::from_millis(500);
/// A writer writes new chunks to its viewers at most this often (one frame at
/// 25 fps): a frame's video and audio chunks go out in one write, so there are
/// fewer writes (and wake-ups of the readers) per byte. A new viewer's first
/// bytes, and the rest of a write its socket took only partly, go out at once.
pub const TS_COALESCE: Duration = Duration::from_millis(40);

/// A viewer's socket: written by the writer, read only to see it close.
pub trait ViewerIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ViewerIo for T {}

/// A viewer's connection, taken from hyper after its request head.
pub struct TsConn {
    pub io: Box<dyn ViewerIo>,
    pub handed: Handed,
    /// The response head, written first.
    pub head: Bytes,
    pub peer: SocketAddr,
}

/// Hands a live MPEG-TS viewer to one of its stream's writers (starting one if
/// the stream has fewer than one per runtime worker).
pub fn join(start: LiveTsStart, conn: TsConn) {
    let LiveTsStart { hub, hold } = start;
    let writers = tokio::runtime::Handle::try_current()
        .map_or(1, |h| h.metrics().num_workers())
        .max(1);
    let h = hub.clone();
    hub.join_ts(move |j: TsJoin<'_>| {
        let viewer = Viewer::new(conn, hold, j.gop, j.next_seq);
        let least = j
            .sinks
            .iter()
            .filter_map(|s| s.as_any().downcast_ref::<Shared>().map(|w| (s, w)))
            .filter(|(_, w)| w.lock().alive)
            .min_by_key(|(_, w)| w.load());
        let viewer = match least {
            Some((_, w)) if j.sinks.len() >= writers => match w.add(viewer) {
                Ok(()) => return,
                Err(v) => *v,
            },
            _ => viewer,
        };
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox {
                chunks: VecDeque::new(),
                joins: Vec::new(),
                waker: None,
                alive: true,
                closed: false,
            }),
            viewers: AtomicUsize::new(0),
        });
        if shared.add(viewer).is_ok() {
            j.sinks.push(shared.clone());
            spawn(h, shared);
        }
    });
}

#[allow(clippy::disallowed_methods)] // driver: one writer task per runtime worker and stream, with its cut tick
fn spawn(hub: Arc<StreamHub>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CUT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let h = hub.clone();
    let mut w = Writer {
        shared,
        ring: VecDeque::new(),
        viewers: Vec::new(),
        closed: Box::pin(async move { h.closed().await }),
        tick,
        flush: Box::pin(tokio::time::sleep(Duration::ZERO)),
        flush_armed: false,
        next: 0,
        hub,
    };
    // The writer yields by its own budget (WRITE_BUDGET), not tokio's: a
    // budget of 128 socket operations per poll would make it re-run for every
    // 128 viewers.
    tokio::spawn(tokio::task::unconstrained(std::future::poll_fn(
        move |cx| w.poll(cx),
    )));
}

/// What the hub and joining viewers share with a writer.
struct Shared {
    inbox: Mutex<Inbox>,
    /// Viewers served (for balancing).
    viewers: AtomicUsize,
}

struct Inbox {
    /// Chunks not yet taken into the ring (at most `FANOUT_CAPACITY`).
    chunks: VecDeque<(u64, TsChunk)>,
    joins: Vec<Viewer>,
    waker: Option<Waker>,
    /// `false` once the writer ended: nothing more is taken.
    alive: bool,
    /// The stream's live TS ended.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a viewer for the writer; gives it back if the writer has ended.
    fn add(&self, v: Viewer) -> Result<(), Box<Viewer>> {
        let mut inbox = self.lock();
        if !inbox.alive || inbox.closed {
            return Err(Box::new(v));
        }
        inbox.joins.push(v);
        self.viewers.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = &inbox.waker {
            w.wake_by_ref();
        }
        Ok(())
    }
}

impl TsSink for Shared {
    fn push(&self, seq: u64, chunk: &TsChunk) -> bool {
        let mut inbox = self.lock();
        if !inbox.alive {
            return false;
        }
        inbox.chunks.push_back((seq, chunk.clone()));
        if inbox.chunks.len() > FANOUT_CAPACITY {
            inbox.chunks.pop_front();
        }
        if let Some(w) = &inbox.waker {
            w.wake_by_ref();
        }
        true
    }

    fn close(&self) {
        let mut inbox = self.lock();
        inbox.closed = true;
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }

    fn load(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Writer {
    shared: Arc<Shared>,
    /// The last `FANOUT_CAPACITY` chunks, in sequence order without gaps.
    ring: VecDeque<(u64, TsChunk)>,
    viewers: Vec<Viewer>,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    tick: tokio::time::Interval,
    /// When the chunks that came since the last write go out (`TS_COALESCE`).
    flush: Pin<Box<tokio::time::Sleep>>,
    flush_armed: bool,
    /// Where the next poll starts writing (round robin when the budget runs out).
    next: usize,
    hub: Arc<StreamHub>,
}

impl Writer {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return self.end();
        }
        let mut cut = false;
        while self.tick.poll_tick(cx).is_ready() {
            cut = true;
        }
        {
            let mut inbox = self.shared.lock();
            if inbox.closed {
                drop(inbox);
                return self.end();
            }
            if let (Some((last, _)), Some((first, _))) = (self.ring.back(), inbox.chunks.front()) {
                if *first != last + 1 {
                    // The inbox overflowed (this writer was starved): the ring
                    // restarts, and its viewers skip to a keyframe.
                    self.ring.clear();
                }
            }
            if !inbox.chunks.is_empty() && !self.flush_armed {
                self.flush_armed = true;
                self.flush
                    .as_mut()
                    .reset(tokio::time::Instant::now() + TS_COALESCE);
            }
            self.ring.extend(inbox.chunks.drain(..));
            self.viewers.append(&mut inbox.joins);
            if self.viewers.is_empty() {
                inbox.alive = false;
                return Poll::Ready(());
            }
            if !inbox
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inbox.waker = Some(cx.waker().clone());
            }
        }
        while self.ring.len() > FANOUT_CAPACITY {
            self.ring.pop_front();
        }
        if cut {
            self.cut(cx);
        }
        let due = self.flush_armed && self.flush.as_mut().poll(cx).is_ready();
        if due {
            self.flush_armed = false;
        }
        let n = self.viewers.len();
        let mut budget = WRITE_BUDGET;
        let mut sent = 0;
        let mut gone = Vec::new();
        let start = self.next.min(n.saturating_sub(1));
        for k in 0..n {
            let i = (start + k) % n;
            if budget == 0 {
                self.next = i;
                cx.waker().wake_by_ref();
                break;
            }
            if !due && !self.viewers[i].urgent() {
                continue;
            }
            let v = &mut self.viewers[i];
            let r = v.pump(&self.ring, cx, &mut budget);
            if v.skips > 0 {
                self.hub.clients.skipped(std::mem::take(&mut v.skips));
            }
            match r {
                Ok(b) if v.ending && !v.has_data() => {
                    sent += b;
                    debug!(peer = %v.conn.peer, "mpegts viewer's body ended");
                    gone.push(i);
                }
                Ok(b) => sent += b,
                Err(e) => {
                    debug!(peer = %self.viewers[i].conn.peer, error = %e, "mpegts viewer left");
                    gone.push(i);
                }
            }
        }
        if sent > 0 {
            self.hub.clients.sent(sent);
        }
        self.remove(gone);
        Poll::Pending
    }

    /// Drops the viewers that closed their end, and cuts those the guard says are
    /// due and those whose socket took nothing for `VIEWER_STALL_TIMEOUT`.
    fn cut(&mut self, cx: &mut Context<'_>) {
        let stall_ticks = (VIEWER_STALL_TIMEOUT.as_millis() / CUT_TICK.as_millis()).max(1) as u32;
        let mut gone = Vec::new();
        for (i, v) in self.viewers.iter_mut().enumerate() {
            if v.closed(cx) {
                debug!(peer = %v.conn.peer, "mpegts viewer left");
                gone.push(i);
                continue;
            }
            if v.has_data() && !v.progressed {
                v.stuck_ticks += 1;
            } else {
                v.stuck_ticks = 0;
            }
            v.progressed = false;
            if v.stuck_ticks >= stall_ticks && !v.ending {
                // Its body ends: no more chunks, the end of the chunked body after
                // the one in flight. The socket goes when that is written, or at
                // the guard's stall cut.
                debug!(peer = %v.conn.peer, "mpegts viewer left: its socket took nothing for 5 s");
                v.conn.handed.state.refused(Refusal::Stalled, &v.conn.peer);
                self.hub.clients.cut();
                v.end_body();
            }
            if let Some(cause) = v.conn.handed.cut_due() {
                debug!(peer = %v.conn.peer, %cause, "connection cut");
                v.conn.handed.state.refused(cause, &v.conn.peer);
                gone.push(i);
            }
        }
        self.remove(gone);
    }

    fn remove(&mut self, mut gone: Vec<usize>) {
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            self.viewers.swap_remove(i);
            self.shared.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn end(&mut self) -> Poll<()> {
        let mut inbox = self.shared.lock();
        inbox.alive = false;
        inbox.joins.clear();
        inbox.chunks.clear();
        drop(inbox);
        self.viewers.clear();
        Poll::Ready(())
    }
}

/// One viewer: its socket, what it still has to write, and its place in the ring.
struct Viewer {
    conn: TsConn,
    _hold: Box<dyn Send + Sync>,
    /// The response head, or what is left of it.
    raw: Bytes,
    /// Shared bytes ready to go (whole chunks; the first may be partly sent).
    out: VecDeque<Bytes>,
    frame: Framing,
    /// The ring chunk to take after `out`.
    next_seq: u64,
    /// Skipped (or started without a GOP): waits for a keyframe chunk.
    want_keyframe: bool,
    /// Sent anything yet (after a skip, the resync packets go first).
    started: bool,
    /// Wrote something since the last cut tick.
    progressed: bool,
    stuck_ticks: u32,
    /// Skips not yet added to the stream's count.
    skips: u64,
    /// Cut: takes no more chunks; its body's end is written after the chunk in
    /// flight, then the socket closes.
    ending: bool,
    trailer_queued: bool,
}

/// The HTTP chunk being written: its size line, data and trailing CRLF.
#[derive(Default)]
struct Framing {
    line: [u8; 20],
    line_pos: usize,
    line_len: usize,
    data_left: usize,
    tail_left: usize,
}

impl Framing {
    fn idle(&self) -> bool {
        self.line_pos == self.line_len && self.data_left == 0 && self.tail_left == 0
    }

    fn start(&mut self, size: usize) {
        let text = format!("{size:x}\r\n");
        let n = text.len().min(self.line.len());
        self.line[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.line_pos = 0;
        self.line_len = n;
        self.data_left = size;
        self.tail_left = 2;
    }
}

impl Viewer {
    fn new(conn: TsConn, hold: Box<dyn Send + Sync>, gop: &[TsChunk], next_seq: u64) -> Self {
        Viewer {
            raw: conn.head.clone(),
            conn,
            _hold: hold,
            out: gop
                .iter()
                .filter(|c| !c.data.is_empty())
                .map(|c| c.data.clone())
                .collect(),
            frame: Framing::default(),
            next_seq,
            // Without a GOP it waits for a keyframe chunk (it starts with PAT/PMT).
            want_keyframe: gop.is_empty(),
            started: !gop.is_empty(),
            progressed: false,
            stuck_ticks: 0,
            skips: 0,
            ending: false,
            trailer_queued: false,
        }
    }

    /// Stops taking chunks: only the HTTP chunk in flight is finished, then the
    /// last chunk (`0`) ends the body.
    fn end_body(&mut self) {
        self.ending = true;
        let mut left = self.frame.data_left;
        let mut keep = 0;
        for b in &self.out {
            if left == 0 {
                break;
            }
            left -= b.len().min(left);
            keep += 1;
        }
        self.out.truncate(keep);
    }

    /// Whether the client closed its end (or the socket failed). What it sends
    /// meanwhile (nothing, for a player) is read and dropped, a little per tick.
    fn closed(&mut self, cx: &mut Context<'_>) -> bool {
        let mut buf = [0u8; 512];
        for _ in 0..8 {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.conn.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return true,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return true,
                Poll::Pending => return false,
            }
        }
        false
    }

    /// Has bytes that do not wait for the next coalesced write: its response head
    /// and GOP, or the rest of a write its socket took only partly.
    fn urgent(&self) -> bool {
        !self.raw.is_empty() || !self.frame.idle()
    }

    fn has_data(&self) -> bool {
        !self.raw.is_empty() || !self.frame.idle() || !self.out.is_empty()
    }

    /// Takes ring chunks into `out` (up to `MAX_IOVECS`), skipping to a keyframe
    /// if the ring moved past this viewer.
    fn refill(&mut self, ring: &VecDeque<(u64, TsChunk)>) {
        if self.ending {
            return;
        }
        let Some((front, _)) = ring.front() else {
            return;
        };
        if self.next_seq < *front {
            debug!(skipped = front - self.next_seq, peer = %self.conn.peer, "mpegts viewer too slow, skipping to next keyframe");
            if !self.want_keyframe {
                self.skips += 1;
            }
            self.want_keyframe = true;
            self.next_seq = *front;
        }
        let Ok(from) = usize::try_from(self.next_seq - front) else {
            return;
        };
        for (seq, c) in ring.range(from.min(ring.len())..) {
            if self.out.len() >= MAX_IOVECS {
                break;
            }
            self.next_seq = seq + 1;
            if self.want_keyframe {
                if !c.keyframe {
                    continue;
                }
                self.want_keyframe = false;
                if self.started && !c.resync.is_empty() {
                    self.out.push_back(c.resync.clone());
                }
            }
            self.started = true;
            if !c.data.is_empty() {
                self.out.push_back(c.data.clone());
            }
        }
    }

    /// Writes what this viewer has until its socket would block; returns the body
    /// bytes written.
    fn pump(
        &mut self,
        ring: &VecDeque<(u64, TsChunk)>,
        cx: &mut Context<'_>,
        budget: &mut usize,
    ) -> io::Result<usize> {
        let mut sent = 0;
        loop {
            if self.out.len() < MAX_IOVECS {
                self.refill(ring);
            }
            if self.frame.idle() && !self.out.is_empty() {
                // Never 0: empty pieces are not queued, and a 0 would end the body.
                let size = self.out.iter().take(MAX_IOVECS).map(Bytes::len).sum();
                self.frame.start(size);
            }
            if self.ending && !self.trailer_queued && !self.has_data() {
                self.trailer_queued = true;
                self.raw = Bytes::from_static(b"0\r\n\r\n");
            }
            if !self.has_data() || *budget == 0 {
                return Ok(sent);
            }
            *budget -= 1;
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS + 3];
            let mut k = 0;
            if !self.raw.is_empty() {
                iov[k] = IoSlice::new(&self.raw);
                k += 1;
            }
            if self.frame.line_pos < self.frame.line_len {
                iov[k] = IoSlice::new(&self.frame.line[self.frame.line_pos..self.frame.line_len]);
                k += 1;
            }
            let mut left = self.frame.data_left;
            for b in &self.out {
                if left == 0 || k == MAX_IOVECS + 2 {
                    break;
                }
                let n = b.len().min(left);
                iov[k] = IoSlice::new(&b[..n]);
                k += 1;
                left -= n;
            }
            if left == 0 && self.frame.tail_left > 0 {
                iov[k] = IoSlice::new(&b"\r\n"[2 - self.frame.tail_left..]);
                k += 1;
            }
            match Pin::new(&mut self.conn.io).poll_write_vectored(cx, &iov[..k]) {
                Poll::Pending => return Ok(sent),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.progressed = true;
                    sent += self.consume(n);
                }
            }
        }
    }

    /// Marks `n` written bytes as sent; returns how many of them were body data.
    fn consume(&mut self, mut n: usize) -> usize {
        let r = n.min(self.raw.len());
        self.raw.advance(r);
        n -= r;
        let f = &mut self.frame;
        let l = n.min(f.line_len - f.line_pos);
        f.line_pos += l;
        n -= l;
        let mut data = 0;
        while n > 0 && f.data_left > 0 {
            let Some(b) = self.out.front_mut() else {
                break;
            };
            let m = n.min(b.len()).min(f.data_left);
            b.advance(m);
            if b.is_empty() {
                self.out.pop_front();
            }
            f.data_left -= m;
            data += m;
            n -= m;
        }
        let t = n.min(f.tail_left);
        f.tail_left -= t;
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::guard::{ConnState, Guard, RefusalLog};
    use std::sync::Mutex as StdMutex;
    use tern_core::limits::ConnLimits;

    /// A socket that takes at most `max` bytes per write (and only the first
    /// slice), so every framing boundary gets split somewhere.
    struct Trickle {
        out: Arc<StdMutex<Vec<u8>>>,
        max: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn chunk(tag: u8, len: usize, keyframe: bool) -> TsChunk {
        TsChunk {
            data: Bytes::from(vec![tag; len]),
            keyframe,
            resync: if keyframe {
                Bytes::from(vec![b'R'; 3])
            } else {
                Bytes::new()
            },
        }
    }

    /// The body of a chunked response (panics on bad framing).
    fn dechunk(mut b: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
                return (out, false);
            };
            let len = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("x"), 16)
                .unwrap_or_else(|e| panic!("bad size line {:?}: {e}", &b[..i]));
            b = &b[i + 2..];
            if len == 0 {
                assert_eq!(b, b"\r\n");
                return (out, true);
            }
            out.extend_from_slice(&b[..len]);
            assert_eq!(&b[len..len + 2], b"\r\n", "chunk not closed");
            b = &b[len + 2..];
        }
    }

    #[test]
    fn chunked_framing_survives_partial_writes_and_a_skip_resyncs() {
        let guard = Guard::new(ConnLimits::default(), RefusalLog::new());
        let state = ConnState::new(guard.clone());
        let ticket = guard
            .admit(std::net::Ipv4Addr::LOCALHOST.into())
            .unwrap_or_else(|e| panic!("{e}"));
        let response = state.begin_response();
        let out = Arc::new(StdMutex::new(Vec::new()));
        let conn = TsConn {
            io: Box::new(Trickle {
                out: out.clone(),
                max: 7,
            }),
            handed: Handed::new(state, ticket, response),
            head: Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"),
            peer: "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
        };
        let gop = [chunk(b'g', 300, true), chunk(b'h', 50, false)];
        let mut v = Viewer::new(conn, Box::new(()), &gop, 10);
        let mut ring: VecDeque<(u64, TsChunk)> = (10..20)
            .map(|s| (s, chunk(b'a' + (s - 10) as u8, 100 + s as usize, false)))
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        let mut budget = usize::MAX;
        assert!(v.pump(&ring, &mut cx, &mut budget).is_ok());
        // The ring moves past the viewer: it skips to the next keyframe (seq 25)
        // and sends its resync packets first.
        ring.clear();
        ring.extend((22..28).map(|s| (s, chunk(b'k' + (s - 22) as u8, 40, s == 25))));
        v.next_seq = 21;
        assert!(v.pump(&ring, &mut cx, &mut budget).is_ok());
        assert_eq!(v.skips, 1);
        v.end_body();
        assert!(v.pump(&ring, &mut cx, &mut budget).is_ok());
        assert!(!v.has_data());

        let bytes = out.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(&bytes[..head.len()], head);
        let (body, ended) = dechunk(&bytes[head.len()..]);
        assert!(ended, "the body ends with its last chunk");
        let mut want = vec![b'g'; 300];
        want.extend(vec![b'h'; 50]);
        for s in 10..20u64 {
            want.extend(vec![b'a' + (s - 10) as u8; 100 + s as usize]);
        }
        want.extend(b"RRR");
        for s in 25..28u64 {
            want.extend(vec![b'k' + (s - 22) as u8; 40]);
        }
        assert_eq!(body, want);
    }
}
