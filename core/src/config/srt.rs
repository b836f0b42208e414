//! The `srt://` input URL: `srt://[HOST]:PORT[?mode=&passphrase=&pbkeylen=&latency=&streamid=]`.
//!
//! Owns: the type [`SrtInput`] (listener or caller, its options and their ranges),
//! its canonical display (the passphrase shown as `***`) and its parser. Must not:
//! know sockets or the SRT protocol (node's `input::srt`), or quote a passphrase in
//! an error or a `Debug`.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::model::host_port as show_host_port;
use super::url::{host_port, percent_decode, UrlError};

/// `latency=` when the URL has none: libsrt's default receiver latency (ms).
pub const DEFAULT_SRT_LATENCY_MS: u32 = 120;
/// `latency=` may be 20 ms to 10 s.
pub const SRT_LATENCY_MS_RANGE: RangeInclusive<u32> = 20..=10_000;
/// A passphrase has 10 to 79 bytes (libsrt's `SRTO_PASSPHRASE`).
pub const SRT_PASSPHRASE_CHARS: RangeInclusive<usize> = 10..=79;
/// A stream id has at most 512 bytes (libsrt's `SRTO_STREAMID`).
pub const SRT_MAX_STREAM_ID: usize = 512;

/// Which side of the SRT handshake this node takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtMode {
    /// The sender calls in (`srt://:PORT`, `srt://0.0.0.0:PORT`, `srt://[::]:PORT`,
    /// or any local address with `?mode=listener`).
    Listener,
    /// This node calls the sender (`srt://HOST:PORT`), which listens.
    Caller,
}

/// An `srt://` input. Its `Display` and `Debug` never show the passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtInput {
    pub mode: SrtMode,
    /// The address to listen on (listener; `0.0.0.0` for `srt://:PORT`) or the
    /// sender to call (caller: a host name or an address).
    pub host: String,
    pub port: u16,
    /// `passphrase=`: AES encryption; a sender without it, or with another, is refused.
    pub passphrase: Option<SrtPassphrase>,
    /// `pbkeylen=`: the AES key length (16, 24 or 32 bytes) a caller asks for;
    /// a listener takes the caller's. Default 16.
    pub key_len: u8,
    /// `latency=`: the receiver's buffer (ms); the connection takes the larger of
    /// both sides'.
    pub latency_ms: u32,
    /// `streamid=`: sent by a caller; a listener with one takes only callers that
    /// send the same.
    pub stream_id: Option<String>,
    /// Whether the URL said `mode=` where the host alone would have implied it
    /// (kept for the canonical display).
    explicit_mode: bool,
}

impl SrtInput {
    /// The listener's bind address (`None` for a caller).
    pub fn listen_addr(&self) -> Option<IpAddr> {
        match self.mode {
            SrtMode::Listener => self.host.parse().ok(),
            SrtMode::Caller => None,
        }
    }
}

impl fmt::Debug for SrtInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtInput({self})")
    }
}

impl fmt::Display for SrtInput {
    /// The URL with the passphrase replaced by `***` (for the API and logs); options
    /// at their defaults are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut q = Vec::new();
        if self.explicit_mode {
            q.push(match self.mode {
                SrtMode::Listener => "mode=listener".to_owned(),
                SrtMode::Caller => "mode=caller".to_owned(),
            });
        }
        if self.passphrase.is_some() {
            q.push("passphrase=***".to_owned());
        }
        if self.key_len != 16 {
            q.push(format!("pbkeylen={}", self.key_len));
        }
        if self.latency_ms != DEFAULT_SRT_LATENCY_MS {
            q.push(format!("latency={}", self.latency_ms));
        }
        if let Some(s) = &self.stream_id {
            q.push(format!("streamid={s}"));
        }
        write!(f, "srt://{}", show_host_port(&self.host, self.port))?;
        if !q.is_empty() {
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

/// The passphrase of an `srt://` input (10 to 79 bytes). Never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtPassphrase(String);

impl SrtPassphrase {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SrtPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtPassphrase(<redacted>)")
    }
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError {
        offset,
        message: message.into(),
    })
}

/// What follows `srt://`. Errors never quote the passphrase.
pub(super) fn srt(rest: &str) -> Result<SrtInput, UrlError> {
    let form = "expected `srt://:PORT` (listen: the sender calls in) or `srt://HOST:PORT` \
                (call a sender that listens), with options `?passphrase=`, `latency=MS`, \
                `streamid=`, `pbkeylen=16|24|32`, `mode=listener|caller`";
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.contains(['/', '@']) {
        return err(0, format!("an `srt://` URL has no path or user: {form}"));
    }
    let (host, port) = match authority.strip_prefix(':') {
        Some(port) => host_port(&format!("0.0.0.0:{port}"), form).map_err(|e| UrlError {
            offset: e.offset.saturating_sub(7),
            message: e.message,
        })?,
        None => host_port(authority, form)?,
    };
    let unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let mut input = SrtInput {
        mode: if unspecified {
            SrtMode::Listener
        } else {
            SrtMode::Caller
        },
        host,
        port,
        passphrase: None,
        key_len: 16,
        latency_ms: DEFAULT_SRT_LATENCY_MS,
        stream_id: None,
        explicit_mode: false,
    };
    let at = authority.chars().count() + 1;
    let mut seen = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&key) {
            return err(at, format!("repeated `srt://` option `{key}`"));
        }
        seen.push(key);
        match key {
            "mode" => {
                let mode = match value {
                    "listener" => SrtMode::Listener,
                    "caller" => SrtMode::Caller,
                    _ => {
                        return err(
                            at,
                            format!("bad `mode={value}`: expected `listener` or `caller`"),
                        )
                    }
                };
                input.explicit_mode = mode != input.mode;
                input.mode = mode;
            }
            "passphrase" => {
                let Some(p) = percent_decode(value) else {
                    return err(
                        at,
                        format!("bad percent-encoding in the passphrase: {form}"),
                    );
                };
                let n = p.len();
                if !SRT_PASSPHRASE_CHARS.contains(&n) {
                    return err(
                        at,
                        format!(
                            "the passphrase has {n} bytes; SRT takes {} to {}",
                            SRT_PASSPHRASE_CHARS.start(),
                            SRT_PASSPHRASE_CHARS.end()
                        ),
                    );
                }
                input.passphrase = Some(SrtPassphrase(p));
            }
            "pbkeylen" => {
                input.key_len = match value {
                    "16" => 16,
                    "24" => 24,
                    "32" => 32,
                    _ => {
                        return err(
                            at,
                            format!("bad `pbkeylen={value}`: expected 16, 24 or 32 (bytes)"),
                        )
                    }
                }
            }
            "latency" => match value.parse::<u32>() {
                Ok(ms) if SRT_LATENCY_MS_RANGE.contains(&ms) => input.latency_ms = ms,
                _ => {
                    return err(
                        at,
                        format!(
                            "bad `latency={value}`: expected milliseconds within {}..={}",
                            SRT_LATENCY_MS_RANGE.start(),
                            SRT_LATENCY_MS_RANGE.end()
                        ),
                    )
                }
            },
            "streamid" => {
                let Some(s) = percent_decode(value) else {
                    return err(at, format!("bad percent-encoding in the stream id: {form}"));
                };
                if s.is_empty() || s.len() > SRT_MAX_STREAM_ID || s.contains(char::is_control) {
                    return err(
                        at,
                        format!(
                            "bad `streamid=`: expected 1 to {SRT_MAX_STREAM_ID} bytes \
                             without control characters"
                        ),
                    );
                }
                input.stream_id = Some(s);
            }
            _ => return err(at, format!("unknown `srt://` option `{key}`: {form}")),
        }
    }
    if input.mode == SrtMode::Listener && input.host.parse::<IpAddr>().is_err() {
        return err(
            0,
            format!(
                "a listener takes a local IP address (`srt://:PORT` for any), not `{}`",
                input.host
            ),
        );
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InputUrl;

    fn parse(url: &str) -> Result<SrtInput, UrlError> {
        match super::super::url::input_url(url)? {
            InputUrl::Srt(s) => Ok(s),
            other => panic!("not an srt input: {other}"),
        }
    }

    #[test]
    fn listener_and_caller_forms() {
        for (url, mode, host, shown) in [
            (
                "srt://:9000",
                SrtMode::Listener,
                "0.0.0.0",
                "srt://0.0.0.0:9000",
            ),
            (
                "srt://0.0.0.0:9000",
                SrtMode::Listener,
                "0.0.0.0",
                "srt://0.0.0.0:9000",
            ),
            (
                "srt://[::]:9000",
                SrtMode::Listener,
                "::",
                "srt://[::]:9000",
            ),
            (
                "srt://127.0.0.1:9000?mode=listener",
                SrtMode::Listener,
                "127.0.0.1",
                "srt://127.0.0.1:9000?mode=listener",
            ),
            (
                "srt://enc.local:9000",
                SrtMode::Caller,
                "enc.local",
                "srt://enc.local:9000",
            ),
            (
                "srt://[::1]:9000?mode=caller",
                SrtMode::Caller,
                "::1",
                "srt://[::1]:9000",
            ),
        ] {
            let s = parse(url).unwrap_or_else(|e| panic!("{url}: {}", e.message));
            assert_eq!(
                (s.mode, s.host.as_str(), s.port),
                (mode, host, 9000),
                "{url}"
            );
            assert_eq!(s.to_string(), shown, "{url}");
            assert_eq!(s.latency_ms, DEFAULT_SRT_LATENCY_MS);
            // The canonical form reads back as the same input.
            assert_eq!(
                parse(shown).map(|p| (p.mode, p.host)),
                Ok((mode, host.to_owned()))
            );
        }
        let s = parse("srt://:9000?mode=listener").expect("listener");
        assert_eq!(s.listen_addr(), "0.0.0.0".parse().ok());
    }

    #[test]
    fn options_and_the_hidden_passphrase() {
        let s = parse("srt://cam:9000?passphrase=s%40cret-words&latency=300&streamid=%23!::r=cam,m=publish&pbkeylen=32")
            .expect("srt");
        assert_eq!(
            s.passphrase.as_ref().map(SrtPassphrase::as_str),
            Some("s@cret-words")
        );
        assert_eq!((s.latency_ms, s.key_len), (300, 32));
        assert_eq!(s.stream_id.as_deref(), Some("#!::r=cam,m=publish"));
        let shown = format!("{s} {s:?} {:?}", s.passphrase);
        assert!(!shown.contains("cret"), "{shown}");
        assert!(
            shown.starts_with(
                "srt://cam:9000?passphrase=***&pbkeylen=32&latency=300&streamid=#!::r=cam,m=publish "
            ),
            "{shown}"
        );
    }

    #[test]
    fn refusals_say_why_without_the_passphrase() {
        for (bad, why) in [
            ("srt://:0", "bad port"),
            ("srt://cam", "missing `:PORT`"),
            ("srt://cam:9000/live", "no path"),
            ("srt://u:secret-long@cam:9000", "no path or user"),
            ("srt://:9000?passphrase=secret", "has 6 bytes"),
            (
                "srt://:9000?passphrase=secret-long-enough%zz",
                "percent-encoding",
            ),
            (
                "srt://:9000?passphrase=secret-long-enough&passphrase=secret-long-enough",
                "repeated",
            ),
            ("srt://:9000?latency=5", "latency=5"),
            ("srt://:9000?latency=abc", "latency=abc"),
            ("srt://:9000?pbkeylen=20", "pbkeylen=20"),
            ("srt://:9000?mode=rendezvous", "mode=rendezvous"),
            ("srt://:9000?streamid=", "streamid="),
            (
                "srt://:9000?pass=secret-long-enough",
                "unknown `srt://` option `pass`",
            ),
            ("srt://cam.local:9000?mode=listener", "local IP address"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
            assert!(!e.message.contains("secret"), "{bad}: {}", e.message);
        }
        let long = format!("srt://:9000?passphrase={}", "x".repeat(80));
        assert!(parse(&long).is_err());
        let max = format!("srt://:9000?passphrase={}", "x".repeat(79));
        assert!(parse(&max).is_ok());
    }
}
