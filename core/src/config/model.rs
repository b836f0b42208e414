//! The typed config: what a parsed config file means.
//!
//! Owns: the config types, their defaults, the "nearest wins" rules (cluster key,
//! segment duration), canonical display of URLs and the warnings of `tern check`.
//! Must not: parse text (that is `lexer`, `parser`, `directives`, `url`) or do I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;

use super::pattern::NamePattern;
use super::srt::SrtInput;
use super::units::format_seconds;
use crate::fake::FakeOptions;
use crate::stream_name::StreamName;

/// Segment length when neither the stream nor the top level sets `segment_duration`.
pub const DEFAULT_SEGMENT_DURATION_MS: u32 = 2000;
/// `segment_duration` may be 0.5 to 60 seconds.
pub const SEGMENT_DURATION_MS_RANGE: RangeInclusive<u32> = 500..=60_000;
/// `source_timeout=` may be 0.5 seconds to one hour.
pub const SOURCE_TIMEOUT_MS_RANGE: RangeInclusive<u32> = 500..=3_600_000;
/// `bitrate=` of a fake input may be 1 kbit/s to 1 Gbit/s.
pub const FAKE_BITRATE_RANGE: RangeInclusive<u64> = 1_000..=1_000_000_000;
/// Cluster keys shorter than this (in characters) get a warning from `tern check`.
pub const MIN_GOOD_KEY_CHARS: usize = 16;

/// A whole config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `http` listeners; at least one.
    pub http: Vec<Listen>,
    /// Top-level `cluster_key`.
    pub cluster_key: Option<ClusterKey>,
    /// Top-level `segment_duration`, in milliseconds.
    pub segment_duration_ms: Option<u32>,
    /// `stream` blocks, in config order; names are unique.
    pub streams: Vec<StreamConfig>,
    /// `source` directives, in config order.
    pub sources: Vec<SourceConfig>,
    /// `max_connections`, `max_connections_per_ip`, `header_timeout`,
    /// `idle_timeout`, `stall_timeout`: the HTTP server's limits.
    pub limits: crate::limits::ConnLimits,
    /// `view_auth`, `edit_auth`: who may read and change through the API.
    pub api_auth: crate::api_auth::ApiAuth,
    /// `cluster_bandwidth RATE;`: the cap on everything peers pull from this node,
    /// in bits per second (`tern_core::rate::ClusterBudget`).
    pub cluster_bandwidth_bps: Option<u64>,
    /// `rtmp PORT;` or `rtmp ADDR:PORT;`: where RTMP publishers connect (the
    /// streams with `input publish://`). `None`: no RTMP listener.
    pub rtmp: Option<Listen>,
}

/// `http PORT;` or `http ADDR:PORT;`. Port 0 lets the OS pick a free port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// `None`: every IPv4 address (`0.0.0.0`).
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// `stream NAME { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    pub name: StreamName,
    /// At least one; several are failover (see [`StreamConfig::failover_order`]).
    pub inputs: Vec<InputConfig>,
    pub dvr: Option<DvrConfig>,
    /// The stream's own `segment_duration`, in milliseconds.
    pub segment_duration_ms: Option<u32>,
    /// `ondemand NAME { ... }`: the inputs are opened only while the stream has
    /// viewers, and closed this many ms after the last left (`clients_timeout`).
    /// `None` for `stream NAME { ... }`, which always runs.
    pub on_demand_ms: Option<u64>,
}

/// `input URL [priority=N] [source_timeout=SECONDS] [cluster_key=KEY];`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputConfig {
    pub url: InputUrl,
    /// `priority=N`: lower is tried first.
    pub priority: Option<u32>,
    /// `source_timeout=SECONDS`: how long the input may be silent before the next
    /// one takes over, in milliseconds.
    pub source_timeout_ms: Option<u32>,
    /// `cluster_key=KEY` (only on `m4s://` and `m4f://` inputs).
    pub cluster_key: Option<ClusterKey>,
}

/// What an input pulls from.
#[derive(Clone, Debug, PartialEq)]
pub enum InputUrl {
    /// `fake://fake[?width=&height=&fps=&gop=&bitrate=]`.
    Fake(FakeOptions),
    /// `m4s://HOST:PORT/NAME`: frame by frame from another Tern node.
    M4s {
        host: String,
        port: u16,
        name: StreamName,
    },
    /// `m4f://HOST:PORT/NAME`: segment by segment from another Tern node.
    M4f {
        host: String,
        port: u16,
        name: StreamName,
    },
    /// `rtsp://[USER[:PASS]@]HOST[:PORT]/PATH[?transport=udp]`: an IP camera.
    Rtsp(RtspInput),
    /// `udp://ADDR:PORT[?interface=IPV4]`: MPEG-TS datagrams sent to this node, to a
    /// local address (unicast; `0.0.0.0` for any) or a multicast group joined on the
    /// interface with that address (default: the OS's choice).
    Udp {
        addr: IpAddr,
        port: u16,
        interface: Option<Ipv4Addr>,
    },
    /// `http://HOST[:PORT]/PATH`: an endless MPEG-TS response.
    Http {
        host: String,
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// `publish://[?password=SECRET]`: an RTMP publisher (OBS, ffmpeg, an encoder)
    /// pushes to this node's `rtmp` port.
    Publish(PublishInput),
    /// `srt://:PORT` (listen) or `srt://HOST:PORT` (call): MPEG-TS over SRT.
    Srt(SrtInput),
}

impl InputUrl {
    /// Whether this input pulls from another Tern node (and so may take a
    /// `cluster_key=`).
    pub fn is_cluster(&self) -> bool {
        matches!(self, InputUrl::M4s { .. } | InputUrl::M4f { .. })
    }
}

/// A `publish://` input. Its `Display` and `Debug` never show the password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishInput {
    /// `?password=SECRET`: a publisher must give it (in the URL's
    /// `?password=` or as the stream key).
    pub password: Option<PublishPassword>,
}

/// The password of a `publish://` input (percent-decoded, never empty). Never
/// displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishPassword(String);

impl PublishPassword {
    /// `None` for an empty password.
    pub fn new(p: impl Into<String>) -> Option<PublishPassword> {
        let p = p.into();
        (!p.is_empty()).then_some(PublishPassword(p))
    }

    /// Whether it holds a character that separates parts of an RTMP URL.
    pub fn has_separator(&self) -> bool {
        self.0.contains(['?', '&', '/', ' ', '#'])
    }

    /// Whether `offered` is the password, compared in constant time for equal
    /// lengths (a publisher cannot guess it byte by byte from the answer's timing).
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for PublishPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublishPassword(<redacted>)")
    }
}

/// An `rtsp://` input. Its `Display` and `Debug` never show the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspInput {
    pub host: String,
    /// 554 when the URL has none.
    pub port: u16,
    /// The path and the camera's own query (Tern's `transport=` taken out), from the
    /// first `/`; `/` when the URL has none.
    pub path: String,
    pub credentials: Option<RtspCredentials>,
    pub transport: RtspTransport,
}

impl RtspInput {
    /// The URL to ask the camera for, without credentials.
    pub fn camera_url(&self) -> String {
        format!("rtsp://{}{}", host_port(&self.host, self.port), self.path)
    }
}

impl fmt::Debug for RtspInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtspInput({self})")
    }
}

/// User and password of an RTSP camera (percent-decoded). Never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspCredentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for RtspCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RtspCredentials(<redacted>)")
    }
}

/// How the camera sends RTP: interleaved on the RTSP connection (the default, which
/// crosses NAT and firewalls) or over UDP (`?transport=udp`, for a LAN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// `dvr PATH [DEPTH] [LIMIT];`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvrConfig {
    /// The DVR root; a relative path is relative to the working directory.
    pub path: String,
    /// Keep this many seconds of archive (`2d`, `12h`, `3600`).
    pub depth_secs: Option<u64>,
    /// Keep at most this many bytes (`10G`; binary units, 1G = 1024³ bytes).
    pub limit_bytes: Option<u64>,
}

/// `source URL [{ ... }]`: restream every stream of a peer.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub protocol: SourceProtocol,
    pub host: String,
    pub port: u16,
    /// `only NAMES;`: if not empty, take only the streams matching one of these.
    pub only: Vec<NamePattern>,
    /// `except NAMES;`: never take the streams matching one of these.
    pub except: Vec<NamePattern>,
    pub cluster_key: Option<ClusterKey>,
    pub cache: Option<CacheConfig>,
    /// `static [NAMES];`: the streams pulled all the time; the others are pulled
    /// only while watched.
    pub static_streams: StaticStreams,
    /// `clients_timeout SECONDS;`: how long an on-demand pull stays open after its
    /// last viewer left, in ms (default 30 s).
    pub clients_timeout_ms: u64,
    /// `archive_bandwidth RATE;`: the cap on archive reads (and cache fills) from
    /// this source, in bits per second.
    pub archive_bandwidth_bps: Option<u64>,
    /// `max_streams N;`: the most streams taken from this source (default 1000);
    /// the peer's further streams are left out, with a warning.
    pub max_streams: u32,
}

/// Accepted `cluster_bandwidth` and `archive_bandwidth`: 100 kbit/s to 1 Tbit/s.
pub const BANDWIDTH_BPS_RANGE: std::ops::RangeInclusive<u64> = 100_000..=1_000_000_000_000;

/// Default `max_streams` of a `source`: a peer announcing more cannot make this
/// node create them all.
pub const DEFAULT_MAX_STREAMS: u32 = 1000;

/// Accepted `max_streams`.
pub const MAX_STREAMS_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// Default `clients_timeout`: an on-demand pull stays open this long after its last
/// viewer left (Flussonic's default too).
pub const DEFAULT_CLIENTS_TIMEOUT_MS: u64 = 30_000;

/// Accepted `clients_timeout`: 0 (close with the last viewer) to a day.
pub const CLIENTS_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 0..=86_400_000;

/// Which streams of a `source` are pulled all the time (`static`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StaticStreams {
    /// No `static`: every stream is pulled on demand.
    #[default]
    None,
    /// `static;`: every stream is pulled all the time.
    All,
    /// `static NAMES;`: the streams matching one of these patterns.
    Matching(Vec<NamePattern>),
}

impl StaticStreams {
    pub fn covers(&self, name: &crate::StreamName) -> bool {
        match self {
            StaticStreams::None => false,
            StaticStreams::All => true,
            StaticStreams::Matching(p) => p.iter().any(|p| p.matches(name)),
        }
    }
}

/// The live protocol a `source` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceProtocol {
    /// Frame by frame (`m4s://`).
    M4s,
    /// Segment by segment (`m4f://`).
    M4f,
}

/// `cache PATH DEPTH LIMIT;` in a `source` block: keep the peer's archive segments
/// that pass through here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub path: String,
    pub depth_secs: u64,
    /// Bytes (binary units).
    pub limit_bytes: u64,
}

/// The shared secret of the cluster. Its `Debug` never shows it, so a config can be
/// logged with `{:?}`; there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(String);

impl ClusterKey {
    /// `None` for an empty key.
    pub fn new(key: impl Into<String>) -> Option<ClusterKey> {
        let key = key.into();
        (!key.is_empty()).then_some(ClusterKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in characters.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl Config {
    /// The stream called `name`, if the config has one.
    pub fn stream(&self, name: &StreamName) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| &s.name == name)
    }

    /// The key an input authenticates with: its own `cluster_key=`, else the
    /// top-level one.
    pub fn key_for_input<'a>(&'a self, input: &'a InputConfig) -> Option<&'a ClusterKey> {
        input.cluster_key.as_ref().or(self.cluster_key.as_ref())
    }

    /// The key a source authenticates with: its block's `cluster_key`, else the
    /// top-level one.
    pub fn key_for_source<'a>(&'a self, source: &'a SourceConfig) -> Option<&'a ClusterKey> {
        source.cluster_key.as_ref().or(self.cluster_key.as_ref())
    }

    /// What `tern check` (and `tern run`, in the log) warns about: a valid config
    /// that is probably not what the operator wants.
    pub fn warnings(&self) -> Vec<String> {
        let mut keys: Vec<(String, &ClusterKey)> = Vec::new();
        if let Some(k) = &self.cluster_key {
            keys.push(("the top-level `cluster_key`".to_owned(), k));
        }
        for s in &self.streams {
            for (i, input) in s.inputs.iter().enumerate() {
                if let Some(k) = &input.cluster_key {
                    let what = format!(
                        "the `cluster_key=` of input {} (`{}`) of stream `{}`",
                        i + 1,
                        input.url,
                        s.name
                    );
                    keys.push((what, k));
                }
            }
        }
        for s in &self.sources {
            if let Some(k) = &s.cluster_key {
                keys.push((format!("the `cluster_key` of `source {}`", s.url()), k));
            }
        }
        let mut out = Vec::new();
        for (what, key) in keys {
            let n = key.chars();
            if n < MIN_GOOD_KEY_CHARS {
                out.push(format!(
                    "{what} is only {n} character{} long: use at least \
                     {MIN_GOOD_KEY_CHARS} random characters. The key never crosses the \
                     wire, but one sniffed cluster request lets anyone try every short key \
                     offline against its MAC and find this one quickly",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
        if self.streams.is_empty() && self.sources.is_empty() {
            out.push("no `stream` and no `source`: this node has nothing to serve".to_owned());
        }
        out
    }
}

impl Listen {
    /// The address to bind: `addr` (default `0.0.0.0`) and `port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.port,
        )
    }
}

impl fmt::Display for Listen {
    /// As written in the config: `8888`, `127.0.0.1:8888`, `[::1]:8888`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            None => write!(f, "{}", self.port),
            Some(a) => write!(f, "{}", SocketAddr::new(a, self.port)),
        }
    }
}

impl StreamConfig {
    /// The stream's `input publish://`, if it has one (at most one).
    pub fn publish_input(&self) -> Option<&PublishInput> {
        self.inputs.iter().find_map(|i| match &i.url {
            InputUrl::Publish(p) => Some(p),
            _ => None,
        })
    }

    /// The segment duration of this stream in milliseconds: its own, else the
    /// top-level one of `config`, else [`DEFAULT_SEGMENT_DURATION_MS`].
    pub fn segment_duration_ms(&self, config: &Config) -> u32 {
        self.segment_duration_ms
            .or(config.segment_duration_ms)
            .unwrap_or(DEFAULT_SEGMENT_DURATION_MS)
    }

    /// The inputs in the order failover tries them: by `priority=` (lower first),
    /// inputs without one after those with one, ties in config order.
    pub fn failover_order(&self) -> Vec<&InputConfig> {
        let mut v: Vec<&InputConfig> = self.inputs.iter().collect();
        v.sort_by_key(|i| i.priority.map_or((1, 0), |p| (0, p)));
        v
    }
}

impl SourceConfig {
    /// `m4s://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.protocol, host_port(&self.host, self.port))
    }

    /// Whether this source restreams the peer's stream `name` (`only`, then
    /// `except`).
    pub fn wants(&self, name: &StreamName) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p.matches(name)))
            && !self.except.iter().any(|p| p.matches(name))
    }
}

impl fmt::Display for SourceProtocol {
    /// The URL scheme: `m4s` or `m4f`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceProtocol::M4s => "m4s",
            SourceProtocol::M4f => "m4f",
        })
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for InputUrl {
    /// The canonical URL: a fake input lists only its options that differ from the
    /// defaults, in a fixed order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Fake(o) => {
                let d = FakeOptions::default();
                let mut q = Vec::new();
                if o.width != d.width {
                    q.push(format!("width={}", o.width));
                }
                if o.height != d.height {
                    q.push(format!("height={}", o.height));
                }
                if o.fps != d.fps {
                    q.push(format!("fps={}", o.fps));
                }
                if o.gop_ms != d.gop_ms {
                    q.push(format!("gop={}", format_seconds(u64::from(o.gop_ms))));
                }
                if let Some(b) = o.bitrate {
                    q.push(format!("bitrate={b}"));
                }
                if q.is_empty() {
                    f.write_str("fake://fake")
                } else {
                    write!(f, "fake://fake?{}", q.join("&"))
                }
            }
            InputUrl::M4s { host, port, name } => {
                write!(f, "m4s://{}/{name}", host_port(host, *port))
            }
            InputUrl::M4f { host, port, name } => {
                write!(f, "m4f://{}/{name}", host_port(host, *port))
            }
            InputUrl::Rtsp(r) => r.fmt(f),
            InputUrl::Srt(s) => s.fmt(f),
            InputUrl::Publish(p) => match p.password {
                Some(_) => f.write_str("publish://?password=***"),
                None => f.write_str("publish://"),
            },
            InputUrl::Udp {
                addr,
                port,
                interface,
            } => {
                write!(f, "udp://{}", host_port(&addr.to_string(), *port))?;
                match interface {
                    Some(i) => write!(f, "?interface={i}"),
                    None => Ok(()),
                }
            }
            InputUrl::Http { host, port, path } => {
                if *port == 80 {
                    write!(
                        f,
                        "http://{}{path}",
                        host_port(host, *port).trim_end_matches(":80")
                    )
                } else {
                    write!(f, "http://{}{path}", host_port(host, *port))
                }
            }
        }
    }
}

impl fmt::Display for RtspInput {
    /// The URL with the credentials replaced by `***` (for the API and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let creds = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        let path = &self.path;
        let sep = if path.contains('?') { '&' } else { '?' };
        let transport = match self.transport {
            RtspTransport::Tcp => String::new(),
            RtspTransport::Udp => format!("{sep}transport=udp"),
        };
        write!(
            f,
            "rtsp://{creds}{}{path}{transport}",
            host_port(&self.host, self.port)
        )
    }
}
