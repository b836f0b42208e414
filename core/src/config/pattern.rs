//! `NamePattern`: the stream names `only` and `except` of a `source` block select.
//!
//! Owns: the pattern forms (`name`, `prefix/*`) and matching. Must not: know about
//! sources or positions (the `source` directive reports errors with them).

use std::fmt;

use crate::stream_name::StreamName;

/// A stream name, or every name under a prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NamePattern {
    /// Exactly this name.
    Exact(StreamName),
    /// `prefix/*`: every name under `prefix/`, at any depth (`cams/*` matches
    /// `cams/3` and `cams/yard/3`), but not `prefix` itself.
    Prefix(StreamName),
}

impl NamePattern {
    /// Parses `name` or `prefix/*`; the message says what is wrong.
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        if s == "*" {
            return Err(
                "a lone `*` matches every stream, which is what a source does without \
                 `only`: leave it out"
                    .to_owned(),
            );
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            if prefix.contains('*') {
                return Err(format!(
                    "bad pattern `{s}`: `*` may only be the whole last segment, as in `cams/*`"
                ));
            }
            return StreamName::new(prefix)
                .map(NamePattern::Prefix)
                .map_err(|e| format!("bad pattern `{s}`: {e}"));
        }
        if s.contains('*') {
            return Err(format!(
                "bad pattern `{s}`: `*` may only be the whole last segment, as in `cams/*`"
            ));
        }
        StreamName::new(s)
            .map(NamePattern::Exact)
            .map_err(|e| format!("bad stream name `{s}`: {e}"))
    }

    pub fn matches(&self, name: &StreamName) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Prefix(p) => name
                .as_str()
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => write!(f, "{n}"),
            NamePattern::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pat(s: &str) -> NamePattern {
        NamePattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_pattern_prefix_matches_names_under_it() {
        let p = pat("cams/*");
        assert_eq!(p, NamePattern::Prefix(name("cams")));
        assert!(p.matches(&name("cams/3")));
        assert!(p.matches(&name("cams/yard/3")));
        assert!(!p.matches(&name("cams")));
        assert!(!p.matches(&name("camsx/3")));
        assert!(!p.matches(&name("other/cams/3")));
        assert!(pat("cams/yard/*").matches(&name("cams/yard/3")));
        assert!(!pat("cams/yard/*").matches(&name("cams/3")));
        assert_eq!(p.to_string(), "cams/*");
    }

    #[test]
    fn config_pattern_exact_matches_only_the_name() {
        let p = pat("cams/yard/3");
        assert!(p.matches(&name("cams/yard/3")));
        assert!(!p.matches(&name("cams/yard/30")));
        assert!(!p.matches(&name("cams/yard")));
    }

    #[test]
    fn config_pattern_refuses_bad_forms() {
        for bad in [
            "*", "cams*", "*/x", "a/*/b", "a/**", "../x", "/*", "a//*", "",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
