//! Cluster protocol versions between a v2 client and v2 or v1 servers: a v2 client
//! asks v2 first, falls back to v1 when a v1 build refuses v2, and remembers it; a
//! v1 client still works with a v2 node.
//!
//! The v1 build is stood in for by a small server that answers exactly as v1 nodes
//! do: `400 cluster protocol version mismatch: this node speaks v1` for any path but
//! `/tern/v1/`, and signed, HMAC-SHA256-tagged responses there.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::auth::{
    ClusterAuth, ReplayGuard, Signature, SignedRequest, AUTH_HEADER, PROOF_HEADER,
};
use tern_core::cluster::message::Message;
use tern_core::cluster::wire::Encoder;
use tern_core::cluster::ProtocolVersion;
use tern_net::{Clock, TokioClock, TokioNet};
use tern_node::cluster::client::ClusterClient;

const KEY: &[u8] = b"a cluster key for the version tests";

fn client() -> ClusterClient<TokioNet, TokioClock> {
    ClusterClient::new(
        TokioNet,
        TokioClock::new(),
        Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(7))),
        ClusterAuth::new(KEY),
    )
}

/// Serves like a v1 build; counts the requests it gets.
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn v1_node() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let guard = Arc::new(Mutex::new(ReplayGuard::new()));
    tokio::spawn(async move {
        let mut nonce = 0u8;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            nonce = nonce.wrapping_add(1);
            let (count, guard) = (count.clone(), guard.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let resp = answer_as_v1(&req, &guard, [nonce; 16]);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, requests)
}

/// What a v1 node's cluster route answers (its order: the path's version, then auth).
fn answer_as_v1(
    req: &http::Request<hyper::body::Incoming>,
    guard: &Mutex<ReplayGuard>,
    server_nonce: [u8; 16],
) -> http::Response<Full<Bytes>> {
    let status = |code: u16, body: String| {
        http::Response::builder()
            .status(code)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    let path = req.uri().path();
    if !path.starts_with("/tern/v1/") {
        return status(
            400,
            format!("cluster protocol version mismatch: this node speaks v1 ({path:?})"),
        );
    }
    let auth = ClusterAuth::new(KEY);
    let sig = req
        .headers()
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Signature::parse(v).ok());
    let Some(sig) = sig else {
        return status(403, "cluster auth failed".into());
    };
    let signed = SignedRequest {
        method: "GET",
        path_and_query: req.uri().path_and_query().map_or(path, |p| p.as_str()),
        host: req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
        body: b"",
    };
    let now = TokioClock::new().utc_ms();
    if auth
        .verify(&signed, &sig, now, &mut guard.lock().expect("guard"))
        .is_err()
    {
        return status(403, "cluster auth failed".into());
    }
    let proof = auth.prove(&sig, server_nonce);
    let keys = auth.session_keys(ProtocolVersion::V1, &sig.nonce, &proof.nonce);
    let mut enc = Encoder::new(ProtocolVersion::V1, keys.server_to_client);
    let mut body = enc
        .encode(&Message::Hello {
            version: 1,
            node: "old".into(),
        })
        .to_vec();
    body.extend_from_slice(&enc.encode(&Message::Heartbeat { utc_ms: now }));
    http::Response::builder()
        .status(200)
        .header(PROOF_HEADER, proof.header_value())
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

#[tokio::test]
async fn a_v2_client_falls_back_to_v1_once_and_remembers() {
    let (port, requests) = v1_node().await;
    let c = client();
    let peer = format!("127.0.0.1:{port}");
    assert_eq!(c.version_for(&peer), ProtocolVersion::V2);
    let mut s = c
        .open("127.0.0.1", port, "/tern/v1/streams")
        .await
        .expect("v1 peer answers");
    assert_eq!(s.version(), ProtocolVersion::V1);
    assert!(matches!(
        s.next().await,
        Ok(Some(Message::Hello { version: 1, .. }))
    ));
    assert!(matches!(
        s.next().await,
        Ok(Some(Message::Heartbeat { .. }))
    ));
    assert_eq!(requests.load(Ordering::SeqCst), 2, "v2 refused, then v1");
    assert_eq!(c.version_for(&peer), ProtocolVersion::V1);

    // Remembered, by clones of the client too: one request from now on.
    let mut s = c
        .clone()
        .open("127.0.0.1", port, "/tern/v1/m4s/main")
        .await
        .expect("v1 again");
    assert_eq!(s.version(), ProtocolVersion::V1);
    assert!(matches!(
        s.next().await,
        Ok(Some(Message::Hello { version: 1, .. }))
    ));
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_v2_node_answers_v2_and_v1_clients() {
    let config = tern_core::config::parse(&format!(
        "http 127.0.0.1:0;\ncluster_key \"{}\";\nstream main {{ input fake://fake?width=256&height=16; }}\n",
        std::str::from_utf8(KEY).expect("utf8")
    ))
    .expect("config");
    let node = tern_node::start(&config, TokioNet, TokioClock::new())
        .await
        .expect("node starts");
    let port = node.local_addrs()[0].port();
    let c = client();
    for (version, negotiated) in [(ProtocolVersion::V2, true), (ProtocolVersion::V1, false)] {
        let mut s = if negotiated {
            c.open("127.0.0.1", port, "/tern/v1/m4s/main").await
        } else {
            // A v1 build's request: the v1 path, v1 keys and tags.
            c.open_version(ProtocolVersion::V1, "127.0.0.1", port, "/tern/v1/m4s/main")
                .await
        }
        .expect("the node answers");
        assert_eq!(s.version(), version);
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            match s.next().await.expect("valid messages") {
                Some(Message::Hello { version: v, .. }) => {
                    assert_eq!(v, version.number());
                    kinds.push("hello");
                }
                Some(Message::MediaInfo(_)) => kinds.push("media info"),
                Some(Message::Frame(_)) => kinds.push("frame"),
                Some(_) => {}
                None => panic!("the node ended the response"),
            }
        }
        assert_eq!(kinds, ["hello", "media info", "frame"], "{version}");
    }
    assert_eq!(
        c.version_for(&format!("127.0.0.1:{port}")),
        ProtocolVersion::V2
    );

    // A version neither speaks is refused with the versions this node speaks.
    let err = c
        .open_version(ProtocolVersion::V1, "127.0.0.1", port, "/tern/v3/streams")
        .await
        .err()
        .expect("refused");
    assert!(err.is_version_refusal(), "{err}");
    assert!(
        err.to_string().contains("this node speaks v1 and v2"),
        "{err}"
    );
}
