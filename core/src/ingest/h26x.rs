//! Reading H.264 and H.265 access units as they arrive from a source: Annex B NAL
//! unit scanning, which NAL units make a keyframe and carry parameter sets, and the
//! picture size and frame rate from a sequence parameter set.
//!
//! Owns: NAL types, emulation-prevention removal, an exp-Golomb bit reader and the SPS
//! fields Tern shows (size, frame rate). Must not: change NAL units or decode pictures.
//! Malformed input gives `None`, never a panic.

use bytes::Bytes;

use crate::media::TrackParams;

/// Which of the two codecs an access unit is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// What one access unit holds, as far as Tern cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessUnitInfo {
    /// An IDR (H.264) or IRAP (H.265) picture: a decoder can start here.
    pub keyframe: bool,
    /// Parameter sets found in the unit (without start codes).
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// Splits an Annex B byte stream into NAL units (without start codes).
pub fn nal_units(data: &Bytes) -> Vec<Bytes> {
    let d = &data[..];
    let mut starts = Vec::new(); // (start of the start code, start of the NAL)
    let mut i = 0;
    while i + 3 <= d.len() {
        if d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1 {
            let sc = if i > 0 && d[i - 1] == 0 { i - 1 } else { i };
            starts.push((sc, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(_, nal)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(d.len(), |&(sc, _)| sc);
        // Trailing zero bytes belong to no NAL unit.
        while end > nal && d[end - 1] == 0 {
            end -= 1;
        }
        if end > nal {
            out.push(data.slice(nal..end));
        }
    }
    out
}

/// Looks at the NAL units of an access unit.
pub fn inspect(codec: VideoCodec, data: &Bytes) -> AccessUnitInfo {
    let mut info = AccessUnitInfo::default();
    for nal in nal_units(data) {
        match codec {
            VideoCodec::H264 => match nal[0] & 0x1F {
                5 => info.keyframe = true,
                7 => info.sps = Some(nal),
                8 => info.pps = Some(nal),
                _ => {}
            },
            VideoCodec::H265 => match (nal[0] >> 1) & 0x3F {
                16..=21 => info.keyframe = true,
                32 => info.vps = Some(nal),
                33 => info.sps = Some(nal),
                34 => info.pps = Some(nal),
                _ => {}
            },
        }
    }
    info
}

/// Annex B bytes of `sets` (each with a 4-byte start code) followed by `au`: puts the
/// parameter sets in front of a keyframe that came without them.
pub fn prepend_parameter_sets(sets: &[&Bytes], au: &Bytes) -> Bytes {
    let mut v = Vec::with_capacity(au.len() + sets.iter().map(|s| s.len() + 4).sum::<usize>());
    for s in sets {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(s);
    }
    v.extend_from_slice(au);
    Bytes::from(v)
}

/// What a sequence parameter set says about the pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub width: u16,
    pub height: u16,
    /// Frames per second from the VUI timing info; 0 when absent.
    pub fps: u16,
    pub profile: u8,
    pub level: u8,
    /// How many frames may arrive before a frame yet be shown after it (B-frames),
    /// when the SPS says: H.264's VUI `max_num_reorder_frames` (0 for a Baseline
    /// profile or picture order count type 2, which cannot reorder), H.265's
    /// `sps_max_num_reorder_pics`. `None` when it does not.
    pub reorder_depth: Option<u8>,
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads bits most significant first; every read past the end is `None`.
struct Bits<'a> {
    d: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn u(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = *self.d.get(self.pos / 8)?;
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn flag(&mut self) -> Option<bool> {
        self.u(1).map(|b| b == 1)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.pos += n;
        (self.pos <= self.d.len() * 8).then_some(())
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

fn to_u16(v: u64) -> Option<u16> {
    u16::try_from(v).ok()
}

fn fps_of(num_units_in_tick: u64, time_scale: u64, per_field: bool) -> u16 {
    if num_units_in_tick == 0 {
        return 0;
    }
    let div = if per_field { 2 } else { 1 };
    let fps = (time_scale + num_units_in_tick * div / 2) / (num_units_in_tick * div);
    u16::try_from(fps).unwrap_or(0)
}

/// Parses an H.264 SPS NAL unit (with its 1-byte header).
pub fn h264_sps(nal: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape(nal.get(1..)?);
    let mut b = Bits { d: &rbsp, pos: 0 };
    let profile = b.u(8)? as u8;
    b.skip(8)?; // constraint flags
    let level = b.u(8)? as u8;
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.flag()?;
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.flag()?; // qpprime_y_zero_transform_bypass_flag
        if b.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.flag()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + b.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    let poc_type = b.ue()?;
    match poc_type {
        0 => {
            b.ue()?;
        }
        1 => {
            b.flag()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(b.ue()?) + 1;
    let height_map_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = b.flag()?;
    if !frame_mbs_only {
        b.flag()?; // mb_adaptive_frame_field_flag
    }
    b.flag()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if b.flag()? {
        cl = u64::from(b.ue()?);
        cr = u64::from(b.ue()?);
        ct = u64::from(b.ue()?);
        cb = u64::from(b.ue()?);
    }
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let field = if frame_mbs_only { 1 } else { 2 };
    let crop_x = sub_w;
    let crop_y = sub_h * field;
    let width = (width_mbs * 16).checked_sub(crop_x * (cl + cr))?;
    let height = (field * height_map_units * 16).checked_sub(crop_y * (ct + cb))?;
    let (mut fps, mut reorder_depth) = (0, None);
    if b.flag().unwrap_or(false) {
        let vui = h264_vui(&mut b);
        fps = vui.fps;
        reorder_depth = vui.reorder_depth;
    }
    if profile == 66 || poc_type == 2 {
        reorder_depth = Some(0);
    }
    Some(SpsInfo {
        width: to_u16(width)?,
        height: to_u16(height)?,
        fps,
        profile,
        level,
        reorder_depth,
    })
}

/// What Tern reads of an H.264 VUI: whatever could be read before a field was
/// missing.
#[derive(Default)]
struct Vui {
    fps: u16,
    reorder_depth: Option<u8>,
}

fn h264_vui(b: &mut Bits) -> Vui {
    let mut vui = Vui::default();
    let _ = h264_vui_fields(b, &mut vui);
    vui
}

fn h264_vui_fields(b: &mut Bits, vui: &mut Vui) -> Option<()> {
    if b.flag()? {
        // aspect_ratio_info_present_flag
        if b.u(8)? == 255 {
            b.skip(32)?;
        }
    }
    if b.flag()? {
        b.flag()?; // overscan_appropriate_flag
    }
    if b.flag()? {
        b.skip(4)?; // video_format, video_full_range_flag
        if b.flag()? {
            b.skip(24)?;
        }
    }
    if b.flag()? {
        b.ue()?;
        b.ue()?;
    }
    if b.flag()? {
        let units = b.u(32)?;
        let scale = b.u(32)?;
        vui.fps = fps_of(units, scale, true);
        b.flag()?; // fixed_frame_rate_flag
    }
    let nal_hrd = b.flag()?;
    if nal_hrd {
        h264_skip_hrd(b)?;
    }
    let vcl_hrd = b.flag()?;
    if vcl_hrd {
        h264_skip_hrd(b)?;
    }
    if nal_hrd || vcl_hrd {
        b.flag()?; // low_delay_hrd_flag
    }
    b.flag()?; // pic_struct_present_flag
    if b.flag()? {
        // bitstream_restriction_flag
        b.flag()?; // motion_vectors_over_pic_boundaries_flag
        for _ in 0..4 {
            b.ue()?; // max_bytes_per_pic_denom .. log2_max_mv_length_vertical
        }
        vui.reorder_depth = Some(u8::try_from(b.ue()?).unwrap_or(u8::MAX));
    }
    Some(())
}

fn h264_skip_hrd(b: &mut Bits) -> Option<()> {
    let cpb_cnt = b.ue()? + 1;
    if cpb_cnt > 32 {
        return None;
    }
    b.skip(8)?; // bit_rate_scale, cpb_size_scale
    for _ in 0..cpb_cnt {
        b.ue()?;
        b.ue()?;
        b.flag()?;
    }
    b.skip(20) // four delay / offset lengths
}

/// Parses an H.265 SPS NAL unit (with its 2-byte header). The frame rate is not read
/// (it sits behind many VUI fields): 0.
pub fn h265_sps(nal: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape(nal.get(2..)?);
    let mut b = Bits { d: &rbsp, pos: 0 };
    b.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.u(3)? as usize;
    b.skip(1)?; // temporal_id_nesting
                // profile_tier_level(1, max_sub_layers_minus1)
    b.skip(3)?; // profile_space, tier
    let profile = b.u(5)? as u8;
    b.skip(32 + 48)?; // compatibility flags, constraint flags
    let level = b.u(8)? as u8;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1) {
        *p = (b.flag()?, b.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for &(profile_present, level_present) in present.iter().take(max_sub_layers_minus1) {
        if profile_present {
            b.skip(88)?;
        }
        if level_present {
            b.skip(8)?;
        }
    }
    b.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = b.ue()?;
    if chroma_format_idc == 3 {
        b.flag()?; // separate_colour_plane_flag
    }
    let w = u64::from(b.ue()?);
    let h = u64::from(b.ue()?);
    let (sub_w, sub_h) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if b.flag()? {
        cl = u64::from(b.ue()?);
        cr = u64::from(b.ue()?);
        ct = u64::from(b.ue()?);
        cb = u64::from(b.ue()?);
    }
    let width = w.checked_sub(sub_w * (cl + cr))?;
    let height = h.checked_sub(sub_h * (ct + cb))?;
    Some(SpsInfo {
        width: to_u16(width)?,
        height: to_u16(height)?,
        fps: 0,
        profile,
        level,
        reorder_depth: h265_reorder(&mut b, max_sub_layers_minus1),
    })
}

/// `sps_max_num_reorder_pics` of the highest sub-layer, read after the conformance
/// window.
fn h265_reorder(b: &mut Bits, max_sub_layers_minus1: usize) -> Option<u8> {
    b.ue()?; // bit_depth_luma_minus8
    b.ue()?; // bit_depth_chroma_minus8
    b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
    let all_layers = b.flag()?;
    let first = if all_layers { 0 } else { max_sub_layers_minus1 };
    let mut reorder = 0;
    for _ in first..=max_sub_layers_minus1 {
        b.ue()?; // sps_max_dec_pic_buffering_minus1
        reorder = b.ue()?;
        b.ue()?; // sps_max_latency_increase_plus1
    }
    Some(u8::try_from(reorder).unwrap_or(u8::MAX))
}

/// The reorder depth a video track's SPS states (see [`SpsInfo::reorder_depth`]);
/// `None` for audio or when the SPS does not say.
pub fn reorder_depth(params: &TrackParams) -> Option<u8> {
    match params {
        TrackParams::H264 { sps, .. } => h264_sps(sps)?.reorder_depth,
        TrackParams::H265 { sps, .. } => h265_sps(sps)?.reorder_depth,
        _ => None,
    }
}

/// The track parameters of a video track once its parameter sets have arrived: the
/// SPS, PPS (and for H.265 the VPS) with the size and frame rate read from the SPS.
/// `None` until all of them are there or when the SPS cannot be read.
pub fn track_params(
    codec: VideoCodec,
    vps: Option<&Bytes>,
    sps: Option<&Bytes>,
    pps: Option<&Bytes>,
) -> Option<TrackParams> {
    let sps = sps?.clone();
    let pps = pps?.clone();
    match codec {
        VideoCodec::H264 => {
            let info = h264_sps(&sps)?;
            Some(TrackParams::H264 {
                sps,
                pps,
                width: info.width,
                height: info.height,
                fps: info.fps,
            })
        }
        VideoCodec::H265 => {
            let info = h265_sps(&sps)?;
            Some(TrackParams::H265 {
                vps: vps?.clone(),
                sps,
                pps,
                width: info.width,
                height: info.height,
                fps: info.fps,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeOptions, FakeSource};
    use crate::media::TrackParams;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// SPS written by x264 and x265 (`ffmpeg -c:v libx264 -bf 2`, without `-bf`,
    /// `libx265 -x265-params bframes=3`, 320x240): the reorder depth is what ffprobe
    /// reports as `has_b_frames` for the same streams (2, 0, 2).
    #[test]
    fn reorder_depth_comes_from_the_sps() {
        let bf = h264_sps(&hex("67f4000d919b28283f6022000003000200000300641e28532c"));
        assert_eq!(
            bf.map(|i| (i.width, i.height, i.fps, i.reorder_depth)),
            Some((320, 240, 25, Some(2)))
        );
        let no_bf = h264_sps(&hex("67f4000d91968141fb011000000300100000030320f142aa"));
        assert_eq!(
            no_bf.map(|i| (i.width, i.reorder_depth)),
            Some((320, Some(0)))
        );
        let h265 = h265_sps(&hex(
            "4201010408000003009e0800000300003c90014101e2cb2b2c9265780b7020200040000003004000000642",
        ));
        assert_eq!(
            h265.map(|i| (i.width, i.height, i.reorder_depth)),
            Some((320, 240, Some(2)))
        );
    }

    #[test]
    fn fake_sps_gives_its_size_and_rate() {
        let opts = FakeOptions {
            width: 640,
            height: 360,
            fps: 30,
            ..FakeOptions::default()
        };
        let src = FakeSource::new(&opts, 1);
        let mi = src.media_info();
        let TrackParams::H264 { sps, .. } = &mi.tracks[0].params else {
            panic!("fake video is H.264");
        };
        let info = h264_sps(sps).expect("parses");
        assert_eq!((info.width, info.height), (640, 360));
        assert!(info.fps == 30 || info.fps == 0, "fps {}", info.fps);
    }

    #[test]
    fn a_real_x265_sps_gives_its_size() {
        // SPS of `ffmpeg -f lavfi -i testsrc=size=320x240 -c:v libx265` (4:4:4, RExt).
        let sps = [
            0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03,
            0x00, 0x00, 0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78,
            0x0b, 0x70, 0x20, 0x20, 0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06,
            0x42,
        ];
        let info = h265_sps(&sps).expect("parses");
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.profile, 4);
    }

    #[test]
    fn nal_scanning_and_keyframes() {
        let au = Bytes::from_static(&[
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88,
            0x00,
        ]);
        let nals = nal_units(&au);
        assert_eq!(nals.len(), 4);
        let info = inspect(VideoCodec::H264, &au);
        assert!(info.keyframe);
        assert_eq!(info.sps.as_deref(), Some(&[0x67, 0x42][..]));
        assert_eq!(info.pps.as_deref(), Some(&[0x68, 0xce][..]));
        let p = Bytes::from_static(&[0, 0, 1, 0x41, 0x9a]);
        assert!(!inspect(VideoCodec::H264, &p).keyframe);
        let cra = Bytes::from_static(&[0, 0, 1, 0x2a, 0x01, 0xaf]); // type 21
        assert!(inspect(VideoCodec::H265, &cra).keyframe);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..5_000 {
            let v: Vec<u8> = (0..(n % 64))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = h264_sps(&v);
            let _ = h265_sps(&v);
            let _ = inspect(VideoCodec::H265, &Bytes::from(v));
        }
    }
}
