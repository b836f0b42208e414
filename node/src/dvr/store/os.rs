//! [`Fs`]: the filesystem calls [`FsStore`](super::FsStore) makes, as a trait, so that
//! a test can run the real store's code over a filesystem model that records every
//! call and produces what a power cut at any point would leave (`crash.rs`). The
//! real filesystem is [`StdFs`], a thin pass-through to `std::fs`.
//!
//! Owns: the mapping of each call to one `std::fs` call. Must not: decide anything
//! (the write order is `FsStore`'s), or hide a call from the trait: every syscall of
//! `FsStore` that changes the disk goes through here.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What [`Fs::metadata`] tells of a path (following symbolic links, as
/// `std::fs::metadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub is_file: bool,
    pub is_dir: bool,
    pub len: u64,
    /// Bytes the file occupies on disk, where the platform says.
    pub allocated: Option<u64>,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub path: PathBuf,
    /// A regular file (not following a symbolic link).
    pub is_file: bool,
}

/// The filesystem under an [`FsStore`](super::FsStore). Blocking calls; the store runs
/// them on tokio's blocking pool.
pub trait Fs: Clone + std::fmt::Debug + Send + Sync + 'static {
    type File: FsFile;
    /// Creates the file empty (truncating one of that name), open for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Self::File>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: its entries' changes (creations, renames, removals)
    /// become durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// The file's bytes, at most `limit` of them.
    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The entries of a directory, in no particular order (`.` and `..` left out,
    /// names that are not UTF-8 included).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
}

/// A file open for writing.
pub trait FsFile: Send {
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Writes all of `bytes` at offset `at`.
    fn write_all_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()>;
    /// fsync: the file's data and metadata become durable (not its name).
    fn sync_all(&mut self) -> io::Result<()>;
    /// fdatasync: the file's data (and its length) become durable.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

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

impl Fs for StdFs {
    type File = File;

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open_write(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path).and_then(|d| d.sync_all())
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let m = fs::metadata(path)?;
        Ok(Meta {
            is_file: m.is_file(),
            is_dir: m.is_dir(),
            len: m.len(),
            allocated: allocated_bytes(&m),
        })
    }

    fn read_up_to(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let f = File::open(path)?;
        // Sized up front (at most a segment's limit): a 10 MB segment is read in a
        // few large reads into one buffer, not grown by doubling (a copy each time).
        let prealloc = limit.min(tern_core::segment_codec::MAX_ENCODED_LEN as u64 + 1);
        let mut buf = Vec::with_capacity(usize::try_from(prealloc).unwrap_or(0));
        f.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for ent in fs::read_dir(path)? {
            let ent = ent?;
            out.push(DirEntry {
                name: ent.file_name(),
                path: ent.path(),
                is_file: ent.file_type().map(|t| t.is_file()).unwrap_or(false),
            });
        }
        Ok(out)
    }
}

impl FsFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn write_all_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(at))?;
        self.write_all(bytes)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}
