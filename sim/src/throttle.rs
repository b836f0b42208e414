//! A thin link for the slow-link scenarios: turmoil 0.7 has latency but no bandwidth,
//! so a tiny TCP proxy host stands for the link. Every connection through it shares
//! one downstream rate (a `tern_core::rate::TokenBucket` on simulated time): each
//! chunk read from upstream waits until the bucket has paid for it, so one large
//! transfer delays the others behind it, as a full uplink does.
//!
//! Owns: the proxy host. Must not: look inside what it forwards, or read real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_core::rate::TokenBucket;
use tern_net::{Net as _, TurmoilNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use crate::sim_ms;

/// Bytes forwarded per read: small, so the link interleaves connections finely.
const CHUNK: usize = 4096;

/// Adds host `name` listening on `port`, forwarding to `upstream:upstream_port`, with
/// at most `bits_per_s` downstream for all connections together.
#[allow(clippy::disallowed_methods)] // sim harness: one task per proxied connection
pub fn add_throttled_link(
    sim: &mut turmoil::Sim<'_>,
    name: &str,
    port: u16,
    upstream: &str,
    upstream_port: u16,
    bits_per_s: u64,
) {
    let upstream = upstream.to_owned();
    sim.host(name, move || {
        let upstream = upstream.clone();
        let bucket = Arc::new(Mutex::new(TokenBucket::new(
            bits_per_s,
            Duration::from_millis(sim_ms()),
        )));
        async move {
            let listener = TurmoilNet
                .bind((std::net::Ipv4Addr::UNSPECIFIED, port).into())
                .await?;
            loop {
                let (client, _) = listener.accept().await?;
                let upstream = upstream.clone();
                let bucket = bucket.clone();
                tokio::spawn(async move {
                    match TurmoilNet.connect(&upstream, upstream_port).await {
                        Ok(up) => forward(client, up, bucket).await,
                        Err(e) => info!(error = %e, "upstream unreachable"),
                    }
                });
            }
        }
    });
}

#[allow(clippy::disallowed_methods)] // sim harness: the upward copy, and the link's pace
async fn forward(
    client: turmoil::net::TcpStream,
    up: turmoil::net::TcpStream,
    bucket: Arc<Mutex<TokenBucket>>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let wait = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Duration::from_millis(sim_ms()), n as u64);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upward.abort();
}
