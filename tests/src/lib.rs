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

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_core::fake::barcode;

/// Picture size of the default `fake://` stream (docs/media.md).
pub const WIDTH: usize = 320;
pub const HEIGHT: usize = 240;
/// Bytes of one `-pix_fmt gray` frame at [`WIDTH`]×[`HEIGHT`].
pub const FRAME_BYTES: usize = WIDTH * HEIGHT;

/// How long a node may take to answer its API after being spawned.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(10);
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
fn spawn_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
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

// ---------------------------------------------------------------------------------
// Tools

/// The Debian package that provides `tool`, for the install hint.
fn package_of(tool: &str) -> &str {
    match tool {
        "ffmpeg" | "ffprobe" | "ffplay" => "ffmpeg",
        other => other,
    }
}

/// Whether `tool` can be run. If not: panics when `TERN_REQUIRE_TOOLS=1` (CI) with the
/// command that installs it, else prints `skipping: TOOL not installed` and returns
/// false, and the calling test returns early.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var("TERN_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{tool} is not installed and TERN_REQUIRE_TOOLS=1 requires it: \
             install it with `apt-get install -y {}`",
            package_of(tool)
        );
    }
    println!("skipping: {tool} not installed");
    false
}

// ---------------------------------------------------------------------------------
// Temp directories

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tern-tests-{}-{}-{n}",
            std::process::id(),
            what.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------
// The node

/// A free TCP port on 127.0.0.1 (bound, read, released: the node binds it next; a
/// rare collision is retried by [`Node::start`]).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0");
    l.local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A running `tern run CONFIG` child on a loopback port. Killed on drop; if the test
/// is panicking then, the node's log (stdout + stderr) is printed to help diagnose.
pub struct Node {
    pub port: u16,
    child: Child,
    /// What [`Node::restart`] runs again: the binary and the config file.
    bin: String,
    conf: PathBuf,
    log: PathBuf,
    /// Do not print the log on a panic (it is already in the panic message).
    quiet: bool,
    // Last: removed after the child is dead.
    dir: TempDir,
}

impl Node {
    /// Starts `bin run CONFIG` where CONFIG is `http 127.0.0.1:PORT;` (a free port)
    /// followed by `config` (which must not have an `http` directive of its own), and
    /// waits until `GET /streamer/api/v3/streams` answers 200.
    pub fn start(bin: &str, config: &str) -> Node {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = TempDir::new("node");
            let port = free_port();
            let text = format!("http 127.0.0.1:{port};\n{config}");
            let conf = dir.write("tern.conf", &text);
            let log = dir.path().join("node.log");
            let child = spawn_node(bin, &conf, dir.path(), &log);
            let mut node = Node {
                port,
                child,
                bin: bin.to_owned(),
                conf,
                log,
                quiet: false,
                dir,
            };
            match node.wait_ready() {
                Ok(()) => return node,
                Err(exited) => {
                    let log = node.log();
                    let in_use = log.contains("in use");
                    if exited && in_use && attempt < ATTEMPTS {
                        // Someone took the port between free_port() and the node's bind.
                        continue;
                    }
                    let why = if exited {
                        "exited"
                    } else {
                        "did not answer its API within 10 s"
                    };
                    // The log is in the message: Drop need not print it again.
                    node.quiet = true;
                    panic!("tern node on port {port} {why}.\nconfig:\n{text}\nlog:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The node's HTTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the node's process (as a crash or `kill -9` would) and waits for it to
    /// be gone. [`Node::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the node if it still runs, then starts the same binary with the same
    /// config on the same port (the log goes on in the same file, after a marker line)
    /// and waits until the API answers again. Panics if it cannot.
    pub fn restart(&mut self) {
        self.stop();
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.log)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
            let _ = writeln!(f, "---- tern-tests: node restarted ----");
        }
        self.child = spawn_node(&self.bin, &self.conf, self.dir.path(), &self.log);
        if let Err(exited) = self.wait_ready() {
            let why = if exited {
                "exited"
            } else {
                "did not answer its API within 10 s"
            };
            self.quiet = true;
            panic!(
                "tern node restarted on port {} {why}.\nlog:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Ok when the API answers; Err(true) if the child exited, Err(false) on timeout.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let port = self.port;
        let child = &mut self.child;
        let r = poll_until(NODE_READY_TIMEOUT, || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(Err(true));
            }
            match try_http_get(port, "/streamer/api/v3/streams") {
                Ok((200, _)) => Some(Ok(())),
                _ => None,
            }
        });
        r.unwrap_or(Err(false))
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// [`http_get`] on this node.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The node's temp directory (config and log live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the HLS playlist of `name` lists at least `min` segments and
    /// returns it; panics after `timeout` with the last answer.
    pub fn wait_playlist(&self, name: &str, min: usize, timeout: Duration) -> String {
        let path = format!("/{name}/index.m3u8");
        let mut last = (0, String::new());
        let r = poll_until(timeout, || {
            last = match try_http_get(self.port, &path) {
                Ok((s, b)) => (s, String::from_utf8_lossy(&b).into_owned()),
                Err(e) => (0, e.to_string()),
            };
            let (status, body) = &last;
            let n = body.lines().filter(|l| l.starts_with("#EXTINF")).count();
            (*status == 200 && n >= min).then(|| body.clone())
        });
        r.unwrap_or_else(|| {
            panic!(
                "{path} did not list {min} segments within {timeout:?}; last answer: {} {}",
                last.0, last.1
            )
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && !self.quiet {
            eprintln!(
                "---- log of the tern node on port {} ----\n{}---- end of log ----",
                self.port,
                self.log()
            );
        }
    }
}

/// Spawns `bin run CONF` in `dir`, stdout and stderr appended to `log`.
fn spawn_node(bin: &str, conf: &Path, dir: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let log_file2 = log_file
        .try_clone()
        .expect("cannot clone the log file handle");
    Command::new(bin)
        .arg("run")
        .arg(conf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_file2)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"))
}

/// Runs `bin check CONFIG` with `config` written to a temp file; returns the exit
/// status, stdout, stderr and the config's path (error messages name it).
pub fn tern_check(bin: &str, config: &str) -> (ExitStatus, String, String, PathBuf) {
    let dir = TempDir::new("check");
    let path = dir.write("tern.conf", config);
    let out = Command::new(bin)
        .arg("check")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} check: {e}"));
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

// ---------------------------------------------------------------------------------
// HTTP

/// `GET path` on 127.0.0.1:`port`: (status, body as text). Panics with the reason if
/// the request fails (connection refused, timeout, malformed answer).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    match try_http_get(port, path) {
        Ok((status, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
        Err(e) => panic!("GET http://127.0.0.1:{port}{path} failed: {e}"),
    }
}

/// One HTTP/1.1 GET with `Connection: close`, 5 s timeouts; handles `Content-Length`,
/// chunked and read-to-close bodies. The path is sent exactly as given (no
/// normalisation of `..`), which is what the path tests need.
pub fn try_http_get(port: u16, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: tern-tests\r\n\
         Connection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a whole HTTP/1.1 response: (status, decoded body).
pub fn parse_response(raw: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no end of headers in {} bytes", raw.len())))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("headers not UTF-8"))?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
            );
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(bad(format!("body cut short: {} of {n} bytes", body.len())));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line without CRLF"))?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| bad("chunk size not UTF-8"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let n =
            usize::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size {hex:?}")))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if b.len() < n + 2 {
            return Err(bad("chunk cut short"));
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

// ---------------------------------------------------------------------------------
// Child processes with a deadline

/// A child process with its stdout piped to the caller, its stderr collected by a
/// thread, and a watchdog that kills it after a deadline (so a stalled stream fails
/// the test instead of hanging it). Killed on drop.
pub struct Proc {
    what: String,
    child: Arc<Mutex<Child>>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    done: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    timeout: Duration,
}

impl Proc {
    /// Spawns `cmd` (stdin null, stdout and stderr piped), to be killed after `timeout`.
    pub fn spawn(cmd: &mut Command, timeout: Duration) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let stdout = child.stdout.take();
        let mut err_pipe = child.stderr.take().expect("stderr was piped");
        let stderr = spawn_thread(move || {
            let mut v = Vec::new();
            let _ = err_pipe.read_to_end(&mut v);
            v
        });
        let child = Arc::new(Mutex::new(child));
        let done = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        {
            let (child, done, timed_out) = (child.clone(), done.clone(), timed_out.clone());
            let deadline = now() + timeout;
            spawn_thread(move || {
                while !done.load(Ordering::Relaxed) {
                    if now() >= deadline {
                        timed_out.store(true, Ordering::Relaxed);
                        if let Ok(mut c) = child.lock() {
                            let _ = c.kill();
                        }
                        return;
                    }
                    if let Ok(mut c) = child.lock() {
                        if let Ok(Some(_)) = c.try_wait() {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        Proc {
            what,
            child,
            stdout,
            stderr: Some(stderr),
            done,
            timed_out,
            timeout,
        }
    }

    /// The child's stdout.
    pub fn stdout(&mut self) -> &mut ChildStdout {
        self.stdout.as_mut().expect("stdout was piped")
    }

    /// Reads stdout to its end.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        if let Err(e) = self.stdout().read_to_end(&mut v) {
            panic!("reading the stdout of {} failed: {e}", self.what);
        }
        v
    }

    /// Kills the child (if still running), waits for it, and returns its exit status
    /// and stderr. Panics if the watchdog had to kill it.
    pub fn finish(&mut self) -> (ExitStatus, String) {
        self.stdout = None;
        // Poll rather than wait() under the lock, so the watchdog can still kill it.
        let status = loop {
            {
                let mut c = self.child.lock().expect("child mutex poisoned");
                if let Some(s) = c.try_wait().expect("try_wait on a child process") {
                    break s;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.done.store(true, Ordering::Relaxed);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if self.timed_out.load(Ordering::Relaxed) {
            panic!(
                "{} was still running after {:?} and was killed; stderr:\n{stderr}",
                self.what, self.timeout
            );
        }
        (status, stderr)
    }

    /// Kills the child now, then [`Proc::finish`].
    pub fn kill(&mut self) -> (ExitStatus, String) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
        }
        self.finish()
    }

    /// The command line, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` to completion within `timeout`: (stdout, stderr); panics with the
/// command line and stderr if it fails or times out.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> (Vec<u8>, String) {
    let mut p = Proc::spawn(cmd, timeout);
    let out = p.read_all();
    let (status, stderr) = p.finish();
    if !status.success() {
        panic!("{} failed ({status}); stderr:\n{stderr}", p.what());
    }
    (out, stderr)
}

// ---------------------------------------------------------------------------------
// ffmpeg, frames and barcodes

/// Decodes the first `n` video frames of `url` with `ffmpeg -xerror` into gray luma
/// planes of [`WIDTH`]×[`HEIGHT`]. Every decoded frame comes out once
/// (`-fps_mode passthrough`: no duplicates or drops to a constant rate). Panics with
/// ffmpeg's stderr if it fails, and if fewer than `n` frames came out.
pub fn decode_frames(url: &str, n: usize) -> Vec<Vec<u8>> {
    let frames = n.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-xerror", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
        .args(["-an", "-frames:v", &frames, "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
    let (out, stderr) = run_ok(&mut cmd, Duration::from_secs(30));
    assert!(
        out.len() == n * FRAME_BYTES,
        "ffmpeg gave {} bytes from {url}, expected {n} frames of {WIDTH}x{HEIGHT} gray \
         ({} bytes); stderr:\n{stderr}",
        out.len(),
        n * FRAME_BYTES
    );
    out.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// Decodes every video frame of a finite `url` (an archive playlist or an archive
/// `.ts`) with `ffmpeg -xerror` into gray luma planes of [`WIDTH`]×[`HEIGHT`], each
/// decoded frame once (`-fps_mode passthrough`). Panics with ffmpeg's stderr if it
/// fails, does not end within `timeout`, or gives no frame at all.
pub fn decode_all_frames(url: &str, timeout: Duration) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-xerror", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
        .args(["-an", "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
    let (out, stderr) = run_ok(&mut cmd, timeout);
    assert!(
        !out.is_empty() && out.len() % FRAME_BYTES == 0,
        "ffmpeg gave {} bytes from {url}, expected whole frames of {WIDTH}x{HEIGHT} gray \
         ({FRAME_BYTES} bytes each); stderr:\n{stderr}",
        out.len()
    );
    out.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// The full capture UTC ms of a barcode, which carries only its low 32 bits: the
/// value with those low bits nearest to `near_ms` (any UTC ms within ~24 days).
pub fn capture_utc_ms(low32: u32, near_ms: u64) -> u64 {
    let delta = i64::from(low32.wrapping_sub(near_ms as u32) as i32);
    near_ms.saturating_add_signed(delta)
}

/// The barcode of a decoded [`WIDTH`]×[`HEIGHT`] luma plane: (frame index, capture
/// UTC ms low 32 bits).
pub fn read_barcode(luma: &[u8]) -> (u64, u32) {
    let v = barcode::read(luma, WIDTH, HEIGHT).unwrap_or_else(|| {
        panic!(
            "no barcode in a {} byte plane (expected {WIDTH}x{HEIGHT})",
            luma.len()
        )
    });
    barcode::split(v)
}

/// Asserts the frames' barcode indices go up by exactly one; returns them.
pub fn assert_consecutive(what: &str, frames: &[Vec<u8>]) -> Vec<u64> {
    let idx: Vec<u64> = frames.iter().map(|f| read_barcode(f).0).collect();
    for (i, w) in idx.windows(2).enumerate() {
        assert!(
            w[1] == w[0] + 1,
            "{what}: frame {} has barcode index {} after {} (expected {}); all indices: {idx:?}",
            i + 1,
            w[1],
            w[0],
            w[0] + 1
        );
    }
    idx
}

/// Glass-to-glass latency figures of one probe.
pub struct Latency {
    pub median_ms: u32,
    pub min_ms: u32,
    pub max_ms: u32,
    pub samples: Vec<u32>,
}

/// The latency probe: reads frames from `url` through a low-delay ffmpeg as they
/// arrive, skips the first `skip` (the viewer's initial GOP, older than "now"), then
/// measures `measure` frames: now minus the barcode's capture time. Asserts their
/// barcodes run on by one.
pub fn probe_latency(url: &str, skip: usize, measure: usize) -> Latency {
    let mut reader = FrameReader::start(url, Duration::from_secs(20));
    let mut samples = Vec::with_capacity(measure);
    let mut indices = Vec::with_capacity(measure);
    for i in 0..skip + measure {
        let frame = reader
            .next_frame()
            .unwrap_or_else(|e| panic!("frame {i} of {}: {e}", skip + measure));
        let now = utc_now_ms();
        let (index, capture) = read_barcode(&frame);
        if i >= skip {
            samples.push(barcode::latency_ms(capture, now));
            indices.push(index);
        }
    }
    let (_, stderr) = reader.proc.kill();
    assert_eq!(samples.len(), measure);
    for w in indices.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "indices {indices:?}; ffmpeg stderr:\n{stderr}"
        );
    }
    Latency {
        median_ms: median(&samples).expect("latencies measured"),
        min_ms: samples.iter().min().copied().unwrap_or_default(),
        max_ms: samples.iter().max().copied().unwrap_or_default(),
        samples,
    }
}

/// Reads gray frames from a running ffmpeg as they arrive (the latency probe).
pub struct FrameReader {
    pub proc: Proc,
}

impl FrameReader {
    /// Starts `ffmpeg -fflags nobuffer -flags low_delay -i URL -fps_mode passthrough
    /// -f rawvideo -pix_fmt gray pipe:1` (docs/media.md, "Real clients"), plus
    /// `-flush_packets 1` so each frame leaves ffmpeg as soon as it is decoded rather
    /// than when the next fills its output buffer; killed after `timeout`.
    pub fn start(url: &str, timeout: Duration) -> FrameReader {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-fflags", "nobuffer", "-flags", "low_delay"])
            .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
            .args(["-an", "-fps_mode", "passthrough", "-flush_packets", "1"])
            .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
        FrameReader {
            proc: Proc::spawn(&mut cmd, timeout),
        }
    }

    /// The next frame, or the reason there is none (ffmpeg ended: its stderr).
    pub fn next_frame(&mut self) -> Result<Vec<u8>, String> {
        let mut f = vec![0u8; FRAME_BYTES];
        match self.proc.stdout().read_exact(&mut f) {
            Ok(()) => Ok(f),
            Err(e) => {
                let (status, stderr) = self.proc.kill();
                Err(format!(
                    "no more frames from ffmpeg ({e}; {status}); stderr:\n{stderr}"
                ))
            }
        }
    }
}

/// The median of `v` (the lower middle for an even count); `None` if empty.
pub fn median(v: &[u32]) -> Option<u32> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(r).expect("parse"), (200, b"hello".to_vec()));
        let r = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).expect("parse"), (404, b"abcde".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\n\r\nto the end";
        assert_eq!(
            parse_response(r).expect("parse"),
            (200, b"to the end".to_vec())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
    }

    #[test]
    fn barcode_round_trip_at_test_size() {
        let mut luma = vec![100u8; FRAME_BYTES];
        barcode::draw(
            &mut luma,
            WIDTH,
            WIDTH,
            barcode::value(42, 1_700_000_123_456),
        );
        assert_eq!(
            read_barcode(&luma),
            (42, (1_700_000_123_456u64 & 0xFFFF_FFFF) as u32)
        );
    }

    #[test]
    fn capture_times_from_low_bits() {
        let t = 1_795_609_669_253u64;
        for near in [t, t - 5_000, t + 5_000, t - 86_400_000] {
            assert_eq!(capture_utc_ms(t as u32, near), t, "near {near}");
        }
        // Across the wrap of the low word.
        let t = 0x1_0000_0010u64;
        assert_eq!(capture_utc_ms(t as u32, t - 0x40), t);
        assert_eq!(capture_utc_ms((t - 0x40) as u32, t), t - 0x40);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }
}
