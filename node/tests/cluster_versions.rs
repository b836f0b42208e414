//! Cluster protocol versions between a v3 client and v3, v2 or v1 servers: a v3
//! client asks v3 first, steps down one version each time an older build refuses
//! (v3, v2, v1), and remembers where it stopped; v1 and v2 clients still work with
//! a v3 node.
//!
//! The older builds are stood in for by a small server that answers exactly as they
//! do: `400 cluster protocol version mismatch: this node speaks v1` (or `v1 and
//! v2`) for a path of a version it does not speak, and signed, tagged responses of
//! that version otherwise.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tern_core::cluster::accept::{accept, Asked};
use tern_core::cluster::auth::{ClusterAuth, ReplayGuard, AUTH_HEADER, PROOF_HEADER};
use tern_core::cluster::message::Message;
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

/// A v3 node with the test key and a `fake://` stream `main` (`dvr` is its `dvr`
/// line's path, if any); its HTTP port.
async fn v3_node(dvr: Option<&std::path::Path>) -> (tern_node::RunningNode<TokioClock>, u16) {
    let dvr = dvr.map_or(String::new(), |d| format!(" dvr {};", d.display()));
    let config = tern_core::config::parse(&format!(
        "http 127.0.0.1:0;\ncluster_key \"{}\";\nstream main {{ input fake://fake?width=256&height=16;{dvr} }}\n",
        std::str::from_utf8(KEY).expect("utf8")
    ))
    .expect("config");
    let node = tern_node::start(&config, TokioNet, TokioClock::new())
        .await
        .expect("node starts");
    let port = node.local_addrs()[0].port();
    (node, port)
}

/// Opens `path` on the old node at `port`, which must answer in `version` with its
/// `Hello` and a heartbeat.
async fn open_old(
    c: &ClusterClient<TokioNet, TokioClock>,
    port: u16,
    path: &str,
    version: ProtocolVersion,
) {
    let mut s = c
        .open("127.0.0.1", port, path)
        .await
        .expect("the old node answers");
    assert_eq!(s.version(), version);
    match s.next().await {
        Ok(Some(Message::Hello { version: v, .. })) => assert_eq!(v, version.number()),
        other => panic!("not a Hello: {other:?}"),
    }
    assert!(matches!(
        s.next().await,
        Ok(Some(Message::Heartbeat { .. }))
    ));
}

/// Serves like a build whose newest version is `newest`; counts the requests it
/// gets.
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn old_node(newest: ProtocolVersion) -> (u16, Arc<AtomicUsize>) {
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
                    let resp = answer_as_old(newest, &req, &guard, [nonce; 16]);
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

/// What an older node's cluster route answers (its order: the path's version, then
/// auth).
fn answer_as_old(
    newest: ProtocolVersion,
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
    let spoken: Vec<ProtocolVersion> = ProtocolVersion::ALL
        .into_iter()
        .filter(|v| *v <= newest)
        .collect();
    if !spoken.iter().any(|v| path.starts_with(v.path_prefix())) {
        let names: Vec<String> = spoken.iter().map(|v| v.to_string()).collect();
        return status(
            400,
            format!(
                "cluster protocol version mismatch: this node speaks {} ({path:?})",
                names.join(" and ")
            ),
        );
    }
    // What it speaks it checks as any node does (core's `accept`).
    let asked = Asked {
        method: "GET",
        path,
        path_and_query: req.uri().path_and_query().map_or(path, |p| p.as_str()),
        host: req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
        auth_header: req.headers().get(AUTH_HEADER).map(|v| v.as_bytes()),
    };
    let auth = ClusterAuth::new(KEY);
    let now = TokioClock::new().utc_ms();
    let mut guard = guard.lock().expect("guard");
    let accepted = match accept(Some((&auth, &mut guard)), &asked, now, server_nonce) {
        Ok(a) => a,
        Err(r) => return status(r.status, r.body),
    };
    let (version, proof, mut enc) = (accepted.version, accepted.proof, accepted.encoder);
    let mut body = enc
        .encode(&Message::Hello {
            version: version.number(),
            node: "old".into(),
        })
        .to_vec();
    body.extend_from_slice(&enc.encode(&Message::Heartbeat { utc_ms: now }));
    http::Response::builder()
        .status(200)
        .header(PROOF_HEADER, proof)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

#[tokio::test]
async fn a_v3_client_falls_back_to_v2_once_and_remembers() {
    let (port, requests) = old_node(ProtocolVersion::V2).await;
    let c = client();
    let peer = format!("127.0.0.1:{port}");
    assert_eq!(c.version_for(&peer), ProtocolVersion::V3);
    for expected_requests in [2, 3] {
        open_old(&c.clone(), port, "/tern/v1/m4s/main", ProtocolVersion::V2).await;
        // v3 refused, then v2; from then on v2 at once.
        assert_eq!(requests.load(Ordering::SeqCst), expected_requests);
        assert_eq!(c.version_for(&peer), ProtocolVersion::V2);
    }
}

#[tokio::test]
async fn a_v3_client_falls_back_to_v1_step_by_step_and_remembers() {
    let (port, requests) = old_node(ProtocolVersion::V1).await;
    let c = client();
    let peer = format!("127.0.0.1:{port}");
    assert_eq!(c.version_for(&peer), ProtocolVersion::V3);
    open_old(&c, port, "/tern/v1/streams", ProtocolVersion::V1).await;
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "v3 refused, v2 refused, then v1"
    );
    assert_eq!(c.version_for(&peer), ProtocolVersion::V1);

    // Remembered, by clones of the client too: one request from now on.
    open_old(&c.clone(), port, "/tern/v1/m4s/main", ProtocolVersion::V1).await;
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_v3_node_answers_v3_v2_and_v1_clients() {
    let (_node, port) = v3_node(None).await;
    let c = client();
    for (version, negotiated) in [
        (ProtocolVersion::V3, true),
        (ProtocolVersion::V2, false),
        (ProtocolVersion::V1, false),
    ] {
        let mut s = if negotiated {
            c.open("127.0.0.1", port, "/tern/v1/m4s/main").await
        } else {
            // An older build's request: its path, keys and tags.
            let path = format!("{}m4s/main", version.path_prefix());
            c.open_version(version, "127.0.0.1", port, &path).await
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
        ProtocolVersion::V3
    );

    // A version neither speaks is refused with the versions this node speaks.
    let err = c
        .open_version(ProtocolVersion::V1, "127.0.0.1", port, "/tern/v4/streams")
        .await
        .err()
        .expect("refused");
    assert!(err.is_version_refusal(), "{err}");
    assert!(
        err.to_string().contains("this node speaks v1, v2 and v3"),
        "{err}"
    );
}

/// The same archive range from one origin in v3, v2 and v1: the same segments, in
/// order, whatever tags them (v3 sends them as `SegmentByDigest`, checked by their
/// digest). 3 segments of 2 s written into a DVR first, an hour in the past.
#[tokio::test]
async fn an_archive_range_is_the_same_in_every_version() {
    let dir = std::env::temp_dir().join(format!(
        "tern-cluster-versions-archive-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let name = tern_core::StreamName::new("main").expect("name");
    let store: Arc<dyn tern_node::dvr::DvrStore> =
        Arc::new(tern_node::dvr::FsStore::new(dir.clone()));
    let dvr_config = tern_core::config::DvrConfig {
        path: dir.display().to_string(),
        depth_secs: None,
        limit_bytes: None,
    };
    let dvr = tern_node::dvr::Dvr::open(store, name, dvr_config)
        .await
        .expect("dvr");
    let opts = tern_core::fake::FakeOptions {
        bitrate: Some(2_000_000),
        ..Default::default()
    };
    let mut src = tern_core::fake::FakeSource::new(&opts, 1);
    let mut segmenter = tern_core::segmenter::Segmenter::new(2000, Arc::new(src.media_info()));
    let base = TokioClock::new().utc_ms() - 3_600_000;
    let mut written = Vec::new();
    while written.len() < 3 {
        let capture = base + src.next_due().as_millis() as u64;
        if let Some(seg) = segmenter.push(src.next_frame(capture)) {
            dvr.record(&seg).await.expect("record");
            written.push(seg);
        }
    }
    drop(dvr);
    let (from, to) = (written[0].utc_start_ms, written[2].end_utc_ms());

    let (_node, port) = v3_node(Some(&dir)).await;
    let c = client();
    for version in ProtocolVersion::ALL {
        let path = format!("{}archive/main?from={from}&to={to}", version.path_prefix());
        let mut s = c
            .open_version(version, "127.0.0.1", port, &path)
            .await
            .expect("the node answers");
        let mut got = Vec::new();
        loop {
            match s.next().await.expect("valid messages") {
                Some(Message::Hello { version: v, .. }) => assert_eq!(v, version.number()),
                Some(Message::Segment(seg)) => got.push(seg),
                Some(Message::ArchiveEnd { segments }) => {
                    assert_eq!(segments as usize, got.len());
                    break;
                }
                other => panic!("{version}: unexpected {other:?}"),
            }
        }
        assert_eq!(got, written, "{version}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
