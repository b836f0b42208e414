//! What a config reload changes: old config + new config -> which streams are
//! added, removed, changed (restarted) or unchanged (left running, viewers kept),
//! and which node-wide settings differ but take a restart of the node.
//!
//! Owns: the decision only. Must not: start or stop anything (the node applies the
//! diff) or read files.

use super::model::{Config, StreamConfig};
use crate::stream_name::StreamName;

/// The streams of a reload, each list in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamDiff {
    /// In the new config only: started.
    pub added: Vec<StreamName>,
    /// In the old config only: stopped (their viewers end).
    pub removed: Vec<StreamName>,
    /// In both, but running them differs: stopped and started again.
    pub changed: Vec<StreamName>,
    /// In both and the same: left running, viewers keep playing.
    pub unchanged: Vec<StreamName>,
}

impl StreamDiff {
    /// Whether nothing is started or stopped.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything that decides how a stream runs: its block, and what it takes from
/// the top level (segment duration, the cluster key of its cluster inputs).
fn runs_the_same(old: &Config, a: &StreamConfig, new: &Config, b: &StreamConfig) -> bool {
    a == b
        && a.segment_duration_ms(old) == b.segment_duration_ms(new)
        && a.inputs
            .iter()
            .zip(&b.inputs)
            .all(|(x, y)| !x.url.is_cluster() || old.key_for_input(x) == new.key_for_input(y))
}

/// The stream diff of a reload from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> StreamDiff {
    let mut d = StreamDiff::default();
    for b in &new.streams {
        match old.stream(&b.name) {
            None => d.added.push(b.name.clone()),
            Some(a) if runs_the_same(old, a, new, b) => d.unchanged.push(b.name.clone()),
            Some(_) => d.changed.push(b.name.clone()),
        }
    }
    for a in &old.streams {
        if new.stream(&a.name).is_none() {
            d.removed.push(a.name.clone());
        }
    }
    for v in [
        &mut d.added,
        &mut d.removed,
        &mut d.changed,
        &mut d.unchanged,
    ] {
        v.sort();
    }
    d
}

/// The node-wide settings that differ between `old` and `new` and are applied only
/// when the node restarts (listeners, connection limits, the cluster key the node
/// answers peers with, the cluster bandwidth, sources, the RTMP port). A reload
/// applies the streams and the API's credentials (`view_auth`, `edit_auth`).
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.http != new.http {
        out.push("http");
    }
    if old.limits != new.limits {
        out.push(
            "max_connections, max_connections_per_ip, header_timeout, idle_timeout, stall_timeout",
        );
    }
    if old.cluster_key != new.cluster_key {
        out.push("cluster_key");
    }
    if old.cluster_bandwidth_bps != new.cluster_bandwidth_bps {
        out.push("cluster_bandwidth");
    }
    if old.sources != new.sources {
        out.push("source");
    }
    if old.rtmp != new.rtmp {
        out.push("rtmp");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn cfg(text: &str) -> Config {
        parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn names(v: &[StreamName]) -> Vec<&str> {
        v.iter().map(|n| n.as_str()).collect()
    }

    #[test]
    fn config_diff_sorts_streams_into_four_sets() {
        let old = cfg("http 0;\n\
            stream keep { input fake://fake; }\n\
            stream gone { input fake://fake; }\n\
            stream edit { input fake://fake; }\n\
            stream dvr { input fake://fake; dvr /d 1d; }\n");
        let new = cfg("http 0;\n\
            stream new { input fake://fake; }\n\
            stream edit { input fake://fake?fps=30; }\n\
            stream keep { input fake://fake; }\n\
            stream dvr { input fake://fake; dvr /d 2d; }\n");
        let d = diff(&old, &new);
        assert_eq!(names(&d.added), ["new"]);
        assert_eq!(names(&d.removed), ["gone"]);
        assert_eq!(names(&d.changed), ["dvr", "edit"]);
        assert_eq!(names(&d.unchanged), ["keep"]);
        assert!(!d.is_empty());
        assert!(diff(&new, &new).is_empty());
        assert_eq!(
            names(&diff(&new, &new).unchanged),
            ["dvr", "edit", "keep", "new"]
        );
    }

    #[test]
    fn config_diff_sees_what_streams_take_from_the_top_level() {
        let base = "stream a { input fake://fake; }\n\
            stream b { input fake://fake; segment_duration 4; }\n\
            stream c { input m4s://o:1/c; }\n";
        let old = cfg(&format!("http 0;\ncluster_key k1;\n{base}"));
        // The top-level segment duration restarts `a` and `c` (which inherit it),
        // not `b`.
        let new = cfg(&format!(
            "http 0;\ncluster_key k1;\nsegment_duration 3;\n{base}"
        ));
        let d = diff(&old, &new);
        assert_eq!(names(&d.changed), ["a", "c"]);
        assert_eq!(names(&d.unchanged), ["b"]);
        // A written default is the same as none.
        let same = cfg(&format!(
            "http 0;\ncluster_key k1;\nsegment_duration 2;\n{base}"
        ));
        assert!(diff(&old, &same).is_empty());
        // The top-level key restarts the cluster input `c` only.
        let rekeyed = cfg(&format!("http 0;\ncluster_key k2;\n{base}"));
        let d = diff(&old, &rekeyed);
        assert_eq!(names(&d.changed), ["c"]);
        assert_eq!(restart_needed(&old, &rekeyed), ["cluster_key"]);
        // Its own key overrides the top one: no change then.
        let own = "stream c { input m4s://o:1/c cluster_key=mine; }\n";
        let a = cfg(&format!("http 0;\ncluster_key k1;\n{own}"));
        let b = cfg(&format!("http 0;\ncluster_key k2;\n{own}"));
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn config_diff_names_what_needs_a_restart() {
        let old = cfg("http 8080;\nstream a { input fake://fake; }\n");
        assert!(restart_needed(&old, &old).is_empty());
        let new = cfg("http 8081;\nedit_auth admin secret;\nmax_connections 10;\n\
            cluster_key k;\ncluster_bandwidth 10M;\nsource m4s://o:1;\nrtmp 1935;\n\
            stream a { input fake://fake; }\n");
        assert_eq!(
            restart_needed(&old, &new),
            [
                "http",
                "max_connections, max_connections_per_ip, header_timeout, idle_timeout, stall_timeout",
                "cluster_key",
                "cluster_bandwidth",
                "source",
                "rtmp"
            ]
        );
        assert!(diff(&old, &new).is_empty(), "{:?}", diff(&old, &new));
    }
}
