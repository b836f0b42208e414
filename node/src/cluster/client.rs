//! The client side of a cluster request: connect over the `Net`, sign the request,
//! check the server's proof, derive the connection's key and yield authenticated
//! messages from the response body.
//!
//! Owns: one HTTP/1.1 connection per request (each M4S/M4F/signaling response is
//! long-lived), and the protocol version each peer speaks: a request goes out under
//! the newest version first; a peer that refuses it as a version mismatch (an older
//! build) is asked again under the version before it, and remembered. Must not: decide what to do
//! with the messages.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tern_core::bytes_io::DecodeError;
use tern_core::cluster::auth::{
    AuthError, ClusterAuth, Nonce, Proof, SignedRequest, AUTH_HEADER, NONCE_LEN, PROOF_HEADER,
};
use tern_core::cluster::message::Message;
use tern_core::cluster::wire::{Decoder, WireError};
use tern_core::cluster::{ProtocolVersion, PATH_PREFIX};
use tern_core::log_limit::{LogLimiter, DEFAULT_LOG_INTERVAL_MS};
use tern_core::rate::TokenBucket;
use tern_net::{Clock, Net};
use tokio::task::JoinHandle;

use crate::cluster::link::{LinkClass, LinkGuard, LinkStats};

/// How long connecting and getting the response headers may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Peers whose protocol version a client remembers; beyond this it forgets them all
/// and learns again (one extra request per v1 peer).
pub const MAX_REMEMBERED_PEERS: usize = 1024;
/// What a node answers to a path of a version it does not speak (every version so
/// far has said this, with a `400`).
const VERSION_MISMATCH: &str = "cluster protocol version mismatch";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        source: std::io::Error,
    },
    #[error("{peer} did not answer within {CONNECT_TIMEOUT:?}")]
    Timeout { peer: String },
    #[error("HTTP error talking to {peer}: {detail}")]
    Http { peer: String, detail: String },
    #[error("{peer} refused the request: {status} {body}")]
    Rejected {
        peer: String,
        status: u16,
        body: String,
    },
    #[error("{peer} answered without a valid {PROOF_HEADER} header: {source}")]
    Proof { peer: String, source: AuthError },
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
}

impl ClientError {
    /// The peer refused our key (so retrying soon will not help, and the log must say
    /// so plainly).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ClientError::Rejected { status: 403, .. } | ClientError::Proof { .. }
        )
    }

    /// For a refusal retrying will not fix (the key refused, no such stream on the
    /// peer: `tern_core::stream_status::lasting_refusal`), what the stream's
    /// `stats.error` says (the peer's body is not repeated: it may be anything).
    pub fn lasting_refusal(&self) -> Option<String> {
        match self {
            ClientError::Rejected { peer, status, .. }
                if tern_core::stream_status::lasting_refusal(*status) =>
            {
                Some(match status {
                    401 | 403 => format!("{peer} refused this node's cluster key ({status})"),
                    _ => format!("{peer} has no such stream ({status})"),
                })
            }
            ClientError::Proof { peer, .. } => Some(format!(
                "{peer} answered without a valid proof of the cluster key"
            )),
            _ => None,
        }
    }

    /// The peer answered that it has no such stream.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Rejected { status: 404, .. })
    }

    /// Logs an auth refusal as what it is: clocks too far apart (the one refusal a
    /// peer explains, since the request's MAC was right), or a key that differs.
    pub fn warn_auth(&self, peer: &str) {
        tracing::warn!(%peer, error = %self, "{}", self.auth_refusal());
    }

    /// The peer refused the request's protocol version (a `400` saying so, from a
    /// node that predates it), before looking at anything else.
    pub fn is_version_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::Rejected { status: 400, body, .. } if body.starts_with(VERSION_MISMATCH)
        )
    }

    fn auth_refusal(&self) -> &'static str {
        match self {
            ClientError::Rejected {
                status: 403, body, ..
            } if body.contains("clocks differ") => {
                "cluster auth refused: the clocks differ; fix the clock (NTP) on one of the nodes"
            }
            _ => "cluster key refused; check cluster_key on both nodes",
        }
    }
}

/// Makes signed requests to peers with one cluster key.
pub struct ClusterClient<N: Net, C: Clock> {
    net: N,
    clock: C,
    rng: SharedRng,
    auth: ClusterAuth,
    /// Peers (`host:port`) known to speak an older version than the newest.
    versions: Arc<Mutex<BTreeMap<String, ProtocolVersion>>>,
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
    conn: JoinHandle<()>,
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

impl Drop for MessageStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
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

    fn versions(&self) -> MutexGuard<'_, BTreeMap<String, ProtocolVersion>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version to ask `peer` in first: the newest, unless it refused it before.
    pub fn version_for(&self, peer: &str) -> ProtocolVersion {
        self.versions()
            .get(peer)
            .copied()
            .unwrap_or(ProtocolVersion::LATEST)
    }

    fn remember(&self, peer: &str, version: ProtocolVersion) {
        let mut versions = self.versions();
        if versions.len() >= MAX_REMEMBERED_PEERS && !versions.contains_key(peer) {
            versions.clear();
        }
        versions.insert(peer.to_owned(), version);
    }

    /// `GET path_and_query` on `host:port`, signed; returns the message stream once
    /// the server has proved it knows the key.
    ///
    /// A cluster endpoint is named with its v1 path (`/tern/v1/m4s/main`); it goes
    /// out under the version the peer speaks (`/tern/v3/m4s/main` unless the peer
    /// refused v3 before). A peer that refuses a version as a version mismatch is
    /// asked again at once under the one before it (v3, then v2, then v1), and
    /// remembered. Any other path is sent as it is, as v1.
    pub async fn open(
        &self,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<MessageStream, ClientError> {
        let peer = format!("{host}:{port}");
        let Some(endpoint) = path_and_query.strip_prefix(PATH_PREFIX) else {
            return self
                .open_version(ProtocolVersion::V1, host, port, path_and_query)
                .await;
        };
        let mut version = self.version_for(&peer);
        loop {
            let path = format!("{}{endpoint}", version.path_prefix());
            match self.open_version(version, host, port, &path).await {
                Err(e) if e.is_version_refusal() => {
                    let Some(older) = version.older() else {
                        return Err(e);
                    };
                    tracing::info!(
                        %peer,
                        refused = %version,
                        trying = %older,
                        "peer speaks an older cluster protocol; using the older one with it from now on"
                    );
                    self.remember(&peer, older);
                    version = older;
                }
                r => return r,
            }
        }
    }

    /// `GET path_and_query` under protocol `version`, with no negotiation: the path
    /// must carry that version's prefix (a benchmark compares versions with it).
    #[allow(clippy::disallowed_methods)] // driver: bounds connect + handshake on a socket
    pub async fn open_version(
        &self,
        version: ProtocolVersion,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<MessageStream, ClientError> {
        let peer = format!("{host}:{port}");
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.open_inner(version, host, port, path_and_query, &peer),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { peer }),
        }
    }

    #[allow(clippy::disallowed_methods)] // driver: hyper's connection task for this socket
    async fn open_inner(
        &self,
        version: ProtocolVersion,
        host: &str,
        port: u16,
        path_and_query: &str,
        peer: &str,
    ) -> Result<MessageStream, ClientError> {
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
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let sig = self.auth.sign(
            &SignedRequest {
                method: "GET",
                path_and_query,
                host: peer,
                body: b"",
            },
            self.clock.utc_ms(),
            self.nonce(),
        );
        let req = http::Request::get(path_and_query)
            .header(http::header::HOST, peer)
            .header(AUTH_HEADER, sig.header_value())
            .body(Empty::<Bytes>::new())
            .map_err(|e| http_err(&e))?;
        let resp = send.send_request(req).await.map_err(|e| http_err(&e))?;
        let status = resp.status();
        if !status.is_success() {
            // An error body is read before anything is authenticated: at most 4 KiB
            // of it (a longer one is dropped: the status still says what happened).
            let body = http_body_util::Limited::new(resp.into_body(), 4096)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_owned();
            conn.abort();
            return Err(ClientError::Rejected {
                peer: peer.to_owned(),
                status: status.as_u16(),
                body,
            });
        }
        let proof_err = |source| ClientError::Proof {
            peer: peer.to_owned(),
            source,
        };
        let proof = resp
            .headers()
            .get(PROOF_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::BadProof)
            .and_then(Proof::parse)
            .map_err(proof_err)?;
        self.auth.check_proof(&sig, &proof).map_err(proof_err)?;
        let keys = self.auth.session_keys(version, &sig.nonce, &proof.nonce);
        let class = ProtocolVersion::split_path(path_and_query)
            .map_or(LinkClass::Signaling, |(_, rest)| {
                LinkClass::of_endpoint(rest)
            });
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
        Ok(MessageStream {
            peer: peer.to_owned(),
            version,
            body: resp.into_body(),
            dec: Decoder::new(version, keys.server_to_client),
            conn,
            link: self.link.as_ref().map(|l| l.open(peer, class)),
            pace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_skew_refusal_is_not_called_a_wrong_key() {
        let rejected = |body: String| ClientError::Rejected {
            peer: "origin:8888".into(),
            status: 403,
            body,
        };
        let skew = AuthError::ClockSkew {
            skew_ms: 45_000,
            window_ms: 30_000,
        };
        let e = rejected(format!("cluster auth failed: {skew}"));
        assert!(e.is_auth());
        assert!(
            e.auth_refusal().contains("clocks differ"),
            "{}",
            e.auth_refusal()
        );
        let e = rejected("cluster auth failed".into());
        assert!(e.auth_refusal().contains("cluster key refused"));
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
