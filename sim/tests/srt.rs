//! The SRT input's session (`tern_node::input::srt_session::SrtSession`, a sans-IO
//! machine) on simulated time over a bad wire chosen from a seed: datagrams lost,
//! duplicated and reordered both ways. A stand-in encoder (srt-rs's own caller and
//! connection) sends numbered payloads at a steady rate; Tern's listener must hand
//! them out complete, once each and in order, as long as the loss leaves the ARQ
//! time within the latency.
//!
//! Owns: this scenario, its wire and its encoder. Must not: use sockets, tokio or
//! real time (the clock is a counter of milliseconds after one base `Instant`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use srt_protocol::connection::DuplexConnection;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{Packet, SeqNumber, SocketId};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tern_node::input::srt_session::{SrtEvent, SrtSession, SrtSettings};

const PASS: &str = "sim-passphrase-0123";
const STEP: Duration = Duration::from_millis(1);
/// Payloads the encoder sends, one every 2 ms (7 TS packets each: ~5 Mbit/s).
const PAYLOADS: u32 = 1500;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn bytes_of(p: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    p.serialize(&mut b);
    b
}

/// A datagram on the wire: (deliver at ms, sequence, to Tern?, datagram).
type InFlight = (u64, u64, bool, Vec<u8>);

/// The bad wire: a datagram is lost with `loss` (per mille), duplicated with a
/// quarter of that, and delayed 1 to 30 ms (so reordered).
struct Wire {
    rng: ChaCha8Rng,
    loss: u32,
    /// Largest delay (ms): 1 for an in-order wire, more to reorder.
    jitter: u32,
    /// Datagrams from Tern to the encoder to drop, by their number (0: the first).
    drop_to_encoder: Vec<u64>,
    to_encoder: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

impl Wire {
    fn push(&mut self, now_ms: u64, to_tern: bool, d: Vec<u8>) {
        if !to_tern {
            self.to_encoder += 1;
            if self.drop_to_encoder.contains(&(self.to_encoder - 1)) {
                return;
            }
        }
        if self.rng.next_u32() % 1000 < self.loss {
            return;
        }
        let copies = if self.rng.next_u32() % 4000 < self.loss {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now_ms + 1 + u64::from(self.rng.next_u32() % self.jitter);
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq, to_tern, d.clone())));
        }
    }

    fn due(&mut self, now_ms: u64) -> Option<(bool, Vec<u8>)> {
        if self.queue.peek().is_some_and(|Reverse(e)| e.0 <= now_ms) {
            self.queue.pop().map(|Reverse((_, _, t, d))| (t, d))
        } else {
            None
        }
    }
}

/// How the wire misbehaves.
#[derive(Clone)]
struct Bad {
    /// Per mille of datagrams lost (a quarter of that duplicated).
    loss: u32,
    /// Largest delay in ms (1: in order).
    jitter: u32,
    drop_to_encoder: Vec<u64>,
}

/// What one run gave: payload numbers in the order Tern handed them out.
fn run(seed: u64, bad: Bad, encrypted: bool) -> Vec<u32> {
    let base = tokio::time::Instant::now().into_std();
    let at = |ms: u64| base + Duration::from_millis(ms);
    let (tern_at, enc_at) = (addr(9000), addr(5000));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ids = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let settings = SrtSettings {
        call: None,
        passphrase: encrypted.then(|| PASS.to_owned()),
        key_len: 16,
        latency: Duration::from_millis(300),
        stream_id: None,
    };
    let mut tern = SrtSession::new(
        settings,
        base,
        Duration::ZERO,
        Box::new(move || ids.next_u32() & 0x7fff_ffff),
    );
    let init = ConnInitSettings {
        local_sockid: SocketId(rng.next_u32() & 0x7fff_ffff),
        key_settings: encrypted.then(|| KeySettings {
            key_size: KeySize::Unspecified,
            passphrase: Passphrase::try_from(PASS.to_owned()).expect("passphrase"),
        }),
        recv_latency: Duration::from_millis(300),
        send_latency: Duration::from_millis(300),
        ..ConnInitSettings::default()
    };
    let seq = SeqNumber::new_truncate(rng.next_u32());
    let mut connect = Some(Connect::new(tern_at, enc_at.ip(), init, None, seq));
    let mut enc: Option<DuplexConnection> = None;
    let mut wire = Wire {
        rng,
        loss: bad.loss,
        jitter: bad.jitter,
        drop_to_encoder: bad.drop_to_encoder,
        to_encoder: 0,
        queue: BinaryHeap::new(),
        seq: 0,
    };
    let mut got = Vec::new();
    let mut sent = 0u32;
    let mut ms = 0u64;
    let end_ms = 2 * u64::from(PAYLOADS) + 3000;
    while ms < end_ms {
        ms += STEP.as_millis() as u64;
        let t = at(ms);
        // The encoder: handshake ticks every 100 ms, then a payload every 2 ms.
        let mut out = Vec::new();
        if let Some(c) = &mut connect {
            if ms % 100 == 1 {
                if let ConnectionResult::SendPacket((p, _)) = c.handle_tick(t) {
                    out.push(bytes_of(&p));
                }
            }
        }
        if let Some(e) = &mut enc {
            if ms.is_multiple_of(2) && sent < PAYLOADS {
                let mut payload = vec![0u8; 1316];
                payload[..4].copy_from_slice(&sent.to_be_bytes());
                e.handle_data_input(t, Some((t, Bytes::from(payload))));
                sent += 1;
            }
            e.check_timers(t);
            while let Some((p, _)) = e.next_packet(t) {
                out.push(bytes_of(&p));
            }
        }
        for d in out {
            wire.push(ms, true, d);
        }
        // The wire delivers what is due.
        while let Some((to_tern, d)) = wire.due(ms) {
            if to_tern {
                tern.handle_datagram(Duration::from_millis(ms), enc_at, &d);
            } else if let Ok(p) = Packet::parse(&mut &d[..], false) {
                if let Some(c) = &mut connect {
                    match c.handle_packet(Ok((p, tern_at)), t) {
                        ConnectionResult::SendPacket((p, _)) => wire.push(ms, true, bytes_of(&p)),
                        ConnectionResult::Connected(p, conn) => {
                            if let Some((p, _)) = p {
                                wire.push(ms, true, bytes_of(&p));
                            }
                            enc = Some(DuplexConnection::new(conn));
                            connect = None;
                        }
                        other => assert!(
                            !matches!(other, ConnectionResult::Reject(..)),
                            "seed {seed}: refused: {other:?}"
                        ),
                    }
                } else if let Some(e) = &mut enc {
                    e.handle_packet_input(t, Ok((p, tern_at)));
                }
            }
        }
        let now = Duration::from_millis(ms);
        if tern.poll_timeout().is_some_and(|due| due <= now) {
            tern.handle_timeout(now);
        }
        while let Some((d, _)) = tern.poll_transmit() {
            wire.push(ms, false, d);
        }
        while let Some(ev) = tern.poll_event() {
            match ev {
                SrtEvent::Data(b) => {
                    let n = b
                        .get(..4)
                        .map_or(u32::MAX, |h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
                    got.push(n);
                }
                SrtEvent::Connected { encrypted: e, .. } => assert_eq!(e, encrypted),
                SrtEvent::Refused { why, .. } => panic!("seed {seed}: refused: {why}"),
                _ => {}
            }
        }
    }
    assert_eq!(sent, PAYLOADS, "seed {seed}: the encoder never connected");
    got
}

fn bad(loss: u32, jitter: u32) -> Bad {
    Bad {
        loss,
        jitter,
        drop_to_encoder: Vec::new(),
    }
}

fn in_order_once(got: &[u32]) -> bool {
    got.windows(2).all(|w| w[0] < w[1]) && got.iter().all(|&n| n < PAYLOADS)
}

#[test]
fn srt_session_recovers_every_payload_over_a_lossy_wire() {
    for (i, loss) in [0, 20, 50, 100].into_iter().enumerate() {
        for encrypted in [false, true] {
            let seed = 10 + i as u64 * 2 + u64::from(encrypted);
            let got = run(seed, bad(loss, 1), encrypted);
            let want: Vec<u32> = (0..PAYLOADS).collect();
            assert!(
                got == want,
                "seed {seed}, loss {loss}/1000, encrypted {encrypted}: {} of {PAYLOADS} \
                 payloads, in order and once each: {}",
                got.len(),
                in_order_once(&got)
            );
        }
        println!(
            "srt sim, in-order wire (1 ms), {}% lost: {PAYLOADS} of {PAYLOADS} payloads (plain and encrypted)",
            loss / 10
        );
    }
}

/// A wire that also reorders (every datagram delayed 1 to 30 ms): what the ARQ of
/// `srt-protocol` recovers when datagrams are lost as well is printed, not asserted
/// whole: in the simulation it leaves gaps (0.1 to 5 % of the payloads at 2 to 10 %
/// loss), which reach the TS demuxer as continuity errors. Order and uniqueness hold.
#[test]
fn srt_session_keeps_order_over_a_lossy_reordering_wire() {
    for loss in [0, 20, 50, 100] {
        let mut counts = Vec::new();
        for seed in 20..23 {
            let got = run(seed, bad(loss, 30), false);
            assert!(
                in_order_once(&got),
                "seed {seed}, loss {loss}/1000: {got:?}"
            );
            if loss == 0 {
                assert_eq!(got.len() as u32, PAYLOADS, "seed {seed}: loss without loss");
            }
            assert!(
                got.len() as u32 >= PAYLOADS * 9 / 10,
                "seed {seed}, loss {loss}/1000: only {} of {PAYLOADS}",
                got.len()
            );
            counts.push(got.len());
        }
        println!(
            "srt sim, reordering wire (1-30 ms), {}% lost: {counts:?} of {PAYLOADS} payloads, in order",
            loss / 10
        );
    }
}

/// The listener's answer to the conclusion is lost: the sender repeats its
/// conclusion to a listener that already counts it connected, and must be answered
/// again (srt-protocol's connection alone ignores it: the sender never connected).
#[test]
fn srt_session_answers_a_repeated_conclusion() {
    let lost = Bad {
        loss: 0,
        jitter: 1,
        drop_to_encoder: vec![1],
    };
    let got = run(30, lost, true);
    assert_eq!(got.len() as u32, PAYLOADS);
}

#[test]
fn srt_session_runs_the_same_for_the_same_seed() {
    assert_eq!(run(9, bad(80, 30), false), run(9, bad(80, 30), false));
}
