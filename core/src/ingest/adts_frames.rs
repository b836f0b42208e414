//! Splitting an ADTS byte stream (AAC in MPEG-TS) into raw AAC frames, with the
//! AudioSpecificConfig each header implies.
//!
//! Owns: the ADTS header fields and frame boundaries, across PES boundaries (a frame
//! may be split between two PES packets; the remainder is kept, bounded). Must not:
//! decode audio or judge timestamps.

use bytes::Bytes;

/// Sampling frequencies by `sampling_frequency_index` (ISO 14496-3).
const FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];
/// Most bytes kept between PES packets (an ADTS frame is at most 8191 bytes).
const MAX_PENDING: usize = 8192;

/// The stream parameters an ADTS header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsConfig {
    pub object_type: u8,
    pub frequency_index: u8,
    pub channel_config: u8,
}

impl AdtsConfig {
    pub fn sample_rate(&self) -> u32 {
        FREQUENCIES
            .get(usize::from(self.frequency_index))
            .copied()
            .unwrap_or(0)
    }

    /// The 2-byte AudioSpecificConfig.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let v = (u16::from(self.object_type) << 11)
            | (u16::from(self.frequency_index) << 7)
            | (u16::from(self.channel_config) << 3);
        v.to_be_bytes()
    }
}

/// One raw AAC frame (no header) and its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacFrame {
    pub config: AdtsConfig,
    pub data: Bytes,
}

/// Splits ADTS streams; one per audio PID.
#[derive(Default)]
pub struct AdtsSplitter {
    pending: Vec<u8>,
    /// Bytes skipped looking for a header (garbage, a frame lost mid-way).
    pub skipped: u64,
}

impl AdtsSplitter {
    /// Forgets a partial frame (packets were lost).
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// The frames completed by `data`, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<AacFrame> {
        self.pending.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut i = 0;
        let d = &self.pending;
        while i + 7 <= d.len() {
            let h = &d[i..];
            if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
                i += 1;
                self.skipped += 1;
                continue;
            }
            let protection_absent = h[1] & 0x01 == 1;
            let object_type = (h[2] >> 6) + 1;
            let frequency_index = (h[2] >> 2) & 0x0F;
            let channel_config = ((h[2] & 0x01) << 2) | (h[3] >> 6);
            let len = (usize::from(h[3] & 0x03) << 11)
                | (usize::from(h[4]) << 3)
                | usize::from(h[5] >> 5);
            let header = if protection_absent { 7 } else { 9 };
            if frequency_index >= 13 || len < header {
                i += 1;
                self.skipped += 1;
                continue;
            }
            if i + len > d.len() {
                break;
            }
            frames.push(AacFrame {
                config: AdtsConfig {
                    object_type,
                    frequency_index,
                    channel_config,
                },
                data: Bytes::copy_from_slice(&d[i + header..i + len]),
            });
            i += len;
        }
        self.pending.drain(..i);
        if self.pending.len() > MAX_PENDING {
            self.skipped += self.pending.len() as u64;
            self.pending.clear();
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TrackParams;
    use crate::mux::adts::AdtsParams;

    fn adts(payload: &[u8]) -> Vec<u8> {
        let params = AdtsParams::from_track(&TrackParams::Aac {
            config: Bytes::from_static(&[0x11, 0x90]),
            sample_rate: 48_000,
            channels: 2,
            frame_samples: 1024,
        })
        .expect("AAC-LC");
        let mut v = params.header(payload.len()).expect("fits").to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn splits_frames_across_pushes_and_reads_the_config() {
        let mut stream = adts(&[1; 100]);
        stream.extend(adts(&[2; 50]));
        let mut s = AdtsSplitter::default();
        let a = s.push(&stream[..120]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].data.len(), 100);
        assert_eq!(a[0].config.audio_specific_config(), [0x11, 0x90]);
        assert_eq!(a[0].config.sample_rate(), 48_000);
        let b = s.push(&stream[120..]);
        assert_eq!(b.len(), 1);
        assert_eq!(&b[0].data[..], &[2; 50][..]);
    }

    #[test]
    fn garbage_is_skipped_and_bounded() {
        let mut s = AdtsSplitter::default();
        let mut junk = vec![0xAB; 20_000];
        junk.extend(adts(&[3; 10]));
        let f = s.push(&junk);
        assert_eq!(f.len(), 1);
        assert!(s.skipped >= 20_000);
        // A header promising more than ever comes does not grow the buffer forever.
        for _ in 0..10 {
            s.push(&[0xFF, 0xF1, 0x4C, 0x83, 0xFF, 0xE0, 0x00]);
            s.push(&[0u8; 4000]);
        }
        assert!(s.pending.len() <= MAX_PENDING);
    }
}
