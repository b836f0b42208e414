//! Discovery: what a `source` makes of the peer's stream lists. Every list that
//! comes over signaling goes in; out come the streams to add, to remove and to
//! update (the peer's archive facts), for the streams that pass `only` / `except`,
//! at most `max_streams` of them.
//!
//! Contract (core's, see lib.rs): `handle_streams`, then drain `poll_change`; the
//! driver reports a stream it could not add (`handle_refused`: a name the node
//! already has from elsewhere), which is offered again with the next list. Must not:
//! create anything itself or touch streams it did not add.

use std::collections::{BTreeMap, VecDeque};

use std::time::Duration;

use crate::cluster::message::StreamAnnounce;
use crate::config::{NamePattern, StaticStreams};
use crate::demand::PullMode;
use crate::StreamName;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new peer stream this source takes.
    Add(StreamAnnounce),
    /// The peer no longer has it (or it no longer passes the filters).
    Remove(StreamName),
    /// What the peer says of a stream already added changed: its archive facts,
    /// whether it is alive, or its media info (shown while the stream is not
    /// pulled here).
    Update(StreamAnnounce),
    /// The source is at its `max_streams`: `left_out` streams the peer announced
    /// (that pass the filters) are not taken. Emitted when that number changes, so
    /// the driver warns once, not once per list.
    LeftOut { left_out: usize, max: usize },
}

#[derive(Clone, Debug)]
pub struct Discovery {
    only: Vec<NamePattern>,
    except: Vec<NamePattern>,
    /// The streams added, with what was last passed on of each.
    mine: BTreeMap<StreamName, StreamAnnounce>,
    changes: VecDeque<Change>,
    /// `static`: the streams pulled all the time; the rest are pulled on demand.
    static_streams: StaticStreams,
    clients_timeout: Duration,
    /// Most streams taken from the peer (`max_streams`).
    max_streams: usize,
    /// Streams left out by the last list (reported when it changes).
    left_out: usize,
}

impl Discovery {
    pub fn new(only: Vec<NamePattern>, except: Vec<NamePattern>) -> Self {
        Discovery {
            only,
            except,
            mine: BTreeMap::new(),
            changes: VecDeque::new(),
            static_streams: StaticStreams::All,
            clients_timeout: Duration::ZERO,
            max_streams: crate::config::DEFAULT_MAX_STREAMS as usize,
            left_out: 0,
        }
    }

    /// Takes at most `max` of the peer's streams (`max_streams`; default
    /// [`crate::config::DEFAULT_MAX_STREAMS`]), so a peer that announces thousands
    /// cannot make this node create them all.
    pub fn with_max_streams(mut self, max: u32) -> Self {
        self.max_streams = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        self
    }

    /// Which streams are pulled on demand (all but `static_streams`), and how long
    /// after their last viewer. Without this, every stream is static.
    pub fn with_pull(mut self, static_streams: StaticStreams, clients_timeout: Duration) -> Self {
        self.static_streams = static_streams;
        self.clients_timeout = clients_timeout;
        self
    }

    /// How the stream `name` is pulled: always (`static`), or while watched.
    pub fn mode_for(&self, name: &StreamName) -> PullMode {
        if self.static_streams.covers(name) {
            PullMode::Static
        } else {
            PullMode::OnDemand {
                clients_timeout: self.clients_timeout,
            }
        }
    }

    /// Whether the source takes the peer's stream `name`: it matches `only` (if
    /// any) and no `except`.
    pub fn takes(&self, name: &StreamName) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p.matches(name)))
            && !self.except.iter().any(|p| p.matches(name))
    }

    /// The peer's full stream list.
    pub fn handle_streams(&mut self, list: Vec<StreamAnnounce>) {
        let wanted: BTreeMap<StreamName, StreamAnnounce> = list
            .into_iter()
            .filter(|s| self.takes(&s.name))
            .map(|s| (s.name.clone(), s))
            .collect();
        let gone: Vec<StreamName> = self
            .mine
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.mine.remove(&name);
            self.changes.push_back(Change::Remove(name));
        }
        // Streams already taken stay; new ones are taken in name order while
        // there is room.
        let mut left_out = 0;
        for (name, s) in wanted {
            let full = self.mine.len() >= self.max_streams;
            match self.mine.get_mut(&name) {
                Some(last) if *last != s => {
                    last.clone_from(&s);
                    self.changes.push_back(Change::Update(s));
                }
                Some(_) => {}
                None if full => left_out += 1,
                None => {
                    self.mine.insert(name, s.clone());
                    self.changes.push_back(Change::Add(s));
                }
            }
        }
        if left_out != self.left_out {
            self.left_out = left_out;
            self.changes.push_back(Change::LeftOut {
                left_out,
                max: self.max_streams,
            });
        }
    }

    /// The driver could not add `name`; it is offered again with the next list.
    pub fn handle_refused(&mut self, name: &StreamName) {
        self.mine.remove(name);
    }

    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The streams this source added (and has not removed).
    pub fn streams(&self) -> impl Iterator<Item = &StreamName> {
        self.mine.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::DvrFacts;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid name")
    }

    fn patterns(list: &[&str]) -> Vec<NamePattern> {
        list.iter()
            .map(|p| NamePattern::parse(p).expect("pattern"))
            .collect()
    }

    fn announce(n: &str, dvr: Option<DvrFacts>) -> StreamAnnounce {
        StreamAnnounce {
            name: name(n),
            alive: true,
            segment_duration_ms: 2000,
            media_info: None,
            dvr,
        }
    }

    fn drain(d: &mut Discovery) -> Vec<Change> {
        std::iter::from_fn(|| d.poll_change()).collect()
    }

    #[test]
    fn static_streams_and_on_demand_ones() {
        let d = Discovery::new(vec![], vec![]);
        assert_eq!(d.mode_for(&name("a")), PullMode::Static, "default");
        let t = Duration::from_secs(30);
        let d = Discovery::new(vec![], vec![]).with_pull(StaticStreams::None, t);
        assert_eq!(
            d.mode_for(&name("a")),
            PullMode::OnDemand { clients_timeout: t }
        );
        let d = Discovery::new(vec![], vec![])
            .with_pull(StaticStreams::Matching(patterns(&["cams/yard/*"])), t);
        assert_eq!(d.mode_for(&name("cams/yard/1")), PullMode::Static);
        assert_eq!(
            d.mode_for(&name("cams/gate/1")),
            PullMode::OnDemand { clients_timeout: t }
        );
        let d = Discovery::new(vec![], vec![]).with_pull(StaticStreams::All, t);
        assert_eq!(d.mode_for(&name("cams/gate/1")), PullMode::Static);
    }

    #[test]
    fn only_and_except_with_prefixes() {
        let d = Discovery::new(patterns(&["cams/*"]), patterns(&["cams/private/*"]));
        assert!(d.takes(&name("cams/yard/3")));
        assert!(!d.takes(&name("cams/private/1")));
        assert!(!d.takes(&name("main")));
        let d = Discovery::new(vec![], patterns(&["main"]));
        assert!(!d.takes(&name("main")));
        assert!(d.takes(&name("other")));
    }

    #[test]
    fn adds_removes_and_updates_as_the_list_changes() {
        let mut d = Discovery::new(vec![], patterns(&["hidden"]));
        d.handle_streams(vec![announce("a", None), announce("hidden", None)]);
        assert_eq!(drain(&mut d), vec![Change::Add(announce("a", None))]);
        // Same list: nothing.
        d.handle_streams(vec![announce("a", None)]);
        assert_eq!(drain(&mut d), vec![]);
        // New facts for a, b appears.
        let facts = DvrFacts::default();
        d.handle_streams(vec![
            announce("a", Some(facts.clone())),
            announce("b", None),
        ]);
        assert_eq!(
            drain(&mut d),
            vec![
                Change::Update(announce("a", Some(facts.clone()))),
                Change::Add(announce("b", None)),
            ]
        );
        // a dies on the peer: passed on too.
        let mut dead = announce("a", Some(facts.clone()));
        dead.alive = false;
        d.handle_streams(vec![dead.clone(), announce("b", None)]);
        assert_eq!(drain(&mut d), vec![Change::Update(dead)]);
        d.handle_streams(vec![
            announce("a", Some(facts.clone())),
            announce("b", None),
        ]);
        drain(&mut d);
        // a is gone.
        d.handle_streams(vec![announce("b", None)]);
        assert_eq!(drain(&mut d), vec![Change::Remove(name("a"))]);
        // The driver refused b: offered again next time.
        d.handle_refused(&name("b"));
        d.handle_streams(vec![announce("b", None)]);
        assert_eq!(drain(&mut d), vec![Change::Add(announce("b", None))]);
        assert_eq!(d.streams().collect::<Vec<_>>(), vec![&name("b")]);
    }

    /// Finding 4: a peer announcing 1 000 streams (all answering 404) made the edge
    /// create them all. The source takes at most `max_streams`; the rest are left
    /// out, reported once per change, and taken when room appears.
    #[test]
    fn takes_at_most_max_streams() {
        let list = |n: usize| -> Vec<StreamAnnounce> {
            (0..n)
                .map(|i| announce(&format!("s{i:04}"), None))
                .collect()
        };
        let mut d = Discovery::new(vec![], vec![]).with_max_streams(3);
        d.handle_streams(list(1000));
        let changes = drain(&mut d);
        let added: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Add(s) => Some(s.name.as_str().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(added, vec!["s0000", "s0001", "s0002"]);
        assert_eq!(
            changes.last(),
            Some(&Change::LeftOut {
                left_out: 997,
                max: 3
            })
        );
        // The same list again: nothing to do, nothing to report again.
        d.handle_streams(list(1000));
        assert_eq!(drain(&mut d), vec![]);
        // s0001 goes away: its place goes to the next stream.
        let mut l = list(1000);
        l.remove(1);
        d.handle_streams(l);
        assert_eq!(
            drain(&mut d),
            vec![
                Change::Remove(name("s0001")),
                Change::Add(announce("s0003", None)),
                Change::LeftOut {
                    left_out: 996,
                    max: 3
                },
            ]
        );
        // Back under the cap: reported once as 0.
        d.handle_streams(list(2));
        let changes = drain(&mut d);
        assert_eq!(
            changes.last(),
            Some(&Change::LeftOut {
                left_out: 0,
                max: 3
            })
        );
        assert_eq!(d.streams().count(), 2);
        // The default is 1000.
        let mut d = Discovery::new(vec![], vec![]);
        d.handle_streams(list(1500));
        assert_eq!(d.streams().count(), 1000);
    }
}
