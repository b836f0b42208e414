//! Which store a DVR path gets ([`DvrStores`]): the real filesystem for the binary,
//! or in-memory disks ([`MemDisks`]) that the turmoil simulation keeps across a
//! simulated node's restarts and power-cuts on a crash.
//!
//! Owns: that choice and the simulated disks by path. Must not: decide anything
//! about recording (the machine does) or do real I/O for the simulation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::store::{DvrStore, FsStore, MemStore};

/// In-memory disks of a simulated node, by DVR path. Kept by the simulation across
/// restarts of the node, so that a restarted node finds what it recorded (minus
/// what [`MemDisks::crash`] drops).
#[derive(Default)]
pub struct MemDisks {
    disks: Mutex<BTreeMap<String, Arc<MemStore>>>,
}

impl MemDisks {
    pub fn new() -> Arc<Self> {
        Arc::new(MemDisks::default())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<MemStore>>> {
        self.disks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disk of `path` (made, of unlimited capacity, on first use).
    pub fn disk(&self, path: &str) -> Arc<MemStore> {
        self.lock()
            .entry(path.to_owned())
            .or_insert_with(|| Arc::new(MemStore::new(path)))
            .clone()
    }

    /// Every disk made so far, by path.
    pub fn disks(&self) -> Vec<(String, Arc<MemStore>)> {
        self.lock()
            .iter()
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect()
    }

    /// A power cut on every disk.
    pub fn crash(&self) {
        for (_, d) in self.disks() {
            d.crash();
        }
    }
}

/// Which store a DVR path gets.
#[derive(Clone, Default)]
pub enum DvrStores {
    /// Directories on the real filesystem (the binary).
    #[default]
    Fs,
    /// In-memory disks (the simulation: no real files, no blocking threads).
    Memory(Arc<MemDisks>),
}

impl DvrStores {
    pub fn store_for(&self, path: &str) -> Arc<dyn DvrStore> {
        match self {
            DvrStores::Fs => Arc::new(FsStore::new(path)),
            DvrStores::Memory(d) => d.disk(path),
        }
    }
}
