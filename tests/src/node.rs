//! A `tern run` child process on a free loopback port, and `tern check`.

use crate::{http_get, poll_until, try_http_get, TempDir, NODE_READY_TIMEOUT};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

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

    /// The node's process id (for its memory figures in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
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
            // 401: the node runs with `view_auth`; it is up all the same.
            match try_http_get(port, "/streamer/api/v3/streams") {
                Ok((200 | 401, _)) => Some(Ok(())),
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

    /// The API entry of stream `name` (`Null` when the node has none or answers no
    /// JSON).
    pub fn stream(&self, name: &str) -> serde_json::Value {
        let (_, body) = self.get(&format!("/streamer/api/v3/streams/{name}"));
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// `name`'s API entry once it is alive; after `timeout`, a panic with the log.
    pub fn wait_alive(&self, name: &str, timeout: Duration) -> serde_json::Value {
        poll_until(timeout, || {
            let v = self.stream(name);
            (v["stats"]["alive"] == true).then_some(v)
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not alive within {timeout:?}: {}\n---- log ----\n{}",
                self.stream(name),
                self.log()
            )
        })
    }

    /// A node of binary `bin` pulling every stream of `origin` over M4S
    /// (`source m4s://… { static; }`) with cluster key `key`.
    pub fn edge_of(bin: &str, origin: &Node, key: &str) -> Node {
        Node::start(
            bin,
            &format!(
                "cluster_key {key};\nsource m4s://127.0.0.1:{} {{ static; }}\n",
                origin.port()
            ),
        )
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The node's temp directory (config and log live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the live media playlist (`mono.m3u8`) of `name` lists at least `min` segments and
    /// returns it; panics after `timeout` with the last answer.
    pub fn wait_playlist(&self, name: &str, min: usize, timeout: Duration) -> String {
        let path = format!("/{name}/mono.m3u8");
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
