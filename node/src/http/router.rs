//! Maps a request to its handler (docs/design.md §7). The last path component picks the
//! output; what comes before it is the stream name, validated by `StreamName`.

use http::{Method, Request, StatusCode};
use tern_core::StreamName;
use tern_net::Clock;

use std::sync::Arc;

use crate::api;
use crate::cluster;
use crate::http::body::{text, Response};
use crate::output::{archive, hls, mpegts};
use crate::runtime::NodeCtx;

const API_STREAMS: &str = "/streamer/api/v3/streams";

pub async fn route<B, C: Clock>(ctx: &Arc<NodeCtx<C>>, req: Request<B>) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed here; use GET", req.method()),
        );
    }
    let path = req.uri().path();
    if is_cluster_path(path) {
        return cluster::server::route(ctx, &req);
    }
    if path == API_STREAMS || path == "/streamer/api/v3/streams/" {
        return api::list(ctx);
    }
    if let Some(name) = path
        .strip_prefix("/streamer/api/v3/streams/")
        .and_then(|p| p.strip_suffix("/dvr/ranges"))
    {
        let Ok(name) = StreamName::new(name) else {
            return text(StatusCode::BAD_REQUEST, format!("bad stream name {name:?}"));
        };
        return match ctx.entry(&name).and_then(|e| e.archive) {
            Some(a) => archive::ranges(&a).await,
            None => text(
                StatusCode::NOT_FOUND,
                format!("stream {:?} has no archive on this node", name.as_str()),
            ),
        };
    }
    if let Some(name) = path.strip_prefix("/streamer/api/v3/streams/") {
        return match StreamName::new(name) {
            Ok(name) => api::one(ctx, &name),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("bad stream name: {e}")),
        };
    }
    let (name, output) = match StreamName::split_path(path) {
        Ok(x) => x,
        Err(e) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no such URL {path:?}: {e}; expected /STREAM/index.m3u8, /STREAM/mpegts or {API_STREAMS}"),
            )
        }
    };
    let Some(entry) = ctx.entry(&name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} is not known on this node"),
        );
    };
    if let Some(req) = archive::parse(output) {
        return match entry.archive {
            Some(a) => archive::handle(a, &name, req).await,
            None => text(
                StatusCode::NOT_FOUND,
                format!("stream {name:?} has no archive on this node (no `dvr`, and no source that records it)"),
            ),
        };
    }
    let hub = entry.hub;
    match output {
        "index.m3u8" => hls::playlist(&hub),
        "mpegts" => mpegts::live(&hub),
        seg if seg.starts_with("seg-") && seg.ends_with(".ts") => hls::segment(&hub, seg),
        other => text(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} has no output {other:?}; try index.m3u8 or mpegts"),
        ),
    }
}

/// `/tern/vN/…`: the cluster endpoints (any version, so a mismatch gets a clear
/// answer). Stream names of that shape are reserved.
fn is_cluster_path(path: &str) -> bool {
    path.strip_prefix("/tern/v")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(v, _)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_cluster_path;

    #[test]
    fn cluster_paths() {
        assert!(is_cluster_path("/tern/v1/streams"));
        assert!(is_cluster_path("/tern/v22/m4s/main"));
        assert!(!is_cluster_path("/tern/index.m3u8"));
        assert!(!is_cluster_path("/tern/video/index.m3u8"));
        assert!(!is_cluster_path("/terns/v1/x"));
    }
}
