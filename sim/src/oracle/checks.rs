//! The oracles, one function each, over what the observers recorded and the run's
//! fault windows (the list and the bounds are at the top of `oracle/mod.rs`).
//!
//! Owns: the judgement. Must not: relax a bound to make a run pass.

use std::collections::BTreeMap;
use std::time::Duration;

use tern_core::fake::barcode;
use tern_core::Position;

use crate::faults::{fmt_ms, Window};
use crate::LINK_LATENCY;

use super::*;

pub(super) fn check_protocol(o: &Observation, log: &Log, v: &mut Vec<Violation>) {
    for (at, what) in &log.protocol {
        v.push(violation(o, "protocol", *at, what.clone()));
    }
}

pub(super) fn check_order(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let mut max_seq: BTreeMap<u64, u64> = BTreeMap::new();
    let mut prev: Option<&SeenFrame> = None;
    // The connection of the previous frame, and whether that connection has gone past
    // its `from` yet.
    let mut conn = 0;
    let mut past_from = true;
    for f in &log.frames {
        if f.conn != conn {
            conn = f.conn;
            past_from = false;
        }
        let from = log
            .conns
            .iter()
            .find(|c| c.index == f.conn)
            .and_then(|c| c.from);
        let resent =
            !past_from && from.is_some_and(|p| p.epoch == f.pos.epoch && f.pos.seq <= p.seq);
        if !resent {
            past_from = true;
        }
        if resent {
            fig.resent += 1;
            continue;
        }
        if let Some(&m) = max_seq.get(&f.pos.epoch) {
            if f.pos.seq <= m {
                v.push(violation(
                    o,
                    "order",
                    f.at_ms,
                    format!(
                        "frame {} (track {}, captured {}) arrived after frame {}.{} of the \
                         same epoch: duplicate or out of order (connection {})",
                        pos(f.pos),
                        f.track,
                        fmt_ms(f.capture_ms),
                        f.pos.epoch,
                        m,
                        f.conn
                    ),
                ));
            }
        }
        if let Some(p) = prev {
            let follows = p.pos.epoch == f.pos.epoch && p.pos.seq.checked_add(1) == Some(f.pos.seq);
            if !follows {
                match faults.between(p.at_ms, f.at_ms) {
                    Some(_) => fig.gaps += 1,
                    None => v.push(violation(
                        o,
                        "gap",
                        f.at_ms,
                        format!(
                            "frame {} follows frame {} (arrived {}) with no fault in between",
                            pos(f.pos),
                            pos(p.pos),
                            fmt_ms(p.at_ms)
                        ),
                    )),
                }
            }
        }
        let m = max_seq.entry(f.pos.epoch).or_insert(f.pos.seq);
        *m = (*m).max(f.pos.seq);
        prev = Some(f);
    }
}

pub(super) fn check_barcodes(o: &Observation, log: &Log, v: &mut Vec<Violation>) {
    barcode_violations(o.name(), &log.frames, v);
}

/// The **barcode** oracle over `frames`, reported as seen by `who`.
pub(crate) fn barcode_violations(who: &str, frames: &[SeenFrame], v: &mut Vec<Violation>) {
    let o = who;
    for f in frames.iter().filter(|f| f.video) {
        let Some(b) = f.barcode else {
            v.push(violation(
                o,
                "barcode",
                f.at_ms,
                format!("video frame {} carries no barcode", pos(f.pos)),
            ));
            continue;
        };
        let (index, low) = barcode::split(b);
        if low != f.capture_utc_ms as u32 {
            v.push(violation(
                o,
                "barcode",
                f.at_ms,
                format!(
                    "video frame {} says captured at {} but its barcode (index {index}) says \
                     {low} (low 32 bits of UTC ms; frame's: {})",
                    pos(f.pos),
                    fmt_ms(f.capture_ms),
                    f.capture_utc_ms as u32
                ),
            ));
        }
        if let Some(c) = f.cadence {
            let want = c.video_seq(index);
            if want != f.pos.seq {
                v.push(violation(
                    o,
                    "barcode",
                    f.at_ms,
                    format!(
                        "video frame {} carries barcode index {index}, which belongs at \
                         sequence {want}",
                        pos(f.pos)
                    ),
                ));
            }
        }
    }
}

fn conn_start(log: &Log, conn: u32) -> u64 {
    log.conns
        .iter()
        .find(|c| c.index == conn)
        .map_or(0, |c| c.at_ms)
}

pub(super) fn check_latency(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let bound = o.spec.bound_ms();
    for f in log.frames.iter().filter(|f| !f.in_segment) {
        if f.capture_ms < conn_start(log, f.conn) || faults.exempt(f.capture_ms, bound) {
            continue;
        }
        let latency = f.at_ms.saturating_sub(f.capture_ms);
        fig.checked_latency += 1;
        fig.max_latency_ms = Some(fig.max_latency_ms.unwrap_or(0).max(latency));
        if latency > bound {
            v.push(violation(
                o,
                "latency",
                f.at_ms,
                format!(
                    "frame {} (track {}) captured at {} arrived after {latency} ms, more than \
                     {} hops × ({} ms link + {} ms) = {bound} ms",
                    pos(f.pos),
                    f.track,
                    fmt_ms(f.capture_ms),
                    o.spec.hops,
                    LINK_LATENCY.as_millis(),
                    HOP_SLACK.as_millis()
                ),
            ));
        }
    }
}

pub(super) fn check_segment_latency(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let bound = o.spec.bound_ms();
    for (i, s) in log.segments.iter().enumerate() {
        let next = log.segments.get(i + 1).filter(|n| {
            n.first.epoch == s.last.epoch && s.last.seq.checked_add(1) == Some(n.first.seq)
        });
        let close = next.map_or(s.start_ms + u64::from(s.duration_ms), |n| n.start_ms);
        if close < conn_start(log, s.conn) || faults.exempt(close, bound) {
            continue;
        }
        let latency = s.at_ms.saturating_sub(close);
        fig.checked_latency += 1;
        fig.max_latency_ms = Some(fig.max_latency_ms.unwrap_or(0).max(latency));
        if latency > bound {
            v.push(violation(
                o,
                "segment latency",
                s.at_ms,
                format!(
                    "segment {}..{} ({} frames) closed on the origin at {} arrived after \
                     {latency} ms, more than {} hops × ({} ms link + {} ms) = {bound} ms",
                    pos(s.first),
                    pos(s.last),
                    s.frames,
                    fmt_ms(close),
                    o.spec.hops,
                    LINK_LATENCY.as_millis(),
                    HOP_SLACK.as_millis()
                ),
            ));
        }
    }
}

pub(super) fn check_recovery(
    o: &Observation,
    log: &Log,
    windows: &[Window],
    end_ms: u64,
    v: &mut Vec<Violation>,
    fig: &mut Figures,
) {
    let start = o.spec.start.as_millis() as u64;
    for (i, w) in windows.iter().enumerate() {
        let settled = w.settled_ms();
        let next_start = windows
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.start_ms >= w.start_ms)
            .map(|(_, n)| n.start_ms)
            .min();
        if w.end_ms < start || settled > end_ms {
            continue;
        }
        let first = log.frames.iter().find(|f| f.capture_ms >= w.end_ms);
        // When the next fault starts within the bound, the bound cannot be checked;
        // a recovery seen before that fault still counts.
        if let Some(n) = next_start.filter(|n| *n <= settled) {
            if first.is_none_or(|f| f.at_ms > n) {
                continue;
            }
        }
        fig.recoveries += 1;
        if let Some(f) = first {
            let took = f.at_ms.saturating_sub(w.end_ms);
            fig.max_recovery_ms = Some(fig.max_recovery_ms.unwrap_or(0).max(took));
        }
        match first {
            Some(f) if f.at_ms <= settled => {}
            other => v.push(violation(
                o,
                "recovery",
                settled,
                format!(
                    "after {} ended at {}, no frame captured since reached the observer \
                     within {} ms{}",
                    w.what,
                    fmt_ms(w.end_ms),
                    w.recovery.as_millis(),
                    match other {
                        Some(f) => format!(
                            "; the first was {} captured at {}, arrived at {}",
                            pos(f.pos),
                            fmt_ms(f.capture_ms),
                            fmt_ms(f.at_ms)
                        ),
                        None => "; none arrived before the run ended".to_owned(),
                    }
                ),
            )),
        }
    }
}

pub(super) fn check_stall(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    end_ms: u64,
    limit: Duration,
    v: &mut Vec<Violation>,
) {
    let limit = limit.as_millis() as u64;
    // Arrival times, with the first connection's start as the first mark and the end
    // of the run as the last.
    let Some(first) = log.conns.first() else {
        return;
    };
    let mut marks: Vec<u64> = vec![first.at_ms];
    let mut last_seg = None;
    for f in &log.frames {
        // A segment's frames arrive together: one mark.
        if f.in_segment {
            if last_seg == Some(f.at_ms) {
                continue;
            }
            last_seg = Some(f.at_ms);
        }
        marks.push(f.at_ms);
    }
    marks.push(end_ms);
    for w in marks.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.saturating_sub(a) > limit && faults.between(a, b).is_none() {
            v.push(violation(
                o,
                "stall",
                a + limit,
                format!(
                    "nothing arrived from {} to {} ({} ms, limit {limit} ms) with no fault \
                     in between",
                    fmt_ms(a),
                    fmt_ms(b),
                    b - a
                ),
            ));
        }
    }
}

pub(super) fn check_connections(
    o: &Observation,
    log: &Log,
    faults: &Faults<'_>,
    end_ms: u64,
    v: &mut Vec<Violation>,
) {
    let start = o.spec.start.as_millis() as u64;
    for c in &log.conns {
        if let (Some(at), Some(reason)) = (c.ended_ms, &c.end_reason) {
            if at <= end_ms && faults.between(at, at).is_none() {
                v.push(violation(
                    o,
                    "connection",
                    at,
                    format!(
                        "connection {} (opened at {}) lost with no fault: {reason}",
                        c.index,
                        fmt_ms(c.at_ms)
                    ),
                ));
            }
        }
    }
    for (at, e) in &log.refusals {
        // The very first attempts may race the node's own start (a stream a `source`
        // has not discovered yet): allow a second after the observer starts.
        if *at > start + 1000 && faults.between(*at, *at).is_none() {
            v.push(violation(
                o,
                "connection",
                *at,
                format!("refused with no fault: {e}"),
            ));
        }
    }
}

pub(super) fn check_integrity(observations: &[Observation], v: &mut Vec<Violation>) {
    let mut seen: BTreeMap<Position, (u64, String)> = BTreeMap::new();
    for o in observations {
        for f in &o.log().frames {
            match seen.get(&f.pos) {
                Some((d, who)) if *d != f.digest => v.push(violation(
                    o,
                    "integrity",
                    f.at_ms,
                    format!(
                        "frame {} differs from the frame {} saw at that position",
                        pos(f.pos),
                        who
                    ),
                )),
                Some(_) => {}
                None => {
                    seen.insert(f.pos, (f.digest, o.name().to_owned()));
                }
            }
        }
    }
}

/// The **same segments** oracle: every M4F segment `b` saw that starts at the same
/// frame as one `a` saw must be that segment (last frame, start, duration, frame
/// count). Returns the violations and how many segments were compared.
pub fn check_same_segments(a: &Observation, b: &Observation) -> (Vec<Violation>, usize) {
    let theirs = a.log().segments.clone();
    let mut v = Vec::new();
    let mut compared = 0;
    for s in &b.log().segments {
        let Some(t) = theirs.iter().find(|t| t.first == s.first) else {
            continue;
        };
        compared += 1;
        let key = |x: &SeenSegment| (x.last, x.start_ms, x.duration_ms, x.frames);
        if key(s) != key(t) {
            v.push(violation(
                b,
                "same segments",
                s.at_ms,
                format!(
                    "segment from {}: to {}, start {}, {} ms, {} frames; {} saw it end at {}, \
                     start {}, {} ms, {} frames",
                    pos(s.first),
                    pos(s.last),
                    fmt_ms(s.start_ms),
                    s.duration_ms,
                    s.frames,
                    a.name(),
                    pos(t.last),
                    fmt_ms(t.start_ms),
                    t.duration_ms,
                    t.frames
                ),
            ));
        }
    }
    (v, compared)
}
