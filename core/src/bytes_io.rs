//! Big-endian reading and writing helpers for Tern's own binary encodings (the
//! canonical segment encoding now, the wire codecs later).
//!
//! Owns: bounds-checked primitive reads that turn short or hostile input into a
//! [`DecodeError`], never a panic. Must not: know any message layout.

use bytes::{BufMut, Bytes};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends inside {what} (needed {needed} more bytes)")]
    Truncated { what: &'static str, needed: usize },
    #[error("not a {expected} (bad magic bytes)")]
    BadMagic { expected: &'static str },
    #[error("{what} version {found} is not supported (this build reads version {supported}); upgrade the older node")]
    UnsupportedVersion {
        what: &'static str,
        found: u8,
        supported: u8,
    },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{what} is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{0} trailing bytes after the end of the message")]
    Trailing(usize),
    /// Well-formed, but its own digest does not match its bytes: damaged where it
    /// was stored, not in transit (a message carrying it passed its MAC).
    #[error("{what}: its BLAKE3 digest does not match its bytes (damaged)")]
    Damaged { what: &'static str },
}

/// A cursor over a shared buffer; byte strings it returns share the buffer.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Exactly `n` bytes, shared with the input buffer (no copy).
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// A byte string prefixed by its u16 length.
    pub fn bytes16(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let n = self.u16(what)? as usize;
        self.bytes(n, what)
    }

    pub fn expect_magic(
        &mut self,
        magic: &[u8],
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        if self.take(magic.len(), expected)? != magic {
            return Err(DecodeError::BadMagic { expected });
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Writes a byte string prefixed by its u16 length. The caller guarantees the length
/// fits (codec configs are small; encoders check before calling).
pub fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len().min(u16::MAX as usize);
    out.put_u16(len as u16);
    out.extend_from_slice(&b[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.u32("b"),
            Err(DecodeError::Truncated {
                what: "b",
                needed: 3
            })
        );
    }
}
