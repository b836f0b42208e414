//! The `http://` input: an endless MPEG-TS response (`tsplay`-style servers,
//! encoders, another server's `/mpegts`), pulled with a GET and read as it comes.
//!
//! Owns: the connection loop (connect timeout, non-200 answers, reconnect with
//! backoff, `source_timeout` for a server that answers and then sends nothing) and
//! the HTTP client exchange. Must not: parse the transport stream (core's `TsIngest`,
//! through `TsPump`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tern_core::cluster::backoff::Backoff;
use tern_net::{Clock, Net};
use tracing::{info, warn};

use crate::input::ts_pump::TsPump;
use crate::input::udp::seed_of;
use crate::input::{Gate, Sink};

/// How long connecting and getting the response head may take.
pub const HTTP_INPUT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to pull.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// The input's URL, for logs.
    pub label: String,
}

/// Runs until aborted.
#[allow(clippy::disallowed_methods)] // driver: socket timeouts and reconnect delays of an http:// input
pub async fn run<N: Net, C: Clock>(
    sink: Arc<dyn Sink>,
    net: N,
    target: HttpTarget,
    source_timeout: Duration,
    clock: C,
    mut gate: Gate,
) {
    let label = target.label.clone();
    let mut backoff = Backoff::new(seed_of(&label));
    loop {
        if !gate.opened().await {
            return;
        }
        let opened = tokio::time::timeout(HTTP_INPUT_CONNECT_TIMEOUT, open(&net, &target)).await;
        let (mut body, conn) = match opened {
            Ok(Ok(r)) => r,
            Ok(Err(why)) => {
                let delay = backoff.next_delay();
                warn!(input = %label, reason = %why, retry_in_ms = delay.as_millis() as u64, "cannot pull MPEG-TS over HTTP");
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(_) => {
                let delay = backoff.next_delay();
                warn!(input = %label, timeout_ms = HTTP_INPUT_CONNECT_TIMEOUT.as_millis() as u64, retry_in_ms = delay.as_millis() as u64, "no answer within the connect timeout");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        info!(input = %label, "pulling MPEG-TS over HTTP");
        let mut pump = TsPump::new(sink.clone(), label.clone(), clock.utc_ms());
        // `stale`: the sender went silent, so what is buffered is a source timeout old.
        let (reason, stale) = loop {
            tokio::select! {
                biased;
                () = gate.closed() => break ("input not needed (failover, or no viewers)".to_owned(), false),
                r = tokio::time::timeout(source_timeout, body.frame()) => match r {
                    Ok(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            pump.feed(clock.utc_ms(), data);
                        }
                    }
                    Ok(Some(Err(e))) => break (e.to_string(), false),
                    Ok(None) => break ("the server ended the response".to_owned(), false),
                    Err(_) => break (format!("no data within the source timeout ({} ms)", source_timeout.as_millis()), true),
                },
            }
        };
        conn.abort();
        if pump.frames > 0 {
            backoff.reset();
        }
        if stale {
            pump.abandon();
        } else {
            pump.end();
        }
        let delay = backoff.next_delay();
        warn!(input = %label, reason, retry_in_ms = delay.as_millis() as u64, "HTTP input stopped; reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// Connects and sends the GET; the response body and the connection task when the
/// answer is 200.
#[allow(clippy::disallowed_methods)] // driver: hyper's connection task for this socket
async fn open<N: Net>(
    net: &N,
    t: &HttpTarget,
) -> Result<(hyper::body::Incoming, tokio::task::JoinHandle<()>), String> {
    let stream = net
        .connect(&t.host, t.port)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = if t.port == 80 {
        t.host.clone()
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let req = http::Request::get(t.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "tern")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = match send.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            conn.abort();
            return Err(format!("request failed: {e}"));
        }
    };
    if resp.status() != http::StatusCode::OK {
        conn.abort();
        return Err(format!("the server answered {}", resp.status()));
    }
    Ok((resp.into_body(), conn))
}
