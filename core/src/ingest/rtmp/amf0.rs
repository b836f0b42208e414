//! AMF0, the value encoding of RTMP commands (`connect`, `publish`, `_result`,
//! `onStatus`) and of `onMetaData`.
//!
//! Owns: decoding what a peer sends (bounded nesting, never allocating by a count
//! the peer claims) and encoding the few values Tern answers with. Must not: know
//! which command means what (that is the session).

use thiserror::Error;

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 8;

/// An AMF0 value. Objects keep their properties in the order sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    String(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    /// A strict array.
    Array(Vec<Amf>),
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AmfError {
    #[error("AMF0 value cut short")]
    Truncated,
    #[error("AMF0 marker {0:#04x} is not supported")]
    Marker(u8),
    #[error("AMF0 values nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

impl Amf {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Property `key` of an object (or ECMA array).
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self.at.checked_add(n).ok_or(AmfError::Truncated)?;
        let s = self.data.get(self.at..end).ok_or(AmfError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    /// Properties up to the object-end marker (`00 00 09`).
    fn props(&mut self, depth: usize) -> Result<Vec<(String, Amf)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 && self.data.get(self.at) == Some(&9) {
                self.at += 1;
                return Ok(props);
            }
            let key = self.string(len)?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Amf::Number(self.f64()?),
            0x01 => Amf::Bool(self.u8()? != 0),
            0x02 => {
                let len = usize::from(self.u16()?);
                Amf::String(self.string(len)?)
            }
            0x03 => Amf::Object(self.props(depth)?),
            0x05 => Amf::Null,
            0x06 => Amf::Undefined,
            0x08 => {
                // ECMA array: a count (not trusted) and properties.
                self.u32()?;
                Amf::Object(self.props(depth)?)
            }
            0x0A => {
                let n = self.u32()?;
                // Every value takes at least one byte: a count beyond what is left
                // is a lie, and nothing is reserved for it.
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.value(depth + 1)?);
                }
                Amf::Array(v)
            }
            0x0B => {
                let ms = self.f64()?;
                self.u16()?; // time zone, unused
                Amf::Number(ms)
            }
            0x0C => {
                let len = usize::try_from(self.u32()?).map_err(|_| AmfError::Truncated)?;
                Amf::String(self.string(len)?)
            }
            0x0D => Amf::Undefined,
            0x10 => {
                let len = usize::from(self.u16()?);
                self.take(len)?; // class name
                Amf::Object(self.props(depth)?)
            }
            m => return Err(AmfError::Marker(m)),
        })
    }
}

/// Every value of `data`, in order.
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf>, AmfError> {
    let mut r = Reader { data, at: 0 };
    let mut out = Vec::new();
    while r.at < data.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Appends `v` to `out`.
pub fn encode(v: &Amf, out: &mut Vec<u8>) {
    match v {
        Amf::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Amf::String(s) => {
            out.push(0x02);
            put_str(out, s);
        }
        Amf::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                put_str(out, k);
                encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
        Amf::Null => out.push(0x05),
        Amf::Undefined => out.push(0x06),
        Amf::Array(items) => {
            out.push(0x0A);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                encode(i, out);
            }
        }
    }
}

/// The encoding of several values one after the other.
pub fn encode_all(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = vec![
            Amf::String("connect".into()),
            Amf::Number(1.0),
            Amf::Object(vec![
                ("app".into(), Amf::String("live".into())),
                ("fpad".into(), Amf::Bool(false)),
                ("nested".into(), Amf::Object(vec![("x".into(), Amf::Null)])),
            ]),
            Amf::Null,
            Amf::Undefined,
            Amf::Array(vec![Amf::Number(2.5)]),
        ];
        let bytes = encode_all(&values);
        assert_eq!(decode_all(&bytes), Ok(values.clone()));
        assert_eq!(values[2].get("app").and_then(Amf::as_str), Some("live"));
    }

    #[test]
    fn ecma_arrays_long_strings_and_dates_decode() {
        // onMetaData as ffmpeg sends it: an ECMA array.
        let mut b = vec![0x02, 0, 10];
        b.extend_from_slice(b"onMetaData");
        b.extend_from_slice(&[0x08, 0, 0, 0, 1, 0, 5]);
        b.extend_from_slice(b"width");
        b.push(0);
        b.extend_from_slice(&320f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9, 0x0C, 0, 0, 0, 2, b'h', b'i', 0x0B]);
        b.extend_from_slice(&1f64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        let v = decode_all(&b).expect("decodes");
        assert_eq!(v[1].get("width").and_then(Amf::as_number), Some(320.0));
        assert_eq!(v[2], Amf::String("hi".into()));
        assert_eq!(v[3], Amf::Number(1.0));
    }

    #[test]
    fn hostile_values_are_errors() {
        assert_eq!(decode_all(&[0x00, 1, 2]), Err(AmfError::Truncated));
        assert_eq!(decode_all(&[0x11]), Err(AmfError::Marker(0x11)));
        // A strict array claiming 4 billion items holds none.
        assert_eq!(
            decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::Truncated)
        );
        let deep: Vec<u8> = std::iter::repeat_n([0x0A, 0, 0, 0, 1], 20)
            .flatten()
            .collect();
        assert_eq!(decode_all(&deep), Err(AmfError::TooDeep));
        assert_eq!(decode_all(&[0x03, 0, 1, b'k']), Err(AmfError::Truncated));
    }
}
