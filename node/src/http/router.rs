//! Maps a request to its handler (docs/design.md §7). The last path component picks the
//! output; what comes before it is the stream name, validated by `StreamName`.

use http::{Method, Request, StatusCode};
use tern_core::api_auth::{Access, AuthError, CHALLENGE};
use tern_core::limits::Refusal;
use tern_core::play_url::{self, Output, PlayUrlError};
use tern_core::stream_name::NameError;
use tern_core::StreamName;
use tern_net::Clock;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::api;
use crate::assets;
use crate::clients::{Counted, Viewer};
use crate::cluster;
use crate::ctx::NodeCtx;
use crate::http::body::{text, Body, Response};
use crate::http::manners::{self, Asked};
use crate::metrics;
use crate::operator;
use crate::output::{archive, hls, mpegts};
use crate::status_page;

const API_STREAMS: &str = "/streamer/api/v3/streams";

pub async fn route<B, C: Clock>(ctx: &Arc<NodeCtx<C>>, req: Request<B>) -> Response
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() == Method::OPTIONS {
        return manners::preflight();
    }
    let asked = Asked::of(req.method(), req.headers());
    if let Some(need) = access_needed(req.method(), req.uri().path()) {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = ctx.api_auth().check(need, given) {
            ctx.refusals.refused(Refusal::ApiAuth, &e);
            return manners::finish(&asked, refused(e));
        }
    }
    let changes = matches!(*req.method(), Method::PUT | Method::DELETE | Method::POST);
    let r = if changes && req.uri().path().starts_with("/streamer/api/") {
        change(ctx, req).await
    } else {
        dispatch(ctx, req).await
    };
    let mut r = manners::finish(&asked, r);
    // A player answer counts its bytes and its client for the stream's figures.
    match r.extensions_mut().remove::<Counted>() {
        Some(c) => r.map(|b| b.counted(c)),
        None => r,
    }
}

async fn dispatch<B, C: Clock>(ctx: &Arc<NodeCtx<C>>, req: Request<B>) -> Response {
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
    if path == "/" {
        return status_page::page(ctx);
    }
    if let Some(r) = assets::serve(path, asked_gzip(&req)) {
        return r;
    }
    if path == "/streamer/api/v3/peers" {
        return api::peers(ctx);
    }
    if path == CONFIG_RELOAD {
        let mut r = operator::error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{CONFIG_RELOAD} takes POST"),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return r;
    }
    if path == "/metrics" {
        return metrics::handle(ctx, req.uri().query());
    }
    if path == API_STREAMS || path == "/streamer/api/v3/streams/" {
        return api::list(ctx, req.uri().query());
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
            Ok(name) => api::one(ctx, &name, req.uri().query()),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("bad stream name: {e}")),
        };
    }
    let peer = req.extensions().get::<SocketAddr>().map(SocketAddr::ip);
    player(ctx, path, req.uri().query(), peer).await
}

const CONFIG_RELOAD: &str = "/streamer/api/v3/config/reload";

/// The operator's changes (`edit_auth`, checked before): `PUT`/`DELETE` of
/// `/streamer/api/v3/streams/NAME` and `POST /streamer/api/v3/config/reload`.
/// Answers are JSON, errors `{"error": ...}`.
async fn change<B, C: Clock>(ctx: &Arc<NodeCtx<C>>, req: Request<B>) -> Response
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let not_allowed = |allow: &'static str| {
        let mut r = operator::error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on {path}; use {allow}"),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        r
    };
    if path == CONFIG_RELOAD {
        return match method {
            Method::POST => operator::reload_response(&ctx.control).await,
            _ => not_allowed("POST"),
        };
    }
    let Some(name) = path
        .strip_prefix("/streamer/api/v3/streams/")
        .filter(|n| !n.ends_with("/dvr/ranges"))
    else {
        return not_allowed("GET");
    };
    let name = match StreamName::new(name) {
        Ok(n) => n,
        Err(e) => {
            return operator::error_response(
                StatusCode::BAD_REQUEST,
                format!("bad stream name {name:?}: {e}"),
            )
        }
    };
    match method {
        Method::PUT => {
            let limited =
                http_body_util::Limited::new(req.into_body(), operator::MAX_API_BODY_BYTES);
            match limited.collect().await {
                Ok(b) => operator::put_response(&ctx.control, name, &b.to_bytes()).await,
                Err(e) if e.is::<http_body_util::LengthLimitError>() => operator::error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than {} bytes, the most a stream's description may be",
                        operator::MAX_API_BODY_BYTES
                    ),
                ),
                Err(e) => operator::error_response(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                ),
            }
        }
        Method::DELETE => operator::delete_response(&ctx.control, name).await,
        _ => not_allowed("GET, PUT, DELETE"),
    }
}

/// Whether the client takes gzip (for the assets, which are gzipped once).
fn asked_gzip<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(tern_core::http_manners::accepts_gzip)
}

/// What a request needs of `view_auth` / `edit_auth`: the API, `/metrics` and the
/// status page are guarded; players and the cluster endpoints (their own auth) are
/// not.
fn access_needed(method: &Method, path: &str) -> Option<Access> {
    let guarded = path == "/" || path == "/metrics" || path.starts_with("/streamer/api/");
    match method {
        _ if !guarded => None,
        &Method::GET | &Method::HEAD => Some(Access::View),
        _ => Some(Access::Edit),
    }
}

/// A refusal: `401` with a Basic challenge, or `403`.
fn refused(e: AuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut r = text(status, e.to_string());
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(CHALLENGE),
        );
    }
    r
}

/// `/NAME[/tracks-…]/FILE[?QUERY]`: the player URL forms of `tern_core::play_url`
/// (listed in the README), live and archive, in one table.
async fn player<C: Clock>(
    ctx: &Arc<NodeCtx<C>>,
    path: &str,
    query: Option<&str>,
    peer: Option<IpAddr>,
) -> Response {
    let (name, tracks_dir, file) = match split_player_path(path) {
        Ok(x) => x,
        Err(e) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no such URL {path:?}: {e}; expected /STREAM/index.m3u8, /STREAM/mpegts or {API_STREAMS} (the README lists every form)"),
            )
        }
    };
    let req = match play_url::parse(tracks_dir, file, query) {
        Ok(r) => r,
        Err(e @ PlayUrlError::Bad { .. }) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(PlayUrlError::Unknown(f)) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("stream {:?} has no output {f:?}; try index.m3u8 or mpegts (the README lists every form)", name.as_str()),
            )
        }
    };
    let Some(entry) = ctx.entry(&name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} is not known on this node"),
        );
    };
    let tracks = req.tracks.as_ref();
    let hub = entry.hub;
    // Live MPEG-TS viewers are held (and counted) by the hub's demand machine.
    let held = matches!(req.output, Output::LiveTs);
    let mut r = match req.output {
        Output::LiveMaster => {
            hub.viewer_passed(ctx.clock.now());
            hls::first_segment(&hub, &ctx.clock).await;
            hls::master(&hub)
        }
        Output::LiveMedia => {
            hub.viewer_passed(ctx.clock.now());
            hls::first_segment(&hub, &ctx.clock).await;
            hls::playlist(&hub, tracks)
        }
        Output::LiveSegment { utc_start_ms } => {
            hub.viewer_passed(ctx.clock.now());
            hls::segment(&hub, utc_start_ms, tracks)
        }
        Output::LiveTs => mpegts::live(&hub, ctx.clock.clone()),
        archive_output => match entry.archive {
            Some(a) => archive::handle(a, &name, tracks, archive_output, ctx.clock.clone()).await,
            None => text(
                StatusCode::NOT_FOUND,
                format!("stream {name:?} has no archive on this node (no `dvr`, and no source that records it)"),
            ),
        },
    };
    if r.status() == StatusCode::OK {
        let viewer = match (r.body(), peer) {
            (Body::Full(_), Some(ip)) => {
                hub.clients.seen(ip, ctx.clock.now());
                Some(Viewer::Hls(ip))
            }
            (Body::Full(_), None) => None,
            _ if held => Some(Viewer::Held),
            _ => Some(Viewer::Streaming),
        };
        if let Some(viewer) = viewer {
            r.extensions_mut().insert(Counted {
                clients: hub.clients.clone(),
                viewer,
            });
        }
    }
    r
}

/// Whether a `GET` of `path` and `query` asks for a live MPEG-TS stream (the
/// server takes such a connection from hyper when it is its first request).
pub fn is_live_ts(path: &str, query: Option<&str>) -> bool {
    split_player_path(path).is_ok_and(|(_, tracks_dir, file)| {
        play_url::parse(tracks_dir, file, query).is_ok_and(|r| matches!(r.output, Output::LiveTs))
    })
}

/// `/NAME/FILE` or `/NAME/tracks-…/FILE`: the stream name, the track selection
/// directory (a last name segment that starts with `tracks-`) and the file.
fn split_player_path(path: &str) -> Result<(StreamName, Option<&str>, &str), NameError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (dir, file) = path.rsplit_once('/').ok_or(NameError::Empty)?;
    let (name, tracks) = match dir.rsplit_once('/') {
        Some((name, last)) if last.starts_with("tracks-") => (name, Some(last)),
        _ => (dir, None),
    };
    Ok((StreamName::new(name)?, tracks, file))
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
    use super::*;

    #[test]
    fn player_paths() {
        let (n, t, f) = split_player_path("/cams/yard/3/tracks-v1a1/mono.m3u8").unwrap();
        assert_eq!(
            (n.as_str(), t, f),
            ("cams/yard/3", Some("tracks-v1a1"), "mono.m3u8")
        );
        let (n, t, f) = split_player_path("/main/index.m3u8").unwrap();
        assert_eq!((n.as_str(), t, f), ("main", None, "index.m3u8"));
        let (n, t, _) = split_player_path("/tracks-v1/mono.m3u8").unwrap();
        assert_eq!((n.as_str(), t), ("tracks-v1", None));
        assert!(split_player_path("/main").is_err());
        assert!(split_player_path("/../tracks-v1/mono.m3u8").is_err());
    }

    #[test]
    fn cluster_paths() {
        assert!(is_cluster_path("/tern/v1/streams"));
        assert!(is_cluster_path("/tern/v22/m4s/main"));
        assert!(!is_cluster_path("/tern/index.m3u8"));
        assert!(!is_cluster_path("/tern/video/index.m3u8"));
        assert!(!is_cluster_path("/terns/v1/x"));
    }
}
