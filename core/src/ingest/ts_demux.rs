//! MPEG-TS demuxer (ISO 13818-1), packet layer: bytes in any chunking → the program's
//! elementary streams (from PAT and PMT) and their PES packets, with timestamps.
//!
//! Owns: packet sync, PAT/PMT sections (CRC checked, version changes), PES assembly per
//! PID, continuity counters (a duplicate packet is dropped; a gap drops the PES being
//! assembled and marks the next one `lost_before`), the `discontinuity_indicator`
//! (marks the next PES `timebase_jump`), and bounds on every buffer.
//!
//! Must not: look inside the elementary streams (that is `access_units`), unwrap or
//! judge timestamps (that is `crate::timeline`), read clocks or do I/O. Bad input is
//! counted in [`DemuxStats`] and never panics.
//!
//! Choices: the first program of the PAT is demuxed, others are ignored; PCR is not
//! used (timestamps come from PTS/DTS, which carry the same clock).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::mux::crc32::crc32_mpeg2;

pub const PACKET_LEN: usize = 188;
const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1FFF;
/// Largest PES accepted (a 4K intra frame fits many times); a longer one is dropped.
pub const MAX_PES_BYTES: usize = 8 << 20;
/// Largest PSI section (ISO 13818-1 caps PAT and PMT at 1021 bytes after the length).
const MAX_SECTION_BYTES: usize = 1024;
/// Most elementary streams taken from one PMT; the rest are ignored.
pub const MAX_ES: usize = 16;

/// One elementary stream the PMT declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EsInfo {
    pub pid: u16,
    pub stream_type: u8,
}

/// A whole PES packet of one elementary stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pes {
    pub pid: u16,
    pub stream_type: u8,
    /// 33-bit PTS as sent (90 kHz), if present.
    pub pts: Option<u64>,
    /// 33-bit DTS as sent; `None` when equal to the PTS.
    pub dts: Option<u64>,
    /// The PES payload (the elementary-stream bytes).
    pub data: Bytes,
    /// The sender declared a discontinuity (`discontinuity_indicator`) since the
    /// previous PES of this PID: timestamps may jump.
    pub timebase_jump: bool,
    /// Packets of this PID were lost (or damaged) since the previous PES.
    pub lost_before: bool,
}

/// What the demuxer hands out, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DemuxEvent {
    /// A new or changed program: its elementary streams, in PMT order.
    Program(Vec<EsInfo>),
    Pes(Pes),
}

/// Counters of what went wrong (and right) in the input, for logs and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    pub packets: u64,
    /// Bytes skipped to find the next sync byte.
    pub skipped_bytes: u64,
    pub continuity_errors: u64,
    /// Duplicate packets dropped (same counter twice, as ISO 13818-1 allows once).
    pub duplicates: u64,
    /// Sections with a bad CRC or layout.
    pub bad_sections: u64,
    /// PES packets dropped: lost packets inside, too long, or not a PES.
    pub dropped_pes: u64,
    pub program_changes: u64,
}

#[derive(Default)]
struct SectionBuf {
    data: Vec<u8>,
}

struct PesBuf {
    data: Vec<u8>,
    /// `PES_packet_length` + 6 when declared: the PES ends when this many bytes are in.
    expected: Option<usize>,
}

struct EsState {
    info: EsInfo,
    pes: Option<PesBuf>,
    /// The PES being assembled lost a packet: dropped at its end.
    broken: bool,
    timebase_jump: bool,
    lost: bool,
}

/// The packet-layer demuxer. Feed bytes with [`TsDemuxer::push`], then drain
/// [`TsDemuxer::poll`] until `None`.
#[derive(Default)]
pub struct TsDemuxer {
    partial: Vec<u8>,
    pmt_pid: Option<u16>,
    sections: BTreeMap<u16, SectionBuf>,
    /// The current program's streams by PID.
    es: BTreeMap<u16, EsState>,
    program: Vec<EsInfo>,
    /// Last packet per PID (PAT, PMT and elementary streams): its continuity
    /// counter, and the packet itself to recognise a duplicate.
    cc: BTreeMap<u16, Box<[u8; PACKET_LEN]>>,
    out: VecDeque<DemuxEvent>,
    stats: DemuxStats,
}

impl TsDemuxer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Feeds bytes (any chunking: UDP datagrams, HTTP body pieces).
    pub fn push(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let need = PACKET_LEN - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < PACKET_LEN {
                return;
            }
            let packet = std::mem::take(&mut self.partial);
            self.packet(&packet);
        }
        while !data.is_empty() {
            if data[0] != SYNC {
                let skip = data.iter().position(|&b| b == SYNC).unwrap_or(data.len());
                self.stats.skipped_bytes += skip as u64;
                data = &data[skip..];
                continue;
            }
            if data.len() < PACKET_LEN {
                self.partial.extend_from_slice(data);
                return;
            }
            // A sync byte inside garbage: trust it only if the next packet (when we
            // can see it) also starts with one.
            if data.len() > PACKET_LEN && data[PACKET_LEN] != SYNC {
                self.stats.skipped_bytes += 1;
                data = &data[1..];
                continue;
            }
            self.packet(&data[..PACKET_LEN]);
            data = &data[PACKET_LEN..];
        }
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<DemuxEvent> {
        self.out.pop_front()
    }

    /// Hands out every PES still being assembled (the input ended).
    pub fn flush(&mut self) {
        let pids: Vec<u16> = self.es.keys().copied().collect();
        for pid in pids {
            self.finish_pes(pid);
        }
    }

    fn packet(&mut self, p: &[u8]) {
        self.stats.packets += 1;
        let tei = p[1] & 0x80 != 0;
        let unit_start = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0F;
        if pid == NULL_PID {
            return;
        }
        let known = pid == PAT_PID || Some(pid) == self.pmt_pid || self.es.contains_key(&pid);
        if !known {
            return;
        }
        if tei || afc == 0 {
            // Damaged (transport_error_indicator) or reserved: treat as lost.
            self.lose(pid);
            return;
        }
        let mut off = 4;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > PACKET_LEN {
                self.lose(pid);
                return;
            }
            if len > 0 {
                discontinuity = p[5] & 0x80 != 0;
            }
            off = 5 + len;
        }
        let has_payload = afc & 0x01 != 0;
        // Continuity: a packet without payload keeps the counter; the same packet
        // again is a duplicate; a declared discontinuity accepts any counter.
        if let Some(last) = self.cc.get(&pid) {
            let prev = last[3] & 0x0F;
            if has_payload && !discontinuity {
                if cc == prev && last[..] == p[..] {
                    self.stats.duplicates += 1;
                    return;
                }
                if cc != (prev + 1) & 0x0F {
                    self.stats.continuity_errors += 1;
                    self.lose(pid);
                }
            }
        }
        match self.cc.get_mut(&pid) {
            Some(last) => last.copy_from_slice(p),
            None => {
                let mut last = Box::new([0u8; PACKET_LEN]);
                last.copy_from_slice(p);
                self.cc.insert(pid, last);
            }
        }
        if discontinuity {
            if let Some(es) = self.es.get_mut(&pid) {
                es.timebase_jump = true;
            }
        }
        if !has_payload {
            return;
        }
        let payload = &p[off..];
        if pid == PAT_PID || Some(pid) == self.pmt_pid {
            self.psi(pid, unit_start, payload);
        } else {
            self.es_payload(pid, unit_start, payload);
        }
    }

    /// Packets of `pid` were lost: the section or PES being assembled is dropped.
    fn lose(&mut self, pid: u16) {
        if let Some(es) = self.es.get_mut(&pid) {
            es.lost = true;
            if es.pes.is_some() {
                es.broken = true;
            }
        } else {
            self.sections.remove(&pid);
        }
    }

    fn psi(&mut self, pid: u16, unit_start: bool, payload: &[u8]) {
        if unit_start {
            let Some((&pointer, rest)) = payload.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            // Bytes before the pointer end the previous section.
            if let Some(buf) = self.sections.get_mut(&pid) {
                let tail = &rest[..pointer.min(rest.len())];
                buf.data.extend_from_slice(tail);
                self.try_section(pid);
            }
            let Some(start) = rest.get(pointer..) else {
                self.stats.bad_sections += 1;
                return;
            };
            self.sections.insert(
                pid,
                SectionBuf {
                    data: start.to_vec(),
                },
            );
            self.try_section(pid);
        } else if let Some(buf) = self.sections.get_mut(&pid) {
            buf.data.extend_from_slice(payload);
            self.try_section(pid);
        }
    }

    /// Parses the section of `pid` if it is complete; drops it if it cannot be one.
    fn try_section(&mut self, pid: u16) {
        let Some(buf) = self.sections.get(&pid) else {
            return;
        };
        let d = &buf.data;
        if d.first() == Some(&0xFF) {
            self.sections.remove(&pid); // stuffing after the last section
            return;
        }
        if d.len() < 3 {
            return;
        }
        let len = 3 + ((usize::from(d[1] & 0x0F) << 8) | usize::from(d[2]));
        if !(3 + 9..=MAX_SECTION_BYTES).contains(&len) {
            self.stats.bad_sections += 1;
            self.sections.remove(&pid);
            return;
        }
        if d.len() < len {
            return;
        }
        let section = d[..len].to_vec();
        self.sections.remove(&pid);
        if crc32_mpeg2(&section) != 0 {
            self.stats.bad_sections += 1;
            return;
        }
        // Only current sections (current_next_indicator) count.
        if section[5] & 0x01 == 0 {
            return;
        }
        match (pid, section[0]) {
            (PAT_PID, 0x00) => self.pat(&section),
            (_, 0x02) if Some(pid) == self.pmt_pid => self.pmt(&section),
            _ => {}
        }
    }

    fn pat(&mut self, s: &[u8]) {
        let body = &s[8..s.len() - 4];
        let pmt = body.chunks_exact(4).find_map(|e| {
            let program = u16::from_be_bytes([e[0], e[1]]);
            (program != 0).then(|| (u16::from(e[2] & 0x1F) << 8) | u16::from(e[3]))
        });
        if pmt != self.pmt_pid {
            if let Some(old) = self.pmt_pid {
                self.sections.remove(&old);
                self.cc.remove(&old);
            }
            self.pmt_pid = pmt;
        }
    }

    fn pmt(&mut self, s: &[u8]) {
        let end = s.len() - 4;
        let info_len = (usize::from(s[10] & 0x0F) << 8) | usize::from(s[11]);
        let mut i = 12 + info_len;
        let mut streams = Vec::new();
        while i + 5 <= end {
            let stream_type = s[i];
            let pid = (u16::from(s[i + 1] & 0x1F) << 8) | u16::from(s[i + 2]);
            let es_info = (usize::from(s[i + 3] & 0x0F) << 8) | usize::from(s[i + 4]);
            if streams.len() < MAX_ES
                && pid != PAT_PID
                && pid != NULL_PID
                && Some(pid) != self.pmt_pid
                && !streams.iter().any(|e: &EsInfo| e.pid == pid)
            {
                streams.push(EsInfo { pid, stream_type });
            }
            i += 5 + es_info;
        }
        if streams == self.program {
            return;
        }
        // A changed program: finish what the kept streams had, forget the others.
        let pids: Vec<u16> = self.es.keys().copied().collect();
        for pid in pids {
            let kept = streams
                .iter()
                .any(|e| e.pid == pid && Some(e.stream_type) == self.es_type(pid));
            if !kept {
                self.finish_pes(pid);
                self.es.remove(&pid);
                self.cc.remove(&pid);
            }
        }
        for e in &streams {
            self.es.entry(e.pid).or_insert(EsState {
                info: *e,
                pes: None,
                broken: false,
                timebase_jump: false,
                lost: false,
            });
        }
        self.stats.program_changes += 1;
        self.program = streams.clone();
        self.out.push_back(DemuxEvent::Program(streams));
    }

    fn es_type(&self, pid: u16) -> Option<u8> {
        self.es.get(&pid).map(|e| e.info.stream_type)
    }

    fn es_payload(&mut self, pid: u16, unit_start: bool, payload: &[u8]) {
        if unit_start {
            self.finish_pes(pid);
            let Some(es) = self.es.get_mut(&pid) else {
                return;
            };
            es.broken = false;
            es.pes = Some(PesBuf {
                data: payload.to_vec(),
                expected: None,
            });
        } else {
            let Some(es) = self.es.get_mut(&pid) else {
                return;
            };
            let Some(pes) = &mut es.pes else {
                return; // the middle of a PES whose start we did not see
            };
            if pes.data.len() + payload.len() > MAX_PES_BYTES {
                es.broken = true;
                pes.data.clear();
            } else if !es.broken {
                pes.data.extend_from_slice(payload);
            }
        }
        // A PES that declared its length ends when that many bytes are in.
        let done = self.es.get_mut(&pid).and_then(|es| {
            let pes = es.pes.as_mut()?;
            if pes.expected.is_none() && pes.data.len() >= 6 {
                let declared = usize::from(u16::from_be_bytes([pes.data[4], pes.data[5]]));
                pes.expected = (declared > 0).then_some(declared + 6);
            }
            Some(pes.expected.is_some_and(|n| pes.data.len() >= n))
        });
        if done == Some(true) {
            self.finish_pes(pid);
        }
    }

    fn finish_pes(&mut self, pid: u16) {
        let Some(es) = self.es.get_mut(&pid) else {
            return;
        };
        let Some(mut buf) = es.pes.take() else {
            return;
        };
        if es.broken {
            es.broken = false;
            self.stats.dropped_pes += 1;
            return;
        }
        if let Some(n) = buf.expected {
            buf.data.truncate(n);
        }
        let Some((pts, dts, start)) = parse_pes_header(&buf.data) else {
            self.stats.dropped_pes += 1;
            es.lost = true;
            return;
        };
        let data = Bytes::from(buf.data).slice(start..);
        let pes = Pes {
            pid,
            stream_type: es.info.stream_type,
            pts,
            dts,
            data,
            timebase_jump: std::mem::take(&mut es.timebase_jump),
            lost_before: std::mem::take(&mut es.lost),
        };
        self.out.push_back(DemuxEvent::Pes(pes));
    }
}

/// PTS, DTS and where the payload starts; `None` if this is not a PES with a header.
fn parse_pes_header(d: &[u8]) -> Option<(Option<u64>, Option<u64>, usize)> {
    if d.len() < 9 || d[..3] != [0, 0, 1] {
        return None;
    }
    let stream_id = d[3];
    // Streams without the optional header (padding, private 2, ECM/EMM, ...).
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return Some((None, None, 6));
    }
    if d[6] & 0xC0 != 0x80 {
        return None;
    }
    let flags = d[7] >> 6;
    let header_len = usize::from(d[8]);
    let start = 9 + header_len;
    if d.len() < start {
        return None;
    }
    let pts = if flags & 0b10 != 0 && header_len >= 5 {
        Some(read_timestamp(&d[9..14]))
    } else {
        None
    };
    let dts = if flags == 0b11 && header_len >= 10 {
        Some(read_timestamp(&d[14..19]))
    } else {
        None
    };
    Some((pts, dts, start))
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

#[cfg(test)]
mod tests;
