//! Tests of the MPEG-TS muxer against a small demuxer written here from the spec.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::fake::{options::FakeOptions, source::FakeSource};
use bytes::Bytes;

use crate::media::TrackInfo;
use crate::segmenter::Segmenter;

/// A parsed TS packet: PID, unit start, CC, adaptation flags and payload.
struct Packet<'a> {
    pid: u16,
    unit_start: bool,
    cc: u8,
    has_payload: bool,
    discontinuity: bool,
    random_access: bool,
    pcr: Option<u64>,
    payload: &'a [u8],
}

fn parse(ts: &[u8]) -> Vec<Packet<'_>> {
    assert_eq!(ts.len() % PACKET_LEN, 0, "whole packets");
    ts.chunks(PACKET_LEN)
        .map(|p| {
            assert_eq!(p[0], 0x47, "sync byte");
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let afc = (p[3] >> 4) & 0x03;
            let mut off = 4;
            let (mut discontinuity, mut random_access, mut pcr) = (false, false, None);
            if afc & 0x02 != 0 {
                let len = p[4] as usize;
                if len > 0 {
                    let f = p[5];
                    discontinuity = f & 0x80 != 0;
                    random_access = f & 0x40 != 0;
                    if f & 0x10 != 0 {
                        let b = &p[6..12];
                        pcr = Some(
                            (u64::from(b[0]) << 25)
                                | (u64::from(b[1]) << 17)
                                | (u64::from(b[2]) << 9)
                                | (u64::from(b[3]) << 1)
                                | u64::from(b[4] >> 7),
                        );
                    }
                }
                off = 5 + len;
            }
            Packet {
                pid,
                unit_start: p[1] & 0x40 != 0,
                cc: p[3] & 0x0F,
                has_payload: afc & 0x01 != 0,
                discontinuity,
                random_access,
                pcr,
                payload: &p[off..],
            }
        })
        .collect()
}

fn read_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] & 0x0E) << 29)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] & 0xFE) << 14)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// A reassembled PES: PTS, DTS and the elementary-stream bytes.
#[derive(Debug)]
struct Pes {
    pts: u64,
    dts: u64,
    data: Vec<u8>,
}

/// Reassembles PES per PID and checks continuity counters along the way (a stream
/// that is continuous across every call, as a player reading segments sees it).
#[derive(Default)]
struct Demux {
    cc: BTreeMap<u16, u8>,
    open: BTreeMap<u16, Vec<u8>>,
    pes: BTreeMap<u16, Vec<Pes>>,
    cc_errors: usize,
    /// Packets with `discontinuity_indicator` set.
    discontinuities: usize,
    tables: usize,
}

impl Demux {
    fn feed(&mut self, ts: &[u8]) {
        for p in parse(ts) {
            // ffmpeg's rule: a packet without payload keeps the counter; a declared
            // discontinuity accepts any value.
            if let Some(&prev) = self.cc.get(&p.pid) {
                let expected = if p.has_payload {
                    (prev + 1) & 0x0F
                } else {
                    prev
                };
                if !p.discontinuity && expected != p.cc {
                    self.cc_errors += 1;
                }
            }
            self.cc.insert(p.pid, p.cc);
            if p.discontinuity {
                self.discontinuities += 1;
            }
            if !p.has_payload {
                continue;
            }
            if p.pid == PAT_PID || p.pid == PMT_PID {
                let pointer = p.payload[0] as usize;
                let s = &p.payload[1 + pointer..];
                let len = ((usize::from(s[1]) & 0x0F) << 8) | usize::from(s[2]);
                assert_eq!(crc32_mpeg2(&s[..3 + len]), 0, "PSI CRC");
                self.tables += 1;
                continue;
            }
            if p.unit_start {
                self.close(p.pid);
            }
            self.open
                .entry(p.pid)
                .or_default()
                .extend_from_slice(p.payload);
        }
    }

    fn close(&mut self, pid: u16) {
        let Some(buf) = self.open.remove(&pid) else {
            return;
        };
        assert_eq!(&buf[..3], &[0, 0, 1], "PES start code");
        let declared = u16::from_be_bytes([buf[4], buf[5]]) as usize;
        let flags = buf[7];
        let hlen = buf[8] as usize;
        let pts = read_ts(&buf[9..14]);
        let dts = if flags & 0x40 != 0 {
            read_ts(&buf[14..19])
        } else {
            pts
        };
        if declared != 0 {
            assert_eq!(declared, buf.len() - 6, "PES_packet_length");
        }
        self.pes.entry(pid).or_default().push(Pes {
            pts,
            dts,
            data: buf[9 + hlen..].to_vec(),
        });
    }

    fn finish(&mut self) {
        let pids: Vec<u16> = self.open.keys().copied().collect();
        for pid in pids {
            self.close(pid);
        }
    }
}

fn segments(n: usize) -> Vec<Segment> {
    let mut src = FakeSource::new(&FakeOptions::default(), 7);
    let mi = Arc::new(src.media_info());
    let mut seg = Segmenter::new(1000, mi);
    let mut out = Vec::new();
    let mut utc = 1_767_225_600_000;
    while out.len() < n {
        utc += 10;
        if let Some(s) = seg.push(src.next_frame(utc)) {
            out.push(s);
        }
    }
    out
}

#[test]
fn segments_round_trip_and_chain_without_continuity_errors() {
    let segs = segments(4);
    let mut demux = Demux::default();
    for s in &segs {
        let ts = mux_segment(s);
        // Every PID's packet count is a multiple of 16.
        let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
        for p in parse(&ts) {
            *counts.entry(p.pid).or_default() += 1;
        }
        for (pid, c) in &counts {
            assert_eq!(c % 16, 0, "pid {pid:#x} has {c} packets");
        }
        demux.feed(&ts);
    }
    demux.finish();
    assert_eq!(demux.cc_errors, 0);
    assert_eq!(demux.tables, 4 * 32);

    let frames: Vec<&Frame> = segs.iter().flat_map(|s| &s.frames).collect();
    let video: Vec<&&Frame> = frames.iter().filter(|f| f.track == 1).collect();
    let audio: Vec<&&Frame> = frames.iter().filter(|f| f.track == 2).collect();
    let vpes = &demux.pes[&0x100];
    let apes = &demux.pes[&0x101];
    assert_eq!(vpes.len(), video.len());
    assert_eq!(apes.len(), audio.len());
    for (p, f) in vpes.iter().zip(&video) {
        assert_eq!(p.data, f.payload.as_ref(), "video payload unchanged");
        assert_eq!(p.dts, f.dts + TS_OFFSET_90K);
        assert_eq!(p.pts, f.pts + TS_OFFSET_90K);
    }
    for (p, f) in apes.iter().zip(&audio) {
        assert_eq!(&p.data[..2], &[0xFF, 0xF1], "ADTS sync");
        let adts_len = ((usize::from(p.data[3]) & 3) << 11)
            | (usize::from(p.data[4]) << 3)
            | (usize::from(p.data[5]) >> 5);
        assert_eq!(adts_len, p.data.len());
        assert_eq!(&p.data[7..], f.payload.as_ref());
        assert_eq!(p.pts, ticks_to_90k(f.pts, 48_000) + TS_OFFSET_90K);
    }
}

#[test]
fn keyframes_are_marked_and_pcr_runs_behind_dts() {
    let segs = segments(1);
    let ts = mux_segment(&segs[0]);
    let packets = parse(&ts);
    let starts: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.pid == 0x100 && p.unit_start)
        .collect();
    let keys: Vec<bool> = segs[0]
        .frames
        .iter()
        .filter(|f| f.track == 1)
        .map(|f| f.keyframe)
        .collect();
    assert_eq!(starts.len(), keys.len());
    assert!(keys[0], "a segment starts with a keyframe");
    for (p, key) in starts.iter().zip(keys) {
        assert_eq!(p.random_access, key);
        let pcr = p.pcr.expect("PCR on every video PES");
        // The video PES header carries PTS only when PTS == DTS.
        let dts = if p.payload[7] & 0x40 != 0 {
            read_ts(&p.payload[14..19])
        } else {
            read_ts(&p.payload[9..14])
        };
        assert_eq!(dts - pcr, TS_OFFSET_90K);
    }
}

#[test]
fn continuous_muxer_carries_counters_and_marks_discontinuity() {
    let segs = segments(2);
    let mut mux = TsMuxer::new(&segs[0].media_info);
    let mut out = Vec::new();
    mux.write_tables(&mut out);
    for f in &segs[0].frames {
        mux.write_frame(f, &mut out);
    }
    let split = out.len();
    mux.mark_discontinuity();
    for f in &segs[1].frames {
        mux.write_frame(f, &mut out);
    }
    let mut demux = Demux::default();
    demux.feed(&out);
    assert_eq!(demux.cc_errors, 0);
    // Tables before the first keyframe of each GOP, beyond the initial ones.
    assert!(demux.tables >= 4);
    let after = parse(&out[split..]);
    for pid in [0x100, 0x101] {
        let first = after
            .iter()
            .find(|p| p.pid == pid)
            .expect("packets after split");
        assert!(first.discontinuity, "pid {pid:#x} marks the discontinuity");
        let later = after.iter().filter(|p| p.pid == pid).nth(1).expect("more");
        assert!(!later.discontinuity);
    }
}

#[test]
fn frames_of_unknown_tracks_are_skipped() {
    let segs = segments(1);
    let mut mux = TsMuxer::new(&segs[0].media_info);
    let mut f = segs[0].frames[0].clone();
    f.track = 9;
    let mut out = Vec::new();
    assert_eq!(mux.write_frame(&f, &mut out), 0);
    assert!(out.is_empty());
}

#[test]
fn padding_spreads_a_short_pes() {
    let mut out = Vec::new();
    let mut cc = 3;
    let data = [0xAAu8; 20];
    let n = write_pes(
        &mut out,
        0x100,
        &mut cc,
        AdaptationFlags::default(),
        &[&data],
        5,
    );
    assert_eq!(n, 5);
    assert_eq!(cc, 8);
    let packets = parse(&out);
    let payload: Vec<u8> = packets.iter().flat_map(|p| p.payload.to_vec()).collect();
    assert_eq!(payload, data);
    // More packets than bytes is impossible: capped at one byte per packet.
    let mut out = Vec::new();
    assert_eq!(
        write_pes(
            &mut out,
            0x100,
            &mut cc,
            AdaptationFlags::default(),
            &[&data[..3]],
            16
        ),
        3
    );
}

#[test]
fn video_pes_declare_their_length_when_it_fits() {
    let segs = segments(1);
    let video = segs[0].media_info.video().map(|t| t.id).expect("video");
    let video_frames = || segs[0].frames.iter().filter(|f| f.track == video);
    // A P frame fits; the fake IDR (I_PCM, 320x240) is over 64 KiB.
    let small = video_frames().find(|f| !f.keyframe).expect("a P frame");
    let big = video_frames().find(|f| f.keyframe).expect("an IDR");
    assert!(big.payload.len() > 65_535);
    for (frame, expect_declared) in [(small, true), (big, false)] {
        let mut mux = TsMuxer::new(&segs[0].media_info);
        let mut out = Vec::new();
        mux.write_frame(frame, &mut out);
        let packets = parse(&out);
        let pes: Vec<u8> = packets
            .iter()
            .filter(|p| p.pid == FIRST_ES_PID)
            .flat_map(|p| p.payload.to_vec())
            .collect();
        let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
        if expect_declared {
            // Everything after the length field: a demuxer can hand the frame on as
            // soon as its last byte arrives.
            assert_eq!(declared, pes.len() - 6);
        } else {
            assert_eq!(declared, 0, "longer than 16 bits: unbounded");
        }
    }
}

// ---- The shared live TS (`mux::live_ts`) ----

use crate::mux::live_ts::{LiveTs, TsChunk};

/// `n` frames of a fake source with epoch `epoch` (1 s GOPs at 25 fps, with audio).
fn live_frames(epoch: u64, n: usize) -> (MediaInfo, Vec<Frame>) {
    let mut src = FakeSource::new(&FakeOptions::default(), epoch);
    let mi = src.media_info();
    let mut utc = 1_767_225_600_000;
    let frames = (0..n)
        .map(|_| {
            utc += 10;
            src.next_frame(utc)
        })
        .collect();
    (mi, frames)
}

/// Pushes `frames` through `live`, appending the chunks it makes to `ts`.
fn mux_into(live: &mut LiveTs, frames: &[Frame], ts: &mut Vec<u8>) {
    for f in frames {
        if let Some(c) = live.push(f) {
            ts.extend_from_slice(&c.data);
        }
    }
}

fn is_video_key(mi: &MediaInfo, f: &Frame) -> bool {
    mi.video().is_some_and(|t| t.id == f.track) && f.keyframe
}

/// The video ES bytes a demuxer gets back from `ts`.
fn video_payloads(ts: &[u8]) -> (Demux, Vec<Vec<u8>>) {
    let mut demux = Demux::default();
    demux.feed(ts);
    demux.finish();
    let video = demux
        .pes
        .get(&FIRST_ES_PID)
        .map_or(Vec::new(), |p| p.iter().map(|p| p.data.clone()).collect());
    (demux, video)
}

fn video_of(mi: &MediaInfo, frames: &[Frame]) -> Vec<Vec<u8>> {
    let id = mi.video().map(|t| t.id);
    frames
        .iter()
        .filter(|f| Some(f.track) == id)
        .map(|f| f.payload.to_vec())
        .collect()
}

#[test]
fn live_ts_viewer_joining_mid_stream_starts_at_the_gop_and_runs_on() {
    let (mi, frames) = live_frames(3, 200);
    let mut live = LiveTs::new(&mi, &[]);
    // Before the first keyframe nothing is muxed (the fake source starts with one).
    assert!(live
        .push(&frames[0])
        .is_some_and(|c| c.keyframe && !c.resync.is_empty()));
    let join = 60;
    for f in &frames[1..join] {
        live.push(f);
    }
    let mut viewer: Vec<u8> = Vec::new();
    for c in live.gop() {
        viewer.extend_from_slice(&c.data);
    }
    let gop_start = frames[..join]
        .iter()
        .rposition(|f| is_video_key(&mi, f))
        .expect("a keyframe before the join");
    assert_eq!(live.gop().len(), join - gop_start);
    mux_into(&mut live, &frames[join..], &mut viewer);
    let (demux, video) = video_payloads(&viewer);
    assert_eq!(demux.cc_errors, 0);
    assert_eq!(demux.discontinuities, 0);
    assert!(demux.tables >= 1, "PAT/PMT before the first keyframe");
    assert_eq!(video, video_of(&mi, &frames[gop_start..]));
    // A muxer primed with the same GOP gives the same chunks.
    let primed = LiveTs::new(&mi, &frames[gop_start..join]);
    let bytes = |cs: &[TsChunk]| cs.iter().map(|c| c.data.clone()).collect::<Vec<_>>();
    assert_eq!(
        bytes(primed.gop()),
        bytes(LiveTs::new(&mi, &frames[..join]).gop())
    );
}

#[test]
fn live_ts_viewer_that_skips_ahead_declares_the_jump() {
    let (mi, frames) = live_frames(4, 200);
    let mut live = LiveTs::new(&mi, &[]);
    let chunks: Vec<TsChunk> = frames.iter().filter_map(|f| live.push(f)).collect();
    assert_eq!(chunks.len(), frames.len());
    // The viewer takes the first 10 chunks, misses the rest of the GOP and the next
    // GOP, and rejoins at the third keyframe.
    let keys: Vec<usize> = (0..chunks.len()).filter(|&i| chunks[i].keyframe).collect();
    assert!(keys.len() >= 3, "{keys:?}");
    let rejoin = keys[2];
    let with = |resync: bool| {
        let mut ts: Vec<u8> = Vec::new();
        for c in &chunks[..10] {
            ts.extend_from_slice(&c.data);
        }
        if resync {
            ts.extend_from_slice(&chunks[rejoin].resync);
        }
        for c in &chunks[rejoin..] {
            ts.extend_from_slice(&c.data);
        }
        ts
    };
    let (demux, video) = video_payloads(&with(true));
    assert_eq!(demux.cc_errors, 0);
    assert_eq!(demux.discontinuities, 4, "PAT, PMT, video and audio");
    let mut expect = video_of(&mi, &frames[..10]);
    expect.extend(video_of(&mi, &frames[rejoin..]));
    assert_eq!(video, expect);
    // Without the resync packets the player would see a continuity error.
    let (demux, _) = video_payloads(&with(false));
    assert!(demux.cc_errors > 0);
}

#[test]
fn live_ts_marks_a_source_restart() {
    let (mi, first) = live_frames(5, 60);
    let (_, second) = live_frames(6, 60);
    let mut live = LiveTs::new(&mi, &[]);
    let mut ts: Vec<u8> = Vec::new();
    mux_into(&mut live, &first, &mut ts);
    mux_into(&mut live, &second, &mut ts);
    let (demux, video) = video_payloads(&ts);
    assert_eq!(demux.cc_errors, 0);
    assert_eq!(
        demux.discontinuities, 2,
        "the first PES of each track after the restart"
    );
    let mut expect = video_of(&mi, &first);
    expect.extend(video_of(&mi, &second));
    assert_eq!(video, expect);
}

#[test]
fn live_ts_waits_for_a_keyframe() {
    let (mi, frames) = live_frames(7, 60);
    let first_p = frames.iter().position(|f| !f.keyframe).expect("a P frame");
    let mut live = LiveTs::new(&mi, &frames[first_p..first_p + 1]);
    assert!(live.gop().is_empty());
    assert!(live.push(&frames[first_p + 1]).is_none());
}

#[test]
fn live_ts_replacing_another_declares_the_jump() {
    let (mi, first) = live_frames(8, 60);
    let (_, second) = live_frames(9, 60);
    let mut old = LiveTs::new(&mi, &[]);
    let mut ts: Vec<u8> = Vec::new();
    mux_into(&mut old, &first, &mut ts);
    let mut new = LiveTs::replacing(&mi);
    mux_into(&mut new, &second, &mut ts);
    let (demux, video) = video_payloads(&ts);
    assert_eq!(demux.cc_errors, 0);
    assert!(demux.discontinuities >= 4, "{}", demux.discontinuities);
    let mut expect = video_of(&mi, &first);
    expect.extend(video_of(&mi, &second));
    assert_eq!(video, expect);
}

#[test]
fn timestamps_from_a_peer_at_the_edge_of_u64_neither_panic_nor_lose_sync() {
    // Peers send timestamps we never chose; the TS counters wrap at 2^33 anyway.
    let (mi, frames) = live_frames(10, 60);
    let seg_mi = Arc::new(mi.clone());
    let mut seg = Segmenter::new(1000, seg_mi);
    let mut live = LiveTs::new(&mi, &[]);
    let mut ts: Vec<u8> = Vec::new();
    let mut closed = Vec::new();
    for mut f in frames {
        // Close enough to u64::MAX that adding the TS offset would overflow.
        f.dts += u64::MAX - 130_000;
        f.pts += u64::MAX - 130_000;
        if let Some(c) = live.push(&f) {
            ts.extend_from_slice(&c.data);
        }
        closed.extend(seg.push(f));
    }
    closed.extend(seg.flush());
    assert!(!closed.is_empty());
    for s in &closed {
        assert_eq!(mux_segment(s).len() % PACKET_LEN, 0);
    }
    let mut demux = Demux::default();
    demux.feed(&ts);
    assert_eq!(demux.cc_errors, 0);
}

/// The stream types a PMT section (in one packet, pointer field 0) declares, by PID.
fn pmt_stream_types(ts: &[u8]) -> Vec<(u16, u8)> {
    let p = parse(ts)
        .into_iter()
        .find(|p| p.pid == PMT_PID && p.unit_start)
        .expect("a PMT packet");
    let s = &p.payload[1..];
    let section_len = (usize::from(s[1] & 0x0F) << 8) | usize::from(s[2]);
    let info_len = (usize::from(s[10] & 0x0F) << 8) | usize::from(s[11]);
    let mut i = 12 + info_len;
    let end = 3 + section_len - 4;
    let mut out = Vec::new();
    while i + 5 <= end {
        let pid = (u16::from(s[i + 1] & 0x1F) << 8) | u16::from(s[i + 2]);
        out.push((pid, s[i]));
        i += 5 + ((usize::from(s[i + 3] & 0x0F) << 8) | usize::from(s[i + 4]));
    }
    out
}

#[test]
fn h265_is_stream_type_0x24_and_pass_through_tracks_are_left_out() {
    use crate::media::{CodecName, TrackKind};
    let seg = &segments(1)[0];
    let mut mi = (*seg.media_info).clone();
    mi.tracks[0].params = TrackParams::H265 {
        vps: Bytes::from_static(&[0x40, 0x01]),
        sps: Bytes::from_static(&[0x42, 0x01]),
        pps: Bytes::from_static(&[0x44, 0x01]),
        width: 320,
        height: 240,
        fps: 25,
    };
    // A G.711 track listed first, so the pass-through track would take a PID if it
    // were not left out.
    mi.tracks.insert(
        0,
        TrackInfo {
            id: 0,
            params: TrackParams::Other {
                kind: TrackKind::Audio,
                codec: CodecName::new("pcm_alaw").expect("valid"),
                timescale: 8000,
                config: Bytes::new(),
            },
        },
    );
    let mut seg = seg.clone();
    let mut g711 = seg.frames[0].clone();
    g711.track = 0;
    seg.frames.insert(1, g711.clone());
    seg.media_info = Arc::new(mi);

    let mux = TsMuxer::new(&seg.media_info);
    assert_eq!(mux.left_out(), &[0]);
    let ts = mux_segment(&seg);
    assert_eq!(
        pmt_stream_types(&ts),
        vec![(0x100, STREAM_TYPE_H265), (0x101, STREAM_TYPE_AAC_ADTS)]
    );
    let mut live = TsMuxer::new(&seg.media_info);
    let mut out = Vec::new();
    assert_eq!(live.write_frame(&g711, &mut out), 0, "G.711 is not muxed");
    // The same frames as H.264 give the same PES bytes: only the PMT differs.
    let mut demux = Demux::default();
    demux.feed(&ts);
    demux.finish();
    assert_eq!(demux.cc_errors, 0);
    let video = demux.pes.get(&0x100).map_or(0, |v| v.len());
    assert_eq!(video, seg.frames.iter().filter(|f| f.track == 1).count());
}
