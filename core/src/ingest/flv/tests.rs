//! Tests of the FLV-to-frames conversion with tags as ffmpeg's FLV muxer writes
//! them.

use super::*;
use crate::fake::h264::nal_units;
use crate::fake::h264::{pps, sps, SpsParams};

const NOW: UtcMs = 1_795_000_000_000;

fn params() -> (Vec<u8>, Vec<u8>) {
    let s = sps(&SpsParams {
        width: 320,
        height: 240,
        fps: 25,
        level_idc: 30,
    });
    (s, pps())
}

/// The AVC sequence header tag.
fn avc_header() -> Bytes {
    let (s, p) = params();
    let mut t = vec![0x17, 0, 0, 0, 0, 1, s[1], s[2], s[3], 0xFF, 0xE1];
    t.extend_from_slice(&(s.len() as u16).to_be_bytes());
    t.extend_from_slice(&s);
    t.push(1);
    t.extend_from_slice(&(p.len() as u16).to_be_bytes());
    t.extend_from_slice(&p);
    Bytes::from(t)
}

/// A video tag with NAL units `nals` and composition offset `cts` ms.
fn avc_frame(key: bool, cts: i32, nals: &[&[u8]]) -> Bytes {
    let mut t = vec![if key { 0x17 } else { 0x27 }, 1];
    t.extend_from_slice(&cts.to_be_bytes()[1..]);
    for n in nals {
        t.extend_from_slice(&(n.len() as u32).to_be_bytes());
        t.extend_from_slice(n);
    }
    Bytes::from(t)
}

fn aac_header() -> Bytes {
    Bytes::from_static(&[0xAF, 0, 0x11, 0x90]) // AAC-LC 48 kHz stereo
}

fn aac_frame(b: u8) -> Bytes {
    Bytes::from(vec![0xAF, 1, 0x21, b])
}

fn drain(ing: &mut FlvIngest) -> Vec<FlvEvent> {
    std::iter::from_fn(|| ing.poll_event()).collect()
}

fn frames(ev: &[FlvEvent]) -> Vec<&Frame> {
    ev.iter()
        .filter_map(|e| match e {
            FlvEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn metadata() -> Vec<u8> {
    use crate::ingest::rtmp::amf0::{encode_all, Amf};
    encode_all(&[
        Amf::String("@setDataFrame".into()),
        Amf::String("onMetaData".into()),
        Amf::Object(vec![
            ("videocodecid".into(), Amf::Number(7.0)),
            ("audiocodecid".into(), Amf::Number(10.0)),
        ]),
    ])
}

#[test]
fn h264_and_aac_become_frames_with_media_info() {
    let mut ing = FlvIngest::new(5);
    ing.metadata(&metadata());
    ing.video(0, &avc_header(), NOW);
    assert_eq!(drain(&mut ing), [], "waits for the announced audio");
    ing.audio(0, &aac_header(), NOW);
    let ev = drain(&mut ing);
    let [FlvEvent::MediaInfo(mi)] = &ev[..] else {
        panic!("{ev:?}")
    };
    let names: Vec<&str> = mi.tracks.iter().map(|t| t.codec_name()).collect();
    assert_eq!(names, ["h264", "aac"]);
    assert!(matches!(
        mi.track(VIDEO_TRACK).map(|t| &t.params),
        Some(TrackParams::H264 {
            width: 320,
            height: 240,
            ..
        })
    ));
    assert!(matches!(
        mi.track(AUDIO_TRACK).map(|t| &t.params),
        Some(TrackParams::Aac {
            sample_rate: 48_000,
            channels: 2,
            ..
        })
    ));
    // A P-frame before any keyframe is dropped; the IDR comes with its parameter
    // sets in front and an AUD first; a B-frame source: pts = dts + cts.
    ing.video(0, &avc_frame(false, 0, &[&[0x41, 1]]), NOW);
    ing.video(0, &avc_frame(true, 80, &[&[0x06, 5], &[0x65, 1, 2]]), NOW);
    ing.audio(0, &aac_frame(1), NOW);
    ing.video(40, &avc_frame(false, 120, &[&[0x41, 3]]), NOW + 40);
    ing.audio(21, &aac_frame(2), NOW + 40);
    ing.audio(43, &aac_frame(3), NOW + 40);
    let ev = drain(&mut ing);
    let f = frames(&ev);
    assert_eq!(f.len(), 5);
    let (s, p) = params();
    let types: Vec<u8> = nal_units(&f[0].payload)
        .iter()
        .map(|n| n[0] & 0x1F)
        .collect();
    assert_eq!(types, [9, 7, 8, 6, 5]);
    assert_eq!(nal_units(&f[0].payload)[1], &s[..]);
    assert_eq!(nal_units(&f[0].payload)[2], &p[..]);
    assert!(f[0].keyframe && !f[2].keyframe);
    let v0 = START_MS as u64 * 90;
    assert_eq!((f[0].dts, f[0].pts), (v0, v0 + 80 * 90));
    assert_eq!((f[2].dts, f[2].pts), (v0 + 40 * 90, v0 + 160 * 90));
    // Audio: raw frames; 21 ms and 43 ms are 1008 and 2064 samples, taken as the
    // 1024 and 2048 the frames really are.
    let a0 = START_MS as u64 * 48;
    let audio: Vec<u64> = f
        .iter()
        .filter(|f| f.track == AUDIO_TRACK)
        .map(|f| f.dts)
        .collect();
    assert_eq!(audio, [a0, a0 + 1024, a0 + 2048]);
    assert_eq!(&f[1].payload[..], &[0x21, 1]);
    let pos: Vec<(u64, u64)> = f.iter().map(|f| (f.pos.epoch, f.pos.seq)).collect();
    assert_eq!(pos, [(5, 0), (5, 1), (5, 2), (5, 3), (5, 4)]);
    assert!(f.iter().all(|f| f.capture_ms >= NOW));
}

#[test]
fn timestamps_wrap_and_jump() {
    let mut ing = FlvIngest::new(1);
    ing.video(0, &avc_header(), NOW);
    let idr = avc_frame(true, 0, &[&[0x65, 1]]);
    let p = avc_frame(false, 0, &[&[0x41, 1]]);
    ing.video(u32::MAX - 20, &idr, NOW);
    ing.video(19, &p, NOW + 40); // wrapped: 40 ms later
    let ev = drain(&mut ing);
    let f = frames(&ev);
    assert_eq!(f[1].dts - f[0].dts, 40 * 90);
    // A jump of a minute: a new epoch, from the next keyframe.
    ing.video(60_019, &p, NOW + 80);
    ing.video(60_059, &idr, NOW + 120);
    let ev = drain(&mut ing);
    assert!(matches!(ev[0], FlvEvent::Discontinuity(_)), "{ev:?}");
    let f = frames(&ev);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].pos,
        Position {
            epoch: NOW + 80,
            seq: 0
        }
    );
}

#[test]
fn without_metadata_the_first_frame_sends_what_is_known() {
    let mut ing = FlvIngest::new(1);
    ing.video(0, &avc_header(), NOW);
    ing.video(0, &avc_frame(true, 0, &[&[0x65, 1]]), NOW);
    let ev = drain(&mut ing);
    assert!(matches!(&ev[0], FlvEvent::MediaInfo(mi) if mi.tracks.len() == 1));
    assert_eq!(frames(&ev).len(), 1);
    // Audio joining later: new media info.
    ing.audio(10, &aac_header(), NOW);
    assert!(matches!(&drain(&mut ing)[..], [FlvEvent::MediaInfo(mi)] if mi.tracks.len() == 2));
}

#[test]
fn an_announced_track_that_never_comes_holds_frames_one_second_at_most() {
    let mut ing = FlvIngest::new(1);
    ing.metadata(&metadata());
    ing.video(0, &avc_header(), NOW);
    let mut feed = |i: u32| {
        let key = i == 0;
        let nal: &[u8] = if key { &[0x65, 1] } else { &[0x41, 1] };
        ing.video(i * 40, &avc_frame(key, 0, &[nal]), NOW);
    };
    (0..=25).for_each(&mut feed); // 0 to 1000 ms
    feed(26);
    let ev = drain(&mut ing);
    assert!(
        matches!(&ev[0], FlvEvent::MediaInfo(mi) if mi.tracks.len() == 1),
        "{ev:?}"
    );
    assert_eq!(frames(&ev).len(), 27, "held until 1 s of stream time");
}

#[test]
fn hostile_tags_are_ignored_not_panicked_on() {
    let mut ing = FlvIngest::new(1);
    for tag in [
        &[][..],
        &[0x17],
        &[0x17, 0],
        &[0x17, 0, 0, 0, 0, 1, 2, 3],
        &[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65],
        &[0x12, 0, 0, 0, 0],
        &[0x9C, b'h', b'v', b'c', b'1'],
    ] {
        ing.video(0, &Bytes::copy_from_slice(tag), NOW);
    }
    ing.video(0, &avc_header(), NOW);
    // A NAL length beyond the tag: the frame is dropped.
    ing.video(
        0,
        &Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]),
        NOW,
    );
    for tag in [
        &[][..],
        &[0xAF],
        &[0xAF, 0, 0x10],
        &[0x2F, 1, 2],
        &[0xAF, 1, 7],
    ] {
        ing.audio(0, &Bytes::copy_from_slice(tag), NOW);
    }
    ing.metadata(&[0x11, 0x22]);
    let ev = drain(&mut ing);
    assert!(frames(&ev).is_empty(), "{ev:?}");
    let ignored = ev
        .iter()
        .filter(|e| matches!(e, FlvEvent::Ignored(_)))
        .count();
    assert!(ignored >= 6, "{ev:?}");
    // Each kind is reported once.
    ing.video(0, &Bytes::from_static(&[0x12, 0, 0, 0, 0]), NOW);
    assert_eq!(drain(&mut ing), []);
}

#[test]
fn audio_specific_configs() {
    assert_eq!(parse_asc(&[0x11, 0x90]), Some((48_000, 2)));
    assert_eq!(parse_asc(&[0x12, 0x10]), Some((44_100, 2)));
    assert_eq!(parse_asc(&[0x11]), None);
    // Explicit frequency (index 15): 24 bits.
    assert_eq!(
        parse_asc(&[0x17, 0x80, 0x5D, 0xC0, 0x08]),
        Some((48_000, 1))
    );
}

proptest::proptest! {
    /// Any video, audio and data payloads: frames or nothing, never a panic.
    #[test]
    fn any_tags_never_panic(
        tags in proptest::collection::vec(
            (0u8..3, proptest::num::u32::ANY,
             proptest::collection::vec(proptest::num::u8::ANY, 0..64)),
            0..40,
        )
    ) {
        let mut ing = FlvIngest::new(1);
        ing.video(0, &avc_header(), NOW);
        ing.audio(0, &aac_header(), NOW);
        for (kind, ts, data) in tags {
            let data = Bytes::from(data);
            match kind {
                0 => ing.video(ts, &data, NOW),
                1 => ing.audio(ts, &data, NOW),
                _ => ing.metadata(&data),
            }
            while let Some(ev) = ing.poll_event() {
                if let FlvEvent::Frame(f) = ev {
                    proptest::prop_assert!(f.pts >= f.dts);
                }
            }
        }
    }
}

/// SPS of `ffmpeg -f lavfi -i testsrc=size=320x240 -c:v libx265` (as in h26x's tests).
const X265_SPS: [u8; 43] = [
    0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00,
    0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78, 0x0b, 0x70, 0x20, 0x20,
    0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06, 0x42,
];
const VPS: &[u8] = &[0x40, 0x01, 0x0c];
const HEVC_PPS: &[u8] = &[0x44, 0x01, 0xc1];

/// Enhanced RTMP: `hvc1` SequenceStart with an HEVCDecoderConfigurationRecord.
fn hvc1_header() -> Bytes {
    let mut t = vec![0x90, b'h', b'v', b'c', b'1'];
    let mut rec = vec![1u8; 21];
    rec.push(0xFC | 3); // lengthSizeMinusOne 3
    rec.push(4); // arrays (one of SEI, kept out)
    for (kind, nal) in [
        (32u8, VPS),
        (33, &X265_SPS[..]),
        (34, HEVC_PPS),
        (39, &[0x4e, 1][..]),
    ] {
        rec.push(0x80 | kind);
        rec.extend_from_slice(&1u16.to_be_bytes());
        rec.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        rec.extend_from_slice(nal);
    }
    t.extend_from_slice(&rec);
    Bytes::from(t)
}

/// Enhanced RTMP coded frames: `CodedFrames` (with a composition offset) or
/// `CodedFramesX` (without).
fn hvc1_frame(key: bool, cts: Option<i32>, nals: &[&[u8]]) -> Bytes {
    let frame_type = if key { 0x10 } else { 0x20 };
    let mut t = vec![0x80 | frame_type | if cts.is_some() { 1 } else { 3 }];
    t.extend_from_slice(b"hvc1");
    if let Some(c) = cts {
        t.extend_from_slice(&c.to_be_bytes()[1..]);
    }
    for n in nals {
        t.extend_from_slice(&(n.len() as u32).to_be_bytes());
        t.extend_from_slice(n);
    }
    Bytes::from(t)
}

#[test]
fn h265_in_enhanced_rtmp_becomes_frames() {
    let mut ing = FlvIngest::new(1);
    ing.video(0, &hvc1_header(), NOW);
    ing.video(0, &hvc1_frame(false, None, &[&[0x02, 0x01, 7]]), NOW); // before a keyframe
    ing.video(0, &hvc1_frame(true, Some(40), &[&[0x26, 0x01, 9]]), NOW); // IDR_W_RADL
    ing.video(40, &hvc1_frame(false, None, &[&[0x02, 0x01, 7]]), NOW + 40); // TRAIL_R
    let ev = drain(&mut ing);
    let Some(FlvEvent::MediaInfo(mi)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert!(matches!(
        mi.track(VIDEO_TRACK).map(|t| &t.params),
        Some(TrackParams::H265 {
            width: 320,
            height: 240,
            ..
        })
    ));
    let f = frames(&ev);
    assert_eq!(f.len(), 2);
    let types = |p: &[u8]| -> Vec<u8> { nal_units(p).iter().map(|n| (n[0] >> 1) & 0x3F).collect() };
    // AUD, VPS, SPS, PPS, IDR; then AUD, TRAIL_R.
    assert_eq!(types(&f[0].payload), [35, 32, 33, 34, 19]);
    assert_eq!(types(&f[1].payload), [35, 1]);
    assert!(f[0].keyframe && !f[1].keyframe);
    assert_eq!(f[0].pts - f[0].dts, 40 * 90);
    assert_eq!(f[1].dts - f[0].dts, 40 * 90);
    // AV1 is left out, once.
    ing.video(
        80,
        &Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1', 0]),
        NOW,
    );
    assert!(matches!(&drain(&mut ing)[..], [FlvEvent::Ignored(_)]));
    // H.264 frames while the sequence header said H.265: left out.
    ing.video(80, &avc_frame(true, 0, &[&[0x65, 1]]), NOW);
    assert!(frames(&drain(&mut ing)).is_empty());
}
