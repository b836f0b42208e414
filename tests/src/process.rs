//! Child processes with a deadline and their stderr collected.

use crate::{now, spawn_thread};
use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// (VmRSS, VmHWM) of `pid` in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
