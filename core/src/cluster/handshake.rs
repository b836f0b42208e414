//! The client side of one cluster request's handshake, as a sans-IO machine
//! ([`Handshake`]), and the protocol versions a client has learned its peers speak
//! ([`PeerVersions`]).
//!
//! Decisions it owns:
//! - which version to ask a peer under first: the newest, unless the peer refused
//!   it before ([`PeerVersions`], at most [`MAX_REMEMBERED_PEERS`] peers, the one
//!   learned longest ago forgotten first);
//! - the signed request: the endpoint under that version's prefix, the `Host`, the
//!   `x-tern-auth` value (the UTC time and the nonce are inputs);
//! - what an answer means: a `200` with a valid proof is established (the session
//!   keys and a [`Decoder`] of that version); a `400 cluster protocol version
//!   mismatch` asks again under the version before (and remembers the peer there)
//!   while there is one; anything else is a typed [`HandshakeError`] (the key or the
//!   clock refused, no such stream, the version refused, no valid proof, ...);
//! - the deadline of each attempt: connecting, the response head and an error body
//!   within [`CONNECT_TIMEOUT`] of the attempt's start.
//!
//! Contract (core's, see lib.rs): the driver makes the machine when it starts
//! connecting, sends [`Handshake::request`], passes the response head to
//! [`Handshake::handle_head`] (and, when told to, the refusal's body to
//! [`Handshake::handle_refusal_body`]) and calls [`Handshake::handle_timeout`] at
//! [`Handshake::poll_timeout`]; on a [`Retry`] it opens a new connection and
//! sends the new request. Must not: do I/O, read a clock or make nonces, or read
//! the messages after the handshake (that is the [`Decoder`]'s and the
//! receiver's).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::auth::{
    AuthError, ClusterAuth, Nonce, Proof, SessionKeys, Signature, SignedRequest, PROOF_HEADER,
};
use crate::cluster::version::VERSION_MISMATCH;
use crate::cluster::wire::Decoder;
use crate::cluster::{ProtocolVersion, PATH_PREFIX};
use crate::media::UtcMs;

/// How long connecting, getting the response head (and reading a refusal's body)
/// may take, per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Peers whose protocol version a client remembers (those that speak an older one
/// than the newest); beyond this the one learned longest ago is forgotten, and
/// costs one refused request per step down when it is asked again.
pub const MAX_REMEMBERED_PEERS: usize = 1024;
/// Bytes of a refusal's body the driver reads (a longer body is dropped: the
/// status still says what happened). It is read before anything is authenticated.
pub const REFUSAL_BODY_READ_LIMIT: usize = 4096;
/// Bytes of a refusal's body kept for errors and logs.
pub const REFUSAL_BODY_KEPT: usize = 512;

/// The protocol version each peer (`host:port`) speaks, for those that refused a
/// newer one; every other peer is asked under [`ProtocolVersion::LATEST`].
///
/// Bounded: at most its capacity ([`MAX_REMEMBERED_PEERS`] by default) peers; a
/// new one beyond that forgets the peer learned (or re-learned) longest ago, so one
/// more peer costs the relearning of one, not of all.
#[derive(Debug)]
pub struct PeerVersions {
    /// Peer → (version, when it was learned: a counter).
    by_peer: BTreeMap<String, (ProtocolVersion, u64)>,
    /// When learned → peer, oldest first.
    by_age: BTreeMap<u64, String>,
    next: u64,
    capacity: usize,
}

impl Default for PeerVersions {
    fn default() -> Self {
        Self::with_capacity(MAX_REMEMBERED_PEERS)
    }
}

impl PeerVersions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory of at most `capacity` peers (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            by_peer: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// The version to ask `peer` under first.
    pub fn version_for(&self, peer: &str) -> ProtocolVersion {
        self.by_peer
            .get(peer)
            .map_or(ProtocolVersion::LATEST, |(v, _)| *v)
    }

    /// `peer` speaks `version` (and refused the one after it).
    pub fn remember(&mut self, peer: &str, version: ProtocolVersion) {
        if let Some((_, age)) = self.by_peer.remove(peer) {
            self.by_age.remove(&age);
        }
        if version == ProtocolVersion::LATEST {
            return; // the default: nothing to remember
        }
        while self.by_peer.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.by_peer.remove(&oldest);
        }
        let age = self.next;
        self.next += 1;
        self.by_peer.insert(peer.to_owned(), (version, age));
        self.by_age.insert(age, peer.to_owned());
    }

    /// Peers remembered.
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }
}

/// A signed `GET` to send: `path_and_query` with `Host: host` and
/// `x-tern-auth: auth`, no body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub version: ProtocolVersion,
    pub path_and_query: String,
    pub host: String,
    /// The value of the `x-tern-auth` header.
    pub auth: String,
}

/// The server proved it knows the key: the connection's keys, in `version`.
#[derive(Clone, Debug)]
pub struct Established {
    pub version: ProtocolVersion,
    pub keys: SessionKeys,
}

impl Established {
    /// A decoder of the server's messages on this connection.
    pub fn decoder(&self) -> Decoder {
        Decoder::new(self.version, self.keys.server_to_client)
    }
}

/// What the driver does after the response head.
#[derive(Debug)]
pub enum Head {
    /// Read the messages of the response body with [`Established::decoder`].
    Established(Established),
    /// A refusal: read at most `limit` bytes of its body (within the deadline)
    /// and pass them to [`Handshake::handle_refusal_body`].
    ReadBody { limit: usize },
}

/// The peer refused `refused` as a version it does not speak: the driver drops the
/// connection, opens a new one and sends the new [`Handshake::request`] (under
/// `trying`). The peer is remembered at `trying`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub refused: ProtocolVersion,
    pub trying: ProtocolVersion,
}

/// Why a refused request's key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRefusal {
    /// The request's MAC was right but its time is outside the peer's clock window.
    ClockSkew,
    /// The key differs (or the peer has none, or did not say why).
    Key,
}

/// Why a handshake failed. The `Display` of a refusal keeps the peer's words (at
/// most [`REFUSAL_BODY_KEPT`] bytes); the methods say what it means to a pull.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("{peer} did not answer within {CONNECT_TIMEOUT:?}")]
    Timeout { peer: String },
    /// `401` / `403`: the peer refused the request's signature.
    #[error("{peer} refused the request: {status} {body}")]
    AuthRefused {
        peer: String,
        status: u16,
        body: String,
        cause: AuthRefusal,
    },
    /// `404`: the peer has no such stream (or endpoint).
    #[error("{peer} refused the request: 404 {body}")]
    NotFound { peer: String, body: String },
    /// `400 cluster protocol version mismatch` to `version`, with no older version
    /// to ask (or a request made under one version only).
    #[error("{peer} refused the request: 400 {body} (asked in cluster protocol {version})")]
    VersionRefused {
        peer: String,
        version: ProtocolVersion,
        body: String,
    },
    /// Any other refusal.
    #[error("{peer} refused the request: {status} {body}")]
    Rejected {
        peer: String,
        status: u16,
        body: String,
    },
    /// A success without a valid proof that the peer knows the key.
    #[error("{peer} answered without a valid {PROOF_HEADER} header: {source}")]
    Proof { peer: String, source: AuthError },
}

impl HandshakeError {
    /// The peer that refused or did not answer.
    pub fn peer(&self) -> &str {
        match self {
            HandshakeError::Timeout { peer }
            | HandshakeError::AuthRefused { peer, .. }
            | HandshakeError::NotFound { peer, .. }
            | HandshakeError::VersionRefused { peer, .. }
            | HandshakeError::Rejected { peer, .. }
            | HandshakeError::Proof { peer, .. } => peer,
        }
    }

    /// The HTTP status and body of a refusal (`None`: no answer, or no valid proof).
    pub fn refusal(&self) -> Option<(u16, &str)> {
        match self {
            HandshakeError::AuthRefused { status, body, .. }
            | HandshakeError::Rejected { status, body, .. } => Some((*status, body)),
            HandshakeError::NotFound { body, .. } => Some((404, body)),
            HandshakeError::VersionRefused { body, .. } => Some((400, body)),
            HandshakeError::Timeout { .. } | HandshakeError::Proof { .. } => None,
        }
    }

    /// The peer refused our key, or could not prove it knows it (so retrying soon
    /// will not help, and the log must say so plainly).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            HandshakeError::AuthRefused { .. } | HandshakeError::Proof { .. }
        )
    }

    /// The peer answered that it has no such stream.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HandshakeError::NotFound { .. })
    }

    /// The peer refused the request's protocol version.
    pub fn is_version_refusal(&self) -> bool {
        matches!(self, HandshakeError::VersionRefused { .. })
    }

    /// For a refusal retrying will not fix (the key or the clock refused, no such
    /// stream on the peer: `crate::stream_status::lasting_refusal`), what the
    /// stream's `stats.error` says (the peer's body is not repeated: it may be
    /// anything).
    pub fn lasting_refusal(&self) -> Option<String> {
        match self {
            HandshakeError::AuthRefused {
                peer,
                status,
                cause: AuthRefusal::ClockSkew,
                ..
            } => Some(format!(
                "{peer} refused this node's request: the clocks differ ({status})"
            )),
            HandshakeError::AuthRefused { peer, status, .. } => {
                Some(format!("{peer} refused this node's cluster key ({status})"))
            }
            HandshakeError::NotFound { peer, .. } => {
                Some(format!("{peer} has no such stream (404)"))
            }
            HandshakeError::Rejected { peer, status, .. }
                if crate::stream_status::lasting_refusal(*status) =>
            {
                Some(format!("{peer} has no such stream ({status})"))
            }
            HandshakeError::Proof { peer, .. } => Some(format!(
                "{peer} answered without a valid proof of the cluster key"
            )),
            _ => None,
        }
    }

    /// What an auth refusal is, for the operator's log: clocks too far apart (the
    /// one refusal a peer explains, since the request's MAC was right), or a key
    /// that differs.
    pub fn auth_refusal(&self) -> &'static str {
        match self {
            HandshakeError::AuthRefused {
                cause: AuthRefusal::ClockSkew,
                ..
            } => "cluster auth refused: the clocks differ; fix the clock (NTP) on one of the nodes",
            _ => "cluster key refused; check cluster_key on both nodes",
        }
    }
}

/// Where the request goes.
#[derive(Debug)]
enum Target {
    /// An endpoint named under [`PATH_PREFIX`] (`m4s/main`): asked under the
    /// version the peer speaks, stepping down on a version refusal.
    Negotiated(String),
    /// A path sent as it is, under one version.
    Exact(String),
}

/// One cluster request's handshake with one peer, across its attempts.
#[derive(Debug)]
pub struct Handshake {
    auth: ClusterAuth,
    /// `host:port`: the `Host` header, the key of [`PeerVersions`], the logs.
    peer: String,
    target: Target,
    version: ProtocolVersion,
    /// When the current attempt started (its deadline runs from here).
    attempt_start: Duration,
    /// The current attempt's signature, once its request was made.
    sig: Option<Signature>,
    /// Established or failed: no more deadline.
    over: bool,
}

impl Handshake {
    /// `GET path_and_query` on `host:port`, starting at `now`. A cluster endpoint
    /// is named with its v1 path (`/tern/v1/m4s/main`); it goes out under the
    /// version `versions` gives for the peer and steps down (v3, v2, v1) while the
    /// peer refuses versions. Any other path is sent as it is, as v1.
    pub fn new(
        now: Duration,
        auth: ClusterAuth,
        versions: &PeerVersions,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Self {
        let peer = format!("{host}:{port}");
        let (target, version) = match path_and_query.strip_prefix(PATH_PREFIX) {
            Some(endpoint) => (
                Target::Negotiated(endpoint.to_owned()),
                versions.version_for(&peer),
            ),
            None => (
                Target::Exact(path_and_query.to_owned()),
                ProtocolVersion::V1,
            ),
        };
        Self::with(now, auth, peer, target, version)
    }

    /// `GET path_and_query` under `version` only, with no negotiation: the path
    /// must carry that version's prefix (a benchmark compares versions with it).
    pub fn exact(
        now: Duration,
        auth: ClusterAuth,
        version: ProtocolVersion,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Self {
        let peer = format!("{host}:{port}");
        Self::with(
            now,
            auth,
            peer,
            Target::Exact(path_and_query.to_owned()),
            version,
        )
    }

    fn with(
        now: Duration,
        auth: ClusterAuth,
        peer: String,
        target: Target,
        version: ProtocolVersion,
    ) -> Self {
        Self {
            auth,
            peer,
            target,
            version,
            attempt_start: now,
            sig: None,
            over: false,
        }
    }

    /// `host:port`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The version of the current attempt.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    fn path(&self) -> String {
        match &self.target {
            Target::Negotiated(endpoint) => format!("{}{endpoint}", self.version.path_prefix()),
            Target::Exact(path) => path.clone(),
        }
    }

    /// The current attempt's request, signed at `now_utc_ms` with a fresh `nonce`
    /// (signing again replaces the signature: send the last one made).
    pub fn request(&mut self, now_utc_ms: UtcMs, nonce: Nonce) -> Request {
        let path_and_query = self.path();
        let sig = self.auth.sign(
            &SignedRequest {
                method: "GET",
                path_and_query: &path_and_query,
                host: &self.peer,
                body: b"",
            },
            now_utc_ms,
            nonce,
        );
        self.sig = Some(sig);
        Request {
            version: self.version,
            path_and_query,
            host: self.peer.clone(),
            auth: sig.header_value(),
        }
    }

    /// The current attempt's deadline; `None` once the handshake is over.
    pub fn poll_timeout(&self) -> Option<Duration> {
        (!self.over).then(|| self.attempt_start + CONNECT_TIMEOUT)
    }

    /// Time passed: past the deadline the handshake failed.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), HandshakeError> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => Err(self.fail(HandshakeError::Timeout {
                peer: self.peer.clone(),
            })),
            _ => Ok(()),
        }
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.over = true;
        e
    }

    /// The response head: its status and the `x-tern-proof` header (`None` if
    /// absent or not text). A success is established only with a valid proof of
    /// the request just sent.
    pub fn handle_head(
        &mut self,
        status: u16,
        proof: Option<&str>,
    ) -> Result<Head, HandshakeError> {
        if !(200..300).contains(&status) {
            return Ok(Head::ReadBody {
                limit: REFUSAL_BODY_READ_LIMIT,
            });
        }
        let checked = self.sig.ok_or(AuthError::BadProof).and_then(|sig| {
            let proof = proof.ok_or(AuthError::BadProof).and_then(Proof::parse)?;
            self.auth.check_proof(&sig, &proof)?;
            Ok((sig, proof))
        });
        match checked {
            Ok((sig, proof)) => {
                self.over = true;
                Ok(Head::Established(Established {
                    version: self.version,
                    keys: self
                        .auth
                        .session_keys(self.version, &sig.nonce, &proof.nonce),
                }))
            }
            Err(source) => Err(self.fail(HandshakeError::Proof {
                peer: self.peer.clone(),
                source,
            })),
        }
    }

    /// The body of a refusal whose head had `status` (at most
    /// [`REFUSAL_BODY_READ_LIMIT`] bytes; an unreadable one is empty), at `now`.
    /// A version refusal with an older version to ask steps down and remembers the
    /// peer in `versions`; anything else fails.
    pub fn handle_refusal_body(
        &mut self,
        now: Duration,
        versions: &mut PeerVersions,
        status: u16,
        body: &[u8],
    ) -> Result<Retry, HandshakeError> {
        let body = String::from_utf8_lossy(&body[..body.len().min(REFUSAL_BODY_KEPT)])
            .trim()
            .to_owned();
        let peer = self.peer.clone();
        let e = match status {
            400 if body.starts_with(VERSION_MISMATCH) => {
                let older = match self.target {
                    Target::Negotiated(_) => self.version.older(),
                    Target::Exact(_) => None,
                };
                if let Some(older) = older {
                    let refused = self.version;
                    versions.remember(&peer, older);
                    self.version = older;
                    self.attempt_start = now;
                    self.sig = None;
                    return Ok(Retry {
                        refused,
                        trying: older,
                    });
                }
                HandshakeError::VersionRefused {
                    peer,
                    version: self.version,
                    body,
                }
            }
            401 | 403 => {
                let cause = if body.contains(CLOCK_SKEW_MARK) {
                    AuthRefusal::ClockSkew
                } else {
                    AuthRefusal::Key
                };
                HandshakeError::AuthRefused {
                    peer,
                    status,
                    body,
                    cause,
                }
            }
            404 => HandshakeError::NotFound { peer, body },
            _ => HandshakeError::Rejected { peer, status, body },
        };
        Err(self.fail(e))
    }
}

/// What a `403` says when the request's MAC was right but the clocks differ (the
/// words of [`AuthError::ClockSkew`], which the server's refusal carries:
/// [`AuthError::refusal_body`]).
const CLOCK_SKEW_MARK: &str = "clocks differ";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::{ReplayGuard, AUTH_HEADER, NONCE_LEN};
    use crate::cluster::message::Message;
    use crate::cluster::wire::Encoder;

    const KEY: &[u8] = b"the cluster key of the handshake tests";
    const T0: UtcMs = 1_767_225_600_000;

    fn auth() -> ClusterAuth {
        ClusterAuth::new(KEY)
    }

    fn nonce(n: u8) -> [u8; NONCE_LEN] {
        [n; NONCE_LEN]
    }

    /// What a node whose newest version is `newest` answers to `req`, at
    /// `now_utc_ms`, with key `key`: the version first, then auth (as every build
    /// does), then a `Hello` and a heartbeat under the connection's key.
    struct Answer {
        status: u16,
        proof: Option<String>,
        body: Vec<u8>,
    }

    fn serve(
        key: &[u8],
        newest: ProtocolVersion,
        req: &Request,
        now_utc_ms: UtcMs,
        guard: &mut ReplayGuard,
    ) -> Answer {
        let refuse = |status: u16, body: String| Answer {
            status,
            proof: None,
            body: body.into_bytes(),
        };
        let spoken: Vec<ProtocolVersion> = ProtocolVersion::ALL
            .into_iter()
            .filter(|v| *v <= newest)
            .collect();
        let Some(version) = ProtocolVersion::split_path(&req.path_and_query)
            .map(|(v, _)| v)
            .filter(|v| spoken.contains(v))
        else {
            let names: Vec<String> = spoken.iter().map(|v| v.to_string()).collect();
            return refuse(
                400,
                format!(
                    "{VERSION_MISMATCH}: this node speaks {}",
                    names.join(" and ")
                ),
            );
        };
        let server = ClusterAuth::new(key);
        let checked = Signature::parse(&req.auth).and_then(|sig| {
            let signed = SignedRequest {
                method: "GET",
                path_and_query: &req.path_and_query,
                host: &req.host,
                body: b"",
            };
            server
                .verify(&signed, &sig, now_utc_ms, guard)
                .map(|()| sig)
        });
        let sig = match checked {
            Ok(sig) => sig,
            Err(e) => return refuse(403, e.refusal_body()),
        };
        let proof = server.prove(&sig, nonce(0xEE));
        let keys = server.session_keys(version, &sig.nonce, &proof.nonce);
        let mut enc = Encoder::new(version, keys.server_to_client);
        let mut body = enc
            .encode(&Message::Hello {
                version: version.number(),
                node: "server".into(),
            })
            .to_vec();
        body.extend_from_slice(&enc.encode(&Message::Heartbeat { utc_ms: now_utc_ms }));
        Answer {
            status: 200,
            proof: Some(proof.header_value()),
            body,
        }
    }

    /// How a driven handshake ended: established, with the response body, or not.
    type Outcome = Result<(Established, Vec<u8>), HandshakeError>;

    /// Drives `hs` against a server as `serve` answers, each attempt 10 ms after
    /// the last; the request paths sent and the outcome.
    fn drive(
        hs: &mut Handshake,
        versions: &mut PeerVersions,
        newest: ProtocolVersion,
    ) -> (Vec<String>, Outcome) {
        let mut guard = ReplayGuard::new();
        let mut sent = Vec::new();
        for attempt in 0u8..10 {
            let now = Duration::from_millis(10 * u64::from(attempt));
            let req = hs.request(T0 + 10 * u64::from(attempt), nonce(attempt));
            sent.push(req.path_and_query.clone());
            let a = serve(KEY, newest, &req, T0, &mut guard);
            let limit = match hs.handle_head(a.status, a.proof.as_deref()) {
                Ok(Head::Established(e)) => return (sent, Ok((e, a.body))),
                Ok(Head::ReadBody { limit }) => limit,
                Err(e) => return (sent, Err(e)),
            };
            assert_eq!(limit, REFUSAL_BODY_READ_LIMIT);
            match hs.handle_refusal_body(now, versions, a.status, &a.body) {
                Ok(Retry { refused, trying }) => {
                    assert_eq!(refused.older(), Some(trying));
                    assert_eq!(hs.version(), trying);
                }
                Err(e) => return (sent, Err(e)),
            }
        }
        panic!("no end after 10 attempts: {sent:?}");
    }

    /// All the messages `body` holds, decoded with the established keys.
    fn messages(e: &Established, body: &[u8]) -> Vec<Message> {
        let mut dec = e.decoder();
        dec.handle_bytes(body);
        let mut out = Vec::new();
        while let Some(m) = dec.poll_message().expect("the server's messages decode") {
            out.push(m);
        }
        out
    }

    #[test]
    fn a_request_is_signed_for_the_path_and_host_it_goes_to() {
        let versions = PeerVersions::new();
        let mut hs = Handshake::new(
            Duration::ZERO,
            auth(),
            &versions,
            "origin",
            8888,
            "/tern/v1/m4s/main?from=1.2",
        );
        let req = hs.request(T0, nonce(1));
        assert_eq!(req.version, ProtocolVersion::LATEST);
        assert_eq!(req.path_and_query, "/tern/v3/m4s/main?from=1.2");
        assert_eq!(req.host, "origin:8888");
        let sig = Signature::parse(&req.auth).expect("a valid x-tern-auth value");
        assert_eq!((sig.ts_ms, sig.nonce), (T0, nonce(1)));
        let signed = SignedRequest {
            method: "GET",
            path_and_query: &req.path_and_query,
            host: &req.host,
            body: b"",
        };
        auth()
            .verify(&signed, &sig, T0, &mut ReplayGuard::new())
            .expect("the server accepts it");
        // A path outside the cluster prefix goes as it is, in v1.
        let mut hs = Handshake::new(Duration::ZERO, auth(), &versions, "o", 1, "/other");
        let req = hs.request(T0, nonce(2));
        assert_eq!(
            (req.path_and_query.as_str(), req.version),
            ("/other", ProtocolVersion::V1)
        );
        assert_eq!(AUTH_HEADER, "x-tern-auth");
    }

    #[test]
    fn established_keys_decode_what_the_server_encoded_in_every_version() {
        for newest in ProtocolVersion::ALL {
            let mut versions = PeerVersions::new();
            let mut hs = Handshake::exact(
                Duration::ZERO,
                auth(),
                newest,
                "origin",
                8888,
                &format!("{}streams", newest.path_prefix()),
            );
            let (_, got) = drive(&mut hs, &mut versions, newest);
            let (e, body) = got.expect("established");
            assert_eq!(e.version, newest);
            let msgs = messages(&e, &body);
            assert!(
                matches!(&msgs[..], [Message::Hello { version, .. }, Message::Heartbeat { .. }] if *version == newest.number()),
                "{newest}: {msgs:?}"
            );
            assert_eq!(hs.poll_timeout(), None, "established: no deadline");
            // Keys of another version do not read it.
            let other = ProtocolVersion::ALL
                .into_iter()
                .find(|v| *v != newest)
                .expect("another version");
            let mut dec = Decoder::new(other, e.keys.server_to_client);
            dec.handle_bytes(&body);
            assert!(dec.poll_message().is_err(), "{newest} read as {other}");
        }
    }

    #[test]
    fn a_v1_peer_is_asked_v3_then_v2_then_v1_and_remembered() {
        let mut versions = PeerVersions::new();
        let mut hs = Handshake::new(
            Duration::ZERO,
            auth(),
            &versions,
            "old",
            8888,
            "/tern/v1/m4s/main",
        );
        let (sent, got) = drive(&mut hs, &mut versions, ProtocolVersion::V1);
        assert_eq!(
            sent,
            [
                "/tern/v3/m4s/main",
                "/tern/v2/m4s/main",
                "/tern/v1/m4s/main"
            ]
        );
        let (e, body) = got.expect("established in v1");
        assert_eq!(e.version, ProtocolVersion::V1);
        assert!(matches!(
            messages(&e, &body)[..],
            [Message::Hello { version: 1, .. }, Message::Heartbeat { .. }]
        ));
        assert_eq!(versions.version_for("old:8888"), ProtocolVersion::V1);
        assert_eq!(versions.version_for("new:8888"), ProtocolVersion::V3);
        // From now on v1 at once.
        let mut hs = Handshake::new(
            Duration::ZERO,
            auth(),
            &versions,
            "old",
            8888,
            "/tern/v1/streams",
        );
        let (sent, got) = drive(&mut hs, &mut versions, ProtocolVersion::V1);
        assert_eq!(sent, ["/tern/v1/streams"]);
        assert!(got.is_ok());
        // A v2 peer stops at v2.
        let mut hs = Handshake::new(
            Duration::ZERO,
            auth(),
            &versions,
            "v2",
            8888,
            "/tern/v1/streams",
        );
        let (sent, got) = drive(&mut hs, &mut versions, ProtocolVersion::V2);
        assert_eq!(sent, ["/tern/v3/streams", "/tern/v2/streams"]);
        assert_eq!(got.expect("v2").0.version, ProtocolVersion::V2);
        assert_eq!(versions.version_for("v2:8888"), ProtocolVersion::V2);
        assert_eq!(versions.len(), 2);
    }

    #[test]
    fn a_peer_that_refuses_v1_too_fails_with_the_version_refused() {
        let mut versions = PeerVersions::new();
        let mut hs = Handshake::new(
            Duration::ZERO,
            auth(),
            &versions,
            "future",
            8888,
            "/tern/v1/streams",
        );
        let mut sent = 0;
        let e = loop {
            hs.request(T0, nonce(sent));
            sent += 1;
            // A build that speaks none of ours.
            assert!(matches!(
                hs.handle_head(400, None),
                Ok(Head::ReadBody { .. })
            ));
            match hs.handle_refusal_body(
                Duration::ZERO,
                &mut versions,
                400,
                b"cluster protocol version mismatch: this node speaks v9",
            ) {
                Ok(Retry { .. }) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(sent, 3, "v3, v2, v1");
        assert!(e.is_version_refusal(), "{e}");
        assert!(matches!(
            e,
            HandshakeError::VersionRefused {
                version: ProtocolVersion::V1,
                ..
            }
        ));
        assert!(e.to_string().contains("this node speaks v9"), "{e}");
        assert!(e.lasting_refusal().is_none() && !e.is_auth());
        assert_eq!(hs.poll_timeout(), None);

        // Under one version only, a version refusal is not retried.
        let mut hs = Handshake::exact(
            Duration::ZERO,
            auth(),
            ProtocolVersion::V3,
            "old",
            1,
            "/tern/v3/streams",
        );
        let (sent, got) = drive(&mut hs, &mut versions, ProtocolVersion::V2);
        assert_eq!(sent, ["/tern/v3/streams"]);
        let e = got.expect_err("refused");
        assert!(e.is_version_refusal(), "{e}");
        assert_eq!(versions.version_for("old:1"), ProtocolVersion::V3);
    }

    #[test]
    fn the_memory_of_peer_versions_is_bounded_and_forgets_the_oldest() {
        let mut versions = PeerVersions::new();
        for i in 0..MAX_REMEMBERED_PEERS {
            versions.remember(&format!("p{i}:1"), ProtocolVersion::V1);
        }
        assert_eq!(versions.len(), MAX_REMEMBERED_PEERS);
        // Re-learning p0 makes it the newest.
        versions.remember("p0:1", ProtocolVersion::V2);
        assert_eq!(versions.len(), MAX_REMEMBERED_PEERS);
        versions.remember("one more:1", ProtocolVersion::V1);
        assert_eq!(versions.len(), MAX_REMEMBERED_PEERS);
        assert_eq!(
            versions.version_for("p1:1"),
            ProtocolVersion::LATEST,
            "the one learned longest ago is forgotten"
        );
        assert_eq!(versions.version_for("p0:1"), ProtocolVersion::V2);
        assert_eq!(versions.version_for("p2:1"), ProtocolVersion::V1);
        assert_eq!(versions.version_for("one more:1"), ProtocolVersion::V1);
        // A small memory, through the handshake: the third peer forgets the first.
        let mut versions = PeerVersions::with_capacity(2);
        for peer in ["a", "b", "c"] {
            let mut hs = Handshake::new(
                Duration::ZERO,
                auth(),
                &versions,
                peer,
                1,
                "/tern/v1/streams",
            );
            assert!(drive(&mut hs, &mut versions, ProtocolVersion::V2).1.is_ok());
        }
        assert_eq!(versions.len(), 2);
        assert_eq!(versions.version_for("a:1"), ProtocolVersion::V3);
        assert_eq!(versions.version_for("b:1"), ProtocolVersion::V2);
        assert_eq!(versions.version_for("c:1"), ProtocolVersion::V2);
        // Remembering the newest version forgets the peer.
        versions.remember("b:1", ProtocolVersion::LATEST);
        assert_eq!(versions.len(), 1);
    }

    #[test]
    fn a_success_without_a_valid_proof_is_refused() {
        let versions = PeerVersions::new();
        let start = || {
            Handshake::new(
                Duration::ZERO,
                auth(),
                &versions,
                "o",
                1,
                "/tern/v1/streams",
            )
        };
        let mut hs = start();
        let req = hs.request(T0, nonce(1));
        let sig = Signature::parse(&req.auth).expect("sig");
        let forged = ClusterAuth::new(b"an impostor's key").prove(&sig, nonce(2));
        let wrong_request = auth().prove(
            &auth().sign(
                &SignedRequest {
                    method: "GET",
                    path_and_query: "/tern/v3/m4s/other",
                    host: "o:1",
                    body: b"",
                },
                T0,
                nonce(1),
            ),
            nonce(2),
        );
        for (proof, want) in [
            (None, AuthError::BadProof),
            (Some(forged.header_value()), AuthError::BadProof),
            (Some(wrong_request.header_value()), AuthError::BadProof),
            (
                Some("v1 nonce=zz".to_owned()),
                AuthError::Malformed {
                    header: PROOF_HEADER,
                    detail: "missing field `mac`".into(),
                },
            ),
        ] {
            let mut hs = start();
            hs.request(T0, nonce(1));
            let e = hs
                .handle_head(200, proof.as_deref())
                .expect_err("no valid proof");
            assert_eq!(
                e,
                HandshakeError::Proof {
                    peer: "o:1".into(),
                    source: want
                }
            );
            assert!(e.is_auth());
            assert!(e
                .lasting_refusal()
                .is_some_and(|s| s.contains("valid proof")));
            assert_eq!(e.refusal(), None);
            assert_eq!(hs.poll_timeout(), None);
        }
        // The right proof of the request sent passes.
        let good = auth().prove(&sig, nonce(2));
        assert!(matches!(
            hs.handle_head(200, Some(&good.header_value())),
            Ok(Head::Established(_))
        ));
        // A success to a request never made cannot be checked.
        let mut unsigned = start();
        assert!(matches!(
            unsigned.handle_head(200, Some(&good.header_value())),
            Err(HandshakeError::Proof { .. })
        ));
    }

    #[test]
    fn a_clock_skew_refusal_is_not_called_a_wrong_key() {
        let refused = |key: &[u8], server_utc: UtcMs| {
            let mut versions = PeerVersions::new();
            let mut hs = Handshake::new(
                Duration::ZERO,
                auth(),
                &versions,
                "origin",
                8888,
                "/tern/v1/m4s/main",
            );
            let req = hs.request(T0, nonce(1));
            let a = serve(
                key,
                ProtocolVersion::V3,
                &req,
                server_utc,
                &mut ReplayGuard::new(),
            );
            assert!(matches!(
                hs.handle_head(a.status, a.proof.as_deref()),
                Ok(Head::ReadBody { .. })
            ));
            hs.handle_refusal_body(Duration::ZERO, &mut versions, a.status, &a.body)
                .expect_err("refused")
        };
        let skew = refused(KEY, T0 + 45_000);
        assert!(
            matches!(
                skew,
                HandshakeError::AuthRefused {
                    status: 403,
                    cause: AuthRefusal::ClockSkew,
                    ..
                }
            ),
            "{skew:?}"
        );
        assert!(skew.is_auth());
        assert!(
            skew.auth_refusal().contains("clocks differ"),
            "{}",
            skew.auth_refusal()
        );
        assert!(skew.to_string().contains("45000 ms"), "{skew}");
        let why = skew.lasting_refusal().expect("lasting");
        assert!(
            why.contains("clocks differ") && !why.contains("key"),
            "{why}"
        );

        let key = refused(b"another key", T0);
        assert!(matches!(
            key,
            HandshakeError::AuthRefused {
                cause: AuthRefusal::Key,
                ..
            }
        ));
        assert!(key.is_auth());
        assert!(key.auth_refusal().contains("cluster key refused"));
        assert_eq!(
            key.lasting_refusal().as_deref(),
            Some("origin:8888 refused this node's cluster key (403)")
        );
        assert_eq!(key.refusal(), Some((403, "cluster auth failed")));
    }

    #[test]
    fn other_refusals_are_told_apart_and_bodies_are_bounded() {
        let mut versions = PeerVersions::new();
        let mut refuse = |status: u16, body: &[u8]| {
            let mut hs = Handshake::new(
                Duration::ZERO,
                auth(),
                &versions,
                "origin",
                8888,
                "/tern/v1/m4s/nosuch",
            );
            hs.request(T0, nonce(1));
            assert!(matches!(
                hs.handle_head(status, None),
                Ok(Head::ReadBody { .. })
            ));
            hs.handle_refusal_body(Duration::ZERO, &mut versions, status, body)
                .expect_err("refused")
        };
        let e = refuse(404, b"no such stream\n");
        assert!(e.is_not_found() && !e.is_auth(), "{e:?}");
        assert_eq!(e.refusal(), Some((404, "no such stream")));
        assert_eq!(
            e.lasting_refusal().as_deref(),
            Some("origin:8888 has no such stream (404)")
        );
        let e = refuse(410, b"gone");
        assert!(!e.is_not_found());
        assert!(e.lasting_refusal().is_some());
        let e = refuse(503, b"busy");
        assert_eq!(e.lasting_refusal(), None);
        assert_eq!(e.to_string(), "origin:8888 refused the request: 503 busy");
        // A 400 that is not a version mismatch is not retried.
        let e = refuse(400, b"bad from");
        assert!(!e.is_version_refusal());
        assert_eq!(e.refusal(), Some((400, "bad from")));
        // A long body, and one that is not UTF-8, are kept short and readable.
        let long = vec![b'x'; REFUSAL_BODY_READ_LIMIT];
        let e = refuse(500, &long);
        assert_eq!(e.refusal().map(|(_, b)| b.len()), Some(REFUSAL_BODY_KEPT));
        let e = refuse(500, &[0xff, 0xfe, b'o', b'k']);
        assert_eq!(e.refusal(), Some((500, "\u{fffd}\u{fffd}ok")));
        assert!(versions.is_empty());
    }

    #[test]
    fn each_attempt_must_answer_within_the_connect_timeout() {
        let mut versions = PeerVersions::new();
        let start = Duration::from_secs(100);
        let mut hs = Handshake::new(start, auth(), &versions, "slow", 1, "/tern/v1/streams");
        assert_eq!(hs.poll_timeout(), Some(start + CONNECT_TIMEOUT));
        hs.request(T0, nonce(1));
        assert_eq!(
            hs.handle_timeout(start + CONNECT_TIMEOUT - Duration::from_millis(1)),
            Ok(())
        );
        // A version refusal 1.5 s in: the next attempt has its own 2 s.
        let refused_at = start + Duration::from_millis(1500);
        assert!(matches!(
            hs.handle_refusal_body(
                refused_at,
                &mut versions,
                400,
                b"cluster protocol version mismatch: this node speaks v1 and v2"
            ),
            Ok(Retry { .. })
        ));
        assert_eq!(hs.poll_timeout(), Some(refused_at + CONNECT_TIMEOUT));
        assert_eq!(hs.handle_timeout(start + CONNECT_TIMEOUT), Ok(()));
        let e = hs
            .handle_timeout(refused_at + CONNECT_TIMEOUT)
            .expect_err("past the deadline");
        assert_eq!(
            e,
            HandshakeError::Timeout {
                peer: "slow:1".into()
            }
        );
        assert_eq!(e.to_string(), "slow:1 did not answer within 2s");
        assert!(!e.is_auth() && e.lasting_refusal().is_none() && e.refusal().is_none());
        assert_eq!(hs.poll_timeout(), None, "over");
        assert_eq!(hs.handle_timeout(refused_at + CONNECT_TIMEOUT * 2), Ok(()));
    }
}
