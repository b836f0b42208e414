//! HLS playlists (RFC 8216, version 3): the live sliding window and the fixed VOD
//! list, plus the UTC formatting `#EXT-X-PROGRAM-DATE-TIME` needs.
//!
//! Owns: playlist text. Must not: choose which segments are listed (the hub and, later,
//! the DVR do) or know how segments are named on disk.

use std::fmt::Write;

use crate::media::UtcMs;

/// One segment line of a playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaylistEntry {
    /// URI relative to the playlist; must end in `.ts` for Debian's ffmpeg.
    pub uri: String,
    pub duration_ms: u64,
    pub utc_start_ms: UtcMs,
    /// Timestamps or encoding change before this segment (`#EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
}

/// The target duration: every segment's duration rounded to the nearest second must
/// not exceed it (RFC 8216 §4.3.3.1). At least 1.
pub fn target_duration(entries: &[PlaylistEntry]) -> u64 {
    entries
        .iter()
        .map(|e| (e.duration_ms + 500) / 1000)
        .max()
        .unwrap_or(0)
        .max(1)
}

/// A live playlist whose first entry has `media_sequence`; `discontinuity_sequence`
/// counts the discontinuities that already slid out of the window. The target
/// duration is at least `min_target_s`: RFC 8216 §6.2.1 forbids it to change while
/// the playlist lives, so the caller passes the largest it has announced.
pub fn live_playlist(
    media_sequence: u64,
    discontinuity_sequence: u64,
    min_target_s: u64,
    entries: &[PlaylistEntry],
) -> String {
    let mut s = header(target_duration(entries).max(min_target_s));
    let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
    if discontinuity_sequence > 0 {
        let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}");
    }
    push_entries(&mut s, entries);
    s
}

/// A complete, unchanging playlist (an archive range): `PLAYLIST-TYPE:VOD` and
/// `ENDLIST`.
pub fn vod_playlist(entries: &[PlaylistEntry]) -> String {
    archive_playlist(entries, ArchiveKind::Vod, false)
}

/// The kind of an archive playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// Closed: `PLAYLIST-TYPE:VOD` and `ENDLIST`.
    Vod,
    /// Still growing (segments are only appended): `PLAYLIST-TYPE:EVENT`, no
    /// `ENDLIST`.
    Event,
}

/// An archive playlist; `from_start` adds `EXT-X-START:TIME-OFFSET=0` so players
/// start at the first segment even while it grows.
pub fn archive_playlist(entries: &[PlaylistEntry], kind: ArchiveKind, from_start: bool) -> String {
    let mut s = header(target_duration(entries));
    s.push_str(match kind {
        ArchiveKind::Vod => "#EXT-X-PLAYLIST-TYPE:VOD\n",
        ArchiveKind::Event => "#EXT-X-PLAYLIST-TYPE:EVENT\n",
    });
    if from_start {
        s.push_str("#EXT-X-START:TIME-OFFSET=0,PRECISE=YES\n");
    }
    s.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    push_entries(&mut s, entries);
    if kind == ArchiveKind::Vod {
        s.push_str("#EXT-X-ENDLIST\n");
    }
    s
}

fn header(target_duration_s: u64) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(s, "#EXT-X-TARGETDURATION:{target_duration_s}");
    s
}

fn push_entries(s: &mut String, entries: &[PlaylistEntry]) {
    for e in entries {
        if e.discontinuity {
            s.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(
            s,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            utc_iso8601(e.utc_start_ms)
        );
        let _ = writeln!(
            s,
            "#EXTINF:{}.{:03},\n{}",
            e.duration_ms / 1000,
            e.duration_ms % 1000,
            e.uri
        );
    }
}

/// `2026-01-01T00:00:00.000Z` for a UTC millisecond count.
pub fn utc_iso8601(ms: UtcMs) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str, duration_ms: u64, utc: u64, discontinuity: bool) -> PlaylistEntry {
        PlaylistEntry {
            uri: uri.into(),
            duration_ms,
            utc_start_ms: utc,
            discontinuity,
        }
    }

    #[test]
    fn iso8601() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_iso8601(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(utc_iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_iso8601(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn live_window() {
        let t = 1_767_225_600_000;
        let p = live_playlist(
            41,
            2,
            1,
            &[
                entry("seg-1.ts", 1000, t, false),
                entry("seg-2.ts", 1480, t + 1000, true),
            ],
        );
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:41\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:1.000,\nseg-1.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:01.000Z\n#EXTINF:1.480,\nseg-2.ts\n"
        );
    }

    #[test]
    fn live_target_duration_never_goes_below_what_was_announced() {
        let short = [entry("seg-1.ts", 1000, 0, false)];
        assert!(live_playlist(0, 0, 4, &short).contains("#EXT-X-TARGETDURATION:4\n"));
        let long = [entry("seg-1.ts", 6000, 0, false)];
        assert!(live_playlist(0, 0, 4, &long).contains("#EXT-X-TARGETDURATION:6\n"));
    }

    #[test]
    fn target_duration_rounds_to_nearest() {
        assert_eq!(target_duration(&[entry("a.ts", 1499, 0, false)]), 1);
        assert_eq!(target_duration(&[entry("a.ts", 1500, 0, false)]), 2);
        assert_eq!(target_duration(&[entry("a.ts", 40, 0, false)]), 1);
        assert_eq!(target_duration(&[]), 1);
    }

    #[test]
    fn event_has_no_endlist_and_may_start_at_the_beginning() {
        let e = [entry("a.ts", 2000, 0, false)];
        let p = archive_playlist(&e, ArchiveKind::Event, true);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-START:TIME-OFFSET=0,PRECISE=YES\n"));
        assert!(!p.contains("ENDLIST"));
        let p = archive_playlist(&e, ArchiveKind::Event, false);
        assert!(!p.contains("EXT-X-START"));
    }

    #[test]
    fn vod_has_endlist() {
        let p = vod_playlist(&[entry("a.ts", 2000, 0, false)]);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(p.ends_with("a.ts\n#EXT-X-ENDLIST\n"));
    }
}
