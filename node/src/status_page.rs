//! The status page at `/`: an HTML table of the node's streams (state, bit rate,
//! archive) with links to their playlists and the API.
//!
//! Owns: the page's HTML. Must not: change any state (the figures come from
//! `api::status`, the same as the API's).

use http::StatusCode;
use tern_net::Clock;

use crate::api;
use crate::ctx::NodeCtx;
use crate::http::body::{respond, Body, Response};

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

/// `GET /`.
pub fn page<C: Clock>(ctx: &NodeCtx<C>) -> Response {
    let mut rows = String::new();
    for e in ctx.streams() {
        let s = api::status(ctx, &e);
        let n = esc(&s.name);
        let dvr = match &s.dvr {
            Some(d) => format!("{} ({} segments)", esc(d.state), d.segments),
            None => "no".into(),
        };
        rows.push_str(&format!(
            "<tr><td>{n}</td><td class=\"st-{st}\">{st}</td><td>{br}</td><td>{dvr}</td>\
             <td><a href=\"/{n}/index.m3u8\">HLS</a> · <a href=\"/{n}/mpegts\">MPEG-TS</a> · \
             <a href=\"/streamer/api/v3/streams/{n}\">API</a></td></tr>\n",
            st = s.stats.status,
            br = s.stats.bitrate,
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">no streams on this node</td></tr>\n");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Tern: {node}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head>\n\
         <body><h1>Tern {node}</h1>\n<table id=\"streams\"><thead><tr><th>stream</th>\
         <th>status</th><th>kbit/s</th><th>DVR</th><th>play</th></tr></thead><tbody>\n\
         {rows}</tbody></table>\n<p><a href=\"/streamer/api/v3/streams\">API</a></p>\
         </body></html>\n",
        node = esc(&ctx.node_name),
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", Body::full(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
