//! What an archive window covers at a given moment: the UTC span to list or play,
//! whether it is closed (a VOD playlist with `ENDLIST`) or still growing (an `EVENT`
//! playlist), and where a player should start. Also Flussonic's start rule: an
//! archive answer starts at the first stored segment at or after FROM, and what a
//! peer's index answer may list for the window it was asked.
//!
//! Owns: these decisions, given `now`. Must not: read the clock or the archive.

use crate::cluster::message::ArchiveEntry;
use crate::play_url::Window;

/// Longest span one archive URL covers (a playlist of 2 s segments stays under
/// ~1.5 MB). A timeshift or `FROM-now` window stops growing (and closes) there.
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;

/// Where a player should start a playlist that is still growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Near the newest segment, like live (`FROM-now`, Flussonic's event playback).
    LiveEdge,
    /// At the first segment (`EXT-X-START:TIME-OFFSET=0`): timeshift, catch-up and
    /// fixed windows.
    Beginning,
}

/// How long after a window's end the segment that overlaps the end may take to be
/// stored (the longest `segment_duration`, 60 s). A window whose end has passed is
/// closed once a segment starting at or after its end is stored, or this long after
/// its end (the source stopped): a closed playlist never changes.
pub const SETTLE_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from_ms: u64,
    pub to_ms: u64,
    /// The window ends at or before now, so it may be closed; see [`Span::closed`].
    pub ended: bool,
    pub start: Start,
    /// MPEG-TS of this window never ends: it follows the archive as it grows, paced
    /// to real time (timeshift).
    pub endless: bool,
    /// Segments a playlist lists past `to_ms` (a viewer's position): see
    /// [`TIMESHIFT_LEAD_SEGMENTS`]; 0 for the other windows, which end at `to_ms`.
    pub lead: usize,
}

/// How many segments a timeshift media playlist ([`Window::Paced`]) lists past the
/// viewer's position. Players that start near the end of a growing playlist start
/// three target durations or segments from its end (ffmpeg's and so mpv's
/// `live_start_index` −3, GStreamer's hlsdemux, VLC, hls.js' `liveSyncDurationCount`
/// 3): with three listed past the position, they start at it, and the playlist grows
/// at the pace they play.
pub const TIMESHIFT_LEAD_SEGMENTS: usize = 3;

/// The span of `window` at `now_ms`, or why the window is refused (a 400).
pub fn resolve(window: Window, now_ms: u64) -> Result<Span, String> {
    let secs = |s: u64| {
        s.checked_mul(1000)
            .ok_or_else(|| format!("{s} is out of range for UTC seconds"))
    };
    match window {
        Window::Fixed { from_s, duration_s } => {
            if duration_s == 0 || duration_s > MAX_WINDOW_SECS {
                return Err(format!(
                    "DURATION must be 1..={MAX_WINDOW_SECS} seconds, not {duration_s}"
                ));
            }
            let from_ms = secs(from_s)?;
            let to_ms = secs(from_s.saturating_add(duration_s))?;
            Ok(Span {
                from_ms,
                to_ms,
                ended: to_ms <= now_ms,
                start: Start::Beginning,
                endless: false,
                lead: 0,
            })
        }
        Window::UntilNow { from_s } => {
            let from_ms = secs(from_s)?;
            if now_ms.saturating_sub(from_ms) > MAX_WINDOW_SECS * 1000 {
                return Err(format!(
                    "FROM-now may reach back at most {MAX_WINDOW_SECS} s; {from_s} is further"
                ));
            }
            Ok(Span {
                from_ms,
                to_ms: now_ms.max(from_ms),
                ended: false,
                start: Start::LiveEdge,
                endless: false,
                lead: 0,
            })
        }
        Window::Timeshift { from } => {
            let from_ms = secs(from.at(now_ms / 1000))?;
            let end = from_ms.saturating_add(MAX_WINDOW_SECS * 1000);
            Ok(Span {
                from_ms,
                to_ms: now_ms.clamp(from_ms, end),
                ended: end <= now_ms,
                start: Start::Beginning,
                endless: true,
                lead: 0,
            })
        }
        Window::Paced { from_s, delay_s } => {
            let from_ms = secs(from_s)?;
            let end = from_ms.saturating_add(MAX_WINDOW_SECS * 1000);
            let position = now_ms.saturating_sub(delay_s.saturating_mul(1000));
            Ok(Span {
                from_ms,
                to_ms: position.clamp(from_ms, end),
                ended: end <= position,
                start: Start::LiveEdge,
                endless: true,
                lead: TIMESHIFT_LEAD_SEGMENTS,
            })
        }
    }
}

impl Span {
    /// Whether nothing will be added to the window any more (VOD, `ENDLIST`): it has
    /// ended, and a segment starting at or after its end is stored (`newest_start_ms`:
    /// the newest stored segment start seen up to [`SETTLE_MS`] after the end), or
    /// the end is [`SETTLE_MS`] past.
    pub fn closed(&self, now_ms: u64, newest_start_ms: Option<u64>) -> bool {
        self.ended
            && (newest_start_ms.is_some_and(|s| s >= self.to_ms)
                || now_ms >= self.to_ms.saturating_add(SETTLE_MS))
    }
}

/// Flussonic's start rule: of the segments overlapping a window (sorted by start),
/// those that start at or after `from_ms`.
pub fn at_or_after<T>(entries: Vec<T>, from_ms: u64, start_of: impl Fn(&T) -> u64) -> Vec<T> {
    entries
        .into_iter()
        .filter(|e| start_of(e) >= from_ms)
        .collect()
}

/// The entries (sorted by start; `bounds` gives an entry's start and end, UTC ms) a
/// playlist of `span` lists: Flussonic's start rule ([`at_or_after`]), then those
/// that start before `to_ms`, or for a timeshift viewer ([`Span::lead`] > 0) those
/// that end by its position `to_ms` and `lead` more, the first of which holds the
/// position.
pub fn listed<T>(entries: Vec<T>, span: &Span, bounds: impl Fn(&T) -> (u64, u64)) -> Vec<T> {
    let mut v = at_or_after(entries, span.from_ms, |e| bounds(e).0);
    let keep = if span.lead == 0 {
        v.iter().take_while(|e| bounds(e).0 < span.to_ms).count()
    } else {
        let played = v.iter().take_while(|e| bounds(e).1 <= span.to_ms).count();
        played.saturating_add(span.lead)
    };
    v.truncate(keep);
    v
}

/// What a peer's index answer may list for `window` (`[from, to)` UTC ms, or
/// `None` when no entries were asked for): the entries overlapping the window,
/// oldest first, each start once. A peer that lists more (200 000 entries outside
/// the window) cannot inflate this node's playlists.
pub fn clip_entries(
    mut entries: Vec<ArchiveEntry>,
    window: Option<(u64, u64)>,
) -> Vec<ArchiveEntry> {
    let Some((from, to)) = window else {
        return Vec::new();
    };
    entries.retain(|e| {
        e.utc_start_ms < to && e.utc_start_ms.saturating_add(u64::from(e.duration_ms)) > from
    });
    entries.sort_by_key(|e| e.utc_start_ms);
    entries.dedup_by_key(|e| e.utc_start_ms);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_index_is_clipped_to_the_window() {
        let e = |utc_start_ms: u64, duration_ms: u32| ArchiveEntry {
            utc_start_ms,
            duration_ms,
            discontinuity: false,
        };
        let got = clip_entries(
            vec![
                e(5000, 2000),
                e(0, 1000),
                e(999, 2),
                e(3000, 2000),
                e(3000, 2000),
                e(7000, 1),
                e(u64::MAX, u32::MAX),
            ],
            Some((1000, 7000)),
        );
        assert_eq!(got, vec![e(999, 2), e(3000, 2000), e(5000, 2000)]);
        assert!(clip_entries(vec![e(1, 1)], None).is_empty());
    }
    use crate::play_url::TimeRef;

    const NOW: u64 = 1_767_225_600_000;

    #[test]
    fn fixed_windows_close_when_their_end_has_passed() {
        let past = resolve(
            Window::Fixed {
                from_s: 1000,
                duration_s: 60,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            (past.from_ms, past.to_ms, past.ended),
            (1_000_000, 1_060_000, true)
        );
        assert!(past.closed(NOW, None));
        // Just ended: closed only once the segment across its end is stored.
        let just = resolve(
            Window::Fixed {
                from_s: NOW / 1000 - 60,
                duration_s: 59,
            },
            NOW,
        )
        .unwrap();
        assert!(just.ended);
        assert!(!just.closed(NOW, Some(NOW - 1500)));
        assert!(just.closed(NOW, Some(NOW - 1000)));
        assert!(just.closed(NOW - 1000 + SETTLE_MS, None));
        let reaching = resolve(
            Window::Fixed {
                from_s: NOW / 1000 - 10,
                duration_s: 60,
            },
            NOW,
        )
        .unwrap();
        assert!(!reaching.closed(NOW, Some(NOW)));
        assert_eq!(reaching.start, Start::Beginning);
        assert!(resolve(
            Window::Fixed {
                from_s: 1,
                duration_s: 0
            },
            NOW
        )
        .is_err());
        assert!(resolve(
            Window::Fixed {
                from_s: 1,
                duration_s: MAX_WINDOW_SECS + 1
            },
            NOW
        )
        .is_err());
        assert!(resolve(
            Window::Fixed {
                from_s: u64::MAX,
                duration_s: 1
            },
            NOW
        )
        .is_err());
    }

    #[test]
    fn until_now_grows_from_the_live_edge() {
        let s = resolve(
            Window::UntilNow {
                from_s: NOW / 1000 - 60,
            },
            NOW,
        )
        .unwrap();
        assert_eq!((s.to_ms, s.ended, s.start), (NOW, false, Start::LiveEdge));
        assert!(resolve(
            Window::UntilNow {
                from_s: NOW / 1000 - MAX_WINDOW_SECS - 1
            },
            NOW
        )
        .is_err());
        let future = resolve(
            Window::UntilNow {
                from_s: NOW / 1000 + 5,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(future.to_ms, future.from_ms);
    }

    #[test]
    fn timeshift_starts_at_its_beginning_and_is_endless() {
        let rel = resolve(
            Window::Timeshift {
                from: TimeRef::Rel(60),
            },
            NOW,
        )
        .unwrap();
        assert_eq!((rel.from_ms, rel.to_ms), (NOW - 60_000, NOW));
        assert!(rel.endless && !rel.ended);
        assert_eq!(rel.start, Start::Beginning);
        let old = resolve(
            Window::Timeshift {
                from: TimeRef::Abs(NOW / 1000 - MAX_WINDOW_SECS - 5),
            },
            NOW,
        )
        .unwrap();
        assert!(old.ended && old.closed(NOW, Some(NOW)));
        assert_eq!(old.to_ms - old.from_ms, MAX_WINDOW_SECS * 1000);
    }

    #[test]
    fn paced_timeshift_lists_the_viewers_position_and_three_more() {
        let from_s = NOW / 1000 - 100;
        // Segments of 1 s from FROM − 2 s to now.
        let starts: Vec<u64> = (from_s * 1000 - 2000..NOW).step_by(1000).collect();
        // The master was asked at NOW: delay 100 s, the viewer is at FROM.
        let at_start = resolve(
            Window::Paced {
                from_s,
                delay_s: 100,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            (at_start.from_ms, at_start.to_ms),
            (from_s * 1000, from_s * 1000)
        );
        assert_eq!((at_start.start, at_start.lead), (Start::LiveEdge, 3));
        let first = listed(starts.clone(), &at_start, |s| (*s, *s + 1000));
        assert_eq!(
            first,
            vec![from_s * 1000, from_s * 1000 + 1000, from_s * 1000 + 2000]
        );
        // Ten seconds later the same URL lists ten more: the playlist grows at the
        // pace the viewer plays, three segments ahead of it.
        let later = resolve(
            Window::Paced {
                from_s,
                delay_s: 100,
            },
            NOW + 10_000,
        )
        .unwrap();
        let grown = listed(starts.clone(), &later, |s| (*s, *s + 1000));
        assert_eq!(grown.len(), 13);
        assert_eq!(grown[0], from_s * 1000);
        // A position inside a segment: that segment and two more past the ten played.
        let inside = resolve(
            Window::Paced {
                from_s,
                delay_s: 100,
            },
            NOW + 10_500,
        )
        .unwrap();
        assert_eq!(listed(starts, &inside, |s| (*s, *s + 1000)).len(), 13);
        assert!(!later.ended);
    }

    #[test]
    fn start_rule() {
        let starts = vec![998_000u64, 1_000_000, 1_002_000];
        assert_eq!(
            at_or_after(starts, 999_000, |s| *s),
            vec![1_000_000, 1_002_000]
        );
    }
}
