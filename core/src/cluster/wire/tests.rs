//! Golden bytes, round trips, tampering and fuzzing of the cluster framing.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::cluster::message::{ArchiveEntry, DvrFacts, StreamAnnounce};
use crate::cluster::ProtocolVersion;
use crate::cluster::ProtocolVersion::{V1, V2, V3};
use crate::media::{Position, TrackInfo, TrackParams};
use crate::{Frame, StreamName};

const KEY: [u8; 32] = [7; 32];

fn media_info() -> Arc<MediaInfo> {
    Arc::new(MediaInfo {
        tracks: vec![
            TrackInfo {
                id: 1,
                params: TrackParams::H264 {
                    sps: Bytes::from_static(&[0x67, 0x42, 0xC0, 0x1E]),
                    pps: Bytes::from_static(&[0x68, 0xCE]),
                    width: 320,
                    height: 240,
                    fps: 25,
                },
            },
            TrackInfo {
                id: 2,
                params: TrackParams::Aac {
                    config: Bytes::from_static(&[0x11, 0x90]),
                    sample_rate: 48_000,
                    channels: 2,
                    frame_samples: 1024,
                },
            },
        ],
    })
}

fn frame() -> Frame {
    Frame {
        track: 1,
        dts: 3600,
        pts: 3600,
        keyframe: true,
        capture_ms: 1_767_225_600_040,
        pos: Position { epoch: 9, seq: 2 },
        payload: Bytes::from_static(&[0, 0, 0, 1, 0x09, 0xF0]),
    }
}

/// One message of each type; `Hello` names `version`.
fn all_messages(version: ProtocolVersion) -> Vec<Message> {
    let mi = media_info();
    vec![
        Message::Hello {
            version: version.number(),
            node: "origin".into(),
        },
        Message::Streams(vec![
            StreamAnnounce {
                name: StreamName::new("cams/yard/3").expect("name"),
                alive: true,
                segment_duration_ms: 2000,
                media_info: Some((*mi).clone()),
                dvr: Some(DvrFacts {
                    depth_secs: 86_400,
                    ranges: vec![(1_767_225_600_000, 60_000)],
                }),
            },
            StreamAnnounce {
                name: StreamName::new("main").expect("name"),
                alive: false,
                segment_duration_ms: 1000,
                media_info: None,
                dvr: None,
            },
        ]),
        Message::MediaInfo(mi.clone()),
        Message::Frame(frame()),
        Message::Segment(crate::Segment {
            media_info: mi,
            utc_start_ms: 1_767_225_600_000,
            duration_ms: 40,
            frames: vec![frame()],
        }),
        Message::Heartbeat {
            utc_ms: 1_767_225_600_500,
        },
        Message::End {
            reason: "stream removed".into(),
        },
        Message::ArchiveEnd { segments: 3 },
        Message::DvrIndex {
            facts: DvrFacts {
                depth_secs: 3600,
                ranges: vec![(1_767_225_600_000, 4000)],
            },
            entries: vec![
                ArchiveEntry {
                    utc_start_ms: 1_767_225_600_000,
                    duration_ms: 2000,
                    discontinuity: false,
                },
                ArchiveEntry {
                    utc_start_ms: 1_767_225_602_000,
                    duration_ms: 2000,
                    discontinuity: true,
                },
            ],
        },
    ]
}

/// A 40 ms segment holding [`frame`] (self-describing: decodes without media info).
fn one_frame_segment() -> crate::Segment {
    crate::Segment {
        media_info: media_info(),
        utc_start_ms: 1_767_225_600_000,
        duration_ms: 40,
        frames: vec![frame()],
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(32)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn golden_bytes() {
    let mut enc = Encoder::new(V1, KEY);
    let mut out = String::new();
    for m in all_messages(V1) {
        let b = enc.encode(&m);
        out.push_str(&format!("# {:?}\n{}\n", m.kind(), hex(&b)));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn round_trip_byte_by_byte() {
    for v in ProtocolVersion::ALL {
        let mut enc = Encoder::new(v, KEY);
        let msgs = all_messages(v);
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| enc.encode(m).to_vec()).collect();
        let mut dec = Decoder::new(v, KEY);
        let mut got = Vec::new();
        for b in bytes {
            dec.handle_bytes(&[b]);
            while let Some(m) = dec.poll_message().expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(dec.buffered(), 0);
    }
}

#[test]
fn tampering_is_detected_and_sticks() {
    for v in ProtocolVersion::ALL {
        let mut enc = Encoder::new(v, KEY);
        let a = enc.encode(&Message::Heartbeat { utc_ms: 1 });
        let b = enc.encode(&Message::Frame(frame()));
        // Flip one payload bit of the second message.
        let mut dec = Decoder::new(v, KEY);
        dec.handle_bytes(&a);
        let mut bad = b.to_vec();
        bad[10] ^= 1;
        dec.handle_bytes(&bad);
        assert!(dec.poll_message().expect("first is fine").is_some());
        assert_eq!(dec.poll_message(), Err(WireError::BadTag { seq: 1 }));
        dec.handle_bytes(&b);
        assert_eq!(
            dec.poll_message(),
            Ok(None),
            "a failed decoder stays closed"
        );

        // A replayed message (right bytes, wrong position) fails too.
        let mut dec = Decoder::new(v, KEY);
        dec.handle_bytes(&a);
        dec.handle_bytes(&a);
        assert!(dec.poll_message().expect("first").is_some());
        assert_eq!(dec.poll_message(), Err(WireError::BadTag { seq: 1 }));

        // Another key (an impostor, or the other direction's key).
        let mut dec = Decoder::new(v, [8; 32]);
        dec.handle_bytes(&a);
        assert_eq!(dec.poll_message(), Err(WireError::BadTag { seq: 0 }));
    }
}

#[test]
fn tampering_is_detected_whichever_way_the_bytes_arrive() {
    for v in ProtocolVersion::ALL {
        // The tag is computed as bytes arrive: an altered byte in a part that was
        // already hashed must fail as surely as one in the last part.
        let seg = one_frame_segment();
        let good = Encoder::new(v, KEY).encode(&Message::Segment(seg)).to_vec();
        for flip in [
            4,
            5,
            10,
            HEADER_LEN + DIGESTED_FROM,
            HEADER_LEN + 1 + DIGESTED_FROM,
            good.len() / 2,
            good.len() - MESSAGE_TAG_LEN - 1,
            good.len() - 1,
        ] {
            for split in [5, 7, 40, 43, 44, flip, flip + 1, good.len() - 1] {
                if split >= good.len() {
                    continue; // all of it in one part: covered by the other splits
                }
                let mut bad = good.clone();
                bad[flip] ^= 0x20;
                let mut dec = Decoder::new(v, KEY);
                dec.handle_bytes(&bad[..split]);
                assert_eq!(dec.poll_message(), Ok(None), "flip {flip} split {split}");
                dec.handle_bytes(&bad[split..]);
                // v3: past the segment's digest, the digest (which the tag covers)
                // is what catches it.
                let body_end = good.len() - MESSAGE_TAG_LEN;
                let want = if v == V3 && flip >= HEADER_LEN + 1 + DIGESTED_FROM && flip < body_end {
                    WireError::BadDigest { seq: 0 }
                } else {
                    WireError::BadTag { seq: 0 }
                };
                assert_eq!(
                    dec.poll_message(),
                    Err(want),
                    "{v} flip {flip} split {split}"
                );
            }
            // The untouched message through the same splits decodes.
            let mut dec = Decoder::new(v, KEY);
            dec.handle_bytes(&good[..flip]);
            assert_eq!(dec.poll_message(), Ok(None));
            dec.handle_bytes(&good[flip..]);
            assert!(dec.poll_message().expect("valid").is_some());
        }
    }
}

#[test]
fn a_message_too_large_for_the_receiver_is_not_sent_and_not_counted() {
    let mut enc = Encoder::new(V1, KEY);
    let mut f = frame();
    f.payload = Bytes::from(vec![0u8; MAX_MESSAGE_LEN]);
    let mut seg = one_frame_segment();
    seg.frames = vec![f];
    let big = Message::Segment(seg);
    assert!(matches!(
        enc.try_encode(&big),
        Err(WireError::TooLarge { .. })
    ));
    let raw = Bytes::from(vec![0u8; MAX_MESSAGE_LEN]);
    assert!(matches!(
        enc.try_encode_raw(crate::cluster::message::kind::SEGMENT, raw),
        Err(WireError::TooLarge { .. })
    ));
    // The next message still decodes: no sequence number was used up.
    let ok = enc
        .try_encode(&Message::Heartbeat { utc_ms: 1 })
        .expect("fits");
    let mut dec = Decoder::new(V1, KEY);
    dec.handle_bytes(&ok);
    assert_eq!(
        dec.poll_message(),
        Ok(Some(Message::Heartbeat { utc_ms: 1 }))
    );
}

#[test]
fn limits_and_protocol_errors() {
    let mut dec = Decoder::new(V1, KEY);
    dec.handle_bytes(&(MAX_MESSAGE_LEN as u32 + 1).to_be_bytes());
    assert!(matches!(
        dec.poll_message(),
        Err(WireError::TooLarge { .. })
    ));

    // A frame before media info, properly tagged, is still refused.
    let mut enc = Encoder::new(V1, KEY);
    let mut dec = Decoder::new(V1, KEY);
    dec.handle_bytes(&enc.encode(&Message::Frame(frame())));
    assert!(matches!(
        dec.poll_message(),
        Err(WireError::Decode { seq: 0, .. })
    ));

    // A newer protocol version is a clear error.
    let mut enc = Encoder::new(V3, KEY);
    let mut dec = Decoder::new(V3, KEY);
    dec.handle_bytes(&enc.encode(&Message::Hello {
        version: 4,
        node: "future".into(),
    }));
    let err = dec.poll_message().expect_err("version 4");
    assert!(
        err.to_string().contains("version 4 is not supported"),
        "{err}"
    );

    // A Hello that names another version than the connection's is refused, even
    // properly tagged.
    for (conn, hello) in [(V1, 2), (V2, 1), (V2, 3), (V3, 2)] {
        let mut enc = Encoder::new(conn, KEY);
        let mut dec = Decoder::new(conn, KEY);
        dec.handle_bytes(&enc.encode(&Message::Hello {
            version: hello,
            node: "n".into(),
        }));
        let err = dec.poll_message().expect_err("mismatch");
        assert!(
            err.to_string()
                .contains(&format!("version {hello} on a connection opened as {conn}")),
            "{err}"
        );
    }
}

#[test]
fn golden_bytes_v2() {
    let mut enc = Encoder::new(V2, KEY);
    let mut out = String::new();
    for m in all_messages(V2) {
        let b = enc.encode(&m);
        out.push_str(&format!("# {:?}\n{}\n", m.kind(), hex(&b)));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn golden_bytes_v3() {
    let mut enc = Encoder::new(V3, KEY);
    let mut out = String::new();
    for m in all_messages(V3) {
        let b = enc.encode(&m);
        out.push_str(&format!("# {:?}\n{}\n", b[HEADER_LEN], hex(&b)));
    }
    insta::assert_snapshot!(out);
}

/// v3: a segment with a digest goes out as `SegmentByDigest`, its tag keyed BLAKE3
/// over seq ‖ len ‖ type ‖ the segment's first 38 bytes (magic, version, flags,
/// digest), recomputed here from the crate; every other message as in v2.
#[test]
fn v3_segment_tags_cover_the_digest_and_the_digest_the_rest() {
    use crate::cluster::message::kind;
    let mut enc = Encoder::new(V3, KEY);
    let mut v2 = Encoder::new(V2, KEY);
    for (seq, m) in all_messages(V3).iter().enumerate() {
        let b = enc.encode(m);
        let body = &b[4..b.len() - MESSAGE_TAG_LEN];
        let covered = if matches!(m, Message::Segment(_)) {
            assert_eq!(body[0], kind::SEGMENT_BY_DIGEST);
            // The payload is the segment's own encoding, digest and all.
            assert_eq!(
                &body[1..],
                &crate::segment_codec::encode(&one_frame_segment())[..]
            );
            &body[..1 + DIGESTED_FROM]
        } else {
            assert_eq!(body[0], m.kind());
            // Other messages: the same bytes as v2 but for the tag (v3's own keys).
            let b2 = v2.encode(m);
            assert_eq!(
                &b2[..b2.len() - MESSAGE_TAG_LEN],
                &b[..b.len() - MESSAGE_TAG_LEN]
            );
            body
        };
        let mut input = (seq as u64).to_be_bytes().to_vec();
        input.extend_from_slice(&b[..4]);
        input.extend_from_slice(covered);
        let want = blake3::keyed_hash(&KEY, &input);
        assert_eq!(&b[b.len() - MESSAGE_TAG_LEN..], &want.as_bytes()[..16]);
    }

    // A stored version 1 segment (no digest) goes out as a plain Segment, its
    // tag over all of it.
    let mut old = crate::segment_codec::encode(&one_frame_segment()).to_vec();
    old.drain(6..DIGESTED_FROM);
    old[4] = crate::segment_codec::VERSION_1;
    let parts = Encoder::new(V3, KEY).encode_raw(kind::SEGMENT, Bytes::from(old.clone()));
    assert_eq!(parts[0][4], kind::SEGMENT);
    let mut dec = Decoder::new(V3, KEY);
    for p in &parts {
        dec.handle_bytes(p);
    }
    assert!(matches!(dec.poll_message(), Ok(Some(Message::Segment(_)))));

    // A SegmentByDigest on a v1 or v2 connection is refused, tag or no tag.
    for v in [V1, V2] {
        let mut b = Encoder::new(v, KEY)
            .encode(&Message::Segment(one_frame_segment()))
            .to_vec();
        b[HEADER_LEN] = kind::SEGMENT_BY_DIGEST;
        let mut dec = Decoder::new(v, KEY);
        dec.handle_bytes(&b);
        let err = dec.poll_message().expect_err("refused");
        assert!(err.to_string().contains("SegmentByDigest on a"), "{err}");
    }

    // Too short to hold a segment header and digest.
    let mut short = 20u32.to_be_bytes().to_vec();
    short.push(kind::SEGMENT_BY_DIGEST);
    let mut dec = Decoder::new(V3, KEY);
    dec.handle_bytes(&short);
    assert!(matches!(
        dec.poll_message(),
        Err(WireError::Decode { seq: 0, .. })
    ));
}

/// v3: a segment altered past its digest, with the digest left as it was, fails
/// the digest; with the digest recomputed to match, fails the tag. Either way
/// the connection closes and nothing of the segment is released.
#[test]
fn v3_an_altered_segment_fails_its_digest_or_its_tag() {
    let good = Encoder::new(V3, KEY)
        .encode(&Message::Segment(one_frame_segment()))
        .to_vec();
    let body_end = good.len() - MESSAGE_TAG_LEN;
    let mut bad = good.clone();
    bad[body_end - 1] ^= 1;
    let mut dec = Decoder::new(V3, KEY);
    dec.handle_bytes(&bad);
    assert_eq!(dec.poll_message(), Err(WireError::BadDigest { seq: 0 }));
    dec.handle_bytes(&good);
    assert_eq!(
        dec.poll_message(),
        Ok(None),
        "a failed decoder stays closed"
    );

    let seg_at = HEADER_LEN + 1;
    let digest = blake3::hash(&bad[seg_at + DIGESTED_FROM..body_end]);
    bad[seg_at + crate::segment_codec::DIGEST_OFFSET..seg_at + DIGESTED_FROM]
        .copy_from_slice(digest.as_bytes());
    let mut dec = Decoder::new(V3, KEY);
    dec.handle_bytes(&bad);
    assert_eq!(dec.poll_message(), Err(WireError::BadTag { seq: 0 }));
}

#[test]
fn v2_tags_are_keyed_blake3() {
    // Tag = BLAKE3 keyed with the session key over seq ‖ len ‖ type ‖ payload,
    // first 16 bytes; recomputed here from the crate, independently of `Tag`.
    let mut enc = Encoder::new(V2, KEY);
    for (seq, m) in all_messages(V2).iter().enumerate() {
        let b = enc.encode(m);
        let body = &b[4..b.len() - MESSAGE_TAG_LEN];
        let mut input = (seq as u64).to_be_bytes().to_vec();
        input.extend_from_slice(&b[..4]);
        input.extend_from_slice(body);
        let want = blake3::keyed_hash(&KEY, &input);
        assert_eq!(&b[b.len() - MESSAGE_TAG_LEN..], &want.as_bytes()[..16]);
    }
}

#[test]
fn a_message_of_one_version_fails_under_the_other() {
    // (v2 and v3 share the tag algorithm: what keeps them apart is their keys,
    // derived under their own labels: `auth`'s tests.)
    for (send, recv) in [(V1, V2), (V2, V1), (V1, V3), (V3, V1)] {
        let mut enc = Encoder::new(send, KEY);
        let mut dec = Decoder::new(recv, KEY);
        dec.handle_bytes(&enc.encode(&Message::Heartbeat { utc_ms: 5 }));
        assert_eq!(dec.poll_message(), Err(WireError::BadTag { seq: 0 }));
    }
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        1u8..=2,
        any::<u32>(),
        0u32..10_000,
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(track, dts, delta, keyframe, capture_ms, epoch, seq, payload)| Frame {
                track,
                dts: u64::from(dts),
                pts: u64::from(dts) + u64::from(delta),
                keyframe,
                capture_ms,
                pos: Position { epoch, seq },
                payload: Bytes::from(payload),
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "[a-z0-9-]{0,20}".prop_map(|node| Message::Hello { version: 1, node }),
        any::<u64>().prop_map(|utc_ms| Message::Heartbeat { utc_ms }),
        any::<u32>().prop_map(|segments| Message::ArchiveEnd { segments }),
        proptest::collection::vec((any::<u64>(), any::<u32>(), any::<bool>()), 0..20).prop_map(
            |v| {
                Message::DvrIndex {
                    facts: DvrFacts {
                        depth_secs: v.len() as u64,
                        ranges: v.iter().map(|e| (e.0, u64::from(e.1))).collect(),
                    },
                    entries: v
                        .into_iter()
                        .map(|(utc_start_ms, duration_ms, discontinuity)| ArchiveEntry {
                            utc_start_ms,
                            duration_ms,
                            discontinuity,
                        })
                        .collect(),
                }
            }
        ),
        ".{0,40}".prop_map(|reason| Message::End { reason }),
        arb_frame().prop_map(Message::Frame),
        (
            proptest::collection::vec(("[a-z]{1,8}(/[a-z0-9]{1,5}){0,2}", any::<bool>()), 0..5),
            any::<u64>()
        )
            .prop_map(|(names, depth)| {
                Message::Streams(
                    names
                        .into_iter()
                        .filter_map(|(n, alive)| {
                            Some(StreamAnnounce {
                                name: StreamName::new(&n).ok()?,
                                alive,
                                segment_duration_ms: 500,
                                media_info: alive.then(|| (*media_info()).clone()),
                                dvr: (!alive).then(|| DvrFacts {
                                    depth_secs: depth,
                                    ranges: vec![(depth, 1)],
                                }),
                            })
                        })
                        .collect(),
                )
            }),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(
        msgs in proptest::collection::vec(arb_message(), 1..8),
        v in 0usize..3,
    ) {
        let v = ProtocolVersion::ALL[v];
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|m| match m {
                Message::Hello { node, .. } => Message::Hello { version: v.number(), node },
                m => m,
            })
            .collect();
        let mut enc = Encoder::new(v, KEY);
        let mut dec = Decoder::new(v, KEY);
        // Media info first, so frames decode.
        dec.handle_bytes(&enc.encode(&Message::MediaInfo(media_info())));
        prop_assert!(dec.poll_message().expect("media info").is_some());
        for m in &msgs {
            dec.handle_bytes(&enc.encode(m));
            let got = dec.poll_message().expect("valid message");
            prop_assert_eq!(got.as_ref(), Some(m));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000), v in 0usize..3) {
        let mut dec = Decoder::new(ProtocolVersion::ALL[v], KEY);
        dec.handle_bytes(&data);
        while let Ok(Some(_)) = dec.poll_message() {}
    }

    #[test]
    fn arbitrary_payloads_never_panic(kind in 0u8..12, data in proptest::collection::vec(any::<u8>(), 0..500)) {
        let mi = media_info();
        let _ = Message::decode(kind, Bytes::from(data), Some(&mi));
    }
}

#[test]
fn raw_segment_framing_equals_encoding_the_message() {
    for v in ProtocolVersion::ALL {
        let seg = one_frame_segment();
        let mut a = Encoder::new(v, KEY);
        let mut b = Encoder::new(v, KEY);
        let whole = a.encode(&Message::Segment(seg.clone()));
        let parts = b.encode_raw(
            crate::cluster::message::kind::SEGMENT,
            crate::segment_codec::encode(&seg),
        );
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(joined, whole.to_vec());
    }
}
