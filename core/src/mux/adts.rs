//! ADTS: the 7-byte header that frames each raw AAC frame in MPEG-TS.
//!
//! Owns: deriving the header fields from the AudioSpecificConfig. Must not: parse or
//! change the AAC payload.

use crate::media::TrackParams;

/// ADTS header length without CRC (`protection_absent` = 1).
pub const ADTS_HEADER_LEN: usize = 7;

/// Sampling frequency table of ISO 14496-3, indexed by `sampling_frequency_index`.
const FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The fields ADTS repeats from the AudioSpecificConfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsParams {
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    pub frequency_index: u8,
    pub channel_config: u8,
}

impl AdtsParams {
    /// From the track's AudioSpecificConfig, or, if that is too short, from the sample
    /// rate and channel count (assuming AAC-LC). `None` for a video track.
    pub fn from_track(params: &TrackParams) -> Option<Self> {
        let TrackParams::Aac {
            config,
            sample_rate,
            channels,
            ..
        } = params
        else {
            return None;
        };
        if config.len() >= 2 {
            let object_type = config[0] >> 3;
            let frequency_index = ((config[0] & 0x07) << 1) | (config[1] >> 7);
            let channel_config = (config[1] >> 3) & 0x0F;
            if (1..=4).contains(&object_type) && frequency_index < 13 {
                return Some(Self {
                    object_type,
                    frequency_index,
                    channel_config,
                });
            }
        }
        let frequency_index = FREQUENCIES.iter().position(|f| f == sample_rate)? as u8;
        Some(Self {
            object_type: 2,
            frequency_index,
            channel_config: (*channels).min(7),
        })
    }

    /// The header for a raw AAC frame of `payload_len` bytes. `None` if the frame is
    /// too long for ADTS's 13-bit length.
    pub fn header(&self, payload_len: usize) -> Option<[u8; ADTS_HEADER_LEN]> {
        let len = payload_len + ADTS_HEADER_LEN;
        if len > 0x1FFF {
            return None;
        }
        let profile = self.object_type.saturating_sub(1) & 0x03;
        Some([
            0xFF,
            0xF1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (self.frequency_index << 2) | ((self.channel_config >> 2) & 0x01),
            ((self.channel_config & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 0x07) as u8) << 5) | 0x1F, // buffer fullness 0x7FF: variable rate
            0xFC,                               // fullness low bits, one raw data block
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn aac(config: &'static [u8]) -> TrackParams {
        TrackParams::Aac {
            config: Bytes::from_static(config),
            sample_rate: 48_000,
            channels: 2,
            frame_samples: 1024,
        }
    }

    #[test]
    fn lc_48k_stereo() {
        let p = AdtsParams::from_track(&aac(&[0x11, 0x90])).expect("aac");
        assert_eq!(
            p,
            AdtsParams {
                object_type: 2,
                frequency_index: 3,
                channel_config: 2
            }
        );
        // 10-byte frame: length 17 = 0b0_0000_0001_0001.
        assert_eq!(
            p.header(10),
            Some([0xFF, 0xF1, 0x4C, 0x80, 0x02, 0x3F, 0xFC])
        );
    }

    #[test]
    fn falls_back_to_rate_and_channels() {
        let p = AdtsParams::from_track(&aac(&[])).expect("aac");
        assert_eq!(p.frequency_index, 3);
        assert_eq!(p.channel_config, 2);
        assert_eq!(p.header(0x2000), None);
    }
}
