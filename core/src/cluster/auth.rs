//! Cluster auth (docs/design.md §5, docs/protocol.md "Auth"): request signatures, the
//! replay guard, the server's proof and the per-connection message keys.
//!
//! Owns: every use of the cluster key. The key never leaves this module in any form
//! but an HMAC output. Must not: read a clock or make nonces (both are inputs, so the
//! simulation stays deterministic), or know HTTP beyond the signed fields.

use std::collections::BTreeSet;
use std::fmt::Write;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::cluster::ProtocolVersion;
use crate::media::UtcMs;

type HmacSha256 = Hmac<Sha256>;

/// Request header carrying the client's signature.
pub const AUTH_HEADER: &str = "x-tern-auth";
/// Response header carrying the server's proof that it knows the key too.
pub const PROOF_HEADER: &str = "x-tern-proof";
/// A request's timestamp may differ from the server's clock by at most this much.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Requests remembered by the replay guard (beyond this, the oldest are forgotten,
/// which is safe only because they are also older than the skew window in practice;
/// a flood of valid requests needs the key anyway).
pub const REPLAY_GUARD_CAPACITY: usize = 65_536;
pub const NONCE_LEN: usize = 16;
/// Bytes of the per-message MAC on the wire (HMAC-SHA256 truncated).
pub const MESSAGE_TAG_LEN: usize = 16;

pub type Nonce = [u8; NONCE_LEN];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {AUTH_HEADER} header: the peer is not a Tern node or has no cluster_key")]
    Missing,
    #[error("malformed {header} header: {detail}")]
    Malformed {
        header: &'static str,
        detail: String,
    },
    #[error(
        "cluster auth version {0:?} is not supported (this node speaks v1); upgrade the older node"
    )]
    Version(String),
    #[error("clocks differ by {skew_ms} ms, more than the {window_ms} ms allowed; fix the clock (NTP) on one of the nodes")]
    ClockSkew { skew_ms: u64, window_ms: u64 },
    #[error("signature does not match: the peer's cluster_key differs from ours")]
    WrongKey,
    #[error("request replayed (same timestamp and nonce seen before)")]
    Replay,
    #[error("the server could not prove it knows the cluster_key: wrong key on one side, or an impostor")]
    BadProof,
}

impl AuthError {
    /// What a server answers (with a `403`) to a request refused for this reason:
    /// a clock skew is explained (the request's MAC was right, so the client knows
    /// the key), nothing else is (the endpoints tell a wrong key nothing).
    pub fn refusal_body(&self) -> String {
        match self {
            AuthError::ClockSkew { .. } => format!("cluster auth failed: {self}"),
            _ => "cluster auth failed".to_owned(),
        }
    }
}

/// The parts of an HTTP request the signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path and query exactly as sent (`/tern/v1/m4s/main?from=1.2`).
    pub path_and_query: &'a str,
    /// The `Host` header: the target the client meant.
    pub host: &'a str,
    pub body: &'a [u8],
}

/// A request's signature: timestamp, nonce and MAC. Sent as
/// `x-tern-auth: v1 ts=<ms> nonce=<32 hex> mac=<64 hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub ts_ms: UtcMs,
    pub nonce: Nonce,
    pub mac: [u8; 32],
}

/// The server's answer: its nonce and a MAC binding both nonces and the request MAC.
/// Sent as `x-tern-proof: v1 nonce=<32 hex> mac=<64 hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub nonce: Nonce,
    pub mac: [u8; 32],
}

/// Keys for the MACs of the messages of one connection, one per direction.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub server_to_client: [u8; 32],
    pub client_to_server: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// The cluster key, ready to sign and verify.
#[derive(Clone)]
pub struct ClusterAuth {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterAuth(<redacted>)")
    }
}

impl ClusterAuth {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m
    }

    fn request_mac(&self, req: &SignedRequest<'_>, ts_ms: UtcMs, nonce: &Nonce) -> HmacSha256 {
        let body_hash = Sha256::digest(req.body);
        self.mac(&[
            b"tern-auth-v1",
            req.method.as_bytes(),
            req.path_and_query.as_bytes(),
            req.host.as_bytes(),
            &ts_ms.to_be_bytes(),
            nonce,
            &body_hash,
        ])
    }

    /// Signs a request made at `now_utc_ms` with a fresh `nonce`.
    pub fn sign(&self, req: &SignedRequest<'_>, now_utc_ms: UtcMs, nonce: Nonce) -> Signature {
        let mac = self
            .request_mac(req, now_utc_ms, &nonce)
            .finalize()
            .into_bytes();
        Signature {
            ts_ms: now_utc_ms,
            nonce,
            mac: mac.into(),
        }
    }

    /// Checks a request's signature: MAC (in constant time), then the clock window,
    /// then replay. Only a request that passes all three is remembered by `guard`.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        sig: &Signature,
        now_utc_ms: UtcMs,
        guard: &mut ReplayGuard,
    ) -> Result<(), AuthError> {
        let skew_ms = now_utc_ms.abs_diff(sig.ts_ms);
        // The MAC first: an outsider learns nothing, not even about our clock.
        self.request_mac(req, sig.ts_ms, &sig.nonce)
            .verify_slice(&sig.mac)
            .map_err(|_| AuthError::WrongKey)?;
        if skew_ms > MAX_CLOCK_SKEW_MS {
            return Err(AuthError::ClockSkew {
                skew_ms,
                window_ms: MAX_CLOCK_SKEW_MS,
            });
        }
        guard.check_and_remember(now_utc_ms, sig)
    }

    fn proof_mac(&self, sig: &Signature, server_nonce: &Nonce) -> HmacSha256 {
        self.mac(&[b"tern-proof-v1", &sig.nonce, server_nonce, &sig.mac])
    }

    /// The server's proof for a verified request.
    pub fn prove(&self, sig: &Signature, server_nonce: Nonce) -> Proof {
        Proof {
            nonce: server_nonce,
            mac: self
                .proof_mac(sig, &server_nonce)
                .finalize()
                .into_bytes()
                .into(),
        }
    }

    /// The client's check of the server's proof (constant time).
    pub fn check_proof(&self, sig: &Signature, proof: &Proof) -> Result<(), AuthError> {
        self.proof_mac(sig, &proof.nonce)
            .verify_slice(&proof.mac)
            .map_err(|_| AuthError::BadProof)
    }

    /// Per-connection keys from the cluster key and both nonces, for the messages of
    /// protocol `version`: each version derives its keys under its own labels, so a
    /// key is only ever used with one MAC algorithm.
    pub fn session_keys(
        &self,
        version: ProtocolVersion,
        client_nonce: &Nonce,
        server_nonce: &Nonce,
    ) -> SessionKeys {
        let derive = |label: &[u8]| -> [u8; 32] {
            self.mac(&[label, client_nonce, server_nonce])
                .finalize()
                .into_bytes()
                .into()
        };
        let (s2c, c2s): (&[u8], &[u8]) = match version {
            ProtocolVersion::V1 => (
                b"tern-conn-v1 server-to-client",
                b"tern-conn-v1 client-to-server",
            ),
            ProtocolVersion::V2 => (
                b"tern-conn-v2 server-to-client",
                b"tern-conn-v2 client-to-server",
            ),
            ProtocolVersion::V3 => (
                b"tern-conn-v3 server-to-client",
                b"tern-conn-v3 client-to-server",
            ),
        };
        SessionKeys {
            server_to_client: derive(s2c),
            client_to_server: derive(c2s),
        }
    }
}

/// Remembers the signatures accepted within the clock window so that each is accepted
/// once.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: BTreeSet<(UtcMs, Nonce)>,
}

impl ReplayGuard {
    pub fn new() -> Self {
        Self::default()
    }

    fn check_and_remember(&mut self, now_utc_ms: UtcMs, sig: &Signature) -> Result<(), AuthError> {
        // Forget what the clock window rejects anyway.
        let horizon = now_utc_ms.saturating_sub(MAX_CLOCK_SKEW_MS + 1);
        while let Some(first) = self.seen.first() {
            if first.0 >= horizon && self.seen.len() < REPLAY_GUARD_CAPACITY {
                break;
            }
            self.seen.pop_first();
        }
        if !self.seen.insert((sig.ts_ms, sig.nonce)) {
            return Err(AuthError::Replay);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex<const N: usize>(s: &str, header: &'static str, what: &str) -> Result<[u8; N], AuthError> {
    let bad = || AuthError::Malformed {
        header,
        detail: format!("{what} must be {} hex digits", N * 2),
    };
    if s.len() != N * 2 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Splits `v1 a=x b=y` into its fields, checking the version.
fn fields<'a>(
    value: &'a str,
    header: &'static str,
    names: &[&str],
) -> Result<Vec<&'a str>, AuthError> {
    let mut parts = value.split_ascii_whitespace();
    match parts.next() {
        Some("v1") => {}
        Some(v) if v.starts_with('v') && !v.contains('=') => {
            return Err(AuthError::Version(v.into()))
        }
        _ => {
            return Err(AuthError::Malformed {
                header,
                detail: "must start with the version `v1`".into(),
            })
        }
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let part = parts.next().ok_or_else(|| AuthError::Malformed {
            header,
            detail: format!("missing field `{name}`"),
        })?;
        let v = part
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| AuthError::Malformed {
                header,
                detail: format!("expected field `{name}=` , found {part:?}"),
            })?;
        out.push(v);
    }
    if parts.next().is_some() {
        return Err(AuthError::Malformed {
            header,
            detail: "unexpected extra fields".into(),
        });
    }
    Ok(out)
}

impl Signature {
    pub fn header_value(&self) -> String {
        format!(
            "v1 ts={} nonce={} mac={}",
            self.ts_ms,
            hex(&self.nonce),
            hex(&self.mac)
        )
    }

    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let f = fields(value, AUTH_HEADER, &["ts", "nonce", "mac"])?;
        let ts_ms = f[0].parse().map_err(|_| AuthError::Malformed {
            header: AUTH_HEADER,
            detail: "ts must be UTC milliseconds".into(),
        })?;
        Ok(Self {
            ts_ms,
            nonce: unhex(f[1], AUTH_HEADER, "nonce")?,
            mac: unhex(f[2], AUTH_HEADER, "mac")?,
        })
    }
}

impl Proof {
    pub fn header_value(&self) -> String {
        format!("v1 nonce={} mac={}", hex(&self.nonce), hex(&self.mac))
    }

    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let f = fields(value, PROOF_HEADER, &["nonce", "mac"])?;
        Ok(Self {
            nonce: unhex(f[0], PROOF_HEADER, "nonce")?,
            mac: unhex(f[1], PROOF_HEADER, "mac")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: SignedRequest<'static> = SignedRequest {
        method: "GET",
        path_and_query: "/tern/v1/m4s/main?from=1.2",
        host: "origin:8888",
        body: b"",
    };
    const T: UtcMs = 1_767_225_600_000;

    #[test]
    fn sign_verify_prove() {
        let a = ClusterAuth::new(b"a long shared cluster key");
        let sig = a.sign(&REQ, T, [1; 16]);
        let parsed = Signature::parse(&sig.header_value()).expect("parse");
        assert_eq!(parsed, sig);
        let mut guard = ReplayGuard::new();
        a.verify(&REQ, &parsed, T + 1500, &mut guard)
            .expect("valid");
        let proof = a.prove(&sig, [2; 16]);
        let proof = Proof::parse(&proof.header_value()).expect("parse proof");
        a.check_proof(&sig, &proof).expect("proof");
        let k1 = a.session_keys(ProtocolVersion::V1, &sig.nonce, &proof.nonce);
        assert_ne!(k1.server_to_client, k1.client_to_server);
        assert_ne!(
            k1,
            a.session_keys(ProtocolVersion::V1, &sig.nonce, &[3; 16])
        );
        // Each version has its own keys.
        let k2 = a.session_keys(ProtocolVersion::V2, &sig.nonce, &proof.nonce);
        assert_ne!(k1.server_to_client, k2.server_to_client);
        assert_ne!(k1.client_to_server, k2.client_to_server);
        let k3 = a.session_keys(ProtocolVersion::V3, &sig.nonce, &proof.nonce);
        for k in [k1, k2] {
            assert_ne!(k.server_to_client, k3.server_to_client);
            assert_ne!(k.client_to_server, k3.client_to_server);
        }
    }

    #[test]
    fn golden_header() {
        let sig = ClusterAuth::new(b"123").sign(&REQ, T, [0xAB; 16]);
        insta::assert_snapshot!(sig.header_value());
    }

    #[test]
    fn wrong_key_replay_and_skew() {
        let a = ClusterAuth::new(b"key one");
        let b = ClusterAuth::new(b"key two");
        let mut guard = ReplayGuard::new();
        let sig = b.sign(&REQ, T, [1; 16]);
        assert_eq!(
            a.verify(&REQ, &sig, T, &mut guard),
            Err(AuthError::WrongKey)
        );
        assert!(guard.is_empty(), "a rejected request is not remembered");

        let sig = a.sign(&REQ, T, [1; 16]);
        a.verify(&REQ, &sig, T, &mut guard).expect("first");
        assert_eq!(a.verify(&REQ, &sig, T, &mut guard), Err(AuthError::Replay));

        let skewed = a.sign(&REQ, T - 45_000, [2; 16]);
        assert_eq!(
            a.verify(&REQ, &skewed, T, &mut guard),
            Err(AuthError::ClockSkew {
                skew_ms: 45_000,
                window_ms: MAX_CLOCK_SKEW_MS
            })
        );
        // The proof of a server with another key fails.
        let proof = b.prove(&sig, [9; 16]);
        assert_eq!(a.check_proof(&sig, &proof), Err(AuthError::BadProof));
    }

    #[test]
    fn a_replay_is_refused_for_as_long_as_the_clock_window_accepts_it() {
        let a = ClusterAuth::new(b"key one");
        let mut guard = ReplayGuard::new();
        let sig = a.sign(&REQ, T, [3; 16]);
        a.verify(&REQ, &sig, T, &mut guard).expect("first");
        // Other requests come and go meanwhile; the replay comes back at every
        // second up to the edge of the window, and is refused each time.
        for s in 1..=MAX_CLOCK_SKEW_MS / 1000 {
            let now = T + s * 1000;
            let other = a.sign(&REQ, now, [(s % 200) as u8 + 10; 16]);
            a.verify(&REQ, &other, now, &mut guard)
                .expect("a fresh request");
            assert_eq!(
                a.verify(&REQ, &sig, now, &mut guard),
                Err(AuthError::Replay),
                "replayed {s} s later"
            );
        }
        // Past the window the clock check refuses it (and the guard may forget it).
        let late = T + MAX_CLOCK_SKEW_MS + 1000;
        assert!(matches!(
            a.verify(&REQ, &sig, late, &mut guard),
            Err(AuthError::ClockSkew { .. })
        ));
    }

    #[test]
    fn every_signed_field_matters() {
        let a = ClusterAuth::new(b"k");
        let sig = a.sign(&REQ, T, [1; 16]);
        let variants = [
            SignedRequest {
                method: "POST",
                ..REQ
            },
            SignedRequest {
                path_and_query: "/tern/v1/m4s/other?from=1.2",
                ..REQ
            },
            SignedRequest {
                host: "evil:8888",
                ..REQ
            },
            SignedRequest { body: b"x", ..REQ },
        ];
        for v in variants {
            let mut guard = ReplayGuard::new();
            assert_eq!(
                a.verify(&v, &sig, T, &mut guard),
                Err(AuthError::WrongKey),
                "{v:?}"
            );
        }
        let mut moved = sig;
        moved.ts_ms += 1;
        assert_eq!(
            a.verify(&REQ, &moved, T, &mut ReplayGuard::new()),
            Err(AuthError::WrongKey)
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            "",
            "v1",
            "v2 ts=1 nonce=00 mac=00",
            "v1 ts=x nonce=00000000000000000000000000000000 mac=00",
            "v1 ts=1 nonce=zz000000000000000000000000000000 mac=0000000000000000000000000000000000000000000000000000000000000000",
            "v1 ts=1 nonce=00000000000000000000000000000000 mac=0000000000000000000000000000000000000000000000000000000000000000 extra",
            "v1 ts=1 nonce=é0000000000000000000000000000000 mac=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(Signature::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Signature::parse("v2 ts=1"),
            Err(AuthError::Version(_))
        ));
    }
}
