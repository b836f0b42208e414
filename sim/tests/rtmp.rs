//! RTMP publishing on simulated time: a scripted publisher host speaks RTMP to a node's
//! `rtmp` port over turmoil TCP (core's chunk writer and AMF0, FLV tags made from the
//! fake source's frames), so core's `RtmpSession` and `FlvIngest` run inside the
//! simulation with the node's real listener. Checks the stream plays (API, HLS), a
//! wrong password and a second publisher are refused, and a client stalled in the
//! handshake is cut at the handshake timeout.
//!
//! Owns: this scenario and its scripted publisher. Must not: test RTMP parsing
//! details (core's unit tests do) or depend on real time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tern_core::fake::h264::nal_units;
use tern_core::fake::{FakeOptions, FakeSource};
use tern_core::ingest::rtmp::amf0::{decode_all, encode_all, Amf};
use tern_core::ingest::rtmp::chunk::{self, ChunkReader, Message, Step};
use tern_core::{TrackKind, TrackParams};
use tern_net::{Net, TurmoilNet};
use tern_sim::{add_node, builder, http_get, sim_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORIGIN: &str = "http 8888;\nrtmp 1935;\n\
    stream cam {\n  input publish://?password=pw;\n}\n\
    stream other {\n  input fake://fake;\n}\n";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn s(v: &str) -> Amf {
    Amf::String(v.into())
}

fn message(type_id: u8, stream_id: u32, timestamp: u32, payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let m = Message {
        type_id,
        stream_id,
        timestamp,
        payload: Bytes::from(payload),
    };
    chunk::write(&mut out, if type_id == 20 { 3 } else { 6 }, 128, &m);
    out
}

/// A publisher's connection after `publish`: the stream and the status code the
/// server answered with.
struct Publisher {
    stream: <TurmoilNet as Net>::Stream,
    code: String,
}

/// Handshake, `connect` to `app`, `createStream`, `publish` `key`; reads until the
/// server's `onStatus`.
async fn publisher(app: &str, key: &str) -> Res<Publisher> {
    let mut stream = TurmoilNet.connect("origin", 1935).await?;
    let mut hello = vec![3u8];
    hello.extend(std::iter::repeat_n(7u8, 1536));
    stream.write_all(&hello).await?;
    let mut s012 = vec![0u8; 1 + 2 * 1536];
    stream.read_exact(&mut s012).await?;
    assert_eq!(s012[0], 3);
    assert_eq!(&s012[1537..], &hello[1..], "S2 echoes C1");
    let mut out = s012[1..1537].to_vec(); // C2 echoes S1
    let connect = Amf::Object(vec![("app".into(), s(app))]);
    out.extend(message(
        20,
        0,
        0,
        encode_all(&[s("connect"), Amf::Number(1.0), connect]),
    ));
    out.extend(message(
        20,
        0,
        0,
        encode_all(&[s("createStream"), Amf::Number(2.0), Amf::Null]),
    ));
    let publish = [s("publish"), Amf::Number(3.0), Amf::Null, s(key), s("live")];
    out.extend(message(20, 1, 0, encode_all(&publish)));
    stream.write_all(&out).await?;
    let mut reader = ChunkReader::new(1 << 20);
    let mut buf = BytesMut::new();
    loop {
        match reader.read(&mut buf)? {
            Step::Message(m) if m.type_id == 1 => {
                let p = &m.payload;
                reader.set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize);
            }
            Step::Message(m) if m.type_id == 20 => {
                let v = decode_all(&m.payload)?;
                if v.first().and_then(Amf::as_str) == Some("onStatus") {
                    let code = v
                        .get(3)
                        .and_then(|i| i.get("code"))
                        .and_then(Amf::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    return Ok(Publisher { stream, code });
                }
            }
            Step::Message(_) | Step::Chunk => {}
            Step::NeedMore => {
                let mut tmp = [0u8; 4096];
                let n = stream.read(&mut tmp).await?;
                if n == 0 {
                    return Err("closed before onStatus".into());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
        }
    }
}

/// Publishes the fake source for `seconds` of simulated time, paced as it is due.
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time: the publisher's pacing
async fn publish_fake(p: &mut Publisher, seconds: u64) -> Res<u64> {
    let mut src = FakeSource::new(&FakeOptions::default(), 1);
    let mi = src.media_info();
    let mut headers = Vec::new();
    for t in &mi.tracks {
        match &t.params {
            TrackParams::H264 { sps, pps, .. } => {
                let mut rec = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
                rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
                rec.extend_from_slice(sps);
                rec.push(1);
                rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
                rec.extend_from_slice(pps);
                headers.extend(message(9, 1, 0, rec));
            }
            TrackParams::Aac { config, .. } => {
                let mut tag = vec![0xAF, 0];
                tag.extend_from_slice(config);
                headers.extend(message(8, 1, 0, tag));
            }
            _ => {}
        }
    }
    p.stream.write_all(&headers).await?;
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    while src.next_due() < Duration::from_secs(seconds) {
        tokio::time::sleep_until(start + src.next_due()).await;
        let f = src.next_frame(tern_sim::SIM_EPOCH_MS + sim_ms());
        let video = mi
            .track(f.track)
            .is_some_and(|t| t.kind() == TrackKind::Video);
        let (type_id, ms, tag) = if video {
            let mut tag = vec![if f.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            for nal in nal_units(&f.payload) {
                if nal[0] & 0x1F != 9 {
                    tag.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    tag.extend_from_slice(nal);
                }
            }
            (9, f.dts / 90, tag)
        } else {
            let mut tag = vec![0xAF, 1];
            tag.extend_from_slice(&f.payload);
            (8, f.dts * 1000 / 48_000, tag)
        };
        p.stream
            .write_all(&message(type_id, 1, ms as u32, tag))
            .await?;
        sent += 1;
    }
    Ok(sent)
}

#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn a_publisher_plays_and_bad_clients_are_refused_on_simulated_time() {
    let mut sim = builder(1, Duration::from_secs(60)).build();
    add_node(&mut sim, "origin", ORIGIN);
    sim.client("encoder", async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut p = publisher("cam", "pw").await?;
        assert_eq!(p.code, "NetStream.Publish.Start");
        let sent = publish_fake(&mut p, 12).await?;
        println!("publisher: {sent} frames published over 12 simulated seconds");
        Ok(())
    });
    sim.client("intruders", async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A wrong password (the stream key form), a second publisher, a stream that
        // takes none.
        assert_eq!(
            publisher("cam", "nope").await?.code,
            "NetStream.Publish.BadName"
        );
        assert_eq!(
            publisher("live", "cam?password=pw").await?.code,
            "NetStream.Publish.BadName"
        );
        assert_eq!(
            publisher("other", "").await?.code,
            "NetStream.Publish.BadName"
        );
        // Stalled in the handshake: cut at the handshake timeout (10 s).
        let mut stalled = TurmoilNet.connect("origin", 1935).await?;
        stalled.write_all(&[3u8; 100]).await?;
        let from = sim_ms();
        let mut b = [0u8; 16];
        let n = stalled.read(&mut b).await.unwrap_or(0);
        let cut_after = sim_ms() - from;
        assert_eq!(n, 0, "stalled client got bytes");
        println!("stalled handshake cut after {cut_after} simulated ms");
        assert!(
            (9_900..10_200).contains(&cut_after),
            "cut after {cut_after} ms"
        );
        Ok(())
    });
    sim.client("player", async {
        tokio::time::sleep(Duration::from_secs(9)).await;
        let (status, body) = http_get("origin", 8888, "/streamer/api/v3/streams/cam").await?;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(v["stats"]["alive"], true, "{v}");
        let tracks = v["stats"]["media_info"]["tracks"].to_string();
        assert!(
            tracks.contains("\"h264\"") && tracks.contains("\"aac\"") && tracks.contains("320"),
            "{v}"
        );
        let (status, body) = http_get("origin", 8888, "/cam/tracks-v1a1/mono.m3u8").await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{text}");
        let segs = text.lines().filter(|l| l.ends_with(".ts")).count();
        assert!(segs >= 3, "{text}");
        println!("at 9 s: alive, {segs} HLS segments listed");
        // After the publisher stops (12 s) and `source_timeout` (3 s): not alive.
        tokio::time::sleep(Duration::from_secs(9)).await;
        let (_, body) = http_get("origin", 8888, "/streamer/api/v3/streams/cam").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(v["stats"]["alive"], false, "{v}");
        Ok(())
    });
    sim.run().expect("simulation");
}
