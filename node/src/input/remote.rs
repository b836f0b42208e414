//! The `m4s://` and `m4f://` input: pulls one stream from another node and keeps
//! pulling — reconnecting with jittered backoff after a cut, a dead peer or a refusal,
//! resuming from the last frame it published.
//!
//! Owns: the connection loop and the timers around tern-core's `Receiver`. Must not:
//! decide about duplicates, gaps or keyframes (the receiver does).

use std::sync::Arc;

use tern_core::cluster::backoff::Backoff;
use tern_core::cluster::receiver::{Event, Receiver};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tracing::{debug, info, warn};

use crate::cluster::client::ClusterClient;
use crate::input::{Gate, Sink};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    M4s,
    M4f,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::M4s => "m4s",
            Protocol::M4f => "m4f",
        }
    }
}

/// What to pull from where.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub name: StreamName,
    pub protocol: Protocol,
}

/// Runs until aborted. While the gate is shut (a failover backup not needed), it
/// stays disconnected.
pub async fn run<N: Net, C: Clock>(
    sink: Arc<dyn Sink>,
    client: ClusterClient<N, C>,
    target: Target,
    mut gate: Gate,
) {
    let clock = client.clock().clone();
    let mut receiver = Receiver::default();
    let mut backoff = Backoff::new(client.seed());
    let peer = format!("{}:{}", target.host, target.port);
    loop {
        if !gate.opened().await {
            return;
        }
        let mut path = format!(
            "/tern/v1/{}/{}",
            target.protocol.as_str(),
            target.name.as_str()
        );
        if let Some(p) = receiver.resume_from() {
            path.push_str(&format!("?from={}.{}", p.epoch, p.seq));
        }
        let attempt_started = clock.now();
        let mut stream = match client.open(&target.host, target.port, &path).await {
            Ok(s) => s,
            Err(e) => {
                // The attempt's own wait (up to the connect timeout) counts towards
                // the backoff: a link repaired during an attempt is retried at once
                // after it times out.
                let delay = backoff
                    .next_delay()
                    .saturating_sub(clock.now().saturating_sub(attempt_started));
                if e.is_auth() {
                    e.warn_auth(&peer);
                } else {
                    info!(%peer, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot pull stream");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        receiver.handle_connected(clock.now());
        let mut delivered = false;
        let reason = 'conn: loop {
            let deadline = receiver.poll_timeout().unwrap_or_default();
            let wait = deadline.saturating_sub(clock.now());
            tokio::select! {
                biased;
                () = gate.closed() => {
                    break 'conn "input not needed (failover)".to_owned();
                }
                msg = stream.next() => match msg {
                    Ok(Some(m)) => {
                        if let Err(e) = receiver.handle_message(clock.now(), m) {
                            break 'conn e.to_string();
                        }
                    }
                    Ok(None) => break 'conn "peer closed the connection".to_owned(),
                    Err(e) => break 'conn e.to_string(),
                },
                _ = tokio::time::sleep(wait) => receiver.handle_timeout(clock.now()),
            }
            while let Some(ev) = receiver.poll_event() {
                match ev {
                    Event::MediaInfo(mi) => sink.media_info(mi),
                    Event::Frame {
                        frame,
                        discontinuity,
                    } => {
                        if discontinuity {
                            info!(%peer, pos = ?frame.pos, "resumed after a gap, at a keyframe");
                        }
                        sink.hub().note_delay(clock.utc_ms(), frame.capture_ms);
                        sink.frame(frame);
                        delivered = true;
                    }
                    Event::Segment { segment, .. } => {
                        if let Some(last) = segment.frames.last() {
                            sink.hub().note_delay(clock.utc_ms(), last.capture_ms);
                        }
                        sink.segment(segment);
                        delivered = true;
                    }
                    Event::PeerClock(_) => {}
                    Event::Ended(why) => break 'conn format!("peer ended the stream: {why}"),
                    Event::DeadPeer => {
                        break 'conn "no message within the dead-peer timeout".to_owned()
                    }
                }
            }
        };
        receiver.handle_disconnected();
        drop(stream);
        if delivered {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        warn!(%peer, reason, retry_in_ms = delay.as_millis() as u64, "connection lost; reconnecting");
        debug!(resume = ?receiver.resume_from());
        tokio::time::sleep(delay).await;
    }
}
