//! The SRT session of an `srt://` input as a machine: datagrams and time in,
//! datagrams to send, received payload (MPEG-TS) and what happened out. It wraps the
//! sans-IO core of srt-rs (`srt-protocol`: handshake, ARQ, TSBPD, AES) and adds
//! Tern's rules: one connection per listener, the passphrase check, a bounded number
//! of handshakes in flight, the caller's connect timeout.
//!
//! Owns: the handshake state (a caller's `Connect`, a listener's pending `Listen`s),
//! the connection (`DuplexConnection`) and the refusals. Must not: own a socket, a
//! timer or a task (node's `input::srt` drives it; the tests drive two of them
//! against each other in memory), read the clock (every call takes `now`, the
//! node's clock), parse MPEG-TS, or show the passphrase.
//!
//! `srt-protocol` is not hardened against hostile peers (a few `unimplemented!()`
//! on handshake combinations a peer chooses): a handshake is vetted before it is
//! handed over, and every call into it is wrapped so that a panic costs only that
//! handshake or connection, never the input.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::connection::DuplexConnection;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, CoreRejectReason, HandshakeVsInfo, KeyingMaterialMessage, Packet,
    RejectReason, SeqNumber, ServerRejectReason, ShakeType, SocketId, SrtControlPacket, TimeStamp,
};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::protocol::pending_connection::{
    AccessControlResponse, ConnectionReject, ConnectionResult,
};
use srt_protocol::settings::{
    CipherSettings, ConnInitSettings, KeyMaterialRefreshSettings, KeySettings,
};

/// Handshakes a listener keeps in flight at once (from distinct addresses); a
/// newer one pushes out the oldest.
pub const SRT_MAX_PENDING_HANDSHAKES: usize = 8;
/// How long a listener keeps a handshake that does not conclude.
pub const SRT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller tries to connect (libsrt's `SRTO_CONNTIMEO`).
pub const SRT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection whose peer sends nothing (not even a keepalive) for this long is
/// closed (libsrt's `SRTO_PEERIDLETIMEO`).
pub const SRT_PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// A listener in use refuses a second caller while its sender sent something
/// within this time; after it, a new caller takes the place (a sender that died
/// without saying so and came back).
pub const SRT_TAKEOVER_SILENCE: Duration = Duration::from_secs(1);
/// How often a caller repeats its handshake packet while waiting (libsrt: 250 ms;
/// srt-rs: 100 ms).
const CALLER_RETRY: Duration = Duration::from_millis(100);

/// What the session is asked to be.
#[derive(Clone)]
pub struct SrtSettings {
    /// `None`: a listener; `Some(sender)`: a caller of that address.
    pub call: Option<SocketAddr>,
    /// 10 to 79 bytes (checked by the config); never displayed.
    pub passphrase: Option<String>,
    /// The key length a caller asks for (16, 24 or 32); a listener takes the caller's.
    pub key_len: u8,
    pub latency: Duration,
    /// A caller sends it; a listener with one refuses callers sending another.
    pub stream_id: Option<String>,
}

/// Why a listener refused a caller, or a caller was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller's passphrase is not this input's (libsrt: `SRT_REJ_BADSECRET`).
    WrongPassphrase,
    /// One side encrypts and the other does not (libsrt: `SRT_REJ_UNSECURE`).
    Unencrypted,
    /// A sender already streams into this listener.
    Busy,
    /// The caller's stream id is not the one this listener takes.
    WrongStreamId,
    /// A handshake this node cannot take (an unsupported combination, a packet the
    /// SRT library would not handle).
    Protocol(String),
    /// The peer refused this node's call, for the reason it gave.
    ByPeer(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongPassphrase => f.write_str("wrong passphrase"),
            Refusal::Unencrypted => {
                f.write_str("one side has a passphrase and the other none (unencrypted)")
            }
            Refusal::Busy => f.write_str("the listener already has a sender"),
            Refusal::WrongStreamId => f.write_str("wrong stream id"),
            Refusal::Protocol(why) => write!(f, "handshake not supported: {why}"),
            Refusal::ByPeer(why) => write!(f, "the sender refused the connection: {why}"),
        }
    }
}

/// What happened, for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum SrtEvent {
    /// A sender is connected.
    Connected {
        peer: SocketAddr,
        encrypted: bool,
        stream_id: Option<String>,
    },
    /// Payload released by the receive buffer (at its latency), in order.
    Data(Bytes),
    /// A listener refused a caller, or a caller was refused.
    Refused { peer: SocketAddr, why: Refusal },
    /// A caller got no answer within [`SRT_CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The connection ended (the sender closed it, went idle, or a newer caller
    /// took the listener over).
    Closed { why: &'static str },
}

struct Pending {
    listen: Listen,
    since: Duration,
    /// The key material its conclusion brought.
    km: Option<KeyingMaterialMessage>,
}

enum Role {
    Listener {
        pending: BTreeMap<SocketAddr, Pending>,
    },
    Caller {
        connect: Option<Box<Connect>>,
        remote: SocketAddr,
        started: Duration,
        next_tick: Duration,
    },
}

/// One SRT input's session: a listener taking one sender at a time, or a caller.
pub struct SrtSession {
    settings: SrtSettings,
    /// The `Instant` that is `base_at` on the node's clock (`srt-protocol` counts
    /// in `Instant`s; Tern's machines in the clock's `Duration`s).
    base: Instant,
    base_at: Duration,
    role: Role,
    conn: Option<DuplexConnection>,
    /// The connection's peer and when it last sent anything.
    peer: Option<SocketAddr>,
    last_rx: Duration,
    /// A listener's answer to the sender's conclusion, sent again while the sender
    /// repeats its conclusion (the answer was lost): `srt-protocol`'s connection
    /// ignores handshakes addressed to socket 0.
    conclusion_answer: Option<Vec<u8>>,
    /// The latest `now` given.
    now: Duration,
    /// Socket ids and initial sequence numbers, from the node's seeded RNG.
    ids: Box<dyn FnMut() -> u32 + Send>,
    transmit: VecDeque<(Vec<u8>, SocketAddr)>,
    events: VecDeque<SrtEvent>,
}

impl SrtSession {
    /// A session starting at `now` (the node's clock), which is `base` as an
    /// `Instant`. `ids` draws socket ids and sequence numbers.
    pub fn new(
        settings: SrtSettings,
        base: Instant,
        now: Duration,
        ids: Box<dyn FnMut() -> u32 + Send>,
    ) -> SrtSession {
        let role = match settings.call {
            None => Role::Listener {
                pending: BTreeMap::new(),
            },
            Some(remote) => Role::Caller {
                connect: None,
                remote,
                started: now,
                next_tick: now,
            },
        };
        let mut s = SrtSession {
            settings,
            base,
            base_at: now,
            role,
            conn: None,
            peer: None,
            last_rx: now,
            conclusion_answer: None,
            now,
            ids,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        if let Role::Caller { remote, .. } = s.role {
            let init = s.init_settings(None);
            let seq = SeqNumber::new_truncate((s.ids)());
            let local = if remote.is_ipv6() {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            let streamid = s.settings.stream_id.clone();
            if let Role::Caller { connect, .. } = &mut s.role {
                *connect = Some(Box::new(Connect::new(remote, local, init, streamid, seq)));
            }
        }
        s
    }

    fn at(&self, now: Duration) -> Instant {
        self.base + now.saturating_sub(self.base_at)
    }

    fn to_clock(&self, t: Instant) -> Duration {
        self.base_at + t.saturating_duration_since(self.base)
    }

    /// `srt-protocol`'s settings for a new handshake; `key` overrides the
    /// passphrase's key length (a listener takes the caller's).
    fn init_settings(&mut self, key: Option<KeySize>) -> ConnInitSettings {
        let key_size = key.unwrap_or(match self.settings.key_len {
            24 => KeySize::AES192,
            32 => KeySize::AES256,
            _ => KeySize::AES128,
        });
        let key_settings = self.settings.passphrase.as_ref().and_then(|p| {
            Some(KeySettings {
                key_size,
                passphrase: Passphrase::try_from(p.clone()).ok()?,
            })
        });
        ConnInitSettings {
            local_sockid: SocketId((self.ids)()),
            key_settings,
            send_latency: self.settings.latency,
            recv_latency: self.settings.latency,
            peer_idle_timeout: SRT_PEER_IDLE_TIMEOUT,
            ..ConnInitSettings::default()
        }
    }

    /// Whether a sender is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// A datagram from `from` arrived at `now`.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        let Ok(packet) = Packet::parse(&mut &data[..], from.is_ipv6()) else {
            return;
        };
        let t = self.at(now);
        if self.peer == Some(from) {
            if let (Some(answer), true) = (&self.conclusion_answer, is_conclusion(&packet)) {
                self.last_rx = now;
                self.transmit.push_back((answer.clone(), from));
                return;
            }
            if let Some(conn) = &mut self.conn {
                self.last_rx = now;
                let handled = catch_unwind(AssertUnwindSafe(|| {
                    conn.handle_packet_input(t, Ok((packet, from)))
                }));
                if handled.is_err() {
                    self.drop_connection("the SRT library failed on a packet of the sender");
                }
                self.flush(now);
                return;
            }
        }
        match &mut self.role {
            Role::Caller { .. } => self.caller_packet(now, packet, from),
            Role::Listener { .. } => self.listener_packet(now, packet, from),
        }
        self.flush(now);
    }

    fn caller_packet(&mut self, now: Duration, packet: Packet, from: SocketAddr) {
        let t = self.at(now);
        let Role::Caller {
            connect, remote, ..
        } = &mut self.role
        else {
            return;
        };
        if from != *remote {
            return;
        }
        let Some(c) = connect else { return };
        let r = catch_unwind(AssertUnwindSafe(|| c.handle_packet(Ok((packet, from)), t)));
        match r {
            Ok(r) => self.connect_result(now, r, from),
            Err(_) => {
                if let Role::Caller { connect, .. } = &mut self.role {
                    *connect = None;
                }
                self.events.push_back(SrtEvent::Refused {
                    peer: from,
                    why: Refusal::Protocol("the SRT library failed on the answer".to_owned()),
                });
            }
        }
    }

    fn listener_packet(&mut self, now: Duration, packet: Packet, from: SocketAddr) {
        let t = self.at(now);
        let is_induction = matches!(
            &packet,
            Packet::Control(ControlPacket { control_type: ControlTypes::Handshake(h), .. })
                if h.shake_type == ShakeType::Induction
        );
        if !packet.is_handshake() {
            return;
        }
        if is_induction {
            let init = self.init_settings(None);
            let Role::Listener { pending } = &mut self.role else {
                return;
            };
            if !pending.contains_key(&from) && pending.len() >= SRT_MAX_PENDING_HANDSHAKES {
                let oldest = pending.iter().min_by_key(|(_, p)| p.since).map(|(a, _)| *a);
                if let Some(a) = oldest {
                    pending.remove(&a);
                }
            }
            pending.insert(
                from,
                Pending {
                    listen: Listen::new(init, true),
                    since: now,
                    km: None,
                },
            );
        }
        let km = match vet_handshake(&packet) {
            Ok(km) => km,
            Err(why) => {
                if let Role::Listener { pending } = &self.role {
                    if pending.contains_key(&from) {
                        self.refuse_pending(from, Refusal::Protocol(why));
                    }
                }
                return;
            }
        };
        let Role::Listener { pending } = &mut self.role else {
            return;
        };
        let Some(p) = pending.get_mut(&from) else {
            return;
        };
        if km.is_some() {
            p.km = km;
        }
        let km = p.km.clone();
        let r = catch_unwind(AssertUnwindSafe(|| {
            p.listen.handle_packet(t, Ok((packet, from)))
        }));
        match r {
            Ok(ConnectionResult::RequestAccess(req)) => {
                let answer =
                    self.access(now, req.key_size, km, req.stream_id.map(|s| s.to_string()));
                let why = match &answer {
                    AccessControlResponse::Rejected(r) => Some(refusal_of(*r)),
                    _ => None,
                };
                let Role::Listener { pending } = &mut self.role else {
                    return;
                };
                let Some(p) = pending.get_mut(&from) else {
                    return;
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    p.listen.handle_access_control_response(t, answer)
                }));
                match r {
                    Ok(r) => {
                        if let Some(why) = why {
                            // The rejection packet goes out; the refusal is reported once.
                            if let ConnectionResult::Reject(Some((pkt, to)), _) = r {
                                self.send(&pkt, to);
                            }
                            self.refuse_pending(from, why);
                        } else {
                            self.connect_result(now, r, from);
                        }
                    }
                    Err(_) => self.refuse_pending(
                        from,
                        Refusal::Protocol("the SRT library failed on the handshake".to_owned()),
                    ),
                }
            }
            Ok(r) => self.connect_result(now, r, from),
            Err(_) => self.refuse_pending(
                from,
                Refusal::Protocol("the SRT library failed on the handshake".to_owned()),
            ),
        }
    }

    /// The listener's decision on a concluded handshake.
    fn access(
        &mut self,
        now: Duration,
        key_size: KeySize,
        km: Option<KeyingMaterialMessage>,
        stream_id: Option<String>,
    ) -> AccessControlResponse {
        use AccessControlResponse::{Accepted, Rejected};
        // The passphrase first: a caller without it learns nothing of the stream.
        let keys = match (&self.settings.passphrase, km) {
            (None, None) => None,
            (None, Some(_)) | (Some(_), None) => {
                return Rejected(RejectReason::Core(CoreRejectReason::Unsecure))
            }
            (Some(p), Some(km)) => {
                let Ok(passphrase) = Passphrase::try_from(p.clone()) else {
                    return Rejected(RejectReason::Core(CoreRejectReason::BadSecret));
                };
                // The handshake's key size as it is (`srt-protocol` compares them).
                let keys = KeySettings {
                    key_size,
                    passphrase,
                };
                let unwrapped = catch_unwind(AssertUnwindSafe(|| {
                    CipherSettings::new(&keys, &KeyMaterialRefreshSettings::default(), &km)
                }));
                if !matches!(unwrapped, Ok(Ok(_))) {
                    return Rejected(RejectReason::Core(CoreRejectReason::BadSecret));
                }
                Some(keys)
            }
        };
        if let Some(want) = &self.settings.stream_id {
            if stream_id.as_deref() != Some(want.as_str()) {
                return Rejected(RejectReason::Server(ServerRejectReason::Notfound));
            }
        }
        let busy = self.conn.is_some() && now.saturating_sub(self.last_rx) < SRT_TAKEOVER_SILENCE;
        if busy {
            return Rejected(RejectReason::Server(ServerRejectReason::Conflict));
        }
        Accepted(keys)
    }

    fn refuse_pending(&mut self, from: SocketAddr, why: Refusal) {
        if let Role::Listener { pending } = &mut self.role {
            pending.remove(&from);
        }
        self.events.push_back(SrtEvent::Refused { peer: from, why });
    }

    fn connect_result(&mut self, now: Duration, r: ConnectionResult, from: SocketAddr) {
        match r {
            ConnectionResult::SendPacket((p, to)) => self.send(&p, to),
            ConnectionResult::Reject(packet, reject) => {
                if let Some((p, to)) = packet {
                    self.send(&p, to);
                }
                let why = match reject {
                    ConnectionReject::Rejecting(r) => refusal_of(r),
                    ConnectionReject::Rejected(r) => Refusal::ByPeer(reason_text(r)),
                };
                match &mut self.role {
                    Role::Listener { pending } => {
                        pending.remove(&from);
                    }
                    Role::Caller { connect, .. } => *connect = None,
                }
                self.events.push_back(SrtEvent::Refused { peer: from, why });
            }
            ConnectionResult::Connected(packet, connection) => {
                self.conclusion_answer = None;
                if let Some((p, to)) = packet {
                    self.send(&p, to);
                    let mut answer = Vec::with_capacity(p.wire_size());
                    p.serialize(&mut answer);
                    self.conclusion_answer = Some(answer);
                }
                match &mut self.role {
                    Role::Listener { pending } => {
                        pending.remove(&from);
                    }
                    Role::Caller { connect, .. } => *connect = None,
                }
                if self.conn.is_some() {
                    // A newer caller takes over a silent sender.
                    self.drop_connection("a new sender took over the listener");
                }
                let encrypted = connection.settings.cipher.is_some();
                let stream_id = connection.settings.stream_id.clone();
                let peer = connection.settings.remote;
                self.conn = Some(DuplexConnection::new(connection));
                self.peer = Some(peer);
                self.last_rx = now;
                self.events.push_back(SrtEvent::Connected {
                    peer,
                    encrypted,
                    stream_id,
                });
            }
            ConnectionResult::Failure(_) | ConnectionResult::NotHandled(_) => {}
            ConnectionResult::NoAction | ConnectionResult::RequestAccess(_) => {}
        }
    }

    /// Time passed: timers of the connection, handshake retries and timeouts.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let t = self.at(now);
        match &mut self.role {
            Role::Caller {
                connect: Some(c),
                started,
                next_tick,
                remote,
            } => {
                if now.saturating_sub(*started) >= SRT_CONNECT_TIMEOUT {
                    self.role = Role::Caller {
                        connect: None,
                        remote: *remote,
                        started: now,
                        next_tick: now,
                    };
                    self.events.push_back(SrtEvent::ConnectTimeout);
                } else if now >= *next_tick {
                    *next_tick = now + CALLER_RETRY;
                    let r = catch_unwind(AssertUnwindSafe(|| c.handle_tick(t)));
                    let remote = *remote;
                    if let Ok(r) = r {
                        self.connect_result(now, r, remote);
                    }
                }
            }
            Role::Caller { connect: None, .. } => {}
            Role::Listener { pending } => {
                pending.retain(|_, p| now.saturating_sub(p.since) < SRT_HANDSHAKE_TIMEOUT);
            }
        }
        if let Some(conn) = &mut self.conn {
            if catch_unwind(AssertUnwindSafe(|| conn.check_timers(t))).is_err() {
                self.drop_connection("the SRT library failed on a timer");
            }
        }
        self.flush(now);
    }

    /// Sends what the connection has to send and takes what it released.
    fn flush(&mut self, now: Duration) {
        let t = self.at(now);
        let Some(conn) = &mut self.conn else { return };
        let mut out = Vec::new();
        let mut data = Vec::new();
        let ok = catch_unwind(AssertUnwindSafe(|| {
            while let Some(p) = conn.next_packet(t) {
                out.push(p);
            }
            loop {
                let dropped = conn.statistics().rx_dropped_data;
                match conn.next_data(t) {
                    Some((_, d)) => data.push(d),
                    None if conn.statistics().rx_dropped_data != dropped => {}
                    None => break,
                }
            }
            conn.is_open()
        }));
        for (p, to) in out {
            self.send(&p, to);
        }
        self.events.extend(data.into_iter().map(SrtEvent::Data));
        match ok {
            Ok(true) => {}
            Ok(false) => {
                self.conn = None;
                self.peer = None;
                self.conclusion_answer = None;
                self.events.push_back(SrtEvent::Closed {
                    why: "the sender closed the connection or went idle",
                });
            }
            Err(_) => self.drop_connection("the SRT library failed on the connection"),
        }
    }

    fn drop_connection(&mut self, why: &'static str) {
        self.conn = None;
        self.peer = None;
        self.conclusion_answer = None;
        self.events.push_back(SrtEvent::Closed { why });
    }

    /// Ends the connection, telling the sender (the input is no longer needed, or
    /// its source timed out).
    pub fn close(&mut self, now: Duration) {
        if let (Some(conn), Some(peer)) = (&self.conn, self.peer) {
            let s = conn.settings();
            let ts = now.saturating_sub(self.to_clock(s.socket_start_time));
            let p = Packet::Control(ControlPacket {
                timestamp: TimeStamp::from_micros(ts.as_micros() as u32),
                dest_sockid: s.remote_sockid,
                control_type: ControlTypes::Shutdown,
            });
            self.send(&p, peer);
        }
        self.conn = None;
        self.peer = None;
        self.conclusion_answer = None;
    }

    fn send(&mut self, p: &Packet, to: SocketAddr) {
        let mut buf = Vec::with_capacity(p.wire_size());
        p.serialize(&mut buf);
        self.transmit.push_back((buf, to));
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SrtEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` wants to be called (the node's clock).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let conn = self
            .conn
            .as_ref()
            .map(|c| self.to_clock(c.next_timer(self.at(self.now))));
        let role = match &self.role {
            Role::Caller {
                connect: Some(_),
                started,
                next_tick,
                ..
            } => Some((*next_tick).min(*started + SRT_CONNECT_TIMEOUT)),
            Role::Caller { connect: None, .. } => None,
            Role::Listener { pending } => pending
                .values()
                .map(|p| p.since + SRT_HANDSHAKE_TIMEOUT)
                .min(),
        };
        match (conn, role) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether `packet` is a conclusion handshake.
fn is_conclusion(packet: &Packet) -> bool {
    matches!(packet, Packet::Control(ControlPacket {
        control_type: ControlTypes::Handshake(h),
        ..
    }) if h.shake_type == ShakeType::Conclusion)
}

/// Vets a listener's handshake before `srt-protocol` sees it, refusing what it
/// would panic on: key material that is not a request (KMREQ), or whose key length
/// differs from the handshake's (libsrt announces none for its default 16 bytes,
/// and `srt-protocol` then only takes 16). `Ok(Some(km))`: a conclusion with key
/// material. (A caller does not read the listener's key material: libsrt
/// listeners refuse a wrong passphrase themselves.)
fn vet_handshake(packet: &Packet) -> Result<Option<KeyingMaterialMessage>, String> {
    let Packet::Control(ControlPacket {
        control_type: ControlTypes::Handshake(h),
        ..
    }) = packet
    else {
        return Ok(None);
    };
    let HandshakeVsInfo::V5(info) = &h.info else {
        return Ok(None);
    };
    if h.shake_type != ShakeType::Conclusion {
        return Ok(None);
    }
    let km = match &info.ext_km {
        None => return Ok(None),
        Some(SrtControlPacket::KeyRefreshRequest(km)) => km,
        Some(_) => {
            return Err("a handshake extension where the key material request belongs".to_owned())
        }
    };
    let keys = km.key_flags.bits().count_ones() as usize;
    let len = km.wrapped_keys.len().saturating_sub(8);
    let key_len = if keys == 0 || len % keys != 0 {
        0
    } else {
        len / keys
    };
    let announced = match info.key_size {
        KeySize::Unspecified => 16,
        k => k.as_usize(),
    };
    if key_len != announced {
        return Err(format!(
            "a key of {key_len} bytes where the handshake announces {announced} (set the same \
             `pbkeylen` on both sides)"
        ));
    }
    Ok(Some(km.clone()))
}

/// Our reading of a reject reason this node chose.
fn refusal_of(r: RejectReason) -> Refusal {
    match r {
        RejectReason::Core(CoreRejectReason::BadSecret) => Refusal::WrongPassphrase,
        RejectReason::Core(CoreRejectReason::Unsecure) => Refusal::Unencrypted,
        RejectReason::Server(ServerRejectReason::Conflict) => Refusal::Busy,
        RejectReason::Server(ServerRejectReason::Notfound) => Refusal::WrongStreamId,
        other => Refusal::Protocol(reason_text(other)),
    }
}

/// A peer's reject reason in words.
fn reason_text(r: RejectReason) -> String {
    match r {
        RejectReason::Core(CoreRejectReason::BadSecret) => "wrong passphrase".to_owned(),
        RejectReason::Core(CoreRejectReason::Unsecure) => {
            "one side has a passphrase and the other none".to_owned()
        }
        RejectReason::Core(c) => format!("{c:?}"),
        RejectReason::Server(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
