//! A peer that holds the cluster key but sends what no Tern node would: the bounds an
//! edge keeps against it (issue 11, finding 4).
//!
//! The peer is a small signed server speaking protocol v1 (a v2 client falls back to
//! it), answering each path with the messages the test gives.

use std::convert::Infallible;
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
use tern_core::cluster::message::{ArchiveEntry, DvrFacts, Message};
use tern_core::cluster::wire::Encoder;
use tern_core::cluster::ProtocolVersion;
use tern_core::StreamName;
use tern_net::{Clock, TokioClock, TokioNet};
use tern_node::archive::{Archive, RemoteArchive};
use tern_node::cluster::client::ClusterClient;

const KEY: &[u8] = b"a cluster key for the hostile peer tests";

type Answer = dyn Fn(&str) -> Vec<Message> + Send + Sync;

fn client() -> ClusterClient<TokioNet, TokioClock> {
    ClusterClient::new(
        TokioNet,
        TokioClock::new(),
        Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(11))),
        ClusterAuth::new(KEY),
    )
}

/// Serves `answer(path_and_query)` as a signed v1 response; returns the port.
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn hostile_peer(answer: Arc<Answer>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let guard = Arc::new(Mutex::new(ReplayGuard::new()));
    tokio::spawn(async move {
        let mut nonce = 0u8;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            nonce = nonce.wrapping_add(1);
            let (guard, answer) = (guard.clone(), answer.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let resp = respond(&req, &guard, [nonce; 16], answer.as_ref());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn respond(
    req: &http::Request<hyper::body::Incoming>,
    guard: &Mutex<ReplayGuard>,
    server_nonce: [u8; 16],
    answer: &Answer,
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
    let Some(sig) = req
        .headers()
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Signature::parse(v).ok())
    else {
        return status(403, "cluster auth failed".into());
    };
    let path_and_query = req.uri().path_and_query().map_or(path, |p| p.as_str());
    let signed = SignedRequest {
        method: "GET",
        path_and_query,
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
            node: "hostile".into(),
        })
        .to_vec();
    for m in answer(path_and_query) {
        body.extend_from_slice(&enc.encode(&m));
    }
    http::Response::builder()
        .status(200)
        .header(PROOF_HEADER, proof.header_value())
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

const BASE: u64 = 1_767_225_600_000;

/// Finding 4: a `/tern/v1/dvr` answer with 200 000 entries outside the asked window
/// became a 17 MB playlist. The edge keeps only the entries of the window.
#[tokio::test]
async fn index_entries_are_clipped_to_the_asked_window() {
    let port = hostile_peer(Arc::new(|_path: &str| {
        let mut entries: Vec<ArchiveEntry> = (0..199_990u64)
            .map(|i| ArchiveEntry {
                utc_start_ms: BASE + 10_000_000 + i * 2000,
                duration_ms: 2000,
                discontinuity: false,
            })
            .collect();
        // The ten the window holds, last and out of order.
        entries.extend((0..10u64).rev().map(|i| ArchiveEntry {
            utc_start_ms: BASE + i * 2000,
            duration_ms: 2000,
            discontinuity: false,
        }));
        vec![Message::DvrIndex {
            facts: DvrFacts {
                depth_secs: 0,
                ranges: vec![(BASE, 20_000)],
            },
            entries,
        }]
    }))
    .await;
    let name = StreamName::new("main").expect("name");
    let archive = RemoteArchive::new(
        name.clone(),
        vec![("127.0.0.1".into(), port, name)],
        client(),
        false,
    );
    let ix = archive
        .index(Some((BASE, BASE + 20_000)))
        .await
        .expect("index");
    assert_eq!(ix.entries.len(), 10, "first: {:?}", ix.entries.first());
    assert!(ix
        .entries
        .windows(2)
        .all(|w| w[0].utc_start_ms < w[1].utc_start_ms));
}
