//! The barcode every `fake://` frame carries (docs/media.md, "The barcode"): the value
//! `(frame_index << 32) | (capture_ms & 0xFFFF_FFFF)` drawn in the top 16 luma rows as
//! 64 cells of 8×8 pixels, most significant bit first, left to right, continuing on the
//! next 8-pixel row after `width / 8` cells; luma 235 = 1, 16 = 0 (chroma 128 is the
//! caller's business). Readers sample each cell's centre and threshold at 128.
//!
//! Owns: the value layout, drawing into a luma plane and reading it back from a decoded
//! picture, and the latency arithmetic. Must not: know about H.264 or macroblocks.

use crate::media::UtcMs;

/// Number of cells (bits).
pub const CELLS: usize = 64;
/// Cell side in pixels.
pub const CELL: usize = 8;
/// Luma of a 1 cell and of a 0 cell.
pub const ONE: u8 = 235;
pub const ZERO: u8 = 16;
/// Sampled luma at or above this reads as 1.
pub const THRESHOLD: u8 = 128;
/// The smallest picture holding all 64 cells.
pub const MIN_WIDTH: usize = 256;
pub const MIN_HEIGHT: usize = 16;

/// The barcode value of frame `frame_index` captured at `capture_ms`.
pub fn value(frame_index: u64, capture_ms: UtcMs) -> u64 {
    (frame_index << 32) | (capture_ms & 0xFFFF_FFFF)
}

/// `(frame index, capture ms low 32 bits)` of a barcode value.
pub fn split(v: u64) -> (u64, u32) {
    (v >> 32, (v & 0xFFFF_FFFF) as u32)
}

/// Latency in ms of a frame whose barcode carries `capture_low32`, seen at `now_ms`
/// (mod 2^32 arithmetic, so it works across the low word's wrap every ~49.7 days).
pub fn latency_ms(capture_low32: u32, now_ms: UtcMs) -> u32 {
    (now_ms as u32).wrapping_sub(capture_low32)
}

/// Top-left pixel of cell `i` in a picture `width` pixels wide.
fn cell_origin(i: usize, width: usize) -> (usize, usize) {
    let per_row = (width / CELL).max(1);
    ((i % per_row) * CELL, (i / per_row) * CELL)
}

/// Draws `v` into the top 16 rows of a luma plane with row stride `stride` whose
/// visible width is `width` (≤ `stride`). The whole 16-row band (all `stride` columns)
/// is first cleared to [`ZERO`]. Cells that do not fit (width < 256) are left out;
/// rows beyond the end of `luma` are ignored.
pub fn draw(luma: &mut [u8], stride: usize, width: usize, v: u64) {
    let band = (stride * MIN_HEIGHT).min(luma.len());
    luma[..band].fill(ZERO);
    let width = width.min(stride);
    for i in 0..CELLS {
        if (v >> (CELLS - 1 - i)) & 1 == 0 {
            continue;
        }
        let (x0, y0) = cell_origin(i, width);
        if x0 + CELL > width || y0 + CELL > MIN_HEIGHT {
            continue;
        }
        for y in y0..y0 + CELL {
            let start = y * stride + x0;
            if let Some(row) = luma.get_mut(start..start + CELL) {
                row.fill(ONE);
            }
        }
    }
}

/// Reads the barcode from a decoded picture's luma plane (row stride = width),
/// sampling each cell's centre, threshold 128. `None` if the picture is too small
/// (or the plane shorter than `width * height`).
pub fn read(luma: &[u8], width: usize, height: usize) -> Option<u64> {
    if width < MIN_WIDTH || height < MIN_HEIGHT || luma.len() < width.checked_mul(height)? {
        return None;
    }
    let mut v = 0u64;
    for i in 0..CELLS {
        let (x0, y0) = cell_origin(i, width);
        let s = *luma.get((y0 + CELL / 2) * width + x0 + CELL / 2)?;
        v = (v << 1) | u64::from(s >= THRESHOLD);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_split_latency() {
        let v = value(7, 0x1_2345_6789);
        assert_eq!(v, (7 << 32) | 0x2345_6789);
        assert_eq!(split(v), (7, 0x2345_6789));
        assert_eq!(split(u64::MAX), (0xFFFF_FFFF, 0xFFFF_FFFF));
        assert_eq!(latency_ms(1000, 1250), 250);
        // Across the wrap of the low 32 bits.
        assert_eq!(latency_ms(0xFFFF_FF00, 0x1_0000_0010), 0x110);
    }

    #[test]
    fn draw_read_round_trip() {
        let values = [
            0,
            u64::MAX,
            1,
            1 << 63,
            0x8000_0001_0000_0001,
            value(12345, 1_700_000_000_123),
            0x0123_4567_89ab_cdef,
            0xAAAA_AAAA_5555_5555,
        ];
        for (w, h) in [(320, 240), (256, 16), (640, 360), (1920, 1080), (258, 16)] {
            let mut luma = vec![100u8; w * h];
            for &v in &values {
                draw(&mut luma, w, w, v);
                assert_eq!(read(&luma, w, h), Some(v), "{w}x{h} {v:#x}");
                // Slight decoding noise does not matter.
                let noisy: Vec<u8> = luma
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        if i % 2 == 0 {
                            s.saturating_add(20)
                        } else {
                            s.saturating_sub(20)
                        }
                    })
                    .collect();
                assert_eq!(read(&noisy, w, h), Some(v));
            }
        }
        // Drawing into a padded plane (stride > width) reads back from the cropped one.
        let (w, stride, h) = (328, 336, 32);
        let mut padded = vec![50u8; stride * h];
        draw(&mut padded, stride, w, 0xfeed_beef_dead_cafe);
        let cropped: Vec<u8> = padded
            .chunks(stride)
            .flat_map(|r| r[..w].iter().copied())
            .collect();
        assert_eq!(read(&cropped, w, h), Some(0xfeed_beef_dead_cafe));
    }

    #[test]
    fn layout_msb_first_wrapping_rows() {
        let (w, h) = (320, 16);
        let mut luma = vec![0u8; w * h];
        draw(&mut luma, w, w, 1 << 63);
        assert_eq!(luma[0], ONE);
        assert_eq!(luma[7 * w + 7], ONE);
        assert_eq!(luma[8], ZERO);
        // Bit 40 from the top (index 40) starts the second cell row at 320 px.
        draw(&mut luma, w, w, 1 << (63 - 40));
        assert_eq!(luma[8 * w], ONE);
        assert_eq!(luma[0], ZERO);
        assert_eq!(luma[15 * w + 7], ONE);
    }

    #[test]
    fn too_small() {
        assert_eq!(read(&[0; 255 * 16], 255, 16), None);
        assert_eq!(read(&[0; 256 * 15], 256, 15), None);
        assert_eq!(read(&[0; 100], 256, 16), None);
        // Drawing into something too small does not panic.
        let mut tiny = vec![0u8; 10];
        draw(&mut tiny, 16, 16, u64::MAX);
    }
}
