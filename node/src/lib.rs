//! # tern-node
//!
//! The node runtime and the `tern` binary. The runtime is generic over
//! [`tern_net::Net`] and [`tern_net::Clock`]: the binary runs it on tokio
//! (`TokioNet`, `TokioClock`), tern-sim on turmoil (`TurmoilNet`, `TurmoilClock`).
//!
//! Layout: `runtime` starts a config's streams and listeners; `hub` is one stream's
//! live state; `input` feeds hubs; `output` serves players; `http` is the server and
//! router; `api` the JSON API; `cli` the binary's commands.

pub mod api;
pub mod api_select;
pub mod archive;
pub mod assets;
pub mod bench;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod ctx;
pub mod dvr;
pub mod fd_limit;
pub mod http;
pub mod hub;
pub mod input;
pub mod malloc_trim;
pub mod metrics;
pub mod operator;
pub mod output;
pub mod runtime;
pub mod status_page;
pub mod stream_set;
pub mod timer;

pub use ctx::{NodeCtx, NodeError};
pub use runtime::{start, start_seeded, RunningNode};
