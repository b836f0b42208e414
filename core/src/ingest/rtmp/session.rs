//! One RTMP connection on the server side, from the handshake to a publisher's
//! audio and video: bytes in, bytes out and events, nothing else.
//!
//! Owns: the simple handshake (C0/C1/C2, S0/S1/S2), the protocol control messages
//! (chunk size, window acknowledgements), the command exchange of a publisher
//! (`connect`, `releaseStream`, `FCPublish`, `createStream`, `publish`,
//! `FCUnpublish`, `deleteStream`), the caps of a connection (handshake deadline, chunk
//! and message sizes: small until the publish is accepted) and, once publishing,
//! the silence deadline. Must not: decide whether a publish is allowed (the node
//! asks its streams and answers with [`RtmpSession::accept_publish`] or
//! [`RtmpSession::refuse_publish`]), read clocks (times come in), touch sockets, or
//! interpret audio and video (that is `ingest::flv`).
//!
//! Shape: `handle_bytes(now, bytes)`; then `take_output()` (write it to the peer) and
//! `poll_event()` until `None`; `poll_timeout()`/`handle_timeout(now)` for deadlines.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::amf0::{self, Amf, AmfError};
use super::chunk::{self, ChunkError, ChunkReader, Message, Step};

/// From the TCP accept to an accepted `publish` (handshake, `connect`,
/// `createStream`, `publish`): a client slower than this is cut.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest chunk size a peer may set (ffmpeg and OBS use 4096; the protocol allows
/// 2^31 - 1, which would make a reader wait for 2 GiB of one chunk).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Largest message of a publishing peer (a keyframe; the protocol allows 16 MiB).
pub const MAX_MESSAGE: usize = 8 << 20;
/// Largest message before the publish is accepted (commands are a few hundred bytes):
/// a peer without the password holds at most this much of the node's memory.
pub const PRE_PUBLISH_MAX_MESSAGE: usize = 64 << 10;
/// Size of C1, S1, C2 and S2.
const HANDSHAKE_LEN: usize = 1536;
/// The chunk size Tern sends with.
const OUT_CHUNK_SIZE: usize = 4096;
/// Window acknowledgement size Tern asks for and acknowledges at.
const WINDOW: u32 = 2_500_000;
/// The message stream a publisher gets from `createStream`.
const STREAM_ID: u32 = 1;

/// The caps of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtmpLimits {
    pub handshake_timeout: Duration,
    pub max_chunk_size: usize,
    pub max_message: usize,
    /// A publisher silent this long is cut (the input's `source_timeout`).
    pub idle_timeout: Duration,
}

impl Default for RtmpLimits {
    fn default() -> Self {
        RtmpLimits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_chunk_size: MAX_CHUNK_SIZE,
            max_message: MAX_MESSAGE,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the connection ends. The driver logs it and closes the socket.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RtmpError {
    #[error("RTMP version {0} asked for (Tern speaks 3, unencrypted)")]
    Version(u8),
    #[error("no publish within {0} ms of connecting (handshake timeout)")]
    HandshakeTimeout(u64),
    #[error("nothing received for {0} ms (source timeout)")]
    Idle(u64),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad command: {0}")]
    Amf(#[from] AmfError),
    #[error("chunk size {0} asked for (at most {MAX_CHUNK_SIZE} accepted)")]
    ChunkSize(u32),
    #[error("`{0}` before `connect`")]
    NotConnected(String),
    #[error("the publisher stopped")]
    Unpublished,
    #[error("publish refused: {0}")]
    Refused(String),
}

/// What the session asks of the driver or hands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtmpEvent {
    /// The peer wants to publish: `app` from `connect` and the stream key from
    /// `publish` (each may hold a `?query`). Answer with `accept_publish` or
    /// `refuse_publish`; media waits until then.
    Publish { app: String, key: String },
    /// An audio message (FLV AUDIODATA) at `timestamp` ms.
    Audio { timestamp: u32, payload: Bytes },
    /// A video message (FLV VIDEODATA).
    Video { timestamp: u32, payload: Bytes },
    /// A data message (`@setDataFrame onMetaData ...`), AMF0.
    Data { payload: Bytes },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for C0 and C1.
    Hello,
    /// S0, S1, S2 sent; waiting for C2.
    Echo,
    /// Commands.
    Commands,
    /// `publish` asked, waiting for the driver's answer.
    Asking,
    Publishing,
    Closed,
}

/// See the file comment.
#[derive(Debug)]
pub struct RtmpSession {
    phase: Phase,
    limits: RtmpLimits,
    input: BytesMut,
    output: Vec<u8>,
    events: VecDeque<RtmpEvent>,
    reader: ChunkReader,
    deadline: Option<Duration>,
    app: Option<String>,
    /// Transaction id of the pending `publish`.
    publish_txn: f64,
    received: u64,
    acked: u64,
    seed: u64,
    /// Tern's chunk size: the default until `SetChunkSize` went out.
    out_chunk: usize,
}

impl RtmpSession {
    /// A connection accepted at `now`; `seed` fills S1's random bytes.
    pub fn new(now: Duration, limits: RtmpLimits, seed: u64) -> RtmpSession {
        RtmpSession {
            phase: Phase::Hello,
            limits,
            input: BytesMut::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            reader: ChunkReader::new(PRE_PUBLISH_MAX_MESSAGE.min(limits.max_message)),
            deadline: Some(now + limits.handshake_timeout),
            app: None,
            publish_txn: 0.0,
            received: 0,
            acked: 0,
            seed,
            out_chunk: chunk::DEFAULT_CHUNK_SIZE,
        }
    }

    /// The silence after which a publisher is cut (the input's `source_timeout`);
    /// set before accepting.
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.limits.idle_timeout = idle;
    }

    /// Whether the peer publishes (accepted).
    pub fn publishing(&self) -> bool {
        self.phase == Phase::Publishing
    }

    /// Bytes from the peer, arrived at `now`.
    pub fn handle_bytes(&mut self, now: Duration, data: &[u8]) -> Result<(), RtmpError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        self.input.extend_from_slice(data);
        self.received += data.len() as u64;
        if self.phase == Phase::Asking && self.input.len() > PRE_PUBLISH_MAX_MESSAGE {
            self.phase = Phase::Closed;
            return Err(RtmpError::Chunk(ChunkError::TooMuchPending(
                PRE_PUBLISH_MAX_MESSAGE,
            )));
        }
        if self.phase == Phase::Publishing {
            self.deadline = Some(now + self.limits.idle_timeout);
        }
        let r = self.process();
        if r.is_err() {
            self.phase = Phase::Closed;
        }
        if self.received - self.acked >= u64::from(WINDOW) {
            self.acked = self.received;
            let seq = (self.received & 0xFFFF_FFFF) as u32;
            self.control(3, &seq.to_be_bytes());
        }
        r
    }

    /// The next deadline: the handshake's until the publish is accepted, then the
    /// silence one.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadline
    }

    /// Time passed; an error once a deadline is over.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), RtmpError> {
        match self.deadline {
            Some(d) if now >= d => {
                let ms = |d: Duration| d.as_millis() as u64;
                let e = if self.publishing() {
                    RtmpError::Idle(ms(self.limits.idle_timeout))
                } else {
                    RtmpError::HandshakeTimeout(ms(self.limits.handshake_timeout))
                };
                self.phase = Phase::Closed;
                self.deadline = None;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// What to send to the peer now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        self.events.pop_front()
    }

    /// The pending publish is allowed (at `now`): the peer is told, its media flows.
    pub fn accept_publish(&mut self, now: Duration, description: &str) -> Result<(), RtmpError> {
        if self.phase != Phase::Asking {
            return Ok(());
        }
        self.phase = Phase::Publishing;
        self.deadline = Some(now + self.limits.idle_timeout);
        self.reader.set_max_message(self.limits.max_message);
        // User control StreamBegin for the publisher's stream.
        let mut begin = vec![0, 0];
        begin.extend_from_slice(&STREAM_ID.to_be_bytes());
        self.control(4, &begin);
        self.status("status", "NetStream.Publish.Start", description);
        // Commands and media may have arrived behind the publish.
        let r = self.process();
        if r.is_err() {
            self.phase = Phase::Closed;
        }
        r
    }

    /// The pending publish is refused: the peer is told why; the connection ends
    /// (the driver sends the output, then closes).
    pub fn refuse_publish(&mut self, code: &str, description: &str) -> RtmpError {
        self.status("error", code, description);
        self.phase = Phase::Closed;
        self.deadline = None;
        RtmpError::Refused(description.to_owned())
    }

    fn process(&mut self) -> Result<(), RtmpError> {
        loop {
            match self.phase {
                Phase::Hello => {
                    let Some(&version) = self.input.first() else {
                        return Ok(());
                    };
                    if version != 3 {
                        return Err(RtmpError::Version(version));
                    }
                    if self.input.len() < 1 + HANDSHAKE_LEN {
                        return Ok(());
                    }
                    let hello = self.input.split_to(1 + HANDSHAKE_LEN);
                    let c1 = &hello[1..];
                    self.output.push(3);
                    // S1: time 0, zeros, then bytes of the seed (a client may check
                    // only that S2 echoes them).
                    let mut s1 = vec![0u8; HANDSHAKE_LEN];
                    let mut x = self.seed | 1;
                    for b in &mut s1[8..] {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                    self.output.extend_from_slice(&s1);
                    // S2 echoes C1.
                    self.output.extend_from_slice(c1);
                    self.phase = Phase::Echo;
                }
                Phase::Echo => {
                    if self.input.len() < HANDSHAKE_LEN {
                        return Ok(());
                    }
                    let _c2 = self.input.split_to(HANDSHAKE_LEN);
                    self.phase = Phase::Commands;
                }
                Phase::Commands | Phase::Publishing => match self.reader.read(&mut self.input)? {
                    Step::NeedMore => return Ok(()),
                    Step::Chunk => {}
                    Step::Message(m) => self.message(m)?,
                },
                // Nothing more is read until the driver answers (what arrives
                // meanwhile waits in `input`, bounded in `handle_bytes`).
                Phase::Asking | Phase::Closed => return Ok(()),
            }
        }
    }

    fn message(&mut self, m: Message) -> Result<(), RtmpError> {
        match m.type_id {
            1 => {
                let p = &m.payload;
                let size = p
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    & 0x7FFF_FFFF;
                if size == 0 || size as usize > self.limits.max_chunk_size {
                    return Err(RtmpError::ChunkSize(size));
                }
                self.reader.set_chunk_size(size as usize);
            }
            2 => {
                if let Some(b) = m.payload.get(..4) {
                    self.reader
                        .abort(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            // Acknowledgement, user control, window size, peer bandwidth: nothing to do.
            3..=6 => {}
            8 if self.publishing() && m.stream_id == STREAM_ID => {
                self.events.push_back(RtmpEvent::Audio {
                    timestamp: m.timestamp,
                    payload: m.payload,
                })
            }
            9 if self.publishing() && m.stream_id == STREAM_ID => {
                self.events.push_back(RtmpEvent::Video {
                    timestamp: m.timestamp,
                    payload: m.payload,
                })
            }
            18 if self.publishing() => self
                .events
                .push_back(RtmpEvent::Data { payload: m.payload }),
            20 => self.command(&m.payload)?,
            // AMF3 command: a leading 0 byte, then AMF0 in practice.
            17 => self.command(m.payload.get(1..).unwrap_or_default())?,
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let values = amf0::decode_all(payload)?;
        let name = values.first().and_then(Amf::as_str).unwrap_or_default();
        let txn = values.get(1).and_then(Amf::as_number).unwrap_or(0.0);
        if name != "connect" && self.app.is_none() {
            return Err(RtmpError::NotConnected(name.chars().take(32).collect()));
        }
        match name {
            "connect" => {
                let app = values
                    .get(2)
                    .and_then(|o| o.get("app"))
                    .and_then(Amf::as_str)
                    .unwrap_or_default();
                self.app = Some(app.to_owned());
                self.control(5, &WINDOW.to_be_bytes());
                let mut bw = WINDOW.to_be_bytes().to_vec();
                bw.push(2);
                self.control(6, &bw);
                self.control(1, &(OUT_CHUNK_SIZE as u32).to_be_bytes());
                self.out_chunk = OUT_CHUNK_SIZE;
                let props = Amf::Object(vec![
                    ("fmsVer".into(), Amf::String("FMS/3,0,1,123".into())),
                    ("capabilities".into(), Amf::Number(31.0)),
                ]);
                let info = Amf::Object(vec![
                    ("level".into(), Amf::String("status".into())),
                    (
                        "code".into(),
                        Amf::String("NetConnection.Connect.Success".into()),
                    ),
                    (
                        "description".into(),
                        Amf::String("Connection succeeded.".into()),
                    ),
                    ("objectEncoding".into(), Amf::Number(0.0)),
                ]);
                self.invoke(
                    0,
                    &[Amf::String("_result".into()), Amf::Number(txn), props, info],
                );
            }
            "createStream" => {
                self.invoke(
                    0,
                    &[
                        Amf::String("_result".into()),
                        Amf::Number(txn),
                        Amf::Null,
                        Amf::Number(f64::from(STREAM_ID)),
                    ],
                );
            }
            "publish" => {
                if self.phase != Phase::Commands {
                    return Ok(()); // one publish per connection
                }
                let key = values.get(3).and_then(Amf::as_str).unwrap_or_default();
                self.publish_txn = txn;
                self.phase = Phase::Asking;
                self.events.push_back(RtmpEvent::Publish {
                    app: self.app.clone().unwrap_or_default(),
                    key: key.to_owned(),
                });
            }
            "FCUnpublish" | "deleteStream" | "closeStream" if self.publishing() => {
                return Err(RtmpError::Unpublished);
            }
            // releaseStream, FCPublish, getStreamLength, ...: no answer needed.
            _ => {}
        }
        Ok(())
    }

    /// A protocol control message (chunk stream 2, message stream 0).
    fn control(&mut self, type_id: u8, payload: &[u8]) {
        let m = Message {
            type_id,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::copy_from_slice(payload),
        };
        chunk::write(&mut self.output, 2, self.out_chunk, &m);
    }

    fn invoke(&mut self, stream_id: u32, values: &[Amf]) {
        let m = Message {
            type_id: 20,
            stream_id,
            timestamp: 0,
            payload: Bytes::from(amf0::encode_all(values)),
        };
        chunk::write(&mut self.output, 3, self.out_chunk, &m);
    }

    fn status(&mut self, level: &str, code: &str, description: &str) {
        let info = Amf::Object(vec![
            ("level".into(), Amf::String(level.into())),
            ("code".into(), Amf::String(code.into())),
            ("description".into(), Amf::String(description.into())),
        ]);
        let txn = Amf::Number(self.publish_txn);
        self.invoke(
            STREAM_ID,
            &[Amf::String("onStatus".into()), txn, Amf::Null, info],
        );
    }
}

#[cfg(test)]
mod tests;
