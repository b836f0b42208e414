//! The static test picture of `fake://`: 75 % colour bars over a grey ramp, in 8-bit
//! YUV 4:2:0, padded to whole macroblocks, every sample within 16..=235 (so the I_PCM
//! data never needs emulation prevention and stays legal video range).
//!
//! Owns: the pattern and the packing of a macroblock's 384 samples in I_PCM order.
//! Must not: draw the barcode (that is `fake::barcode`) or know any bitstream syntax.

/// Luma/chroma of the barcode area's background and of the padding outside the
/// visible picture.
pub const BLACK: u8 = 16;
pub const CHROMA_NEUTRAL: u8 = 128;

/// Height of the barcode area at the top of the picture (one macroblock row).
pub const BARCODE_ROWS: usize = 16;

/// A 4:2:0 picture whose planes cover whole macroblocks (`mb_w * 16` × `mb_h * 16`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    /// Visible size.
    pub width: usize,
    pub height: usize,
    /// Size in macroblocks (the coded size).
    pub mb_w: usize,
    pub mb_h: usize,
    /// Planes, row stride `mb_w * 16` (luma) and `mb_w * 8` (chroma).
    pub y: Vec<u8>,
    pub cb: Vec<u8>,
    pub cr: Vec<u8>,
}

/// 75 % bars (ITU-R BT.601 limited range): grey, yellow, cyan, green, magenta, red, blue.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];

impl Picture {
    /// The test pattern at `width` × `height` (both ≥ 1). The top [`BARCODE_ROWS`]
    /// rows are left black with neutral chroma, for the barcode; below them the upper
    /// two thirds are colour bars and the rest a left-to-right luma ramp 16..=235.
    pub fn test_pattern(width: usize, height: usize) -> Picture {
        let width = width.max(1);
        let height = height.max(1);
        let mb_w = width.div_ceil(16);
        let mb_h = height.div_ceil(16);
        let (yw, yh) = (mb_w * 16, mb_h * 16);
        let (cw, ch) = (mb_w * 8, mb_h * 8);
        let mut y = vec![BLACK; yw * yh];
        let mut cb = vec![CHROMA_NEUTRAL; cw * ch];
        let mut cr = vec![CHROMA_NEUTRAL; cw * ch];
        let bars_end = BARCODE_ROWS + (height.saturating_sub(BARCODE_ROWS) * 2) / 3;
        // Chooses (Y, Cb, Cr) for a visible pixel; padding repeats the edge.
        let sample = |px: usize, py: usize| -> (u8, u8, u8) {
            let px = px.min(width - 1);
            let py = py.min(height - 1);
            if py < BARCODE_ROWS {
                (BLACK, CHROMA_NEUTRAL, CHROMA_NEUTRAL)
            } else if py < bars_end {
                BARS[(px * BARS.len() / width).min(BARS.len() - 1)]
            } else {
                let span = (width - 1).max(1);
                let l = 16 + (px * (235 - 16) + span / 2) / span;
                (l.min(235) as u8, CHROMA_NEUTRAL, CHROMA_NEUTRAL)
            }
        };
        for py in 0..yh {
            for px in 0..yw {
                y[py * yw + px] = sample(px, py).0;
            }
        }
        // Chroma: sample the top-left luma position of each 2×2 block, which keeps bar
        // edges sharp and is exact for the flat areas.
        for cy in 0..ch {
            for cx in 0..cw {
                let (_, u, v) = sample(cx * 2, cy * 2);
                cb[cy * cw + cx] = u;
                cr[cy * cw + cx] = v;
            }
        }
        Picture {
            width,
            height,
            mb_w,
            mb_h,
            y,
            cb,
            cr,
        }
    }

    /// Appends macroblock (`mbx`, `mby`)'s samples in I_PCM order: 256 luma, 64 Cb,
    /// 64 Cr, each in raster order. Out-of-range macroblocks append nothing.
    pub fn push_mb(&self, mbx: usize, mby: usize, out: &mut Vec<u8>) {
        if mbx >= self.mb_w || mby >= self.mb_h {
            return;
        }
        push_mb_planes(&self.y, &self.cb, &self.cr, self.mb_w, mbx, mby, out);
    }
}

/// Appends one macroblock's 384 I_PCM bytes taken from planes of stride `mb_w * 16`
/// (luma) and `mb_w * 8` (chroma). Rows missing from short planes are skipped, so a
/// caller must pass planes covering the macroblock.
pub fn push_mb_planes(
    y: &[u8],
    cb: &[u8],
    cr: &[u8],
    mb_w: usize,
    mbx: usize,
    mby: usize,
    out: &mut Vec<u8>,
) {
    let ys = mb_w * 16;
    for row in 0..16 {
        let start = (mby * 16 + row) * ys + mbx * 16;
        if let Some(r) = y.get(start..start + 16) {
            out.extend_from_slice(r);
        }
    }
    let cs = mb_w * 8;
    for plane in [cb, cr] {
        for row in 0..8 {
            let start = (mby * 8 + row) * cs + mbx * 8;
            if let Some(r) = plane.get(start..start + 8) {
                out.extend_from_slice(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_in_range_and_padded() {
        for (w, h) in [(320, 240), (256, 16), (640, 360), (258, 18)] {
            let p = Picture::test_pattern(w, h);
            assert_eq!(p.mb_w, w.div_ceil(16));
            assert_eq!(p.mb_h, h.div_ceil(16));
            assert_eq!(p.y.len(), p.mb_w * p.mb_h * 256);
            assert_eq!(p.cb.len(), p.mb_w * p.mb_h * 64);
            for s in p.y.iter().chain(&p.cb).chain(&p.cr) {
                assert!((16..=235).contains(s));
            }
            let mut mb = Vec::new();
            p.push_mb(p.mb_w - 1, p.mb_h - 1, &mut mb);
            assert_eq!(mb.len(), 384);
        }
        let p = Picture::test_pattern(320, 240);
        // Barcode area black, bars below it, ramp at the bottom.
        assert_eq!(p.y[0], BLACK);
        assert_eq!(p.y[20 * 320], 180);
        assert_eq!(p.y[20 * 320 + 319], 35);
        assert_eq!(p.y[239 * 320], 16);
        assert_eq!(p.y[239 * 320 + 319], 235);
    }
}
