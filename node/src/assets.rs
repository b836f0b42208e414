//! Files built into the binary for the status page (node/assets/): hls.js, served
//! at a URL that names its version, so browsers may keep it for a year.
//!
//! Owns: the asset table and its answers (gzipped once, on first use, for the
//! clients that take gzip). Must not: serve anything a request names freely (only
//! the exact paths below answer).

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::StatusCode;
use tern_core::http_manners::Manners;

use crate::http::body::{respond, Body, Response};
use crate::http::manners;

/// The vendored hls.js release (node/assets/README.md says how to update it).
pub const HLS_JS_VERSION: &str = "1.7.4";
/// Where the node serves it (the status page's `<script src>`).
pub const HLS_JS_PATH: &str = "/tern/assets/hls-1.7.4.light.min.js";

static HLS_JS: &[u8] = include_bytes!("../assets/hls.light.min.js");

/// The answer for `path` when it names an asset.
pub fn serve(path: &str, gzip: bool) -> Option<Response> {
    if path != HLS_JS_PATH {
        return None;
    }
    static GZ: OnceLock<Option<Bytes>> = OnceLock::new();
    let zipped = if gzip {
        GZ.get_or_init(|| manners::gzip(HLS_JS)).clone()
    } else {
        None
    };
    let mut r = respond(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        Body::full(zipped.clone().unwrap_or(Bytes::from_static(HLS_JS))),
    );
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if zipped.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Some(manners::tagged(r, Manners::immutable()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_file_carry_the_version() {
        assert!(HLS_JS_PATH.contains(HLS_JS_VERSION));
        let needle = format!("\"{HLS_JS_VERSION}\"");
        assert!(
            HLS_JS.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "node/assets/hls.light.min.js is not hls.js {HLS_JS_VERSION}"
        );
    }

    #[test]
    fn only_the_exact_path_answers() {
        assert!(serve(HLS_JS_PATH, false).is_some());
        for p in [
            "/tern/assets/",
            "/tern/assets/../Cargo.toml",
            "/tern/assets/hls.js",
        ] {
            assert!(serve(p, false).is_none(), "{p}");
        }
    }

    #[test]
    fn gzip_when_taken() {
        let plain = serve(HLS_JS_PATH, false).unwrap();
        let zipped = serve(HLS_JS_PATH, true).unwrap();
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
    }
}
