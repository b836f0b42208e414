//! Gives the OS back the memory the allocator holds but no longer uses. glibc's
//! malloc keeps what is freed in its arenas (one per thread that allocated, up to
//! eight per core), so after a load (many connections, archive responses, a peer's
//! streams removed) the resident size stays near its peak for good: the soak test
//! measured +35 MiB 5 s after its load, and +3.6 MiB once `malloc_trim(0)` ran.
//!
//! Owns: the periodic `malloc_trim(0)` of the `tern` process, every
//! [`MALLOC_TRIM_INTERVAL`] (glibc on Linux only; elsewhere nothing). Must not:
//! allocate, or run in the simulation (the `tern` binary's entry point starts it).

use std::time::Duration;

/// How often freed memory is handed back to the OS.
pub const MALLOC_TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Runs until the runtime stops: waits [`MALLOC_TRIM_INTERVAL`], then trims.
pub async fn run() {
    loop {
        crate::timer::pace(MALLOC_TRIM_INTERVAL).await;
        trim();
    }
}

/// Releases free memory at the top and in the middle of every arena (glibc's
/// `malloc_trim` uses `madvise(MADV_DONTNEED)` on free pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim takes each arena's lock itself and touches only memory
    // the allocator owns and no one uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

/// Starts [`run`] on the current runtime (the `tern` binary's entry point does).
#[allow(clippy::disallowed_methods)] // driver: the process's one periodic trim task
pub fn start() {
    tokio::spawn(run());
}
