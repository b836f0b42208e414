//! The `m4s://` and `m4f://` input: pulls one stream from another node and keeps
//! pulling — reconnecting with jittered backoff after a cut, a dead peer or a refusal,
//! resuming from the last frame it published. A stream a `source` discovered backs
//! off longer when the peer answers 404 (the session's `with_not_found_backoff`).
//! Retry lines are logged at most once per peer and cause per 10 s, with a count
//! (the client's `pull_log_due`), whatever the number of streams pulled.
//!
//! Owns: the sockets and timers of tern-core's `PullSession` (which decides when to
//! connect, when to give up on a peer and how long to wait). Must not: decide about
//! duplicates, gaps, keyframes, retries or backoff (the session does).

use std::sync::Arc;

use tern_core::cluster::backoff::Backoff;
use tern_core::cluster::message::Message;
use tern_core::cluster::pull::{Action, Cause, Failure, PullSession};
use tern_core::cluster::receiver::{Event, Receiver};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tracing::{debug, info, warn};

use crate::cluster::client::{ClusterClient, MessageStream};
use crate::input::{Gate, Sink};
use crate::timer::until;

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
    /// Discovered by a `source` (the peer announced it): a 404 backs off from 5 s
    /// to 60 s. A configured input retries a 404 like any failure.
    pub discovered: bool,
}

/// Runs until aborted (or until its failover is gone). While the gate is shut (a
/// failover backup not needed), it stays disconnected.
pub async fn run<N: Net, C: Clock>(
    sink: Arc<dyn Sink>,
    client: ClusterClient<N, C>,
    target: Target,
    mut gate: Gate,
) {
    let clock = client.clock().clone();
    let peer = format!("{}:{}", target.host, target.port);
    let mut session = PullSession::new(
        clock.now(),
        Receiver::default(),
        Backoff::new(client.seed()),
        gate.is_open(),
    );
    if target.discovered {
        session = session.with_not_found_backoff();
    }
    let mut stream: Option<MessageStream> = None;
    loop {
        deliver(&mut session, sink.as_ref(), &clock, &peer);
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect { from } => {
                    let mut path = format!(
                        "/tern/v1/{}/{}",
                        target.protocol.as_str(),
                        target.name.as_str()
                    );
                    if let Some(p) = from {
                        path.push_str(&format!("?from={}.{}", p.epoch, p.seq));
                    }
                    match client.open(&target.host, target.port, &path).await {
                        Ok(s) => {
                            stream = Some(s);
                            session.handle_connected(clock.now());
                        }
                        Err(e) => {
                            let (why, cause) = if e.is_not_found() {
                                (Failure::NotFound, "not found")
                            } else if e.is_auth() {
                                (Failure::Unreachable, "auth")
                            } else {
                                (Failure::Unreachable, "unreachable")
                            };
                            let delay = session.handle_failed(clock.now(), why);
                            if let Some(why) = e.lasting_refusal() {
                                sink.hub().note_refused(why);
                            }
                            let Some(count) = client.pull_log_due(&peer, cause) else {
                                continue;
                            };
                            if e.is_auth() {
                                e.warn_auth(&peer);
                            } else {
                                info!(%peer, stream = %target.name, error = %e, retry_in_ms = delay.as_millis() as u64, count,
                                    "cannot pull stream (one line per peer and cause per 10 s)");
                            }
                        }
                    }
                }
                Action::Disconnect {
                    cause,
                    reason,
                    retry_in,
                } => {
                    stream = None;
                    let retry_in_ms = retry_in.map(|d| d.as_millis() as u64);
                    if let Some(count) = client.pull_log_due(&peer, cause_name(cause)) {
                        warn!(%peer, stream = %target.name, reason, ?retry_in_ms, count,
                            "connection lost; reconnecting (one line per peer and cause per 10 s)");
                    }
                    debug!(resume = ?session.receiver().resume_from());
                }
            }
        }
        deliver(&mut session, sink.as_ref(), &clock, &peer);
        let deadline = session.poll_timeout();
        tokio::select! {
            biased;
            g = gate.changed() => match g {
                Some(open) => session.handle_gate(clock.now(), open),
                None => return,
            },
            msg = next_message(&mut stream) => match msg {
                Ok(Some(m)) => session.handle_message(clock.now(), m),
                Ok(None) => session.handle_closed(clock.now(), "peer closed the connection".into()),
                Err(e) => session.handle_closed(clock.now(), e.to_string()),
            },
            _ = until(deadline, clock.now()) => session.handle_timeout(clock.now()),
        }
    }
}

/// The log key of a disconnect's cause.
fn cause_name(cause: Cause) -> &'static str {
    match cause {
        Cause::Closed => "closed",
        Cause::DeadPeer => "dead peer",
        Cause::Ended => "ended",
        Cause::Protocol => "protocol",
        Cause::NotNeeded => "not needed",
    }
}

/// The next message of the connection, if there is one (otherwise never).
pub(crate) async fn next_message(
    stream: &mut Option<MessageStream>,
) -> Result<Option<Message>, crate::cluster::client::ClientError> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Hands what the session delivered to the sink.
fn deliver<C: Clock>(session: &mut PullSession, sink: &dyn Sink, clock: &C, peer: &str) {
    while let Some(ev) = session.poll_event() {
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
            }
            Event::Segment { segment, .. } => {
                if let Some(last) = segment.frames.last() {
                    sink.hub().note_delay(clock.utc_ms(), last.capture_ms);
                }
                sink.segment(segment);
            }
            // Never on a media connection (the receiver refuses them).
            Event::Streams(_) | Event::PeerClock(_) | Event::Ended(_) | Event::DeadPeer => {}
        }
    }
}
