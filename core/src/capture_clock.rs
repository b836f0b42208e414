//! The capture time of frames taken in from an RTP source (an RTSP camera): from the
//! sender's own clock when its RTCP sender reports map RTP time to NTP time and that
//! clock is sane, from the arrival time otherwise.
//!
//! A camera's sender report says "RTP timestamp T was NTP time N". Every later frame
//! of that RTP stream then has a capture time of `N + (t − T) / clock_rate`, which is
//! when the camera took the picture, not when the network delivered it. Many cameras
//! never set their clock, though, and a capture time in 2010 would put the archive in
//! 2010: a report whose time is further than [`MAX_SENDER_CLOCK_SKEW_MS`] from the
//! arrival time is refused, and frames keep their arrival time.
//!
//! Owns: that mapping, per RTP stream. Must not: read a clock (arrival times are
//! passed in) or parse RTCP (the driver hands over the numbers).

use crate::media::UtcMs;

/// A sender clock further than this from the arrival time is not trusted (10 s).
pub const MAX_SENDER_CLOCK_SKEW_MS: u64 = 10_000;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Where a capture time came from; the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureSource {
    /// When the frame reached this node.
    Arrival,
    /// The sender's clock, from its RTCP sender reports.
    SenderReport,
}

impl CaptureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureSource::Arrival => "arrival",
            CaptureSource::SenderReport => "rtcp_sender_report",
        }
    }
}

/// What became of a sender report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    Accepted,
    /// The sender's clock is `skew_ms` away from the arrival time (positive: ahead).
    Skewed {
        skew_ms: i64,
    },
    /// An NTP time before 1970 or a zero clock rate.
    Invalid,
}

/// An NTP timestamp (32.32 fixed point seconds since 1900) as Unix milliseconds;
/// `None` before 1970.
pub fn ntp_to_unix_ms(ntp: u64) -> Option<UtcMs> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_SECS)?;
    let frac_ms = ((ntp & 0xFFFF_FFFF) * 1000) >> 32;
    Some(secs * 1000 + frac_ms)
}

#[derive(Clone, Copy, Debug)]
struct Anchor {
    rtp: i64,
    clock_rate: u32,
    utc_ms: i128,
}

/// The capture clock of one RTP stream.
#[derive(Clone, Debug, Default)]
pub struct CaptureClock {
    anchor: Option<Anchor>,
}

impl CaptureClock {
    /// A sender report for this stream: RTP time `rtp` (extended, in `clock_rate`
    /// units) was NTP time `ntp`; it arrived at `arrival_ms`.
    pub fn handle_sender_report(
        &mut self,
        rtp: i64,
        clock_rate: u32,
        ntp: u64,
        arrival_ms: UtcMs,
    ) -> ReportOutcome {
        let Some(utc_ms) = ntp_to_unix_ms(ntp).filter(|_| clock_rate > 0) else {
            return ReportOutcome::Invalid;
        };
        let skew_ms = utc_ms as i128 - arrival_ms as i128;
        if skew_ms.unsigned_abs() > u128::from(MAX_SENDER_CLOCK_SKEW_MS) {
            self.anchor = None;
            return ReportOutcome::Skewed {
                skew_ms: skew_ms.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            };
        }
        self.anchor = Some(Anchor {
            rtp,
            clock_rate,
            utc_ms: utc_ms.into(),
        });
        ReportOutcome::Accepted
    }

    /// The capture time of a frame with RTP time `rtp` that arrived at `arrival_ms`.
    /// Falls back to the arrival time when there is no usable report, or when the
    /// mapped time strays more than [`MAX_SENDER_CLOCK_SKEW_MS`] from it (the sender's
    /// clock jumped, or its RTP clock runs at another rate than it says).
    pub fn capture_ms(&self, rtp: i64, arrival_ms: UtcMs) -> (UtcMs, CaptureSource) {
        let Some(a) = self.anchor else {
            return (arrival_ms, CaptureSource::Arrival);
        };
        let delta_ms = (i128::from(rtp) - i128::from(a.rtp)) * 1000 / i128::from(a.clock_rate);
        let t = a.utc_ms + delta_ms;
        let skew = t - arrival_ms as i128;
        match u64::try_from(t) {
            Ok(t) if skew.unsigned_abs() <= u128::from(MAX_SENDER_CLOCK_SKEW_MS) => {
                (t, CaptureSource::SenderReport)
            }
            _ => (arrival_ms, CaptureSource::Arrival),
        }
    }

    /// Whether a sender report is in use.
    pub fn synced(&self) -> bool {
        self.anchor.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NTP time of Unix ms `ms`.
    fn ntp(ms: u64) -> u64 {
        let secs = ms / 1000 + NTP_UNIX_OFFSET_SECS;
        let frac = ((ms % 1000) << 32) / 1000 + 1;
        (secs << 32) | frac
    }

    const NOW: UtcMs = 1_795_000_000_000;

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_to_unix_ms(ntp(NOW + 123)), Some(NOW + 123));
        assert_eq!(ntp_to_unix_ms(NTP_UNIX_OFFSET_SECS << 32), Some(0));
        assert_eq!(ntp_to_unix_ms(5 << 32), None);
    }

    #[test]
    fn arrival_until_a_report_then_the_sender_clock() {
        let mut c = CaptureClock::default();
        assert_eq!(c.capture_ms(90_000, NOW), (NOW, CaptureSource::Arrival));
        // The camera took RTP 90 000 at NOW − 300 ms (a 300 ms path).
        let out = c.handle_sender_report(90_000, 90_000, ntp(NOW - 300), NOW);
        assert_eq!(out, ReportOutcome::Accepted);
        assert!(c.synced());
        // One second of RTP time later, arriving 320 ms after capture.
        assert_eq!(
            c.capture_ms(180_000, NOW + 1020),
            (NOW + 700, CaptureSource::SenderReport)
        );
        // Before the anchor (B-frames, audio that lags) maps backwards too.
        assert_eq!(
            c.capture_ms(89_910, NOW),
            (NOW - 301, CaptureSource::SenderReport)
        );
    }

    #[test]
    fn a_camera_with_a_wrong_clock_keeps_arrival_times() {
        let mut c = CaptureClock::default();
        let year_2010 = 1_262_304_000_000;
        let out = c.handle_sender_report(0, 90_000, ntp(year_2010), NOW);
        assert!(matches!(out, ReportOutcome::Skewed { skew_ms } if skew_ms < 0));
        assert_eq!(c.capture_ms(90_000, NOW), (NOW, CaptureSource::Arrival));
        // A good report, then a bad one: the bad one drops the anchor.
        assert_eq!(
            c.handle_sender_report(0, 90_000, ntp(NOW), NOW),
            ReportOutcome::Accepted
        );
        let out = c.handle_sender_report(0, 90_000, ntp(NOW + 60_000), NOW);
        assert!(matches!(out, ReportOutcome::Skewed { skew_ms: 60_000 }));
        assert!(!c.synced());
        assert_eq!(
            c.handle_sender_report(0, 0, ntp(NOW), NOW),
            ReportOutcome::Invalid
        );
    }

    #[test]
    fn a_mapped_time_that_strays_falls_back_to_arrival() {
        let mut c = CaptureClock::default();
        c.handle_sender_report(0, 90_000, ntp(NOW), NOW);
        // An hour of RTP time later, but arriving now: the RTP clock jumped.
        assert_eq!(
            c.capture_ms(90_000 * 3600, NOW + 40),
            (NOW + 40, CaptureSource::Arrival)
        );
        // Extreme values neither panic nor wrap.
        assert_eq!(c.capture_ms(i64::MIN, NOW), (NOW, CaptureSource::Arrival));
        assert_eq!(c.capture_ms(i64::MAX, NOW), (NOW, CaptureSource::Arrival));
    }
}
