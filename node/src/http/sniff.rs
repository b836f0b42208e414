//! The first request head of a connection, read before hyper sees it: a plain
//! HTTP/1.1 `GET` of a live MPEG-TS stream is answered here and its socket handed
//! to `output::ts_writer`; anything else goes to hyper with the bytes already read
//! put back in front ([`Rewind`]).
//!
//! Owns: reading and parsing that one head (at most [`MAX_SNIFF`] bytes), writing
//! the response head (or a whole short answer) of a request served here. Must not:
//! route (the router decides what the request gets), time anything (the
//! connection's guard runs beside it), or read past the head's first segment
//! once hyper takes over.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Version};
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::http::body::{Body, Response};
use crate::http::router;

/// Bytes read before deciding; a longer head goes to hyper.
pub const MAX_SNIFF: usize = 8 * 1024;
/// Headers parsed at most; more go to hyper.
const MAX_HEADERS: usize = 64;

/// What the first bytes of a connection are.
pub enum Sniffed {
    /// A live MPEG-TS `GET`, to be answered here.
    LiveTs(Box<Request<Empty<Bytes>>>),
    /// Anything else: these bytes, then the rest of the connection, are hyper's.
    Other(Bytes),
    /// The client closed before sending a whole head.
    Closed,
}

/// Reads the first request head of a connection (in as few reads as it arrives).
pub async fn first_request<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Sniffed> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(if buf.is_empty() {
                Sniffed::Closed
            } else {
                Sniffed::Other(buf.freeze())
            });
        }
        match parse(&buf) {
            Some(Parsed::LiveTs(req)) => return Ok(Sniffed::LiveTs(req)),
            Some(Parsed::Other) => return Ok(Sniffed::Other(buf.freeze())),
            None if buf.len() >= MAX_SNIFF => return Ok(Sniffed::Other(buf.freeze())),
            None => {}
        }
    }
}

enum Parsed {
    LiveTs(Box<Request<Empty<Bytes>>>),
    Other,
}

/// `None`: the head is not whole yet.
fn parse(buf: &[u8]) -> Option<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Parsed::Other),
    }
    let (Some("GET"), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Some(Parsed::Other);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !path.ends_with("/mpegts") || !router::is_live_ts(path, query) {
        return Some(Parsed::Other);
    }
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return Some(Parsed::Other);
        };
        map.append(name, value);
    }
    // A request with a body, or asking to switch protocols, is hyper's.
    if [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::EXPECT,
    ]
    .iter()
    .any(|h| map.contains_key(h))
    {
        return Some(Parsed::Other);
    }
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11);
    if let Some(h) = b.headers_mut() {
        *h = map;
    }
    Some(
        b.body(Empty::new())
            .map_or(Parsed::Other, |r| Parsed::LiveTs(Box::new(r))),
    )
}

/// The status line and headers of `r`, as hyper would write them, with `extra`
/// header lines (each ending in CRLF) after them.
pub fn head(r: &Response, extra: &str) -> Bytes {
    let mut h = Vec::with_capacity(256);
    let status = r.status();
    h.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in r.headers() {
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(extra.as_bytes());
    h.extend_from_slice(b"\r\n");
    Bytes::from(h)
}

/// A whole answer to a request served here that did not become a live stream
/// (an unknown stream, a refusal): its head and body, then the connection closes.
pub fn whole(r: Response) -> Bytes {
    let body = match r.body() {
        Body::Full(Some(b)) => b.clone(),
        _ => Bytes::new(),
    };
    let mut out = head(
        &r,
        &format!("content-length: {}\r\nconnection: close\r\n", body.len()),
    )
    .to_vec();
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_plain_live_ts_get_is_taken() {
        let live = |b: &[u8]| matches!(parse(b), Some(Parsed::LiveTs(_)));
        let other = |b: &[u8]| matches!(parse(b), Some(Parsed::Other));
        assert!(live(b"GET /main/mpegts HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(parse(b"GET /main/mpegts HTTP/1.1\r\nHost: x\r\n").is_none());
        assert!(other(b"GET /main/mpegts HTTP/1.0\r\n\r\n"));
        assert!(other(b"HEAD /main/mpegts HTTP/1.1\r\n\r\n"));
        assert!(other(b"GET /main/index.m3u8 HTTP/1.1\r\n\r\n"));
        assert!(other(
            b"GET /main/mpegts HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        ));
        assert!(other(b"GET /main/mpegts HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
        // Timeshift and archive MPEG-TS are hyper's (Fallible bodies).
        assert!(other(
            b"GET /main/timeshift_abs-1767225600.ts HTTP/1.1\r\n\r\n"
        ));
        assert!(other(b"\x16\x03\x01 not http"));
    }
}
