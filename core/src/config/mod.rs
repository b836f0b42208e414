//! The config language of docs/design.md §2: `directive args;` and
//! `directive args { ... }`, `#` comments, double-quoted values.
//!
//! Owns: the entry point [`parse`] and the layout of this module. Must not: do I/O
//! (the caller reads the file) or hold logic of its own.
//!
//! The work is split into one concept per file, in the order text flows through:
//! - `lexer`: text to tokens with line and column;
//! - `parser`: tokens to a tree of directives (the shape only);
//! - `directives`: the tree to the typed [`Config`], with every per-directive check,
//!   helped by `url` (URLs, addresses, `fake://` options), [`srt`] (`srt://`), [`units`] (seconds,
//!   depths, sizes, bitrates) and [`pattern`] (`only`/`except` patterns);
//! - [`model`]: the typed config, its defaults and warnings;
//! - [`error`]: [`ConfigError`], one for every failure, with line and column;
//! - [`state`]: streams of the operator's API, validated as blocks of this language
//!   and merged over a config; [`diff`]: what a reload starts, stops and keeps.
//!
//! ```text
//! http 8888;                          # PORT or ADDR:PORT; several allowed, one required
//! cluster_key "a long random secret"; # top, in `source`, or `cluster_key=` on an input
//! segment_duration 2;                 # seconds, 0.5..=60, top or stream; default 2
//! stream cams/yard/3 {
//!   input fake://fake?width=640&height=360&fps=30&gop=0.5&bitrate=3M priority=1;
//!   input m4s://10.0.0.2:8888/cams/yard/3 priority=2 source_timeout=5;
//!   dvr /storage 2d 10G;              # PATH [DEPTH] [LIMIT]
//! }
//! source m4f://origin:8888 { only cams/*; except cams/test; cache /cache 1d 50G; }
//! rtmp 1935;                          # RTMP publishers' port (default: none)
//! stream studio { input publish://?password=SECRET; }
//! stream enc { input srt://:9000?passphrase=SECRET&latency=200; }  # or srt://HOST:PORT
//! ```

pub mod diff;
mod directives;
pub mod error;
mod lexer;
pub mod model;
mod parser;
pub mod pattern;
pub mod srt;
pub mod state;
pub mod units;
mod url;

#[cfg(test)]
mod tests;

pub use diff::{diff, StreamDiff};
pub use error::{ConfigError, Pos};
pub use model::{
    CacheConfig, ClusterKey, Config, DvrConfig, InputConfig, InputUrl, Listen, PublishInput,
    PublishPassword, RtspCredentials, RtspInput, RtspTransport, SourceConfig, SourceProtocol,
    StaticStreams, StreamConfig, DEFAULT_CLIENTS_TIMEOUT_MS, DEFAULT_MAX_STREAMS,
    DEFAULT_SEGMENT_DURATION_MS, MIN_GOOD_KEY_CHARS,
};
pub use pattern::NamePattern;
pub use srt::{SrtInput, SrtMode, SrtPassphrase, DEFAULT_SRT_LATENCY_MS};
pub use state::{DvrSpec, InputSpec, SpecError, StreamSpec, StreamState};

/// Parses a whole config file. The first error found is returned, with its line and
/// column and what was expected there.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let lexed = lexer::lex(text)?;
    let tree = parser::parse_tree(&lexed)?;
    directives::build(&tree)
}
