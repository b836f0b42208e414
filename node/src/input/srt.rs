//! The `srt://` input: MPEG-TS over SRT, as a listener (the sender calls in) or a
//! caller (this node calls a sender that listens).
//!
//! Owns: the UDP socket and the time of an [`SrtSession`] (datagrams in and out, its
//! deadlines), the caller's reconnect with backoff, the `source_timeout` rule (a
//! connection that brings no media for that long is closed; a caller reconnects),
//! the rate-limited refusal lines, and feeding the payload to a `TsPump`. Must not:
//! speak SRT (the session, over `srt-protocol`), parse the transport stream (core's
//! `TsIngest`), or log the passphrase (logs show the input's URL, which hides it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::cluster::backoff::Backoff;
use tern_core::config::{SrtInput, SrtMode};
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tern_net::{Clock, UdpInput};
use tracing::{debug, info, warn};

use crate::input::srt_session::{Refusal, SrtEvent, SrtSession, SrtSettings};
use crate::input::ts_pump::TsPump;
use crate::input::udp::seed_of;
use crate::input::{Gate, Sink};

/// Largest datagram read; SRT's packets are at most 1500 bytes (its MTU default).
const MAX_SRT_DATAGRAM: usize = 2048;

/// Why a connection (or, for a caller, an attempt) ended.
enum Ended {
    /// The gate closed: the input is no longer needed.
    NotNeeded,
    /// Anything else; a caller retries after the backoff.
    Retry(String),
}

/// Runs until aborted, or until the gate's switches are gone.
#[allow(clippy::disallowed_methods)] // driver: reconnect and rebind delays of an srt:// input
pub async fn run<C: Clock>(
    sink: Arc<dyn Sink>,
    input: SrtInput,
    source_timeout: Duration,
    clock: C,
    seed: u64,
    mut gate: Gate,
) {
    let label = input.to_string();
    let mut backoff = Backoff::new(seed_of(&label) ^ seed);
    let mut ids = ChaCha8Rng::seed_from_u64(seed);
    let mut refusals = LogLimiter::new(DEFAULT_LOG_INTERVAL_MS);
    loop {
        if !gate.opened().await {
            return;
        }
        let opened = open(&input).await;
        let (socket, call) = match opened {
            Ok(r) => r,
            Err(why) => {
                let delay = backoff.next_delay();
                warn!(input = %label, reason = %why, retry_in_ms = delay.as_millis() as u64, "SRT input cannot start");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let settings = SrtSettings {
            call,
            passphrase: input.passphrase.as_ref().map(|p| p.as_str().to_owned()),
            key_len: input.key_len,
            latency: Duration::from_millis(input.latency_ms.into()),
            stream_id: input.stream_id.clone(),
        };
        match call {
            None => {
                info!(input = %label, local = ?socket.local_addr().ok(), "listening for an SRT sender")
            }
            Some(to) => debug!(input = %label, sender = %to, "calling the SRT sender"),
        }
        let rng_seed = ids.next_u64();
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let session = SrtSession::new(
            settings,
            tokio::time::Instant::now().into_std(),
            clock.now(),
            Box::new(move || rng.next_u32()),
        );
        let mut conn = Connection {
            sink: &sink,
            label: &label,
            clock: &clock,
            socket: &socket,
            session,
            source_timeout,
            refusals: &mut refusals,
            frames: 0,
        };
        let ended = conn.serve(&mut gate, call.is_some()).await;
        if conn.frames > 0 {
            backoff.reset();
        }
        drop(socket);
        match ended {
            Ended::NotNeeded => {
                info!(input = %label, "SRT input not needed (failover, or no viewers)");
            }
            Ended::Retry(reason) => {
                let delay = backoff.next_delay();
                let what = if call.is_some() {
                    "SRT call ended; calling again"
                } else {
                    "SRT listener stopped; listening again"
                };
                warn!(input = %label, reason, retry_in_ms = delay.as_millis() as u64, "{what}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Binds the socket: the listener's address, or any local address of the
/// sender's family for a caller (with the sender's address, resolved).
async fn open(input: &SrtInput) -> Result<(UdpInput, Option<SocketAddr>), String> {
    match input.mode {
        SrtMode::Listener => {
            let addr = input
                .listen_addr()
                .ok_or_else(|| format!("`{}` is not a local address", input.host))?;
            let socket = UdpInput::bind(addr, input.port, None)
                .await
                .map_err(|e| format!("cannot listen on UDP port {}: {e}", input.port))?;
            Ok((socket, None))
        }
        SrtMode::Caller => {
            let to = tokio::net::lookup_host((input.host.as_str(), input.port))
                .await
                .map_err(|e| format!("cannot resolve `{}`: {e}", input.host))?
                .next()
                .ok_or_else(|| format!("`{}` has no address", input.host))?;
            let any: IpAddr = if to.is_ipv6() {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                Ipv4Addr::UNSPECIFIED.into()
            };
            let socket = UdpInput::bind(any, 0, None)
                .await
                .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
            Ok((socket, Some(to)))
        }
    }
}

/// One socket's life: a listener's connections one after another, or a caller's
/// one attempt and its connection.
struct Connection<'a, C: Clock> {
    sink: &'a Arc<dyn Sink>,
    label: &'a str,
    clock: &'a C,
    socket: &'a UdpInput,
    session: SrtSession,
    source_timeout: Duration,
    refusals: &'a mut LogLimiter<&'static str>,
    /// Frames handed to the sink over this socket's life.
    frames: u64,
}

impl<C: Clock> Connection<'_, C> {
    #[allow(clippy::disallowed_methods)] // driver: the socket of an srt:// input and its session's deadlines
    async fn serve(&mut self, gate: &mut Gate, caller: bool) -> Ended {
        let mut buf = vec![0u8; MAX_SRT_DATAGRAM];
        let mut pump: Option<TsPump> = None;
        let mut last_media = self.clock.now();
        self.session.handle_timeout(self.clock.now());
        loop {
            self.transmit().await;
            while let Some(ev) = self.session.poll_event() {
                if let Some(end) = self.on_event(ev, &mut pump, &mut last_media, caller) {
                    if let Some(p) = &mut pump {
                        p.end();
                        self.frames += p.frames;
                    }
                    return end;
                }
            }
            let media_due = pump.as_ref().map(|_| last_media + self.source_timeout);
            let deadline = match (self.session.poll_timeout(), media_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                () = gate.closed() => {
                    self.session.close(self.clock.now());
                    self.transmit().await;
                    if let Some(p) = &mut pump {
                        p.end();
                        self.frames += p.frames;
                    }
                    return Ended::NotNeeded;
                }
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.session.handle_datagram(self.clock.now(), from, &buf[..n]),
                    // An ICMP port unreachable from an earlier datagram (a caller's
                    // sender not listening yet, a sender gone): keep going.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Ended::Retry(e.to_string()),
                },
                () = crate::timer::until(deadline, self.clock.now()) => {
                    let now = self.clock.now();
                    if pump.is_some() && now >= last_media + self.source_timeout {
                        warn!(input = %self.label, timeout_ms = self.source_timeout.as_millis() as u64, "no media from the SRT sender within the source timeout; closing the connection");
                        self.session.close(now);
                        self.transmit().await;
                        // What is still buffered is a source timeout old: dropped.
                        if let Some(p) = pump.take() {
                            self.frames += p.frames;
                            p.abandon();
                        }
                        if caller {
                            return Ended::Retry("no media within the source timeout".to_owned());
                        }
                    }
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    async fn transmit(&mut self) {
        while let Some((data, to)) = self.session.poll_transmit() {
            // A lost answer is the protocol's to repeat.
            let _ = self.socket.send_to(&data, to).await;
        }
    }

    /// Handles one event; `Some` ends this socket's life.
    fn on_event(
        &mut self,
        ev: SrtEvent,
        pump: &mut Option<TsPump>,
        last_media: &mut Duration,
        caller: bool,
    ) -> Option<Ended> {
        match ev {
            SrtEvent::Connected {
                peer,
                encrypted,
                stream_id,
            } => {
                info!(input = %self.label, %peer, encrypted, stream_id = stream_id.as_deref().unwrap_or(""), "SRT sender connected");
                // A sender that took over from a silent one: the old one's
                // buffered frame is not published late.
                if let Some(p) = pump.take() {
                    self.frames += p.frames;
                    p.abandon();
                }
                *pump = Some(TsPump::new(
                    self.sink.clone(),
                    self.label.to_owned(),
                    self.clock.utc_ms(),
                ));
                *last_media = self.clock.now();
                None
            }
            SrtEvent::Data(bytes) => {
                if let Some(p) = pump {
                    p.feed(self.clock.utc_ms(), &bytes);
                    *last_media = self.clock.now();
                }
                None
            }
            SrtEvent::Refused { peer, why } => {
                self.refused(peer, &why, caller);
                caller.then(|| Ended::Retry(why.to_string()))
            }
            SrtEvent::ConnectTimeout => Some(Ended::Retry(format!(
                "no answer from the sender within {} ms",
                crate::input::srt_session::SRT_CONNECT_TIMEOUT.as_millis()
            ))),
            SrtEvent::Closed { why } => {
                warn!(input = %self.label, reason = why, "SRT connection ended");
                // The sender went idle (or closed after its last frame): what is still
                // buffered is not published late.
                if let Some(p) = pump.take() {
                    self.frames += p.frames;
                    p.abandon();
                }
                caller.then(|| Ended::Retry(why.to_owned()))
            }
        }
    }

    /// One refusal: a rate-limited line, and the stream's error when it has no
    /// sender and retrying will not help (a passphrase or stream id that differ).
    fn refused(&mut self, peer: SocketAddr, why: &Refusal, caller: bool) {
        let cause: &'static str = match why {
            Refusal::WrongPassphrase => "wrong passphrase",
            Refusal::Unencrypted => "unencrypted",
            Refusal::Busy => "busy",
            Refusal::WrongStreamId => "stream id",
            Refusal::Protocol(_) => "protocol",
            Refusal::ByPeer(_) => "by peer",
        };
        let now_ms = self.clock.now().as_millis() as u64;
        if let Some(count) = self.refusals.hit(cause, now_ms) {
            let what = if caller {
                "SRT call refused"
            } else {
                "SRT caller refused"
            };
            warn!(input = %self.label, %peer, reason = %why, count, "{what}: {why}");
        }
        let lasting = matches!(
            why,
            Refusal::WrongPassphrase | Refusal::Unencrypted | Refusal::WrongStreamId
        ) || matches!(why, Refusal::ByPeer(_));
        if lasting && !self.session.is_connected() {
            self.sink.hub().note_refused(format!("SRT: {why}"));
        }
    }
}
