//! Bad senders against an origin that also serves a healthy `fake://` stream: a UDP
//! flood of junk on a `udp://` input's port, an MPEG-TS sender whose packets are
//! lost and garbled (truncated NAL units, garbage between packets), and RTSP servers
//! that answer 404 and 500. Each must give a clear error in the log or the API, cost
//! bounded memory (RSS at most 32 MiB above where it started), and leave the other
//! stream playing (its barcodes decode consecutively meanwhile).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tern_tests::{
    assert_consecutive, decode_frames, now, poll_until, read_barcode, require_tool, rss,
    spawn_thread, Node, Proc, FFMPEG_RW_TIMEOUT_US,
};

const TERN: &str = env!("CARGO_BIN_EXE_tern-e2e");
const RSS_BOUND: u64 = 32 * 1024 * 1024;

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}

/// xorshift: junk that differs from datagram to datagram, the same every run.
struct Junk(u64);

impl Junk {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// The healthy stream plays on: 25 consecutive barcodes from the origin.
fn other_stream_plays(origin: &Node) {
    let frames = decode_frames(&origin.url("/src/mpegts"), 25);
    assert_consecutive("the other stream, meanwhile", &frames);
}

#[test]
fn a_udp_flood_of_junk_costs_bounded_memory_and_the_other_stream_plays() {
    if !require_tool("ffmpeg") {
        return;
    }
    let port = free_udp_port();
    let origin = Node::start(
        TERN,
        &format!(
            "stream src {{ input fake://fake; }}\nstream cam {{ input udp://127.0.0.1:{port}; }}\n"
        ),
    );
    other_stream_plays(&origin);
    let (rss_before, _) = rss(origin.pid());
    // 6 s of junk as fast as one thread sends it: random bytes, and packets that look
    // like MPEG-TS (sync byte every 188, random PIDs, flags and payloads, so PSI and
    // PES parsing run on junk).
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        spawn_thread(move || {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            let mut junk = Junk(0x2545_f491_4f6c_dd1d);
            let mut buf = [0u8; 1316];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                junk.fill(&mut buf);
                if sent.is_multiple_of(2) {
                    for p in buf.chunks_mut(188) {
                        p[0] = 0x47;
                        if sent.is_multiple_of(4) {
                            p[1] &= 0x5F; // small PIDs: PAT (0) and PMT-looking ones
                        }
                    }
                }
                if sock.send_to(&buf, (Ipv4Addr::LOCALHOST, port)).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    // The other stream plays during the flood.
    other_stream_plays(&origin);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    let (rss_after, hwm) = rss(origin.pid());
    println!(
        "udp junk flood: {sent} datagrams; RSS {} KiB before, {} KiB after, peak {} KiB",
        rss_before / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    assert!(sent > 1000, "the flood sent only {sent} datagrams");
    assert!(
        rss_after < rss_before + RSS_BOUND,
        "RSS grew from {rss_before} to {rss_after}"
    );
    other_stream_plays(&origin);
    // Junk makes no stream: not alive, and the log says what the demuxer skipped.
    let cam = origin.stream("cam");
    assert_eq!(cam["stats"]["alive"], false, "{cam}");
    let log = poll_until(Duration::from_secs(10), || {
        let log = origin.log();
        log.contains("transport stream figures").then_some(log)
    })
    .unwrap_or_else(|| panic!("no transport stream figures logged:\n{}", origin.log()));
    assert!(
        log.contains("skipped_bytes") && log.contains("bad_sections"),
        "{log}"
    );
}

/// Relays ffmpeg's MPEG-TS to the origin's UDP port, damaging it on the way: one
/// 188-byte packet in 3000 is dropped (a frame loses part of a NAL unit) and one in
/// 2500 is replaced by garbage (about one damaged frame a second).
fn damaging_relay(to: u16, stop: Arc<AtomicBool>) -> u16 {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the relay");
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let port = sock.local_addr().expect("local_addr").port();
    spawn_thread(move || {
        let mut buf = vec![0u8; 65536];
        let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
        let mut n_packet = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let mut out = Vec::with_capacity(n);
            for p in buf[..n].chunks(188) {
                n_packet += 1;
                if n_packet.is_multiple_of(3000) {
                    continue;
                }
                if n_packet.is_multiple_of(2500) {
                    let mut g = [0u8; 188];
                    junk.fill(&mut g);
                    out.extend_from_slice(&g);
                    continue;
                }
                out.extend_from_slice(p);
            }
            let _ = sock.send_to(&out, (Ipv4Addr::LOCALHOST, to));
        }
    });
    port
}

#[test]
fn a_sender_with_lost_and_garbled_packets_plays_on_with_damaged_frames_dropped() {
    if !require_tool("ffmpeg") {
        return;
    }
    let port = free_udp_port();
    let origin = Node::start(
        TERN,
        &format!(
            "stream src {{ input fake://fake; }}\n\
             stream cam {{ input udp://127.0.0.1:{port}; }}\n"
        ),
    );
    let (rss_before, _) = rss(origin.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let relay = damaging_relay(port, stop.clone());
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US])
        .args(["-i", &origin.url("/src/mpegts")])
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{relay}?pkt_size=1316"));
    let _ffmpeg = Proc::spawn(&mut cmd, Duration::from_secs(120));
    let alive = poll_until(Duration::from_secs(20), || {
        (origin.stream("cam")["stats"]["alive"] == true).then_some(())
    });
    assert!(alive.is_some(), "cam never alive:\n{}", origin.log());
    // What reaches a player decodes (ffmpeg -xerror: a damaged frame would stop it):
    // the damaged frames were dropped, so the barcodes go up with gaps.
    let frames = decode_frames(&origin.url("/cam/mpegts"), 75);
    let idx: Vec<u64> = frames.iter().map(|f| read_barcode(f).0).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "barcodes: {idx:?}");
    other_stream_plays(&origin);
    stop.store(true, Ordering::Relaxed);
    let (rss_after, hwm) = rss(origin.pid());
    let log = origin.log();
    println!(
        "damaged sender: {} frames decoded, barcodes {}..={}; RSS {} KiB before, {} KiB after, peak {} KiB",
        idx.len(),
        idx[0],
        idx[idx.len() - 1],
        rss_before / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    assert!(
        rss_after < rss_before + RSS_BOUND,
        "RSS grew from {rss_before} to {rss_after}"
    );
    assert!(
        log.contains("continuity_errors") && log.contains("discontinuity"),
        "the damage was not reported:\n{log}"
    );
}

/// An RTSP server that answers every request with `status` (and closes).
fn rtsp_refuser(status: &'static str) -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("local_addr").port();
    spawn_thread(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let cseq = text
                .lines()
                .find_map(|l| l.strip_prefix("CSeq:"))
                .map_or("1", str::trim)
                .to_owned();
            let _ = c.write_all(
                format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

#[test]
fn rtsp_servers_answering_404_and_500_are_clear_errors() {
    if !require_tool("ffmpeg") {
        return;
    }
    let p404 = rtsp_refuser("404 Not Found");
    let p500 = rtsp_refuser("500 Internal Server Error");
    let origin = Node::start(
        TERN,
        &format!(
            "stream src {{ input fake://fake; }}\n\
             stream c404 {{ input rtsp://127.0.0.1:{p404}/cam; }}\n\
             stream c500 {{ input rtsp://127.0.0.1:{p500}/cam; }}\n"
        ),
    );
    let (rss_before, _) = rss(origin.pid());
    let started = now();
    // 404 will not get better by retrying: `error`, saying why.
    let c404 = poll_until(Duration::from_secs(20), || {
        let s = origin.stream("c404");
        (s["stats"]["status"] == "error").then_some(s)
    })
    .unwrap_or_else(|| panic!("c404 not in error:\n{}", origin.log()));
    let why = c404["stats"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("404"), "stats.error: {why:?}");
    // 500 may: the input retries with backoff, the stream waits, the log says why.
    let log = poll_until(Duration::from_secs(20), || {
        let log = origin.log();
        // retina's words for the refusal (the 404 above reads "404 response to
        // DESCRIBE"): not just any "500", which a backoff of 500 ms would print too.
        log.contains("500 response to DESCRIBE").then_some(log)
    })
    .unwrap_or_else(|| panic!("no 500 refusal in the log:\n{}", origin.log()));
    let c500 = origin.stream("c500");
    assert_eq!(c500["stats"]["alive"], false, "{c500}");
    assert!(log.contains("c500"), "{log}");
    other_stream_plays(&origin);
    let (rss_after, _) = rss(origin.pid());
    println!(
        "rtsp 404/500: c404 in error after {:?} ({why}); RSS {} KiB before, {} KiB after",
        now() - started,
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + RSS_BOUND,
        "RSS grew from {rss_before} to {rss_after}"
    );
}
