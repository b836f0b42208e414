//! The directives: which exist in which block, their arguments, and what they mean.
//!
//! Owns: turning the directive tree of `parser` into the typed [`Config`], with every
//! check that needs to know a directive (unknown names, argument counts, values,
//! duplicates, required parts). Must not: read text or tokens itself (that is
//! `lexer`/`parser`), nor spell URLs or units (that is `url`/`units`).

use std::collections::BTreeMap;

use super::error::{ConfigError, Pos};
use super::lexer::Token;
use super::model::{
    CacheConfig, ClusterKey, Config, DvrConfig, InputConfig, InputUrl, Listen, SourceConfig,
    StaticStreams, StreamConfig, BANDWIDTH_BPS_RANGE, CLIENTS_TIMEOUT_MS_RANGE,
    DEFAULT_CLIENTS_TIMEOUT_MS, DEFAULT_MAX_STREAMS, MAX_STREAMS_RANGE, SEGMENT_DURATION_MS_RANGE,
    SOURCE_TIMEOUT_MS_RANGE,
};
use super::parser::Directive;
use super::pattern::NamePattern;
use super::units::{self, NumError};
use super::url::{self, UrlError};
use crate::api_auth::Credentials;
use crate::stream_name::StreamName;

/// The blocks directives live in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Stream,
    Ondemand,
    Source,
}

impl Ctx {
    fn names(self) -> &'static [&'static str] {
        match self {
            Ctx::Top => &[
                "http",
                "cluster_key",
                "segment_duration",
                "stream",
                "ondemand",
                "source",
                "max_connections",
                "max_connections_per_ip",
                "header_timeout",
                "idle_timeout",
                "stall_timeout",
                "view_auth",
                "edit_auth",
                "cluster_bandwidth",
                "rtmp",
            ],
            Ctx::Stream => &["input", "dvr", "segment_duration"],
            Ctx::Ondemand => &["input", "segment_duration", "clients_timeout"],
            Ctx::Source => &[
                "only",
                "except",
                "cluster_key",
                "cache",
                "static",
                "clients_timeout",
                "archive_bandwidth",
                "max_streams",
            ],
        }
    }

    fn place(self) -> &'static str {
        match self {
            Ctx::Top => "at the top level",
            Ctx::Stream => "in a `stream` block",
            Ctx::Ondemand => "in an `ondemand` block",
            Ctx::Source => "in a `source` block",
        }
    }

    fn home(self) -> &'static str {
        match self {
            Ctx::Top => "at the top level",
            Ctx::Stream => "inside `stream NAME { ... }`",
            Ctx::Ondemand => "inside `ondemand NAME { ... }`",
            Ctx::Source => "inside `source URL { ... }`",
        }
    }
}

const ALL: [Ctx; 4] = [Ctx::Top, Ctx::Stream, Ctx::Ondemand, Ctx::Source];

fn is_directive_name(s: &str) -> bool {
    s == "dvr" || ALL.iter().any(|c| c.names().contains(&s))
}

fn usage(name: &str) -> &'static str {
    match name {
        "http" => "`http PORT;` or `http ADDR:PORT;`",
        "rtmp" => "`rtmp PORT;` or `rtmp ADDR:PORT;` (RTMP publishers, usually 1935)",
        "cluster_key" => "`cluster_key KEY;`",
        "segment_duration" => "`segment_duration SECONDS;`",
        "stream" => "`stream NAME { input URL; ... }`",
        "ondemand" => "`ondemand NAME { input URL; ... }`",
        "source" => "`source m4s://HOST:PORT;` or `source m4s://HOST:PORT { ... }`",
        "input" => "`input URL [priority=N] [source_timeout=SECONDS] [cluster_key=KEY];`",
        "dvr" => "`dvr PATH [DEPTH] [LIMIT];`",
        "only" => "`only NAME_OR_PATTERN ...;`",
        "except" => "`except NAME_OR_PATTERN ...;`",
        "cache" => "`cache PATH DEPTH LIMIT;`",
        "static" => "`static;` or `static NAME_OR_PATTERN ...;`",
        "clients_timeout" => "`clients_timeout SECONDS;`",
        "cluster_bandwidth" => "`cluster_bandwidth RATE;` (bits per second: `20M`)",
        "archive_bandwidth" => "`archive_bandwidth RATE;` (bits per second: `20M`)",
        "max_streams" => "`max_streams N;`",
        "max_connections" => "`max_connections N;`",
        "max_connections_per_ip" => "`max_connections_per_ip N;`",
        "header_timeout" => "`header_timeout SECONDS;`",
        "idle_timeout" => "`idle_timeout SECONDS;`",
        "stall_timeout" => "`stall_timeout SECONDS;`",
        "view_auth" => "`view_auth USER PASSWORD;`",
        "edit_auth" => "`edit_auth USER PASSWORD;`",
        _ => "",
    }
}

fn at(pos: Pos, message: impl Into<String>) -> ConfigError {
    ConfigError::at(pos, message)
}

fn at_url(tok: &Token, e: UrlError) -> ConfigError {
    at(tok.pos_at(e.offset), e.message)
}

/// Where each once-only directive of a block was first seen.
#[derive(Default)]
struct Once(BTreeMap<&'static str, Pos>);

impl Once {
    fn check(&mut self, name: &'static str, d: &Directive, what: &str) -> Result<(), ConfigError> {
        if let Some(first) = self.0.get(name) {
            return Err(at(
                d.name.pos,
                format!(
                    "duplicate `{name}`: {what} is already set at line {}, column {}",
                    first.line, first.column
                ),
            ));
        }
        self.0.insert(name, d.name.pos);
        Ok(())
    }
}

/// Builds the typed config from the directive tree of a whole file.
pub fn build(tree: &[Directive]) -> Result<Config, ConfigError> {
    let mut cfg = Config {
        http: Vec::new(),
        cluster_key: None,
        segment_duration_ms: None,
        streams: Vec::new(),
        sources: Vec::new(),
        limits: Default::default(),
        api_auth: Default::default(),
        cluster_bandwidth_bps: None,
        rtmp: None,
    };
    let mut once = Once::default();
    let mut listens: Vec<(Listen, Pos)> = Vec::new();
    let mut rtmp_pos = Pos::START;
    let mut streams: BTreeMap<StreamName, Pos> = BTreeMap::new();
    let mut sources: BTreeMap<(String, u16), Pos> = BTreeMap::new();
    for d in tree {
        let name = known(d, Ctx::Top)?;
        match name {
            "http" => {
                let [arg] = args_exact::<1>(d)?;
                no_block(d)?;
                let l = url::listen(&arg.text).map_err(|e| at_url(arg, e))?;
                if l.port != 0 {
                    if let Some((_, first)) = listens
                        .iter()
                        .find(|(o, _)| o.socket_addr() == l.socket_addr())
                    {
                        return Err(at(
                            arg.pos,
                            format!(
                                "duplicate `http {l}`: already listening there from line {}",
                                first.line
                            ),
                        ));
                    }
                }
                listens.push((l, arg.pos));
                cfg.http.push(l);
            }
            "cluster_key" => {
                once.check("cluster_key", d, "the top-level cluster key")?;
                cfg.cluster_key = Some(cluster_key(d)?);
            }
            "segment_duration" => {
                once.check("segment_duration", d, "the top-level segment duration")?;
                cfg.segment_duration_ms = Some(segment_duration(d)?);
            }
            "max_connections" => {
                once.check("max_connections", d, "the connection limit")?;
                cfg.limits.max_connections = count(d, 1..=1_000_000)?;
            }
            "max_connections_per_ip" => {
                once.check("max_connections_per_ip", d, "the per-address limit")?;
                cfg.limits.max_per_ip = Some(count(d, 1..=1_000_000)?);
            }
            "header_timeout" => {
                once.check("header_timeout", d, "the header timeout")?;
                cfg.limits.header_timeout_ms = timeout(d)?;
            }
            "idle_timeout" => {
                once.check("idle_timeout", d, "the idle timeout")?;
                cfg.limits.idle_timeout_ms = timeout(d)?;
            }
            "stall_timeout" => {
                once.check("stall_timeout", d, "the stall timeout")?;
                cfg.limits.stall_timeout_ms = timeout(d)?;
            }
            "view_auth" => {
                once.check("view_auth", d, "the API's view credentials")?;
                cfg.api_auth.view = Some(credentials(d)?);
            }
            "edit_auth" => {
                once.check("edit_auth", d, "the API's edit credentials")?;
                cfg.api_auth.edit = Some(credentials(d)?);
            }
            "rtmp" => {
                once.check("rtmp", d, "the RTMP port")?;
                let [arg] = args_exact::<1>(d)?;
                no_block(d)?;
                let l = url::listen(&arg.text).map_err(|e| at_url(arg, e))?;
                rtmp_pos = arg.pos;
                cfg.rtmp = Some(l);
            }
            "cluster_bandwidth" => {
                once.check("cluster_bandwidth", d, "the cluster bandwidth cap")?;
                cfg.cluster_bandwidth_bps = Some(bandwidth(d)?);
            }
            "stream" | "ondemand" => {
                let s = stream(d)?;
                if let Some(first) = streams.get(&s.name) {
                    return Err(at(
                        d.args.first().map_or(d.name.pos, |a| a.pos),
                        format!(
                            "duplicate stream `{}`: already defined at line {}",
                            s.name, first.line
                        ),
                    ));
                }
                streams.insert(s.name.clone(), d.name.pos);
                cfg.streams.push(s);
            }
            _ => {
                let s = source(d)?;
                let key = (s.host.to_ascii_lowercase(), s.port);
                if let Some(first) = sources.get(&key) {
                    return Err(at(
                        d.args.first().map_or(d.name.pos, |a| a.pos),
                        format!(
                            "duplicate source `{}`: the same peer is already a source at \
                             line {}",
                            s.url(),
                            first.line
                        ),
                    ));
                }
                sources.insert(key, d.name.pos);
                cfg.sources.push(s);
            }
        }
    }
    if let Some(l) = cfg.rtmp.filter(|l| l.port != 0) {
        if let Some((_, first)) = listens.iter().find(|(o, _)| o.port == l.port) {
            return Err(at(
                rtmp_pos,
                format!(
                    "`rtmp {l}` is on the port of the `http` listener at line {}: give RTMP \
                     its own port (1935 is usual)",
                    first.line
                ),
            ));
        }
    }
    if cfg.rtmp.is_none() {
        if let Some(s) = cfg.streams.iter().find(|s| s.publish_input().is_some()) {
            let pos = streams.get(&s.name).copied().unwrap_or(Pos::START);
            return Err(at(
                pos,
                format!(
                    "stream `{}` has `input publish://`, but no `rtmp PORT;` is at the top \
                     level: add one (such as `rtmp 1935;`) so publishers can connect",
                    s.name
                ),
            ));
        }
    }
    if cfg.http.is_empty() {
        return Err(at(
            Pos::START,
            "no `http` directive: add one such as `http 8080;` so the node listens for \
             players, the API and the cluster",
        ));
    }
    Ok(cfg)
}

/// Checks that `d` may appear in `ctx`, and that no `;` is missing inside it;
/// returns its name as the static string of the grammar.
fn known(d: &Directive, ctx: Ctx) -> Result<&'static str, ConfigError> {
    let name = d.name.text.as_str();
    if ctx == Ctx::Ondemand && name == "dvr" {
        return Err(at(
            d.name.pos,
            "`dvr` in an `ondemand` block: a recorded stream is always on; use \
             `stream NAME { ... }` to record it, or drop `dvr` to open it only while watched",
        ));
    }
    if ctx == Ctx::Source && name == "dvr" {
        return Err(at(
            d.name.pos,
            "`dvr` in a `source` block is not supported yet: record on the peer (a `dvr` \
             in its `stream`), whose archive this node plays through the source; \
             `cache PATH DEPTH LIMIT;` keeps the segments that pass here",
        ));
    }
    let Some(found) = ctx.names().iter().find(|n| **n == name) else {
        let list = ctx
            .names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let elsewhere = ALL.iter().find(|c| c.names().contains(&name));
        let message = match elsewhere {
            Some(home) => format!(
                "`{name}` is not valid {}: it belongs {}; expected one of {list}",
                ctx.place(),
                home.home()
            ),
            None => {
                let hint = suggest(name, ctx.names())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                format!(
                    "unknown directive `{name}` {}{hint}: expected one of {list}",
                    ctx.place()
                )
            }
        };
        return Err(at(d.name.pos, message));
    };
    missing_semicolon(d)?;
    Ok(found)
}

/// A directive name at the start of a line among the arguments almost always means
/// the `;` before it was forgotten.
fn missing_semicolon(d: &Directive) -> Result<(), ConfigError> {
    let mut prev = &d.name;
    for (i, a) in d.args.iter().enumerate() {
        if a.pos.line > prev.end.line && !a.quoted && is_directive_name(&a.text) {
            return Err(semicolon_error(d, i));
        }
        prev = a;
    }
    Ok(())
}

/// The `;` before argument `next` of `d` is missing.
fn semicolon_error(d: &Directive, next: usize) -> ConfigError {
    let prev = next
        .checked_sub(1)
        .and_then(|i| d.args.get(i))
        .unwrap_or(&d.name);
    let found = d
        .args
        .get(next)
        .map(|t| format!("{} on line {}", t.shown(), t.pos.line))
        .unwrap_or_default();
    at(
        prev.end,
        format!(
            "missing `;` after {} to end {}: found {found}",
            prev.shown(),
            d.head_upto(next)
        ),
    )
}

/// The closest name within 2 edits, for "did you mean".
fn suggest(name: &str, names: &[&'static str]) -> Option<&'static str> {
    names
        .iter()
        .map(|n| (edit_distance(name, n), *n))
        .filter(|(d, n)| *d <= 2 && *d < n.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

/// Exactly `N` arguments.
fn args_exact<const N: usize>(d: &Directive) -> Result<&[Token; N], ConfigError> {
    args_range(d, N, N)?;
    d.args
        .as_slice()
        .try_into()
        .map_err(|_| at(d.name.pos, "internal: argument count"))
}

/// `min..=max` arguments.
fn args_range(d: &Directive, min: usize, max: usize) -> Result<(), ConfigError> {
    let name = d.name.text.as_str();
    if d.args.len() < min {
        let last = d.last_token();
        let what = if d.args.is_empty() {
            "needs an argument".to_owned()
        } else {
            format!("needs {min} arguments")
        };
        return Err(at(
            last.end,
            format!("`{name}` {what}: expected {}", usage(name)),
        ));
    }
    if let Some(extra) = d.args.get(max) {
        let prev = max
            .checked_sub(1)
            .and_then(|i| d.args.get(i))
            .unwrap_or(&d.name);
        if extra.pos.line > prev.end.line {
            return Err(semicolon_error(d, max));
        }
        return Err(at(
            extra.pos,
            format!(
                "too many arguments to `{name}`: found {}; expected {}",
                extra.shown(),
                usage(name)
            ),
        ));
    }
    Ok(())
}

fn no_block(d: &Directive) -> Result<(), ConfigError> {
    match &d.block {
        Some(b) => Err(at(
            b.open,
            format!(
                "`{}` takes no block `{{ ... }}`: expected {}",
                d.name.text,
                usage(&d.name.text)
            ),
        )),
        None => Ok(()),
    }
}

fn key_value(tok: &Token, what: &str) -> Result<ClusterKey, ConfigError> {
    ClusterKey::new(tok.text.clone()).ok_or_else(|| at(tok.pos, format!("{what} is empty")))
}

fn cluster_key(d: &Directive) -> Result<ClusterKey, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    key_value(arg, "the cluster key")
}

/// `view_auth USER PASSWORD;` / `edit_auth USER PASSWORD;`.
fn credentials(d: &Directive) -> Result<Credentials, ConfigError> {
    let [user, pass] = args_exact::<2>(d)?;
    no_block(d)?;
    if user.text.is_empty() || user.text.contains(':') {
        return Err(at(
            user.pos,
            format!(
                "bad user `{}` for `{}`: it must not be empty or contain `:` (HTTP Basic \
                 separates user and password with it)",
                user.text, d.name.text
            ),
        ));
    }
    Credentials::new(&user.text, &pass.text).ok_or_else(|| {
        at(
            pass.pos,
            format!("the password of `{}` is empty", d.name.text),
        )
    })
}

/// `NAME N;` with `N` in `range`.
fn count(d: &Directive, range: std::ops::RangeInclusive<u32>) -> Result<u32, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    let name = &d.name.text;
    let v = &arg.text;
    match units::integer(v).ok().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if range.contains(&n) => Ok(n),
        _ => Err(at(
            arg.pos,
            format!(
                "bad `{name} {v}`: expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Timeouts may be 0.1 s to one hour.
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// `NAME SECONDS;` for the HTTP timeouts.
fn timeout(d: &Directive) -> Result<u64, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    let name = &d.name.text;
    let v = &arg.text;
    match units::seconds_ms(v) {
        Ok(ms) if TIMEOUT_MS_RANGE.contains(&ms) => Ok(ms),
        _ => Err(at(
            arg.pos,
            format!("bad `{name} {v}`: expected seconds from 0.1 to 3600, such as `10` or `0.5`"),
        )),
    }
}

/// `cluster_bandwidth RATE;` / `archive_bandwidth RATE;`, in bits per second.
fn bandwidth(d: &Directive) -> Result<u64, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    let v = &arg.text;
    match units::bitrate_bps(v) {
        Ok(bps) if BANDWIDTH_BPS_RANGE.contains(&bps) => Ok(bps),
        _ => Err(at(
            arg.pos,
            format!(
                "bad `{} {v}`: expected bits per second from 100k to 1000G, such as `20M` or `800k`",
                d.name.text
            ),
        )),
    }
}

/// `clients_timeout SECONDS;` (in `source` and `ondemand`), in ms.
fn clients_timeout(d: &Directive) -> Result<u64, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    let v = &arg.text;
    match units::seconds_ms(v) {
        Ok(ms) if CLIENTS_TIMEOUT_MS_RANGE.contains(&ms) => Ok(ms),
        _ => Err(at(
            arg.pos,
            format!("bad `clients_timeout {v}`: expected seconds from 0 to 86400, such as `30`"),
        )),
    }
}

fn segment_duration(d: &Directive) -> Result<u32, ConfigError> {
    let [arg] = args_exact::<1>(d)?;
    no_block(d)?;
    let v = &arg.text;
    let range = || {
        at(
            arg.pos,
            format!("`segment_duration {v}` is out of range: expected 0.5 to 60 seconds"),
        )
    };
    let ms = match units::seconds_ms(v) {
        Ok(ms) => ms,
        Err(NumError::TooLarge) => return Err(range()),
        Err(NumError::NotWhole) => {
            return Err(at(
                arg.pos,
                format!("bad segment duration `{v}`: seconds take at most 3 decimals"),
            ))
        }
        Err(NumError::Syntax) => {
            return Err(at(
                arg.pos,
                format!("bad segment duration `{v}`: expected seconds such as `2` or `0.5`"),
            ))
        }
    };
    match u32::try_from(ms) {
        Ok(ms) if SEGMENT_DURATION_MS_RANGE.contains(&ms) => Ok(ms),
        _ => Err(range()),
    }
}

/// One `stream NAME { ... }` or `ondemand NAME { ... }` on its own (a stream of
/// the operator's API), checked exactly as in a config file.
pub(super) fn stream_block(d: &Directive) -> Result<StreamConfig, ConfigError> {
    match known(d, Ctx::Top)? {
        "stream" | "ondemand" => stream(d),
        other => Err(at(
            d.name.pos,
            format!("expected a `stream` or `ondemand` block, found `{other}`"),
        )),
    }
}

fn stream(d: &Directive) -> Result<StreamConfig, ConfigError> {
    args_range(d, 1, 1)?;
    let name_tok = &d.args[0];
    let name = StreamName::new(&name_tok.text).map_err(|e| {
        at(
            name_tok.pos,
            format!("bad stream name {}: {e}", name_tok.shown()),
        )
    })?;
    let Some(block) = &d.block else {
        return Err(at(
            name_tok.end,
            format!(
                "`{kind} {name}` needs a block: expected `{kind} {name} {{ input URL; }}`",
                kind = d.name.text
            ),
        ));
    };
    let on_demand = d.name.text == "ondemand";
    let mut s = StreamConfig {
        name,
        inputs: Vec::new(),
        dvr: None,
        segment_duration_ms: None,
        on_demand_ms: on_demand.then_some(DEFAULT_CLIENTS_TIMEOUT_MS),
    };
    let ctx = if on_demand {
        Ctx::Ondemand
    } else {
        Ctx::Stream
    };
    let mut once = Once::default();
    for item in &block.items {
        match known(item, ctx)? {
            "input" => {
                let inp = input(item)?;
                if matches!(inp.url, InputUrl::Publish(_)) && s.publish_input().is_some() {
                    return Err(at(
                        item.name.pos,
                        format!(
                            "a second `input publish://` in `{}`: a stream takes one \
                             publisher, so it has at most one",
                            s.name
                        ),
                    ));
                }
                s.inputs.push(inp);
            }
            "dvr" => {
                once.check("dvr", item, "this stream's DVR")?;
                s.dvr = Some(dvr(item)?);
            }
            "clients_timeout" => {
                once.check("clients_timeout", item, "this stream's clients timeout")?;
                s.on_demand_ms = Some(clients_timeout(item)?);
            }
            _ => {
                once.check("segment_duration", item, "this stream's segment duration")?;
                s.segment_duration_ms = Some(segment_duration(item)?);
            }
        }
    }
    if s.inputs.is_empty() {
        return Err(at(
            d.name.pos,
            format!(
                "{} `{}` has no `input`: add one in its block, such as \
                 `input fake://fake;`",
                d.name.text, s.name
            ),
        ));
    }
    Ok(s)
}

const INPUT_OPTIONS: &str = "`priority=`, `source_timeout=`, `cluster_key=`";

fn input(d: &Directive) -> Result<InputConfig, ConfigError> {
    args_range(d, 1, usize::MAX)?;
    no_block(d)?;
    let url_tok = &d.args[0];
    let url = url::input_url(&url_tok.text).map_err(|e| at_url(url_tok, e))?;
    let mut inp = InputConfig {
        url,
        priority: None,
        source_timeout_ms: None,
        cluster_key: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for opt in &d.args[1..] {
        let Some((key, value)) = opt.text.split_once('=') else {
            return Err(at(
                opt.pos,
                format!(
                    "expected an input option `name=value` ({INPUT_OPTIONS}), found {}",
                    opt.shown()
                ),
            ));
        };
        if seen.contains(&key) {
            return Err(at(opt.pos, format!("input option `{key}` is given twice")));
        }
        seen.push(key);
        let value_pos = opt.pos_at(key.chars().count() + 1);
        match key {
            "priority" => {
                let p = units::integer(value)
                    .ok()
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or_else(|| {
                        at(
                            value_pos,
                            format!(
                                "bad `priority={value}`: expected a whole number within \
                                 0..={} (lower is tried first)",
                                u32::MAX
                            ),
                        )
                    })?;
                inp.priority = Some(p);
            }
            "source_timeout" => {
                let range = || {
                    at(
                        value_pos,
                        format!(
                            "`source_timeout={value}` is out of range: expected 0.5 to 3600 \
                             seconds"
                        ),
                    )
                };
                let ms = match units::seconds_ms(value) {
                    Ok(ms) => ms,
                    Err(NumError::TooLarge) => return Err(range()),
                    Err(_) => {
                        return Err(at(
                            value_pos,
                            format!(
                                "bad `source_timeout={value}`: expected seconds such as `5` \
                                 or `2.5` (at most 3 decimals)"
                            ),
                        ))
                    }
                };
                match u32::try_from(ms) {
                    Ok(ms) if SOURCE_TIMEOUT_MS_RANGE.contains(&ms) => {
                        inp.source_timeout_ms = Some(ms)
                    }
                    _ => return Err(range()),
                }
            }
            "cluster_key" => {
                if !inp.url.is_cluster() {
                    return Err(at(
                        opt.pos,
                        "`cluster_key=` is for `m4s://` and `m4f://` inputs: this input \
                         does not talk to a Tern node",
                    ));
                }
                inp.cluster_key =
                    Some(ClusterKey::new(value).ok_or_else(|| {
                        at(value_pos, "the `cluster_key=` of this input is empty")
                    })?);
            }
            _ => {
                return Err(at(
                    opt.pos,
                    format!("unknown input option `{key}`: expected one of {INPUT_OPTIONS}"),
                ))
            }
        }
    }
    Ok(inp)
}

fn path(tok: &Token, what: &str) -> Result<String, ConfigError> {
    if tok.text.is_empty() {
        return Err(at(tok.pos, format!("{what} is empty")));
    }
    Ok(tok.text.clone())
}

fn depth(tok: &Token, what: &str) -> Result<u64, ConfigError> {
    let v = &tok.text;
    match units::depth_secs(v) {
        Ok(0) => Err(at(tok.pos, format!("{what} must be more than 0"))),
        Ok(s) => Ok(s),
        Err(NumError::TooLarge) => Err(at(tok.pos, format!("{what} `{v}` is too large"))),
        Err(NumError::NotWhole) => Err(at(
            tok.pos,
            format!("bad {what} `{v}`: expected a whole number of seconds"),
        )),
        Err(NumError::Syntax) => {
            let hint = if units::size_bytes(v).is_ok() && !v.ends_with(|c: char| c.is_ascii_digit())
            {
                format!(
                    "; `{v}` looks like a size limit, which comes after the depth: \
                     `PATH DEPTH LIMIT`"
                )
            } else {
                String::new()
            };
            Err(at(
                tok.pos,
                format!(
                    "bad {what} `{v}`: expected a duration such as `2d`, `12h`, `30m`, `45s` \
                     or `3600` (seconds){hint}"
                ),
            ))
        }
    }
}

fn size(tok: &Token, what: &str) -> Result<u64, ConfigError> {
    let v = &tok.text;
    match units::size_bytes(v) {
        Ok(0) => Err(at(tok.pos, format!("{what} must be more than 0"))),
        Ok(b) => Ok(b),
        Err(NumError::TooLarge) => Err(at(tok.pos, format!("{what} `{v}` is too large"))),
        Err(_) => Err(at(
            tok.pos,
            format!(
                "bad {what} `{v}`: expected bytes such as `10G`, `500M`, `1T` or `1024` \
                 (binary units, uppercase: 1K = 1024 bytes, 1G = 1024³)"
            ),
        )),
    }
}

fn dvr(d: &Directive) -> Result<DvrConfig, ConfigError> {
    args_range(d, 1, 3)?;
    no_block(d)?;
    Ok(DvrConfig {
        path: path(&d.args[0], "the DVR path")?,
        depth_secs: d.args.get(1).map(|t| depth(t, "DVR depth")).transpose()?,
        limit_bytes: d
            .args
            .get(2)
            .map(|t| size(t, "DVR size limit"))
            .transpose()?,
    })
}

fn source(d: &Directive) -> Result<SourceConfig, ConfigError> {
    args_range(d, 1, 1)?;
    let url_tok = &d.args[0];
    let (protocol, host, port) = url::source_url(&url_tok.text).map_err(|e| at_url(url_tok, e))?;
    let mut s = SourceConfig {
        protocol,
        host,
        port,
        only: Vec::new(),
        except: Vec::new(),
        cluster_key: None,
        cache: None,
        static_streams: StaticStreams::None,
        clients_timeout_ms: DEFAULT_CLIENTS_TIMEOUT_MS,
        archive_bandwidth_bps: None,
        max_streams: DEFAULT_MAX_STREAMS,
    };
    let Some(block) = &d.block else {
        return Ok(s);
    };
    let mut once = Once::default();
    for item in &block.items {
        match known(item, Ctx::Source)? {
            name @ ("only" | "except") => {
                args_range(item, 1, usize::MAX)?;
                no_block(item)?;
                let list = if name == "only" {
                    &mut s.only
                } else {
                    &mut s.except
                };
                for a in &item.args {
                    list.push(NamePattern::parse(&a.text).map_err(|m| at(a.pos, m))?);
                }
            }
            "cluster_key" => {
                once.check("cluster_key", item, "this source's cluster key")?;
                s.cluster_key = Some(cluster_key(item)?);
            }
            "static" => {
                no_block(item)?;
                let mut patterns = Vec::new();
                for a in &item.args {
                    patterns.push(NamePattern::parse(&a.text).map_err(|m| at(a.pos, m))?);
                }
                s.static_streams =
                    match (std::mem::take(&mut s.static_streams), patterns.is_empty()) {
                        (StaticStreams::All, _) | (_, true) => StaticStreams::All,
                        (StaticStreams::Matching(mut old), false) => {
                            old.extend(patterns);
                            StaticStreams::Matching(old)
                        }
                        (StaticStreams::None, false) => StaticStreams::Matching(patterns),
                    };
            }
            "clients_timeout" => {
                once.check("clients_timeout", item, "this source's clients timeout")?;
                s.clients_timeout_ms = clients_timeout(item)?;
            }
            "archive_bandwidth" => {
                once.check("archive_bandwidth", item, "this source's archive bandwidth")?;
                s.archive_bandwidth_bps = Some(bandwidth(item)?);
            }
            "max_streams" => {
                once.check("max_streams", item, "this source's stream limit")?;
                let [arg] = args_exact::<1>(item)?;
                no_block(item)?;
                let v = &arg.text;
                s.max_streams = match v.parse::<u32>() {
                    Ok(n) if MAX_STREAMS_RANGE.contains(&n) && !v.starts_with('+') => n,
                    _ => {
                        return Err(at(
                            arg.pos,
                            format!("bad `max_streams {v}`: expected a number of streams from 1 to 1000000, such as `1000`"),
                        ))
                    }
                };
            }
            _ => {
                once.check("cache", item, "this source's cache")?;
                let [p, dep, lim] = args_exact::<3>(item)?;
                no_block(item)?;
                s.cache = Some(CacheConfig {
                    path: path(p, "the cache path")?,
                    depth_secs: depth(dep, "cache depth")?,
                    limit_bytes: size(lim, "cache size limit")?,
                });
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_suggests_near_names() {
        assert_eq!(suggest("strem", Ctx::Top.names()), Some("stream"));
        assert_eq!(suggest("htp", Ctx::Top.names()), Some("http"));
        assert_eq!(
            suggest("cluster-key", Ctx::Top.names()),
            Some("cluster_key")
        );
        assert_eq!(suggest("zzz", Ctx::Top.names()), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
