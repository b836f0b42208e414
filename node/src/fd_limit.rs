//! The process's file-descriptor limit: raised at start from the soft limit to the
//! hard limit (so a node under load runs out of descriptors as late as the system
//! allows), and read to size the HTTP connection limit (`tern_core::limits`).
//!
//! Owns: the two `rlimit` calls. Must not: decide limits (that is
//! `tern_core::limits::effective_max_connections`).

/// The soft and hard descriptor limits before and after raising.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. `None` where the platform
/// has no such limit or it cannot be read.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise() -> Option<FdLimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    let before = r.rlim_cur as u64;
    let hard = r.rlim_max as u64;
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return Some(FdLimit {
                before,
                now: hard,
                hard,
            });
        }
    }
    Some(FdLimit {
        before,
        now: before,
        hard,
    })
}

#[cfg(not(unix))]
pub fn raise() -> Option<FdLimit> {
    None
}

/// The soft descriptor limit now, without changing it.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn current() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    Some(r.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn current() -> Option<u64> {
    None
}
