//! Streams changed through the operator's API (`PUT`/`DELETE
//! /streamer/api/v3/streams/NAME`), kept in the state file beside the config
//! (`CONFIG.state`) and applied over the config file at start and at every reload.
//!
//! Owns: [`StreamSpec`], the API's description of a stream, and its validation:
//! a spec is written out as a `stream`/`ondemand` block of the config language
//! (every value quoted, so no value can add a directive) and that block goes
//! through the config parser, so the API accepts exactly what a config file
//! accepts; [`StreamState`], the creations and deletions, and the rule that merges
//! them over a config. Must not: read or write files or speak JSON (the node does),
//! or start streams.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Config, StreamConfig};
use super::{directives, lexer, parser, ConfigError};
use crate::stream_name::StreamName;

/// A stream as the API describes it. Values are the config language's text
/// (`"2d"`, `"0.5"`, `"10G"`); the node turns JSON numbers into that text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSpec {
    pub inputs: Vec<InputSpec>,
    pub dvr: Option<DvrSpec>,
    /// `segment_duration SECONDS;`.
    pub segment_duration: Option<String>,
    /// `ondemand NAME { ... }` rather than `stream NAME { ... }`.
    pub on_demand: bool,
    /// `clients_timeout SECONDS;` (an `ondemand` stream only).
    pub clients_timeout: Option<String>,
}

/// `input URL [priority=N] [source_timeout=SECONDS] [cluster_key=KEY];`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSpec {
    pub url: String,
    pub priority: Option<String>,
    pub source_timeout: Option<String>,
    pub cluster_key: Option<String>,
}

/// `dvr PATH [DEPTH] [LIMIT];`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DvrSpec {
    pub root: String,
    pub depth: Option<String>,
    pub limit: Option<String>,
}

/// Why a spec is refused: the config parser's message, and the block it checked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub message: String,
    /// The spec as a config block (`None` when it could not be written as one).
    pub block: Option<String>,
}

/// A value in double quotes, with `"` and `\` escaped as the lexer reads them.
fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

impl StreamSpec {
    /// The spec as a block of the config language, for stream `name`.
    pub fn to_block(&self, name: &str) -> Result<String, SpecError> {
        let kind = if self.on_demand { "ondemand" } else { "stream" };
        let mut out = format!("{kind} {} {{\n", quote(name));
        for i in &self.inputs {
            out.push_str(&format!("  input {}", quote(&i.url)));
            for (k, v) in [
                ("priority", &i.priority),
                ("source_timeout", &i.source_timeout),
                ("cluster_key", &i.cluster_key),
            ] {
                if let Some(v) = v {
                    out.push_str(&format!(" {}", quote(&format!("{k}={v}"))));
                }
            }
            out.push_str(";\n");
        }
        if let Some(d) = &self.dvr {
            out.push_str(&format!("  dvr {}", quote(&d.root)));
            match (&d.depth, &d.limit) {
                (Some(depth), limit) => {
                    out.push_str(&format!(" {}", quote(depth)));
                    if let Some(l) = limit {
                        out.push_str(&format!(" {}", quote(l)));
                    }
                }
                (None, Some(_)) => {
                    return Err(SpecError {
                        message: "a DVR size limit needs a depth too (`dvr PATH DEPTH LIMIT;`): \
                                  add `expiration`"
                            .to_owned(),
                        block: None,
                    })
                }
                (None, None) => {}
            }
            out.push_str(";\n");
        }
        if let Some(s) = &self.segment_duration {
            out.push_str(&format!("  segment_duration {};\n", quote(s)));
        }
        if let Some(s) = &self.clients_timeout {
            out.push_str(&format!("  clients_timeout {};\n", quote(s)));
        }
        out.push_str("}\n");
        Ok(out)
    }

    /// Validates the spec as the config parser would validate its block in a config
    /// file, and gives the stream it describes.
    pub fn build(&self, name: &str) -> Result<StreamConfig, SpecError> {
        let block = self.to_block(name)?;
        parse_stream_block(&block).map_err(|e| SpecError {
            message: e.message,
            block: Some(block),
        })
    }
}

/// One `stream`/`ondemand` block, checked as in a config file.
fn parse_stream_block(text: &str) -> Result<StreamConfig, ConfigError> {
    let lexed = lexer::lex(text)?;
    let tree = parser::parse_tree(&lexed)?;
    match tree.as_slice() {
        [d] => directives::stream_block(d),
        _ => Err(ConfigError::at(
            super::Pos::START,
            "expected exactly one `stream` or `ondemand` block",
        )),
    }
}

/// A stream created or replaced through the API: the spec as given (what the state
/// file keeps) and the stream it was validated into.
#[derive(Clone, Debug, PartialEq)]
pub struct PutStream {
    pub spec: StreamSpec,
    pub config: StreamConfig,
}

/// What the API changed, applied over the config file (see [`StreamState::apply`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamState {
    /// Streams created or replaced through the API.
    pub put: BTreeMap<StreamName, PutStream>,
    /// Streams of the config file deleted through the API.
    pub deleted: BTreeSet<StreamName>,
}

impl StreamState {
    /// Records a `PUT`: the stream is created or replaced, and no longer deleted.
    pub fn put(&mut self, name: StreamName, spec: StreamSpec, config: StreamConfig) {
        self.deleted.remove(&name);
        self.put.insert(name, PutStream { spec, config });
    }

    /// Records a `DELETE` of a stream of `config_file` (the config as read from its
    /// file) or of the API; returns `false` when neither has the stream.
    pub fn delete(&mut self, name: &StreamName, config_file: &Config) -> bool {
        let from_api = self.put.remove(name).is_some();
        let from_file = config_file.stream(name).is_some() && self.deleted.insert(name.clone());
        from_api || from_file
    }

    /// The config the node runs: `config_file` with every deleted stream taken out
    /// and every stream of the API put in (replacing the file's stream of the same
    /// name, in its place; new ones after the file's, in name order). The rest of
    /// the config (top-level settings, sources) is the file's.
    pub fn apply(&self, config_file: &Config) -> Config {
        let mut out = config_file.clone();
        out.streams.retain(|s| !self.deleted.contains(&s.name));
        for s in &mut out.streams {
            if let Some(p) = self.put.get(&s.name) {
                *s = p.config.clone();
            }
        }
        for (name, p) in &self.put {
            if config_file.stream(name).is_none() {
                out.streams.push(p.config.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn fake(url: &str) -> StreamSpec {
        StreamSpec {
            inputs: vec![InputSpec {
                url: url.to_owned(),
                ..InputSpec::default()
            }],
            ..StreamSpec::default()
        }
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_spec_validates_like_the_config_file() {
        let spec = StreamSpec {
            inputs: vec![
                InputSpec {
                    url: "fake://fake?fps=30".into(),
                    priority: Some("1".into()),
                    source_timeout: Some("2.5".into()),
                    cluster_key: None,
                },
                InputSpec {
                    url: "m4s://origin:8888/cams/1".into(),
                    priority: Some("2".into()),
                    source_timeout: None,
                    cluster_key: Some("a key with \"quotes\" and ; { }".into()),
                },
            ],
            dvr: Some(DvrSpec {
                root: "/mnt/my disk".into(),
                depth: Some("2d".into()),
                limit: Some("10G".into()),
            }),
            segment_duration: Some("4".into()),
            ..StreamSpec::default()
        };
        let got = spec.build("cams/1").unwrap_or_else(|e| panic!("{e}"));
        let file = parse(
            "http 0;\nstream cams/1 {\n input fake://fake?fps=30 priority=1 source_timeout=2.5;\n \
             input m4s://origin:8888/cams/1 priority=2 \"cluster_key=a key with \\\"quotes\\\" and ; { }\";\n \
             dvr \"/mnt/my disk\" 2d 10G;\n segment_duration 4;\n}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(&got), file.streams.first());

        let od = StreamSpec {
            on_demand: true,
            clients_timeout: Some("5".into()),
            ..fake("fake://fake")
        };
        assert_eq!(
            od.build("od").map(|s| s.on_demand_ms),
            Ok(Some(5000)),
            "{:?}",
            od.to_block("od")
        );
    }

    #[test]
    fn config_spec_refusals_say_why() {
        let err = |spec: &StreamSpec, n: &str| spec.build(n).err().map(|e| e.message);
        let msg = |m: Option<String>| m.unwrap_or_default();
        assert!(msg(err(&StreamSpec::default(), "x")).contains("has no `input`"));
        assert!(msg(err(&fake("ftp://x"), "x")).contains("ftp"));
        assert!(msg(err(&fake("fake://fake"), "../x")).contains("bad stream name"));
        let bad_seg = StreamSpec {
            segment_duration: Some("100".into()),
            ..fake("fake://fake")
        };
        assert!(msg(err(&bad_seg, "x")).contains("segment_duration"));
        let od_dvr = StreamSpec {
            on_demand: true,
            dvr: Some(DvrSpec {
                root: "/d".into(),
                ..DvrSpec::default()
            }),
            ..fake("fake://fake")
        };
        assert!(msg(err(&od_dvr, "x")).contains("`dvr` in an `ondemand` block"));
        let limit_only = StreamSpec {
            dvr: Some(DvrSpec {
                root: "/d".into(),
                depth: None,
                limit: Some("1G".into()),
            }),
            ..fake("fake://fake")
        };
        assert!(msg(err(&limit_only, "x")).contains("needs a depth"));
        // A value cannot add a directive or end the block: it stays one quoted value.
        let inject = fake("fake://fake; } http 9999; stream y { input fake://fake");
        let e = inject.build("x").err();
        assert!(e.as_ref().is_some_and(|e| e.block.is_some()), "{e:?}");
        assert!(fake("fake://fake\"; }").build("x").is_err());
        let newline = fake("fake://fake\nhttp 1;");
        assert!(newline.build("x").is_err());
    }

    #[test]
    fn config_state_merges_over_the_file() {
        let file = parse(
            "http 0;\nsegment_duration 3;\nstream a { input fake://fake; }\n\
             stream b { input fake://fake; }\nstream c { input fake://fake; }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut st = StreamState::default();
        assert_eq!(st.apply(&file), file);
        let put = |st: &mut StreamState, n: &str, url: &str| {
            let spec = fake(url);
            let cfg = spec.build(n).unwrap_or_else(|e| panic!("{e}"));
            st.put(name(n), spec, cfg);
        };
        put(&mut st, "z", "fake://fake");
        put(&mut st, "b", "fake://fake?fps=30");
        assert!(st.delete(&name("c"), &file));
        assert!(!st.delete(&name("nope"), &file));
        let run = st.apply(&file);
        let names: Vec<&str> = run.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "z"]);
        assert_eq!(
            run.stream(&name("b")).map(|s| s.inputs[0].url.to_string()),
            Some("fake://fake?fps=30".to_owned())
        );
        // An API stream takes the file's top-level settings like any other.
        assert_eq!(
            run.stream(&name("z")).map(|s| s.segment_duration_ms(&run)),
            Some(3000)
        );
        assert_eq!(run.http, file.http);

        // Deleting an API stream that shadows a file stream hides the file's too;
        // putting it again brings it back.
        assert!(st.delete(&name("b"), &file));
        assert!(st.apply(&file).stream(&name("b")).is_none());
        put(&mut st, "c", "fake://fake");
        assert!(!st.deleted.contains(&name("c")));
        assert!(st.apply(&file).stream(&name("c")).is_some());
        // Deleting an API-only stream leaves no trace.
        assert!(st.delete(&name("z"), &file));
        assert!(!st.deleted.contains(&name("z")) && !st.put.contains_key(&name("z")));
        let names: Vec<String> = st
            .apply(&file)
            .streams
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }
}
