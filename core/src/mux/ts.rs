//! MPEG-TS muxer (ISO 13818-1) for H.264, H.265 and AAC. Pass-through tracks
//! ([`TrackParams::Other`]) are left out (see [`TsMuxer::left_out`]).
//!
//! Owns: PAT/PMT, PES packetisation, PCR, continuity counters, the discontinuity and
//! random-access indicators. One [`TsMuxer`] is one continuous transport stream: its
//! continuity counters carry across every frame it writes, so the live `/NAME/mpegts`
//! output uses one muxer per viewer for the whole response.
//!
//! Must not: reorder frames or touch the elementary streams (H.264 goes out as the
//! Annex B access unit it came in as; AAC gets only its ADTS header).
//!
//! Fixed choices (most are the ones ffmpeg makes): PMT on PID 0x1000, the first video
//! track on PID 0x100, further tracks on 0x101, 0x102…; program number 1; PCR on the
//! video PID (or the first track if there is no video). Unlike ffmpeg, a video PES
//! carries its `PES_packet_length` when it fits in 16 bits (0, unbounded, beyond): a
//! demuxer then hands a frame on when its last byte arrives, not when the next PES
//! starts, which saves a frame of live latency (121 → 81 ms median at 25 fps through
//! ffmpeg). PTS/DTS are the frames' timestamps in 90 kHz plus [`TS_OFFSET_90K`] so
//! that the PCR, which follows the DTS, can run ahead of decoding without going
//! negative; all wrap at 2^33.

use crate::media::{ticks_to_90k, Frame, MediaInfo, TrackParams};
use crate::mux::adts::{AdtsParams, ADTS_HEADER_LEN};
use crate::mux::crc32::crc32_mpeg2;
use crate::Segment;

pub const PACKET_LEN: usize = 188;
const PAYLOAD_LEN: usize = PACKET_LEN - 4;
pub const PAT_PID: u16 = 0x0000;
pub const PMT_PID: u16 = 0x1000;
pub const FIRST_ES_PID: u16 = 0x0100;
/// How far PTS/DTS run ahead of the PCR: 0.7 s, ffmpeg's default `muxdelay`.
pub const TS_OFFSET_90K: u64 = 63_000;
const TS_WRAP: u64 = 1 << 33;

const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_TYPE_H265: u8 = 0x24;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;

/// One elementary stream of the program.
#[derive(Clone, Debug)]
struct EsTrack {
    track: u8,
    pid: u16,
    stream_type: u8,
    /// `Some` for audio: how to build the ADTS header.
    adts: Option<AdtsParams>,
    timescale: u32,
    cc: u8,
    /// The next packet on this PID carries `discontinuity_indicator`.
    discontinuity: bool,
}

/// Fields of a packet's adaptation field, beyond stuffing.
#[derive(Clone, Copy, Debug, Default)]
struct AdaptationFlags {
    discontinuity: bool,
    random_access: bool,
    pcr_90k: Option<u64>,
}

impl AdaptationFlags {
    fn any(&self) -> bool {
        self.discontinuity || self.random_access || self.pcr_90k.is_some()
    }

    /// Bytes the adaptation field needs for these flags, including its length byte;
    /// 0 if no field is needed.
    fn len(&self) -> usize {
        if self.any() {
            2 + if self.pcr_90k.is_some() { 6 } else { 0 }
        } else {
            0
        }
    }
}

/// A continuous MPEG-TS writer for one program.
#[derive(Clone, Debug)]
pub struct TsMuxer {
    tracks: Vec<EsTrack>,
    pcr_pid: u16,
    pat_cc: u8,
    pmt_cc: u8,
    pat: Vec<u8>,
    pmt: Vec<u8>,
    /// Repeat PAT/PMT before every video keyframe (the live output does; segments
    /// place their tables themselves).
    tables_on_keyframe: bool,
    /// Tracks of the media info this program cannot carry.
    left_out: Vec<u8>,
}

impl TsMuxer {
    /// A muxer for the tracks of `media_info`. Frames of tracks not listed there are
    /// skipped by [`TsMuxer::write_frame`].
    pub fn new(media_info: &MediaInfo) -> Self {
        let mut tracks: Vec<EsTrack> = Vec::new();
        let mut left_out = Vec::new();
        // Video first so it gets 0x100, as players and analysers expect.
        let mut ordered: Vec<_> = media_info.tracks.iter().collect();
        ordered.sort_by_key(|t| (!t.is_video(), t.id));
        for t in ordered {
            let (stream_type, adts) = match &t.params {
                TrackParams::H264 { .. } => (STREAM_TYPE_H264, None),
                TrackParams::H265 { .. } => (STREAM_TYPE_H265, None),
                p @ TrackParams::Aac { .. } => match AdtsParams::from_track(p) {
                    Some(a) => (STREAM_TYPE_AAC_ADTS, Some(a)),
                    None => {
                        left_out.push(t.id); // an AAC layout ADTS cannot describe
                        continue;
                    }
                },
                TrackParams::Other { .. } => {
                    left_out.push(t.id);
                    continue;
                }
            };
            tracks.push(EsTrack {
                track: t.id,
                pid: FIRST_ES_PID + tracks.len() as u16,
                stream_type,
                adts,
                timescale: t.timescale(),
                cc: 0,
                discontinuity: false,
            });
        }
        let pcr_pid = tracks.first().map_or(0x1FFF, |t| t.pid);
        let pat = pat_section();
        let pmt = pmt_section(pcr_pid, &tracks);
        Self {
            tracks,
            pcr_pid,
            pat_cc: 0,
            pmt_cc: 0,
            pat,
            pmt,
            tables_on_keyframe: true,
            left_out,
        }
    }

    /// Track ids of the media info this muxer leaves out (pass-through codecs, AAC
    /// that ADTS cannot describe): the caller warns about them once.
    pub fn left_out(&self) -> &[u8] {
        &self.left_out
    }

    /// Writes one PAT and one PMT packet.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        write_psi(out, PAT_PID, &mut self.pat_cc, &self.pat);
        write_psi(out, PMT_PID, &mut self.pmt_cc, &self.pmt);
    }

    /// Marks the next packet of every elementary stream with the discontinuity
    /// indicator: the source restarted and timestamps jump.
    pub fn mark_discontinuity(&mut self) {
        for t in &mut self.tracks {
            t.discontinuity = true;
        }
    }

    /// PIDs this muxer writes: PAT, PMT and one per elementary stream.
    pub fn pid_count(&self) -> usize {
        2 + self.tracks.len()
    }

    /// Writes, for every PID, one packet with an adaptation field only, the
    /// `discontinuity_indicator` set and the counter of the packet last written on
    /// that PID (a packet without payload does not advance it). Sent before the next
    /// packets of this muxer by a reader that missed some, it declares the jump in
    /// counters (and in time) instead of leaving the player a continuity error.
    pub fn write_resync(&self, out: &mut Vec<u8>) {
        let last = |cc: u8| cc.wrapping_sub(1) & 0x0F;
        let flags = AdaptationFlags {
            discontinuity: true,
            ..AdaptationFlags::default()
        };
        let pids = [(PAT_PID, self.pat_cc), (PMT_PID, self.pmt_cc)]
            .into_iter()
            .chain(self.tracks.iter().map(|t| (t.pid, t.cc)));
        for (pid, cc) in pids {
            write_packet_header(out, pid, false, last(cc), flags, 0);
        }
    }

    /// Writes one frame as one PES. Returns the number of TS packets written (0 if the
    /// frame's track is not in the program or the frame cannot be carried).
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> usize {
        self.write_frame_padded(frame, out, 0)
    }

    /// Packets [`TsMuxer::write_frame`] would use for `frame` right now.
    fn packets_for(&self, frame: &Frame) -> usize {
        let Some(i) = self.track_index(frame.track) else {
            return 0;
        };
        let Some(pes) = self.pes_header(i, frame) else {
            return 0;
        };
        let flags = self.first_flags(i, frame);
        let len =
            pes.len() + frame.payload.len() + self.tracks[i].adts.map_or(0, |_| ADTS_HEADER_LEN);
        natural_packets(len, flags.len())
    }

    /// Like `write_frame`, but spreads the PES over at least `min_packets` packets
    /// (using adaptation-field stuffing), as far as its length allows.
    fn write_frame_padded(
        &mut self,
        frame: &Frame,
        out: &mut Vec<u8>,
        min_packets: usize,
    ) -> usize {
        let Some(i) = self.track_index(frame.track) else {
            return 0;
        };
        let Some(header) = self.pes_header(i, frame) else {
            return 0;
        };
        let is_video_key = self.tracks[i].adts.is_none() && frame.keyframe;
        if is_video_key && self.tables_on_keyframe {
            self.write_tables(out);
        }
        let flags = self.first_flags(i, frame);
        let adts = match self.tracks[i].adts {
            Some(a) => match a.header(frame.payload.len()) {
                Some(h) => Some(h),
                None => return 0,
            },
            None => None,
        };
        let parts: [&[u8]; 3] = [
            &header,
            adts.as_ref().map_or(&[][..], |h| &h[..]),
            &frame.payload,
        ];
        let track = &mut self.tracks[i];
        track.discontinuity = false;
        write_pes(out, track.pid, &mut track.cc, flags, &parts, min_packets)
    }

    fn track_index(&self, track: u8) -> Option<usize> {
        self.tracks.iter().position(|t| t.track == track)
    }

    fn first_flags(&self, i: usize, frame: &Frame) -> AdaptationFlags {
        let t = &self.tracks[i];
        AdaptationFlags {
            discontinuity: t.discontinuity,
            random_access: frame.keyframe && t.adts.is_none(),
            pcr_90k: (t.pid == self.pcr_pid)
                .then(|| ticks_to_90k(frame.dts, t.timescale) % TS_WRAP),
        }
    }

    /// The PES header of `frame` on track `i`; `None` if an audio PES would exceed the
    /// 16-bit PES length.
    fn pes_header(&self, i: usize, frame: &Frame) -> Option<Vec<u8>> {
        let t = &self.tracks[i];
        let pts = (ticks_to_90k(frame.pts, t.timescale) % TS_WRAP + TS_OFFSET_90K) % TS_WRAP;
        let dts = (ticks_to_90k(frame.dts, t.timescale) % TS_WRAP + TS_OFFSET_90K) % TS_WRAP;
        let mut h = Vec::with_capacity(19);
        if t.adts.is_some() {
            let len = 3 + 5 + ADTS_HEADER_LEN + frame.payload.len();
            let len = u16::try_from(len).ok()?;
            h.extend_from_slice(&[0x00, 0x00, 0x01, 0xC0]);
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[0x80, 0x80, 5]);
            put_timestamp(&mut h, 0b0010, pts);
        } else {
            // A bounded PES lets a demuxer hand the frame on as soon as its last byte
            // is in, instead of waiting for the next PES to start (a frame of
            // latency); frames too long for 16 bits stay unbounded (0).
            let header_data = if pts != dts { 10 } else { 5 };
            let len = u16::try_from(3 + header_data + frame.payload.len()).unwrap_or(0);
            h.extend_from_slice(&[0x00, 0x00, 0x01, 0xE0]);
            h.extend_from_slice(&len.to_be_bytes());
            if pts != dts {
                h.extend_from_slice(&[0x80, 0xC0, 10]);
                put_timestamp(&mut h, 0b0011, pts);
                put_timestamp(&mut h, 0b0001, dts);
            } else {
                h.extend_from_slice(&[0x80, 0x80, 5]);
                put_timestamp(&mut h, 0b0010, pts);
            }
        }
        Some(h)
    }
}

/// Muxes a closed segment into a standalone MPEG-TS file.
///
/// The continuity rule: every PID of the file carries a multiple of 16 packets, so
/// each PID's counter ends where it started (at 0) and any segment can follow any
/// other — which is what a player that reads the segments as one transport stream
/// sees — without a continuity error. PAT and PMT are written 16 times, spread evenly
/// over the segment (also meeting the "PAT at least every 0.5 s" rule of ETSI TR 101
/// 290 for segments up to 8 s); the last PES of each elementary stream is spread over
/// as many extra packets as its PID needs. If that PES is too short to spread (fewer
/// bytes than packets), the counters of the next segment do not line up; the fake
/// source and any real H.264/AAC frame are long enough.
pub fn mux_segment(segment: &Segment) -> Vec<u8> {
    let mut mux = TsMuxer::new(&segment.media_info);
    mux.tables_on_keyframe = false;

    // Plan: packets per PID without padding, and the last frame of each PID.
    let mut counts = vec![0usize; mux.tracks.len()];
    let mut last = vec![None; mux.tracks.len()];
    for (n, f) in segment.frames.iter().enumerate() {
        if let Some(i) = mux.track_index(f.track) {
            // Only the first PES of a PID may carry the discontinuity flag; here no
            // flag is set, so the plan matches what is written.
            counts[i] += mux.packets_for(f);
            last[i] = Some(n);
        }
    }

    let frames = segment.frames.len();
    let mut out = Vec::with_capacity(segment.payload_bytes() + frames * 2 * PACKET_LEN);
    const TABLE_REPEATS: usize = 16;
    let mut tables_written = 0;
    for (n, f) in segment.frames.iter().enumerate() {
        // Table k goes before frame k * frames / 16.
        while tables_written < TABLE_REPEATS && tables_written * frames <= n * TABLE_REPEATS {
            mux.write_tables(&mut out);
            tables_written += 1;
        }
        let min = match mux.track_index(f.track) {
            Some(i) if last[i] == Some(n) => {
                let natural = mux.packets_for(f);
                natural + (16 - counts[i] % 16) % 16
            }
            _ => 0,
        };
        mux.write_frame_padded(f, &mut out, min);
    }
    while tables_written < TABLE_REPEATS {
        mux.write_tables(&mut out);
        tables_written += 1;
    }
    out
}

/// Packets a PES of `len` bytes needs when its first packet carries an adaptation
/// field of `first_af` bytes.
fn natural_packets(len: usize, first_af: usize) -> usize {
    let first = PAYLOAD_LEN - first_af;
    if len <= first {
        1
    } else {
        1 + (len - first).div_ceil(PAYLOAD_LEN)
    }
}

/// Writes the PES made of `parts` on `pid`, over at least `min_packets` packets when
/// its length allows one payload byte per packet. Returns the packets written.
fn write_pes(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    first_flags: AdaptationFlags,
    parts: &[&[u8]],
    min_packets: usize,
) -> usize {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let natural = natural_packets(total, first_flags.len());
    let packets = natural.max(min_packets.min(total));
    let mut cursor = PartsCursor::new(parts);
    let mut remaining = total;
    for k in 0..packets {
        let flags = if k == 0 {
            first_flags
        } else {
            AdaptationFlags::default()
        };
        let capacity = PAYLOAD_LEN - flags.len();
        let later = packets - k - 1;
        let take = capacity.min(remaining - later);
        let start = out.len();
        write_packet_header(out, pid, k == 0, *cc, flags, take);
        cursor.copy_into(out, take);
        debug_assert_eq!(out.len() - start, PACKET_LEN);
        *cc = (*cc + 1) & 0x0F;
        remaining -= take;
    }
    packets
}

/// Writes the 4-byte header and the adaptation field (flags, then stuffing) of a
/// packet that will carry `payload_len` payload bytes.
fn write_packet_header(
    out: &mut Vec<u8>,
    pid: u16,
    unit_start: bool,
    cc: u8,
    flags: AdaptationFlags,
    payload_len: usize,
) {
    let af_total = PAYLOAD_LEN - payload_len; // bytes of adaptation field, length byte included
    let has_af = af_total > 0;
    out.push(0x47);
    out.push(((unit_start as u8) << 6) | ((pid >> 8) as u8 & 0x1F));
    out.push(pid as u8);
    let control = match (has_af, payload_len > 0) {
        (true, true) => 0x30,
        (true, false) => 0x20, // adaptation field only
        (false, _) => 0x10,
    };
    out.push(control | (cc & 0x0F));
    if !has_af {
        return;
    }
    out.push((af_total - 1) as u8);
    if af_total == 1 {
        return; // a lone length byte of 0: one byte of stuffing
    }
    let mut written = 1;
    out.push(
        ((flags.discontinuity as u8) << 7)
            | ((flags.random_access as u8) << 6)
            | ((flags.pcr_90k.is_some() as u8) << 4),
    );
    written += 1;
    if let Some(pcr) = flags.pcr_90k {
        out.extend_from_slice(&[
            (pcr >> 25) as u8,
            (pcr >> 17) as u8,
            (pcr >> 9) as u8,
            (pcr >> 1) as u8,
            (((pcr & 1) as u8) << 7) | 0x7E,
            0x00,
        ]);
        written += 6;
    }
    out.resize(out.len() + (af_total - written), 0xFF);
}

/// Walks a list of byte slices as one sequence.
struct PartsCursor<'a> {
    parts: &'a [&'a [u8]],
    part: usize,
    offset: usize,
}

impl<'a> PartsCursor<'a> {
    fn new(parts: &'a [&'a [u8]]) -> Self {
        Self {
            parts,
            part: 0,
            offset: 0,
        }
    }

    fn copy_into(&mut self, out: &mut Vec<u8>, mut n: usize) {
        while n > 0 && self.part < self.parts.len() {
            let p = self.parts[self.part];
            let take = (p.len() - self.offset).min(n);
            out.extend_from_slice(&p[self.offset..self.offset + take]);
            self.offset += take;
            n -= take;
            if self.offset == p.len() {
                self.part += 1;
                self.offset = 0;
            }
        }
    }
}

/// Writes a PSI section in one packet (pointer field 0, 0xFF filler).
fn write_psi(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &[u8]) {
    let start = out.len();
    out.push(0x47);
    out.push(0x40 | ((pid >> 8) as u8 & 0x1F));
    out.push(pid as u8);
    out.push(0x10 | (*cc & 0x0F));
    out.push(0x00); // pointer_field
    out.extend_from_slice(section);
    out.resize(start + PACKET_LEN, 0xFF);
    *cc = (*cc + 1) & 0x0F;
}

fn finish_section(mut s: Vec<u8>) -> Vec<u8> {
    // section_length counts from after the length field to the end of the CRC.
    let len = s.len() - 3 + 4;
    s[1] = 0xB0 | ((len >> 8) as u8 & 0x0F);
    s[2] = len as u8;
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn pat_section() -> Vec<u8> {
    finish_section(vec![
        0x00, // table_id: PAT
        0,
        0, // section_length, set by finish_section
        0x00,
        0x01, // transport_stream_id
        0xC1, // version 0, current
        0x00,
        0x00, // section numbers
        0x00,
        0x01, // program_number 1
        0xE0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ])
}

fn pmt_section(pcr_pid: u16, tracks: &[EsTrack]) -> Vec<u8> {
    let mut s = vec![
        0x02, // table_id: PMT
        0,
        0,
        0x00,
        0x01, // program_number 1
        0xC1,
        0x00,
        0x00,
        0xE0 | (pcr_pid >> 8) as u8,
        pcr_pid as u8,
        0xF0,
        0x00, // program_info_length 0
    ];
    for t in tracks {
        s.extend_from_slice(&[
            t.stream_type,
            0xE0 | (t.pid >> 8) as u8,
            t.pid as u8,
            0xF0,
            0x00,
        ]);
    }
    finish_section(s)
}

/// A 33-bit PTS or DTS with its 4-bit prefix and marker bits.
fn put_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    out.extend_from_slice(&[
        (prefix << 4) | (((ts >> 29) as u8) & 0x0E) | 1,
        (ts >> 22) as u8,
        (((ts >> 14) as u8) & 0xFE) | 1,
        (ts >> 7) as u8,
        (((ts << 1) as u8) & 0xFE) | 1,
    ]);
}

#[cfg(test)]
mod tests;
