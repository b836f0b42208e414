//! [`MemStore`]: an in-memory DVR store with a page-cache model (what is durable when)
//! and injectable faults, for the simulation and tests.
//!
//! Owns: the in-memory filesystem and its fault model. Must not: decide what to record
//! or delete (that is `Dvr`), or do real I/O.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tern_core::dvr::op::{Done, Op};
use tern_core::StreamName;

use super::{
    check_segment_file, parse_segment_name, segment_name, BoxFuture, DvrStore, SegmentFile,
    StoreError, JOURNAL_FILE, TEMP_SUFFIX,
};

/// A fault a [`MemStore`] can inject into its next operations of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Writing data (segment, journal append, journal rewrite): half of the bytes
    /// land, then `EIO`.
    Write,
    /// fsync of a file: `EIO`, its data does not become durable.
    Fsync,
    /// fsync of a directory: `EIO`, its name changes do not become durable.
    FsyncDir,
    /// rename: `EIO`, nothing moves.
    Rename,
}

/// A file's data: what the process sees, and how much of it is durable. Every file
/// of the store is written append-only (or cut back, then appended to), so the
/// durable content is always a prefix.
#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced_len: usize,
}

/// An in-memory filesystem with a page cache: names and data become durable only
/// when fsynced (data: fsync of the file; a name: fsync of its directory), and
/// [`MemStore::crash`] forgets the rest, as a power cut would.
#[derive(Clone, Debug, Default)]
struct MemFs {
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// What the process sees: path → inode.
    live: BTreeMap<String, u64>,
    /// What survives a crash.
    durable: BTreeMap<String, u64>,
    /// Name changes not yet made durable: path → new inode (`None`: removed).
    pending: BTreeMap<String, Option<u64>>,
    capacity: Option<u64>,
    /// Per kind: operations to let through first, then operations to fail.
    faults: BTreeMap<Fault, (u32, u32)>,
}

fn sim_err(kind: ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("{what} (simulated)"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

impl MemFs {
    fn take_fault(&mut self, f: Fault) -> bool {
        match self.faults.get_mut(&f) {
            Some((skip, _)) if *skip > 0 => {
                *skip -= 1;
                false
            }
            Some((_, n)) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    fn used(&self) -> u64 {
        // Space of files the process can see; unlinked data is freed at once.
        let mut seen = std::collections::BTreeSet::new();
        self.live
            .values()
            .filter(|ino| seen.insert(**ino))
            .filter_map(|ino| self.inodes.get(ino))
            .map(|i| i.data.len() as u64)
            .sum()
    }

    /// Drops inodes no name refers to.
    fn gc(&mut self) {
        let referenced: std::collections::BTreeSet<u64> = self
            .live
            .values()
            .chain(self.durable.values())
            .copied()
            .collect();
        self.inodes.retain(|ino, _| referenced.contains(ino));
    }

    /// Drops `ino` if no name refers to it.
    fn gc_one(&mut self, ino: u64) {
        let used = self
            .live
            .values()
            .chain(self.durable.values())
            .any(|i| *i == ino);
        if !used {
            self.inodes.remove(&ino);
        }
    }

    fn set_name(&mut self, path: &str, ino: Option<u64>) {
        match ino {
            Some(i) => {
                self.live.insert(path.to_owned(), i);
            }
            None => {
                self.live.remove(path);
            }
        }
        self.pending.insert(path.to_owned(), ino);
    }

    /// A new empty file at `path` (replacing any file of that name).
    fn create(&mut self, path: &str) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        self.set_name(path, Some(ino));
        ino
    }

    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let Some(&ino) = self.live.get(path) else {
            return Err(sim_err(ErrorKind::NotFound, "No such file or directory"));
        };
        let (n, err) = if self.take_fault(Fault::Write) {
            (
                bytes.len() / 2,
                Some(sim_err(ErrorKind::Other, "Input/output error")),
            )
        } else {
            let free = self
                .capacity
                .map(|c| c.saturating_sub(self.used()))
                .unwrap_or(u64::MAX);
            if (bytes.len() as u64) > free {
                (
                    free as usize,
                    Some(sim_err(ErrorKind::StorageFull, "No space left on device")),
                )
            } else {
                (bytes.len(), None)
            }
        };
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.data.extend_from_slice(&bytes[..n]);
        }
        err.map_or(Ok(()), Err)
    }

    fn truncate(&mut self, path: &str, len: usize) -> io::Result<()> {
        let ino = *self
            .live
            .get(path)
            .ok_or_else(|| sim_err(ErrorKind::NotFound, "No such file or directory"))?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.data.truncate(len);
            i.synced_len = i.synced_len.min(len);
        }
        Ok(())
    }

    fn fsync(&mut self, path: &str) -> io::Result<()> {
        if self.take_fault(Fault::Fsync) {
            return Err(sim_err(ErrorKind::Other, "Input/output error"));
        }
        let ino = *self
            .live
            .get(path)
            .ok_or_else(|| sim_err(ErrorKind::NotFound, "No such file or directory"))?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.synced_len = i.data.len();
        }
        Ok(())
    }

    fn fsync_dir(&mut self, dir: &str) -> io::Result<()> {
        if self.take_fault(Fault::FsyncDir) {
            return Err(sim_err(ErrorKind::Other, "Input/output error"));
        }
        let done: Vec<String> = self
            .pending
            .keys()
            .filter(|p| parent(p) == dir)
            .cloned()
            .collect();
        for p in done {
            match self.pending.remove(&p).flatten() {
                Some(ino) => {
                    self.durable.insert(p, ino);
                }
                None => {
                    self.durable.remove(&p);
                }
            }
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        if self.take_fault(Fault::Rename) {
            return Err(sim_err(ErrorKind::Other, "Input/output error"));
        }
        let ino = *self
            .live
            .get(from)
            .ok_or_else(|| sim_err(ErrorKind::NotFound, "No such file or directory"))?;
        self.set_name(from, None);
        self.set_name(to, Some(ino));
        Ok(())
    }

    fn unlink(&mut self, path: &str) {
        if let Some(&ino) = self.live.get(path) {
            self.set_name(path, None);
            self.gc_one(ino);
        }
    }

    fn write_atomic(&mut self, dir: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = format!("{dir}/{name}{TEMP_SUFFIX}");
        let dst = format!("{dir}/{name}");
        self.create(&tmp);
        let staged = self
            .append(&tmp, bytes)
            .and_then(|_| self.fsync(&tmp))
            .and_then(|_| self.rename(&tmp, &dst));
        if let Err(e) = staged {
            self.unlink(&tmp);
            return Err(e);
        }
        if let Err(e) = self.fsync_dir(dir) {
            self.unlink(&dst);
            return Err(e);
        }
        Ok(())
    }

    fn read(&self, path: &str) -> Option<Bytes> {
        let ino = self.live.get(path)?;
        self.inodes
            .get(ino)
            .map(|i| Bytes::copy_from_slice(&i.data))
    }
}

/// An in-memory DVR root for the simulation and tests, with injectable faults: a
/// capacity (a full disk), I/O errors on the next writes / fsyncs / renames, and
/// [`MemStore::crash`], which drops everything not yet fsynced. Operations complete
/// at once unless [`MemStore::set_latency`] is set.
#[derive(Debug)]
pub struct MemStore {
    label: String,
    fs: Mutex<MemFs>,
    latency: Mutex<Duration>,
}

impl MemStore {
    /// A store of unlimited capacity; `label` names it in messages (the DVR path).
    pub fn new(label: impl Into<String>) -> Self {
        MemStore {
            label: label.into(),
            fs: Mutex::new(MemFs::default()),
            latency: Mutex::new(Duration::ZERO),
        }
    }

    /// A store that holds at most `bytes` bytes of files.
    pub fn with_capacity(label: impl Into<String>, bytes: u64) -> Self {
        let s = MemStore::new(label);
        s.set_capacity(Some(bytes));
        s
    }

    fn fs(&self) -> MutexGuard<'_, MemFs> {
        self.fs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the capacity (`None`: unlimited). Lowering it below what is used
    /// deletes nothing; writes fail until there is room.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.fs().capacity = bytes;
    }

    /// The next `n` operations of kind `fault` fail (replacing any pending fault of
    /// that kind).
    pub fn fail_next(&self, fault: Fault, n: u32) {
        self.fail_later(fault, 0, n);
    }

    /// After `skip` more operations of kind `fault` succeed, the `n` next fail
    /// (replacing any pending fault of that kind).
    pub fn fail_later(&self, fault: Fault, skip: u32, n: u32) {
        self.fs().faults.insert(fault, (skip, n));
    }

    /// Clears pending faults.
    pub fn clear_faults(&self) {
        self.fs().faults.clear();
    }

    /// Each mutating operation first waits this long (simulated time under turmoil),
    /// so that a host crash can fall in the middle of a write.
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    #[allow(clippy::disallowed_methods)] // driver: MemStore's simulated slow disk
    async fn delay(&self) {
        let d = *self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// A power cut: names not made durable by a directory fsync and data not
    /// fsynced are lost.
    pub fn crash(&self) {
        let mut fs = self.fs();
        fs.live = fs.durable.clone();
        fs.pending.clear();
        for i in fs.inodes.values_mut() {
            let n = i.synced_len;
            i.data.truncate(n);
        }
        fs.gc();
    }

    /// Bytes of the files the process sees.
    pub fn used_bytes(&self) -> u64 {
        self.fs().used()
    }

    /// Every visible file with its size, in path order (for tests and oracles).
    pub fn files(&self) -> Vec<(String, u64)> {
        let fs = self.fs();
        fs.live
            .iter()
            .map(|(p, ino)| {
                let len = fs.inodes.get(ino).map_or(0, |i| i.data.len() as u64);
                (p.clone(), len)
            })
            .collect()
    }

    /// How many bytes of `path` would survive a crash now: `None` if its name is
    /// not durable, else the synced length of the file it names.
    pub fn durable_len(&self, path: &str) -> Option<u64> {
        let fs = self.fs();
        let ino = fs.durable.get(path)?;
        Some(fs.inodes.get(ino).map_or(0, |i| i.synced_len as u64))
    }

    /// A visible file's content.
    pub fn read_file(&self, path: &str) -> Option<Bytes> {
        self.fs().read(path)
    }

    /// Puts a file durably, as if written by someone else (tests: strays, garbage).
    /// Ignores the capacity and pending faults.
    pub fn put_file(&self, path: &str, bytes: &[u8]) {
        let mut fs = self.fs();
        let ino = fs.create(path);
        if let Some(i) = fs.inodes.get_mut(&ino) {
            i.data = bytes.to_vec();
            i.synced_len = bytes.len();
        }
        fs.pending.remove(path);
        fs.durable.insert(path.to_owned(), ino);
    }

    /// Cuts a file to `len` bytes, durably (tests: a torn journal).
    pub fn truncate_file(&self, path: &str, len: usize) {
        let mut fs = self.fs();
        let _ = fs.truncate(path, len);
    }

    fn dir(stream: &StreamName) -> String {
        stream.as_str().to_owned()
    }

    fn err(&self, op: &'static str, path: &str, e: io::Error) -> StoreError {
        StoreError::new(op, format!("{}/{path}", self.label), e)
    }
}

/// The store's operations, synchronous (the trait's futures wait for the latency,
/// then run these). The pure simulator calls them directly through
/// [`MemStore::run_op`].
impl MemStore {
    fn write_segment_now(
        &self,
        stream: &StreamName,
        utc_start_ms: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let dir = Self::dir(stream);
        let name = segment_name(utc_start_ms);
        self.fs()
            .write_atomic(&dir, &name, bytes)
            .map_err(|e| self.err("write segment", &format!("{dir}/{name}"), e))
    }

    fn read_segment_now(
        &self,
        stream: &StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> Result<Bytes, StoreError> {
        let path = format!("{}/{}", Self::dir(stream), segment_name(utc_start_ms));
        let b = self.fs().read(&path).ok_or_else(|| {
            self.err(
                "read",
                &path,
                sim_err(ErrorKind::NotFound, "No such file or directory"),
            )
        })?;
        check_segment_file(b.len() as u64, expected_len, None)
            .map_err(|e| self.err("read", &path, e))?;
        Ok(b)
    }

    fn delete_segment_now(&self, stream: &StreamName, utc_start_ms: u64) {
        let path = format!("{}/{}", Self::dir(stream), segment_name(utc_start_ms));
        self.fs().unlink(&path);
    }

    fn list_segments_now(&self, stream: &StreamName) -> Vec<SegmentFile> {
        let dir = Self::dir(stream);
        let prefix = format!("{dir}/");
        let mut fs = self.fs();
        let mut out = Vec::new();
        let mut temps = Vec::new();
        for (path, ino) in fs.live.range(prefix.clone()..) {
            let Some(name) = path.strip_prefix(&prefix) else {
                break;
            };
            if name.contains('/') {
                continue;
            }
            if name.ends_with(TEMP_SUFFIX) {
                temps.push(path.clone());
            } else if let Some(utc) = parse_segment_name(name) {
                let len = fs.inodes.get(ino).map_or(0, |i| i.data.len() as u64);
                out.push(SegmentFile {
                    utc_start_ms: utc,
                    bytes: len,
                });
            }
        }
        for t in temps {
            fs.unlink(&t);
        }
        // Path order is not numeric order (`9.tseg` after `10.tseg`); the
        // contract is by UTC start.
        out.sort_by_key(|f| f.utc_start_ms);
        out
    }

    fn read_journal_now(&self, stream: &StreamName) -> Option<Bytes> {
        let path = format!("{}/{JOURNAL_FILE}", Self::dir(stream));
        self.fs().read(&path)
    }

    fn append_journal_now(
        &self,
        stream: &StreamName,
        at: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let path = format!("{}/{JOURNAL_FILE}", Self::dir(stream));
        let mut fs = self.fs();
        let len = fs.read(&path).map(|b| b.len() as u64).ok_or_else(|| {
            self.err(
                "append to",
                &path,
                sim_err(ErrorKind::NotFound, "No such file or directory"),
            )
        })?;
        if len < at {
            return Err(self.err(
                "append to",
                &path,
                sim_err(
                    ErrorKind::UnexpectedEof,
                    &format!("the journal is {len} bytes, shorter than the {at} this node wrote"),
                ),
            ));
        }
        fs.truncate(&path, at as usize)
            .and_then(|_| fs.append(&path, bytes))
            .and_then(|_| fs.fsync(&path))
            .map_err(|e| self.err("append to", &path, e))
    }

    fn rewrite_journal_now(&self, stream: &StreamName, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = Self::dir(stream);
        self.fs()
            .write_atomic(&dir, JOURNAL_FILE, bytes)
            .map_err(|e| self.err("rewrite", &format!("{dir}/{JOURNAL_FILE}"), e))
    }

    fn free_space_now(&self) -> Option<u64> {
        let fs = self.fs();
        fs.capacity.map(|c| c.saturating_sub(fs.used()))
    }

    /// Runs one DVR machine operation at once (no latency): the pure simulator's
    /// disk.
    pub fn run_op(&self, op: &Op) -> Result<Done, StoreError> {
        Ok(match op {
            // Directories are implicit.
            Op::Prepare { .. } => Done::Ok,
            Op::ReadJournal { stream } => Done::Journal(self.read_journal_now(stream)),
            Op::List { stream } => Done::Listed(self.list_segments_now(stream)),
            Op::ReadSegment {
                stream,
                utc_start_ms,
                len,
            } => Done::Segment(self.read_segment_now(stream, *utc_start_ms, Some(*len))?),
            Op::FreeSpace => Done::FreeSpace(self.free_space_now()),
            Op::Write {
                stream,
                utc_start_ms,
                bytes,
            } => {
                self.write_segment_now(stream, *utc_start_ms, bytes)?;
                Done::Ok
            }
            Op::Delete {
                stream,
                utc_start_ms,
            } => {
                self.delete_segment_now(stream, *utc_start_ms);
                Done::Ok
            }
            Op::AppendJournal { stream, at, bytes } => {
                self.append_journal_now(stream, *at, bytes)?;
                Done::Ok
            }
            Op::RewriteJournal { stream, bytes } => {
                self.rewrite_journal_now(stream, bytes)?;
                Done::Ok
            }
        })
    }

    /// A copy of the whole disk (names, data, what is durable, capacity, pending
    /// faults), e.g. to crash it at one point and go on with the original.
    pub fn snapshot(&self) -> MemStore {
        MemStore {
            label: self.label.clone(),
            fs: Mutex::new(self.fs().clone()),
            latency: Mutex::new(Duration::ZERO),
        }
    }
}

impl DvrStore for MemStore {
    fn location(&self, stream: &StreamName) -> String {
        format!("mem:{}/{}", self.label, stream)
    }

    fn prepare<'a>(&'a self, _stream: &'a StreamName) -> BoxFuture<'a, Result<(), StoreError>> {
        // Directories are implicit.
        Box::pin(async { Ok(()) })
    }

    fn write_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            self.write_segment_now(stream, utc_start_ms, &bytes)
        })
    }

    fn read_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StoreError>> {
        Box::pin(async move { self.read_segment_now(stream, utc_start_ms, expected_len) })
    }

    fn delete_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            self.delete_segment_now(stream, utc_start_ms);
            Ok(())
        })
    }

    fn list_segments<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Vec<SegmentFile>, StoreError>> {
        Box::pin(async move { Ok(self.list_segments_now(stream)) })
    }

    fn read_journal<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move { Ok(self.read_journal_now(stream)) })
    }

    fn append_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        at: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            self.append_journal_now(stream, at, &bytes)
        })
    }

    fn rewrite_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            self.rewrite_journal_now(stream, &bytes)
        })
    }

    fn free_space(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move { Ok(self.free_space_now()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[tokio::test]
    async fn mem_crash_keeps_only_synced() {
        let s = MemStore::new("/d");
        let a = name("a");
        s.write_segment(&a, 1, Bytes::from_static(b"one"))
            .await
            .unwrap();
        // A failed fsync: nothing under the final name, no temp file.
        s.fail_next(Fault::Fsync, 2);
        assert!(s
            .write_segment(&a, 2, Bytes::from_static(b"two"))
            .await
            .is_err());
        assert!(s.read_file("a/2.tseg").is_none());
        assert!(s
            .rewrite_journal(&a, Bytes::from_static(b"j"))
            .await
            .is_err());
        // A failed rename: the same.
        s.fail_next(Fault::Rename, 1);
        assert!(s
            .write_segment(&a, 3, Bytes::from_static(b"three"))
            .await
            .is_err());
        // Renamed, but the directory fsync fails: not durable, so taken back.
        s.fail_next(Fault::FsyncDir, 1);
        assert!(s
            .write_segment(&a, 4, Bytes::from_static(b"four"))
            .await
            .is_err());
        assert_eq!(s.files(), vec![("a/1.tseg".into(), 3)]);
        s.rewrite_journal(&a, Bytes::from_static(b"jj"))
            .await
            .unwrap();
        // Appended but the fsync fails: the appended bytes are visible, not durable.
        s.fail_next(Fault::Fsync, 1);
        assert!(s
            .append_journal(&a, 2, Bytes::from_static(b"xyz"))
            .await
            .is_err());
        assert_eq!(
            s.read_file("a/index.journal").as_deref(),
            Some(&b"jjxyz"[..])
        );
        s.crash();
        assert_eq!(s.read_file("a/index.journal").as_deref(), Some(&b"jj"[..]));
        assert_eq!(s.read_file("a/1.tseg").as_deref(), Some(&b"one"[..]));
    }

    #[tokio::test]
    async fn mem_capacity_and_partial_writes() {
        let s = MemStore::with_capacity("/d", 10);
        let a = name("a");
        s.write_segment(&a, 1, Bytes::from_static(b"12345678"))
            .await
            .unwrap();
        assert_eq!(s.free_space().await.unwrap(), Some(2));
        let e = s
            .write_segment(&a, 2, Bytes::from_static(b"123"))
            .await
            .unwrap_err();
        assert!(e.is_full(), "{e}");
        // No partial segment under the final name, no temp file left.
        assert_eq!(s.files(), vec![("a/1.tseg".into(), 8)]);
        s.delete_segment(&a, 1).await.unwrap();
        s.delete_segment(&a, 1).await.unwrap();
        assert_eq!(s.used_bytes(), 0);
        // A failed write leaves half the bytes in the journal; the next append cuts
        // them back.
        s.rewrite_journal(&a, Bytes::from_static(b"H"))
            .await
            .unwrap();
        s.fail_next(Fault::Write, 1);
        assert!(s
            .append_journal(&a, 1, Bytes::from_static(b"abcd"))
            .await
            .is_err());
        assert_eq!(s.read_file("a/index.journal").as_deref(), Some(&b"Hab"[..]));
        s.append_journal(&a, 1, Bytes::from_static(b"ef"))
            .await
            .unwrap();
        assert_eq!(s.read_file("a/index.journal").as_deref(), Some(&b"Hef"[..]));
        let e = s
            .append_journal(&a, 9, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(e.source.kind(), ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn mem_listing_ignores_nested_streams_and_removes_temps() {
        let s = MemStore::new("/d");
        s.put_file("a/5.tseg", b"x");
        s.put_file("a/3.tseg", b"xy");
        s.put_file("a/b/4.tseg", b"z");
        s.put_file("a/7.tseg.tmp", b"partial");
        s.put_file("a/notes.txt", b"?");
        let got = s.list_segments(&name("a")).await.unwrap();
        assert_eq!(
            got,
            vec![
                SegmentFile {
                    utc_start_ms: 3,
                    bytes: 2
                },
                SegmentFile {
                    utc_start_ms: 5,
                    bytes: 1
                }
            ]
        );
        assert!(s.read_file("a/7.tseg.tmp").is_none());
        assert_eq!(s.list_segments(&name("a/b")).await.unwrap().len(), 1);
    }
}
