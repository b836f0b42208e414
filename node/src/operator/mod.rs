//! The operator's changes: `PUT`/`DELETE /streamer/api/v3/streams/NAME`, config
//! reloads (`POST /streamer/api/v3/config/reload`, `SIGHUP`), the config file and
//! its state file (`CONFIG.state`).
//!
//! One task (the operator task, started by the runtime) takes the changes one at a
//! time from a bounded queue ([`CONTROL_QUEUE`]), so the running streams, the state
//! in memory and the state file never disagree. Each change: validate (the config
//! parser, through `tern_core::config::state`), apply with
//! `stream_set::StreamSet::apply`, then persist (write a temporary file, fsync, rename,
//! fsync the directory); a change that cannot start or be persisted is undone.
//!
//! Files: `request.rs` (the API's answers and the [`Control`] queue), `task.rs` (the
//! operator task).
//!
//! Owns: reading the config and state files, the state file's JSON, the API's JSON
//! shape of a stream, and the answers of these endpoints. Must not: decide what a
//! change means (core's `config::state` and `config::diff` do) or build streams
//! (`stream_set.rs` does).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tern_core::config::{self, Config, DvrSpec, InputSpec, StreamSpec, StreamState};
use tern_core::StreamName;

pub use request::{
    delete_response, error_response, put_response, reload, reload_response, Changed, Control,
    Failed, Job, OpError, Reloaded,
};

mod request;
pub mod task;

/// Changes waiting for the operator task; more senders wait their turn.
pub const CONTROL_QUEUE: usize = 16;

/// Largest body of a `PUT` (a stream description is well under 1 KiB).
pub const MAX_API_BODY_BYTES: usize = 64 * 1024;

/// Largest config file read (a config of thousands of streams is a few hundred
/// KiB); the state file has the same limit.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The version written in (and required of) a state file.
const STATE_VERSION: u32 = 1;

/// The text of a config or state file: a regular file (after symlinks) of at most
/// [`MAX_CONFIG_BYTES`], checked from its metadata before it is opened, so that
/// `/dev/zero` or a FIFO is refused at once instead of read forever.
pub fn read_config(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read config: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown}: cannot read config: not a regular file (a directory, device, FIFO or socket); give the path of a config file"
        ));
    }
    let too_big = || {
        format!(
            "{shown}: cannot read config: larger than {} MiB, the most a config may be",
            MAX_CONFIG_BYTES / (1024 * 1024)
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("{shown}: cannot read config: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big()); // it grew while being read
    }
    Ok(text)
}

/// Reads and parses a config file; errors come out as `PATH:LINE:COLUMN: message`.
pub fn load_config(path: &Path) -> Result<Config, String> {
    let text = read_config(path)?;
    config::parse(&text)
        .map_err(|e| format!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message))
}

/// The state file of a config file: its path with `.state` added
/// (`tern.conf` -> `tern.conf.state`).
pub fn state_path(config_path: &Path) -> PathBuf {
    let mut s = config_path.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

/// A config file, its state file and what they hold.
#[derive(Clone, Debug)]
pub struct Files {
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    /// The config as its file says.
    pub file: Config,
    /// The API's streams, from the state file.
    pub state: StreamState,
}

impl Files {
    /// The config the node runs: the state applied over the file.
    pub fn running(&self) -> Config {
        self.state.apply(&self.file)
    }
}

/// Reads the config file at `path` and its state file (none yet is an empty
/// state). Every stream of the state file is validated again, as at its `PUT`.
pub fn load_files(path: &Path) -> Result<Files, String> {
    let file = load_config(path)?;
    let state_path = state_path(path);
    let state = match std::fs::symlink_metadata(&state_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StreamState::default(),
        _ => {
            let text = read_config(&state_path)?;
            parse_state(&text).map_err(|e| {
                format!(
                    "{}: {e} (this file holds the streams changed through the API; fix or \
                     remove it)",
                    state_path.display()
                )
            })?
        }
    };
    Ok(Files {
        config_path: path.to_owned(),
        state_path,
        file,
        state,
    })
}

/// A number or a string in the API's JSON: both become the config's text
/// (`2`, `"2d"`, `"0.5"`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Value {
    Number(serde_json::Number),
    Text(String),
}

impl Value {
    fn text(self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Text(s) => s,
        }
    }
}

/// A stream as the API takes it (and as the state file keeps it): Flussonic's
/// field names where Flussonic has one.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StreamJson {
    /// If given, the name of the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    inputs: Vec<InputJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dvr: Option<DvrJson>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment_duration: Option<Value>,
    /// `false`: an `ondemand` stream (inputs open only while watched).
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    is_static: Option<bool>,
    /// Seconds (an on-demand stream only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clients_timeout: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<Value>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_timeout: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_key: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DvrJson {
    /// The DVR path.
    root: String,
    /// Depth: seconds, or a duration such as `"2d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration: Option<Value>,
    /// Size limit: bytes, or a size such as `"10G"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk_limit: Option<Value>,
}

impl StreamJson {
    fn spec(self) -> StreamSpec {
        StreamSpec {
            inputs: self
                .inputs
                .into_iter()
                .map(|i| InputSpec {
                    url: i.url,
                    priority: i.priority.map(Value::text),
                    source_timeout: i.source_timeout.map(Value::text),
                    cluster_key: i.cluster_key,
                })
                .collect(),
            dvr: self.dvr.map(|d| DvrSpec {
                root: d.root,
                depth: d.expiration.map(Value::text),
                limit: d.disk_limit.map(Value::text),
            }),
            segment_duration: self.segment_duration.map(Value::text),
            on_demand: self.is_static == Some(false),
            clients_timeout: self.clients_timeout.map(Value::text),
        }
    }

    fn of(spec: &StreamSpec) -> StreamJson {
        StreamJson {
            name: None,
            inputs: spec
                .inputs
                .iter()
                .map(|i| InputJson {
                    url: i.url.clone(),
                    priority: i.priority.clone().map(Value::Text),
                    source_timeout: i.source_timeout.clone().map(Value::Text),
                    cluster_key: i.cluster_key.clone(),
                })
                .collect(),
            dvr: spec.dvr.as_ref().map(|d| DvrJson {
                root: d.root.clone(),
                expiration: d.depth.clone().map(Value::Text),
                disk_limit: d.limit.clone().map(Value::Text),
            }),
            segment_duration: spec.segment_duration.clone().map(Value::Text),
            is_static: spec.on_demand.then_some(false),
            clients_timeout: spec.clients_timeout.clone().map(Value::Text),
        }
    }
}

/// The state file: `{"tern_state": 1, "streams": {NAME: STREAM}, "deleted": [NAME]}`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    tern_state: u32,
    #[serde(default)]
    streams: std::collections::BTreeMap<String, StreamJson>,
    #[serde(default)]
    deleted: Vec<String>,
}

fn parse_state(text: &str) -> Result<StreamState, String> {
    let j: StateJson = serde_json::from_str(text).map_err(|e| format!("not a state file: {e}"))?;
    if j.tern_state != STATE_VERSION {
        return Err(format!(
            "state file version {} is not {STATE_VERSION}, the one this tern reads",
            j.tern_state
        ));
    }
    let mut state = StreamState::default();
    for (name, s) in j.streams {
        let n = StreamName::new(&name).map_err(|e| format!("bad stream name {name:?}: {e}"))?;
        let spec = s.spec();
        let cfg = spec
            .build(&name)
            .map_err(|e| format!("stream {name:?}: {e}"))?;
        state.put(n, spec, cfg);
    }
    for name in j.deleted {
        let n = StreamName::new(&name).map_err(|e| format!("bad stream name {name:?}: {e}"))?;
        state.deleted.insert(n);
    }
    Ok(state)
}

fn state_json(state: &StreamState) -> Vec<u8> {
    let j = StateJson {
        tern_state: STATE_VERSION,
        streams: state
            .put
            .iter()
            .map(|(n, p)| (n.to_string(), StreamJson::of(&p.spec)))
            .collect(),
        deleted: state.deleted.iter().map(|n| n.to_string()).collect(),
    };
    let mut out = serde_json::to_vec_pretty(&j).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one,
/// never a mix: a temporary file beside it, fsync, rename over, fsync the
/// directory. The file is readable by its owner only (it may hold cluster keys).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_and_checks_its_streams() {
        let file = config::parse("http 0;\nstream a { input fake://fake; }\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"inputs":[{"url":"fake://fake?fps=25","priority":1,"source_timeout":2.5}],
            "dvr":{"root":"/tmp/d","expiration":"2d","disk_limit":1073741824},
            "segment_duration":4}"#;
        let j: StreamJson = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"));
        let spec = j.spec();
        let sc = spec.build("b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sc.segment_duration_ms, Some(4000));
        assert_eq!(sc.dvr.as_ref().and_then(|d| d.limit_bytes), Some(1 << 30));
        let mut st = StreamState::default();
        st.put(
            StreamName::new("b").unwrap_or_else(|e| panic!("{e}")),
            spec,
            sc,
        );
        st.delete(
            &StreamName::new("a").unwrap_or_else(|e| panic!("{e}")),
            &file,
        );
        let text = String::from_utf8(state_json(&st)).unwrap_or_default();
        let back = parse_state(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, st);
        assert!(parse_state("{\"tern_state\":2}").is_err_and(|e| e.contains("version 2")));
        let bad = r#"{"tern_state":1,"streams":{"x":{"inputs":[{"url":"ftp://x"}]}}}"#;
        assert!(parse_state(bad).is_err_and(|e| e.contains("stream \"x\"")));
        let unknown: Result<StreamJson, _> = serde_json::from_str(r#"{"inputz":[]}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `inputz`")));
    }

    #[test]
    fn state_file_is_written_atomically() {
        let dir = std::env::temp_dir().join(format!("tern-op-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let conf = dir.join("tern.conf");
        let state = state_path(&conf);
        assert_eq!(state, dir.join("tern.conf.state"));
        write_atomically(&state, b"one").unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&state, b"two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&state).unwrap_or_default(), b"two");
        assert!(!dir.join("tern.conf.state.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&state).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        assert!(write_atomically(&dir.join("no/such/dir/x"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
