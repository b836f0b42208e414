//! The operator's changes: `PUT`/`DELETE /streamer/api/v3/streams/NAME`, config
//! reloads (`POST /streamer/api/v3/config/reload`, `SIGHUP`), the config file and
//! its state file (`CONFIG.state`).
//!
//! One task (the operator task, started by the runtime) takes the changes one at a
//! time from a bounded queue ([`CONTROL_QUEUE`]), so the running streams, the state
//! in memory and the state file never disagree. Each change: validate (the config
//! parser, through `tern_core::config::state`), apply with
//! `runtime::StreamSet::apply`, then persist (write a temporary file, fsync, rename,
//! fsync the directory); a change that cannot start or be persisted is undone.
//!
//! Owns: reading the config and state files, the state file's JSON, the API's JSON
//! shape of a stream, and the answers of these endpoints. Must not: decide what a
//! change means (core's `config::state` and `config::diff` do) or build streams
//! (the runtime's `StreamSet` does).

use std::path::{Path, PathBuf};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tern_core::config::diff::restart_needed;
use tern_core::config::{self, Config, DvrSpec, InputSpec, StreamSpec, StreamState};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::ctx::NodeCtx;
use crate::http::body::{respond, Body, Response};
use crate::runtime::StreamSet;

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

/// Why an operator's change was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(
        "this node runs without a config file (the embedded demo config, or a config \
         given in code): there is no file to reload and no `CONFIG.state` beside it to \
         keep API changes in; run `tern run FILE` to change streams through the API"
    )]
    NoConfigFile,
    #[error("bad request body: {0}")]
    BadBody(String),
    #[error("{}", .0.message)]
    Invalid(config::SpecError),
    #[error("stream {0:?} is not a configured stream of this node")]
    NotFound(String),
    #[error(
        "stream {0:?} comes from a `source` (a peer's stream): change that source's \
         `only`/`except` in the config instead"
    )]
    FromSource(String),
    #[error("the config was not reloaded, the running one stays: {0}")]
    BadConfig(String),
    #[error("stream {stream:?} could not start: {error}; nothing was changed")]
    Start { stream: String, error: String },
    #[error("cannot write the state file {path}: {error}; nothing was changed")]
    Persist { path: String, error: String },
    #[error("the node is stopping")]
    Stopped,
}

impl OpError {
    pub fn status(&self) -> StatusCode {
        match self {
            OpError::NoConfigFile | OpError::FromSource(_) => StatusCode::CONFLICT,
            OpError::BadBody(_) | OpError::Invalid(_) | OpError::BadConfig(_) => {
                StatusCode::BAD_REQUEST
            }
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Start { .. } | OpError::Persist { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            OpError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn response(&self) -> Response {
        let mut j = serde_json::json!({ "error": self.to_string() });
        if let OpError::Invalid(e) = self {
            if let Some(b) = &e.block {
                j["config"] = serde_json::Value::String(b.clone());
            }
        }
        json(self.status(), &j)
    }
}

fn json(status: StatusCode, v: &impl Serialize) -> Response {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    respond(status, "application/json", Body::full(b))
}

/// A stream change's outcome.
#[derive(Debug, Serialize)]
pub struct Changed {
    pub name: String,
    /// `created`, `updated`, `unchanged` or `deleted`.
    pub result: &'static str,
    /// The stream as a config block (not for a delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// What a reload did.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Streams of the new config that could not start, with why.
    pub failed: Vec<Failed>,
    /// Settings that changed in the file but take effect only at the next start.
    pub restart_needed: Vec<&'static str>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub name: String,
    pub error: String,
}

/// One change for the operator task, with where its answer goes.
pub enum Job {
    Put {
        name: StreamName,
        spec: StreamSpec,
        reply: oneshot::Sender<Result<Changed, OpError>>,
    },
    Delete {
        name: StreamName,
        reply: oneshot::Sender<Result<Changed, OpError>>,
    },
    Reload {
        reply: oneshot::Sender<Result<Reloaded, OpError>>,
    },
}

async fn ask<C: Clock, T>(
    ctx: &NodeCtx<C>,
    job: impl FnOnce(oneshot::Sender<Result<T, OpError>>) -> Job,
) -> Result<T, OpError> {
    let tx = ctx.control.get().ok_or(OpError::Stopped)?;
    let (reply, rx) = oneshot::channel();
    tx.send(job(reply)).await.map_err(|_| OpError::Stopped)?;
    rx.await.map_err(|_| OpError::Stopped)?
}

/// Reloads the config file (`SIGHUP`, `POST /streamer/api/v3/config/reload`).
pub async fn reload<C: Clock>(ctx: &NodeCtx<C>) -> Result<Reloaded, OpError> {
    ask(ctx, |reply| Job::Reload { reply }).await
}

/// `POST /streamer/api/v3/config/reload`.
pub async fn reload_response<C: Clock>(ctx: &NodeCtx<C>) -> Response {
    match reload(ctx).await {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => e.response(),
    }
}

/// `PUT /streamer/api/v3/streams/NAME` with its body (at most
/// [`MAX_API_BODY_BYTES`], read by the router).
pub async fn put_response<C: Clock>(ctx: &NodeCtx<C>, name: StreamName, body: &[u8]) -> Response {
    let parsed: Result<StreamJson, _> = serde_json::from_slice(body);
    let j = match parsed {
        Ok(j) => j,
        Err(e) => return OpError::BadBody(format!("expected a stream as JSON ({e}), such as {{\"inputs\": [{{\"url\": \"fake://fake\"}}]}}")).response(),
    };
    if let Some(n) = &j.name {
        if n != name.as_str() {
            return OpError::BadBody(format!(
                "the body names stream {n:?} but the URL {:?}",
                name.as_str()
            ))
            .response();
        }
    }
    let spec = j.spec();
    match ask(ctx, |reply| Job::Put { name, spec, reply }).await {
        Ok(c) if c.result == "created" => json(StatusCode::CREATED, &c),
        Ok(c) => json(StatusCode::OK, &c),
        Err(e) => e.response(),
    }
}

/// `DELETE /streamer/api/v3/streams/NAME`.
pub async fn delete_response<C: Clock>(ctx: &NodeCtx<C>, name: StreamName) -> Response {
    match ask(ctx, |reply| Job::Delete { name, reply }).await {
        Ok(c) => json(StatusCode::OK, &c),
        Err(e) => e.response(),
    }
}

/// A JSON error answer for the router (bad names, bodies too large).
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// Runs `f` on tokio's blocking pool (file writes and fsyncs).
#[allow(clippy::disallowed_methods)] // driver: the operator task's file I/O off the async workers
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The operator task: applies the changes of `jobs` one at a time to the streams
/// of `set`, which run `running`.
pub async fn run<N: Net, C: Clock>(
    mut set: StreamSet<N, C>,
    mut running: Config,
    mut files: Option<Files>,
    mut jobs: mpsc::Receiver<Job>,
) {
    // The config file as the node started with it: what needs a restart is
    // judged against it.
    let started = files.as_ref().map(|f| f.file.clone());
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Put { name, spec, reply } => {
                let r = match files.as_mut() {
                    None => Err(OpError::NoConfigFile),
                    Some(f) => put(&mut set, &mut running, f, name, spec).await,
                };
                let _ = reply.send(r);
            }
            Job::Delete { name, reply } => {
                let r = match files.as_mut() {
                    None => Err(OpError::NoConfigFile),
                    Some(f) => delete(&mut set, &mut running, f, name).await,
                };
                let _ = reply.send(r);
            }
            Job::Reload { reply } => {
                let r = match (files.as_mut(), &started) {
                    (Some(f), Some(started)) => {
                        reload_files(&mut set, &mut running, f, started).await
                    }
                    _ => Err(OpError::NoConfigFile),
                };
                let _ = reply.send(r);
            }
        }
    }
}

/// Applies `new` over `running` and persists `state`; undoes both on failure.
async fn commit<N: Net, C: Clock>(
    set: &mut StreamSet<N, C>,
    running: &mut Config,
    files: &mut Files,
    state: StreamState,
) -> Result<(), OpError> {
    let new = state.apply(&files.file);
    let applied = set.apply(running, &new).await;
    if let Some((name, e)) = applied.failed.into_iter().next() {
        set.apply(&new, running).await;
        return Err(OpError::Start {
            stream: name.to_string(),
            error: e.to_string(),
        });
    }
    let path = files.state_path.clone();
    let bytes = state_json(&state);
    let written = blocking(move || write_atomically(&path, &bytes))
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("the write task failed")));
    if let Err(e) = written {
        error!(path = %files.state_path.display(), "cannot write the state file: {e}");
        set.apply(&new, running).await;
        return Err(OpError::Persist {
            path: files.state_path.display().to_string(),
            error: e.to_string(),
        });
    }
    files.state = state;
    *running = new;
    Ok(())
}

async fn put<N: Net, C: Clock>(
    set: &mut StreamSet<N, C>,
    running: &mut Config,
    files: &mut Files,
    name: StreamName,
    spec: StreamSpec,
) -> Result<Changed, OpError> {
    let sc = spec.build(name.as_str()).map_err(OpError::Invalid)?;
    let block = spec.to_block(name.as_str()).ok();
    if running.rtmp.is_none() && sc.publish_input().is_some() {
        return Err(OpError::Invalid(config::SpecError {
            message: "`input publish://` needs the node's RTMP port, and its config has no \
                      `rtmp PORT;` (add one to the config file and restart the node)"
                .to_owned(),
            block,
        }));
    }
    if let Some(i) = sc
        .inputs
        .iter()
        .find(|i| i.url.is_cluster() && running.key_for_input(i).is_none())
    {
        return Err(OpError::Invalid(config::SpecError {
            message: format!(
                "input `{}` pulls from a Tern node and needs a cluster key: give it                  `\"cluster_key\"`, or set `cluster_key` at the top of the config",
                i.url
            ),
            block,
        }));
    }
    let before = running.stream(&name).cloned();
    if before.is_none() && set.ctx().entry(&name).is_some_and(|e| e.remote.is_some()) {
        info!(stream = %name, "a stream of the API replaces the one a source discovered");
    }
    let mut state = files.state.clone();
    state.put(name.clone(), spec, sc.clone());
    let result = match &before {
        None => "created",
        Some(_) if config::diff(running, &state.apply(&files.file)).is_empty() => "unchanged",
        Some(_) => "updated",
    };
    commit(set, running, files, state).await?;
    info!(stream = %name, result, "stream put through the API");
    Ok(Changed {
        name: name.to_string(),
        result,
        config: block,
    })
}

async fn delete<N: Net, C: Clock>(
    set: &mut StreamSet<N, C>,
    running: &mut Config,
    files: &mut Files,
    name: StreamName,
) -> Result<Changed, OpError> {
    if running.stream(&name).is_none() {
        return Err(match set.ctx().entry(&name) {
            Some(e) if e.remote.is_some() => OpError::FromSource(name.to_string()),
            _ => OpError::NotFound(name.to_string()),
        });
    }
    let mut state = files.state.clone();
    state.delete(&name, &files.file);
    commit(set, running, files, state).await?;
    info!(stream = %name, "stream deleted through the API");
    Ok(Changed {
        name: name.to_string(),
        result: "deleted",
        config: None,
    })
}

fn names(v: &[StreamName]) -> Vec<String> {
    v.iter().map(|n| n.to_string()).collect()
}

async fn reload_files<N: Net, C: Clock>(
    set: &mut StreamSet<N, C>,
    running: &mut Config,
    files: &mut Files,
    started: &Config,
) -> Result<Reloaded, OpError> {
    let path = files.config_path.clone();
    let loaded = blocking(move || load_config(&path))
        .await
        .unwrap_or_else(|| Err("the read task failed".to_owned()));
    let file = match loaded {
        Ok(f) => f,
        Err(e) => {
            error!("config reload failed, the running config stays: {e}");
            return Err(OpError::BadConfig(e));
        }
    };
    let warnings = file.warnings();
    for w in &warnings {
        warn!("{w}");
    }
    let restart = restart_needed(started, &file);
    for r in &restart {
        warn!(
            "`{r}` differs in {} from what the node started with: it takes effect only when \
             the node restarts",
            files.config_path.display()
        );
    }
    if file.api_auth != files.file.api_auth {
        info!("view_auth / edit_auth changed: the API takes the new credentials now");
        set.ctx().set_api_auth(file.api_auth.clone());
    }
    let mut new = files.state.apply(&file);
    let applied = set.apply(running, &new).await;
    // A stream that could not start is left out of the running config, so the
    // next reload tries it again.
    new.streams
        .retain(|s| !applied.failed.iter().any(|(n, _)| *n == s.name));
    files.file = file;
    *running = new;
    let d = &applied.diff;
    info!(
        added = d.added.len(),
        removed = d.removed.len(),
        changed = d.changed.len(),
        unchanged = d.unchanged.len(),
        failed = applied.failed.len(),
        "config reloaded from {}",
        files.config_path.display()
    );
    Ok(Reloaded {
        added: names(&d.added),
        removed: names(&d.removed),
        changed: names(&d.changed),
        unchanged: names(&d.unchanged),
        failed: applied
            .failed
            .iter()
            .map(|(n, e)| Failed {
                name: n.to_string(),
                error: e.to_string(),
            })
            .collect(),
        restart_needed: restart,
        warnings,
    })
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
