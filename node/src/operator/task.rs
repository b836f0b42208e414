//! The operator task: takes the changes of the [`Control`](super::Control) queue one
//! at a time, validates each (core's `config::state`), applies it with
//! `StreamSet::apply` and persists the state file, undoing a change that cannot
//! start or be persisted.
//!
//! Owns: the order of changes and the running config. Must not: answer HTTP
//! (`request.rs` does) or build streams (`stream_set.rs` does).

use tern_core::config::diff::restart_needed;
use tern_core::config::{Config, StreamState};
use tern_core::StreamName;
use tern_net::{Clock, Net};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::*;
use crate::stream_set::StreamSet;

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
