//! `Body`: the response body type of every handler — a whole buffer, or a live stream
//! of chunks fed by a task through a bounded channel (so a slow client exerts
//! back-pressure on its own task and nobody else's), or such a stream that can fail
//! ([`Body::Fallible`]): an `Err` aborts the response so the client sees an error
//! (a chunked body without its last chunk), never a clean but short end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::clients::{Clients, Counted, Open, Viewer};
use crate::hub::StreamHub;

pub enum Body {
    Full(Option<Bytes>),
    Live(mpsc::Receiver<Bytes>),
    /// A live MPEG-TS viewer not yet fed: the server hands its connection to a
    /// writer of many viewers, or makes it [`Body::Live`] for hyper
    /// (`output::mpegts::for_hyper`).
    LiveTs(LiveTsStart),
    /// Chunks, each with what it holds of a shared memory budget (released when
    /// hyper takes the chunk), or an error that aborts the response.
    Fallible(mpsc::Receiver<Result<Budgeted, Aborted>>),
    /// Another body whose bytes are counted as they leave (a stream's clients);
    /// for a streaming response to a player, its client counts as online until it
    /// is dropped.
    Counted(Box<Body>, Arc<dyn SentBytes>, Option<Open>),
}

/// A live MPEG-TS viewer held on its stream (it keeps an on-demand pull open),
/// waiting for whoever writes its response.
pub struct LiveTsStart {
    pub hub: Arc<StreamHub>,
    /// The stream's `ViewerGuard`, dropped with the viewer.
    pub hold: Box<dyn Send + Sync>,
}

/// Where the bytes of a [`Body::Counted`] are added up.
pub trait SentBytes: Send + Sync {
    fn sent(&self, n: usize);
}

impl SentBytes for Clients {
    fn sent(&self, n: usize) {
        Clients::sent(self, n);
    }
}

/// A chunk and its share of a memory budget.
pub struct Budgeted {
    pub bytes: Bytes,
    pub permit: Option<tokio::sync::SemaphorePermit<'static>>,
}

/// Why a streamed response was aborted (logged by the producer; the client sees
/// the connection close without the body's end).
#[derive(Debug, thiserror::Error)]
#[error("response aborted: {0}")]
pub struct Aborted(pub String);

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        Body::Full(None)
    }

    /// This body, counted for the stream of `c` (see `crate::clients`).
    pub fn counted(self, c: Counted) -> Self {
        let open = matches!(c.viewer, Viewer::Streaming).then(|| c.clients.open());
        Body::Counted(Box::new(self), c.clients, open)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Live(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            // Made into `Live` before hyper sees it; ends at once if not.
            Body::LiveTs(_) => Poll::Ready(None),
            // The permit is dropped here: the chunk has left the channel.
            Body::Fallible(rx) => rx
                .poll_recv(cx)
                .map(|o| o.map(|r| r.map(|c| Frame::data(c.bytes)))),
            Body::Counted(inner, clients, _) => {
                let r = Pin::new(inner.as_mut()).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &r {
                    if let Some(d) = f.data_ref() {
                        clients.sent(d.len());
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Counted(inner, ..) => inner.is_end_stream(),
            b => matches!(b, Body::Full(None)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Live(_) | Body::LiveTs(_) | Body::Fallible(_) => SizeHint::default(),
            Body::Counted(inner, ..) => inner.size_hint(),
        }
    }
}

pub type Response = http::Response<Body>;

/// A plain-text response; errors always say what went wrong in the body.
pub fn text(status: http::StatusCode, msg: impl Into<String>) -> Response {
    let mut s = msg.into();
    s.push('\n');
    respond(status, "text/plain; charset=utf-8", Body::full(s))
}

pub fn respond(status: http::StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("*"),
    );
    r
}
