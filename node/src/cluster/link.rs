//! The cluster link's counters: per peer, bytes in and out and open pulls, for live
//! (M4S, M4F live), archive (M4F archive and index) and signaling. Both ends count:
//! an edge counts what it pulls from its sources (keyed `host:port`), an origin what
//! its peers pull from it (keyed by their IP address). The API shows them
//! (`/streamer/api/v3/peers`).
//!
//! Owns: the counters and the open-pull guards. Must not: decide anything (the
//! bandwidth rules are `tern_core::rate`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tern_core::cluster::accept::Endpoint;

/// At most this many peers are tracked; past it, peers with no open pull are
/// forgotten to make room (their counts are lost).
pub const MAX_TRACKED_PEERS: usize = 1024;

/// What a cluster transfer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkClass {
    Live,
    Archive,
    Signaling,
}

impl LinkClass {
    /// The class of a cluster endpoint (`streams`, `m4s/NAME`, `archive/NAME`...,
    /// without the `/tern/vN/` prefix).
    pub fn of_endpoint(endpoint: &Endpoint) -> LinkClass {
        match endpoint {
            Endpoint::M4s(_) | Endpoint::M4f(_) => LinkClass::Live,
            Endpoint::ArchiveIndex(_) | Endpoint::ArchiveRange(_) => LinkClass::Archive,
            Endpoint::Streams => LinkClass::Signaling,
        }
    }

    /// The class of a request's endpoint (after the version prefix, with or
    /// without a query: `m4s/main`, `archive/main?from=1&to=2`); a path that names no
    /// endpoint counts as signaling.
    pub fn of_path(rest: &str) -> LinkClass {
        let path = rest.split_once('?').map_or(rest, |(p, _)| p);
        Endpoint::parse(path).map_or(LinkClass::Signaling, |e| LinkClass::of_endpoint(&e))
    }
}

#[derive(Default)]
struct ClassCounters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    open: AtomicU64,
}

/// One peer's counters.
#[derive(Default)]
pub struct PeerLink {
    live: ClassCounters,
    archive: ClassCounters,
    signaling: ClassCounters,
}

impl PeerLink {
    fn class(&self, c: LinkClass) -> &ClassCounters {
        match c {
            LinkClass::Live => &self.live,
            LinkClass::Archive => &self.archive,
            LinkClass::Signaling => &self.signaling,
        }
    }

    fn open_total(&self) -> u64 {
        [&self.live, &self.archive, &self.signaling]
            .iter()
            .map(|c| c.open.load(Ordering::Relaxed))
            .sum()
    }
}

/// An open pull, counted while it lives; counts its bytes.
pub struct LinkGuard {
    peer: Arc<PeerLink>,
    class: LinkClass,
}

impl LinkGuard {
    pub fn received(&self, bytes: usize) {
        self.peer
            .class(self.class)
            .bytes_in
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.peer
            .class(self.class)
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn class(&self) -> LinkClass {
        self.class
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.peer
            .class(self.class)
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every peer's counters on this node.
#[derive(Default)]
pub struct LinkStats {
    peers: Mutex<BTreeMap<String, Arc<PeerLink>>>,
}

/// One class of one peer, as the API shows it (Flussonic's field names).
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct ClassJson {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Open pulls of this class.
    pub online_clients: u64,
}

#[derive(Serialize, Debug)]
pub struct PeerJson {
    /// `host:port` of a source this node pulls from, or the IP address of a peer
    /// that pulls from this node.
    pub peer: String,
    pub live: ClassJson,
    pub archive: ClassJson,
    pub signaling: ClassJson,
}

impl LinkStats {
    /// Opens a pull of `class` with `peer`; it counts until the guard drops.
    pub fn open(&self, peer: &str, class: LinkClass) -> LinkGuard {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(peer) {
            peers.retain(|_, p| p.open_total() > 0);
        }
        let link = peers.entry(peer.to_owned()).or_default().clone();
        drop(peers);
        link.class(class).open.fetch_add(1, Ordering::Relaxed);
        LinkGuard { peer: link, class }
    }

    pub fn snapshot(&self) -> Vec<PeerJson> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let json = |c: &ClassCounters| ClassJson {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            online_clients: c.open.load(Ordering::Relaxed),
        };
        peers
            .iter()
            .map(|(name, p)| PeerJson {
                peer: name.clone(),
                live: json(&p.live),
                archive: json(&p.archive),
                signaling: json(&p.signaling),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_endpoints() {
        assert_eq!(LinkClass::of_path("m4s/cams/1"), LinkClass::Live);
        assert_eq!(LinkClass::of_path("m4f/main"), LinkClass::Live);
        assert_eq!(LinkClass::of_path("archive/main"), LinkClass::Archive);
        // As the client names it: with the query (the archive pace keys on this).
        assert_eq!(
            LinkClass::of_path("archive/main?from=1&to=2"),
            LinkClass::Archive
        );
        assert_eq!(LinkClass::of_path("m4s/main?from=1.2"), LinkClass::Live);
        assert_eq!(LinkClass::of_path("dvr/main"), LinkClass::Archive);
        assert_eq!(LinkClass::of_path("streams"), LinkClass::Signaling);
    }

    #[test]
    fn guards_count_open_pulls_and_bytes() {
        let s = LinkStats::default();
        let a = s.open("10.0.0.1", LinkClass::Live);
        let b = s.open("10.0.0.1", LinkClass::Live);
        let c = s.open("10.0.0.1", LinkClass::Archive);
        a.sent(1000);
        b.received(10);
        c.sent(5);
        drop(b);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 1);
        let p = &snap[0];
        assert_eq!(
            p.live,
            ClassJson {
                bytes_in: 10,
                bytes_out: 1000,
                online_clients: 1
            }
        );
        assert_eq!(p.archive.online_clients, 1);
        assert_eq!(p.archive.bytes_out, 5);
        drop((a, c));
        assert_eq!(s.snapshot()[0].live.online_clients, 0);
    }

    #[test]
    fn idle_peers_make_room_past_the_cap() {
        let s = LinkStats::default();
        let kept = s.open("busy", LinkClass::Live);
        for i in 0..MAX_TRACKED_PEERS {
            drop(s.open(&format!("p{i}"), LinkClass::Live));
        }
        let snap = s.snapshot();
        assert!(snap.len() <= MAX_TRACKED_PEERS, "{}", snap.len());
        assert!(snap.iter().any(|p| p.peer == "busy"));
        drop(kept);
    }
}
