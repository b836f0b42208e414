//! The operator's side of the HTTP API: the answers of `PUT`/`DELETE
//! /streamer/api/v3/streams/NAME` and `POST /streamer/api/v3/config/reload`, the
//! [`Job`]s they queue for the operator task and the [`Control`] queue itself.
//!
//! Owns: the API's JSON answers and error statuses of a change. Must not: apply a
//! change (`task.rs` does, one at a time) or know the runtime.

use std::sync::OnceLock;

use http::StatusCode;
use serde::Serialize;
use tern_core::config::{self, StreamSpec};
use tern_core::StreamName;
use tokio::sync::{mpsc, oneshot};

use super::{StreamJson, CONTROL_QUEUE};
use crate::http::body::{respond, Body, Response};

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

/// The operator task's queue as the HTTP layer and the runtime hold it (in
/// `NodeCtx`): empty until the runtime starts the task, then its sending end.
#[derive(Default)]
pub struct Control(OnceLock<mpsc::Sender<Job>>);

impl Control {
    /// A queue of [`CONTROL_QUEUE`] jobs, its sending end kept here; the runtime
    /// gives the receiving end to the operator task (`None` if already connected).
    pub fn connect(&self) -> Option<mpsc::Receiver<Job>> {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        self.0.set(tx).ok().map(|()| rx)
    }

    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, OpError>>) -> Job,
    ) -> Result<T, OpError> {
        let tx = self.0.get().ok_or(OpError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        tx.send(job(reply)).await.map_err(|_| OpError::Stopped)?;
        rx.await.map_err(|_| OpError::Stopped)?
    }
}

/// Reloads the config file (`SIGHUP`, `POST /streamer/api/v3/config/reload`).
pub async fn reload(control: &Control) -> Result<Reloaded, OpError> {
    control.ask(|reply| Job::Reload { reply }).await
}

/// `POST /streamer/api/v3/config/reload`.
pub async fn reload_response(control: &Control) -> Response {
    match reload(control).await {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => e.response(),
    }
}

/// `PUT /streamer/api/v3/streams/NAME` with its body (at most
/// [`MAX_API_BODY_BYTES`], read by the router).
pub async fn put_response(control: &Control, name: StreamName, body: &[u8]) -> Response {
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
    match control.ask(|reply| Job::Put { name, spec, reply }).await {
        Ok(c) if c.result == "created" => json(StatusCode::CREATED, &c),
        Ok(c) => json(StatusCode::OK, &c),
        Err(e) => e.response(),
    }
}

/// `DELETE /streamer/api/v3/streams/NAME`.
pub async fn delete_response(control: &Control, name: StreamName) -> Response {
    match control.ask(|reply| Job::Delete { name, reply }).await {
        Ok(c) => json(StatusCode::OK, &c),
        Err(e) => e.response(),
    }
}

/// A JSON error answer for the router (bad names, bodies too large).
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}
