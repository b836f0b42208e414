//! Tests of the RTMP server session against a scripted publisher.

use super::*;
use crate::ingest::rtmp::chunk::ChunkReader;

const T0: Duration = Duration::from_secs(100);

fn cmd(csid: u8, stream_id: u32, values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    let m = Message {
        type_id: 20,
        stream_id,
        timestamp: 0,
        payload: Bytes::from(amf0::encode_all(values)),
    };
    chunk::write(&mut out, csid, 128, &m);
    out
}

fn s(v: &str) -> Amf {
    Amf::String(v.into())
}

/// C0, C1 and C2 (C2 sent before S1 arrives, as ffmpeg may).
fn handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend((0..HANDSHAKE_LEN).map(|i| (i * 7) as u8));
    v.extend(std::iter::repeat_n(0u8, HANDSHAKE_LEN));
    v
}

fn connect_and_publish(app: &str, key: &str) -> Vec<u8> {
    let mut v = cmd(
        3,
        0,
        &[
            s("connect"),
            Amf::Number(1.0),
            Amf::Object(vec![
                ("app".into(), s(app)),
                ("type".into(), s("nonprivate")),
            ]),
        ],
    );
    v.extend(cmd(
        3,
        0,
        &[s("releaseStream"), Amf::Number(2.0), Amf::Null, s(key)],
    ));
    v.extend(cmd(
        3,
        0,
        &[s("FCPublish"), Amf::Number(3.0), Amf::Null, s(key)],
    ));
    v.extend(cmd(3, 0, &[s("createStream"), Amf::Number(4.0), Amf::Null]));
    v.extend(cmd(
        8,
        1,
        &[s("publish"), Amf::Number(5.0), Amf::Null, s(key), s("live")],
    ));
    v
}

/// Reads what the server sent after the handshake: its messages' AMF values.
fn answers(out: &[u8]) -> Vec<(u8, Vec<Amf>)> {
    let mut r = ChunkReader::new(1 << 20);
    let mut buf = BytesMut::from(out);
    let mut got = Vec::new();
    loop {
        match r.read(&mut buf).expect("server chunks") {
            Step::NeedMore => break,
            Step::Chunk => {}
            Step::Message(m) => {
                if m.type_id == 1 {
                    let p = &m.payload;
                    r.set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize);
                }
                let values = if m.type_id == 20 {
                    amf0::decode_all(&m.payload).expect("amf")
                } else {
                    Vec::new()
                };
                got.push((m.type_id, values));
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    got
}

fn codes(got: &[(u8, Vec<Amf>)]) -> Vec<String> {
    got.iter()
        .filter(|(t, _)| *t == 20)
        .map(|(_, v)| {
            let name = v[0].as_str().unwrap_or_default().to_owned();
            match v.get(3).and_then(|i| i.get("code")).and_then(Amf::as_str) {
                Some(code) => format!("{name} {code}"),
                None => name,
            }
        })
        .collect()
}

#[test]
fn a_publisher_is_asked_about_accepted_and_streams_media() {
    let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
    let hs = handshake();
    // The handshake arrives in pieces.
    sess.handle_bytes(T0, &hs[..100]).expect("c0");
    assert!(sess.take_output().is_empty());
    sess.handle_bytes(T0, &hs[100..1537]).expect("c1");
    let out = sess.take_output();
    assert_eq!(out.len(), 1 + 2 * HANDSHAKE_LEN);
    assert_eq!(out[0], 3);
    assert_eq!(&out[1 + HANDSHAKE_LEN..], &hs[1..1537], "S2 echoes C1");
    sess.handle_bytes(T0, &hs[1537..]).expect("c2");
    sess.handle_bytes(T0, &connect_and_publish("live", "studio?password=x"))
        .expect("commands");
    assert_eq!(
        sess.poll_event(),
        Some(RtmpEvent::Publish {
            app: "live".into(),
            key: "studio?password=x".into()
        })
    );
    assert_eq!(sess.poll_timeout(), Some(T0 + DEFAULT_HANDSHAKE_TIMEOUT));
    // Media sent right behind the publish waits for the answer.
    let mut media = Vec::new();
    let video = Message {
        type_id: 9,
        stream_id: 1,
        timestamp: 40,
        payload: Bytes::from(vec![0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
    };
    chunk::write(&mut media, 6, 128, &video);
    sess.handle_bytes(T0, &media).expect("media");
    assert_eq!(sess.poll_event(), None);
    let t1 = T0 + Duration::from_secs(1);
    sess.accept_publish(t1, "studio is now published")
        .expect("accept");
    assert_eq!(
        sess.poll_event(),
        Some(RtmpEvent::Video {
            timestamp: 40,
            payload: video.payload.clone()
        })
    );
    let got = answers(&sess.take_output());
    assert_eq!(
        codes(&got),
        [
            "_result NetConnection.Connect.Success",
            "_result",
            "onStatus NetStream.Publish.Start"
        ]
    );
    assert_eq!(
        got.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [5, 6, 1, 20, 20, 4, 20]
    );
    // createStream's answer names stream 1.
    assert_eq!(got[4].1.get(3), Some(&Amf::Number(1.0)));
    // Publishing: the silence deadline, moved by every byte.
    assert_eq!(sess.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    let t2 = t1 + Duration::from_secs(5);
    sess.handle_bytes(t2, &media).expect("media");
    assert_eq!(sess.poll_timeout(), Some(t2 + Duration::from_secs(10)));
    assert!(sess.handle_timeout(t2 + Duration::from_secs(9)).is_ok());
    assert_eq!(
        sess.handle_timeout(t2 + Duration::from_secs(10)),
        Err(RtmpError::Idle(10_000))
    );
}

#[test]
fn a_refused_publisher_is_told_why() {
    let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
    let mut bytes = handshake();
    bytes.extend(connect_and_publish("studio", ""));
    sess.handle_bytes(T0, &bytes).expect("commands");
    assert!(matches!(sess.poll_event(), Some(RtmpEvent::Publish { .. })));
    let e = sess.refuse_publish("NetStream.Publish.BadName", "wrong password");
    assert_eq!(e, RtmpError::Refused("wrong password".into()));
    let out = sess.take_output();
    let got = answers(&out[1 + 2 * HANDSHAKE_LEN..]);
    assert_eq!(
        codes(&got).last().map(String::as_str),
        Some("onStatus NetStream.Publish.BadName")
    );
}

#[test]
fn a_client_that_stalls_in_the_handshake_is_cut() {
    let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
    sess.handle_bytes(T0, &handshake()[..700])
        .expect("part of c1");
    let due = sess.poll_timeout().expect("a deadline");
    assert_eq!(due, T0 + DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(
        sess.handle_timeout(due),
        Err(RtmpError::HandshakeTimeout(10_000))
    );
    // A connected client that never publishes: the same deadline.
    let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
    let mut bytes = handshake();
    bytes.extend(cmd(3, 0, &[s("connect"), Amf::Number(1.0), Amf::Null]));
    sess.handle_bytes(T0, &bytes).expect("connect");
    assert!(sess.handle_timeout(T0 + DEFAULT_HANDSHAKE_TIMEOUT).is_err());
}

#[test]
fn hostile_peers_get_errors() {
    let start = |extra: &[u8]| {
        let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
        let mut b = handshake();
        b.extend_from_slice(extra);
        sess.handle_bytes(T0, &b)
    };
    // Encrypted RTMP or garbage.
    let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 7);
    assert_eq!(
        sess.handle_bytes(T0, b"GET / HTTP/1.1\r\n"),
        Err(RtmpError::Version(b'G'))
    );
    // A big message before publishing.
    let big = [0x03, 0, 0, 0, 0x01, 0x00, 0x01, 20, 0, 0, 0, 0];
    assert!(matches!(
        start(&big),
        Err(RtmpError::Chunk(ChunkError::MessageTooLarge { .. }))
    ));
    // A command before connect.
    assert_eq!(
        start(&cmd(3, 0, &[s("publish"), Amf::Number(1.0)])),
        Err(RtmpError::NotConnected("publish".into()))
    );
    // A 2 GiB chunk size.
    let mut set = Vec::new();
    let m = Message {
        type_id: 1,
        stream_id: 0,
        timestamp: 0,
        payload: Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF]),
    };
    chunk::write(&mut set, 2, 128, &m);
    assert_eq!(start(&set), Err(RtmpError::ChunkSize(0x7FFF_FFFF)));
    // Bad AMF.
    let m = Message {
        type_id: 20,
        stream_id: 0,
        timestamp: 0,
        payload: Bytes::from_static(&[0x02, 0, 9, b'x']),
    };
    let mut bad = Vec::new();
    chunk::write(&mut bad, 3, 128, &m);
    assert!(matches!(start(&bad), Err(RtmpError::Amf(_))));
}

// Property tests (bounded: proptest's default 256 cases; a longer run:
// `PROPTEST_CASES=100000 cargo test -p tern-core --lib ingest::rtmp`).
proptest::proptest! {
    /// Any bytes after a good handshake and publish, split anywhere: an error or
    /// events, never a panic, and never more buffered than the caps allow.
    #[test]
    fn any_bytes_after_the_handshake_never_panic(
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
        cut in 0usize..2000,
        accept in proptest::bool::ANY,
    ) {
        let mut sess = RtmpSession::new(T0, RtmpLimits::default(), 1);
        let mut bytes = handshake();
        bytes.extend(connect_and_publish("studio", ""));
        let _ = sess.handle_bytes(T0, &bytes);
        if accept {
            let _ = sess.accept_publish(T0, "ok");
        }
        let cut = cut.min(tail.len());
        for part in [&tail[..cut], &tail[cut..]] {
            if sess.handle_bytes(T0, part).is_err() {
                break;
            }
            while sess.poll_event().is_some() {}
        }
        proptest::prop_assert!(sess.input.len() <= PRE_PUBLISH_MAX_MESSAGE + 4096);
    }

    /// Chunks of messages with any type and payload read back as written, at any
    /// chunk size.
    #[test]
    fn chunked_messages_read_back(
        msgs in proptest::collection::vec(
            (1u8..30, 0u32..5, proptest::num::u32::ANY,
             proptest::collection::vec(proptest::num::u8::ANY, 0..600)),
            1..8,
        ),
        size in 1usize..700,
    ) {
        let mut bytes = Vec::new();
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|(type_id, stream_id, timestamp, p)| Message {
                type_id,
                stream_id,
                timestamp,
                payload: Bytes::from(p),
            })
            .collect();
        for m in &msgs {
            chunk::write(&mut bytes, 5, size, m);
        }
        let mut r = ChunkReader::new(1 << 20);
        r.set_chunk_size(size);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut got = Vec::new();
        loop {
            match r.read(&mut buf) {
                Ok(Step::NeedMore) => break,
                Ok(Step::Chunk) => {}
                Ok(Step::Message(m)) => got.push(m),
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
        proptest::prop_assert_eq!(got, msgs);
    }
}
