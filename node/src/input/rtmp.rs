//! RTMP publishing: the node's `rtmp PORT;` listener and the `publish://` inputs it
//! feeds. An input registers its stream here ([`Publishers`]); a publisher that
//! connects to the port is matched to one by name and password, and its audio and
//! video reach that input's sink as the frames of any other input.
//!
//! Owns: sockets and time for core's `RtmpSession` (bytes in and out, its deadlines:
//! the handshake timeout, the input's `source_timeout`), the connection cap, one
//! publisher per stream, the rate-limited refusal lines, and feeding `FlvIngest`'s
//! output to the sink. Must not: parse RTMP or FLV (core's `ingest::rtmp` and
//! `ingest::flv`), decide which stream a publisher names (`ingest::rtmp::resolve`),
//! or log a password or a stream key (a key may be the password).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tern_core::config::PublishPassword;
use tern_core::ingest::flv::{FlvEvent, FlvIngest};
use tern_core::ingest::rtmp::{resolve, RtmpError, RtmpEvent, RtmpLimits, RtmpSession};
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tern_core::StreamName;
use tern_net::{Clock, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use crate::input::{Gate, Sink};

/// RTMP connections open at once (publishers, and clients still in the handshake);
/// more are closed at accept.
pub const MAX_RTMP_CONNECTIONS: usize = 64;
/// Bytes read from a publisher at a time.
const READ_BUF: usize = 64 * 1024;

/// A stream that takes publishers: its `publish://` input.
pub struct PublishSlot {
    sink: Arc<dyn Sink>,
    password: Option<PublishPassword>,
    source_timeout: Duration,
    /// The publisher now connected, if any.
    busy: Mutex<Option<SocketAddr>>,
    /// Set when the input ends (the stream was removed or restarted): its
    /// publisher is cut, and publishes again into the stream as it is now.
    gone: watch::Sender<bool>,
}

/// The streams of this node that take publishers, by name. An input holds its
/// slot; the registry keeps a weak reference, gone with the input.
#[derive(Default)]
pub struct Publishers {
    slots: Mutex<BTreeMap<String, Weak<PublishSlot>>>,
}

impl Publishers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Weak<PublishSlot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Option<Arc<PublishSlot>> {
        self.lock().get(name).and_then(Weak::upgrade)
    }
}

/// The `publish://` input of stream `name`: registered until the stream goes away
/// (the task is aborted, or its switches are gone). Publishers are taken whatever
/// the failover says; the failover picks whose frames play.
pub async fn run(
    publishers: Arc<Publishers>,
    name: StreamName,
    sink: Arc<dyn Sink>,
    password: Option<PublishPassword>,
    source_timeout: Duration,
    mut gate: Gate,
) {
    let slot = Arc::new(PublishSlot {
        sink,
        password,
        source_timeout,
        busy: Mutex::new(None),
        gone: watch::Sender::new(false),
    });
    publishers
        .lock()
        .insert(name.as_str().to_owned(), Arc::downgrade(&slot));
    info!(stream = %name, "waiting for an RTMP publisher");
    // Runs until aborted (or the gate's switches end with the stream); either way
    // the guard tells a connected publisher.
    let _gone = Gone(slot);
    while gate.changed().await.is_some() {}
}

/// Marks a slot gone when its input ends.
struct Gone(Arc<PublishSlot>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.gone.send_replace(true);
    }
}

/// Rate-limited refusal lines of the RTMP port.
struct Refusals<C: Clock> {
    clock: C,
    log: Mutex<LogLimiter<&'static str>>,
}

impl<C: Clock> Refusals<C> {
    /// `cause` is the whole message (`RTMP publish refused: wrong password`);
    /// `detail` the stream or the error, never a stream key or password.
    fn refused(&self, cause: &'static str, detail: &str, peer: Option<SocketAddr>) {
        let now = self.clock.now().as_millis() as u64;
        let hit = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hit(cause, now);
        if let Some(count) = hit {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            warn!(peer, detail, count, "{cause} (one line per cause per 10 s)");
        }
    }
}

/// Serves the RTMP port until aborted.
#[allow(clippy::disallowed_methods)] // driver: one task per RTMP connection, a pause after a failed accept
pub async fn serve<L: Listener, C: Clock>(
    listener: L,
    publishers: Arc<Publishers>,
    clock: C,
    seed: u64,
) {
    let refusals = Arc::new(Refusals {
        clock: clock.clone(),
        log: Mutex::new(LogLimiter::new(DEFAULT_LOG_INTERVAL_MS)),
    });
    let mut conns = JoinSet::new();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            biased;
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if conns.len() >= MAX_RTMP_CONNECTIONS {
                        refusals.refused("RTMP connection refused: too many RTMP connections", "", Some(peer));
                        drop(stream);
                        continue;
                    }
                    n += 1;
                    let conn = connection(
                        stream,
                        peer,
                        publishers.clone(),
                        clock.clone(),
                        refusals.clone(),
                        seed.wrapping_add(n),
                    );
                    conns.spawn(conn.instrument(tracing::info_span!("rtmp", %peer)));
                }
                Err(e) => {
                    refusals.refused("RTMP accept failed", &e.to_string(), None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Clears the slot's publisher when the connection ends.
struct Busy(Arc<PublishSlot>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// One RTMP connection; returns when it ends.
async fn connection<S, C: Clock>(
    mut stream: S,
    peer: SocketAddr,
    publishers: Arc<Publishers>,
    clock: C,
    refusals: Arc<Refusals<C>>,
    seed: u64,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut session = RtmpSession::new(clock.now(), RtmpLimits::default(), seed);
    let mut buf = vec![0u8; READ_BUF];
    let mut publishing: Option<(Busy, FlvIngest, String)> = None;
    // Until publishing: a receiver that never changes.
    let not_yet = watch::Sender::new(false);
    let mut gone = not_yet.subscribe();
    let end: Result<(), RtmpError> = loop {
        let step = tokio::select! {
            biased;
            Ok(_) = gone.wait_for(|g| *g) => break Err(RtmpError::Refused(
                "the stream was removed or restarted".to_owned(),
            )),
            r = stream.read(&mut buf) => match r {
                Ok(0) => break Ok(()),
                Ok(k) => session.handle_bytes(clock.now(), &buf[..k]),
                Err(e) => {
                    info!(error = %e, "RTMP connection lost");
                    break Ok(());
                }
            },
            () = crate::timer::until(session.poll_timeout(), clock.now()) => {
                session.handle_timeout(clock.now())
            }
        };
        let mut step = step;
        while step.is_ok() {
            let Some(ev) = session.poll_event() else {
                break;
            };
            match ev {
                RtmpEvent::Publish { app, key } => {
                    step = decide(
                        &mut session,
                        &publishers,
                        &clock,
                        &refusals,
                        peer,
                        &app,
                        &key,
                    )
                    .map(|p| {
                        gone = p.0 .0.gone.subscribe();
                        publishing = Some(p);
                    });
                }
                RtmpEvent::Video { timestamp, payload } => {
                    if let Some((busy, ingest, _)) = &mut publishing {
                        ingest.video(timestamp, &payload, clock.utc_ms());
                        pump(ingest, &busy.0.sink, clock.utc_ms());
                    }
                }
                RtmpEvent::Audio { timestamp, payload } => {
                    if let Some((busy, ingest, _)) = &mut publishing {
                        ingest.audio(timestamp, &payload, clock.utc_ms());
                        pump(ingest, &busy.0.sink, clock.utc_ms());
                    }
                }
                RtmpEvent::Data { payload } => {
                    if let Some((_, ingest, _)) = &mut publishing {
                        ingest.metadata(&payload);
                    }
                }
            }
        }
        let out = session.take_output();
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break Ok(());
        }
        if step.is_err() {
            break step;
        }
    };
    let _ = stream.shutdown().await;
    let name = publishing.as_ref().map(|p| p.2.clone());
    match (end, name) {
        (Err(RtmpError::Refused(why)), Some(stream)) => warn!(stream, why, "RTMP publisher cut"),
        (Err(RtmpError::Refused(_)), None) => {} // logged when refused
        (Err(e @ RtmpError::HandshakeTimeout(_)), None) => {
            refusals.refused(
                "RTMP connection cut: handshake timeout",
                &e.to_string(),
                Some(peer),
            );
        }
        (Err(e), None) => refusals.refused(
            "RTMP connection cut: protocol error",
            &e.to_string(),
            Some(peer),
        ),
        (Ok(()), Some(stream)) | (Err(RtmpError::Unpublished), Some(stream)) => {
            warn!(stream, "RTMP publisher stopped")
        }
        (Err(e), Some(stream)) => warn!(stream, error = %e, "RTMP publisher cut"),
        (Ok(()), None) => {}
    }
}

/// Answers a `publish`: which stream, the password, one publisher at a time.
fn decide<C: Clock>(
    session: &mut RtmpSession,
    publishers: &Publishers,
    clock: &C,
    refusals: &Refusals<C>,
    peer: SocketAddr,
    app: &str,
    key: &str,
) -> Result<(Busy, FlvIngest, String), RtmpError> {
    let target = resolve(app, key, |n| publishers.get(n).is_some());
    // The app without its query is safe to log; the key may be the password.
    let shown_app = app.split('?').next().unwrap_or_default();
    let Some(target) = target else {
        refusals.refused(
            "RTMP publish refused: no stream with `input publish://` has that name",
            shown_app,
            Some(peer),
        );
        return Err(session.refuse_publish(
            "NetStream.Publish.BadName",
            "no stream of this name takes publishers",
        ));
    };
    let name = target.stream;
    let Some(slot) = publishers.get(&name) else {
        return Err(session.refuse_publish("NetStream.Publish.BadName", "stream gone"));
    };
    if let Some(want) = &slot.password {
        let ok = target.password.as_deref().is_some_and(|p| want.matches(p));
        if !ok {
            refusals.refused("RTMP publish refused: wrong password", &name, Some(peer));
            // A stream with no publisher shows why it waits (`error` in the API
            // until a frame comes); one that plays is not touched.
            let idle = slot
                .busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none();
            if idle {
                slot.sink.hub().note_refused(format!(
                    "RTMP publisher from {} refused: wrong password",
                    peer.ip()
                ));
            }
            return Err(session.refuse_publish(
                "NetStream.Publish.BadName",
                "wrong password for this stream",
            ));
        }
    }
    {
        let mut busy = slot.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = *busy {
            drop(busy);
            refusals.refused(
                "RTMP publish refused: the stream already has a publisher",
                &name,
                Some(peer),
            );
            info!(stream = %name, publisher = %other, "second publisher refused");
            return Err(session.refuse_publish(
                "NetStream.Publish.BadName",
                "this stream already has a publisher",
            ));
        }
        *busy = Some(peer);
    }
    let busy = Busy(slot.clone());
    session.set_idle_timeout(slot.source_timeout);
    session.accept_publish(clock.now(), &format!("{name} is now published"))?;
    info!(stream = %name, "RTMP publisher connected");
    slot.sink.hub().note_capture_source("arrival");
    Ok((busy, FlvIngest::new(clock.utc_ms()), name))
}

/// Hands what the conversion made to the sink.
fn pump(ingest: &mut FlvIngest, sink: &Arc<dyn Sink>, now: u64) {
    while let Some(ev) = ingest.poll_event() {
        match ev {
            FlvEvent::MediaInfo(mi) => {
                let tracks: Vec<&str> = mi.tracks.iter().map(|t| t.codec_name()).collect();
                info!(?tracks, "media info");
                sink.media_info(mi);
            }
            FlvEvent::Frame(f) => {
                sink.hub().note_delay(now, f.capture_ms);
                sink.frame(f);
            }
            FlvEvent::Discontinuity(why) => warn!(why, epoch = ingest.epoch(), "discontinuity"),
            FlvEvent::Ignored(what) => info!(what, "left out of the published stream"),
        }
    }
}
