//! URLs and addresses in the config: `input` URLs (with the `fake://` options),
//! `source` URLs, `HOST:PORT` and the `http` listen address.
//!
//! Owns: the syntax of each URL kind and the ranges of `fake://` options. Must not:
//! know line numbers (errors carry a character offset into the URL; the directive
//! adds the position) or anything of the directives around the URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{
    InputUrl, Listen, PublishInput, PublishPassword, RtspCredentials, RtspInput, RtspTransport,
    SourceProtocol, FAKE_BITRATE_RANGE,
};
use super::units::{self, NumError};
use crate::fake::options::{FPS_RANGE, GOP_MS_RANGE, HEIGHT_RANGE, WIDTH_RANGE};
use crate::fake::FakeOptions;
use crate::stream_name::StreamName;

/// What is wrong with a URL, and where in it (characters from its start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    pub offset: usize,
    pub message: String,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError {
        offset,
        message: message.into(),
    })
}

/// Character offset of byte index `i` of `s`.
fn chars_to(s: &str, i: usize) -> usize {
    s.get(..i).map_or(0, |p| p.chars().count())
}

const SUPPORTED_INPUTS: &str = "supported inputs are `fake://fake`, `m4s://HOST:PORT/NAME`, \
     `m4f://HOST:PORT/NAME`, `rtsp://[USER:PASS@]HOST[:PORT]/PATH`, `udp://ADDR:PORT` \
     (MPEG-TS), `http://HOST[:PORT]/PATH` (MPEG-TS), `srt://:PORT` or `srt://HOST:PORT` \
     (MPEG-TS over SRT) and `publish://[?password=SECRET]` (RTMP publishing)";

/// Parses an `input` URL.
pub fn input_url(url: &str) -> Result<InputUrl, UrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return err(
            0,
            format!("bad input URL `{url}`: expected `SCHEME://...`; {SUPPORTED_INPUTS}"),
        );
    };
    let base = scheme.len() + 3;
    let base_chars = chars_to(url, base);
    let shift = |e: UrlError| UrlError {
        offset: e.offset + base_chars,
        message: e.message,
    };
    match scheme {
        "fake" => fake(rest).map(InputUrl::Fake).map_err(shift),
        "m4s" | "m4f" => {
            let (host, port, name) = peer_stream(scheme, rest).map_err(shift)?;
            Ok(if scheme == "m4s" {
                InputUrl::M4s { host, port, name }
            } else {
                InputUrl::M4f { host, port, name }
            })
        }
        "rtsp" => rtsp(rest).map(InputUrl::Rtsp).map_err(shift),
        "udp" => udp(rest).map_err(shift),
        "http" => http(rest).map_err(shift),
        "publish" => publish(rest).map(InputUrl::Publish).map_err(shift),
        "srt" => super::srt::srt(rest).map(InputUrl::Srt).map_err(shift),
        "rtmp" | "rtmps" => err(
            0,
            format!(
                "Tern does not pull `{scheme}://`: for an encoder that publishes to this \
                 node, write `input publish://;` in the stream and `rtmp PORT;` at the top \
                 level, and point the encoder at `rtmp://THIS_NODE:PORT/STREAM`"
            ),
        ),
        _ => err(
            0,
            format!("unsupported input `{scheme}://`: {SUPPORTED_INPUTS}"),
        ),
    }
}

/// The default RTSP port.
pub const RTSP_DEFAULT_PORT: u16 = 554;

/// `[USER[:PASS]@]HOST[:PORT][/PATH][?QUERY]` of an `rtsp://` input. Errors never
/// quote the credentials.
fn rtsp(rest: &str) -> Result<RtspInput, UrlError> {
    let form = "expected `rtsp://[USER:PASS@]HOST[:PORT]/PATH[?transport=tcp|udp]`";
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    // The last `@` of the authority ends the credentials (a password may hold `@`
    // only percent-encoded, but be lenient).
    let (credentials, hostport, host_at) = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let (Some(user), Some(password)) = (percent_decode(user), percent_decode(password))
            else {
                return err(
                    0,
                    format!("bad percent-encoding in the credentials: {form}"),
                );
            };
            let creds = RtspCredentials { user, password };
            (Some(creds), &authority[at + 1..], chars_to(rest, at + 1))
        }
        None => (None, authority, 0),
    };
    let shift = |e: UrlError| UrlError {
        offset: e.offset + host_at,
        message: e.message,
    };
    let (host, port) = if hostport.starts_with('[') || hostport.contains(':') {
        host_port(hostport, form).map_err(shift)?
    } else {
        let with_port = format!("{hostport}:{RTSP_DEFAULT_PORT}");
        host_port(&with_port, form).map_err(shift)?
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(
            auth_end,
            format!("the path holds a space or a control character: {form}"),
        );
    }
    let mut transport = RtspTransport::Tcp;
    let mut kept = Vec::new();
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("transport", "tcp")) => transport = RtspTransport::Tcp,
                Some(("transport", "udp")) => transport = RtspTransport::Udp,
                Some(("transport", v)) => {
                    return err(
                        chars_to(rest, auth_end),
                        format!("bad `transport={v}`: expected `tcp` or `udp`"),
                    )
                }
                _ => kept.push(pair),
            }
        }
    }
    let mut path = if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    };
    if !kept.is_empty() {
        path.push('?');
        path.push_str(&kept.join("&"));
    }
    Ok(RtspInput {
        host,
        port,
        path,
        credentials,
        transport,
    })
}

/// `%XX` decoding of a URL's user or password; `None` on a bad escape or bytes that
/// are not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What follows `publish://`: nothing, or `?password=SECRET` (percent-encoding
/// allowed). Errors never quote the password.
fn publish(rest: &str) -> Result<PublishInput, UrlError> {
    let form = "expected `publish://` or `publish://?password=SECRET`: publishers \
                connect to the node's `rtmp` port, and the stream they publish is the \
                one whose block holds this input";
    let Some(query) = rest.strip_prefix('?') else {
        if rest.is_empty() {
            return Ok(PublishInput::default());
        }
        return err(0, format!("`publish://` takes no host or path: {form}"));
    };
    let mut input = PublishInput::default();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("password", v)) if input.password.is_none() => {
                let Some(p) = percent_decode(v) else {
                    return err(1, format!("bad percent-encoding in the password: {form}"));
                };
                let Some(p) = PublishPassword::new(p) else {
                    return err(1, format!("the password is empty: {form}"));
                };
                if p.has_separator() {
                    return err(
                        1,
                        format!(
                            "the password holds `?`, `&`, `/` or a space, which a publisher \
                             cannot send in an RTMP URL: {form}"
                        ),
                    );
                }
                input.password = Some(p);
            }
            _ => {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                return err(
                    1,
                    format!("unknown or repeated `publish://` option `{key}`: {form}"),
                );
            }
        }
    }
    Ok(input)
}

/// `ADDR:PORT[?interface=IPV4]` of a `udp://` input.
fn udp(rest: &str) -> Result<InputUrl, UrlError> {
    let form = "expected `udp://ADDR:PORT` with ADDR a local address (`0.0.0.0` for any) or \
                a multicast group, and `?interface=IPV4` to join the group on one interface";
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (host, port) = host_port(authority, form)?;
    let Ok(addr) = host.parse::<IpAddr>() else {
        return err(0, format!("`{host}` is not an IP address: {form}"));
    };
    let mut interface = None;
    if let Some(q) = query {
        let at = chars_to(rest, authority.len() + 1);
        for (k, v) in q
            .split('&')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        {
            match k {
                "interface" if interface.is_none() => match v.parse::<Ipv4Addr>() {
                    Ok(i) => interface = Some(i),
                    Err(_) => {
                        return err(
                            at,
                            format!("bad `interface={v}`: expected the IPv4 address of a local interface"),
                        )
                    }
                },
                _ => return err(at, format!("unknown or repeated `udp://` option `{k}`: the only option is `interface=IPV4`")),
            }
        }
    }
    if interface.is_some() && !addr.is_multicast() {
        return err(
            0,
            format!("`interface=` is for a multicast group, and `{addr}` is not one: {form}"),
        );
    }
    Ok(InputUrl::Udp {
        addr,
        port,
        interface,
    })
}

/// `HOST[:PORT]/PATH` of an `http://` input (port 80 by default).
fn http(rest: &str) -> Result<InputUrl, UrlError> {
    let form = "expected `http://HOST[:PORT]/PATH` serving MPEG-TS";
    let slash = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = (&rest[..slash], &rest[slash..]);
    if authority.contains('@') {
        return err(
            0,
            format!("credentials in an `http://` input URL are not supported: {form}"),
        );
    }
    let explicit_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    let (host, port) = if explicit_port {
        host_port(authority, form)?
    } else {
        let (h, _) = host_port(&format!("{authority}:80"), form)?;
        (h, 80)
    };
    if let Some(i) = path.find(|c: char| c.is_control() || c.is_whitespace()) {
        return err(
            chars_to(rest, slash + i),
            format!("a control character or space in the path: {form}"),
        );
    }
    let path = if path.is_empty() { "/" } else { path };
    Ok(InputUrl::Http {
        host,
        port,
        path: path.to_owned(),
    })
}

/// `HOST:PORT/NAME` of an `m4s://` or `m4f://` input.
fn peer_stream(scheme: &str, rest: &str) -> Result<(String, u16, StreamName), UrlError> {
    let form = format!("expected `{scheme}://HOST:PORT/NAME`");
    if let Some(q) = rest.find('?') {
        return err(
            chars_to(rest, q),
            format!(
                "`{scheme}://` URLs take no `?` options: write input options after the URL, \
                 separated by a space (`priority=1 source_timeout=5`)"
            ),
        );
    }
    let Some(slash) = rest.find('/') else {
        return err(
            chars_to(rest, rest.len()),
            format!("{form}: the stream name is missing"),
        );
    };
    let (authority, name) = (&rest[..slash], &rest[slash + 1..]);
    let (host, port) = host_port(authority, &form)?;
    let name_at = chars_to(rest, slash + 1);
    if name.is_empty() {
        return err(name_at, format!("{form}: the stream name is missing"));
    }
    let name = StreamName::new(name)
        .or_else(|e| err(name_at, format!("bad stream name `{name}`: {e}")))?;
    Ok((host, port, name))
}

/// Parses a `source` URL: `m4s://HOST:PORT` or `m4f://HOST:PORT`.
pub fn source_url(url: &str) -> Result<(SourceProtocol, String, u16), UrlError> {
    let form = "a source URL is `m4s://HOST:PORT` (frame by frame) or `m4f://HOST:PORT` \
                (segments)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return err(0, format!("bad source URL `{url}`: {form}"));
    };
    let protocol = match scheme {
        "m4s" => SourceProtocol::M4s,
        "m4f" => SourceProtocol::M4f,
        _ => return err(0, format!("unsupported source `{scheme}://`: {form}")),
    };
    let base = chars_to(url, scheme.len() + 3);
    let shift = |e: UrlError| UrlError {
        offset: e.offset + base,
        message: e.message,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = host_port(authority, form).map_err(shift)?;
    if !path.is_empty() && path != "/" {
        return err(
            base + chars_to(rest, authority.len()),
            format!(
                "a source URL has no path (found `{path}`): a source takes every stream of \
                 the peer; pick some with `only NAMES;` in its block, or use \
                 `input {scheme}://HOST:PORT/NAME;` in a stream"
            ),
        );
    }
    Ok((protocol, host, port))
}

/// `HOST:PORT` or `[IPV6]:PORT`, port 1..=65535. `form` says what was expected.
pub fn host_port(s: &str, form: &str) -> Result<(String, u16), UrlError> {
    let (host, port_at) = if let Some(inner) = s.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return err(0, format!("unclosed `[` in `{s}`: {form}"));
        };
        let h = &inner[..close];
        if h.parse::<Ipv6Addr>().is_err() {
            return err(1, format!("bad IPv6 address `{h}`: {form}"));
        }
        let after = &inner[close + 1..];
        if !after.starts_with(':') {
            return err(
                chars_to(s, close + 2),
                format!("missing `:PORT` after `[{h}]`: {form}"),
            );
        }
        (h.to_owned(), close + 3)
    } else {
        let Some((h, _)) = s.rsplit_once(':') else {
            return err(
                chars_to(s, s.len()),
                format!("missing `:PORT` after `{s}`: {form}"),
            );
        };
        if h.contains(':') {
            return err(
                0,
                format!("put an IPv6 address in brackets, as in `[::1]:8888`: {form}"),
            );
        }
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !h.starts_with(['.', '-'])
            && !h.contains("..");
        if !ok {
            return err(
                0,
                format!("bad host `{h}`: expected a host name or an IP address; {form}"),
            );
        }
        (h.to_owned(), h.len() + 1)
    };
    let port_str = &s[port_at..];
    let port = match units::integer(port_str).ok().map(u16::try_from) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            return err(
                chars_to(s, port_at),
                format!("bad port `{port_str}`: expected a number within 1..=65535"),
            )
        }
    };
    Ok((host, port))
}

/// The argument of `http`: `PORT`, `ADDR:PORT` or `[IPV6]:PORT`; port 0..=65535
/// (0: the OS picks a free port).
pub fn listen(s: &str) -> Result<Listen, UrlError> {
    let (addr, port_at) = match s.rsplit_once(':') {
        None => (None, 0),
        Some((a, _)) => {
            let ip = if let Some(v6) = a.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
                v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
            } else if a.contains(':') {
                return err(
                    0,
                    "put an IPv6 address in brackets, as in `http [::1]:8888;`".to_owned(),
                );
            } else {
                a.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
            };
            match ip {
                Some(ip) => (Some(ip), a.len() + 1),
                None => {
                    return err(
                        0,
                        format!(
                            "bad listen address `{a}`: expected an IP address such as \
                             `0.0.0.0`, `127.0.0.1` or `[::1]` (host names are not \
                             accepted here)"
                        ),
                    )
                }
            }
        }
    };
    let port_str = &s[port_at..];
    match units::integer(port_str).ok().map(u16::try_from) {
        Some(Ok(port)) => Ok(Listen { addr, port }),
        _ => err(
            chars_to(s, port_at),
            format!(
                "bad port `{port_str}`: expected `PORT` or `ADDR:PORT` with PORT a number \
                 within 0..=65535"
            ),
        ),
    }
}

const FAKE_OPTIONS: &str = "width, height, fps, gop, bitrate";

/// What follows `fake://`: `fake` and an optional `?query`.
fn fake(rest: &str) -> Result<FakeOptions, UrlError> {
    let (host, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if host != "fake" {
        return err(
            0,
            format!(
                "expected `fake://fake` (optionally with `?{}`), found `fake://{host}`",
                "width=&height=&fps=&gop=&bitrate="
            ),
        );
    }
    let mut opts = FakeOptions::default();
    let Some(query) = query else {
        return Ok(opts);
    };
    let mut at = host.len() + 1;
    let mut seen: Vec<&str> = Vec::new();
    for part in query.split('&') {
        let off = chars_to(rest, at);
        at += part.len() + 1;
        let Some((key, value)) = part.split_once('=') else {
            return err(
                off,
                format!("expected a fake:// option `name=value` ({FAKE_OPTIONS}), found `{part}`"),
            );
        };
        if seen.contains(&key) {
            return err(off, format!("fake:// option `{key}` is given twice"));
        }
        seen.push(key);
        fake_option(&mut opts, key, value).or_else(|m| err(off, m))?;
    }
    opts.validate().or_else(|m| err(0, m))?;
    Ok(opts)
}

fn fake_option(opts: &mut FakeOptions, key: &str, value: &str) -> Result<(), String> {
    let whole = |range: &std::ops::RangeInclusive<u16>, even: bool, what: &str| {
        let n = units::integer(value)
            .map_err(|_| format!("bad `{key}={value}`: expected a whole number"))?;
        match u16::try_from(n) {
            Ok(v) if range.contains(&v) && (!even || v & 1 == 0) => Ok(v),
            _ => Err(format!(
                "`{key}={value}` is out of range: {key} must be {}within {}..={}{what}",
                if even { "even and " } else { "" },
                range.start(),
                range.end()
            )),
        }
    };
    match key {
        "width" => opts.width = whole(&WIDTH_RANGE, true, " (the barcode needs 256)")?,
        "height" => opts.height = whole(&HEIGHT_RANGE, true, "")?,
        "fps" => opts.fps = whole(&FPS_RANGE, false, "")?,
        "gop" => {
            let range = || {
                format!(
                    "`gop={value}` is out of range: gop must be within {}..={} seconds",
                    units::format_seconds(u64::from(*GOP_MS_RANGE.start())),
                    units::format_seconds(u64::from(*GOP_MS_RANGE.end()))
                )
            };
            let ms = match units::seconds_ms(value) {
                Ok(ms) => ms,
                Err(NumError::Syntax) => {
                    return Err(format!(
                        "bad `gop={value}`: expected seconds such as `2` or `0.5`"
                    ))
                }
                Err(NumError::NotWhole) => {
                    return Err(format!(
                        "bad `gop={value}`: seconds take at most 3 decimals (milliseconds)"
                    ))
                }
                Err(NumError::TooLarge) => return Err(range()),
            };
            opts.gop_ms = match u32::try_from(ms) {
                Ok(v) if GOP_MS_RANGE.contains(&v) => v,
                _ => return Err(range()),
            };
        }
        "bitrate" => {
            let range = || {
                format!(
                    "`bitrate={value}` is out of range: bitrate must be within 1k..=1G bits \
                     per second"
                )
            };
            let b = match units::bitrate_bps(value) {
                Ok(b) => b,
                Err(NumError::TooLarge) => return Err(range()),
                Err(_) => {
                    return Err(format!(
                        "bad `bitrate={value}`: expected bits per second such as \
                         `3000000`, `800k` or `3M` (decimal: 1k = 1000)"
                    ))
                }
            };
            if !FAKE_BITRATE_RANGE.contains(&b) {
                return Err(range());
            }
            opts.bitrate = Some(b);
        }
        _ => {
            return Err(format!(
                "unknown fake:// option `{key}`: expected one of {FAKE_OPTIONS}"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rtsp_urls() {
        let Ok(InputUrl::Rtsp(r)) =
            input_url("rtsp://admin:p%40ss:w@cam.local/Streaming/101?a=1&transport=udp")
        else {
            panic!("not an rtsp input")
        };
        assert_eq!(r.host, "cam.local");
        assert_eq!(r.port, 554);
        assert_eq!(r.path, "/Streaming/101?a=1");
        assert_eq!(r.transport, RtspTransport::Udp);
        let c = r.credentials.clone().expect("credentials");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("admin", "p@ss:w"));
        assert_eq!(r.camera_url(), "rtsp://cam.local:554/Streaming/101?a=1");
        // Neither Display nor Debug shows the credentials.
        let shown = format!("{} {r:?} {:?}", InputUrl::Rtsp(r.clone()), r.credentials);
        assert!(
            !shown.contains("admin") && !shown.contains("p@ss"),
            "{shown}"
        );
        assert!(shown.contains("rtsp://***@cam.local:554/Streaming/101?a=1&transport=udp"));

        let Ok(InputUrl::Rtsp(r)) = input_url("rtsp://[::1]:8554") else {
            panic!("not an rtsp input")
        };
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("::1", 8554, "/")
        );
        assert_eq!(r.transport, RtspTransport::Tcp);
        assert_eq!(r.credentials, None);
        assert_eq!(InputUrl::Rtsp(r).to_string(), "rtsp://[::1]:8554/");

        for bad in [
            "rtsp://u:secret%zz@cam/x",
            "rtsp://u:secret@/x",
            "rtsp://u:secret@cam:0/x",
            "rtsp://cam/x?transport=http",
            "rtsp://cam/a b",
        ] {
            let e = input_url(bad).expect_err(bad);
            assert!(!e.message.contains("secret"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn publish_urls() {
        assert_eq!(
            input_url("publish://"),
            Ok(InputUrl::Publish(PublishInput::default()))
        );
        let Ok(InputUrl::Publish(p)) = input_url("publish://?password=s%40cret") else {
            panic!("not a publish input")
        };
        let pw = p.password.clone().expect("password");
        assert!(pw.matches("s@cret") && !pw.matches("s@cre") && !pw.matches("s@creT"));
        let shown = format!("{} {p:?}", InputUrl::Publish(p.clone()));
        assert!(!shown.contains("cret"), "{shown}");
        assert!(shown.starts_with("publish://?password=*** "), "{shown}");
        assert_eq!(
            InputUrl::Publish(PublishInput::default()).to_string(),
            "publish://"
        );
        for bad in [
            "publish://host",
            "publish://?password=",
            "publish://?password=secret&password=secret",
            "publish://?pass=secret",
            "publish://?password=se%zzcret",
            "publish://?password=se%2Fcret",
        ] {
            let e = input_url(bad).expect_err(bad);
            assert!(!e.message.contains("secret"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn config_url_fake_options() {
        let u = input_url("fake://fake?width=640&height=360&fps=30&gop=0.5&bitrate=3M");
        let want = FakeOptions {
            width: 640,
            height: 360,
            fps: 30,
            gop_ms: 500,
            bitrate: Some(3_000_000),
        };
        assert_eq!(u, Ok(InputUrl::Fake(want)));
        let u = input_url("fake://fake?gop=2&bitrate=3000000");
        let want = FakeOptions {
            gop_ms: 2000,
            bitrate: Some(3_000_000),
            ..FakeOptions::default()
        };
        assert_eq!(u, Ok(InputUrl::Fake(want)));
        assert_eq!(
            input_url("fake://fake"),
            Ok(InputUrl::Fake(FakeOptions::default()))
        );
    }

    #[test]
    fn config_url_fake_errors_point_at_the_option() {
        let at = |u: &str| input_url(u).err().map(|e| e.offset);
        assert_eq!(at("fake://fake?width=640&fps=0"), Some(22));
        assert_eq!(at("fake://fake?width=100"), Some(12));
        assert_eq!(at("fake://fake?width=641"), Some(12));
        assert_eq!(at("fake://fake?foo=1"), Some(12));
        assert_eq!(at("fake://fake?fps=1&fps=2"), Some(18));
        assert_eq!(at("fake://fake?gop=0.01"), Some(12));
        assert_eq!(at("fake://fake?bitrate=3m"), Some(12));
        assert_eq!(at("fake://other"), Some(7));
        assert_eq!(at("fake://fake?x"), Some(12));
    }

    #[test]
    fn config_url_peer_inputs() {
        assert_eq!(
            input_url("m4s://10.0.0.1:8888/cams/yard/3"),
            Ok(InputUrl::M4s {
                host: "10.0.0.1".into(),
                port: 8888,
                name: name("cams/yard/3")
            })
        );
        assert_eq!(
            input_url("m4f://[::1]:80/main"),
            Ok(InputUrl::M4f {
                host: "::1".into(),
                port: 80,
                name: name("main")
            })
        );
        let at = |u: &str| input_url(u).err().map(|e| e.offset);
        assert_eq!(at("m4s://origin:8888/../x"), Some(18));
        assert_eq!(at("m4s://origin:70000/x"), Some(13));
        assert_eq!(at("m4s://origin/x"), Some(12));
        assert_eq!(at("m4s://origin:1"), Some(14));
        assert_eq!(at("m4s://origin:1/"), Some(15));
        assert_eq!(at("m4s://or_gin:1/x"), Some(6));
        assert_eq!(at("rtmp://cam/live"), Some(0));
        assert_eq!(at("main"), Some(0));
    }

    #[test]
    fn config_url_mpeg_ts_inputs() {
        let udp = |u: &str| input_url(u).map(|i| i.to_string());
        assert_eq!(
            input_url("udp://239.0.0.1:1234?interface=10.1.2.3"),
            Ok(InputUrl::Udp {
                addr: "239.0.0.1".parse().expect("ip"),
                port: 1234,
                interface: Some(Ipv4Addr::new(10, 1, 2, 3)),
            })
        );
        assert_eq!(udp("udp://0.0.0.0:5000"), Ok("udp://0.0.0.0:5000".into()));
        assert_eq!(udp("udp://[::1]:5000"), Ok("udp://[::1]:5000".into()));
        assert_eq!(
            udp("udp://239.1.1.1:5000?interface=192.168.0.2"),
            Ok("udp://239.1.1.1:5000?interface=192.168.0.2".into())
        );
        assert_eq!(
            input_url("http://cam.local/live/stream.ts?x=1"),
            Ok(InputUrl::Http {
                host: "cam.local".into(),
                port: 80,
                path: "/live/stream.ts?x=1".into(),
            })
        );
        assert_eq!(
            udp("http://10.0.0.1:8080/a.ts"),
            Ok("http://10.0.0.1:8080/a.ts".into())
        );
        assert_eq!(udp("http://host"), Ok("http://host/".into()));
        assert_eq!(udp("http://[::1]/x"), Ok("http://[::1]/x".into()));
        let e = |u: &str| input_url(u).err().map(|e| e.message).unwrap_or_default();
        assert!(e("udp://camera:1234").contains("not an IP address"));
        assert!(e("udp://10.0.0.1:1234?interface=10.0.0.2").contains("not one"));
        assert!(e("udp://239.0.0.1:1234?interface=eth0").contains("bad `interface=eth0`"));
        assert!(e("udp://239.0.0.1:1234?ttl=3").contains("unknown or repeated"));
        assert!(e("udp://239.0.0.1").contains("missing `:PORT`"));
        assert!(e("http://user:pw@cam/x").contains("credentials"));
        assert!(e("http://cam/a b").contains("space"));
        assert!(e("http://cam:0/x").contains("bad port"));
    }

    #[test]
    fn config_url_sources() {
        assert_eq!(
            source_url("m4s://127.0.0.1:8888"),
            Ok((SourceProtocol::M4s, "127.0.0.1".into(), 8888))
        );
        assert_eq!(
            source_url("m4f://origin.example:9/"),
            Ok((SourceProtocol::M4f, "origin.example".into(), 9))
        );
        let at = |u: &str| source_url(u).err().map(|e| e.offset);
        assert_eq!(at("m4s://h:1/main"), Some(9));
        assert_eq!(at("m4s://h:1?x"), Some(9));
        assert_eq!(at("fake://fake"), Some(0));
        assert_eq!(at("m4s://h"), Some(7));
    }

    #[test]
    fn config_url_listen() {
        let l = |s: &str| listen(s).map(|l| l.socket_addr().to_string());
        assert_eq!(l("8888"), Ok("0.0.0.0:8888".to_owned()));
        assert_eq!(l("127.0.0.1:80"), Ok("127.0.0.1:80".to_owned()));
        assert_eq!(l("[::1]:80"), Ok("[::1]:80".to_owned()));
        assert_eq!(l("0"), Ok("0.0.0.0:0".to_owned()));
        let at = |s: &str| listen(s).err().map(|e| e.offset);
        assert_eq!(at("70000"), Some(0));
        assert_eq!(at("127.0.0.1:x"), Some(10));
        assert_eq!(at("localhost:80"), Some(0));
        assert_eq!(at("::1:80"), Some(0));
    }
}
