//! A stream's archive as the HTTP outputs and the M4F archive endpoint see it: the
//! local DVR, or a peer's DVR reached over M4F (the automatic archive route of an
//! edge). Both answer the same three questions — the facts, the stored segments of a
//! window, the segments themselves — so every archive URL works the same on an
//! origin, an edge and an edge of an edge, byte for byte.
//!
//! Owns: choosing a peer, turning peer failures into "unreachable" (503) and absent
//! archives into "not found" (404). Must not: render playlists or JSON (outputs do).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tern_core::cluster::message::{ArchiveEntry, DvrFacts, Message};
use tern_core::{segment_codec, Segment, StreamName};
use tern_net::{Clock, Net};
use tokio::sync::mpsc;

use crate::cluster::client::{ClientError, ClusterClient, MessageStream};
use crate::dvr::{Dvr, DvrError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Stored segments listed in one index answer (about 4.6 days of 2 s segments).
pub const MAX_INDEX_ENTRIES: usize = tern_core::cluster::message::MAX_ARCHIVE_ENTRIES;

/// Why an archive question has no answer. `Unreachable` and `Failed` carry two
/// texts: `shown`, all a player (no key) is told, and `detail` (the OS's words,
/// paths, a peer's own text) for the log and for authenticated peers (`End`).
/// `Display` gives both.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// Nothing stored there (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The archive lives on peers that cannot be reached now (HTTP 503).
    #[error("{shown}{}", with_detail(detail))]
    Unreachable { shown: String, detail: String },
    /// The request is too large or malformed (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Reading failed (HTTP 500).
    #[error("{shown}{}", with_detail(detail))]
    Failed { shown: String, detail: String },
}

fn with_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl ArchiveError {
    /// What a player may be told: no paths, no OS text, no peer's own words.
    pub fn shown(&self) -> &str {
        match self {
            ArchiveError::NotFound(s) | ArchiveError::BadRequest(s) => s,
            ArchiveError::Unreachable { shown, .. } | ArchiveError::Failed { shown, .. } => shown,
        }
    }

    fn unreachable(shown: String, detail: impl Into<String>) -> Self {
        ArchiveError::Unreachable {
            shown,
            detail: detail.into(),
        }
    }

    fn failed(shown: impl Into<String>, detail: impl Into<String>) -> Self {
        ArchiveError::Failed {
            shown: shown.into(),
            detail: detail.into(),
        }
    }
}

/// One segment of an archive range: the stored canonical bytes (local DVR: sent on
/// over M4F without decoding or copying) or a segment already decoded (from a peer).
pub enum ArchiveSegment {
    Stored(Bytes),
    Decoded(Segment),
}

impl ArchiveSegment {
    pub fn into_segment(self) -> Result<Segment, ArchiveError> {
        match self {
            ArchiveSegment::Decoded(s) => Ok(s),
            ArchiveSegment::Stored(b) => segment_codec::decode(b)
                .map_err(|e| ArchiveError::failed("a stored segment is damaged", e.to_string())),
        }
    }
}

/// The facts and the stored segments of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveIndex {
    pub facts: DvrFacts,
    pub entries: Vec<ArchiveEntry>,
}

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

fn dvr_error(e: DvrError) -> ArchiveError {
    match e {
        DvrError::NotFound { .. } => ArchiveError::NotFound(e.to_string()),
        other => ArchiveError::failed(
            "the archive cannot be read here (this node's log says why)",
            other.to_string(),
        ),
    }
}

impl Archive for Dvr {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move {
            let entries: Vec<ArchiveEntry> = match window {
                Some((from, to)) => self
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
            if entries.len() > MAX_INDEX_ENTRIES {
                return Err(ArchiveError::BadRequest(format!(
                    "the window holds {} segments, more than {MAX_INDEX_ENTRIES}: ask for a shorter one",
                    entries.len()
                )));
            }
            Ok(ArchiveIndex {
                facts: self.facts(),
                entries,
            })
        })
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
                    // Deleted since the listing (retention, a full disk): play what
                    // still exists.
                    Err(DvrError::NotFound { .. }) => continue,
                    // Damaged at rest (logged by `read`, naming the file): a gap,
                    // never corrupt bytes.
                    Err(DvrError::Damaged { .. }) => continue,
                    Err(e) => return Err(dvr_error(e)),
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

/// How long an edge waits for the next message of a peer's archive response before
/// it takes the peer as gone (the request then fails with a 503, or ends early).
pub const ARCHIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer's archive over M4F: the first reachable peer that records the stream
/// answers.
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

    /// `Err` if signaling says the peer does not record the stream.
    fn check_recorded(&self) -> Result<(), ArchiveError> {
        if self.signaled && self.facts_now().is_none() {
            return Err(ArchiveError::NotFound(format!(
                "stream {:?} has no archive: its source does not record it",
                self.name.as_str()
            )));
        }
        Ok(())
    }

    pub fn set_facts(&self, facts: Option<DvrFacts>) {
        *self.facts.lock().unwrap_or_else(|e| e.into_inner()) = facts;
    }
}

/// See [`RemoteArchive::broke_off`].
fn broke_off(name: &StreamName, peer: &str, why: &str) -> ArchiveError {
    ArchiveError::unreachable(
        format!(
            "the archive of stream {:?} on {peer} broke off (this node's log says why)",
            name.as_str()
        ),
        why,
    )
}

fn query(window: Option<(u64, u64)>) -> String {
    window.map_or(String::new(), |(f, t)| format!("?from={f}&to={t}"))
}

impl<N: Net, C: Clock> RemoteArchive<N, C> {
    /// Opens `path_of(peer's name for the stream)` on the first peer that answers;
    /// returns the message stream and that peer's address. A 404 from every peer
    /// that answered is "not found"; no answer at all is "unreachable".
    async fn open_first(
        &self,
        path_of: impl Fn(&StreamName) -> String,
    ) -> Result<(MessageStream, String), ArchiveError> {
        let mut errors = Vec::new();
        let mut not_found = None;
        for (host, port, remote) in &self.peers {
            match self.client.open(host, *port, &path_of(remote)).await {
                Ok(stream) => return Ok((stream, format!("{host}:{port}"))),
                Err(ClientError::Rejected {
                    status: 404, body, ..
                }) => not_found = Some(body),
                Err(ClientError::Rejected {
                    status: 400, body, ..
                }) => return Err(ArchiveError::BadRequest(body)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let peers = self
            .peers
            .iter()
            .map(|(h, p, _)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(match not_found {
            Some(nf) => ArchiveError::NotFound(nf),
            // The OS's and the peers' own words are the detail, not for players.
            None => ArchiveError::unreachable(
                format!(
                    "the archive of stream {:?} is on {peers}, which cannot be reached now",
                    self.name.as_str(),
                ),
                errors.join("; "),
            ),
        })
    }

    /// The next message of an archive response, or the reason there is none: a
    /// peer that sends nothing for [`ARCHIVE_IDLE_TIMEOUT`] is taken as gone (a cut
    /// link can hang a connection silently, and archive responses have no
    /// heartbeats: the server sends as fast as this node reads).
    #[allow(clippy::disallowed_methods)] // driver: the archive route's idle deadline on a peer's stream
    async fn next_message(
        &self,
        stream: &mut MessageStream,
        peer: &str,
    ) -> Result<Message, ArchiveError> {
        match tokio::time::timeout(ARCHIVE_IDLE_TIMEOUT, stream.next()).await {
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(self.broke_off(peer, "connection closed".into())),
            Ok(Err(e)) => Err(self.broke_off(peer, e.to_string())),
            Err(_) => Err(self.broke_off(
                peer,
                format!("nothing received for {ARCHIVE_IDLE_TIMEOUT:?}"),
            )),
        }
    }

    /// A peer that stopped answering mid-response, or answered with `End`. `why`
    /// (the peer's own `End` text, the OS's words) is the detail: logs and peers see
    /// it, players get a fixed text.
    fn broke_off(&self, peer: &str, why: String) -> ArchiveError {
        broke_off(&self.name, peer, &why)
    }
}

impl<N: Net, C: Clock> Archive for RemoteArchive<N, C> {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move {
            self.check_recorded()?;
            let (mut stream, peer) = self
                .open_first(|remote| format!("/tern/v1/dvr/{}{}", remote.as_str(), query(window)))
                .await?;
            loop {
                match self.next_message(&mut stream, &peer).await? {
                    Message::DvrIndex { facts, entries } => {
                        // Only what was asked for, whatever the peer listed.
                        let entries = tern_core::archive_window::clip_entries(entries, window);
                        return Ok(ArchiveIndex { facts, entries });
                    }
                    Message::Hello { .. } => {}
                    Message::End { reason } => return Err(self.broke_off(&peer, reason)),
                    other => {
                        return Err(self
                            .broke_off(&peer, format!("unexpected message type {}", other.kind())))
                    }
                }
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
            self.check_recorded()?;
            let (mut stream, peer) = self
                .open_first(|remote| {
                    format!(
                        "/tern/v1/archive/{}?from={from_ms}&to={to_ms}",
                        remote.as_str()
                    )
                })
                .await?;
            let mut sent = 0u32;
            loop {
                match self.next_message(&mut stream, &peer).await? {
                    Message::Segment(s) => {
                        if tx.send(ArchiveSegment::Decoded(s)).await.is_err() {
                            return Ok(sent);
                        }
                        sent += 1;
                    }
                    Message::ArchiveEnd { .. } => return Ok(sent),
                    Message::Hello { .. } | Message::Heartbeat { .. } => {}
                    Message::End { reason } => return Err(self.broke_off(&peer, reason)),
                    other => {
                        return Err(self
                            .broke_off(&peer, format!("unexpected message type {}", other.kind())))
                    }
                }
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
/// fetched through this node kept in a local store, so a second request does not
/// cross the link and cached segments still play while the peer is unreachable.
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

    /// One segment from the peer, stored in the cache on the way.
    async fn fetch(&self, utc_start_ms: u64) -> Result<Option<Segment>, ArchiveError> {
        let seg = fetch_segment(self.remote.as_ref(), utc_start_ms).await?;
        if let Some(s) = &seg {
            if let Err(e) = self.cache.record(s).await {
                tracing::warn!(stream = %self.cache.name(), error = %e, "cannot keep an archive segment in the cache");
            }
        }
        Ok(seg)
    }
}

impl Archive for CachedArchive {
    fn index(
        &self,
        window: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<ArchiveIndex, ArchiveError>> {
        Box::pin(async move {
            match self.remote.index(window).await {
                Err(ArchiveError::Unreachable { shown, detail }) => {
                    let ix = self.cache.index(window).await?;
                    let empty = match window {
                        Some(_) => ix.entries.is_empty(),
                        None => ix.facts.ranges.is_empty(),
                    };
                    if empty {
                        Err(ArchiveError::unreachable(
                            format!("{shown}; nothing of it is cached here"),
                            detail,
                        ))
                    } else {
                        Ok(ix)
                    }
                }
                other => other,
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
            let entries = self.index(Some((from_ms, to_ms))).await?.entries;
            let mut sent = 0;
            for e in entries {
                let seg = if self.is_cached(e.utc_start_ms) {
                    match self.cache.read(e.utc_start_ms).await {
                        Ok(b) => ArchiveSegment::Stored(b),
                        Err(err) => return Err(dvr_error(err)),
                    }
                } else {
                    match self.fetch(e.utc_start_ms).await {
                        Ok(Some(s)) => ArchiveSegment::Decoded(s),
                        Ok(None) => continue, // gone from the peer meanwhile (retention)
                        Err(ArchiveError::Unreachable { shown, detail }) => {
                            return Err(ArchiveError::unreachable(
                                format!(
                                    "segment {} is not cached here and {shown}",
                                    e.utc_start_ms
                                ),
                                detail,
                            ))
                        }
                        Err(other) => return Err(other),
                    }
                };
                if tx.send(seg).await.is_err() {
                    break;
                }
                sent += 1;
            }
            Ok(sent)
        })
    }

    fn facts_now(&self) -> Option<DvrFacts> {
        self.remote.facts_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 6: a peer's `End` reason went to players verbatim (a peer holding
    /// the key could put any text in front of them). It is logged; players get a
    /// fixed text naming the stream and the peer.
    #[test]
    fn a_peers_end_reason_is_not_passed_to_players() {
        let name = StreamName::new("main").unwrap_or_else(|e| panic!("{e}"));
        let e = broke_off(&name, "origin:8888", "call +1-555-SCAM for support");
        let said = e.shown();
        assert!(!said.contains("SCAM"), "{said}");
        // Logs and authenticated peers (`End`) still get the reason.
        assert!(e.to_string().contains("SCAM"), "{e}");
        assert!(
            said.contains("\"main\"") && said.contains("origin:8888") && said.contains("broke off"),
            "{said}"
        );
    }
}
