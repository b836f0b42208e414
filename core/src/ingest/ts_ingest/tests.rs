//! Tests of the ingest machine: Tern's own TS (from the fake source) in, the same
//! frames out; wraps, jumps, lost packets, B-frame timestamps, garbage.

use super::*;
use crate::fake::{FakeOptions, FakeSource};
use crate::mux::ts::TsMuxer;

fn fake(n: usize) -> (MediaInfo, Vec<Frame>) {
    let mut src = FakeSource::new(&FakeOptions::default(), 1);
    let frames = (0..n).map(|i| src.next_frame(i as u64)).collect();
    (src.media_info(), frames)
}

fn mux(mi: &MediaInfo, frames: &[Frame]) -> Vec<u8> {
    let mut m = TsMuxer::new(mi);
    let mut ts = Vec::new();
    for f in frames {
        m.write_frame(f, &mut ts);
    }
    ts
}

struct Out {
    infos: Vec<Arc<MediaInfo>>,
    frames: Vec<Frame>,
    discontinuities: Vec<DiscontinuityReason>,
}

fn ingest_chunks(ts: &[u8], chunk: usize) -> Out {
    let mut ing = TsIngest::new(1000);
    for (i, c) in ts.chunks(chunk.max(1)).enumerate() {
        ing.handle_bytes(5_000 + i as u64, c);
    }
    ing.handle_end();
    let mut out = Out {
        infos: Vec::new(),
        frames: Vec::new(),
        discontinuities: Vec::new(),
    };
    while let Some(e) = ing.poll_event() {
        match e {
            IngestEvent::MediaInfo(mi) => out.infos.push(mi),
            IngestEvent::Frame(f) => out.frames.push(f),
            IngestEvent::Discontinuity(r) => out.discontinuities.push(r),
            IngestEvent::Ignored(_) => {}
        }
    }
    out
}

fn of_track(frames: &[Frame], track: u8) -> Vec<&Frame> {
    frames.iter().filter(|f| f.track == track).collect()
}

#[test]
fn fake_stream_round_trips() {
    let (mi, frames) = fake(300);
    let ts = mux(&mi, &frames);
    for chunk in [188 * 7, 1000, 65536] {
        let out = ingest_chunks(&ts, chunk);
        assert_eq!(out.infos.len(), 1);
        let got = &out.infos[0];
        assert_eq!(got.tracks.len(), 2);
        let (
            TrackParams::H264 {
                width,
                height,
                sps,
                pps,
                ..
            },
            TrackParams::H264 {
                sps: s0, pps: p0, ..
            },
        ) = (&got.tracks[0].params, &mi.tracks[0].params)
        else {
            panic!("H.264 video");
        };
        assert_eq!((*width, *height), (320, 240));
        assert_eq!((sps, pps), (s0, p0));
        assert_eq!(got.tracks[1].params, mi.tracks[1].params, "AAC config");
        assert!(out.discontinuities.is_empty());
        let (v_in, v_out) = (of_track(&frames, 1), of_track(&out.frames, VIDEO_TRACK));
        assert_eq!(v_in.len(), v_out.len());
        for w in v_in.windows(2).zip(v_out.windows(2)) {
            assert_eq!(w.0[1].dts - w.0[0].dts, w.1[1].dts - w.1[0].dts);
        }
        for (a, b) in v_in.iter().zip(&v_out) {
            assert_eq!(a.payload, b.payload);
            assert_eq!(a.keyframe, b.keyframe);
            assert_eq!(a.pts - a.dts, b.pts - b.dts);
        }
        let (a_in, a_out) = (of_track(&frames, 2), of_track(&out.frames, AUDIO_TRACK));
        assert_eq!(a_in.len(), a_out.len());
        for (a, b) in a_in.iter().zip(&a_out) {
            assert_eq!(a.payload, b.payload);
        }
        // Positions run on by one in one epoch.
        for w in out.frames.windows(2) {
            assert!(w[0].pos.is_followed_by(w[1].pos));
        }
    }
}

#[test]
fn b_frame_offsets_survive() {
    let (mi, mut frames) = fake(100);
    // Pretend reordering: every other video frame presents 2 frames later.
    for (i, f) in frames.iter_mut().filter(|f| f.track == 1).enumerate() {
        if i % 2 == 1 {
            f.pts = f.dts + 7_200;
        }
    }
    let out = ingest_chunks(&mux(&mi, &frames), 1316);
    let v_out = of_track(&out.frames, VIDEO_TRACK);
    let v_in = of_track(&frames, 1);
    for (a, b) in v_in.iter().zip(&v_out) {
        assert_eq!(a.pts - a.dts, b.pts - b.dts);
    }
    assert!(
        v_out.windows(2).all(|w| w[0].dts < w[1].dts),
        "monotonic DTS"
    );
}

#[test]
fn a_33_bit_wrap_is_seamless() {
    let (mi, mut frames) = fake(200);
    // Start 2 s before the 33-bit wrap (the muxer adds its 0.7 s offset).
    let start = (1u64 << 33) - 180_000;
    for f in frames.iter_mut() {
        let ts = mi.track(f.track).map_or(90_000, |t| t.timescale());
        let shift = u64::from(ts) * start / 90_000;
        f.dts += shift;
        f.pts += shift;
    }
    let out = ingest_chunks(&mux(&mi, &frames), 1316);
    assert!(out.discontinuities.is_empty(), "{:?}", out.discontinuities);
    let v = of_track(&out.frames, VIDEO_TRACK);
    assert_eq!(v.len(), of_track(&frames, 1).len());
    assert!(v.windows(2).all(|w| w[1].dts == w[0].dts + 3_600));
}

#[test]
fn a_timestamp_jump_is_a_new_epoch_and_time_goes_on() {
    let (mi, mut frames) = fake(300);
    let half = frames.len() / 2;
    for f in frames[half..].iter_mut() {
        let ts = mi.track(f.track).map_or(90_000, |t| t.timescale());
        let shift = u64::from(ts) * 3600; // an hour later
        f.dts += shift;
        f.pts += shift;
    }
    let out = ingest_chunks(&mux(&mi, &frames), 1316);
    assert!(out
        .discontinuities
        .contains(&DiscontinuityReason::TimestampJump));
    let v = of_track(&out.frames, VIDEO_TRACK);
    assert!(v.windows(2).all(|w| w[0].dts < w[1].dts));
    // No hour-long hole: at most the frames dropped until the next keyframe.
    assert!(v.windows(2).all(|w| w[1].dts - w[0].dts <= 10 * 90_000));
    let epochs: std::collections::BTreeSet<u64> = out.frames.iter().map(|f| f.pos.epoch).collect();
    assert!(epochs.len() >= 2);
    // After the jump, video restarts at a keyframe.
    let first_new = out
        .frames
        .iter()
        .find(|f| f.track == VIDEO_TRACK && f.pos.epoch != 1000)
        .expect("video after the jump");
    assert!(first_new.keyframe);
}

#[test]
fn lost_video_packets_mark_a_discontinuity_and_resume_at_a_keyframe() {
    let (mi, frames) = fake(400);
    let ts = mux(&mi, &frames);
    let packets: Vec<&[u8]> = ts.chunks(188).collect();
    let mut lossy = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i % 97 != 50 {
            lossy.extend_from_slice(p);
        }
    }
    let out = ingest_chunks(&lossy, 1316);
    assert!(out
        .discontinuities
        .contains(&DiscontinuityReason::LostPackets));
    // Every video frame out is one that went in, in order, and each epoch starts
    // with a keyframe.
    let v_in: Vec<&Bytes> = of_track(&frames, 1).iter().map(|f| &f.payload).collect();
    let mut at = 0;
    let mut epoch = None;
    for f in of_track(&out.frames, VIDEO_TRACK) {
        let k = v_in[at..]
            .iter()
            .position(|p| **p == f.payload)
            .expect("a frame that was sent");
        at += k + 1;
        if epoch != Some(f.pos.epoch) {
            assert!(f.keyframe, "an epoch starts at a keyframe");
            epoch = Some(f.pos.epoch);
        }
    }
}

#[test]
fn h265_stream_type_gives_h265_media_info_from_its_parameter_sets() {
    // A keyframe access unit with a real x265 VPS/SPS/PPS (320x240) and a fake slice.
    let vps = [0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00];
    let sps = [
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78, 0x0b, 0x70,
        0x20, 0x20, 0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06, 0x42,
    ];
    let pps = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
    let mut key = Vec::new();
    for nal in [
        &vps[..],
        &sps[..],
        &pps[..],
        &[0x26, 0x01, 0xaf, 0x00, 0x11][..],
    ] {
        key.extend_from_slice(&[0, 0, 0, 1]);
        key.extend_from_slice(nal);
    }
    let mi = MediaInfo {
        tracks: vec![TrackInfo {
            id: 1,
            params: TrackParams::H265 {
                vps: Bytes::copy_from_slice(&vps),
                sps: Bytes::copy_from_slice(&sps),
                pps: Bytes::copy_from_slice(&pps),
                width: 0,
                height: 0,
                fps: 25,
            },
        }],
    };
    let frames: Vec<Frame> = (0..50u64)
        .map(|i| Frame {
            track: 1,
            dts: i * 3_600,
            pts: i * 3_600,
            keyframe: i % 25 == 0,
            capture_ms: 0,
            pos: Position { epoch: 1, seq: i },
            payload: if i % 25 == 0 {
                Bytes::from(key.clone())
            } else {
                Bytes::from_static(&[0, 0, 0, 1, 0x02, 0x01, 0xd0, 0x00])
            },
        })
        .collect();
    let out = ingest_chunks(&mux(&mi, &frames), 1316);
    assert_eq!(out.infos.len(), 1);
    let TrackParams::H265 { width, height, .. } = &out.infos[0].tracks[0].params else {
        panic!("H.265: {:?}", out.infos[0]);
    };
    assert_eq!((*width, *height), (320, 240));
    assert_eq!(out.frames.len(), 50);
    assert_eq!(out.frames.iter().filter(|f| f.keyframe).count(), 2);
}

#[test]
fn keyframes_without_parameter_sets_get_them() {
    let (mi, mut frames) = fake(100);
    let TrackParams::H264 { sps, .. } = &mi.tracks[0].params else {
        panic!("H.264")
    };
    // Strip SPS and PPS from every keyframe but the first.
    let mut first = true;
    for f in frames.iter_mut().filter(|f| f.track == 1 && f.keyframe) {
        if first {
            first = false;
            continue;
        }
        let nals = h26x::nal_units(&f.payload);
        let mut v = Vec::new();
        for n in nals.iter().filter(|n| !matches!(n[0] & 0x1F, 7 | 8)) {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        f.payload = Bytes::from(v);
    }
    let out = ingest_chunks(&mux(&mi, &frames), 1316);
    let keys: Vec<_> = out
        .frames
        .iter()
        .filter(|f| f.track == VIDEO_TRACK && f.keyframe)
        .collect();
    assert!(keys.len() >= 2);
    for k in keys {
        let info = h26x::inspect(VideoCodec::H264, &k.payload);
        assert_eq!(info.sps.as_ref(), Some(sps));
    }
}

#[test]
fn garbage_never_panics_and_nothing_grows() {
    let (mi, frames) = fake(200);
    let ts = mux(&mi, &frames);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let mut v = ts.clone();
        for _ in 0..(round % 50 + 1) {
            let i = (next() as usize) % v.len();
            v[i] = next() as u8;
        }
        let mut ing = TsIngest::new(1);
        for c in v.chunks(1316) {
            ing.handle_bytes(1, c);
            while ing.poll_event().is_some() {}
            assert!(ing.held.len() <= MAX_HELD_FRAMES);
        }
    }
    // Pure junk.
    let mut ing = TsIngest::new(1);
    let junk: Vec<u8> = (0..500_000).map(|_| next() as u8).collect();
    ing.handle_bytes(1, &junk);
    assert!(ing.poll_event().is_none());
}
