//! [`FsStore`]: the DVR store on the real filesystem (directories of segment files and
//! an index journal under a DVR root), with the write order the durability contract of
//! [`DvrStore`] promises. Its filesystem calls go through the [`Fs`] trait (`os.rs`):
//! `std::fs` in the binary, a crash-recording model in the crash test.
//!
//! Owns: which filesystem call runs when (temporary file, fsync, rename, directory
//! fsync). Must not: decide what to record or delete (that is `Dvr`).

use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tern_core::StreamName;

use super::os::{Fs, FsFile, StdFs};
use super::{
    check_segment_file, parse_segment_name, segment_name, BoxFuture, DvrStore, SegmentFile,
    StoreError, JOURNAL_FILE, TEMP_SUFFIX,
};

/// The real filesystem store. Blocking file I/O runs on tokio's blocking pool.
#[derive(Clone, Debug)]
pub struct FsStore<F: Fs = StdFs> {
    root: PathBuf,
    fs: F,
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

fn sync_dir(fs: &impl Fs, dir: &Path) -> Result<(), StoreError> {
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Writes `bytes` to `dir/name` atomically: `name.tmp`, fsync, rename, fsync `dir`.
fn write_atomic(fs: &impl Fs, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let dst = dir.join(name);
    let staged = (|| {
        let mut f = fs.create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all_at(0, bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs.rename(&tmp, &dst)
            .map_err(io_err("rename into place", &dst))
    })();
    if let Err(e) = staged {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = sync_dir(fs, dir) {
        // Not durable: take it back, so that `Err` means "not written".
        let _ = fs.remove_file(&dst);
        return Err(e);
    }
    Ok(())
}

impl FsStore {
    /// A store rooted at `root` (created on first use), on the real filesystem.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore::with_fs(root, StdFs)
    }
}

impl<F: Fs> FsStore<F> {
    /// A store rooted at `root` on the filesystem `fs`.
    pub fn with_fs(root: impl Into<PathBuf>, fs: F) -> Self {
        FsStore {
            root: root.into(),
            fs,
        }
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
    fn ensure_dir(fs: &F, root: &Path, dir: &Path) -> Result<(), StoreError> {
        if fs.metadata(dir).is_ok_and(|m| m.is_dir) {
            return Ok(());
        }
        fs.create_dir_all(dir)
            .map_err(io_err("create directory", dir))?;
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
                let _ = sync_dir(fs, parent_or_cwd);
                break;
            }
            sync_dir(fs, parent_or_cwd)?;
            p = parent;
        }
        Ok(())
    }
}

impl<F: Fs> FsStore<F> {
    /// Writes `name` in the stream's directory whole or not at all (`write_atomic`),
    /// creating the directory first: a segment and a rewritten journal go this way.
    fn replace_file<'a>(
        &'a self,
        stream: &'a StreamName,
        what: &'static str,
        name: String,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root.clone();
        let dir = self.dir(stream);
        let fs = self.fs.clone();
        Box::pin(async move {
            let d = dir.clone();
            blocking(what, &dir, move || {
                Self::ensure_dir(&fs, &root, &d)?;
                write_atomic(&fs, &d, &name, &bytes)
            })
            .await
        })
    }
}

impl<F: Fs> DvrStore for FsStore<F> {
    fn location(&self, stream: &StreamName) -> String {
        self.dir(stream).display().to_string()
    }

    fn prepare<'a>(&'a self, stream: &'a StreamName) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root.clone();
        let dir = self.dir(stream);
        let fs = self.fs.clone();
        Box::pin(async move {
            let d = dir.clone();
            blocking("create directory", &dir, move || {
                Self::ensure_dir(&fs, &root, &d)
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
        self.replace_file(
            stream,
            "write segment in",
            segment_name(utc_start_ms),
            bytes,
        )
    }

    fn read_segment<'a>(
        &'a self,
        stream: &'a StreamName,
        utc_start_ms: u64,
        expected_len: Option<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StoreError>> {
        let path = self.dir(stream).join(segment_name(utc_start_ms));
        let fs = self.fs.clone();
        Box::pin(async move {
            let p = path.clone();
            blocking("read", &path, move || {
                // Checked before opening: opening a FIFO would block.
                let m = fs.metadata(&p).map_err(io_err("read", &p))?;
                if !m.is_file {
                    let e = io::Error::new(ErrorKind::InvalidData, "not a regular file");
                    return Err(io_err("read", &p)(e));
                }
                check_segment_file(m.len, expected_len, m.allocated).map_err(io_err("read", &p))?;
                // At most the checked length (+1 to notice a file that grew).
                let buf = fs
                    .read_up_to(&p, m.len.saturating_add(1))
                    .map_err(io_err("read", &p))?;
                if buf.len() as u64 != m.len {
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
        let fs = self.fs.clone();
        Box::pin(async move {
            let p = path.clone();
            blocking("delete", &path, move || match fs.remove_file(&p) {
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
        let fs = self.fs.clone();
        Box::pin(async move {
            let d = dir.clone();
            blocking("list", &dir, move || {
                let rd = match fs.read_dir(&d) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io_err("list", &d)(e)),
                };
                let mut out = Vec::new();
                for ent in rd {
                    let Ok(name) = ent.name.into_string() else {
                        continue;
                    };
                    if !ent.is_file {
                        continue;
                    }
                    if name.ends_with(TEMP_SUFFIX) {
                        let p = ent.path;
                        if let Err(e) = fs.remove_file(&p) {
                            tracing::warn!(path = %p.display(), error = %e, "cannot remove a leftover temporary DVR file");
                        }
                        continue;
                    }
                    if let Some(utc) = parse_segment_name(&name) {
                        let len = fs.metadata(&ent.path).map_err(io_err("stat", &ent.path))?.len;
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
        let fs = self.fs.clone();
        Box::pin(async move {
            let p = path.clone();
            blocking("read", &path, move || match fs.read(&p) {
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
        let fs = self.fs.clone();
        Box::pin(async move {
            let p = path.clone();
            blocking("append to", &path, move || {
                let mut f = fs.open_write(&p).map_err(io_err("open", &p))?;
                let len = f.size().map_err(io_err("stat", &p))?;
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
                f.write_all_at(at, &bytes)
                    .map_err(io_err("append to", &p))?;
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
        self.replace_file(
            stream,
            "rewrite the journal in",
            JOURNAL_FILE.to_string(),
            bytes,
        )
    }

    fn free_space(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        // std has no statvfs and this crate takes no libc dependency: a full disk
        // shows up as ENOSPC on write, which `Dvr` handles the same way.
        Box::pin(async { Ok(None) })
    }
}
