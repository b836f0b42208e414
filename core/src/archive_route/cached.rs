//! A cached archive (`cache PATH DEPTH LIMIT;` of a `source`): the peer's archive,
//! with every segment fetched through this node kept in a local store, so a second
//! request does not cross the link and cached segments still play while the peer is
//! unreachable.
//!
//! [`cached_index`] decides an index answer from the peer's answer and the
//! cache's; [`CachedRange`] is the machine of a range: per listed segment, read
//! it from the cache or fetch it from the peer (and keep it), and what each
//! failure means. Contract (core's, see lib.rs): drain `poll_action` after every
//! input; each action names the input that answers it.

use std::collections::VecDeque;

use bytes::Bytes;

use super::local::{after_read_failure, AfterFailure, ReadFailure};
use super::{ArchiveError, ArchiveIndex, ArchiveSegment};
use crate::cluster::message::ArchiveEntry;
use crate::Segment;

/// A cached archive's index: the peer's answer, or, when the peer cannot be
/// reached, what the cache holds (`cache()`, asked only then). An empty cache keeps
/// the peer's 503.
pub fn cached_index(
    window: Option<(u64, u64)>,
    remote: Result<ArchiveIndex, ArchiveError>,
    cache: impl FnOnce() -> Result<ArchiveIndex, ArchiveError>,
) -> Result<ArchiveIndex, ArchiveError> {
    match remote {
        Err(ArchiveError::Unreachable { shown, detail }) => {
            let ix = cache()?;
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
}

#[derive(Clone, Debug)]
pub enum CachedAction {
    /// Is the segment starting at this UTC in the cache? Answer `handle_lookup`.
    Lookup(u64),
    /// Read it from the cache. Answer `handle_cache_read`.
    ReadCache(u64),
    /// Fetch it from the peer. Answer `handle_fetched`.
    Fetch(u64),
    /// Keep this fetched segment in the cache (a failure is only logged), then
    /// deliver it like `Deliver`.
    Keep(Segment),
    /// Give this segment to the reader. Answer `handle_delivered` or
    /// `handle_reader_gone`.
    Deliver(ArchiveSegment),
    /// The range is over: this many segments were delivered.
    Done(u32),
    /// The range failed.
    Failed(ArchiveError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the answer about this segment.
    Busy(u64),
    Over,
}

/// The segments `entries` (a cached index's entries of the range) one at a time.
#[derive(Debug)]
pub struct CachedRange {
    entries: VecDeque<ArchiveEntry>,
    state: State,
    sent: u32,
    actions: VecDeque<CachedAction>,
}

impl CachedRange {
    pub fn new(entries: Vec<ArchiveEntry>) -> Self {
        let mut r = CachedRange {
            entries: entries.into(),
            state: State::Over,
            sent: 0,
            actions: VecDeque::new(),
        };
        r.next();
        r
    }

    fn next(&mut self) {
        match self.entries.pop_front() {
            Some(e) => {
                self.state = State::Busy(e.utc_start_ms);
                self.actions.push_back(CachedAction::Lookup(e.utc_start_ms));
            }
            None => self.finish(CachedAction::Done(self.sent)),
        }
    }

    fn finish(&mut self, last: CachedAction) {
        self.state = State::Over;
        self.entries.clear();
        self.actions.push_back(last);
    }

    pub fn handle_lookup(&mut self, cached: bool) {
        if let State::Busy(utc) = self.state {
            self.actions.push_back(if cached {
                CachedAction::ReadCache(utc)
            } else {
                CachedAction::Fetch(utc)
            });
        }
    }

    /// The cache's bytes of the segment, or why they cannot be read: a segment the
    /// cache lost since its listing (evicted) or holds damaged is fetched from the
    /// peer instead; any other failure ends the range (see [`after_read_failure`]).
    pub fn handle_cache_read(&mut self, read: Result<Bytes, ReadFailure>) {
        if let State::Busy(utc) = self.state {
            match read {
                Ok(b) => self
                    .actions
                    .push_back(CachedAction::Deliver(ArchiveSegment::Stored(b))),
                Err(f) => match after_read_failure(f) {
                    AfterFailure::Skip => self.actions.push_back(CachedAction::Fetch(utc)),
                    AfterFailure::Fail(e) => self.finish(CachedAction::Failed(e)),
                },
            }
        }
    }

    /// The peer's answer for the segment: `None` when the peer no longer has it
    /// (retention), which skips it.
    pub fn handle_fetched(&mut self, fetched: Result<Option<Segment>, ArchiveError>) {
        let State::Busy(utc) = self.state else {
            return;
        };
        match fetched {
            Ok(Some(s)) => self.actions.push_back(CachedAction::Keep(s)),
            Ok(None) => self.next(), // gone from the peer meanwhile (retention)
            Err(ArchiveError::Unreachable { shown, detail }) => {
                self.finish(CachedAction::Failed(ArchiveError::unreachable(
                    format!("segment {utc} is not cached here and {shown}"),
                    detail,
                )))
            }
            Err(other) => self.finish(CachedAction::Failed(other)),
        }
    }

    /// The reader took the segment: on to the next.
    pub fn handle_delivered(&mut self) {
        if let State::Busy(_) = self.state {
            self.sent += 1;
            self.next();
        }
    }

    /// The reader left: the range ends with what it took.
    pub fn handle_reader_gone(&mut self) {
        if let State::Busy(_) = self.state {
            self.finish(CachedAction::Done(self.sent));
        }
    }

    pub fn poll_action(&mut self) -> Option<CachedAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::DvrFacts;

    fn entry(utc: u64) -> ArchiveEntry {
        ArchiveEntry {
            utc_start_ms: utc,
            duration_ms: 2000,
            discontinuity: false,
        }
    }

    fn seg(utc: u64) -> Segment {
        Segment {
            media_info: std::sync::Arc::new(crate::media::MediaInfo::default()),
            utc_start_ms: utc,
            duration_ms: 2000,
            frames: Vec::new(),
        }
    }

    fn ix(entries: Vec<ArchiveEntry>, ranges: Vec<(u64, u64)>) -> ArchiveIndex {
        ArchiveIndex {
            facts: DvrFacts {
                depth_secs: 0,
                ranges,
            },
            entries,
        }
    }

    fn unreachable() -> ArchiveError {
        ArchiveError::unreachable("the archive of stream \"cam\" is on o:1", "refused")
    }

    #[test]
    fn the_cache_answers_an_index_only_when_the_peer_is_unreachable() {
        let w = Some((0, 10_000));
        let peer = ix(vec![entry(0)], vec![(0, 2000)]);
        let cache = ix(vec![entry(2000)], vec![(2000, 2000)]);
        let asked = std::cell::Cell::new(false);
        let got = cached_index(w, Ok(peer.clone()), || {
            asked.set(true);
            Ok(cache.clone())
        });
        assert_eq!(got, Ok(peer));
        assert!(!asked.get(), "the cache is not read while the peer answers");
        let nf = ArchiveError::NotFound("none".into());
        assert_eq!(
            cached_index(w, Err(nf.clone()), || Ok(cache.clone())),
            Err(nf)
        );
        assert_eq!(
            cached_index(w, Err(unreachable()), || Ok(cache.clone())),
            Ok(cache.clone())
        );
        // Nothing cached: still a 503, saying so.
        let e = cached_index(w, Err(unreachable()), || Ok(ix(vec![], vec![(0, 1)])))
            .err()
            .unwrap_or_else(|| panic!("an empty cache answered"));
        assert_eq!(e.status(), 503);
        assert!(
            e.shown().ends_with("nothing of it is cached here"),
            "{}",
            e.shown()
        );
        // Without a window, the facts' ranges say whether anything is cached.
        assert!(cached_index(None, Err(unreachable()), || Ok(ix(vec![], vec![]))).is_err());
        assert!(cached_index(None, Err(unreachable()), || Ok(ix(vec![], vec![(0, 1)]))).is_ok());
    }

    fn drain(r: &mut CachedRange) -> Vec<CachedAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    #[test]
    fn cached_segments_are_read_others_fetched_and_kept() {
        let mut r = CachedRange::new(vec![entry(0), entry(2000), entry(4000)]);
        assert!(matches!(drain(&mut r)[..], [CachedAction::Lookup(0)]));
        r.handle_lookup(true);
        assert!(matches!(drain(&mut r)[..], [CachedAction::ReadCache(0)]));
        r.handle_cache_read(Ok(Bytes::from_static(b"stored")));
        assert!(matches!(
            drain(&mut r)[..],
            [CachedAction::Deliver(ArchiveSegment::Stored(_))]
        ));
        r.handle_delivered();
        assert!(matches!(drain(&mut r)[..], [CachedAction::Lookup(2000)]));
        r.handle_lookup(false);
        assert!(matches!(drain(&mut r)[..], [CachedAction::Fetch(2000)]));
        r.handle_fetched(Ok(Some(seg(2000))));
        assert!(matches!(&drain(&mut r)[..], [CachedAction::Keep(s)] if s.utc_start_ms == 2000));
        r.handle_delivered();
        drain(&mut r);
        r.handle_lookup(false);
        drain(&mut r);
        // Gone from the peer meanwhile (retention): skipped.
        r.handle_fetched(Ok(None));
        assert!(matches!(drain(&mut r)[..], [CachedAction::Done(2)]));
    }

    #[test]
    fn a_segment_the_cache_lost_or_damaged_is_fetched_an_io_error_ends_the_range() {
        for lost in [ReadFailure::Missing, ReadFailure::Damaged] {
            let mut r = CachedRange::new(vec![entry(0)]);
            drain(&mut r);
            r.handle_lookup(true);
            drain(&mut r);
            r.handle_cache_read(Err(lost));
            assert!(matches!(drain(&mut r)[..], [CachedAction::Fetch(0)]));
            r.handle_fetched(Ok(Some(seg(0))));
            assert!(matches!(&drain(&mut r)[..], [CachedAction::Keep(_)]));
        }
        let mut r = CachedRange::new(vec![entry(0), entry(2000)]);
        drain(&mut r);
        r.handle_lookup(true);
        drain(&mut r);
        r.handle_cache_read(Err(ReadFailure::Other("EIO".into())));
        assert!(matches!(&drain(&mut r)[..], [CachedAction::Failed(e)] if e.status() == 500));
    }

    #[test]
    fn an_uncached_segment_of_an_unreachable_peer_is_a_503_naming_it() {
        let mut r = CachedRange::new(vec![entry(0), entry(2000)]);
        drain(&mut r);
        r.handle_lookup(false);
        drain(&mut r);
        r.handle_fetched(Err(unreachable()));
        match &drain(&mut r)[..] {
            [CachedAction::Failed(e)] => {
                assert_eq!(e.status(), 503);
                assert!(
                    e.shown().starts_with("segment 0 is not cached here and "),
                    "{}",
                    e.shown()
                );
                assert!(e.to_string().contains("refused"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Other failures pass as they are; a cache that cannot read what it listed
        // fails the range.
        let mut r = CachedRange::new(vec![entry(0)]);
        drain(&mut r);
        r.handle_lookup(false);
        drain(&mut r);
        r.handle_fetched(Err(ArchiveError::BadRequest("x".into())));
        assert!(matches!(
            &drain(&mut r)[..],
            [CachedAction::Failed(ArchiveError::BadRequest(_))]
        ));
        // A cache read failing: see the next test.
    }

    #[test]
    fn the_reader_leaving_ends_the_range_and_an_empty_range_is_done_at_once() {
        let mut r = CachedRange::new(vec![entry(0), entry(2000)]);
        drain(&mut r);
        r.handle_lookup(true);
        drain(&mut r);
        r.handle_cache_read(Ok(Bytes::new()));
        drain(&mut r);
        r.handle_reader_gone();
        assert!(matches!(drain(&mut r)[..], [CachedAction::Done(0)]));
        let mut r = CachedRange::new(Vec::new());
        assert!(matches!(drain(&mut r)[..], [CachedAction::Done(0)]));
    }
}
