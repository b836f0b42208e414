//! The tag that authenticates one framed message, in either protocol version:
//! HMAC-SHA256 (v1) or keyed BLAKE3 (v2, v3) under the direction's session key, over
//! `seq u64 BE ‖ len u32 BE ‖ type ‖ payload` (of a v3 `SegmentByDigest`, the
//! payload's first 38 bytes: the segment's header and digest), truncated to 16
//! bytes.
//!
//! Owns: the two MAC algorithms and the constant-time comparison. Must not: frame
//! messages or decide which version a connection speaks.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::cluster::auth::MESSAGE_TAG_LEN;
use crate::cluster::ProtocolVersion;

/// A message tag being computed, fed the message's bytes as they come.
pub(crate) enum Tag {
    HmacSha256(Hmac<Sha256>),
    /// Boxed: a BLAKE3 hasher carries a stack of chaining values (about 1.9 KB).
    Blake3(Box<blake3::Hasher>),
}

impl Tag {
    /// Starts the tag of message `seq` of `len` bytes (type + payload).
    pub(crate) fn start(version: ProtocolVersion, key: &[u8; 32], seq: u64, len: u32) -> Tag {
        let mut t = match version {
            ProtocolVersion::V1 => Tag::HmacSha256(
                <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
            ),
            ProtocolVersion::V2 | ProtocolVersion::V3 => {
                Tag::Blake3(Box::new(blake3::Hasher::new_keyed(key)))
            }
        };
        t.update(&seq.to_be_bytes());
        t.update(&len.to_be_bytes());
        t
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Tag::HmacSha256(m) => m.update(bytes),
            Tag::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The 16 bytes sent after the message.
    pub(crate) fn finish(self) -> [u8; MESSAGE_TAG_LEN] {
        let mut out = [0u8; MESSAGE_TAG_LEN];
        match self {
            Tag::HmacSha256(m) => {
                out.copy_from_slice(&m.finalize().into_bytes()[..MESSAGE_TAG_LEN])
            }
            Tag::Blake3(h) => out.copy_from_slice(&h.finalize().as_bytes()[..MESSAGE_TAG_LEN]),
        }
        out
    }

    /// Whether `received` is this tag, compared in constant time.
    pub(crate) fn verify(self, received: &[u8]) -> bool {
        let ours = self.finish();
        if received.len() != ours.len() {
            return false;
        }
        let diff = ours.iter().zip(received).fold(0u8, |d, (a, b)| d | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}
