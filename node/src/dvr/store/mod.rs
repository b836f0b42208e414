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
//! This file holds the trait, its types and the checks shared by both stores;
//! `fs.rs` holds [`FsStore`], `mem.rs` [`MemStore`].
//!
//! Owns: the store contract (what is durable when) that both stores keep. Must not:
//! decide what to record or delete (that is the DVR machine in core).

#[cfg(test)]
pub mod crash;
mod fs;
mod mem;
pub mod os;

use std::future::Future;
use std::io::{self, ErrorKind};
use std::pin::Pin;

use bytes::Bytes;
use tern_core::StreamName;

pub use fs::FsStore;
pub use mem::{Fault, MemStore};
pub use os::{Fs, FsFile, StdFs};

/// A boxed `Send` future: the store is used as `Arc<dyn DvrStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// File name of a stream's index journal.
pub const JOURNAL_FILE: &str = "index.journal";
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".tseg";
/// Suffix of files being written (removed by listing).
pub const TEMP_SUFFIX: &str = ".tmp";

/// A stored segment file, as listed (the machine's type: a listing is an op result).
pub use tern_core::dvr::op::SegmentFile;

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

pub(crate) fn segment_name(utc_start_ms: u64) -> String {
    format!("{utc_start_ms}{SEGMENT_SUFFIX}")
}

/// The UTC start of a segment file name (canonical digits only: `0012.tseg` and
/// `+12.tseg` are not segment files).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let utc: u64 = stem.parse().ok()?;
    (utc.to_string() == stem).then_some(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
