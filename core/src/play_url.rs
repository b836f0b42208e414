//! The player URL grammar (Flussonic's forms): what the part of a URL after
//! `/STREAM/` asks for, live or archive, as one typed [`PlayRequest`]. The node's
//! router keeps one table of these forms and the README lists them.
//!
//! Owns: parsing the last path component, an optional `tracks-…/` directory before
//! it and the `utc=`/`lutc=` query, and naming the canonical media playlist a master
//! playlist points to. Only canonical numbers are accepted (digits, no sign, no
//! leading zero), so each request has one spelling. Must not: read the clock (a
//! relative time stays [`TimeRef::Rel`] until the caller resolves it with its `now`)
//! or know what is stored.

/// A time a URL names: absolute UTC seconds, or seconds before the caller's now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeRef {
    Abs(u64),
    Rel(u64),
}

impl TimeRef {
    /// UTC seconds, given the caller's now in UTC seconds.
    pub fn at(self, now_s: u64) -> u64 {
        match self {
            TimeRef::Abs(s) => s,
            TimeRef::Rel(n) => now_s.saturating_sub(n),
        }
    }
}

/// The window of an archive playlist or archive MPEG-TS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// `FROM-DURATION`: a fixed window (it may reach into the future, then it grows).
    Fixed { from_s: u64, duration_s: u64 },
    /// `FROM-now`: from FROM to the present, growing (playlists are `EVENT`).
    UntilNow { from_s: u64 },
    /// `timeshift_abs-FROM` / `timeshift_rel-N` / `?utc=`: from FROM on, played from
    /// its start (playlists carry `EXT-X-START:TIME-OFFSET=0`).
    Timeshift { from: TimeRef },
    /// `mono-timeshift_abs-FROM.m3u8?delay=N`, the media playlist a timeshift master
    /// points to: a viewer who plays from FROM, N seconds behind live. It lists the
    /// segments from FROM up to the viewer's position (now − N) and a few beyond
    /// (`archive_window::TIMESHIFT_LEAD_SEGMENTS`), so a player that starts near the
    /// end of a growing playlist (most do, ignoring `EXT-X-START`) starts at FROM.
    Paced { from_s: u64, delay_s: u64 },
}

/// Tracks picked by a `tracks-v1a1/` directory: 1-based indices among the stream's
/// video tracks and among its audio tracks (Flussonic's numbering), ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSelection {
    pub video: Vec<u8>,
    pub audio: Vec<u8>,
}

impl TrackSelection {
    /// The directory name, `tracks-v1a1`.
    pub fn dir(&self) -> String {
        let mut s = String::from("tracks-");
        for v in &self.video {
            s.push_str(&format!("v{v}"));
        }
        for a in &self.audio {
            s.push_str(&format!("a{a}"));
        }
        s
    }
}

/// What a player URL asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `index.m3u8`, `video.m3u8`, `playlist.m3u8`: the live master playlist.
    LiveMaster,
    /// `mono.m3u8`: the live media playlist.
    LiveMedia,
    /// `seg-MS.ts`: a live segment.
    LiveSegment { utc_start_ms: u64 },
    /// `mpegts`: live MPEG-TS.
    LiveTs,
    /// `index-…`/`video-…` archive forms and `timeshift_*.m3u8`, `index.m3u8?utc=`:
    /// an archive master playlist.
    ArchiveMaster(Window),
    /// `archive-…`/`mono-…` archive forms: an archive media playlist.
    ArchiveMedia(Window),
    /// `archive-FROM-DURATION.ts`, `archive-FROM-now.ts`: one MPEG-TS of a window,
    /// `timeshift_abs-FROM.ts`, `timeshift_rel-N.ts`, `mpegts?utc=`: an endless one.
    ArchiveTs(Window),
    /// `dvr-MS.ts`: an archive segment.
    ArchiveSegment { utc_start_ms: u64 },
    /// `recording_status.json`.
    RecordingStatus,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayRequest {
    /// `None`: every track.
    pub tracks: Option<TrackSelection>,
    pub output: Output,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayUrlError {
    /// Not a player URL form at all (HTTP 404).
    #[error("no output {0:?}")]
    Unknown(String),
    /// A known form with a bad value (HTTP 400).
    #[error("bad URL {file:?}: {why}")]
    Bad { file: String, why: String },
}

fn bad(file: &str, why: impl Into<String>) -> PlayUrlError {
    PlayUrlError::Bad {
        file: file.to_string(),
        why: why.into(),
    }
}

/// A canonical decimal number: digits only, no leading zero (except `0` itself).
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// `tracks-v1a1` (a directory before the file).
pub fn parse_tracks(dir: &str) -> Option<TrackSelection> {
    let spec = dir.strip_prefix("tracks-")?;
    if !spec.is_ascii() {
        return None;
    }
    let mut sel = TrackSelection {
        video: Vec::new(),
        audio: Vec::new(),
    };
    let mut rest = spec;
    while !rest.is_empty() {
        let kind = rest.as_bytes()[0];
        let digits_end = rest[1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len(), |i| i + 1);
        let n = number(&rest[1..digits_end]).and_then(|n| u8::try_from(n).ok())?;
        if n == 0 {
            return None;
        }
        let list = match kind {
            b'v' if sel.audio.is_empty() => &mut sel.video,
            b'a' => &mut sel.audio,
            _ => return None,
        };
        if list.last().is_some_and(|&l| l >= n) {
            return None; // ascending, no repeats: one spelling per selection
        }
        list.push(n);
        rest = &rest[digits_end..];
    }
    (!sel.video.is_empty() || !sel.audio.is_empty()).then_some(sel)
}

/// `FROM-DURATION` or `FROM-now`.
fn window(file: &str, rest: &str) -> Result<Window, PlayUrlError> {
    let (from, to) = rest
        .split_once('-')
        .ok_or_else(|| bad(file, "expected FROM-DURATION or FROM-now"))?;
    let from_s =
        number(from).ok_or_else(|| bad(file, format!("FROM {from:?} is not UTC seconds")))?;
    if to == "now" {
        return Ok(Window::UntilNow { from_s });
    }
    let duration_s = number(to)
        .ok_or_else(|| bad(file, format!("DURATION {to:?} is not a number of seconds")))?;
    Ok(Window::Fixed { from_s, duration_s })
}

/// `timeshift_abs-FROM` or `timeshift_rel-N`.
fn timeshift(file: &str, rest: &str) -> Option<Result<Window, PlayUrlError>> {
    let (rel, n) = if let Some(n) = rest.strip_prefix("timeshift_abs-") {
        (false, n)
    } else {
        (true, rest.strip_prefix("timeshift_rel-")?)
    };
    Some(match number(n) {
        Some(v) => Ok(Window::Timeshift {
            from: if rel {
                TimeRef::Rel(v)
            } else {
                TimeRef::Abs(v)
            },
        }),
        None => Err(bad(file, format!("{n:?} is not a number of seconds"))),
    })
}

/// The `utc=` (and optional `lutc=`) of a query, if `utc` is there. Other
/// parameters (tokens and the like) are left to others.
fn catch_up(file: &str, query: Option<&str>) -> Result<Option<TimeRef>, PlayUrlError> {
    let Some(q) = query else { return Ok(None) };
    let (mut utc, mut lutc) = (None, None);
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "utc" => &mut utc,
            "lutc" => &mut lutc,
            _ => continue,
        };
        if slot.is_some() {
            return Err(bad(file, format!("`{k}=` given twice")));
        }
        *slot = Some(number(v).ok_or_else(|| bad(file, format!("`{k}={v}` is not UTC seconds")))?);
    }
    match (utc, lutc) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(bad(file, "`lutc=` needs `utc=`")),
        (Some(u), Some(l)) if l < u => Err(bad(
            file,
            format!("`lutc={l}` (the client's now) is before `utc={u}`"),
        )),
        (Some(u), _) => Ok(Some(TimeRef::Abs(u))),
    }
}

fn media_window(file: &str, stem: &str) -> Result<Window, PlayUrlError> {
    timeshift(file, stem).unwrap_or_else(|| window(file, stem))
}

/// The `delay=N` of a query (seconds behind live), if there.
fn delay(file: &str, query: Option<&str>) -> Result<Option<u64>, PlayUrlError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        if let Some(v) = pair.strip_prefix("delay=") {
            if found.is_some() {
                return Err(bad(file, "`delay=` given twice"));
            }
            found =
                Some(number(v).ok_or_else(|| bad(file, format!("`delay={v}` is not seconds")))?);
        }
    }
    Ok(found)
}

/// Parses `file` (the last path component), the directory before it when it is a
/// `tracks-…` selection, and the query.
pub fn parse(
    tracks_dir: Option<&str>,
    file: &str,
    query: Option<&str>,
) -> Result<PlayRequest, PlayUrlError> {
    let tracks = match tracks_dir {
        None => None,
        Some(d) => Some(parse_tracks(d).ok_or_else(|| {
            bad(d, "a track selection is `tracks-` then `vN` and `aN` (1-based, ascending), such as `tracks-v1a1`")
        })?),
    };
    let output = parse_file(file, query)?;
    if tracks.is_some()
        && !matches!(
            output,
            Output::LiveMedia
                | Output::LiveSegment { .. }
                | Output::ArchiveMedia(_)
                | Output::ArchiveSegment { .. }
        )
    {
        return Err(bad(
            file,
            "a `tracks-…/` directory goes only before media playlists (`mono…`) and their segments",
        ));
    }
    Ok(PlayRequest { tracks, output })
}

fn parse_file(file: &str, query: Option<&str>) -> Result<Output, PlayUrlError> {
    let unknown = || PlayUrlError::Unknown(file.to_string());
    let utc = catch_up(file, query)?;
    match (file, utc) {
        ("index.m3u8" | "video.m3u8" | "playlist.m3u8", Some(from)) => {
            return Ok(Output::ArchiveMaster(Window::Timeshift { from }))
        }
        ("mono.m3u8", Some(from)) => return Ok(Output::ArchiveMedia(Window::Timeshift { from })),
        ("mpegts", Some(from)) => return Ok(Output::ArchiveTs(Window::Timeshift { from })),
        (_, Some(_)) => {
            return Err(bad(
                file,
                "`utc=` goes only on index.m3u8, mono.m3u8 and mpegts",
            ))
        }
        _ => {}
    }
    match file {
        "index.m3u8" | "video.m3u8" | "playlist.m3u8" => return Ok(Output::LiveMaster),
        "mono.m3u8" => return Ok(Output::LiveMedia),
        "mpegts" => return Ok(Output::LiveTs),
        "recording_status.json" => return Ok(Output::RecordingStatus),
        _ => {}
    }
    let segment = |prefix: &str| -> Option<Result<u64, PlayUrlError>> {
        let ms = file.strip_prefix(prefix)?.strip_suffix(".ts")?;
        Some(number(ms).ok_or_else(|| bad(file, format!("{ms:?} is not UTC milliseconds"))))
    };
    if let Some(ms) = segment("seg-") {
        return ms.map(|utc_start_ms| Output::LiveSegment { utc_start_ms });
    }
    if let Some(ms) = segment("dvr-") {
        return ms.map(|utc_start_ms| Output::ArchiveSegment { utc_start_ms });
    }
    if let Some(stem) = file.strip_suffix(".m3u8") {
        if let Some(w) = timeshift(file, stem) {
            return w.map(Output::ArchiveMaster);
        }
        for (prefix, master) in [
            ("index-", true),
            ("video-", true),
            ("archive-", false),
            ("mono-", false),
        ] {
            if let Some(rest) = stem.strip_prefix(prefix) {
                let mut w = media_window(file, rest)?;
                if master && matches!(w, Window::Timeshift { .. }) {
                    // `index-timeshift_abs-F.m3u8` is spelt `timeshift_abs-F.m3u8`.
                    return Err(unknown());
                }
                if let (
                    Window::Timeshift {
                        from: TimeRef::Abs(from_s),
                    },
                    Some(delay_s),
                ) = (w, delay(file, query)?)
                {
                    w = Window::Paced { from_s, delay_s };
                }
                return Ok(if master {
                    Output::ArchiveMaster(w)
                } else {
                    Output::ArchiveMedia(w)
                });
            }
        }
        return Err(unknown());
    }
    if let Some(stem) = file.strip_suffix(".ts") {
        if let Some(w) = timeshift(file, stem) {
            return w.map(Output::ArchiveTs);
        }
        if let Some(rest) = stem.strip_prefix("archive-") {
            return window(file, rest).map(Output::ArchiveTs);
        }
    }
    Err(unknown())
}

/// The media playlist a master playlist's variant points to, relative to the
/// variant's `tracks-…/` directory: `mono.m3u8` for live, `mono-FROM-DURATION.m3u8`,
/// `mono-FROM-now.m3u8` for a window, and for timeshift
/// `mono-timeshift_abs-FROM.m3u8?delay=N` (a relative time resolved with `now_s`,
/// so the player keeps one start while it reloads; N = now − FROM, the viewer's
/// distance behind live: see [`Window::Paced`]).
pub fn media_playlist_file(window: Option<Window>, now_s: u64) -> String {
    match window {
        None => "mono.m3u8".to_string(),
        Some(Window::Fixed { from_s, duration_s }) => format!("mono-{from_s}-{duration_s}.m3u8"),
        Some(Window::UntilNow { from_s }) => format!("mono-{from_s}-now.m3u8"),
        Some(Window::Timeshift { from }) => {
            let from_s = from.at(now_s);
            format!(
                "mono-timeshift_abs-{from_s}.m3u8?delay={}",
                now_s.saturating_sub(from_s)
            )
        }
        Some(Window::Paced { from_s, delay_s }) => {
            format!("mono-timeshift_abs-{from_s}.m3u8?delay={delay_s}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(file: &str) -> Result<Output, PlayUrlError> {
        parse(None, file, None).map(|r| r.output)
    }

    #[test]
    fn live_forms() {
        for f in ["index.m3u8", "video.m3u8", "playlist.m3u8"] {
            assert_eq!(p(f), Ok(Output::LiveMaster), "{f}");
        }
        assert_eq!(p("mono.m3u8"), Ok(Output::LiveMedia));
        assert_eq!(p("mpegts"), Ok(Output::LiveTs));
        assert_eq!(
            p("seg-1767225600123.ts"),
            Ok(Output::LiveSegment {
                utc_start_ms: 1_767_225_600_123
            })
        );
        let r = parse(Some("tracks-v1a1"), "mono.m3u8", None).unwrap();
        assert_eq!(
            r.tracks,
            Some(TrackSelection {
                video: vec![1],
                audio: vec![1]
            })
        );
        assert_eq!(r.tracks.unwrap().dir(), "tracks-v1a1");
    }

    #[test]
    fn archive_forms() {
        let fixed = Window::Fixed {
            from_s: 1_767_225_600,
            duration_s: 60,
        };
        let now = Window::UntilNow {
            from_s: 1_767_225_600,
        };
        assert_eq!(
            p("index-1767225600-60.m3u8"),
            Ok(Output::ArchiveMaster(fixed))
        );
        assert_eq!(
            p("video-1767225600-60.m3u8"),
            Ok(Output::ArchiveMaster(fixed))
        );
        assert_eq!(
            p("archive-1767225600-60.m3u8"),
            Ok(Output::ArchiveMedia(fixed))
        );
        assert_eq!(
            p("mono-1767225600-60.m3u8"),
            Ok(Output::ArchiveMedia(fixed))
        );
        assert_eq!(
            p("index-1767225600-now.m3u8"),
            Ok(Output::ArchiveMaster(now))
        );
        assert_eq!(
            p("archive-1767225600-now.m3u8"),
            Ok(Output::ArchiveMedia(now))
        );
        assert_eq!(p("archive-1767225600-60.ts"), Ok(Output::ArchiveTs(fixed)));
        assert_eq!(p("archive-1767225600-now.ts"), Ok(Output::ArchiveTs(now)));
        let abs = Window::Timeshift {
            from: TimeRef::Abs(1_767_225_600),
        };
        let rel = Window::Timeshift {
            from: TimeRef::Rel(3600),
        };
        assert_eq!(p("timeshift_abs-1767225600.ts"), Ok(Output::ArchiveTs(abs)));
        assert_eq!(p("timeshift_rel-3600.ts"), Ok(Output::ArchiveTs(rel)));
        assert_eq!(
            p("timeshift_abs-1767225600.m3u8"),
            Ok(Output::ArchiveMaster(abs))
        );
        assert_eq!(p("timeshift_rel-3600.m3u8"), Ok(Output::ArchiveMaster(rel)));
        assert_eq!(
            p("mono-timeshift_abs-1767225600.m3u8"),
            Ok(Output::ArchiveMedia(abs))
        );
        assert_eq!(
            p("dvr-1767225600123.ts"),
            Ok(Output::ArchiveSegment {
                utc_start_ms: 1_767_225_600_123
            })
        );
        assert_eq!(p("recording_status.json"), Ok(Output::RecordingStatus));
    }

    #[test]
    fn catch_up_query() {
        let abs = Window::Timeshift {
            from: TimeRef::Abs(1000),
        };
        let q = |file: &str, q: &str| parse(None, file, Some(q)).map(|r| r.output);
        assert_eq!(
            q("mpegts", "utc=1000&lutc=1060"),
            Ok(Output::ArchiveTs(abs))
        );
        assert_eq!(q("mpegts", "utc=1000"), Ok(Output::ArchiveTs(abs)));
        assert_eq!(
            q("index.m3u8", "token=x&utc=1000"),
            Ok(Output::ArchiveMaster(abs))
        );
        assert_eq!(q("mono.m3u8", "utc=1000"), Ok(Output::ArchiveMedia(abs)));
        assert_eq!(q("mpegts", "token=abc"), Ok(Output::LiveTs));
        for bad_q in [
            "utc=x",
            "utc=1&utc=2",
            "lutc=5",
            "utc=10&lutc=5",
            "utc=01",
            "utc=-1",
            "utc=",
        ] {
            assert!(
                matches!(q("mpegts", bad_q), Err(PlayUrlError::Bad { .. })),
                "{bad_q}"
            );
        }
        assert!(matches!(
            q("seg-1.ts", "utc=1"),
            Err(PlayUrlError::Bad { .. })
        ));
    }

    #[test]
    fn bad_values_are_400_and_strangers_404() {
        for f in [
            "archive-x-60.m3u8",
            "archive-1-.ts",
            "archive-01-60.m3u8",
            "archive-1-+6.m3u8",
            "index-1-60x.m3u8",
            "dvr-.ts",
            "seg-0x10.ts",
            "timeshift_rel-.ts",
            "timeshift_abs-1e9.m3u8",
            "archive-99999999999999999999999-1.ts",
            // The hostile-input probe's (issue 11): an overflowing DURATION, a sign,
            // and a leading zero that made `dvr-0MS.ts` an alias of `dvr-MS.ts`.
            "archive-1767225600-99999999999999999999.m3u8",
            "archive-+1767225600-10.ts",
            "dvr-01767225600123.ts",
            "archive-timeshift_abs-1.ts",
            "archive-1-2-3.ts",
        ] {
            assert!(
                matches!(p(f), Err(PlayUrlError::Bad { .. })),
                "{f}: {:?}",
                p(f)
            );
        }
        for f in [
            "index.mpd",
            "preview.jpg",
            "index",
            "",
            "archive.m3u8",
            "index-timeshift_abs-1.m3u8",
        ] {
            assert!(
                matches!(p(f), Err(PlayUrlError::Unknown(_))),
                "{f}: {:?}",
                p(f)
            );
        }
    }

    #[test]
    fn track_selections() {
        let t = |d: &str| parse_tracks(d);
        assert_eq!(t("tracks-v1").map(|s| s.dir()), Some("tracks-v1".into()));
        assert_eq!(t("tracks-a2").map(|s| s.dir()), Some("tracks-a2".into()));
        assert_eq!(
            t("tracks-v1a1a2").map(|s| s.dir()),
            Some("tracks-v1a1a2".into())
        );
        for d in [
            "tracks-",
            "tracks-v0",
            "tracks-a1v1",
            "tracks-v1v1",
            "tracks-v2v1",
            "tracks-x1",
            "tracks-v01",
            "tracks-v",
            "tracks-v256",
            "tracks",
            "tracks-é1",
            "tracks-v1é",
        ] {
            assert_eq!(t(d), None, "{d}");
        }
        // Only media playlists and segments take a selection.
        for f in [
            "index.m3u8",
            "mpegts",
            "recording_status.json",
            "archive-1-2.ts",
        ] {
            assert!(parse(Some("tracks-v1"), f, None).is_err(), "{f}");
        }
        assert!(parse(Some("tracks-v1"), "dvr-5.ts", None).is_ok());
        assert!(parse(Some("tracks-a1"), "mono-5-10.m3u8", None).is_ok());
    }

    #[test]
    fn masters_point_to_one_start() {
        assert_eq!(media_playlist_file(None, 0), "mono.m3u8");
        assert_eq!(
            media_playlist_file(
                Some(Window::Fixed {
                    from_s: 5,
                    duration_s: 10
                }),
                0
            ),
            "mono-5-10.m3u8"
        );
        assert_eq!(
            media_playlist_file(Some(Window::UntilNow { from_s: 5 }), 0),
            "mono-5-now.m3u8"
        );
        assert_eq!(
            media_playlist_file(
                Some(Window::Timeshift {
                    from: TimeRef::Rel(60)
                }),
                1000
            ),
            "mono-timeshift_abs-940.m3u8?delay=60"
        );
        // The variant URL parses back as the paced playlist of that viewer.
        assert_eq!(
            parse(None, "mono-timeshift_abs-940.m3u8", Some("delay=60")).map(|r| r.output),
            Ok(Output::ArchiveMedia(Window::Paced {
                from_s: 940,
                delay_s: 60
            }))
        );
        assert!(parse(None, "mono-timeshift_abs-940.m3u8", Some("delay=06")).is_err());
        assert!(parse(None, "mono-timeshift_abs-940.m3u8", Some("delay=1&delay=2")).is_err());
    }

    // Property tests (bounded: proptest's default 256 cases; a longer run:
    // `PROPTEST_CASES=100000 cargo test -p tern-core --lib play_url`).
    proptest::proptest! {
        #[test]
        fn any_file_and_query_parse_without_panic(
            dir in proptest::option::of("tracks-[va0-9]{0,6}"),
            file in "[a-z_0-9.+-]{0,40}",
            query in proptest::option::of("[a-z=&0-9]{0,30}"),
        ) {
            let _ = parse(dir.as_deref(), &file, query.as_deref());
        }

        #[test]
        fn canonical_windows_parse_and_other_spellings_do_not(from in 0u64..u64::MAX, dur in 0u64..u64::MAX) {
            let fixed = Window::Fixed { from_s: from, duration_s: dur };
            proptest::prop_assert_eq!(
                p(&format!("archive-{from}-{dur}.m3u8")),
                Ok(Output::ArchiveMedia(fixed))
            );
            proptest::prop_assert_eq!(p(&format!("archive-{from}-{dur}.ts")), Ok(Output::ArchiveTs(fixed)));
            // Each request has one spelling: a leading zero or a sign is a 400.
            for other in [
                format!("archive-0{from}-{dur}.ts"),
                format!("archive-{from}-0{dur}.ts"),
                format!("archive-+{from}-{dur}.ts"),
                format!("dvr-0{from}.ts"),
            ] {
                proptest::prop_assert!(matches!(p(&other), Err(PlayUrlError::Bad { .. })), "{}", other);
            }
        }
    }
}
