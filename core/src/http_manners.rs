//! HTTP manners of every answer, decided without I/O: which `Cache-Control` an
//! answer gets, its `ETag` and `Last-Modified`, whether a conditional request gets
//! `304`, which part of a body a `Range` asks for (`206`/`416`), whether the client
//! takes gzip, and the CORS headers of a preflight.
//!
//! Owns: these decisions and the header texts. Must not: read the clock (the
//! `Last-Modified` of an answer is a time the answer carries, such as a segment's
//! end), compress anything or know URLs (the node's handlers say what kind of answer
//! they gave with a [`Manners`] tag).

/// How an answer may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// A live or still growing playlist (live master and media, an `EVENT` archive
    /// playlist): [`LIVE_CACHE_CONTROL`].
    Live,
    /// A segment (`seg-…`, `dvr-…`) or a versioned asset: its bytes never change:
    /// [`SEGMENT_CACHE_CONTROL`].
    Segment,
    /// An archive playlist of a closed window (`VOD`): it changes only when
    /// retention deletes its oldest segments: [`CLOSED_CACHE_CONTROL`].
    Closed,
}

/// `Cache-Control` of a live playlist: at most one second, so a cache in front of the
/// node never holds back a new segment for longer.
pub const LIVE_CACHE_CONTROL: &str = "public, max-age=1";
/// `Cache-Control` of a segment: a year, immutable (the URL names the segment's start
/// time; its bytes never change, on the origin or any edge).
pub const SEGMENT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a closed archive playlist: a day (not forever: retention
/// deletes old segments, which shortens the playlist of a window that reaches back
/// that far).
pub const CLOSED_CACHE_CONTROL: &str = "public, max-age=86400";
/// `Cache-Control` of everything else (the API, live MPEG-TS, archive MPEG-TS,
/// errors): caches must ask again every time.
pub const NO_CACHE: &str = "no-cache";

/// What a handler says about its answer (the node puts it in the response's
/// extensions; answers without one are [`NO_CACHE`], without `ETag` or ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manners {
    pub cache: Cache,
    /// UTC ms the content last changed, when it is stable (a segment's end, a closed
    /// window's last segment's end): sent as `Last-Modified`.
    pub last_modified_ms: Option<u64>,
    /// Whether `Range` requests are served (`Accept-Ranges: bytes`): segments.
    pub ranges: bool,
}

impl Manners {
    /// A live or growing playlist.
    pub fn live() -> Self {
        Manners {
            cache: Cache::Live,
            last_modified_ms: None,
            ranges: false,
        }
    }

    /// A segment that ends at `end_ms` (UTC ms): immutable, with ranges.
    pub fn segment(end_ms: u64) -> Self {
        Manners {
            cache: Cache::Segment,
            last_modified_ms: Some(end_ms),
            ranges: true,
        }
    }

    /// A file whose URL names its version (a built-in asset): immutable, like a
    /// segment, without ranges or a date.
    pub fn immutable() -> Self {
        Manners {
            cache: Cache::Segment,
            last_modified_ms: None,
            ranges: false,
        }
    }

    /// A closed archive playlist whose last segment ends at `end_ms`.
    pub fn closed(end_ms: u64) -> Self {
        Manners {
            cache: Cache::Closed,
            last_modified_ms: Some(end_ms),
            ranges: false,
        }
    }

    pub fn cache_control(&self) -> &'static str {
        match self.cache {
            Cache::Live => LIVE_CACHE_CONTROL,
            Cache::Segment => SEGMENT_CACHE_CONTROL,
            Cache::Closed => CLOSED_CACHE_CONTROL,
        }
    }
}

/// CORS: every answer carries `Access-Control-Allow-Origin: *` (players on any page
/// may play), and exposes these headers to scripts.
pub const CORS_EXPOSE_HEADERS: &str =
    "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Content-Encoding";
/// CORS preflight: the methods allowed.
pub const CORS_ALLOW_METHODS: &str = "GET, HEAD, OPTIONS, PUT, DELETE, POST";
/// CORS preflight: the request headers allowed (what players and API clients send).
pub const CORS_ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Range, If-None-Match, If-Modified-Since, If-Range";
/// CORS preflight: how long a browser may keep the answer (seconds).
pub const CORS_MAX_AGE_S: u32 = 86_400;

/// The strong `ETag` of a body: the first 128 bits of its BLAKE3 digest, quoted, with
/// `suffix` for another encoding of the same body (`-gzip`), since a strong tag names
/// exact bytes. Origin and edges, whose bytes are identical, give the same tag.
pub fn etag(body: &[u8], suffix: &str) -> String {
    let digest = blake3::hash(body);
    let mut s = String::with_capacity(40);
    s.push('"');
    for b in &digest.as_bytes()[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(suffix);
    s.push('"');
    s
}

/// Whether `If-None-Match` (a list of tags, or `*`) matches `etag`, by the weak
/// comparison RFC 9110 asks for there (`W/` ignored).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = bare(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == want)
}

/// Whether a conditional GET can be answered `304 Not Modified`: by `If-None-Match`
/// when the client sent one (then `If-Modified-Since` is ignored), else by
/// `If-Modified-Since` against the answer's `Last-Modified` (whole seconds).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    last_modified_ms: Option<u64>,
) -> bool {
    if let Some(inm) = if_none_match {
        return etag_matches(inm, etag);
    }
    match (
        if_modified_since.and_then(parse_http_date),
        last_modified_ms,
    ) {
        (Some(since_s), Some(lm)) => lm / 1000 <= since_s,
        _ => false,
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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

/// Days since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) of a UTC ms time.
pub fn http_date(utc_ms: u64) -> String {
    let secs = utc_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// UTC seconds of an IMF-fixdate (the only form HTTP/1.1 senders may generate);
/// `None` for anything else, which makes a conditional header ignored.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|&m| m == month_name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let mi: u64 = hms.next()?.parse().ok()?;
    let se: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// What a `Range` header makes of a body of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range (none, malformed, several ranges): the whole body, `200`.
    Whole,
    /// Bytes `start..=end`, `206` with `Content-Range: bytes start-end/len`.
    Part { start: u64, end: u64 },
    /// A range wholly past the end: `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Reads a `Range` header for a body of `len` bytes. Only one `bytes` range is
/// served; several ranges (multipart answers) and malformed headers are ignored,
/// which RFC 9110 allows: the client gets the whole body.
pub fn range(header: &str, len: u64) -> RangeAnswer {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-N`: the last N bytes.
        return match num(last) {
            None => RangeAnswer::Whole,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = num(first) else {
        return RangeAnswer::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match num(last) {
            Some(e) if e >= start => e,
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part {
        start,
        end: end.min(len - 1),
    }
}

/// Whether `If-Range` lets a range through: it must name this exact answer, by its
/// strong `ETag` or its `Last-Modified` date; else the whole body is sent.
pub fn if_range_holds(if_range: &str, etag: &str, last_modified_ms: Option<u64>) -> bool {
    let v = if_range.trim();
    if v.starts_with('"') {
        return v == etag;
    }
    match (parse_http_date(v), last_modified_ms) {
        (Some(s), Some(lm)) => s == lm / 1000,
        _ => false,
    }
}

/// Whether `Accept-Encoding` takes gzip (`gzip` or `x-gzip` with a q-value above
/// 0, or `*` above 0 when gzip is not named).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .or_else(|| p.trim().strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        match coding.as_str() {
            "gzip" | "x-gzip" => return !q_zero,
            "*" => star = !q_zero,
            _ => {}
        }
    }
    star
}

/// Whether answers of this `Content-Type` are compressed for a client that takes
/// gzip: playlists, JSON, HTML and the metrics text (segments and MPEG-TS never:
/// they do not shrink).
pub fn compressible(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        ct.as_str(),
        "application/vnd.apple.mpegurl"
            | "application/x-mpegurl"
            | "application/json"
            | "text/html"
            | "text/plain"
            | "application/openmetrics-text"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_767_225_600_999),
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
        for ms in [
            0,
            784_111_777_000,
            951_782_400_000,
            1_767_225_600_000,
            4_102_444_799_000,
        ] {
            assert_eq!(parse_http_date(&http_date(ms)), Some(ms / 1000), "{ms}");
        }
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(range("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(
            range("bytes=900-", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            range("bytes=900-5000", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            range("bytes=-100", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(range("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(range("bytes=5-4", 1000), Whole);
        assert_eq!(range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(range("items=0-1", 1000), Whole);
        assert_eq!(range("bytes=+1-2", 1000), Whole);
        assert_eq!(range("bytes=a-", 1000), Whole);
        assert_eq!(range("bytes=99999999999999999999999-", 1000), Whole);
    }

    #[test]
    fn conditionals() {
        let tag = etag(b"hello", "");
        assert_eq!(tag.len(), 34);
        assert_ne!(tag, etag(b"hello", "-gzip"));
        assert!(etag_matches(&tag, &tag));
        assert!(etag_matches(&format!("\"x\", W/{tag}"), &tag));
        assert!(etag_matches("*", &tag));
        assert!(!etag_matches("\"x\"", &tag));
        let lm = Some(784_111_777_500);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(not_modified(None, Some(date), &tag, lm));
        assert!(!not_modified(
            None,
            Some("Sun, 06 Nov 1994 08:49:36 GMT"),
            &tag,
            lm
        ));
        assert!(!not_modified(Some("\"x\""), Some(date), &tag, lm));
        assert!(!not_modified(None, Some(date), &tag, None));
        assert!(if_range_holds(&tag, &tag, None));
        assert!(!if_range_holds(&format!("W/{tag}"), &tag, None));
        assert!(if_range_holds(date, &tag, lm));
        assert!(!if_range_holds(date, &tag, Some(1_000)));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("*, gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(compressible("application/vnd.apple.mpegurl"));
        assert!(compressible("application/json"));
        assert!(compressible("text/html; charset=utf-8"));
        assert!(!compressible("video/mp2t"));
    }
}
