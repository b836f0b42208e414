//! The driver of a cluster request: connect over the `Net`, run hyper, hand the
//! response head (and a refusal's body) to core's [`Handshake`] and obey it, then
//! yield the authenticated messages of the response body.
//!
//! Owns: one HTTP/1.1 connection per attempt (each M4S/M4F/signaling response is
//! long-lived), the shared memory of the versions peers speak ([`PeerVersions`],
//! behind a lock), and the wait on the handshake's deadline. Must not: decide which
//! version to ask, what an answer means or how long to wait (the [`Handshake`]
//! does), or what to do with the messages.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tern_core::bytes_io::DecodeError;
use tern_core::cluster::auth::{ClusterAuth, Nonce, AUTH_HEADER, NONCE_LEN, PROOF_HEADER};
use tern_core::cluster::handshake::{
    Established, Handshake, HandshakeError, Head, PeerVersions, Request, Retry,
};
use tern_core::cluster::message::Message;
use tern_core::cluster::wire::{Decoder, WireError};
use tern_core::cluster::ProtocolVersion;
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tern_core::rate::TokenBucket;
use tern_net::{Clock, Net};
use tokio::task::JoinHandle;

use crate::cluster::link::{LinkClass, LinkGuard, LinkStats};

pub use tern_core::cluster::handshake::{CONNECT_TIMEOUT, MAX_REMEMBERED_PEERS};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to {peer}: {detail}")]
    Http { peer: String, detail: String },
    /// The handshake failed: no answer in time, a refusal, no valid proof.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("bad data from {peer}: {source}")]
    Wire { peer: String, source: WireError },
    /// A message that passed its MAC (so it arrived as the peer sent it) carried a
    /// segment whose own digest fails: the peer's stored copy is damaged.
    #[error(
        "{peer} sent a segment that is damaged in its store (message {seq}: the message \
         arrived intact, but the segment's BLAKE3 digest does not match its bytes); \
         that node's log names the file"
    )]
    DamagedAtPeer { peer: String, seq: u64 },
}

impl ClientError {
    /// A decoder error from `peer`, told apart: damage at rest on the peer, or bad
    /// data on the connection.
    pub fn wire(peer: &str, source: WireError) -> Self {
        match source {
            WireError::Decode {
                seq,
                source: DecodeError::Damaged { .. },
            } => ClientError::DamagedAtPeer {
                peer: peer.to_string(),
                seq,
            },
            source => ClientError::Wire {
                peer: peer.to_string(),
                source,
            },
        }
    }

    fn handshake(&self) -> Option<&HandshakeError> {
        match self {
            ClientError::Handshake(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status and body of a refusal ([`HandshakeError::refusal`]).
    pub fn refusal(&self) -> Option<(u16, &str)> {
        self.handshake().and_then(HandshakeError::refusal)
    }

    /// The peer refused our key ([`HandshakeError::is_auth`]).
    pub fn is_auth(&self) -> bool {
        self.handshake().is_some_and(HandshakeError::is_auth)
    }

    /// What the stream's `stats.error` says for a refusal retrying will not fix
    /// ([`HandshakeError::lasting_refusal`]).
    pub fn lasting_refusal(&self) -> Option<String> {
        self.handshake().and_then(HandshakeError::lasting_refusal)
    }

    /// The peer answered that it has no such stream.
    pub fn is_not_found(&self) -> bool {
        self.handshake().is_some_and(HandshakeError::is_not_found)
    }

    /// The peer refused the request's protocol version.
    pub fn is_version_refusal(&self) -> bool {
        self.handshake()
            .is_some_and(HandshakeError::is_version_refusal)
    }

    /// Logs an auth refusal as what it is: clocks too far apart, or a key that
    /// differs ([`HandshakeError::auth_refusal`]).
    pub fn warn_auth(&self, peer: &str) {
        let what = self.handshake().map_or(
            "cluster key refused; check cluster_key on both nodes",
            HandshakeError::auth_refusal,
        );
        tracing::warn!(%peer, error = %self, "{what}");
    }
}

/// Makes signed requests to peers with one cluster key.
pub struct ClusterClient<N: Net, C: Clock> {
    net: N,
    clock: C,
    rng: SharedRng,
    auth: ClusterAuth,
    /// Peers (`host:port`) known to speak an older version than the newest, shared
    /// by the clones of this client.
    versions: Arc<Mutex<PeerVersions>>,
    /// Where the bytes and open pulls of this client's responses are counted.
    link: Option<Arc<LinkStats>>,
    /// `archive_bandwidth`: archive responses are read no faster than this.
    archive_pace: Option<Arc<Mutex<TokenBucket>>>,
    /// Retry log lines of the pulls made with this client: one line per peer and
    /// cause per 10 s, with a count (a peer with 1000 failing streams costs a line,
    /// not 1000 a second).
    pull_log: Arc<Mutex<LogLimiter<(String, &'static str)>>>,
}

/// The node's seeded RNG, shared by everything that needs nonces or jitter.
pub type SharedRng = Arc<Mutex<ChaCha8Rng>>;

impl<N: Net, C: Clock> Clone for ClusterClient<N, C> {
    fn clone(&self) -> Self {
        Self {
            net: self.net.clone(),
            clock: self.clock.clone(),
            rng: self.rng.clone(),
            auth: self.auth.clone(),
            versions: self.versions.clone(),
            link: self.link.clone(),
            archive_pace: self.archive_pace.clone(),
            pull_log: self.pull_log.clone(),
        }
    }
}

/// An authenticated response: messages, in order, until the peer ends it.
pub struct MessageStream {
    peer: String,
    version: ProtocolVersion,
    body: Incoming,
    dec: Decoder,
    /// Hyper's connection task, ended with the stream.
    _conn: Conn,
    /// Counts this response's bytes while it is open.
    link: Option<LinkGuard>,
    pace: Option<Pace>,
}

/// Paces the reading of an archive response (`archive_bandwidth`): after each chunk
/// the stream waits until the bucket allows more, so the peer's sending is held back
/// by TCP itself.
struct Pace {
    bucket: Arc<Mutex<TokenBucket>>,
    now: Arc<dyn Fn() -> Duration + Send + Sync>,
}

impl MessageStream {
    /// The protocol version of this response.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The next message; `Ok(None)` when the peer closed the response.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            match self.dec.poll_message() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(source) => return Err(ClientError::wire(&self.peer, source)),
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.dec.handle_bytes(&data);
                        if let Some(l) = &self.link {
                            l.received(data.len());
                        }
                        if let Some(p) = &self.pace {
                            let wait = p
                                .bucket
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .take((p.now)(), data.len() as u64);
                            if !wait.is_zero() {
                                crate::timer::pace(wait).await;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(ClientError::Http {
                        peer: self.peer.clone(),
                        detail: e.to_string(),
                    })
                }
                None => return Ok(None),
            }
        }
    }
}

impl<N: Net, C: Clock> ClusterClient<N, C> {
    /// A client with its own clock and RNG (the node passes its own; a test or a
    /// benchmark may make a standalone one).
    pub fn new(net: N, clock: C, rng: SharedRng, auth: ClusterAuth) -> Self {
        Self {
            net,
            clock,
            rng,
            auth,
            versions: Arc::default(),
            link: None,
            archive_pace: None,
            pull_log: Arc::new(Mutex::new(LogLimiter::new(DEFAULT_LOG_INTERVAL_MS))),
        }
    }

    /// One retry of a pull from `peer` for `cause`: `Some(n)` when a line is due
    /// (reporting `n` retries since the last line of that peer and cause), `None`
    /// when it is only counted.
    pub fn pull_log_due(&self, peer: &str, cause: &'static str) -> Option<u64> {
        let now_ms = u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX);
        self.pull_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hit((peer.to_owned(), cause), now_ms)
    }

    /// Counts this client's responses in `link`.
    pub fn with_link(mut self, link: Arc<LinkStats>) -> Self {
        self.link = Some(link);
        self
    }

    /// Reads archive responses no faster than `bits_per_s`, all of them together
    /// (`archive_bandwidth` of a source).
    pub fn with_archive_bandwidth(mut self, bits_per_s: u64) -> Self {
        let bucket = TokenBucket::new(bits_per_s, self.clock.now());
        self.archive_pace = Some(Arc::new(Mutex::new(bucket)));
        self
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    fn rng(&self) -> MutexGuard<'_, ChaCha8Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A seed for a task's own RNG (backoff jitter).
    pub fn seed(&self) -> u64 {
        self.rng().next_u64()
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        self.rng().fill_bytes(&mut n);
        n
    }

    fn versions(&self) -> MutexGuard<'_, PeerVersions> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version to ask `peer` in first: the newest, unless it refused it before.
    pub fn version_for(&self, peer: &str) -> ProtocolVersion {
        self.versions().version_for(peer)
    }

    /// `GET path_and_query` on `host:port`, signed; returns the message stream once
    /// the server has proved it knows the key.
    ///
    /// A cluster endpoint is named with its v1 path (`/tern/v1/m4s/main`); it goes
    /// out under the version the peer speaks, stepping down while the peer refuses
    /// versions (core's [`Handshake::new`] decides). Any other path is sent as it
    /// is, as v1.
    pub async fn open(
        &self,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<MessageStream, ClientError> {
        let hs = Handshake::new(
            self.clock.now(),
            self.auth.clone(),
            &self.versions(),
            host,
            port,
            path_and_query,
        );
        self.drive(hs, host, port).await
    }

    /// `GET path_and_query` under protocol `version`, with no negotiation: the path
    /// must carry that version's prefix (a benchmark compares versions with it).
    pub async fn open_version(
        &self,
        version: ProtocolVersion,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<MessageStream, ClientError> {
        let hs = Handshake::exact(
            self.clock.now(),
            self.auth.clone(),
            version,
            host,
            port,
            path_and_query,
        );
        self.drive(hs, host, port).await
    }

    /// Runs `hs` to its end: one connection per attempt, each within the
    /// handshake's deadline; a new attempt while the handshake says retry.
    async fn drive(
        &self,
        mut hs: Handshake,
        host: &str,
        port: u16,
    ) -> Result<MessageStream, ClientError> {
        loop {
            let req = hs.request(self.clock.utc_ms(), self.nonce());
            let peer = hs.peer().to_owned();
            let (resp, conn) = self
                .within(&mut hs, self.send(&peer, host, port, &req))
                .await?;
            let status = resp.status().as_u16();
            let proof = resp
                .headers()
                .get(PROOF_HEADER)
                .and_then(|v| v.to_str().ok());
            let limit = match hs.handle_head(status, proof)? {
                Head::Established(e) => {
                    return Ok(self.stream(peer, &req, e, resp.into_body(), conn))
                }
                Head::ReadBody { limit } => limit,
            };
            let body = http_body_util::Limited::new(resp.into_body(), limit).collect();
            let body = self.within(&mut hs, async { Ok(body.await) }).await?;
            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
            drop(conn);
            let Retry { refused, trying } =
                hs.handle_refusal_body(self.clock.now(), &mut self.versions(), status, &body)?;
            tracing::info!(
                %peer,
                %refused,
                %trying,
                "peer speaks an older cluster protocol; using the older one with it from now on"
            );
        }
    }

    /// `work`, unless the handshake's deadline passes first.
    async fn within<T>(
        &self,
        hs: &mut Handshake,
        work: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased; // deterministic in the simulation: the work first
                r = &mut work => return r,
                () = crate::timer::until(hs.poll_timeout(), self.clock.now()) => {
                    hs.handle_timeout(self.clock.now())?;
                }
            }
        }
    }

    /// Connects and sends `req`; the response head and hyper's connection task.
    #[allow(clippy::disallowed_methods)] // driver: hyper's connection task for this socket
    async fn send(
        &self,
        peer: &str,
        host: &str,
        port: u16,
        req: &Request,
    ) -> Result<(http::Response<Incoming>, Conn), ClientError> {
        let http_err = |e: &dyn std::fmt::Display| ClientError::Http {
            peer: peer.to_owned(),
            detail: e.to_string(),
        };
        let stream = self
            .net
            .connect(host, port)
            .await
            .map_err(|source| ClientError::Connect {
                peer: peer.to_owned(),
                source,
            })?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http_err(&e))?;
        let conn = Conn(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let request = http::Request::get(&req.path_and_query)
            .header(http::header::HOST, &req.host)
            .header(AUTH_HEADER, &req.auth)
            .body(Empty::<Bytes>::new())
            .map_err(|e| http_err(&e))?;
        let resp = send.send_request(request).await.map_err(|e| http_err(&e))?;
        Ok((resp, conn))
    }

    /// The message stream of an established response.
    fn stream(
        &self,
        peer: String,
        req: &Request,
        established: Established,
        body: Incoming,
        conn: Conn,
    ) -> MessageStream {
        let class = ProtocolVersion::split_path(&req.path_and_query)
            .map_or(LinkClass::Signaling, |(_, rest)| LinkClass::of_path(rest));
        let pace = match (&self.archive_pace, class) {
            (Some(bucket), LinkClass::Archive) => {
                let clock = self.clock.clone();
                Some(Pace {
                    bucket: bucket.clone(),
                    now: Arc::new(move || clock.now()),
                })
            }
            _ => None,
        };
        MessageStream {
            link: self.link.as_ref().map(|l| l.open(&peer, class)),
            peer,
            version: established.version,
            body,
            dec: established.decoder(),
            _conn: conn,
            pace,
        }
    }
}

/// Hyper's task for one connection, ended when this is dropped (a refusal read, a
/// deadline passed, a message stream dropped).
struct Conn(JoinHandle<()>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's error says what core's handshake decided (the refusal's words and
    /// meaning), and nothing of the kind for a failure before any answer.
    #[test]
    fn a_handshake_failure_keeps_what_core_decided() {
        use tern_core::cluster::handshake::AuthRefusal;
        let e = ClientError::from(HandshakeError::AuthRefused {
            peer: "origin:8888".into(),
            status: 403,
            body: "cluster auth failed: clocks differ by 45000 ms".into(),
            cause: AuthRefusal::ClockSkew,
        });
        assert!(e.is_auth() && !e.is_not_found() && !e.is_version_refusal());
        assert_eq!(
            e.refusal(),
            Some((403, "cluster auth failed: clocks differ by 45000 ms"))
        );
        assert!(e
            .lasting_refusal()
            .is_some_and(|why| why.contains("clocks differ")));
        assert_eq!(
            e.to_string(),
            "origin:8888 refused the request: 403 cluster auth failed: clocks differ by 45000 ms"
        );
        let e = ClientError::from(HandshakeError::NotFound {
            peer: "origin:8888".into(),
            body: "no such stream".into(),
        });
        assert!(e.is_not_found() && !e.is_auth());
        let e = ClientError::Connect {
            peer: "origin:8888".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(!e.is_auth() && !e.is_not_found() && !e.is_version_refusal());
        assert_eq!((e.refusal(), e.lasting_refusal()), (None, None));
    }

    fn one_frame_segment() -> tern_core::Segment {
        use tern_core::{Frame, MediaInfo, Position, TrackInfo};
        tern_core::Segment {
            media_info: Arc::new(MediaInfo {
                tracks: vec![TrackInfo::placeholder_h264(1)],
            }),
            utc_start_ms: 1_767_225_600_000,
            duration_ms: 40,
            frames: vec![Frame {
                track: 1,
                dts: 0,
                pts: 0,
                keyframe: true,
                capture_ms: 1_767_225_600_000,
                pos: Position { epoch: 1, seq: 0 },
                payload: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
            }],
        }
    }

    /// Finding 5: the edge called an origin's damaged stored segment "bad data from
    /// PEER", which reads like a network fault. A segment that arrives intact (its
    /// message passed the MAC) but fails its own digest is named for what it is.
    #[test]
    fn a_segment_damaged_at_the_peer_is_not_called_a_network_fault() {
        let key = [7u8; 32];
        let mut stored = tern_core::segment_codec::encode(&one_frame_segment()).to_vec();
        let last = stored.len() - 1;
        stored[last] ^= 0x40; // damaged at rest on the peer
        let mut enc = tern_core::cluster::wire::Encoder::new(ProtocolVersion::V2, key);
        let parts = enc.encode_raw(
            tern_core::cluster::message::kind::SEGMENT,
            Bytes::from(stored),
        );
        let mut dec = Decoder::new(ProtocolVersion::V2, key);
        for p in &parts {
            dec.handle_bytes(p);
        }
        let Err(e) = dec.poll_message() else {
            panic!("a damaged segment decoded");
        };
        let said = ClientError::wire("origin:8888", e).to_string();
        assert!(!said.contains("bad data"), "{said}");
        assert!(
            said.contains("origin:8888") && said.contains("damaged in its store"),
            "{said}"
        );
        // A message altered on the way is still bad data on the connection.
        let mut enc = tern_core::cluster::wire::Encoder::new(ProtocolVersion::V2, key);
        let mut frame = enc.encode(&Message::Segment(one_frame_segment())).to_vec();
        frame[10] ^= 1;
        let mut dec = Decoder::new(ProtocolVersion::V2, key);
        dec.handle_bytes(&frame);
        let Err(e) = dec.poll_message() else {
            panic!("an altered message decoded");
        };
        let said = ClientError::wire("origin:8888", e).to_string();
        assert!(said.contains("bad data from origin:8888"), "{said}");
    }
}
