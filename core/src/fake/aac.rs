//! The audio of `fake://`: raw AAC-LC frames of 1024 samples that decode to exact
//! silence, and their AudioSpecificConfig (docs/media.md, "fake:// audio").
//!
//! Owns: those constant frames and the config bytes. Must not: add ADTS or any other
//! container framing (the muxers do), or encode real audio.

/// Sample rate of the fake audio track.
pub const SAMPLE_RATE: u32 = 48_000;
/// Channels of the fake audio track.
pub const CHANNELS: u8 = 2;
/// Samples per AAC-LC frame.
pub const FRAME_SAMPLES: u16 = 1024;

/// One raw stereo AAC-LC frame of silence (no ADTS header).
pub const SILENT_STEREO_FRAME: [u8; 9] = [0x21, 0x00, 0x49, 0x90, 0x02, 0x19, 0x00, 0x23, 0x80];
/// One raw mono AAC-LC frame of silence (no ADTS header).
pub const SILENT_MONO_FRAME: [u8; 6] = [0x00, 0xC8, 0x00, 0x80, 0x23, 0x80];

/// AudioSpecificConfig of the fake track: AAC-LC, 48 kHz, stereo.
pub const AUDIO_SPECIFIC_CONFIG: [u8; 2] = [0x11, 0x90];

/// MPEG-4 sampling_frequency_index of a sample rate, if it has one.
pub fn sampling_frequency_index(sample_rate: u32) -> Option<u8> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    RATES
        .iter()
        .position(|&r| r == sample_rate)
        .map(|i| i as u8)
}

/// The 2-byte AudioSpecificConfig of AAC-LC (object type 2) at `sample_rate` with
/// `channels` (1..=7), or `None` for a rate without an index or a bad channel count.
pub fn audio_specific_config(sample_rate: u32, channels: u8) -> Option<[u8; 2]> {
    let sfi = sampling_frequency_index(sample_rate)?;
    if !(1..=7).contains(&channels) {
        return None;
    }
    let v: u16 = (2 << 11) | (u16::from(sfi) << 7) | (u16::from(channels) << 3);
    Some(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        assert_eq!(
            audio_specific_config(48_000, 2),
            Some(AUDIO_SPECIFIC_CONFIG)
        );
        assert_eq!(audio_specific_config(44_100, 2), Some([0x12, 0x10]));
        assert_eq!(audio_specific_config(48_000, 1), Some([0x11, 0x88]));
        assert_eq!(audio_specific_config(48_001, 1), None);
        assert_eq!(audio_specific_config(48_000, 0), None);
    }
}
