//! [`CrashFs`]: an in-memory filesystem for the crash test, under the real
//! [`FsStore`](super::FsStore) code (through the [`Fs`] trait). It keeps apart what the
//! process sees and what is durable, records every call that changes the disk, and
//! after any prefix of those calls produces the states a power cut could leave.
//!
//! The model, and what it takes as durable (the POSIX minimum, not what one
//! filesystem happens to do):
//! - A file's data is durable up to its last fsync/fdatasync. After a crash the
//!   unsynced part may be gone, half there, or there with zeros in place of the bytes
//!   (ext4 `data=writeback`, XFS): [`DataLoss`].
//! - A name change (create, rename, unlink, mkdir) is durable once its directory is
//!   fsynced; fsyncing the file itself does not make its name durable. A crash keeps
//!   any subset of the changes not yet made durable (POSIX promises no order; a
//!   journaling filesystem keeps a prefix, which is one of the subsets). A rename is
//!   atomic. A file whose directory's own name is lost is lost with it.
//!
//! Left out: renames across directories (`FsStore` makes none), hard links, and a
//! disk that lies about fsync.
//!
//! Owns: the model and the crash states. Must not: be used outside tests, or know
//! anything of the DVR (the test decides what a crash state must contain).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::os::{DirEntry, Fs, FsFile, Meta};

/// A call that changed the disk, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A file created (or truncated to 0 if it existed).
    Create(PathBuf),
    Write {
        path: PathBuf,
        at: u64,
        len: usize,
    },
    SetLen {
        path: PathBuf,
        len: u64,
    },
    SyncFile(PathBuf),
    SyncDir(PathBuf),
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    Remove(PathBuf),
    CreateDir(PathBuf),
}

/// What a crash does to data written but not fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLoss {
    /// All of it is lost.
    Unsynced,
    /// The first half of it made it.
    Torn,
    /// The file keeps its length, but the unsynced bytes read as zeros.
    Zeroed,
    /// All of it made it (the process died; the kernel wrote everything).
    Nothing,
}

/// Up to this many unsynced name changes, a crash state is made for every subset of
/// them; up to half as many files with unsynced data, for every combination of
/// [`DataLoss`]es.
pub const MAX_EXHAUSTIVE: usize = 8;

pub const DATA_LOSSES: [DataLoss; 4] = [
    DataLoss::Unsynced,
    DataLoss::Torn,
    DataLoss::Zeroed,
    DataLoss::Nothing,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What the process sees.
    data: Vec<u8>,
    /// What the last fsync made durable.
    synced: Vec<u8>,
}

impl Inode {
    fn after_crash(&self, loss: DataLoss) -> Vec<u8> {
        let common = self
            .data
            .iter()
            .zip(&self.synced)
            .take_while(|(a, b)| a == b)
            .count();
        let unsynced = self.data.len() - common;
        match loss {
            DataLoss::Nothing => self.data.clone(),
            DataLoss::Unsynced => self.synced.clone(),
            DataLoss::Torn if unsynced == 0 => self.synced.clone(),
            DataLoss::Torn => self.data[..common + unsynced / 2].to_vec(),
            DataLoss::Zeroed => {
                let mut d = self.data[..common].to_vec();
                d.resize(self.data.len(), 0);
                d
            }
        }
    }
}

/// Name changes in one directory not yet made durable (one call: a rename is two
/// changes that land together).
#[derive(Clone, Debug)]
struct NameChange {
    dir: PathBuf,
    changes: Vec<(PathBuf, Option<Node>)>,
}

#[derive(Clone, Debug, Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    pending: Vec<NameChange>,
    /// Bytes of file data the disk holds at most (a write past it fails with
    /// `StorageFull` and writes nothing); kept across a crash.
    capacity: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    state: State,
    log: Vec<Op>,
    /// The state before the first recorded call and after each one (when recording).
    snapshots: Option<Vec<State>>,
}

/// The crash-recording filesystem. Clones share one model.
#[derive(Clone, Debug, Default)]
pub struct CrashFs(Arc<Mutex<Model>>);

fn not_found() -> io::Error {
    io::Error::new(ErrorKind::NotFound, "No such file or directory (model)")
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl State {
    fn is_dir(&self, p: &Path) -> bool {
        p.parent().is_none() || self.live.get(p) == Some(&Node::Dir)
    }

    fn file(&self, p: &Path) -> io::Result<u64> {
        match self.live.get(p) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => Err(io::Error::new(ErrorKind::IsADirectory, "a directory")),
            None => Err(not_found()),
        }
    }

    fn change(&mut self, dir: PathBuf, changes: Vec<(PathBuf, Option<Node>)>) {
        for (p, n) in &changes {
            match n {
                Some(n) => {
                    self.live.insert(p.clone(), *n);
                }
                None => {
                    self.live.remove(p);
                }
            }
        }
        self.pending.push(NameChange { dir, changes });
    }

    fn inode(&mut self, ino: u64) -> &mut Inode {
        self.inodes.entry(ino).or_default()
    }

    /// The names after a crash: the durable ones plus the pending changes `kept`
    /// says, minus those whose directory is lost.
    fn crashed_names(&self, kept: &[bool]) -> BTreeMap<PathBuf, Node> {
        let mut names = self.durable.clone();
        let changes = self.pending.iter().zip(kept).filter(|(_, k)| **k);
        for (c, _) in changes {
            for (p, n) in &c.changes {
                match n {
                    Some(n) => {
                        names.insert(p.clone(), *n);
                    }
                    None => {
                        names.remove(p);
                    }
                }
            }
        }
        // A name whose directory did not survive is gone.
        let reachable = |p: &Path, names: &BTreeMap<PathBuf, Node>| {
            p.ancestors()
                .skip(1)
                .all(|a| a.parent().is_none() || names.get(a) == Some(&Node::Dir))
        };
        names
            .iter()
            .filter(|(p, _)| reachable(p, &names))
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    }

    /// Inodes of `names` whose data is not all durable.
    fn unsynced(&self, names: &BTreeMap<PathBuf, Node>) -> Vec<u64> {
        let mut v: Vec<u64> = names
            .values()
            .filter_map(|n| match n {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .filter(|ino| self.inodes.get(ino).is_some_and(|i| i.data != i.synced))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The disk after a crash that kept `names`, with each inode's unsynced data
    /// treated as `loss` says (`Unsynced` for an inode it does not name). Nothing is
    /// pending in the result.
    fn crashed(&self, names: BTreeMap<PathBuf, Node>, loss: &BTreeMap<u64, DataLoss>) -> State {
        let mut inodes = BTreeMap::new();
        for n in names.values() {
            if let Node::File(ino) = n {
                let i = self.inodes.get(ino).cloned().unwrap_or_default();
                let data = i.after_crash(loss.get(ino).copied().unwrap_or(DataLoss::Unsynced));
                inodes.insert(
                    *ino,
                    Inode {
                        synced: data.clone(),
                        data,
                    },
                );
            }
        }
        State {
            inodes,
            next_ino: self.next_ino,
            live: names.clone(),
            durable: names,
            pending: Vec::new(),
            capacity: self.capacity,
        }
    }

    /// Bytes of the files the process sees (an unlinked file's space is free at once).
    fn used(&self) -> u64 {
        let inos: BTreeSet<u64> = self
            .live
            .values()
            .filter_map(|n| match n {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .collect();
        inos.iter()
            .filter_map(|i| self.inodes.get(i))
            .map(|i| i.data.len() as u64)
            .sum()
    }

    /// Paths and contents (`None`: a directory) of what the process sees.
    fn view(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        self.live
            .iter()
            .map(|(p, n)| {
                let data = match n {
                    Node::File(ino) => Some(self.inodes.get(ino).map(|i| i.data.clone())),
                    Node::Dir => None,
                };
                (p.clone(), data.map(Option::unwrap_or_default))
            })
            .collect()
    }
}

impl CrashFs {
    /// A filesystem holding the directory `root` (and its parents), durably.
    pub fn new(root: &Path) -> Self {
        let fs = CrashFs::default();
        {
            let mut m = fs.lock();
            for a in root.ancestors() {
                if a.parent().is_some() {
                    m.state.live.insert(a.to_path_buf(), Node::Dir);
                    m.state.durable.insert(a.to_path_buf(), Node::Dir);
                }
            }
        }
        fs
    }

    fn from_state(state: State) -> Self {
        CrashFs(Arc::new(Mutex::new(Model {
            state,
            log: Vec::new(),
            snapshots: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A disk of `bytes` bytes (`None`: unlimited).
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().state.capacity = bytes;
    }

    /// From now on, keep the state after every call, for [`CrashFs::crash_states`].
    pub fn record(&self) {
        let mut m = self.lock();
        let s = m.state.clone();
        m.log.clear();
        m.snapshots = Some(vec![s]);
    }

    /// Calls that changed the disk so far.
    pub fn ops(&self) -> usize {
        self.lock().log.len()
    }

    pub fn log(&self) -> Vec<Op> {
        self.lock().log.clone()
    }

    /// Every distinct state a crash after the first `k` recorded calls can leave
    /// (each a new filesystem), with a line saying what made it.
    ///
    /// Exhaustive within the model: every subset of the name changes not yet made
    /// durable (up to [`MAX_EXHAUSTIVE`] of them; beyond, every prefix), times every
    /// [`DataLoss`] for each file with unsynced data (up to [`MAX_EXHAUSTIVE`] / 2
    /// files; beyond, the same loss for all).
    pub fn crash_states(&self, k: usize) -> Vec<(CrashFs, String)> {
        let m = self.lock();
        let Some(s) = m.snapshots.as_ref().and_then(|v| v.get(k)) else {
            return Vec::new();
        };
        let p = s.pending.len();
        let kept_sets: Vec<Vec<bool>> = if p <= MAX_EXHAUSTIVE {
            (0..1u32 << p)
                .map(|mask| (0..p).map(|i| mask & (1 << i) != 0).collect())
                .collect()
        } else {
            (0..=p).map(|n| (0..p).map(|i| i < n).collect()).collect()
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for kept in kept_sets {
            let names = s.crashed_names(&kept);
            let unsynced = s.unsynced(&names);
            let choices: Vec<BTreeMap<u64, DataLoss>> = if unsynced.len() <= MAX_EXHAUSTIVE / 2 {
                let mut all = vec![BTreeMap::new()];
                for ino in &unsynced {
                    all = all
                        .into_iter()
                        .flat_map(|c| {
                            DATA_LOSSES.iter().map(move |l| {
                                let mut c = c.clone();
                                c.insert(*ino, *l);
                                c
                            })
                        })
                        .collect();
                }
                all
            } else {
                DATA_LOSSES
                    .iter()
                    .map(|l| unsynced.iter().map(|i| (*i, *l)).collect())
                    .collect()
            };
            for loss in choices {
                let c = s.crashed(names.clone(), &loss);
                if seen.insert(fingerprint(&c)) {
                    let kept_n = kept.iter().filter(|k| **k).count();
                    let why = format!(
                        "{kept_n} of {p} unsynced name changes kept, unsynced data: {:?}",
                        loss.values().collect::<Vec<_>>()
                    );
                    out.push((CrashFs::from_state(c), why));
                }
            }
        }
        out
    }

    /// A hash of [`CrashFs::view`]: equal disks hash equal.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.lock().state)
    }

    /// Paths and contents (`None`: a directory) of what the process sees.
    pub fn view(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        self.lock().state.view()
    }

    /// Runs a call that changes the disk: logged and snapshotted if it succeeded.
    fn mutate<T>(&self, op: Op, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut m = self.lock();
        let r = f(&mut m.state)?;
        m.log.push(op);
        let s = m.snapshots.is_some().then(|| m.state.clone());
        if let (Some(v), Some(s)) = (m.snapshots.as_mut(), s) {
            v.push(s);
        }
        Ok(r)
    }

    fn inspect<T>(&self, f: impl FnOnce(&State) -> io::Result<T>) -> io::Result<T> {
        f(&self.lock().state)
    }
}

fn fingerprint(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.view().hash(&mut h);
    h.finish()
}

/// A file of a [`CrashFs`] open for writing.
#[derive(Debug)]
pub struct CrashFile {
    fs: CrashFs,
    ino: u64,
    path: PathBuf,
}

impl Fs for CrashFs {
    type File = CrashFile;

    fn create(&self, path: &Path) -> io::Result<CrashFile> {
        let ino = self.mutate(Op::Create(path.to_path_buf()), |s| {
            if !s.is_dir(&parent(path)) {
                return Err(not_found());
            }
            match s.live.get(path) {
                Some(Node::File(ino)) => {
                    let ino = *ino;
                    s.inode(ino).data.clear();
                    Ok(ino)
                }
                Some(Node::Dir) => Err(io::Error::new(ErrorKind::IsADirectory, "a directory")),
                None => {
                    let ino = s.next_ino;
                    s.next_ino += 1;
                    s.inodes.insert(ino, Inode::default());
                    s.change(
                        parent(path),
                        vec![(path.to_path_buf(), Some(Node::File(ino)))],
                    );
                    Ok(ino)
                }
            }
        })?;
        Ok(CrashFile {
            fs: self.clone(),
            ino,
            path: path.to_path_buf(),
        })
    }

    fn open_write(&self, path: &Path) -> io::Result<CrashFile> {
        let ino = self.inspect(|s| s.file(path))?;
        Ok(CrashFile {
            fs: self.clone(),
            ino,
            path: path.to_path_buf(),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let op = Op::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        };
        self.mutate(op, |s| {
            let ino = s.file(from)?;
            if parent(from) != parent(to) {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    "the model renames within a directory only",
                ));
            }
            if s.live.get(to) == Some(&Node::Dir) {
                return Err(io::Error::new(ErrorKind::IsADirectory, "a directory"));
            }
            s.change(
                parent(to),
                vec![
                    (from.to_path_buf(), None),
                    (to.to_path_buf(), Some(Node::File(ino))),
                ],
            );
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.mutate(Op::Remove(path.to_path_buf()), |s| {
            s.file(path)?;
            s.change(parent(path), vec![(path.to_path_buf(), None)]);
            Ok(())
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let missing: Vec<PathBuf> = self.inspect(|s| {
            let mut v: Vec<PathBuf> = path
                .ancestors()
                .take_while(|a| a.parent().is_some() && !s.is_dir(a))
                .map(Path::to_path_buf)
                .collect();
            v.reverse();
            Ok(v)
        })?;
        for d in missing {
            self.mutate(Op::CreateDir(d.clone()), |s| {
                if s.live.contains_key(&d) {
                    return Err(io::Error::new(ErrorKind::AlreadyExists, "a file"));
                }
                s.change(parent(&d), vec![(d.clone(), Some(Node::Dir))]);
                Ok(())
            })?;
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.mutate(Op::SyncDir(path.to_path_buf()), |s| {
            if !s.is_dir(path) {
                return Err(not_found());
            }
            let pending = std::mem::take(&mut s.pending);
            for c in pending {
                if c.dir == path {
                    for (p, n) in c.changes {
                        match n {
                            Some(n) => {
                                s.durable.insert(p, n);
                            }
                            None => {
                                s.durable.remove(&p);
                            }
                        }
                    }
                } else {
                    s.pending.push(c);
                }
            }
            Ok(())
        })
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.inspect(|s| {
            if s.is_dir(path) {
                return Ok(Meta {
                    is_file: false,
                    is_dir: true,
                    len: 0,
                    allocated: None,
                });
            }
            let ino = s.file(path)?;
            let len = s.inodes.get(&ino).map_or(0, |i| i.data.len() as u64);
            Ok(Meta {
                is_file: true,
                is_dir: false,
                len,
                allocated: Some(len),
            })
        })
    }

    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let mut d = self.read(path)?;
        d.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(d)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inspect(|s| {
            let ino = s.file(path)?;
            Ok(s.inodes
                .get(&ino)
                .map(|i| i.data.clone())
                .unwrap_or_default())
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inspect(|s| {
            if !s.is_dir(path) {
                return Err(not_found());
            }
            Ok(s.live
                .iter()
                .filter(|(p, _)| p.parent() == Some(path))
                .map(|(p, n)| DirEntry {
                    name: p.file_name().map(OsString::from).unwrap_or_default(),
                    path: p.clone(),
                    is_file: matches!(n, Node::File(_)),
                })
                .collect())
        })
    }
}

impl FsFile for CrashFile {
    fn size(&self) -> io::Result<u64> {
        let ino = self.ino;
        self.fs
            .inspect(|s| Ok(s.inodes.get(&ino).map_or(0, |i| i.data.len() as u64)))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let (ino, op) = (
            self.ino,
            Op::SetLen {
                path: self.path.clone(),
                len,
            },
        );
        self.fs.mutate(op, |s| {
            s.inode(ino).data.resize(len as usize, 0);
            Ok(())
        })
    }

    fn write_all_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let op = Op::Write {
            path: self.path.clone(),
            at,
            len: bytes.len(),
        };
        let ino = self.ino;
        self.fs.mutate(op, |s| {
            let at = at as usize;
            let old = s.inodes.get(&ino).map_or(0, |i| i.data.len());
            let grows = (at + bytes.len()).saturating_sub(old) as u64;
            if s.capacity.is_some_and(|c| s.used() + grows > c) {
                return Err(io::Error::new(
                    ErrorKind::StorageFull,
                    "No space left on device (model)",
                ));
            }
            let d = &mut s.inode(ino).data;
            if d.len() < at + bytes.len() {
                d.resize(at + bytes.len(), 0);
            }
            d[at..at + bytes.len()].copy_from_slice(bytes);
            Ok(())
        })
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let ino = self.ino;
        self.fs.mutate(Op::SyncFile(self.path.clone()), |s| {
            let i = s.inode(ino);
            i.synced = i.data.clone();
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn a_full_disk_refuses_writes_and_frees_unlinked_space() {
        let fs = CrashFs::new(&p("/r"));
        fs.set_capacity(Some(6));
        let mut f = fs.create(&p("/r/a")).unwrap();
        f.write_all_at(0, b"abcd").unwrap();
        let e = f.write_all_at(4, b"efg").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert_eq!(fs.read(&p("/r/a")).unwrap(), b"abcd");
        fs.remove_file(&p("/r/a")).unwrap();
        let mut g = fs.create(&p("/r/b")).unwrap();
        g.write_all_at(0, b"123456").unwrap();
    }

    #[test]
    fn unsynced_names_and_data_can_be_lost() {
        let fs = CrashFs::new(&p("/r"));
        fs.record();
        fs.create_dir_all(&p("/r/a")).unwrap();
        fs.sync_dir(&p("/r")).unwrap();
        let mut f = fs.create(&p("/r/a/x.tmp")).unwrap();
        f.write_all_at(0, b"abcd").unwrap();
        fs.rename(&p("/r/a/x.tmp"), &p("/r/a/x")).unwrap();
        // Not synced at all: every state from "nothing" to "all of it".
        let states: Vec<_> = fs
            .crash_states(fs.ops())
            .into_iter()
            .map(|(c, _)| c.view().get(&p("/r/a/x")).cloned())
            .collect();
        assert!(states.contains(&None), "{states:?}");
        assert!(states.contains(&Some(Some(Vec::new()))), "{states:?}");
        assert!(states.contains(&Some(Some(b"ab".to_vec()))), "{states:?}");
        assert!(states.contains(&Some(Some(vec![0; 4]))), "{states:?}");
        assert!(states.contains(&Some(Some(b"abcd".to_vec()))), "{states:?}");
        // Synced, renamed, directory synced: only one outcome.
        f.sync_all().unwrap();
        fs.sync_dir(&p("/r/a")).unwrap();
        let states: Vec<_> = fs
            .crash_states(fs.ops())
            .into_iter()
            .map(|(c, _)| c.view())
            .collect();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].get(&p("/r/a/x")), Some(&Some(b"abcd".to_vec())));
        assert_eq!(states[0].get(&p("/r/a/x.tmp")), None);
        // The directory's own name was made durable first: before that, a crash
        // loses the directory and everything in it.
        let early = fs.crash_states(1);
        assert!(early
            .iter()
            .any(|(c, _)| !c.view().contains_key(&p("/r/a"))));
    }
}
