//! The HTTP connection guard on a real node over loopback: header-read timeout,
//! idle timeout, the connection limit (503) and the stalled-reader cut (issue 11,
//! finding 2 and 1). Each test fails on a node without the guard: the connection
//! stays open (the read times out instead of seeing the close) or is served.

use std::net::SocketAddr;
use std::time::Duration;

use tern_net::{TokioClock, TokioNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn node(extra: &str) -> (tern_node::RunningNode<TokioClock>, SocketAddr) {
    let text =
        format!("http 127.0.0.1:0;\n{extra}\nstream main {{ input fake://fake?bitrate=20M; }}\n");
    let cfg = tern_core::config::parse(&text).expect("config");
    let node = tern_node::start(&cfg, TokioNet, TokioClock::new())
        .await
        .expect("node starts");
    let addr = node.local_addrs()[0];
    (node, addr)
}

/// Reads until the server closes the connection; `Err` if it is still open after
/// `within` (the bound only detects a failure; it is not a speed target).
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn closed_within(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match r {
        Ok(()) => Ok(got),
        Err(_) => Err(format!("still open after {within:?}")),
    }
}

#[tokio::test]
async fn half_sent_request_head_is_cut() {
    let (_node, addr) = node("header_timeout 0.3;").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /streamer/api/v3/streams HTTP/1.1\r\nHo")
        .await
        .unwrap();
    closed_within(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn idle_connection_is_closed_and_a_served_one_too() {
    let (_node, addr) = node("idle_timeout 0.3;").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    closed_within(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    // After a whole keep-alive request and response, idle again: closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /streamer/api/v3/streams HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = closed_within(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn connections_past_the_limit_get_503_and_the_api_still_answers() {
    let (_node, addr) = node("max_connections 3;").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the node account for them before the next connects.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let got = closed_within(&mut extra, Duration::from_secs(10))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("connection limit"), "{text}");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /streamer/api/v3/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = closed_within(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn per_ip_limit_when_set() {
    let (_node, addr) = node("max_connections_per_ip 1;").await;
    let _held = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let got = closed_within(&mut extra, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 503"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Finding 1: an archive reader that stops reading was never cut and held its
/// buffers forever. Now it is cut once its writes have waited `stall_timeout`.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // test: real sockets in real time
async fn stalled_archive_reader_is_cut() {
    let dir = std::env::temp_dir().join(format!("tern-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "http 127.0.0.1:0;\nstall_timeout 0.5;\nsegment_duration 0.5;\n\
         stream main {{ input fake://fake?bitrate=50M&gop=0.5; dvr {}; }}\n",
        dir.display()
    );
    let cfg = tern_core::config::parse(&text).expect("config");
    let node = tern_node::start(&cfg, TokioNet, TokioClock::new())
        .await
        .expect("node starts");
    let addr = node.local_addrs()[0];
    // Record a few seconds (more than the socket buffers hold).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now_s = tern_net::Clock::utc_ms(&TokioClock::new()) / 1000;
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /main/archive-{}-60.ts HTTP/1.1\r\nHost: x\r\n\r\n",
        now_s - 30
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read nothing: the response cannot finish, and the cut comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = closed_within(&mut s, Duration::from_secs(20)).await;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    let got = r.unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}
