//! The accept loop: serves HTTP/1.1 with hyper on every connection a `Net` listener
//! accepts. Every connection goes through `guard` (admission, timeouts, the
//! stalled-reader cut). Connection tasks live in the loop's `JoinSet`, so aborting
//! the loop (shutdown) closes every connection.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tern_core::limits::Refusal;
use tern_net::{Clock, Listener};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tracing::{debug, Instrument};

use crate::ctx::NodeCtx;
use crate::http::guard::{self, ConnState, Guard, GuardedBody, GuardedIo};
use crate::http::router;

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
                                        r.map(|b| GuardedBody::new(b, response)),
                                    )
                                }
                            });
                            let mut builder = hyper::server::conn::http1::Builder::new();
                            // hyper's Date header reads the real clock: the simulation
                            // must not see it (docs/simulation.md).
                            builder.auto_date_header(false);
                            let io = TokioIo::new(GuardedIo::new(stream, state.clone()));
                            tokio::select! {
                                r = builder.serve_connection(io, service) => {
                                    if let Err(e) = r {
                                        debug!(error = %e, "connection ended with an error");
                                    }
                                }
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
