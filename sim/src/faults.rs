//! Fault schedules: what goes wrong when — partitions (both ways and one way), held
//! links, crashes with a later restart, instant restarts (each a power cut of the
//! host's disks too: unsynced writes are lost), and DVR disk faults (a full disk for a
//! while, a burst of I/O errors) — either written by a scenario or derived from a seed
//! ([`Schedule::random`]), printable (the sweep prints it before running), and the
//! windows the oracles exempt or check recovery after.
//!
//! Disk faults have no window for the live oracles ([`Schedule::windows`] leaves them
//! out): a DVR in trouble must not disturb live delivery at all. The archive oracles
//! ([`crate::archive`]) see them through [`Schedule::disk_windows`].
//!
//! Owns: the schedule, its rendering and the recovery bound of each kind of fault.
//! Must not: touch the simulation itself (the [`crate::Cluster`] applies a schedule),
//! or draw randomness from anything but the seed it is given.

use std::fmt;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tern_core::cluster::receiver::DEAD_PEER_TIMEOUT;
pub use tern_node::dvr::Fault as DiskFault;

/// After a held link is released, the edge plays again within this (issue bound).
pub const HOLD_RECOVERY: Duration = Duration::from_secs(2);
/// After a partition is repaired, the edge plays again within the dead-peer timeout
/// plus this (issue bound).
pub const PARTITION_RECOVERY_EXTRA: Duration = Duration::from_secs(1);

/// One kind of fault. Host names are turmoil host names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Segments both ways between `a` and `b` are dropped (turmoil `partition`), then
    /// the link is repaired.
    Partition { a: String, b: String },
    /// Segments from `from` to `to` are dropped, the other way still flows.
    PartitionOneway { from: String, to: String },
    /// Segments between `a` and `b` are held, then all delivered at the release.
    Hold { a: String, b: String },
    /// The host's software crashes (its sockets close) and starts again at the end.
    Crash { host: String },
    /// The host's software is restarted at once (`sim.bounce`).
    Bounce { host: String },
    /// The in-memory disk of DVR path `path` on `host` holds at most `capacity` bytes
    /// (files already on it count), then is unlimited again at the end. Below what is
    /// used, Tern must delete its own oldest segments to keep recording; below one
    /// segment, pause and resume by itself.
    DiskFull {
        host: String,
        path: String,
        capacity: u64,
    },
    /// After `skip` more operations of kind `kind` on that disk succeed, the next `n`
    /// fail with `EIO` (a write lands half its bytes first). Instantaneous: the
    /// failures hit whatever the DVR does next (`skip` reaches past a segment's own
    /// write to the journal record that follows it).
    DiskErrors {
        host: String,
        path: String,
        kind: DiskFault,
        skip: u32,
        n: u32,
    },
}

impl Fault {
    /// How soon after the end of the fault the observed stream must play again
    /// (a frame captured after the end reaches the observer). Partitions, crashes and
    /// restarts all leave a connection to notice dead or closed and to reopen, which
    /// the dead-peer timeout plus a second covers; a hold only delays segments.
    pub fn recovery_bound(&self) -> Duration {
        match self {
            Fault::Hold { .. } => HOLD_RECOVERY,
            Fault::Partition { .. }
            | Fault::PartitionOneway { .. }
            | Fault::Crash { .. }
            | Fault::Bounce { .. } => DEAD_PEER_TIMEOUT + PARTITION_RECOVERY_EXTRA,
            // Live delivery must not notice; the archive oracles have their own bounds.
            Fault::DiskFull { .. } | Fault::DiskErrors { .. } => Duration::ZERO,
        }
    }

    /// A fault of a DVR disk (no window for the live oracles).
    pub fn is_disk(&self) -> bool {
        matches!(self, Fault::DiskFull { .. } | Fault::DiskErrors { .. })
    }

    /// The host whose software or disk the fault hits, if it hits one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Fault::Crash { host }
            | Fault::Bounce { host }
            | Fault::DiskFull { host, .. }
            | Fault::DiskErrors { host, .. } => Some(host),
            _ => None,
        }
    }

    /// Short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::PartitionOneway { .. } => "one-way partition",
            Fault::Hold { .. } => "hold",
            Fault::Crash { .. } => "crash",
            Fault::Bounce { .. } => "restart",
            Fault::DiskFull { .. } => "disk full",
            Fault::DiskErrors { .. } => "disk I/O errors",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { a, b } => write!(f, "partition {a} <-> {b}"),
            Fault::PartitionOneway { from, to } => write!(f, "partition {from} -> {to}"),
            Fault::Hold { a, b } => write!(f, "hold {a} <-> {b}"),
            Fault::Crash { host } => write!(f, "crash {host}, restart at the end"),
            Fault::Bounce { host } => write!(f, "restart {host}"),
            Fault::DiskFull {
                host,
                path,
                capacity,
            } => write!(f, "disk {host}:{path} full at {capacity} bytes"),
            Fault::DiskErrors {
                host,
                path,
                kind,
                skip,
                n,
            } => write!(f, "disk {host}:{path}: {n} {kind:?} fail after {skip} more"),
        }
    }
}

/// A fault at a simulated time, for a simulated duration (zero for a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub at: Duration,
    pub duration: Duration,
    pub fault: Fault,
}

impl Scheduled {
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }
}

/// What the cluster does to the simulation at one instant of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Partition(String, String),
    Repair(String, String),
    PartitionOneway(String, String),
    RepairOneway(String, String),
    Hold(String, String),
    Release(String, String),
    Crash(String),
    Bounce(String),
    /// Capacity of a host's DVR disk (host, path, bytes; `None`: unlimited).
    DiskCapacity(String, String, Option<u64>),
    /// On a host's DVR disk, after `skip` more operations of a kind, the next `n`
    /// fail: (host, path, kind, skip, n).
    DiskErrors(String, String, DiskFault, u32, u32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Partition(a, b) => write!(f, "partition {a} <-> {b}"),
            Action::Repair(a, b) => write!(f, "repair {a} <-> {b}"),
            Action::PartitionOneway(a, b) => write!(f, "partition {a} -> {b}"),
            Action::RepairOneway(a, b) => write!(f, "repair {a} -> {b}"),
            Action::Hold(a, b) => write!(f, "hold {a} <-> {b}"),
            Action::Release(a, b) => write!(f, "release {a} <-> {b}"),
            Action::Crash(h) => write!(f, "crash {h}"),
            Action::Bounce(h) => write!(f, "start {h} again"),
            Action::DiskCapacity(h, p, Some(c)) => write!(f, "disk {h}:{p} capacity {c} bytes"),
            Action::DiskCapacity(h, p, None) => write!(f, "disk {h}:{p} capacity unlimited"),
            Action::DiskErrors(h, p, k, skip, n) => {
                write!(f, "disk {h}:{p} fails {n} {k:?} after {skip} more")
            }
        }
    }
}

/// The window of one fault as the oracles see it, in simulated milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub what: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub recovery: Duration,
}

impl Window {
    /// The end of the fault plus its recovery bound.
    pub fn settled_ms(&self) -> u64 {
        self.end_ms + self.recovery.as_millis() as u64
    }
}

/// A list of faults. Faults may overlap in a hand-written schedule; [`Schedule::random`]
/// never overlaps them (turmoil's `repair` would also end a `hold` on the same link).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The seed a random schedule came from.
    pub seed: Option<u64>,
    pub faults: Vec<Scheduled>,
}

/// What a random schedule may break.
#[derive(Clone, Debug)]
pub struct Targets {
    /// Links to partition or hold (both directions are candidates for one-way cuts).
    pub links: Vec<(String, String)>,
    /// Hosts to crash or restart.
    pub hosts: Vec<String>,
    /// DVR disks (host, path) to fill or fail; empty: no disk faults (and the same
    /// schedule as before disk faults existed, draw for draw).
    pub disks: Vec<(String, String)>,
    /// Bytes of one recorded segment, about: disk-full capacities are drawn in
    /// segments (below one: recording must pause; a few: it must delete its oldest).
    pub segment_bytes: u64,
}

impl Schedule {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fault starting `at` and lasting `duration`.
    pub fn add(&mut self, at: Duration, duration: Duration, fault: Fault) -> &mut Self {
        self.faults.push(Scheduled {
            at,
            duration,
            fault,
        });
        self
    }

    /// A random schedule derived from `seed` only: faults one after another between
    /// `from` and `until` (the last one ends by `until`), never overlapping, each
    /// lasting 0.1–4 s (crashes 0.1–3 s, restarts and I/O error bursts no time), with
    /// 1–5 s of calm between two. With disks in `targets`, two faults in five are disk
    /// faults: a full disk (0.5–4 s; capacity below one segment one time in three,
    /// else 2–6 segments) or 1–3 failing operations of one kind after 0–2 more that succeed.
    pub fn random(seed: u64, targets: &Targets, from: Duration, until: Duration) -> Self {
        Self::random_up_to(seed, targets, from, until, Duration::from_secs(4))
    }

    /// As [`Schedule::random`], faults lasting up to `longest` (crashes up to 3/4 of it).
    pub fn random_up_to(
        seed: u64,
        targets: &Targets,
        from: Duration,
        until: Duration,
        longest: Duration,
    ) -> Self {
        let longest = (longest.as_millis() as u64).max(200);
        // A constant mixed in so the schedule's stream differs from other users of
        // the same seed.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa17_5c4e_d01e_0000);
        let mut ms = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
        let mut faults = Vec::new();
        let mut t = from.as_millis() as u64 + ms(0, 1000);
        let until = until.as_millis() as u64;
        loop {
            // Drawn only when there are disks, so that schedules without them are
            // those of before.
            let disk_roll = (!targets.disks.is_empty()).then(|| ms(0, 99));
            if let Some(r) = disk_roll.filter(|r| *r < 40) {
                let (host, path) =
                    targets.disks[(ms(0, 1_000) as usize) % targets.disks.len()].clone();
                let seg = targets.segment_bytes.max(1);
                let (fault, dur) = if r < 20 {
                    let capacity = if ms(0, 2) == 0 {
                        ms(0, seg.saturating_sub(1))
                    } else {
                        ms(2 * seg, 6 * seg)
                    };
                    (
                        Fault::DiskFull {
                            host,
                            path,
                            capacity,
                        },
                        ms(500, longest.max(500)),
                    )
                } else {
                    let kind = match ms(0, 3) {
                        0 => DiskFault::Write,
                        1 => DiskFault::Fsync,
                        2 => DiskFault::FsyncDir,
                        _ => DiskFault::Rename,
                    };
                    let skip = ms(0, 2) as u32;
                    let n = ms(1, 3) as u32;
                    (
                        Fault::DiskErrors {
                            host,
                            path,
                            kind,
                            skip,
                            n,
                        },
                        0,
                    )
                };
                if t + dur > until {
                    break;
                }
                faults.push(Scheduled {
                    at: Duration::from_millis(t),
                    duration: Duration::from_millis(dur),
                    fault,
                });
                t += dur + ms(1000, 5000);
                continue;
            }
            let roll = ms(0, 99);
            let link = &targets.links[(ms(0, 1_000) as usize) % targets.links.len().max(1)];
            let host = &targets.hosts[(ms(0, 1_000) as usize) % targets.hosts.len().max(1)];
            let (fault, dur) = match roll {
                0..=29 => (
                    Fault::Partition {
                        a: link.0.clone(),
                        b: link.1.clone(),
                    },
                    ms(100, longest),
                ),
                30..=39 => {
                    let (from, to) = if ms(0, 1) == 0 {
                        (link.0.clone(), link.1.clone())
                    } else {
                        (link.1.clone(), link.0.clone())
                    };
                    (Fault::PartitionOneway { from, to }, ms(100, longest))
                }
                40..=64 => (
                    Fault::Hold {
                        a: link.0.clone(),
                        b: link.1.clone(),
                    },
                    ms(100, longest),
                ),
                65..=84 => (
                    Fault::Crash { host: host.clone() },
                    ms(100, longest * 3 / 4),
                ),
                _ => (Fault::Bounce { host: host.clone() }, 0),
            };
            if t + dur > until {
                break;
            }
            faults.push(Scheduled {
                at: Duration::from_millis(t),
                duration: Duration::from_millis(dur),
                fault,
            });
            t += dur + ms(1000, 5000);
        }
        Schedule {
            seed: Some(seed),
            faults,
        }
    }

    /// The schedule with every fault's start and end moved up to the next multiple
    /// of `tick`: when a simulation stepping by `tick` applies them
    /// ([`crate::Cluster::run_schedule`] applies an action after the first step that
    /// reaches its time), so that the windows the oracles excuse are exactly those of
    /// the faults. A zero-length fault stays zero-length.
    pub fn on_ticks(mut self, tick: Duration) -> Self {
        let t = tick.as_micros().max(1);
        let up = |d: Duration| Duration::from_micros((d.as_micros().div_ceil(t) * t) as u64);
        for f in &mut self.faults {
            let (at, end) = (up(f.at), up(f.end()));
            f.at = at;
            f.duration = end - at;
        }
        self
    }

    /// The start and end actions of every fault, in time order (a start before an end
    /// at the same instant only if it was listed first).
    pub fn actions(&self) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        for s in &self.faults {
            let (start, end) = match &s.fault {
                Fault::Partition { a, b } => (
                    Action::Partition(a.clone(), b.clone()),
                    Some(Action::Repair(a.clone(), b.clone())),
                ),
                Fault::PartitionOneway { from, to } => (
                    Action::PartitionOneway(from.clone(), to.clone()),
                    Some(Action::RepairOneway(from.clone(), to.clone())),
                ),
                Fault::Hold { a, b } => (
                    Action::Hold(a.clone(), b.clone()),
                    Some(Action::Release(a.clone(), b.clone())),
                ),
                Fault::Crash { host } => (
                    Action::Crash(host.clone()),
                    Some(Action::Bounce(host.clone())),
                ),
                Fault::Bounce { host } => (Action::Bounce(host.clone()), None),
                Fault::DiskFull {
                    host,
                    path,
                    capacity,
                } => (
                    Action::DiskCapacity(host.clone(), path.clone(), Some(*capacity)),
                    Some(Action::DiskCapacity(host.clone(), path.clone(), None)),
                ),
                Fault::DiskErrors {
                    host,
                    path,
                    kind,
                    skip,
                    n,
                } => (
                    Action::DiskErrors(host.clone(), path.clone(), *kind, *skip, *n),
                    None,
                ),
            };
            out.push((s.at, start));
            if let Some(end) = end {
                out.push((s.end(), end));
            }
        }
        // Stable: equal times keep their listed order.
        out.sort_by_key(|(t, _)| *t);
        out
    }

    /// The live oracles' view of the faults (disk faults left out: live delivery must
    /// not notice them).
    pub fn windows(&self) -> Vec<Window> {
        self.faults
            .iter()
            .filter(|s| !s.fault.is_disk())
            .map(Self::window)
            .collect()
    }

    /// Every fault's window, disk faults included (for the archive oracles).
    pub fn all_windows(&self) -> Vec<Window> {
        self.faults.iter().map(Self::window).collect()
    }

    /// The faults that hit `host`'s software or disks (crashes, restarts, disk
    /// faults), as windows.
    pub fn host_windows(&self, host: &str) -> Vec<Window> {
        self.faults
            .iter()
            .filter(|s| s.fault.host() == Some(host))
            .map(Self::window)
            .collect()
    }

    /// Whether any fault hits a disk.
    pub fn has_disk_faults(&self) -> bool {
        self.faults.iter().any(|s| s.fault.is_disk())
    }

    fn window(s: &Scheduled) -> Window {
        Window {
            what: format!(
                "{} (at {} for {})",
                s.fault,
                fmt_ms(s.at.as_millis() as u64),
                fmt_ms(s.duration.as_millis() as u64)
            ),
            start_ms: s.at.as_millis() as u64,
            end_ms: s.end().as_millis() as u64,
            recovery: s.fault.recovery_bound(),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seed {
            Some(seed) => writeln!(f, "fault schedule of seed {seed}:")?,
            None => writeln!(f, "fault schedule:")?,
        }
        if self.faults.is_empty() {
            writeln!(f, "  (no faults)")?;
        }
        for s in &self.faults {
            writeln!(
                f,
                "  {:>9} +{:>8}  {}",
                fmt_ms(s.at.as_millis() as u64),
                fmt_ms(s.duration.as_millis() as u64),
                s.fault
            )?;
        }
        Ok(())
    }
}

/// `12.345s`.
pub fn fmt_ms(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            links: vec![("origin".into(), "edge".into())],
            hosts: vec!["origin".into(), "edge".into()],
            disks: Vec::new(),
            segment_bytes: 0,
        }
    }

    #[test]
    fn on_ticks_rounds_starts_and_ends_up_to_the_tick() {
        let f = |at: u64, duration: u64| Scheduled {
            at: Duration::from_millis(at),
            duration: Duration::from_millis(duration),
            fault: Fault::Bounce {
                host: "origin".into(),
            },
        };
        let s = Schedule {
            seed: None,
            faults: vec![f(2001, 0), f(3000, 101), f(4999, 2)],
        }
        .on_ticks(Duration::from_millis(2));
        let got: Vec<(u128, u128)> = s
            .faults
            .iter()
            .map(|f| (f.at.as_millis(), f.end().as_millis()))
            .collect();
        assert_eq!(got, vec![(2002, 2002), (3000, 3102), (5000, 5002)]);
        for seed in 0..200 {
            let r = Schedule::random(
                seed,
                &targets(),
                Duration::from_secs(2),
                Duration::from_secs(16),
            );
            let t = r.clone().on_ticks(Duration::from_millis(2));
            assert_eq!(r.faults.len(), t.faults.len());
            for (a, b) in r.faults.iter().zip(&t.faults) {
                assert!(b.at >= a.at && b.at - a.at < Duration::from_millis(2));
                assert!(b.end() >= a.end() && b.end() - a.end() < Duration::from_millis(2));
                assert!(b.end() <= Duration::from_secs(16), "{b:?}");
            }
            for w in t.faults.windows(2) {
                assert!(w[0].end() < w[1].at, "faults overlap: {w:?}");
            }
        }
    }

    #[test]
    fn random_schedule_is_a_function_of_the_seed() {
        let a = Schedule::random(
            5,
            &targets(),
            Duration::from_secs(2),
            Duration::from_secs(16),
        );
        let b = Schedule::random(
            5,
            &targets(),
            Duration::from_secs(2),
            Duration::from_secs(16),
        );
        let c = Schedule::random(
            6,
            &targets(),
            Duration::from_secs(2),
            Duration::from_secs(16),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.faults.is_empty(), "{a}");
        for w in a.faults.windows(2) {
            assert!(w[0].end() < w[1].at, "faults overlap:\n{a}");
        }
        let last = a.faults.last().map(|s| s.end()).unwrap_or_default();
        assert!(last <= Duration::from_secs(16), "{a}");
        assert!(
            a.to_string().starts_with("fault schedule of seed 5:\n"),
            "{a}"
        );
    }

    #[test]
    fn disk_faults_only_with_disks_and_never_in_live_windows() {
        let mut with = targets();
        with.disks.push(("origin".into(), "/dvr".into()));
        with.segment_bytes = 1000;
        let (from, until) = (Duration::from_secs(2), Duration::from_secs(60));
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let plain = Schedule::random(seed, &targets(), from, until);
            assert!(!plain.has_disk_faults(), "{plain}");
            let s = Schedule::random(seed, &with, from, until);
            for f in &s.faults {
                kinds.insert(f.fault.kind());
                if let Fault::DiskFull { capacity, .. } = f.fault {
                    assert!(capacity < 1000 || (2000..=6000).contains(&capacity), "{s}");
                }
            }
            let disk = s.faults.iter().filter(|f| f.fault.is_disk()).count();
            assert_eq!(s.windows().len(), s.faults.len() - disk, "{s}");
            assert_eq!(s.all_windows().len(), s.faults.len(), "{s}");
            for w in s.faults.windows(2) {
                assert!(w[0].end() < w[1].at, "faults overlap:\n{s}");
            }
        }
        assert!(
            kinds.contains("disk full") && kinds.contains("disk I/O errors"),
            "{kinds:?}"
        );
    }

    #[test]
    fn actions_pair_each_start_with_its_end() {
        let mut s = Schedule::new();
        s.add(
            Duration::from_secs(3),
            Duration::from_secs(2),
            Fault::Partition {
                a: "origin".into(),
                b: "edge".into(),
            },
        )
        .add(
            Duration::from_secs(1),
            Duration::ZERO,
            Fault::Bounce {
                host: "edge".into(),
            },
        );
        let acts: Vec<String> = s
            .actions()
            .iter()
            .map(|(t, a)| format!("{} {a}", fmt_ms(t.as_millis() as u64)))
            .collect();
        assert_eq!(
            acts,
            vec![
                "1.000s start edge again",
                "3.000s partition origin <-> edge",
                "5.000s repair origin <-> edge",
            ]
        );
        assert_eq!(s.windows()[0].settled_ms(), 8000);
    }
}
