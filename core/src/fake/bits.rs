//! Bit-level writing of H.264 syntax: fixed-width `u(n)`, exp-Golomb `ue(v)`/`se(v)`,
//! byte alignment and RBSP trailing bits; and the emulation-prevention layer that turns
//! an RBSP into NAL unit payload bytes (and back).
//!
//! Owns: bit packing and `00 00 03` escaping. Must not: know any H.264 syntax element
//! (that is `fake::h264`), allocate per bit, or panic on any input.

/// Writes bits most significant first into a growing byte buffer.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Bits of the partial byte, left-aligned in the low `nbits` of `cur`.
    cur: u8,
    nbits: u8,
}

impl BitWriter {
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    pub fn with_capacity(bytes: usize) -> BitWriter {
        BitWriter {
            buf: Vec::with_capacity(bytes),
            cur: 0,
            nbits: 0,
        }
    }

    /// One bit (`true` = 1).
    pub fn bit(&mut self, b: bool) {
        self.cur = (self.cur << 1) | u8::from(b);
        self.nbits += 1;
        if self.nbits == 8 {
            self.buf.push(self.cur);
            self.cur = 0;
            self.nbits = 0;
        }
    }

    /// `u(n)`: the low `n` bits of `v`, most significant first (`n` ≤ 64).
    pub fn u(&mut self, n: u32, v: u64) {
        let n = n.min(64);
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    /// `ue(v)`: unsigned exp-Golomb.
    pub fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros(); // bits in x, ≥ 1
        self.u(len - 1, 0);
        self.u(len, x);
    }

    /// `se(v)`: signed exp-Golomb (1 → 1, -1 → 2, 2 → 3, ...).
    pub fn se(&mut self, v: i32) {
        let k = if v > 0 {
            (i64::from(v) * 2 - 1) as u64
        } else {
            (-i64::from(v) * 2) as u64
        };
        // k ≤ 2^32, so k + 1 fits in 33 bits.
        let x = k + 1;
        let len = 64 - x.leading_zeros();
        self.u(len - 1, 0);
        self.u(len, x);
    }

    pub fn is_aligned(&self) -> bool {
        self.nbits == 0
    }

    /// Zero bits up to the next byte boundary (`pcm_alignment_zero_bit`,
    /// `alignment_zero_bit`).
    pub fn align_zero(&mut self) {
        while self.nbits != 0 {
            self.bit(false);
        }
    }

    /// `rbsp_trailing_bits()`: the stop bit, then zero bits to the byte boundary.
    pub fn trailing_bits(&mut self) {
        self.bit(true);
        self.align_zero();
    }

    /// Whole bytes; fast when aligned, bit by bit otherwise.
    pub fn bytes(&mut self, data: &[u8]) {
        if self.is_aligned() {
            self.buf.extend_from_slice(data);
        } else {
            for &b in data {
                self.u(8, u64::from(b));
            }
        }
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 + usize::from(self.nbits)
    }

    /// The bytes written so far; a partial last byte is padded with zero bits.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.align_zero();
        self.buf
    }
}

/// Streaming emulation prevention: feed RBSP bytes in pieces, get NAL payload bytes.
/// The state is the number of zero bytes just written (0, 1 or 2+).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Escaper {
    zeros: u8,
    last: Option<u8>,
}

impl Escaper {
    pub fn new() -> Escaper {
        Escaper::default()
    }

    /// True when the next byte will be escaped exactly as at the start of a NAL unit
    /// (no zero bytes pending), so pre-escaped data can be appended as is.
    pub fn is_clean(&self) -> bool {
        self.zeros == 0
    }

    /// Appends `rbsp`, escaped, to `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, rbsp: &[u8]) {
        for &b in rbsp {
            if self.zeros >= 2 && b <= 3 {
                out.push(3);
                self.zeros = 0;
            }
            out.push(b);
            if b == 0 {
                self.zeros = self.zeros.saturating_add(1);
            } else {
                self.zeros = 0;
            }
            self.last = Some(b);
        }
    }

    /// Ends the NAL unit: if the RBSP's last byte was `00`, a final `03` is appended
    /// (H.264 7.4.1), so the NAL unit never ends in a zero byte.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.last == Some(0) {
            out.push(3);
        }
    }
}

/// RBSP → NAL unit payload (emulation prevention bytes inserted).
pub fn escape(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
    let mut e = Escaper::new();
    e.push(&mut out, rbsp);
    e.finish(&mut out);
    out
}

/// NAL unit payload → RBSP: drops every `03` that follows two zero bytes.
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0u32;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(f: impl FnOnce(&mut BitWriter)) -> String {
        let mut w = BitWriter::new();
        f(&mut w);
        let n = w.bit_len();
        let bytes = w.into_bytes();
        let mut s = String::new();
        for i in 0..n {
            let bit = (bytes[i / 8] >> (7 - i % 8)) & 1;
            s.push(if bit == 1 { '1' } else { '0' });
        }
        s
    }

    #[test]
    fn exp_golomb_codes() {
        let ue = |v| bits_of(|w| w.ue(v));
        assert_eq!(ue(0), "1");
        assert_eq!(ue(1), "010");
        assert_eq!(ue(2), "011");
        assert_eq!(ue(3), "00100");
        assert_eq!(ue(4), "00101");
        assert_eq!(ue(7), "0001000");
        assert_eq!(ue(25), "000011010");
        assert_eq!(ue(30), "000011111");
        assert_eq!(ue(u32::MAX).len(), 65);
        let se = |v| bits_of(|w| w.se(v));
        assert_eq!(se(0), "1");
        assert_eq!(se(1), "010");
        assert_eq!(se(-1), "011");
        assert_eq!(se(2), "00100");
        assert_eq!(se(-2), "00101");
        assert_eq!(se(i32::MIN).len(), 65);
        assert_eq!(se(i32::MAX).len(), 63);
    }

    #[test]
    fn fixed_width_alignment_and_trailing_bits() {
        assert_eq!(bits_of(|w| w.u(3, 0b101)), "101");
        assert_eq!(bits_of(|w| w.u(8, 0x1ff)), "11111111");
        let mut w = BitWriter::new();
        w.u(3, 0b101);
        assert!(!w.is_aligned());
        w.trailing_bits();
        assert!(w.is_aligned());
        w.bytes(&[0xab]);
        w.bit(true);
        w.align_zero();
        w.bit(true);
        w.bytes(&[0xff]);
        assert_eq!(w.into_bytes(), vec![0b1011_0000, 0xab, 0x80, 0xff, 0x80]);
    }

    #[test]
    fn emulation_prevention() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[0, 0, 0], &[0, 0, 3, 0, 3]),
            (&[0, 0, 0, 1], &[0, 0, 3, 0, 1]),
            (&[0, 0, 1], &[0, 0, 3, 1]),
            (&[0, 0, 2], &[0, 0, 3, 2]),
            (&[0, 0, 3], &[0, 0, 3, 3]),
            (&[0, 0, 4], &[0, 0, 4]),
            (&[0, 1, 0, 0], &[0, 1, 0, 0, 3]),
            (&[0x80, 0, 0], &[0x80, 0, 0, 3]),
            (&[0, 0, 0, 0, 0], &[0, 0, 3, 0, 0, 3, 0, 3]),
            (&[0, 0, 3, 0, 0, 3], &[0, 0, 3, 3, 0, 0, 3, 3]),
            (&[0x65, 0, 0, 0x80], &[0x65, 0, 0, 0x80]),
            (&[], &[]),
        ];
        for (rbsp, nal) in cases {
            assert_eq!(&escape(rbsp)[..], *nal, "escape {rbsp:02x?}");
        }
        // `00 00 00` in the middle of a longer payload.
        assert_eq!(escape(&[1, 0, 0, 0, 2]), vec![1, 0, 0, 3, 0, 2]);
    }

    #[test]
    fn escape_round_trip_and_streaming() {
        // Every 4-byte string over {0,1,2,3,4,0x80} not ending in a lone zero.
        let alphabet = [0u8, 1, 2, 3, 4, 0x80];
        let mut n = 0;
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let rbsp = [a, b, c, d, 0x80];
                        let nal = escape(&rbsp);
                        assert_eq!(unescape(&nal), rbsp, "{rbsp:02x?}");
                        // No start code prefix or 00 00 0x (x ≤ 2) survives.
                        assert!(!nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
                        // Feeding in two pieces gives the same bytes.
                        let mut out = Vec::new();
                        let mut e = Escaper::new();
                        e.push(&mut out, &rbsp[..2]);
                        e.push(&mut out, &rbsp[2..]);
                        e.finish(&mut out);
                        assert_eq!(out, nal);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 1296);
        // Trailing zero pair: `00 00` → `00 00 03` → `00 00`.
        assert_eq!(unescape(&escape(&[7, 0, 0])), vec![7, 0, 0]);
        assert_eq!(unescape(&[0, 0, 3, 0, 0, 3, 3]), vec![0, 0, 0, 0, 3]);
    }
}
