//! `GET /metrics`: the node's figures for Prometheus (text format 0.0.4), or
//! OpenMetrics 1.0 with `?format=openmetrics`. Per stream (label `stream`): bit rate
//! in and out, bytes in and out, clients, frames, discontinuities, status, DVR bytes
//! and segments; per cluster peer and class: bytes in and out, open pulls (the
//! counters of `cluster::link`).
//!
//! Owns: which figures are exported and their names. Must not: change any state
//! (the out bit rate's snapshots aside, see `Clients::out_bitrate`), or format the
//! text itself (`tern_core::metrics`).

use http::StatusCode;
use tern_core::metrics::{render, Family, Format, Kind};
use tern_core::stream_status::StreamStatus;
use tern_net::Clock;

use crate::api;
use crate::ctx::NodeCtx;
use crate::http::body::{respond, text, Body, Response};

/// The format a query asks for: `format=openmetrics`, else Prometheus text.
fn format_of(query: Option<&str>) -> Result<Format, String> {
    let asked = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("format="));
    match asked {
        None | Some("prometheus") => Ok(Format::Prometheus),
        Some("openmetrics") => Ok(Format::OpenMetrics),
        Some(other) => Err(format!(
            "unknown format={other:?}: expected format=openmetrics or format=prometheus"
        )),
    }
}

/// The metric families of the node now.
pub fn families<C: Clock>(ctx: &NodeCtx<C>) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let mut bitrate_in = Family::new(
        "tern_stream_bitrate_in_bits",
        Gauge,
        "Bits per second from the source, over the last closed segment.",
    );
    let mut bitrate_out = Family::new(
        "tern_stream_bitrate_out_bits",
        Gauge,
        "Bits per second sent to this node's players of the stream, over the last 5 to 10 s between scrapes.",
    );
    let mut bytes_in = Family::new(
        "tern_stream_bytes_in",
        Counter,
        "Bytes received from the source since the stream started on this node.",
    );
    let mut bytes_out = Family::new(
        "tern_stream_bytes_out",
        Counter,
        "Bytes sent to this node's players of the stream (HLS, MPEG-TS, archive).",
    );
    let mut skips = Family::new(
        "tern_stream_viewer_skips",
        Counter,
        "Times a live MPEG-TS viewer fell behind the fan-out ring and skipped to the next keyframe.",
    );
    let mut cuts = Family::new(
        "tern_stream_viewer_cuts",
        Counter,
        "Live MPEG-TS viewers cut because their socket took nothing for 5 s.",
    );
    let mut clients = Family::new(
        "tern_stream_clients",
        Gauge,
        "Clients now: open responses and HLS addresses seen in the last 30 s.",
    );
    let mut frames = Family::new(
        "tern_stream_frames",
        Counter,
        "Frames received since the stream started on this node.",
    );
    let mut discontinuities = Family::new(
        "tern_stream_discontinuities",
        Counter,
        "Source restarts, input switches and missed stretches.",
    );
    let mut status = Family::new(
        "tern_stream_status",
        Gauge,
        "1 for the stream's status (running, starting, waiting, error, idle), 0 for the others.",
    );
    let mut dvr_bytes = Family::new(
        "tern_stream_dvr_bytes",
        Gauge,
        "Bytes of the stream's archive stored by this node.",
    );
    let mut dvr_segments = Family::new(
        "tern_stream_dvr_segments",
        Gauge,
        "Segments of the stream's archive stored by this node.",
    );
    let now = ctx.clock.now();
    for e in ctx.streams() {
        let s = api::status(ctx, &e);
        let l = || vec![("stream", s.name.clone())];
        let st = &s.stats;
        bitrate_in.push(l(), st.input_bitrate as f64 * 1000.0);
        bitrate_out.push(l(), e.hub.clients.out_bitrate(now) as f64);
        bytes_in.push(l(), st.bytes_in as f64);
        bytes_out.push(l(), st.bytes_out as f64);
        clients.push(l(), st.online_clients as f64);
        let (sk, cu) = e.hub.clients.skips_and_cuts();
        skips.push(l(), sk as f64);
        cuts.push(l(), cu as f64);
        frames.push(l(), e.hub.figures().frames_in as f64);
        discontinuities.push(l(), st.discontinuities as f64);
        for v in StreamStatus::ALL {
            let on = u8::from(v.as_str() == st.status);
            status.push(
                vec![("stream", s.name.clone()), ("status", v.as_str().into())],
                on,
            );
        }
        if let Some(d) = &s.dvr {
            dvr_bytes.push(l(), d.bytes as f64);
            dvr_segments.push(l(), d.segments as f64);
        }
    }
    // The cluster link's counters (`cluster::link`, also `/streamer/api/v3/peers`).
    let mut peer_bytes = Family::new(
        "tern_cluster_peer_bytes",
        Counter,
        "Cluster bytes per peer (host:port of a source, or the address of a peer pulling from this node), class (live, archive, signaling) and direction (in, out).",
    );
    let mut peer_pulls = Family::new(
        "tern_cluster_peer_pulls",
        Gauge,
        "Open cluster pulls per peer and class.",
    );
    for p in ctx.link.snapshot() {
        for (class, c) in [
            ("live", &p.live),
            ("archive", &p.archive),
            ("signaling", &p.signaling),
        ] {
            let l = |dir: Option<&'static str>| {
                let mut v = vec![("peer", p.peer.clone()), ("class", class.to_string())];
                if let Some(d) = dir {
                    v.push(("direction", d.to_string()));
                }
                v
            };
            peer_bytes.push(l(Some("in")), c.bytes_in as f64);
            peer_bytes.push(l(Some("out")), c.bytes_out as f64);
            peer_pulls.push(l(None), c.online_clients as f64);
        }
    }
    vec![
        bitrate_in,
        bitrate_out,
        bytes_in,
        bytes_out,
        skips,
        cuts,
        clients,
        frames,
        discontinuities,
        status,
        dvr_bytes,
        dvr_segments,
        peer_bytes,
        peer_pulls,
    ]
}

/// `GET /metrics[?format=openmetrics]`.
pub fn handle<C: Clock>(ctx: &NodeCtx<C>, query: Option<&str>) -> Response {
    let format = match format_of(query) {
        Ok(f) => f,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let body = render(&families(ctx), format);
    respond(StatusCode::OK, format.content_type(), Body::full(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_of(None), Ok(Format::Prometheus));
        assert_eq!(
            format_of(Some("format=openmetrics")),
            Ok(Format::OpenMetrics)
        );
        assert_eq!(
            format_of(Some("x=1&format=prometheus")),
            Ok(Format::Prometheus)
        );
        assert!(format_of(Some("format=json")).is_err());
    }
}
