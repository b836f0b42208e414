//! A stream's archive as the HTTP outputs and the M4F archive endpoint see it: the
//! local DVR, or a peer's DVR reached over M4F (the automatic archive route of an
//! edge). Both answer the same three questions — the facts, the stored segments of a
//! window, the segments themselves — so every archive URL works the same on an
//! origin, an edge and an edge of an edge, byte for byte.
//!
//! Owns: reading the local DVR, and driving core's archive-route machines
//! (`tern_core::archive_route`): opening the peers they name, passing their messages
//! and deadlines in, reading and filling the cache. Must not: decide which peer is
//! asked, what a refusal means or when a peer is gone (the machines do), render
//! playlists or JSON (outputs do).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tern_core::archive_route::{
    after_read_failure, cached_index, local_index, AfterFailure, CachedAction, CachedRange, Opened,
    Question, ReadFailure, RemoteAction, RemoteRequest,
};
use tern_core::cluster::message::{ArchiveEntry, DvrFacts};
use tern_core::{Segment, StreamName};
use tern_net::{Clock, Net};
use tokio::sync::mpsc;

use crate::cluster::client::{ClusterClient, MessageStream};
use crate::dvr::{Dvr, DvrError};

pub use tern_core::archive_route::{
    ArchiveError, ArchiveIndex, ArchiveSegment, ARCHIVE_IDLE_TIMEOUT,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Stored segments listed in one index answer (about 4.6 days of 2 s segments).
pub const MAX_INDEX_ENTRIES: usize = tern_core::cluster::message::MAX_ARCHIVE_ENTRIES;

pub trait Archive: Send + Sync + 'static {
    /// Facts, and the entries overlapping `[from_ms, to_ms)` if a window is given.
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>>;
    /// Sends the segments overlapping `[from_ms, to_ms)` in order, one at a time (the
    /// channel's capacity is the back-pressure), then returns the count sent.
    fn range(
        &self,
        from_ms: u64,
        to_ms: u64,
        tx: mpsc::Sender<ArchiveSegment>,
    ) -> BoxFuture<'_, Result<u32, ArchiveError>>;
    /// Facts known without any I/O (for signaling), if any.
    fn facts_now(&self) -> Option<DvrFacts>;
}

/// What a local read failure is, in the archive route's terms.
fn read_failure(e: DvrError) -> ReadFailure {
    match e {
        DvrError::NotFound { .. } => ReadFailure::Missing,
        DvrError::Damaged { .. } => ReadFailure::Damaged,
        other => ReadFailure::Other(other.to_string()),
    }
}

/// The local DVR's index of `window` (no I/O: the index is in memory).
fn dvr_index(dvr: &Dvr, window: Option<(u64, u64)>) -> Result<ArchiveIndex, ArchiveError> {
    let entries: Vec<ArchiveEntry> = match window {
        Some((from, to)) => dvr
            .segments(from, to)
            .into_iter()
            .map(|s| ArchiveEntry {
                utc_start_ms: s.utc_start_ms,
                duration_ms: s.duration_ms,
                discontinuity: s.discontinuity,
            })
            .collect(),
        None => Vec::new(),
    };
    local_index(dvr.facts(), entries)
}

impl Archive for Dvr {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move { dvr_index(self, window) })
    }

    fn range(
        &self,
        from_ms: u64,
        to_ms: u64,
        tx: mpsc::Sender<ArchiveSegment>,
    ) -> BoxFuture<'_, Result<u32, ArchiveError>> {
        Box::pin(async move {
            let mut sent = 0;
            for s in self.segments(from_ms, to_ms) {
                let bytes = match self.read(s.utc_start_ms).await {
                    Ok(b) => b,
                    Err(e) => match after_read_failure(read_failure(e)) {
                        AfterFailure::Skip => continue,
                        AfterFailure::Fail(e) => return Err(e),
                    },
                };
                if tx.send(ArchiveSegment::Stored(bytes)).await.is_err() {
                    break; // the reader left
                }
                sent += 1;
            }
            Ok(sent)
        })
    }

    fn facts_now(&self) -> Option<DvrFacts> {
        Some(self.facts())
    }
}

/// A peer's archive over M4F: the first reachable peer that records the stream
/// answers (core's `RemoteRequest` decides; this drives it).
pub struct RemoteArchive<N: Net, C: Clock> {
    /// The stream's name on this node (for messages).
    pub name: StreamName,
    /// Host, port and the stream's name on that peer, in the order they are tried.
    pub peers: Vec<(String, u16, StreamName)>,
    pub client: ClusterClient<N, C>,
    /// The latest facts signaling reported (for this node's own signaling).
    pub facts: Mutex<Option<DvrFacts>>,
    /// Made for a `source` stream: signaling says whether the peer records it, and
    /// without facts there is no archive to ask for. (An `input m4s://` stream has no
    /// signaling: its peers are asked.)
    pub signaled: bool,
}

impl<N: Net, C: Clock> RemoteArchive<N, C> {
    pub fn new(
        name: StreamName,
        peers: Vec<(String, u16, StreamName)>,
        client: ClusterClient<N, C>,
        signaled: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            peers,
            client,
            facts: Mutex::new(None),
            signaled,
        })
    }

    pub fn set_facts(&self, facts: Option<DvrFacts>) {
        *self.facts.lock().unwrap_or_else(|e| e.into_inner()) = facts;
    }

    /// The machine for `question`; a stream signaling says is not recorded is not
    /// asked for.
    fn request(&self, question: Question) -> RemoteRequest {
        let recorded = !self.signaled || self.facts_now().is_some();
        RemoteRequest::new(self.name.clone(), &self.peers, question, recorded)
    }

    /// Drives `req` to its end: opens the peers it names, passes their messages and
    /// its idle deadline in, hands segments to `tx`. Returns the index (an index
    /// question) or `None` (a range, then `sent` holds the count).
    async fn drive(
        &self,
        mut req: RemoteRequest,
        tx: Option<&mpsc::Sender<ArchiveSegment>>,
    ) -> Result<Driven, ArchiveError> {
        let clock = self.client.clock().clone();
        let mut stream: Option<MessageStream> = None;
        loop {
            while let Some(action) = req.poll_action() {
                match action {
                    RemoteAction::Open { peer, path } => {
                        stream = None;
                        let Some((host, port, _)) = self.peers.get(peer) else {
                            req.handle_opened(clock.now(), Opened::Failed("no such peer".into()));
                            continue;
                        };
                        let opened = match self.client.open(host, *port, &path).await {
                            Ok(s) => {
                                stream = Some(s);
                                Opened::Answered
                            }
                            Err(e) => match e.refusal() {
                                Some((status, body)) => Opened::Rejected {
                                    status,
                                    body: body.to_owned(),
                                },
                                None => Opened::Failed(e.to_string()),
                            },
                        };
                        req.handle_opened(clock.now(), opened);
                    }
                    RemoteAction::Deliver(s) => {
                        let took = match tx {
                            Some(tx) => tx.send(ArchiveSegment::Decoded(s)).await.is_ok(),
                            None => false,
                        };
                        if took {
                            req.handle_delivered(clock.now());
                        } else {
                            req.handle_reader_gone();
                        }
                    }
                    RemoteAction::Index(ix) => return Ok(Driven::Index(ix)),
                    RemoteAction::Done(n) => return Ok(Driven::Sent(n)),
                    RemoteAction::Failed(e) => return Err(e),
                }
            }
            let Some(s) = stream.as_mut() else {
                // The machine always ends or asks for something; never wait forever.
                return Err(ArchiveError::failed(
                    "the archive route stopped (this node's log says why)",
                    "the archive route waits for a peer it has not opened",
                ));
            };
            let now = clock.now();
            tokio::select! {
                biased;
                m = s.next() => match m {
                    Ok(Some(m)) => req.handle_message(clock.now(), m),
                    Ok(None) => req.handle_closed("connection closed".into()),
                    Err(e) => req.handle_closed(e.to_string()),
                },
                () = crate::timer::until(req.poll_timeout(), now) => req.handle_timeout(clock.now()),
            }
        }
    }
}

/// What a driven `RemoteRequest` answered.
enum Driven {
    Index(ArchiveIndex),
    Sent(u32),
}

impl<N: Net, C: Clock> Archive for RemoteArchive<N, C> {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move {
            match self
                .drive(self.request(Question::Index { window }), None)
                .await?
            {
                Driven::Index(ix) => Ok(ix),
                Driven::Sent(_) => Err(ArchiveError::failed(
                    "the archive route stopped (this node's log says why)",
                    "an index question ended without an index",
                )),
            }
        })
    }

    fn range(
        &self,
        from_ms: u64,
        to_ms: u64,
        tx: mpsc::Sender<ArchiveSegment>,
    ) -> BoxFuture<'_, Result<u32, ArchiveError>> {
        Box::pin(async move {
            let req = self.request(Question::Range { from_ms, to_ms });
            match self.drive(req, Some(&tx)).await? {
                Driven::Sent(n) => Ok(n),
                Driven::Index(_) => Err(ArchiveError::failed(
                    "the archive route stopped (this node's log says why)",
                    "a range question ended with an index",
                )),
            }
        })
    }

    fn facts_now(&self) -> Option<DvrFacts> {
        self.facts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The one segment of `archive` that starts at `utc_start_ms`, if stored. (The window
/// `[utc, utc + 1)` may also catch the end of the segment before: durations are
/// rounded.)
pub async fn fetch_segment(
    archive: &dyn Archive,
    utc_start_ms: u64,
) -> Result<Option<Segment>, ArchiveError> {
    let (tx, mut rx) = mpsc::channel(1);
    let got = archive.range(utc_start_ms, utc_start_ms.saturating_add(1), tx);
    let pick = async {
        let mut found = Ok(None);
        while let Some(s) = rx.recv().await {
            match s.into_segment() {
                Ok(s) if s.utc_start_ms == utc_start_ms => found = Ok(Some(s)),
                Ok(_) => {}
                Err(e) => found = Err(e),
            }
        }
        found
    };
    let (r, seg) = tokio::join!(got, pick);
    r?;
    seg
}

/// `cache PATH DEPTH LIMIT;` of a `source`: a peer's archive, with every segment
/// fetched through this node kept in a local store (core's `cached_index` and
/// `CachedRange` decide; this drives them).
pub struct CachedArchive {
    pub remote: Arc<dyn Archive>,
    pub cache: Arc<Dvr>,
}

impl CachedArchive {
    fn is_cached(&self, utc_start_ms: u64) -> bool {
        self.cache
            .segments(utc_start_ms, utc_start_ms.saturating_add(1))
            .iter()
            .any(|s| s.utc_start_ms == utc_start_ms)
    }
}

impl Archive for CachedArchive {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move {
            let remote = self.remote.index(window).await;
            cached_index(window, remote, || dvr_index(&self.cache, window))
        })
    }

    fn range(
        &self,
        from_ms: u64,
        to_ms: u64,
        tx: mpsc::Sender<ArchiveSegment>,
    ) -> BoxFuture<'_, Result<u32, ArchiveError>> {
        Box::pin(async move {
            let entries = self.index(Some((from_ms, to_ms))).await?.entries;
            let mut range = CachedRange::new(entries);
            while let Some(action) = range.poll_action() {
                match action {
                    CachedAction::Lookup(utc) => range.handle_lookup(self.is_cached(utc)),
                    CachedAction::ReadCache(utc) => {
                        range.handle_cache_read(self.cache.read(utc).await.map_err(read_failure))
                    }
                    CachedAction::Fetch(utc) => {
                        range.handle_fetched(fetch_segment(self.remote.as_ref(), utc).await)
                    }
                    CachedAction::Keep(s) => {
                        if let Err(e) = self.cache.record(&s).await {
                            tracing::warn!(stream = %self.cache.name(), error = %e, "cannot keep an archive segment in the cache");
                        }
                        deliver(&mut range, &tx, ArchiveSegment::Decoded(s)).await;
                    }
                    CachedAction::Deliver(seg) => deliver(&mut range, &tx, seg).await,
                    CachedAction::Done(n) => return Ok(n),
                    CachedAction::Failed(e) => return Err(e),
                }
            }
            Err(ArchiveError::failed(
                "the archive route stopped (this node's log says why)",
                "a cached range ended without an answer",
            ))
        })
    }

    fn facts_now(&self) -> Option<DvrFacts> {
        self.remote.facts_now()
    }
}

async fn deliver(range: &mut CachedRange, tx: &mpsc::Sender<ArchiveSegment>, seg: ArchiveSegment) {
    if tx.send(seg).await.is_ok() {
        range.handle_delivered();
    } else {
        range.handle_reader_gone();
    }
}
