//! The accept loop: serves HTTP/1.1 with hyper on every connection a `Net` listener
//! accepts. Connection tasks live in the loop's `JoinSet`, so aborting the loop
//! (shutdown) closes every connection.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tern_net::{Clock, Listener};
use tokio::task::JoinSet;
use tracing::{debug, warn, Instrument};

use crate::http::router;
use crate::runtime::NodeCtx;

pub async fn serve<L: Listener, C: Clock>(listener: L, ctx: Arc<NodeCtx<C>>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    let span = tracing::debug_span!("http", %peer);
                    conns.spawn(
                        async move {
                            let service = service_fn(move |req| {
                                let ctx = ctx.clone();
                                async move { Ok::<_, std::convert::Infallible>(router::route(&ctx, req).await) }
                            });
                            let mut builder = hyper::server::conn::http1::Builder::new();
                            // hyper's Date header reads the real clock: the simulation
                            // must not see it (docs/simulation.md).
                            builder.auto_date_header(false);
                            if let Err(e) = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                            {
                                debug!(error = %e, "connection ended with an error");
                            }
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and similar: log, back off, go on.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}
