//! `DvrStore`: the DVR's storage, as a trait (docs/design.md §6) — a real filesystem
//! store for the binary ([`FsStore`]) and an in-memory one with injectable faults for
//! the simulation and tests ([`MemStore`]).
//!
//! A store is one DVR root (the `PATH` of `dvr PATH ...`). Each stream has a
//! directory under it, named by its stream name (`cams/yard/3` is three levels):
//! `ROOT/<stream>/<utc_start_ms>.tseg` holds one segment in the canonical encoding,
//! `ROOT/<stream>/index.journal` the index journal (`tern_core::dvr::journal`).
//! Names ending in `.tmp` are writes in progress; listing removes them. Stream names
//! are validated `StreamName`s: they never hold `..`, `.` or an empty segment, so
//! they never leave the root.
//!
//! Owns: durable writes (what is fsynced when) and the fault model. Must not: decide
//! what to record or delete (that is `Dvr`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tern_core::StreamName;

/// A boxed `Send` future: the store is used as `Arc<dyn DvrStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// File name of a stream's index journal.
pub const JOURNAL_FILE: &str = "index.journal";
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".tseg";
/// Suffix of files being written (removed by listing).
pub const TEMP_SUFFIX: &str = ".tmp";

/// A stored segment file, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub utc_start_ms: u64,
    pub bytes: u64,
}

/// A failed storage operation: what, where, and the OS's reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {path}: {source}{}", hint(source.kind()))]
pub struct StoreError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

pub(crate) fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::PermissionDenied => {
            " (let the user running tern write there, or change the `dvr` path)"
        }
        ErrorKind::ReadOnlyFilesystem => " (the filesystem is mounted read-only)",
        ErrorKind::StorageFull => " (the disk is full)",
        ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            " (a file or directory of that name is in the way)"
        }
        _ => "",
    }
}

impl StoreError {
    pub fn new(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        StoreError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The disk (or the store's capacity) is full.
    pub fn is_full(&self) -> bool {
        matches!(
            self.source.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        )
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == ErrorKind::NotFound
    }
}

/// The storage of one DVR root. Every method's future is `Send`.
///
/// Durability contract (what `Dvr`'s crash-safety argument relies on):
/// - `write_segment` returns `Ok` only once the whole file is durable under its final
///   name (temporary file, fsync, rename, fsync of the directory). On `Err` no file
///   of that name is left behind, and no partial file ever has the final name.
/// - `append_journal(at, bytes)` makes the journal its first `at` bytes followed by
///   `bytes`, durably (fsync) before `Ok`. Cutting back to `at` first discards the
///   remains of an earlier failed or torn append. It fails with `UnexpectedEof` if the
///   journal is shorter than `at` and with `NotFound` if it does not exist.
/// - `rewrite_journal` replaces the journal atomically (temporary file, fsync,
///   rename, fsync of the directory): after a crash it is the old or the new one.
/// - `delete_segment` removes the file (a missing file is `Ok`); it does not sync the
///   directory (a deletion undone by a crash is a file the index re-learns).
pub trait DvrStore: Send + Sync + 'static {
    /// Where a stream's files live, for messages (a path, or `mem:` for MemStore).
    fn location(&self, stream: &StreamName) -> String;

    /// Creates the stream's directory (durably) if it does not exist, so that a
    /// path the node cannot write is reported at start.
    fn prepare<'a>(&'a self, stream: &'a StreamName) -> BoxFuture<'a, Result<(), StoreError>>;

    fn write_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The file's bytes. A file that cannot be a segment is refused with
    /// `InvalidData` before it is read: larger than any segment
    /// (`segment_codec::MAX_ENCODED_LEN`), not the `expected_len` the index
    /// recorded (when given), or sparse (see [`check_segment_file`]).
    fn read_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StoreError>>;

    fn delete_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The stream's segment files, sorted by UTC start. Also removes leftover
    /// temporary files of interrupted writes. Ignores anything else.
    fn list_segments<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Vec<SegmentFile>, StoreError>>;

    /// The journal's bytes, `None` if there is none.
    fn read_journal<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    fn append_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        at: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    fn rewrite_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Bytes free for the store, when it knows (`FsStore` does not: it learns of a
    /// full disk from `ENOSPC`).
    fn free_space(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
}

/// Whether a segment file of `len` bytes, `allocated` bytes on disk (when known),
/// can be read: the checks made from its metadata alone, before reading it.
pub fn check_segment_file(
    len: u64,
    expected_len: Option<u64>,
    allocated: Option<u64>,
) -> Result<(), io::Error> {
    let max = tern_core::segment_codec::MAX_ENCODED_LEN as u64;
    let invalid = |m: String| Err(io::Error::new(ErrorKind::InvalidData, m));
    if len > max {
        return invalid(format!(
            "the file is {len} bytes, larger than any segment ({max}); not reading it"
        ));
    }
    if let Some(want) = expected_len {
        if want != len {
            return invalid(format!(
                "the file is {len} bytes, not the {want} the index recorded; not reading it"
            ));
        }
    }
    // A sparse file (holes: most of it never written) cannot be a segment this node
    // wrote. Some slack for filesystems that store small files inline or compress.
    if let Some(alloc) = allocated {
        if len > SPARSE_MIN_LEN && alloc < len / 4 {
            return invalid(format!(
                "the file is sparse ({len} bytes, {alloc} on disk); not reading it"
            ));
        }
    }
    Ok(())
}

/// Files up to this size are never taken as sparse (inline storage, compression).
const SPARSE_MIN_LEN: u64 = 1 << 20;

/// Bytes a file occupies on disk, where the platform says.
#[cfg(unix)]
fn allocated_bytes(m: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(m.blocks().saturating_mul(512))
}

#[cfg(not(unix))]
fn allocated_bytes(_m: &fs::Metadata) -> Option<u64> {
    None
}

fn segment_name(utc_start_ms: u64) -> String {
    format!("{utc_start_ms}{SEGMENT_SUFFIX}")
}

/// The UTC start of a segment file name (canonical digits only: `0012.tseg` and
/// `+12.tseg` are not segment files).
fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let utc: u64 = stem.parse().ok()?;
    (utc.to_string() == stem).then_some(utc)
}

// ---------------------------------------------------------------------------------
// FsStore
// ---------------------------------------------------------------------------------

/// The real filesystem store. Blocking file I/O runs on tokio's blocking pool.
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |e| StoreError::new(op, path.display().to_string(), e)
}

/// Runs `f` on the blocking pool.
#[allow(clippy::disallowed_methods)] // driver: file I/O runs on the blocking pool
async fn blocking<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::new(
            what,
            path.display().to_string(),
            io::Error::other(e.to_string()),
        )),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Writes `bytes` to `dir/name` atomically: `name.tmp`, fsync, rename, fsync `dir`.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let dst = dir.join(name);
    let staged = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &dst).map_err(io_err("rename into place", &dst))
    })();
    if let Err(e) = staged {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = sync_dir(dir) {
        // Not durable: take it back, so that `Err` means "not written".
        let _ = fs::remove_file(&dst);
        return Err(e);
    }
    Ok(())
}

impl FsStore {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, stream: &StreamName) -> PathBuf {
        // Safe by construction: a StreamName has no `..`, `.` or empty segment and no
        // leading `/`.
        self.root.join(stream.as_str())
    }

    /// Creates `dir` (under `root`) and makes each new level durable.
    fn ensure_dir(root: &Path, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        // fsync every directory from `dir`'s parent up to the root, so the new
        // entries survive a crash; the root's own parent on a best-effort basis.
        let mut p = dir;
        while let Some(parent) = p.parent() {
            let parent_or_cwd = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            if p == root {
                let _ = sync_dir(parent_or_cwd);
                break;
            }
            sync_dir(parent_or_cwd)?;
            p = parent;
        }
        Ok(())
    }
}

impl DvrStore for FsStore {
    fn location(&self, stream: &StreamName) -> String {
        self.dir(stream).display().to_string()
    }

    fn prepare<'a>(&'a self, stream: &'a StreamName) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root.clone();
        let dir = self.dir(stream);
        Box::pin(async move {
            let d = dir.clone();
            blocking("create directory", &dir, move || {
                FsStore::ensure_dir(&root, &d)
            })
            .await
        })
    }

    fn write_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root.clone();
        let dir = self.dir(stream);
        Box::pin(async move {
            let d = dir.clone();
            blocking("write segment in", &dir, move || {
                FsStore::ensure_dir(&root, &d)?;
                write_atomic(&d, &segment_name(utc_start_ms), &bytes)
            })
            .await
        })
    }

    fn read_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StoreError>> {
        let path = self.dir(stream).join(segment_name(utc_start_ms));
        Box::pin(async move {
            let p = path.clone();
            blocking("read", &path, move || {
                // Checked before opening: opening a FIFO would block.
                let m = fs::metadata(&p).map_err(io_err("read", &p))?;
                if !m.is_file() {
                    let e = io::Error::new(ErrorKind::InvalidData, "not a regular file");
                    return Err(io_err("read", &p)(e));
                }
                check_segment_file(m.len(), expected_len, allocated_bytes(&m))
                    .map_err(io_err("read", &p))?;
                let mut f = File::open(&p).map_err(io_err("read", &p))?;
                // At most the checked length (+1 to notice a file that grew).
                let mut buf = Vec::with_capacity(m.len() as usize);
                (&mut f)
                    .take(m.len().saturating_add(1))
                    .read_to_end(&mut buf)
                    .map_err(io_err("read", &p))?;
                if buf.len() as u64 != m.len() {
                    let e = io::Error::new(
                        ErrorKind::InvalidData,
                        "the file changed size while being read",
                    );
                    return Err(io_err("read", &p)(e));
                }
                Ok(Bytes::from(buf))
            })
            .await
        })
    }

    fn delete_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let path = self.dir(stream).join(segment_name(utc_start_ms));
        Box::pin(async move {
            let p = path.clone();
            blocking("delete", &path, move || match fs::remove_file(&p) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("delete", &p)(e)),
                _ => Ok(()),
            })
            .await
        })
    }

    fn list_segments<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Vec<SegmentFile>, StoreError>> {
        let dir = self.dir(stream);
        Box::pin(async move {
            let d = dir.clone();
            blocking("list", &dir, move || {
                let rd = match fs::read_dir(&d) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io_err("list", &d)(e)),
                };
                let mut out = Vec::new();
                for ent in rd {
                    let ent = ent.map_err(io_err("list", &d))?;
                    let Ok(name) = ent.file_name().into_string() else {
                        continue;
                    };
                    let is_file = ent.file_type().map(|t| t.is_file()).unwrap_or(false);
                    if !is_file {
                        continue;
                    }
                    if name.ends_with(TEMP_SUFFIX) {
                        let p = ent.path();
                        if let Err(e) = fs::remove_file(&p) {
                            tracing::warn!(path = %p.display(), error = %e, "cannot remove a leftover temporary DVR file");
                        }
                        continue;
                    }
                    if let Some(utc) = parse_segment_name(&name) {
                        let len = ent.metadata().map_err(io_err("stat", &ent.path()))?.len();
                        out.push(SegmentFile {
                            utc_start_ms: utc,
                            bytes: len,
                        });
                    }
                }
                out.sort_by_key(|f| f.utc_start_ms);
                Ok(out)
            })
            .await
        })
    }

    fn read_journal<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let path = self.dir(stream).join(JOURNAL_FILE);
        Box::pin(async move {
            let p = path.clone();
            blocking("read", &path, move || match fs::read(&p) {
                Ok(b) => Ok(Some(Bytes::from(b))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err("read", &p)(e)),
            })
            .await
        })
    }

    fn append_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        at: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let path = self.dir(stream).join(JOURNAL_FILE);
        Box::pin(async move {
            let p = path.clone();
            blocking("append to", &path, move || {
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(io_err("open", &p))?;
                let len = f.metadata().map_err(io_err("stat", &p))?.len();
                if len < at {
                    return Err(StoreError::new(
                        "append to",
                        p.display().to_string(),
                        io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!(
                                "the journal is {len} bytes, shorter than the {at} this node wrote"
                            ),
                        ),
                    ));
                }
                if len > at {
                    f.set_len(at).map_err(io_err("truncate", &p))?;
                }
                f.seek(SeekFrom::Start(at)).map_err(io_err("seek in", &p))?;
                f.write_all(&bytes).map_err(io_err("append to", &p))?;
                f.sync_data().map_err(io_err("fsync", &p))
            })
            .await
        })
    }

    fn rewrite_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root.clone();
        let dir = self.dir(stream);
        Box::pin(async move {
            let d = dir.clone();
            blocking("rewrite the journal in", &dir, move || {
                FsStore::ensure_dir(&root, &d)?;
                write_atomic(&d, JOURNAL_FILE, &bytes)
            })
            .await
        })
    }

    fn free_space(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        // std has no statvfs and this crate takes no libc dependency: a full disk
        // shows up as ENOSPC on write, which `Dvr` handles the same way.
        Box::pin(async { Ok(None) })
    }
}

// ---------------------------------------------------------------------------------
// MemStore
// ---------------------------------------------------------------------------------

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
#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced_len: usize,
}

/// An in-memory filesystem with a page cache: names and data become durable only
/// when fsynced (data: fsync of the file; a name: fsync of its directory), and
/// [`MemStore::crash`] forgets the rest, as a power cut would.
#[derive(Debug, Default)]
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
            let dir = Self::dir(stream);
            let name = segment_name(utc_start_ms);
            self.fs()
                .write_atomic(&dir, &name, &bytes)
                .map_err(|e| self.err("write segment", &format!("{dir}/{name}"), e))
        })
    }

    fn read_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StoreError>> {
        Box::pin(async move {
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
        })
    }

    fn delete_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            let path = format!("{}/{}", Self::dir(stream), segment_name(utc_start_ms));
            self.fs().unlink(&path);
            Ok(())
        })
    }

    fn list_segments<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Vec<SegmentFile>, StoreError>> {
        Box::pin(async move {
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
            Ok(out)
        })
    }

    fn read_journal<'a>(
        &'a self,
        stream: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let path = format!("{}/{JOURNAL_FILE}", Self::dir(stream));
            Ok(self.fs().read(&path))
        })
    }

    fn append_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        at: u64,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
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
                        &format!(
                            "the journal is {len} bytes, shorter than the {at} this node wrote"
                        ),
                    ),
                ));
            }
            fs.truncate(&path, at as usize)
                .and_then(|_| fs.append(&path, &bytes))
                .and_then(|_| fs.fsync(&path))
                .map_err(|e| self.err("append to", &path, e))
        })
    }

    fn rewrite_journal<'a>(
        &'a self,
        stream: &'a StreamName,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay().await;
            let dir = Self::dir(stream);
            self.fs()
                .write_atomic(&dir, JOURNAL_FILE, &bytes)
                .map_err(|e| self.err("rewrite", &format!("{dir}/{JOURNAL_FILE}"), e))
        })
    }

    fn free_space(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let fs = self.fs();
            Ok(fs.capacity.map(|c| c.saturating_sub(fs.used())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn segment_names() {
        assert_eq!(
            parse_segment_name("1764000000000.tseg"),
            Some(1_764_000_000_000)
        );
        assert_eq!(parse_segment_name("0.tseg"), Some(0));
        for bad in [
            "012.tseg",
            "+12.tseg",
            "12.tseg.tmp",
            "index.journal",
            ".tseg",
            "1x.tseg",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
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
