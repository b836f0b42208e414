//! The status page at `/`: the node's streams (state, bit rate, clients, DVR depth)
//! and a player that plays a stream live or scrubs its archive on a timeline of the
//! DVR ranges. The HTML and its script are `node/assets/status.html`; hls.js is
//! served beside it from `crate::assets`.
//!
//! Owns: filling in the page's placeholders (the first rows of the table, rendered
//! here so the page lists the streams without script). Must not: change any state
//! (the figures come from `api::status`, the same as the API's).

use http::StatusCode;
use tern_net::Clock;

use crate::api::{self, StreamStatus};
use crate::assets;
use crate::ctx::NodeCtx;
use crate::http::body::{respond, Body, Response};

/// The page, with `{{NODE}}`, `{{ROWS}}` and `{{HLS}}` to fill in.
const TEMPLATE: &str = include_str!("../assets/status.html");

/// `s` with the HTML special characters escaped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The DVR column: the depth stored, as the script's `depth()` writes it.
fn depth(s: &StreamStatus) -> String {
    match &s.stats.dvr_info {
        Some(d) => format!(
            "{} h {} min ({} segments)",
            d.duration / 3600,
            d.duration % 3600 / 60,
            d.segments
        ),
        None => "no".into(),
    }
}

/// One row of the table, the same as the script's `row()`.
fn row(s: &StreamStatus) -> String {
    let n = esc(&s.name);
    let st = esc(s.stats.status);
    format!(
        "<tr data-name=\"{n}\"><td>{n}</td><td class=\"st-{st}\">{st}</td>\
         <td class=\"num\">{br}</td><td class=\"num\">{cl}</td><td>{dvr}</td>\
         <td><button data-play=\"{n}\">watch</button> · \
         <a href=\"/{n}/index.m3u8\">HLS</a> · <a href=\"/{n}/mpegts\">MPEG-TS</a></td></tr>\n",
        br = s.stats.bitrate,
        cl = s.stats.online_clients,
        dvr = depth(s),
    )
}

/// `GET /`.
pub fn page<C: Clock>(ctx: &NodeCtx<C>) -> Response {
    let mut rows = String::new();
    for e in ctx.streams() {
        rows.push_str(&row(&api::status(ctx, &e)));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">no streams on this node</td></tr>\n");
    }
    let html = TEMPLATE
        .replace("{{NODE}}", &esc(&ctx.node_name))
        .replace("{{HLS}}", assets::HLS_JS_PATH)
        .replace("{{ROWS}}", &rows);
    respond(StatusCode::OK, "text/html; charset=utf-8", Body::full(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn template_has_every_placeholder_once() {
        for p in ["{{ROWS}}", "{{HLS}}"] {
            assert_eq!(TEMPLATE.matches(p).count(), 1, "{p}");
        }
        assert_eq!(TEMPLATE.matches("{{NODE}}").count(), 2);
    }
}
