//! The accept loop: serves HTTP/1.1 with hyper on every connection a `Net` listener
//! accepts, except a first request for live MPEG-TS, whose socket goes to the
//! stream's writer after its response head (`http::sniff`, `output::ts_writer`).
//! Every connection goes through `guard` (admission, timeouts, the stalled-reader
//! cut), whichever path writes it. Connection tasks live in the loop's `JoinSet`, so aborting
//! the loop (shutdown) closes every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tern_core::limits::Refusal;
use tern_net::{Clock, Listener};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tracing::{debug, Instrument};

use crate::ctx::NodeCtx;
use crate::http::body::Body;
use crate::http::guard::{self, ConnState, ConnTicket, Guard, GuardedBody, GuardedIo, Handed};
use crate::http::router;
use crate::http::sniff::{self, Sniffed};
use crate::output::ts_writer;

/// Time a refused connection gets to take its 503 before it is closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

#[allow(clippy::disallowed_methods)] // driver: the accept loop: one task per connection, refusal writes bounded
pub async fn serve<L: Listener, C: Clock>(listener: L, ctx: Arc<NodeCtx<C>>, guard: Arc<Guard>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    let ticket = match guard.admit(peer.ip()) {
                        Ok(t) => t,
                        Err(cause) => {
                            guard.refused(cause, &peer);
                            // Bounded: refused connections are answered only while
                            // the tasks in flight stay within the limit again.
                            if conns.len() < 2 * guard.limits().max_connections as usize {
                                conns.spawn(async move {
                                    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                                        let _ = stream.write_all(&guard::refused_response()).await;
                                        let _ = stream.shutdown().await;
                                    })
                                    .await;
                                });
                            }
                            continue;
                        }
                    };
                    let ctx = ctx.clone();
                    let state = ConnState::new(guard.clone());
                    let guard = guard.clone();
                    let span = tracing::debug_span!("http", %peer);
                    conns.spawn(
                        async move {
                            tokio::select! {
                                () = connection(stream, peer, ctx, state.clone(), ticket) => {}
                                cause = guard::watch(state) => {
                                    guard.refused(cause, &peer);
                                }
                            }
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and similar: log (rate-limited), back
                    // off, go on.
                    guard.refused(Refusal::AcceptFailed, &e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one admitted connection: a first request for live MPEG-TS is answered
/// here and the socket handed to the stream's writer (`output::ts_writer`), which
/// then holds its slot; everything else is hyper's.
async fn connection<S, C: Clock>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<NodeCtx<C>>,
    state: Arc<ConnState>,
    ticket: ConnTicket,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = GuardedIo::new(stream, state.clone());
    let prefix = match sniff::first_request(&mut io).await {
        Ok(Sniffed::LiveTs(req)) => {
            let mut req = *req;
            req.extensions_mut().insert(peer);
            let response = state.begin_response();
            let r = router::route(&ctx, req).await;
            let (parts, body) = r.into_parts();
            let (start, counted) = match body {
                Body::LiveTs(start) => (start, None),
                Body::Counted(inner, c, open) => match *inner {
                    Body::LiveTs(start) => (start, Some((c, open))),
                    inner => {
                        let r = http::Response::from_parts(
                            parts,
                            Body::Counted(Box::new(inner), c, open),
                        );
                        return answer_whole(io, r).await;
                    }
                },
                body => return answer_whole(io, http::Response::from_parts(parts, body)).await,
            };
            // Its bytes are counted by the writer (the stream's clients); a live
            // viewer is held by the hub, not open here.
            drop(counted);
            let head = sniff::head(
                &http::Response::from_parts(parts, Body::empty()),
                "transfer-encoding: chunked\r\n",
            );
            ts_writer::join(
                start,
                ts_writer::TsConn {
                    io: Box::new(io),
                    handed: Handed::new(state, ticket, response),
                    head,
                    peer,
                },
            );
            return;
        }
        Ok(Sniffed::Other(prefix)) => prefix,
        Ok(Sniffed::Closed) | Err(_) => return,
    };
    let _ticket = ticket;
    let conn_state = state.clone();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        // Handlers that count clients by address read it here.
        req.extensions_mut().insert(peer);
        let ctx = ctx.clone();
        let response = conn_state.begin_response();
        async move {
            let r = router::route(&ctx, req).await;
            Ok::<_, std::convert::Infallible>(
                r.map(|b| GuardedBody::new(crate::output::mpegts::for_hyper(b), response)),
            )
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's Date header reads the real clock: the simulation must not see it
    // (docs/simulation.md).
    builder.auto_date_header(false);
    let io = TokioIo::new(sniff::Rewind::new(prefix, io));
    if let Err(e) = builder.serve_connection(io, service).await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Writes a whole short answer (bounded by the connection's guard) and closes.
async fn answer_whole<S: AsyncWrite + Unpin>(mut io: S, r: crate::http::body::Response) {
    let _ = io.write_all(&sniff::whole(r)).await;
    let _ = io.shutdown().await;
}
