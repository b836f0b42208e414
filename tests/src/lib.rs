//! # tern-tests: the end-to-end harness
//!
//! Real `tern` processes on loopback, checked with the real `ffmpeg` / `ffprobe`
//! (docs/design.md §8). What the tests in `tests/tests/` share:
//!
//! - [`require_tool`]: skip (or, under `TERN_REQUIRE_TOOLS=1`, fail) when a tool is
//!   missing.
//! - [`Node`]: a `tern run` child with its config in a temp directory, listening on a
//!   free loopback port; killed (and its log shown if the test panicked) on drop;
//!   [`Node::stop`] kills it and [`Node::restart`] brings it back on the same port.
//! - [`http_get`]: a tiny HTTP/1.1 GET client on `std::net`, enough for the API and
//!   playlists (not for the endless `/NAME/mpegts`).
//! - [`Proc`]: a child process with a deadline, its stderr collected; [`decode_frames`],
//!   [`decode_all_frames`] (finite inputs: the archive) and [`FrameReader`] turn
//!   ffmpeg's raw gray output into luma planes, [`read_barcode`] reads the `fake://`
//!   barcode from one and [`capture_utc_ms`] widens its capture time to full UTC ms.
//!
//! The binary path comes from the integration test crate: `env!("CARGO_BIN_EXE_tern-e2e")`
//! (this package's copy of `tern`) is only set there, so [`Node::start`] and
//! [`tern_check`] take it as an argument.
//!
//! Wall time: `clippy.toml` bans `Instant::now`, `SystemTime::now` and `thread::spawn`
//! for the node's determinism (docs/design.md §4). This harness is outside the node and
//! needs real deadlines, the real UTC clock (latency = now − capture time) and threads
//! to drain child pipes, so only the few functions below that do so allow them.
//!
//! Files: `tools.rs`, `tempdir.rs`, `node.rs`, `http.rs`, `process.rs`, `frames.rs`,
//! `hostile_peer.rs` (a cluster peer that sends what no Tern node would),
//! `reencode.rs` (ffmpeg senders re-encoding a source node, the H.265 check);
//! this file holds the constants and the clocks, and re-exports them all.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod curl;
mod frames;
mod hostile_peer;
mod http;
mod node;
mod process;
mod reencode;
mod tempdir;
mod tools;

pub use curl::*;
pub use frames::*;
pub use hostile_peer::*;
pub use http::*;
pub use node::*;
pub use process::*;
pub use reencode::*;
pub use tempdir::*;
pub use tools::*;

/// Picture size of the default `fake://` stream (docs/media.md).
pub const WIDTH: usize = 320;
pub const HEIGHT: usize = 240;
/// Bytes of one `-pix_fmt gray` frame at [`WIDTH`]×[`HEIGHT`].
pub const FRAME_BYTES: usize = WIDTH * HEIGHT;

/// How long a node may take to answer its API after being spawned.
pub(crate) const NODE_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// ffmpeg's own I/O timeout (`-rw_timeout`, microseconds): a stalled server makes it
/// fail instead of hanging.
pub const FFMPEG_RW_TIMEOUT_US: &str = "5000000";

// ---------------------------------------------------------------------------------
// Clocks (the only places that read real time)

/// Monotonic now, for deadlines.
#[allow(clippy::disallowed_methods)] // test harness deadlines need real time (see the crate doc)
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock UTC in milliseconds, compared with the barcode's capture time.
#[allow(clippy::disallowed_methods)] // glass-to-glass latency needs the real UTC clock
pub fn utc_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("system clock before 1970")
        .as_millis() as u64
}

/// Spawns a helper thread (pipe drains and watchdogs of child processes).
#[allow(clippy::disallowed_methods)] // draining child pipes needs threads (see the crate doc)
pub fn spawn_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::spawn(f)
}

/// Polls `f` every 50 ms until it returns `Some`, or `None` after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
