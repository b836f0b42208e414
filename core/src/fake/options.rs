//! Options of a `fake://` input (docs/design.md §2), as parsed from its URL query.
//!
//! Owns: the option values, their defaults and their valid ranges. Must not: generate
//! media (that is `fake::source`).

/// `fake://fake?width=&height=&fps=&gop=&bitrate=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeOptions {
    /// Picture width in pixels; 256..=1920, even (the barcode needs 256).
    pub width: u16,
    /// Picture height in pixels; 16..=1088, even.
    pub height: u16,
    /// Frames per second; 1..=60.
    pub fps: u16,
    /// Keyframe interval in milliseconds (`gop=` is given in seconds); 40..=60000.
    pub gop_ms: u32,
    /// Pad video with filler NAL units up to this many bits per second.
    pub bitrate: Option<u64>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            width: 320,
            height: 240,
            fps: 25,
            gop_ms: 1000,
            bitrate: None,
        }
    }
}

/// Valid ranges, checked by the config parser (which reports them with line and
/// column) and by [`FakeOptions::validate`].
pub const WIDTH_RANGE: std::ops::RangeInclusive<u16> = 256..=1920;
pub const HEIGHT_RANGE: std::ops::RangeInclusive<u16> = 16..=1088;
pub const FPS_RANGE: std::ops::RangeInclusive<u16> = 1..=60;
pub const GOP_MS_RANGE: std::ops::RangeInclusive<u32> = 40..=60_000;

impl FakeOptions {
    /// Says what is out of range, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if !WIDTH_RANGE.contains(&self.width) || !self.width.is_multiple_of(2) {
            return Err(format!(
                "width must be even and within {}..={}, got {}",
                WIDTH_RANGE.start(),
                WIDTH_RANGE.end(),
                self.width
            ));
        }
        if !HEIGHT_RANGE.contains(&self.height) || !self.height.is_multiple_of(2) {
            return Err(format!(
                "height must be even and within {}..={}, got {}",
                HEIGHT_RANGE.start(),
                HEIGHT_RANGE.end(),
                self.height
            ));
        }
        if !FPS_RANGE.contains(&self.fps) {
            return Err(format!(
                "fps must be within {}..={}, got {}",
                FPS_RANGE.start(),
                FPS_RANGE.end(),
                self.fps
            ));
        }
        if !GOP_MS_RANGE.contains(&self.gop_ms) {
            return Err(format!(
                "gop must be within 0.04..=60 seconds, got {} ms",
                self.gop_ms
            ));
        }
        Ok(())
    }
}
