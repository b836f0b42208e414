//! Tests of the packet layer against Tern's own muxer: any chunking, lost and
//! duplicated packets, garbage, program changes.

use super::*;
use crate::fake::{FakeOptions, FakeSource};
use crate::mux::ts::TsMuxer;
use crate::Frame;

/// A continuous TS of `n` fake frames and the frames.
pub(crate) fn fake_ts(n: usize) -> (Vec<Frame>, Vec<u8>) {
    let mut src = FakeSource::new(&FakeOptions::default(), 1);
    let mut mux = TsMuxer::new(&src.media_info());
    let mut ts = Vec::new();
    let frames: Vec<Frame> = (0..n).map(|i| src.next_frame(i as u64)).collect();
    for f in &frames {
        mux.write_frame(f, &mut ts);
    }
    (frames, ts)
}

fn all_events(d: &mut TsDemuxer) -> Vec<DemuxEvent> {
    std::iter::from_fn(|| d.poll()).collect()
}

fn pes_of(events: &[DemuxEvent]) -> Vec<&Pes> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Pes(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn every_frame_comes_out_whatever_the_chunking() {
    let (frames, ts) = fake_ts(200);
    let mut whole = TsDemuxer::new();
    whole.push(&ts);
    whole.flush();
    let reference = all_events(&mut whole);
    let program = reference.iter().find_map(|e| match e {
        DemuxEvent::Program(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        program,
        Some(vec![
            EsInfo {
                pid: 0x100,
                stream_type: 0x1B
            },
            EsInfo {
                pid: 0x101,
                stream_type: 0x0F
            }
        ])
    );
    let pes = pes_of(&reference);
    assert_eq!(pes.len(), frames.len());
    let video: Vec<_> = frames.iter().filter(|f| f.track == 1).collect();
    let vpes: Vec<_> = pes.iter().filter(|p| p.pid == 0x100).collect();
    assert_eq!(video.len(), vpes.len());
    for (f, p) in video.iter().zip(&vpes) {
        assert_eq!(f.payload, p.data);
        assert!(!p.lost_before && !p.timebase_jump);
    }
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..20 {
        let mut d = TsDemuxer::new();
        let mut rest = &ts[..];
        while !rest.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = ((x % 1500) as usize + 1).min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
        }
        d.flush();
        assert_eq!(all_events(&mut d), reference);
        assert_eq!(d.stats().continuity_errors, 0);
        assert_eq!(d.stats().skipped_bytes, 0);
    }
}

#[test]
fn a_lost_packet_drops_its_pes_and_marks_the_next() {
    let (_, ts) = fake_ts(100);
    let packets: Vec<&[u8]> = ts.chunks(PACKET_LEN).collect();
    // Lose the 2nd packet of a multi-packet video PES.
    let k = (0..packets.len() - 1)
        .find(|&i| {
            let p = packets[i];
            let q = packets[i + 1];
            let pid = |p: &[u8]| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            pid(p) == 0x100 && p[1] & 0x40 != 0 && pid(q) == 0x100 && q[1] & 0x40 == 0
        })
        .expect("a multi-packet PES");
    let mut d = TsDemuxer::new();
    for (i, p) in packets.iter().enumerate() {
        if i != k + 1 {
            d.push(p);
        }
    }
    d.flush();
    let events = all_events(&mut d);
    let mut whole = TsDemuxer::new();
    whole.push(&ts);
    whole.flush();
    let reference = all_events(&mut whole);
    let video = |e: &[DemuxEvent]| pes_of(e).into_iter().filter(|p| p.pid == 0x100).count();
    assert_eq!(video(&events), video(&reference) - 1);
    assert_eq!(d.stats().continuity_errors, 1);
    assert_eq!(d.stats().dropped_pes, 1);
    let marked: Vec<_> = pes_of(&events)
        .into_iter()
        .filter(|p| p.lost_before)
        .collect();
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].pid, 0x100);
}

#[test]
fn a_duplicate_packet_is_dropped() {
    let (_, ts) = fake_ts(30);
    let packets: Vec<&[u8]> = ts.chunks(PACKET_LEN).collect();
    let mut d = TsDemuxer::new();
    for p in &packets {
        d.push(p);
        d.push(p);
    }
    d.flush();
    let mut whole = TsDemuxer::new();
    whole.push(&ts);
    whole.flush();
    assert_eq!(all_events(&mut d), all_events(&mut whole));
    assert!(d.stats().duplicates > 0);
    assert_eq!(d.stats().continuity_errors, 0);
}

#[test]
fn garbage_between_packets_is_skipped() {
    let (_, ts) = fake_ts(60);
    let mut noisy = Vec::new();
    for (i, p) in ts.chunks(PACKET_LEN).enumerate() {
        if i % 7 == 3 {
            noisy.extend_from_slice(&[0x47, 0x00, 0x47, 0x12, 0x99]);
        }
        noisy.extend_from_slice(p);
    }
    let mut d = TsDemuxer::new();
    d.push(&noisy);
    d.flush();
    let mut whole = TsDemuxer::new();
    whole.push(&ts);
    whole.flush();
    assert_eq!(all_events(&mut d), all_events(&mut whole));
    assert!(d.stats().skipped_bytes > 0);
}

#[test]
fn a_changed_pmt_is_a_new_program() {
    let (_, a) = fake_ts(30);
    // The same stream without audio: the PMT loses a stream.
    let mut src = FakeSource::new(&FakeOptions::default(), 1);
    let mut mi = src.media_info();
    mi.tracks.retain(|t| t.is_video());
    let mut mux = TsMuxer::new(&mi);
    let mut b = Vec::new();
    for i in 0..30 {
        mux.write_frame(&src.next_frame(i), &mut b);
    }
    let mut d = TsDemuxer::new();
    d.push(&a);
    d.push(&b);
    d.flush();
    let programs: Vec<_> = all_events(&mut d)
        .into_iter()
        .filter_map(|e| match e {
            DemuxEvent::Program(p) => Some(p.len()),
            _ => None,
        })
        .collect();
    assert_eq!(programs, vec![2, 1]);
}

#[test]
fn random_bytes_and_damaged_streams_never_panic_and_stay_bounded() {
    let (_, ts) = fake_ts(120);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        let mut v = ts.clone();
        for _ in 0..(round % 40 + 1) {
            let i = (next() as usize) % v.len();
            v[i] = next() as u8;
        }
        let mut d = TsDemuxer::new();
        let mut rest = &v[..];
        while !rest.is_empty() {
            let n = ((next() % 400) as usize + 1).min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            while d.poll().is_some() {}
        }
        d.flush();
        while d.poll().is_some() {}
        assert!(d.partial.len() < PACKET_LEN);
    }
    let junk: Vec<u8> = (0..200_000).map(|_| next() as u8).collect();
    let mut d = TsDemuxer::new();
    d.push(&junk);
    assert!(d.poll().is_none() || d.stats().packets > 0);
}
