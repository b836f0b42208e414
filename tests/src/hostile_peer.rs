//! A cluster peer that holds the key but sends what no Tern node would (issue 11,
//! finding 4): signaling that announces `streams` streams, and for each an M4S
//! response whose frames carry absurd timestamps now and then (decode time 2^64-1,
//! capture time 0); or, made with `start_not_found`, a 404 for every stream it
//! announced, counting the requests. It speaks protocol v1 (a v2 node falls back to it) on
//! `std::net`, one thread per connection, and runs until the test ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tern_core::cluster::auth::{
    ClusterAuth, ReplayGuard, Signature, SignedRequest, AUTH_HEADER, PROOF_HEADER,
};
use tern_core::cluster::message::{Message, StreamAnnounce};
use tern_core::cluster::wire::Encoder;
use tern_core::cluster::ProtocolVersion;
use tern_core::{Frame, MediaInfo, Position, StreamName, TrackInfo};

use crate::{spawn_thread, utc_now_ms};

pub struct HostilePeer {
    pub port: u16,
    stopped: Arc<AtomicBool>,
    media_requests: Arc<AtomicU64>,
}

/// What the peer answers to a media request.
#[derive(Clone, Copy)]
struct Mode {
    streams: usize,
    not_found: bool,
}

impl HostilePeer {
    /// Listens on a free loopback port; `key` is the cluster key.
    pub fn start(key: &'static [u8], streams: usize) -> HostilePeer {
        Self::listen(
            key,
            Mode {
                streams,
                not_found: false,
            },
        )
    }

    /// Announces `streams` streams and answers every request for one with a 404
    /// (after checking the request's auth, as a node does).
    pub fn start_not_found(key: &'static [u8], streams: usize) -> HostilePeer {
        Self::listen(
            key,
            Mode {
                streams,
                not_found: true,
            },
        )
    }

    fn listen(key: &'static [u8], mode: Mode) -> HostilePeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hostile peer");
        let port = listener.local_addr().expect("addr").port();
        let guard = Arc::new(Mutex::new(ReplayGuard::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let media_requests = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stopped.clone(), media_requests.clone());
        spawn_thread(move || {
            let mut nonce = 0u8;
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                nonce = nonce.wrapping_add(1);
                let (guard, flag, count) = (guard.clone(), flag.clone(), count.clone());
                spawn_thread(move || serve(conn, key, &guard, [nonce; 16], mode, &flag, &count));
            }
        });
        HostilePeer {
            port,
            stopped,
            media_requests,
        }
    }

    /// Requests for a stream (not signaling) received so far, authenticated or not.
    pub fn media_requests(&self) -> u64 {
        self.media_requests.load(Ordering::Relaxed)
    }

    /// From now on the peer announces no stream (so the node removes what it took)
    /// and ends its media responses.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

fn media_info() -> MediaInfo {
    MediaInfo {
        tracks: vec![TrackInfo::placeholder_h264(1)],
    }
}

fn serve(
    mut conn: TcpStream,
    key: &[u8],
    guard: &Mutex<ReplayGuard>,
    nonce: [u8; 16],
    mode: Mode,
    stopped: &AtomicBool,
    media_requests: &AtomicU64,
) {
    let streams = mode.streams;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let header = |name: &str| {
        text.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let refuse = |conn: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if !target.starts_with("/tern/v1/") {
        return refuse(
            &mut conn,
            "400 Bad Request",
            "cluster protocol version mismatch: this node speaks v1",
        );
    }
    let auth = ClusterAuth::new(key);
    let Some(sig) = header(AUTH_HEADER).and_then(|v| Signature::parse(&v).ok()) else {
        return refuse(&mut conn, "403 Forbidden", "cluster auth failed");
    };
    let host = header("host").unwrap_or_default();
    let signed = SignedRequest {
        method: "GET",
        path_and_query: &target,
        host: &host,
        body: b"",
    };
    let verified = match guard.lock() {
        Ok(mut g) => auth.verify(&signed, &sig, utc_now_ms(), &mut g).is_ok(),
        Err(_) => false,
    };
    if !verified {
        return refuse(&mut conn, "403 Forbidden", "cluster auth failed");
    }
    let signaling = target.starts_with("/tern/v1/streams");
    if !signaling {
        media_requests.fetch_add(1, Ordering::Relaxed);
        if mode.not_found {
            return refuse(&mut conn, "404 Not Found", "no such stream");
        }
    }
    let proof = auth.prove(&sig, nonce);
    let keys = auth.session_keys(ProtocolVersion::V1, &sig.nonce, &proof.nonce);
    let mut enc = Encoder::new(ProtocolVersion::V1, keys.server_to_client);
    if write!(
        conn,
        "HTTP/1.1 200 OK\r\n{PROOF_HEADER}: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        proof.header_value()
    )
    .is_err()
    {
        return;
    }
    let mut send = |conn: &mut TcpStream, m: &Message| conn.write_all(&enc.encode(m)).is_ok();
    if !send(
        &mut conn,
        &Message::Hello {
            version: 1,
            node: "hostile".into(),
        },
    ) {
        return;
    }
    if signaling {
        let list = (0..streams)
            .filter_map(|i| StreamName::new(&format!("h{i:05}")).ok())
            .map(|name| StreamAnnounce {
                name,
                alive: true,
                segment_duration_ms: 2000,
                media_info: Some(media_info()),
                dvr: None,
            })
            .collect();
        let mut announced = !stopped.load(Ordering::Relaxed);
        let first = if announced { list } else { Vec::new() };
        if !send(&mut conn, &Message::Streams(first)) {
            return;
        }
        loop {
            let m = if announced && stopped.load(Ordering::Relaxed) {
                announced = false;
                Message::Streams(Vec::new())
            } else {
                Message::Heartbeat {
                    utc_ms: utc_now_ms(),
                }
            };
            if !send(&mut conn, &m) {
                return;
            }
            std::thread::sleep(Duration::from_millis(400));
        }
    }
    // M4S: 25 frames a second, a keyframe a second; every 50th frame has decode
    // time 2^64-1, every 77th capture time 0.
    if !send(&mut conn, &Message::MediaInfo(Arc::new(media_info()))) {
        return;
    }
    for seq in 0u64.. {
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut f = Frame {
            track: 1,
            dts: seq * 3600,
            pts: seq * 3600,
            keyframe: seq % 25 == 0,
            capture_ms: utc_now_ms(),
            pos: Position { epoch: 1, seq },
            payload: Bytes::from_static(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88]),
        };
        if seq % 50 == 49 {
            f.dts = u64::MAX;
            f.pts = u64::MAX;
        }
        if seq % 77 == 76 {
            f.capture_ms = 0;
        }
        if !send(&mut conn, &Message::Frame(f)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}
