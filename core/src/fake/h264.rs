//! The H.264 bitstream of `fake://` (docs/media.md, "fake:// video"): Constrained
//! Baseline, CAVLC, every macroblock I_PCM or P_Skip, so no encoder library is needed.
//! SPS (with VUI timing and bitstream restriction), PPS, AUD, the barcode SEI, the IDR
//! slice (I_PCM everywhere), the P slice (barcode row as I_PCM, the rest P_Skip) and
//! filler data NAL units, all emitted as Annex B with 4-byte start codes.
//!
//! Owns: H.264 syntax, level choice, access unit assembly, and a few read-side helpers
//! (splitting Annex B, finding the barcode SEI) for tests and tools. Must not: decide
//! frame timing or GOP structure (that is `fake::source`) or draw pictures (that is
//! `fake::picture` / `fake::barcode`).
//!
//! Level: `level_idc` is 40 (4.0) unless the stream breaks a level 4.0 limit, in which
//! case it is the lowest of 4.1, 4.2, 5.0, 5.1, 5.2 whose limits hold for: frame size
//! (MaxFS, and each side ≤ √(8·MaxFS)), macroblock rate (MaxMBPS), one-frame DPB
//! (MaxDpbMbs), the biggest frame (the I_PCM IDR, or the filler target) against MaxCPB,
//! and the average bit rate of a GOP (or `bitrate=`) against MaxBR (Baseline factor
//! 1000). 1920×1080 at 25 fps with a 1 s GOP needs 4.1 (its 3.15 MB IDR exceeds the
//! 25 Mbit CPB of 4.0); 1280×720 at 25 fps stays at 4.0, at 60 fps it needs 4.1
//! (bit rate), as does 320×240 with an IDR every frame. If nothing up to 5.2 fits
//! (very short GOPs of big pictures), the stream says 5.2 and exceeds its bit rate
//! limit: real decoders do not enforce level bit rates.

use super::barcode;
use super::bits::{BitWriter, Escaper};
use super::picture::{self, Picture};

/// Annex B start code used before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The UUID of the barcode SEI (user_data_unregistered): ASCII `ternfakebarcode!`.
pub const SEI_UUID: [u8; 16] = *b"ternfakebarcode!";

/// Access unit delimiter NAL unit (primary_pic_type 7: any slice type).
pub const AUD: [u8; 2] = [0x09, 0xF0];

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;
pub const NAL_FILLER: u8 = 12;

/// mb_type of I_PCM in an I slice and in a P slice.
const MB_TYPE_I_PCM_IN_I: u32 = 25;
const MB_TYPE_I_PCM_IN_P: u32 = 30;
/// slice_type values meaning "all slices of the picture have this type".
const SLICE_TYPE_P_ALL: u32 = 5;
const SLICE_TYPE_I_ALL: u32 = 7;

/// Bytes of a macroblock in the slice data, besides its 384 samples (mb_skip_run,
/// mb_type and alignment), at most.
const MB_OVERHEAD: usize = 3;

/// Limits of Table A-1 used to pick `level_idc`:
/// (level_idc, MaxMBPS, MaxFS, MaxDpbMbs, MaxBR kbit/s, MaxCPB kbit).
const LEVELS: [(u8, u64, u64, u64, u64, u64); 6] = [
    (40, 245_760, 8_192, 32_768, 20_000, 25_000),
    (41, 245_760, 8_192, 32_768, 50_000, 62_500),
    (42, 522_240, 8_704, 34_816, 50_000, 62_500),
    (50, 589_824, 22_080, 110_400, 135_000, 135_000),
    (51, 983_040, 36_864, 184_320, 240_000, 240_000),
    (52, 2_073_600, 36_864, 184_320, 240_000, 240_000),
];

/// The `level_idc` for a stream of `mb_w` × `mb_h` macroblocks at `fps` with an IDR
/// every `gop_frames` frames, padded to `bitrate` bits/s if given (module docs).
pub fn level_idc(mb_w: u64, mb_h: u64, fps: u64, gop_frames: u64, bitrate: Option<u64>) -> u8 {
    let fps = fps.max(1);
    let gop = gop_frames.max(1);
    let fs = mb_w * mb_h;
    let mb_bytes = 384 + MB_OVERHEAD as u64;
    let idr_bits = (fs * mb_bytes + 128) * 8;
    let p_bits = (mb_w * mb_bytes + 64) * 8;
    let mut rate = (idr_bits + (gop - 1) * p_bits) * fps / gop;
    let mut max_frame_bits = idr_bits;
    if let Some(b) = bitrate {
        rate = rate.max(b);
        max_frame_bits = max_frame_bits.max(b / fps);
    }
    for (idc, max_mbps, max_fs, max_dpb, max_br, max_cpb) in LEVELS {
        if fs <= max_fs
            && mb_w * mb_w <= 8 * max_fs
            && mb_h * mb_h <= 8 * max_fs
            && fs * fps <= max_mbps
            && fs <= max_dpb
            && max_frame_bits <= max_cpb * 1000
            && rate <= max_br * 1000
        {
            return idc;
        }
    }
    52
}

/// Sequence parameters that go into the SPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsParams {
    /// Visible size in pixels (even).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub level_idc: u8,
}

fn nal(header: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 2);
    out.push(header);
    let mut e = Escaper::new();
    e.push(&mut out, rbsp);
    e.finish(&mut out);
    out
}

/// The SPS NAL unit (header byte included, no start code).
pub fn sps(p: &SpsParams) -> Vec<u8> {
    let mb_w = p.width.div_ceil(16).max(1);
    let mb_h = p.height.div_ceil(16).max(1);
    let mut w = BitWriter::new();
    w.u(8, 66); // profile_idc: Baseline
    w.bit(true); // constraint_set0_flag
    w.bit(true); // constraint_set1_flag: Constrained Baseline
    w.u(6, 0); // constraint_set2..5_flag, reserved_zero_2bits
    w.u(8, u64::from(p.level_idc));
    w.ue(0); // seq_parameter_set_id
    w.ue(4); // log2_max_frame_num_minus4: log2_max_frame_num 8
    w.ue(2); // pic_order_cnt_type: output order = decode order
    w.ue(1); // max_num_ref_frames
    w.bit(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(mb_w - 1); // pic_width_in_mbs_minus1
    w.ue(mb_h - 1); // pic_height_in_map_units_minus1
    w.bit(true); // frame_mbs_only_flag
    w.bit(true); // direct_8x8_inference_flag
    let crop_right = (mb_w * 16).saturating_sub(p.width) / 2;
    let crop_bottom = (mb_h * 16).saturating_sub(p.height) / 2;
    let crop = crop_right != 0 || crop_bottom != 0;
    w.bit(crop); // frame_cropping_flag
    if crop {
        // In units of 2 samples (4:2:0, frame_mbs_only).
        w.ue(0); // left
        w.ue(crop_right);
        w.ue(0); // top
        w.ue(crop_bottom);
    }
    w.bit(true); // vui_parameters_present_flag
    w.bit(false); // aspect_ratio_info_present_flag
    w.bit(false); // overscan_info_present_flag
    w.bit(false); // video_signal_type_present_flag
    w.bit(false); // chroma_loc_info_present_flag
    w.bit(true); // timing_info_present_flag
    w.u(32, 1); // num_units_in_tick
    w.u(32, 2 * u64::from(p.fps.max(1))); // time_scale (two ticks per frame)
    w.bit(true); // fixed_frame_rate_flag
    w.bit(false); // nal_hrd_parameters_present_flag
    w.bit(false); // vcl_hrd_parameters_present_flag
    w.bit(false); // pic_struct_present_flag
    w.bit(true); // bitstream_restriction_flag
    w.bit(true); // motion_vectors_over_pic_boundaries_flag
    w.ue(0); // max_bytes_per_pic_denom: no limit
    w.ue(0); // max_bits_per_mb_denom: no limit
    w.ue(15); // log2_max_mv_length_horizontal
    w.ue(15); // log2_max_mv_length_vertical
    w.ue(0); // max_num_reorder_frames
    w.ue(1); // max_dec_frame_buffering
    w.trailing_bits();
    nal(0x60 | NAL_SPS, &w.into_bytes())
}

/// The PPS NAL unit (header byte included, no start code).
pub fn pps() -> Vec<u8> {
    let mut w = BitWriter::new();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.bit(false); // entropy_coding_mode_flag: CAVLC
    w.bit(false); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.bit(false); // weighted_pred_flag
    w.u(2, 0); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.bit(true); // deblocking_filter_control_present_flag
    w.bit(false); // constrained_intra_pred_flag
    w.bit(false); // redundant_pic_cnt_present_flag
    w.trailing_bits();
    nal(0x60 | NAL_PPS, &w.into_bytes())
}

/// The SEI NAL unit carrying the barcode: one user_data_unregistered message with
/// [`SEI_UUID`] and the 8 value bytes, big-endian.
pub fn sei_barcode(v: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(27);
    rbsp.push(5); // payloadType: user_data_unregistered
    rbsp.push(24); // payloadSize
    rbsp.extend_from_slice(&SEI_UUID);
    rbsp.extend_from_slice(&v.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    nal(NAL_SEI, &rbsp)
}

/// A filler data NAL unit `nal_len` bytes long (header, `FF`s, final `80`; at least 2).
pub fn filler(nal_len: usize) -> Vec<u8> {
    let n = nal_len.max(2);
    let mut out = vec![0xFF; n];
    out[0] = NAL_FILLER;
    out[n - 1] = 0x80;
    out
}

fn p_slice_header(w: &mut BitWriter, frame_num: u8) {
    w.ue(0); // first_mb_in_slice
    w.ue(SLICE_TYPE_P_ALL);
    w.ue(0); // pic_parameter_set_id
    w.u(8, u64::from(frame_num));
    w.bit(false); // num_ref_idx_active_override_flag
    w.bit(false); // ref_pic_list_modification_flag_l0
    w.bit(false); // adaptive_ref_pic_marking_mode_flag
    w.se(0); // slice_qp_delta
    w.ue(1); // disable_deblocking_filter_idc
}

/// A P slice NAL unit (no start code) in which all `mb_count` macroblocks are P_Skip:
/// the picture repeats its reference.
pub fn p_slice_all_skip(mb_count: u32, frame_num: u8) -> Vec<u8> {
    let mut w = BitWriter::with_capacity(16);
    p_slice_header(&mut w, frame_num);
    w.ue(mb_count); // mb_skip_run
    w.trailing_bits();
    nal(0x40 | NAL_SLICE, &w.into_bytes())
}

/// Makes the access units of one fake stream. Everything that does not depend on the
/// frame (SPS, PPS, the I_PCM data of the IDR below the barcode row) is built once.
#[derive(Clone, Debug)]
pub struct Encoder {
    width: usize,
    mb_w: usize,
    mb_h: usize,
    sps: Vec<u8>,
    pps: Vec<u8>,
    /// The IDR slice after the barcode row: every other macroblock as I_PCM, then the
    /// trailing bits, already escaped. It starts with `0D` (mb_type 25) or `80` (the
    /// stop bit when the picture is a single row), a byte above 3, so it escapes the
    /// same whatever precedes it and can be appended as is.
    idr_tail: Vec<u8>,
}

impl Encoder {
    /// `width`/`height`: visible size (made even and at least 16); `fps` ≥ 1.
    pub fn new(width: u16, height: u16, fps: u16, level_idc: u8) -> Encoder {
        let width = usize::from(width.max(16)).next_multiple_of(2);
        let height = usize::from(height.max(16)).next_multiple_of(2);
        let pic = Picture::test_pattern(width, height);
        let sps = sps(&SpsParams {
            width: width as u32,
            height: height as u32,
            fps: u32::from(fps.max(1)),
            level_idc,
        });
        let mb_bytes = 384 + MB_OVERHEAD;
        let mut w = BitWriter::with_capacity(pic.mb_w * (pic.mb_h - 1) * mb_bytes + 1);
        let mut mb = Vec::with_capacity(384);
        for mby in 1..pic.mb_h {
            for mbx in 0..pic.mb_w {
                mb.clear();
                pic.push_mb(mbx, mby, &mut mb);
                w.ue(MB_TYPE_I_PCM_IN_I);
                w.align_zero(); // pcm_alignment_zero_bit
                w.bytes(&mb);
            }
        }
        w.trailing_bits();
        let tail_rbsp = w.into_bytes();
        let mut idr_tail = Vec::with_capacity(tail_rbsp.len() + 16);
        let mut e = Escaper::new();
        e.push(&mut idr_tail, &tail_rbsp);
        e.finish(&mut idr_tail);
        Encoder {
            width,
            mb_w: pic.mb_w,
            mb_h: pic.mb_h,
            sps,
            pps: pps(),
            idr_tail,
        }
    }

    /// SPS NAL unit, no start code.
    pub fn sps(&self) -> &[u8] {
        &self.sps
    }

    /// PPS NAL unit, no start code.
    pub fn pps(&self) -> &[u8] {
        &self.pps
    }

    /// The barcode row's macroblocks, 384 samples each, concatenated.
    fn barcode_row(&self, v: u64) -> Vec<u8> {
        let stride = self.mb_w * 16;
        let mut y = vec![picture::BLACK; stride * 16];
        barcode::draw(&mut y, stride, self.width, v);
        let c = vec![picture::CHROMA_NEUTRAL; self.mb_w * 8 * 8];
        let mut out = Vec::with_capacity(self.mb_w * 384);
        for mbx in 0..self.mb_w {
            picture::push_mb_planes(&y, &c, &c, self.mb_w, mbx, 0, &mut out);
        }
        out
    }

    fn push_nal(out: &mut Vec<u8>, nal: &[u8]) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }

    fn begin(&self, out: &mut Vec<u8>, idr: bool, v: u64) {
        Self::push_nal(out, &AUD);
        if idr {
            Self::push_nal(out, &self.sps);
            Self::push_nal(out, &self.pps);
        }
        Self::push_nal(out, &sei_barcode(v));
    }

    /// Appends the IDR access unit (AUD, SPS, PPS, SEI, I_PCM slice) carrying barcode
    /// `v` to `out`. Consecutive IDRs must use different `idr_pic_id`s.
    pub fn idr(&self, idr_pic_id: u32, v: u64, out: &mut Vec<u8>) {
        let row = self.barcode_row(v);
        out.reserve(self.sps.len() + self.pps.len() + 64 + row.len() * 2 + self.idr_tail.len());
        self.begin(out, true, v);
        let mut w = BitWriter::with_capacity(row.len() + self.mb_w * MB_OVERHEAD + 16);
        w.ue(0); // first_mb_in_slice
        w.ue(SLICE_TYPE_I_ALL);
        w.ue(0); // pic_parameter_set_id
        w.u(8, 0); // frame_num
        w.ue(idr_pic_id);
        w.bit(false); // no_output_of_prior_pics_flag
        w.bit(false); // long_term_reference_flag
        w.se(0); // slice_qp_delta
        w.ue(1); // disable_deblocking_filter_idc
        for mb in row.chunks(384) {
            w.ue(MB_TYPE_I_PCM_IN_I);
            w.align_zero();
            w.bytes(mb);
        }
        out.extend_from_slice(&START_CODE);
        out.push(0x60 | NAL_IDR);
        let mut e = Escaper::new();
        e.push(out, &w.into_bytes());
        // The tail escapes the same after any state (see `idr_tail`) and ends in `80`.
        out.extend_from_slice(&self.idr_tail);
    }

    /// Appends a P access unit (AUD, SEI, slice: barcode row as I_PCM, the rest
    /// P_Skip) carrying barcode `v` to `out`.
    pub fn p(&self, frame_num: u8, v: u64, out: &mut Vec<u8>) {
        let row = self.barcode_row(v);
        out.reserve(64 + row.len() * 2);
        self.begin(out, false, v);
        let mut w = BitWriter::with_capacity(row.len() + self.mb_w * MB_OVERHEAD + 16);
        p_slice_header(&mut w, frame_num);
        for mb in row.chunks(384) {
            w.ue(0); // mb_skip_run
            w.ue(MB_TYPE_I_PCM_IN_P);
            w.align_zero();
            w.bytes(mb);
        }
        let rest = self.mb_w * (self.mb_h - 1);
        if rest > 0 {
            w.ue(rest as u32); // mb_skip_run up to the end of the picture
        }
        w.trailing_bits();
        out.extend_from_slice(&START_CODE);
        out.push(0x40 | NAL_SLICE);
        let mut e = Escaper::new();
        e.push(out, &w.into_bytes());
        e.finish(out);
    }
}

/// Splits an Annex B byte stream into NAL units (without start codes). Zero bytes
/// before a start code (the first byte of a 4-byte one) are not part of the NAL unit.
pub fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    NalUnits::new(stream).collect()
}

/// The NAL units of an Annex B byte stream as [`nal_units`] gives them, found one at a
/// time: a reader that stops early (the barcode SEI comes before the slice) does not
/// scan the rest.
pub struct NalUnits<'a> {
    stream: &'a [u8],
    /// Where the next NAL unit begins (just after its start code).
    next: Option<usize>,
}

impl<'a> NalUnits<'a> {
    pub fn new(stream: &'a [u8]) -> Self {
        NalUnits {
            stream,
            next: start_code(stream, 0).map(|sc| sc + 3),
        }
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let begin = self.next?;
        let sc = start_code(self.stream, begin);
        self.next = sc.map(|i| i + 3);
        let mut end = sc.unwrap_or(self.stream.len());
        while end > begin && self.stream[end - 1] == 0 {
            end -= 1;
        }
        Some(&self.stream[begin..end])
    }
}

/// The first `00 00 01` at or after `from`. Where the third byte of a window is above
/// 1, none of the three windows that contain it can match, so the scan steps by 3.
fn start_code(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= s.len() {
        match s[i + 2] {
            1 if s[i] == 0 && s[i + 1] == 0 => return Some(i),
            0 => i += 1,
            _ => i += 3,
        }
    }
    None
}

/// The barcode value from the SEI of an Annex B access unit made by [`Encoder`], or
/// `None` if it has no such SEI.
pub fn find_sei_barcode(au: &[u8]) -> Option<u64> {
    for n in NalUnits::new(au) {
        if n.first().map(|h| h & 0x1F) != Some(NAL_SEI) {
            continue;
        }
        let rbsp = super::bits::unescape(&n[1..]);
        let mut i = 0;
        // sei_message()s until the trailing bits.
        while i < rbsp.len() && rbsp[i] != 0x80 {
            let mut ty = 0usize;
            while *rbsp.get(i)? == 0xFF {
                ty += 255;
                i += 1;
            }
            ty += usize::from(rbsp[i]);
            i += 1;
            let mut size = 0usize;
            while *rbsp.get(i)? == 0xFF {
                size += 255;
                i += 1;
            }
            size += usize::from(rbsp[i]);
            i += 1;
            let payload = rbsp.get(i..i + size)?;
            if ty == 5 && size >= 24 && payload[..16] == SEI_UUID {
                let mut b = [0u8; 8];
                b.copy_from_slice(&payload[16..24]);
                return Some(u64::from_be_bytes(b));
            }
            i += size;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::bits::unescape;
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn all_skip_p_slice_matches_media_notes() {
        // 320×240 = 20 × 15 = 300 macroblocks.
        assert_eq!(hex(&p_slice_all_skip(300, 1)), "41 9a 02 28 02 5b");
    }

    #[test]
    fn sps_pps_bytes() {
        let s = sps(&SpsParams {
            width: 320,
            height: 240,
            fps: 25,
            level_idc: 40,
        });
        assert_eq!(&s[..4], &[0x67, 66, 0xC0, 40]);
        // The PPS: ue(0) ue(0) 0 0 ue(0) ue(0) ue(0) 0 00 se(0) se(0) se(0) 1 0 0 + stop.
        assert_eq!(hex(&pps()), "68 ce 3c 80");
        // Cropping appears only when the size is not a multiple of 16.
        let cropped = sps(&SpsParams {
            width: 640,
            height: 360,
            fps: 25,
            level_idc: 40,
        });
        assert_ne!(cropped, s);
    }

    #[test]
    fn levels() {
        assert_eq!(level_idc(20, 15, 25, 25, None), 40);
        assert_eq!(level_idc(80, 45, 25, 25, None), 40);
        assert_eq!(level_idc(120, 68, 25, 25, None), 41);
        assert_eq!(level_idc(120, 68, 60, 60, None), 42);
        assert_eq!(level_idc(20, 15, 25, 25, Some(30_000_000)), 41);
        assert_eq!(level_idc(120, 68, 60, 1, None), 52);
    }

    #[test]
    fn sei_filler_and_splitting() {
        let v = 0x0000_0001_0000_0000; // zero bytes that need escaping
        let sei = sei_barcode(v);
        assert!(!sei.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
        assert!(sei.len() > 27);
        let mut au = Vec::new();
        au.extend_from_slice(&START_CODE);
        au.extend_from_slice(&AUD);
        au.extend_from_slice(&START_CODE);
        au.extend_from_slice(&sei);
        au.extend_from_slice(&START_CODE);
        au.extend_from_slice(&filler(10));
        let nals = nal_units(&au);
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0], &AUD);
        assert_eq!(nals[1], &sei[..]);
        assert_eq!(hex(nals[2]), "0c ff ff ff ff ff ff ff ff 80");
        assert_eq!(find_sei_barcode(&au), Some(v));
        assert_eq!(find_sei_barcode(&au[..10]), None);
    }

    /// The one-at-a-time split (stepping by 3 where it can) against the plain
    /// byte-by-byte one, on every stream of up to 7 bytes drawn from 0, 1 and 2, and
    /// on an encoded access unit.
    #[test]
    fn nal_units_match_a_byte_by_byte_split() {
        fn reference(stream: &[u8]) -> Vec<&[u8]> {
            let mut starts = Vec::new();
            let mut i = 0;
            while i + 3 <= stream.len() {
                if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
                    starts.push((i, i + 3));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            let mut out = Vec::new();
            for (k, &(_, begin)) in starts.iter().enumerate() {
                let mut end = starts.get(k + 1).map_or(stream.len(), |&(sc, _)| sc);
                while end > begin && stream[end - 1] == 0 {
                    end -= 1;
                }
                out.push(&stream[begin..end]);
            }
            out
        }
        let mut n = 0;
        for len in 0..=7u32 {
            for code in 0..3u32.pow(len) {
                let stream: Vec<u8> = (0..len).map(|k| (code / 3u32.pow(k) % 3) as u8).collect();
                assert_eq!(nal_units(&stream), reference(&stream), "{stream:?}");
                n += 1;
            }
        }
        assert_eq!(n, 3280);
        let mut au = Vec::new();
        Encoder::new(256, 16, 25, 40).idr(1, 7, &mut au);
        assert_eq!(nal_units(&au), reference(&au));
    }

    #[test]
    fn access_units() {
        for (w, h) in [(320u16, 240u16), (256, 16), (640, 360), (258, 18)] {
            let enc = Encoder::new(w, h, 25, 40);
            let mb_w = usize::from(w).div_ceil(16);
            let mb_h = usize::from(h).div_ceil(16);
            let mut idr = Vec::new();
            enc.idr(1, u64::MAX, &mut idr);
            let nals = nal_units(&idr);
            let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1F).collect();
            assert_eq!(types, vec![9, 7, 8, 6, 5]);
            assert_eq!(find_sei_barcode(&idr), Some(u64::MAX));
            // The IDR slice RBSP: header, then mb_w*mb_h I_PCM macroblocks, stop bit.
            let slice = unescape(&nals[4][1..]);
            // 26 header bits + ue(25) align to 5 bytes; then `0D 00` + 384 per macroblock.
            assert_eq!(slice.len(), mb_w * mb_h * 386 + 4);
            assert_eq!(*slice.last().unwrap(), 0x80);

            let mut p = Vec::new();
            enc.p(7, 42, &mut p);
            let nals = nal_units(&p);
            let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1F).collect();
            assert_eq!(types, vec![9, 6, 1]);
            assert_eq!(nals[2][0], 0x41);
            assert_eq!(find_sei_barcode(&p), Some(42));
            let slice = unescape(&nals[2][1..]);
            assert!(slice.len() > mb_w * 386 && slice.len() < mb_w * 388 + 12);
        }
    }
}
