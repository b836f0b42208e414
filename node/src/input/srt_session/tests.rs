//! `SrtSession` driven in memory on a virtual clock: an SRT sender (srt-rs's own
//! `Connect` and `DuplexConnection`, standing in for an encoder) and Tern's
//! listener, or Tern's caller and Tern's listener, exchange datagrams through a
//! loss-free wire. No socket, no tokio, no real time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::connection::DuplexConnection;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{Packet, SeqNumber, SocketId};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::settings::{ConnInitSettings, KeySettings};

use super::*;

const PASS: &str = "correct-horse-battery";
const TICK: Duration = Duration::from_millis(5);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn base() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn ids(seed: u32) -> Box<dyn FnMut() -> u32 + Send> {
    let mut n = seed;
    Box::new(move || {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        n & 0x7fff_ffff
    })
}

fn settings(call: Option<SocketAddr>, passphrase: Option<&str>) -> SrtSettings {
    SrtSettings {
        call,
        passphrase: passphrase.map(str::to_owned),
        key_len: 16,
        latency: Duration::from_millis(120),
        stream_id: None,
    }
}

fn bytes_of(p: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    p.serialize(&mut b);
    b
}

/// An encoder calling in: srt-rs's caller handshake, then a connection it sends on.
struct Sender {
    at: SocketAddr,
    connect: Option<Connect>,
    conn: Option<DuplexConnection>,
    out: Vec<Vec<u8>>,
    refused: bool,
}

impl Sender {
    fn new(at: SocketAddr, to: SocketAddr, passphrase: Option<&str>, key: KeySize) -> Sender {
        Sender::with_id(at, to, passphrase, key, None)
    }

    fn with_id(
        at: SocketAddr,
        to: SocketAddr,
        passphrase: Option<&str>,
        key: KeySize,
        stream_id: Option<&str>,
    ) -> Sender {
        let init = ConnInitSettings {
            local_sockid: SocketId(u32::from(at.port()) * 7 + 1),
            key_settings: passphrase.map(|p| KeySettings {
                key_size: key,
                passphrase: Passphrase::try_from(p.to_owned()).expect("passphrase"),
            }),
            ..ConnInitSettings::default()
        };
        let connect = Connect::new(
            to,
            at.ip(),
            init,
            stream_id.map(str::to_owned),
            SeqNumber::new_truncate(u32::from(at.port())),
        );
        Sender {
            at,
            connect: Some(connect),
            conn: None,
            out: Vec::new(),
            refused: false,
        }
    }

    fn result(&mut self, r: ConnectionResult) {
        match r {
            ConnectionResult::SendPacket((p, _)) => self.out.push(bytes_of(&p)),
            ConnectionResult::Connected(p, c) => {
                if let Some((p, _)) = p {
                    self.out.push(bytes_of(&p));
                }
                self.conn = Some(DuplexConnection::new(c));
                self.connect = None;
            }
            ConnectionResult::Reject(_, _) => {
                self.refused = true;
                self.connect = None;
            }
            _ => {}
        }
    }

    fn tick(&mut self, t: Instant) {
        if let Some(c) = &mut self.connect {
            let r = c.handle_tick(t);
            self.result(r);
        }
        if let Some(conn) = &mut self.conn {
            conn.check_timers(t);
            while let Some((p, _)) = conn.next_packet(t) {
                self.out.push(bytes_of(&p));
            }
        }
    }

    fn receive(&mut self, t: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(p) = Packet::parse(&mut &data[..], false) else {
            return;
        };
        if let Some(c) = &mut self.connect {
            let r = c.handle_packet(Ok((p, from)), t);
            self.result(r);
        } else if let Some(conn) = &mut self.conn {
            conn.handle_packet_input(t, Ok((p, from)));
        }
    }

    fn send(&mut self, t: Instant, data: &'static [u8]) {
        if let Some(conn) = &mut self.conn {
            conn.handle_data_input(t, Some((t, Bytes::from_static(data))));
        }
    }
}

/// Tern's session at `tern_at`, some senders, the virtual clock.
struct Wire {
    base: Instant,
    now: Duration,
    tern: SrtSession,
    tern_at: SocketAddr,
    senders: Vec<Sender>,
    events: Vec<SrtEvent>,
}

impl Wire {
    fn listener(passphrase: Option<&str>) -> Wire {
        let base = base();
        Wire {
            base,
            now: Duration::ZERO,
            tern: SrtSession::new(settings(None, passphrase), base, Duration::ZERO, ids(1)),
            tern_at: addr(9000),
            senders: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A sender calling from port `port` with `passphrase` (key size `key`).
    fn add_sender(&mut self, port: u16, passphrase: Option<&str>, key: KeySize) {
        let s = Sender::new(addr(port), self.tern_at, passphrase, key);
        self.senders.push(s);
    }

    /// Runs the wire for `d`, step by step: senders tick, datagrams cross, Tern's
    /// deadlines fire.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            let t = self.base + self.now;
            for s in &mut self.senders {
                s.tick(t);
                for b in std::mem::take(&mut s.out) {
                    self.tern.handle_datagram(self.now, s.at, &b);
                }
            }
            if self.tern.poll_timeout().is_some_and(|due| due <= self.now) {
                self.tern.handle_timeout(self.now);
            }
            while let Some((b, to)) = self.tern.poll_transmit() {
                if let Some(s) = self.senders.iter_mut().find(|s| s.at == to) {
                    s.receive(t, self.tern_at, &b);
                }
            }
            while let Some(e) = self.tern.poll_event() {
                self.events.push(e);
            }
        }
    }

    fn data(&self) -> Vec<Bytes> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SrtEvent::Data(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    fn refusals(&self) -> Vec<Refusal> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SrtEvent::Refused { why, .. } => Some(why.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_encrypted_sender_connects_and_its_payload_comes_out_in_order() {
    let mut w = Wire::listener(Some(PASS));
    w.add_sender(5000, Some(PASS), KeySize::Unspecified);
    w.run(Duration::from_millis(300));
    assert!(w.tern.is_connected(), "{:?}", w.events);
    assert!(matches!(
        w.events[0],
        SrtEvent::Connected {
            encrypted: true,
            ..
        }
    ));
    let payloads: [&'static [u8]; 3] = [b"one", b"two", b"three"];
    for p in payloads {
        let t = w.base + w.now;
        w.senders[0].send(t, p);
        w.run(Duration::from_millis(20));
    }
    // Nothing before the latency (120 ms) has passed, everything after it.
    assert!(w.data().is_empty(), "{:?}", w.data());
    w.run(Duration::from_millis(400));
    assert_eq!(w.data(), payloads.map(Bytes::from_static).to_vec());
}

#[test]
fn a_wrong_or_missing_passphrase_is_refused_and_the_sender_told() {
    for (theirs, key, why) in [
        (
            Some("not-the-passphrase"),
            KeySize::Unspecified,
            Refusal::WrongPassphrase,
        ),
        (
            Some("not-the-passphrase"),
            KeySize::AES256,
            Refusal::WrongPassphrase,
        ),
        (None, KeySize::Unspecified, Refusal::Unencrypted),
    ] {
        let mut w = Wire::listener(Some(PASS));
        w.add_sender(5000, theirs, key);
        w.run(Duration::from_millis(300));
        assert!(!w.tern.is_connected());
        assert_eq!(w.refusals(), vec![why.clone()], "{theirs:?}");
        assert!(w.senders[0].refused, "{theirs:?}: the sender was not told");
    }
    // An encrypted sender to a listener without a passphrase.
    let mut w = Wire::listener(None);
    w.add_sender(5000, Some(PASS), KeySize::Unspecified);
    w.run(Duration::from_millis(300));
    assert_eq!(w.refusals(), vec![Refusal::Unencrypted]);
}

#[test]
fn a_second_sender_is_refused_while_the_first_sends_and_takes_over_after_silence() {
    let mut w = Wire::listener(None);
    w.add_sender(5000, None, KeySize::Unspecified);
    w.run(Duration::from_millis(200));
    assert!(w.tern.is_connected());
    w.add_sender(5001, None, KeySize::Unspecified);
    for _ in 0..10 {
        let t = w.base + w.now;
        w.senders[0].send(t, b"still here");
        w.run(Duration::from_millis(20));
    }
    assert_eq!(w.refusals(), vec![Refusal::Busy]);
    assert!(w.senders[1].refused);
    // While busy, an encrypted caller hears about its passphrase, not the sender.
    w.add_sender(5003, Some(PASS), KeySize::Unspecified);
    for _ in 0..10 {
        let t = w.base + w.now;
        w.senders[0].send(t, b"still here");
        w.run(Duration::from_millis(20));
    }
    assert_eq!(w.refusals(), vec![Refusal::Busy, Refusal::Unencrypted]);
    w.senders.pop();
    // The first sender dies without a word; a third calls after the silence.
    w.senders.remove(0);
    w.run(SRT_TAKEOVER_SILENCE + Duration::from_millis(100));
    w.add_sender(5002, None, KeySize::Unspecified);
    w.run(Duration::from_millis(200));
    let connected: Vec<SocketAddr> = w
        .events
        .iter()
        .filter_map(|e| match e {
            SrtEvent::Connected { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(connected, vec![addr(5000), addr(5002)]);
    assert!(w.events.iter().any(|e| *e
        == SrtEvent::Closed {
            why: "a new sender took over the listener"
        }));
}

#[test]
fn tern_calls_tern_with_and_without_the_right_passphrase() {
    for (theirs, connects) in [(Some(PASS), true), (Some("not-the-passphrase"), false)] {
        let base = base();
        let (l_at, c_at) = (addr(9000), addr(6000));
        let mut listener =
            SrtSession::new(settings(None, Some(PASS)), base, Duration::ZERO, ids(3));
        let mut caller =
            SrtSession::new(settings(Some(l_at), theirs), base, Duration::ZERO, ids(4));
        let mut now = Duration::ZERO;
        let mut caller_events = Vec::new();
        while now < Duration::from_millis(500) {
            now += TICK;
            for s in [&mut listener, &mut caller] {
                if s.poll_timeout().is_some_and(|due| due <= now) {
                    s.handle_timeout(now);
                }
            }
            while let Some((b, _)) = caller.poll_transmit() {
                listener.handle_datagram(now, c_at, &b);
            }
            while let Some((b, _)) = listener.poll_transmit() {
                caller.handle_datagram(now, l_at, &b);
            }
            while let Some(e) = caller.poll_event() {
                caller_events.push(e);
            }
        }
        assert_eq!(caller.is_connected(), connects, "{caller_events:?}");
        assert_eq!(listener.is_connected(), connects);
        if !connects {
            assert!(
                caller_events.iter().any(|e| matches!(e,
                    SrtEvent::Refused { why: Refusal::ByPeer(w), .. } if w == "wrong passphrase")),
                "{caller_events:?}"
            );
        }
    }
}

#[test]
fn a_listener_with_a_stream_id_takes_only_callers_that_send_it() {
    let base = base();
    let mut st = settings(None, None);
    st.stream_id = Some("#!::r=cam,m=publish".to_owned());
    let mut w = Wire::listener(None);
    w.tern = SrtSession::new(st, base, Duration::ZERO, ids(5));
    w.base = base;
    w.senders.push(Sender::with_id(
        addr(5000),
        addr(9000),
        None,
        KeySize::Unspecified,
        Some("#!::r=other,m=publish"),
    ));
    w.add_sender(5001, None, KeySize::Unspecified);
    w.run(Duration::from_millis(300));
    assert_eq!(
        w.refusals(),
        vec![Refusal::WrongStreamId, Refusal::WrongStreamId]
    );
    w.senders.push(Sender::with_id(
        addr(5002),
        addr(9000),
        None,
        KeySize::Unspecified,
        Some("#!::r=cam,m=publish"),
    ));
    w.run(Duration::from_millis(300));
    assert!(w.events.iter().any(|e| matches!(e,
        SrtEvent::Connected { peer, stream_id: Some(s), .. }
            if *peer == addr(5002) && s == "#!::r=cam,m=publish")));
}

#[test]
fn junk_and_odd_handshakes_never_panic_or_connect() {
    let mut w = Wire::listener(Some(PASS));
    let mut seed = 7u32;
    for len in 0..400usize {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        w.tern.handle_datagram(w.now, addr(4000), &junk);
        // A control packet's header with a handshake type, then junk.
        let mut hs = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        hs.extend_from_slice(&junk);
        w.tern.handle_datagram(w.now, addr(4001), &hs);
    }
    w.run(Duration::from_millis(100));
    assert!(!w.tern.is_connected());
    assert!(w.data().is_empty());
}
