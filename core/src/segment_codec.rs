//! The canonical, self-describing, versioned encoding of a [`Segment`] (docs/design.md §3):
//! made once by the node that cut the segment, carried unchanged by M4F and stored
//! unchanged by the DVR. The layout is written down in `docs/protocol.md` ("Segment
//! encoding") and pinned by a snapshot test.
//!
//! Owns: `encode` / `decode` and the media-info sub-encoding. Must not: mux to any
//! player format (that is `mux`).
//!
//! Layout, all integers big-endian:
//! ```text
//! "TSEG" version:u8=1 flags:u8=0 utc_start_ms:u64 duration_ms:u32
//! media_info  (see encode_media_info)
//! frame_count:u32
//! frame_count × { track:u8 flags:u8(bit0 keyframe) dts:u64 pts_delta:u32
//!                 capture_ms:u64 epoch:u64 seq:u64 len:u32 payload[len] }
//! ```

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::bytes_io::{put_bytes16, DecodeError, Reader};
use crate::media::{Frame, MediaInfo, Position, TrackInfo, TrackParams};
use crate::segment::Segment;

pub const MAGIC: &[u8; 4] = b"TSEG";
pub const VERSION: u8 = 1;
/// Largest frame payload accepted when decoding.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Most frames accepted in one segment (an hour at 250 frames/s).
pub const MAX_FRAMES: usize = 900_000;
/// Most tracks in a media info.
pub const MAX_TRACKS: usize = 16;

const CODEC_H264: u8 = 1;
const CODEC_AAC: u8 = 2;

/// Appends the media-info encoding:
/// `track_count:u8` then per track `id:u8 codec:u8` and
/// H.264 `width:u16 height:u16 fps:u16 sps:bytes16 pps:bytes16` or
/// AAC `sample_rate:u32 channels:u8 frame_samples:u16 config:bytes16`.
pub fn encode_media_info(mi: &MediaInfo, out: &mut Vec<u8>) {
    let tracks = &mi.tracks[..mi.tracks.len().min(MAX_TRACKS)];
    out.put_u8(tracks.len() as u8);
    for t in tracks {
        out.put_u8(t.id);
        match &t.params {
            TrackParams::H264 {
                sps,
                pps,
                width,
                height,
                fps,
            } => {
                out.put_u8(CODEC_H264);
                out.put_u16(*width);
                out.put_u16(*height);
                out.put_u16(*fps);
                put_bytes16(out, sps);
                put_bytes16(out, pps);
            }
            TrackParams::Aac {
                config,
                sample_rate,
                channels,
                frame_samples,
            } => {
                out.put_u8(CODEC_AAC);
                out.put_u32(*sample_rate);
                out.put_u8(*channels);
                out.put_u16(*frame_samples);
                put_bytes16(out, config);
            }
        }
    }
}

pub fn decode_media_info(r: &mut Reader) -> Result<MediaInfo, DecodeError> {
    let n = r.u8("track count")? as usize;
    if n > MAX_TRACKS {
        return Err(DecodeError::TooLarge {
            what: "track count",
            len: n,
            limit: MAX_TRACKS,
        });
    }
    let mut tracks = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u8("track id")?;
        let params = match r.u8("codec")? {
            CODEC_H264 => TrackParams::H264 {
                width: r.u16("width")?,
                height: r.u16("height")?,
                fps: r.u16("fps")?,
                sps: r.bytes16("sps")?,
                pps: r.bytes16("pps")?,
            },
            CODEC_AAC => {
                let sample_rate = r.u32("sample rate")?;
                if sample_rate == 0 {
                    return Err(DecodeError::Invalid {
                        what: "sample rate",
                        detail: "zero".into(),
                    });
                }
                TrackParams::Aac {
                    sample_rate,
                    channels: r.u8("channels")?,
                    frame_samples: r.u16("frame samples")?,
                    config: r.bytes16("audio config")?,
                }
            }
            other => {
                return Err(DecodeError::Invalid {
                    what: "codec",
                    detail: format!("unknown codec id {other}"),
                })
            }
        };
        tracks.push(TrackInfo { id, params });
    }
    Ok(MediaInfo { tracks })
}

/// Encodes a segment. Frame payloads are copied once into the result.
pub fn encode(seg: &Segment) -> Bytes {
    let mut out = Vec::with_capacity(encoded_len_hint(seg));
    encode_into(seg, &mut out);
    Bytes::from(out)
}

/// About how many bytes `encode` produces (exact but for the media info).
pub fn encoded_len_hint(seg: &Segment) -> usize {
    128 + seg.payload_bytes() + seg.frames.len() * FRAME_HEADER_LEN
}

/// Appends the encoding of `seg` to `out`.
pub fn encode_into(seg: &Segment, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(0);
    out.put_u64(seg.utc_start_ms);
    out.put_u32(seg.duration_ms);
    encode_media_info(&seg.media_info, out);
    out.put_u32(seg.frames.len() as u32);
    for f in &seg.frames {
        encode_frame(f, out);
    }
}

/// Bytes of a frame's encoding besides its payload.
pub const FRAME_HEADER_LEN: usize = 42;

/// Encodes one frame (the layout shared by segments and M4S frame messages).
pub fn encode_frame(f: &Frame, out: &mut Vec<u8>) {
    out.put_u8(f.track);
    out.put_u8(f.keyframe as u8);
    out.put_u64(f.dts);
    out.put_u32(f.pts.saturating_sub(f.dts).min(u32::MAX as u64) as u32);
    out.put_u64(f.capture_ms);
    out.put_u64(f.pos.epoch);
    out.put_u64(f.pos.seq);
    out.put_u32(f.payload.len() as u32);
    out.extend_from_slice(&f.payload);
}

/// Decodes one frame; its track must be one of `media_info`'s. The payload shares
/// the reader's buffer.
pub fn decode_frame(r: &mut Reader, media_info: &MediaInfo) -> Result<Frame, DecodeError> {
    let track = r.u8("frame track")?;
    if media_info.track(track).is_none() {
        return Err(DecodeError::Invalid {
            what: "frame",
            detail: format!("track {track} is not in the media info"),
        });
    }
    let flags = r.u8("frame flags")?;
    let dts = r.u64("dts")?;
    let pts = dts.saturating_add(r.u32("pts delta")? as u64);
    let capture_ms = r.u64("capture time")?;
    let epoch = r.u64("epoch")?;
    let seq = r.u64("sequence")?;
    let len = r.u32("payload length")? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            what: "frame payload",
            len,
            limit: MAX_FRAME_BYTES,
        });
    }
    let payload = r.bytes(len, "frame payload")?;
    Ok(Frame {
        track,
        dts,
        pts,
        keyframe: flags & 1 != 0,
        capture_ms,
        pos: Position { epoch, seq },
        payload,
    })
}

/// Decodes a segment; frame payloads share `buf`. Any malformed input is an error.
pub fn decode(buf: Bytes) -> Result<Segment, DecodeError> {
    let mut r = Reader::new(buf);
    r.expect_magic(MAGIC, "Tern segment")?;
    let version = r.u8("segment version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "segment encoding",
            found: version,
            supported: VERSION,
        });
    }
    let _flags = r.u8("segment flags")?;
    let utc_start_ms = r.u64("utc start")?;
    let duration_ms = r.u32("duration")?;
    let media_info = decode_media_info(&mut r)?;
    let count = r.u32("frame count")? as usize;
    if count > MAX_FRAMES {
        return Err(DecodeError::TooLarge {
            what: "frame count",
            len: count,
            limit: MAX_FRAMES,
        });
    }
    // Never trust the count for an allocation: each frame needs at least 42 bytes.
    let mut frames = Vec::with_capacity(count.min(r.remaining() / FRAME_HEADER_LEN));
    for _ in 0..count {
        frames.push(decode_frame(&mut r, &media_info)?);
    }
    r.finish()?;
    Ok(Segment {
        media_info: Arc::new(media_info),
        utc_start_ms,
        duration_ms,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Segment {
        let mi = MediaInfo {
            tracks: vec![
                TrackInfo {
                    id: 1,
                    params: TrackParams::H264 {
                        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x28]),
                        pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
                        width: 320,
                        height: 240,
                        fps: 25,
                    },
                },
                TrackInfo {
                    id: 2,
                    params: TrackParams::Aac {
                        config: Bytes::from_static(&[0x11, 0x90]),
                        sample_rate: 48_000,
                        channels: 2,
                        frame_samples: 1024,
                    },
                },
            ],
        };
        let f = |track, dts, keyframe, seq, payload: &'static [u8]| Frame {
            track,
            dts,
            pts: dts,
            keyframe,
            capture_ms: 1_764_000_000_000 + seq * 20,
            pos: Position { epoch: 7, seq },
            payload: Bytes::from_static(payload),
        };
        Segment {
            media_info: Arc::new(mi),
            utc_start_ms: 1_764_000_000_000,
            duration_ms: 40,
            frames: vec![
                f(1, 0, true, 0, &[0, 0, 0, 1, 0x09, 0xf0]),
                f(2, 0, true, 1, &[0x21, 0x00]),
                f(1, 3600, false, 2, &[0, 0, 0, 1, 0x41]),
            ],
        }
    }

    fn hex(b: &[u8]) -> String {
        b.chunks(16)
            .map(|c| {
                c.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn golden_bytes() {
        insta::assert_snapshot!(hex(&encode(&sample())));
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(decode(encode(&s)), Ok(s));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = encode(&sample());
        for n in 0..b.len() {
            assert!(decode(b.slice(..n)).is_err(), "prefix {n} decoded");
        }
    }

    #[test]
    fn newer_version_is_a_clear_error() {
        let mut v = encode(&sample()).to_vec();
        v[4] = 2;
        let e = decode(Bytes::from(v)).unwrap_err();
        assert!(e.to_string().contains("version 2 is not supported"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic fuzz: flip bytes of a valid encoding.
        let b = encode(&sample()).to_vec();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = b.clone();
            let i = (x as usize) % v.len();
            v[i] = (x >> 32) as u8;
            let _ = decode(Bytes::from(v));
        }
    }
}
