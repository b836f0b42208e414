//! The server side of a cluster request's handshake: what a node answers a signed
//! request for one of its cluster endpoints, before anything about it is revealed.
//!
//! Decisions it owns, in this order (the order is the security argument of
//! docs/protocol.md "Auth": a client without the key learns only that it was
//! refused, and which protocol versions this node speaks):
//! 1. the path's protocol version: a version this build does not speak is a `400`
//!    saying [`VERSION_MISMATCH`](crate::cluster::version::VERSION_MISMATCH) and
//!    what it speaks, so an older or newer client steps to one it shares;
//! 2. the node has a cluster key, else `403`;
//! 3. the `x-tern-auth` header: parsed, its MAC (constant time), the clock window,
//!    then the replay guard; a refusal is a `403` that explains a clock skew and
//!    nothing else;
//! 4. the proof and the connection's keys: the server's nonce is an input, the
//!    answer carries the `x-tern-proof` value and an [`Encoder`] of the version;
//! 5. which endpoint: signaling, or M4S / M4F / archive index / archive range of a
//!    stream whose name is checked (`400` for a bad one, `404` for no such
//!    endpoint). Whether the stream exists is the node's (its stream table).
//!
//! A request that fails 1–3 is also a line for the node's refusal log
//! ([`Refused::logged`]). Must not: do I/O, read a clock or make nonces, or look
//! at streams.

use crate::cluster::auth::{
    AuthError, ClusterAuth, Nonce, ReplayGuard, Signature, SignedRequest, AUTH_HEADER,
};
use crate::cluster::wire::Encoder;
use crate::cluster::ProtocolVersion;
use crate::media::UtcMs;
use crate::stream_name::StreamName;

/// The parts of a request the handshake looks at.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    pub method: &'a str,
    /// The path without the query (`/tern/v2/m4s/main`).
    pub path: &'a str,
    /// Path and query exactly as sent: what the signature covers.
    pub path_and_query: &'a str,
    /// The `Host` header (empty when there is none).
    pub host: &'a str,
    /// The `x-tern-auth` header's bytes, if there is one.
    pub auth_header: Option<&'a [u8]>,
}

/// Which cluster endpoint a request asked for (docs/protocol.md "Endpoints").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `streams`: signaling.
    Streams,
    /// `m4s/NAME`: frames.
    M4s(StreamName),
    /// `m4f/NAME`: live segments.
    M4f(StreamName),
    /// `dvr/NAME`: the archive's index.
    ArchiveIndex(StreamName),
    /// `archive/NAME`: a range of archived segments.
    ArchiveRange(StreamName),
}

impl Endpoint {
    /// The endpoint after the version prefix (`m4s/main`), or why it is none.
    pub fn parse(rest: &str) -> Result<Endpoint, Refused> {
        if rest == "streams" {
            return Ok(Endpoint::Streams);
        }
        let no_such = || Refused {
            status: 404,
            body: format!("no cluster endpoint {rest:?}"),
            logged: None,
        };
        let (kind, name) = rest.split_once('/').ok_or_else(no_such)?;
        let make: fn(StreamName) -> Endpoint = match kind {
            "m4s" => Endpoint::M4s,
            "m4f" => Endpoint::M4f,
            "dvr" => Endpoint::ArchiveIndex,
            "archive" => Endpoint::ArchiveRange,
            _ => return Err(no_such()),
        };
        let name = StreamName::new(name).map_err(|_| Refused {
            status: 400,
            body: format!("bad stream name {name:?}"),
            logged: None,
        })?;
        Ok(make(name))
    }

    /// The stream it is about (none for signaling).
    pub fn stream(&self) -> Option<&StreamName> {
        match self {
            Endpoint::Streams => None,
            Endpoint::M4s(n) | Endpoint::M4f(n) | Endpoint::ArchiveIndex(n) => Some(n),
            Endpoint::ArchiveRange(n) => Some(n),
        }
    }

    /// Its name on the wire (`m4s`, …), for logs and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Streams => "streams",
            Endpoint::M4s(_) => "m4s",
            Endpoint::M4f(_) => "m4f",
            Endpoint::ArchiveIndex(_) => "dvr",
            Endpoint::ArchiveRange(_) => "archive",
        }
    }
}

/// A request let in: the version it speaks, what it asked for, the proof header's
/// value to answer with and the encoder of the connection's messages.
pub struct Accepted {
    pub version: ProtocolVersion,
    pub endpoint: Endpoint,
    /// The `x-tern-proof` header's value.
    pub proof: String,
    pub encoder: Encoder,
}

/// A request refused: the HTTP status and body to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub body: String,
    /// For the node's refusal log (a cluster-auth refusal): what happened, with the
    /// path. `None` for refusals that need no line (a bad path of a client with the
    /// key).
    pub logged: Option<String>,
}

fn auth_refused(e: &AuthError, path: &str) -> Refused {
    Refused {
        status: 403,
        body: e.refusal_body(),
        logged: Some(format!("{e} ({path})")),
    }
}

/// Decides what a node with cluster key `cluster` and its replay guard (none: it
/// has no `cluster_key`) answers `asked` at `now_utc_ms`, with `server_nonce` for
/// its proof; remembers a request it lets in in the guard. See the module's comment
/// for the order.
pub fn accept(
    cluster: Option<(&ClusterAuth, &mut ReplayGuard)>,
    asked: &Asked<'_>,
    now_utc_ms: UtcMs,
    server_nonce: Nonce,
) -> Result<Accepted, Refused> {
    let Some((version, rest)) = ProtocolVersion::split_path(asked.path) else {
        return Err(Refused {
            status: 400,
            body: ProtocolVersion::mismatch_refusal(asked.path),
            logged: None,
        });
    };
    let Some((auth, guard)) = cluster else {
        return Err(Refused {
            status: 403,
            body: "cluster auth failed: this node has no cluster_key".into(),
            logged: Some("this node has no cluster_key".into()),
        });
    };
    let sig = asked
        .auth_header
        .ok_or(AuthError::Missing)
        .and_then(|v| {
            std::str::from_utf8(v).map_err(|_| AuthError::Malformed {
                header: AUTH_HEADER,
                detail: "not ASCII".into(),
            })
        })
        .and_then(Signature::parse)
        .and_then(|sig| {
            let signed = SignedRequest {
                method: asked.method,
                path_and_query: asked.path_and_query,
                host: asked.host,
                body: b"",
            };
            auth.verify(&signed, &sig, now_utc_ms, guard).map(|()| sig)
        })
        .map_err(|e| auth_refused(&e, asked.path))?;
    let endpoint = Endpoint::parse(rest)?;
    let proof = auth.prove(&sig, server_nonce);
    let keys = auth.session_keys(version, &sig.nonce, &proof.nonce);
    Ok(Accepted {
        version,
        endpoint,
        proof: proof.header_value(),
        encoder: Encoder::new(version, keys.server_to_client),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::Proof;
    use crate::cluster::message::Message;
    use crate::cluster::wire::Decoder;

    const NOW: UtcMs = 1_767_225_600_000;
    const HOST: &str = "origin:8888";

    fn auth() -> ClusterAuth {
        ClusterAuth::new(b"the-cluster-key-of-this-test-0123")
    }

    /// A request for `path` signed with `key` at `at`, and its signature.
    fn signed(key: &ClusterAuth, path: &str, at: UtcMs, nonce: u8) -> (String, Signature) {
        let sig = key.sign(
            &SignedRequest {
                method: "GET",
                path_and_query: path,
                host: HOST,
                body: b"",
            },
            at,
            [nonce; 16],
        );
        (sig.header_value(), sig)
    }

    fn ask<'a>(path: &'a str, header: Option<&'a str>) -> Asked<'a> {
        Asked {
            method: "GET",
            path: path.split('?').next().unwrap_or(path),
            path_and_query: path,
            host: HOST,
            auth_header: header.map(str::as_bytes),
        }
    }

    #[test]
    fn a_signed_request_is_let_in_and_its_keys_match_the_clients() {
        let key = auth();
        let mut guard = ReplayGuard::new();
        for version in ProtocolVersion::ALL {
            let path = format!("{}m4s/main?from=1.2", version.path_prefix());
            let (header, sig) = signed(&key, &path, NOW + 1000, version.number() as u8);
            let mut a = accept(
                Some((&key, &mut guard)),
                &ask(&path, Some(&header)),
                NOW,
                [9; 16],
            )
            .unwrap_or_else(|r| panic!("{r:?}"));
            assert_eq!(a.version, version);
            assert_eq!(
                a.endpoint,
                Endpoint::M4s(StreamName::new("main").unwrap_or_else(|e| panic!("{e}")))
            );
            // The client checks the proof and decodes what the encoder sends.
            let proof = Proof::parse(&a.proof).unwrap_or_else(|e| panic!("{e}"));
            key.check_proof(&sig, &proof)
                .unwrap_or_else(|e| panic!("{e}"));
            let keys = key.session_keys(version, &sig.nonce, &proof.nonce);
            let mut dec = Decoder::new(version, keys.server_to_client);
            dec.handle_bytes(&a.encoder.encode(&Message::Heartbeat { utc_ms: NOW }));
            assert!(matches!(
                dec.poll_message(),
                Ok(Some(Message::Heartbeat { utc_ms: NOW }))
            ));
        }
    }

    #[test]
    fn refusals_come_in_order_and_tell_an_outsider_nothing() {
        let key = auth();
        let mut guard = ReplayGuard::new();
        let path = "/tern/v2/m4s/main";
        let (header, _) = signed(&key, path, NOW, 1);
        let refused = |r: Result<Accepted, Refused>| match r {
            Ok(_) => panic!("let in"),
            Err(r) => r,
        };
        // A version this build does not speak: 400 with the versions, before auth.
        let r = refused(accept(
            Some((&key, &mut guard)),
            &ask("/tern/v9/m4s/main", None),
            NOW,
            [0; 16],
        ));
        assert_eq!(r.status, 400);
        assert!(
            r.body
                .starts_with(crate::cluster::version::VERSION_MISMATCH),
            "{r:?}"
        );
        // No key on this node.
        let r = refused(accept(None, &ask(path, Some(&header)), NOW, [0; 16]));
        assert_eq!((r.status, r.logged.is_some()), (403, true));
        // No header, a garbled one, another key: the same body, a logged cause.
        let other = ClusterAuth::new(b"another-key-of-this-test-012345678");
        let (wrong, _) = signed(&other, path, NOW, 2);
        for h in [None, Some("v1 garbage"), Some(wrong.as_str())] {
            let r = refused(accept(
                Some((&key, &mut guard)),
                &ask(path, h),
                NOW,
                [0; 16],
            ));
            assert_eq!(
                (r.status, r.body.as_str()),
                (403, "cluster auth failed"),
                "{h:?}"
            );
            assert!(r.logged.is_some_and(|l| l.contains(path)), "{h:?}");
        }
        // A bad endpoint is only named to a client with the key, after auth.
        let (h, _) = signed(&key, "/tern/v2/nothing/main", NOW, 3);
        let r = refused(accept(
            None,
            &ask("/tern/v2/nothing/main", Some(&h)),
            NOW,
            [0; 16],
        ));
        assert_eq!(r.status, 403);
        let r = refused(accept(
            Some((&key, &mut guard)),
            &ask("/tern/v2/nothing/main", Some(&h)),
            NOW,
            [0; 16],
        ));
        assert_eq!((r.status, r.logged), (404, None));
        let (h, _) = signed(&key, "/tern/v2/m4s/..", NOW, 4);
        let r = refused(accept(
            Some((&key, &mut guard)),
            &ask("/tern/v2/m4s/..", Some(&h)),
            NOW,
            [0; 16],
        ));
        assert_eq!(r.status, 400);
    }

    #[test]
    fn a_clock_skew_is_explained_and_a_replay_refused() {
        let key = auth();
        let mut guard = ReplayGuard::new();
        let path = "/tern/v3/streams";
        let (late, _) = signed(&key, path, NOW - 45_000, 1);
        let Err(r) = accept(
            Some((&key, &mut guard)),
            &ask(path, Some(&late)),
            NOW,
            [0; 16],
        ) else {
            panic!("a request 45 s old was let in");
        };
        assert!(r.status == 403 && r.body.contains("clocks differ"), "{r:?}");
        let (h, _) = signed(&key, path, NOW, 2);
        let first = accept(Some((&key, &mut guard)), &ask(path, Some(&h)), NOW, [0; 16]);
        assert!(matches!(
            first,
            Ok(Accepted {
                endpoint: Endpoint::Streams,
                ..
            })
        ));
        // The same request again, inside the window: a replay.
        let Err(r) = accept(
            Some((&key, &mut guard)),
            &ask(path, Some(&h)),
            NOW + 5,
            [0; 16],
        ) else {
            panic!("a replayed request was let in");
        };
        assert!(
            r.logged.as_ref().is_some_and(|l| l.contains("replayed")),
            "{r:?}"
        );
    }

    #[test]
    fn endpoints_parse() {
        let name = |s: &str| StreamName::new(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Endpoint::parse("streams"), Ok(Endpoint::Streams));
        assert_eq!(Endpoint::parse("m4f/cam"), Ok(Endpoint::M4f(name("cam"))));
        assert_eq!(
            Endpoint::parse("dvr/cam"),
            Ok(Endpoint::ArchiveIndex(name("cam")))
        );
        assert_eq!(
            Endpoint::parse("archive/a/b").map(|e| e.kind()),
            Ok("archive")
        );
        for bad in ["", "m4s", "streams/x", "live/cam"] {
            assert_eq!(
                Endpoint::parse(bad).map_err(|r| r.status),
                Err(404),
                "{bad}"
            );
        }
    }
}
