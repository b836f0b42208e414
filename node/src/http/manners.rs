//! HTTP manners applied to every answer in one place, after the handler: CORS
//! headers and the `OPTIONS` preflight, `Cache-Control`, `ETag` / `Last-Modified`
//! and `304`, `Range` (`206` / `416`) with `Accept-Ranges`, and gzip.
//!
//! Owns: reading the request's conditional, range and encoding headers and rewriting
//! the response. The decisions are `tern_core::http_manners`; handlers only tag their
//! answer with a [`Manners`] ([`tagged`]). Must not: know URLs or streams.

use std::io::Write;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use tern_core::http_manners::{self as hm, Manners, RangeAnswer};

use crate::http::body::{text, Body, Response};

/// What a request says about the answer it wants.
#[derive(Default, Debug)]
pub struct Asked {
    head_or_get: bool,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    range: Option<String>,
    if_range: Option<String>,
    gzip: bool,
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    // Several lines of a list header (If-None-Match, Accept-Encoding) join with ",".
    let parts: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

impl Asked {
    pub fn of(method: &Method, h: &HeaderMap) -> Self {
        Asked {
            head_or_get: method == Method::GET || method == Method::HEAD,
            if_none_match: header_str(h, header::IF_NONE_MATCH),
            if_modified_since: header_str(h, header::IF_MODIFIED_SINCE),
            range: header_str(h, header::RANGE),
            if_range: header_str(h, header::IF_RANGE),
            gzip: header_str(h, header::ACCEPT_ENCODING).is_some_and(|v| hm::accepts_gzip(&v)),
        }
    }
}

/// A handler's answer with its manners.
pub fn tagged(mut r: Response, m: Manners) -> Response {
    r.extensions_mut().insert(m);
    r
}

/// `OPTIONS` (a CORS preflight or a plain question): `204` with what is allowed.
pub fn preflight() -> Response {
    let mut r = http::Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(hm::CORS_ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(hm::CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(hm::CORS_MAX_AGE_S),
    );
    h.insert(
        header::ALLOW,
        HeaderValue::from_static(hm::CORS_ALLOW_METHODS),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(hm::NO_CACHE),
    );
    r
}

fn set(h: &mut HeaderMap, name: header::HeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
}

/// gzip of `b` (fast level: playlists and JSON are small and change every second).
pub(crate) fn gzip(b: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(b.len() / 3 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(b).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// Applies the manners to a handler's answer.
pub fn finish(asked: &Asked, mut r: Response) -> Response {
    let manners = r.extensions().get::<Manners>().copied();
    let status = r.status();
    {
        let h = r.headers_mut();
        h.entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .or_insert(HeaderValue::from_static("*"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(hm::CORS_EXPOSE_HEADERS),
        );
        let cc = match (status, manners) {
            (StatusCode::OK, Some(m)) => m.cache_control(),
            _ => hm::NO_CACHE,
        };
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static(cc));
    }
    if r.status() != StatusCode::OK || !asked.head_or_get {
        return r;
    }
    let Body::Full(Some(bytes)) = r.body() else {
        return r;
    };
    let bytes = bytes.clone();
    let compressible = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(hm::compressible);
    let use_gzip = compressible && asked.gzip && !manners.is_some_and(|m| m.ranges);
    if compressible {
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(m) = manners {
        let tag = hm::etag(&bytes, if use_gzip { "-gzip" } else { "" });
        let h = r.headers_mut();
        set(h, header::ETAG, &tag);
        if let Some(lm) = m.last_modified_ms {
            set(h, header::LAST_MODIFIED, &hm::http_date(lm));
        }
        if hm::not_modified(
            asked.if_none_match.as_deref(),
            asked.if_modified_since.as_deref(),
            &tag,
            m.last_modified_ms,
        ) {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.body_mut() = Body::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            return r;
        }
        if m.ranges {
            r.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let wanted = asked.range.as_deref().filter(|_| {
                asked
                    .if_range
                    .as_deref()
                    .is_none_or(|ir| hm::if_range_holds(ir, &tag, m.last_modified_ms))
            });
            if let Some(range) = wanted {
                return ranged(r, &bytes, range);
            }
        }
    }
    if use_gzip {
        if let Some(z) = gzip(&bytes) {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            *r.body_mut() = Body::full(z);
        }
    }
    r
}

/// The part of `bytes` a `Range` asks for: `206`, or `416`, or the whole answer.
fn ranged(mut r: Response, bytes: &Bytes, range: &str) -> Response {
    let len = bytes.len() as u64;
    match hm::range(range, len) {
        RangeAnswer::Whole => r,
        RangeAnswer::Part { start, end } => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{len}"),
            );
            // start <= end < len, both within the body.
            *r.body_mut() = Body::full(bytes.slice(start as usize..=end as usize));
            r
        }
        RangeAnswer::Unsatisfiable => {
            let mut e = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range {range:?} is outside the {len} bytes of this answer"),
            );
            let h = e.headers_mut();
            set(h, header::CONTENT_RANGE, &format!("bytes */{len}"));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(hm::CORS_EXPOSE_HEADERS),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(hm::NO_CACHE),
            );
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::respond;

    fn body_of(r: &Response) -> Bytes {
        match r.body() {
            Body::Full(Some(b)) => b.clone(),
            _ => Bytes::new(),
        }
    }

    fn asked(headers: &[(&'static str, &str)]) -> Asked {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        Asked::of(&Method::GET, &h)
    }

    fn segment() -> Response {
        let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        tagged(
            respond(StatusCode::OK, "video/mp2t", Body::full(body)),
            Manners::segment(784_111_777_000),
        )
    }

    #[test]
    fn segment_ranges_and_conditionals() {
        let r = finish(&asked(&[]), segment());
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::ACCEPT_RANGES], "bytes");
        assert_eq!(h[header::CACHE_CONTROL], hm::SEGMENT_CACHE_CONTROL);
        assert_eq!(h[header::LAST_MODIFIED], "Sun, 06 Nov 1994 08:49:37 GMT");
        let tag = h[header::ETAG].to_str().unwrap_or_default().to_owned();

        let r = finish(&asked(&[("range", "bytes=10-19")]), segment());
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 10-19/1000");
        assert_eq!(&body_of(&r)[..], &(10..20u8).collect::<Vec<_>>()[..]);

        let r = finish(&asked(&[("range", "bytes=1000-")]), segment());
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */1000");

        let r = finish(
            &asked(&[("range", "bytes=10-19"), ("if-range", "\"other\"")]),
            segment(),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body_of(&r).len(), 1000);

        let r = finish(&asked(&[("if-none-match", &tag)]), segment());
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body_of(&r).is_empty());

        // Segments are never gzipped.
        let r = finish(&asked(&[("accept-encoding", "gzip")]), segment());
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn playlists_gzip_and_errors_no_cache() {
        let pl = || {
            tagged(
                respond(
                    StatusCode::OK,
                    "application/vnd.apple.mpegurl",
                    Body::full("#EXTM3U\n".repeat(50)),
                ),
                Manners::live(),
            )
        };
        let plain = finish(&asked(&[]), pl());
        let z = finish(&asked(&[("accept-encoding", "gzip, br")]), pl());
        assert_eq!(z.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(z.headers()[header::VARY], "Accept-Encoding");
        assert_eq!(z.headers()[header::CACHE_CONTROL], hm::LIVE_CACHE_CONTROL);
        assert_ne!(z.headers()[header::ETAG], plain.headers()[header::ETAG]);
        let mut out = String::new();
        let zb = body_of(&z);
        let _ = std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zb[..]), &mut out);
        assert_eq!(out.as_bytes(), &body_of(&plain)[..]);

        let e = finish(&asked(&[]), text(StatusCode::NOT_FOUND, "nope"));
        assert_eq!(e.headers()[header::CACHE_CONTROL], hm::NO_CACHE);
        assert_eq!(e.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
