//! `StreamName`: a stream's name, valid by construction (docs/design.md §2).
//!
//! Owns: the naming rule and splitting a request path into name + output. Must not:
//! know about outputs' meaning (that is the node's HTTP router).

use std::fmt;

/// Longest stream name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A stream name such as `main` or `cams/yard/3`: letters, digits and `_ - . /`,
/// no empty segment, no `.` or `..` segment, no leading or trailing `/`. It can never
/// escape a directory when used as a path, by construction.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("stream name is empty")]
    Empty,
    #[error("stream name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("stream name may hold only letters, digits and `_ - . /`, found {0:?}")]
    BadChar(char),
    #[error("stream name has an empty segment (leading, trailing or double `/`)")]
    EmptySegment,
    #[error("stream name has a `.` or `..` segment")]
    DotSegment,
}

impl StreamName {
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
        {
            return Err(NameError::BadChar(c));
        }
        for seg in s.split('/') {
            match seg {
                "" => return Err(NameError::EmptySegment),
                "." | ".." => return Err(NameError::DotSegment),
                _ => {}
            }
        }
        Ok(StreamName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits a request path `/NAME/OUTPUT` into the stream name and the last path
    /// component, which selects the output (`index.m3u8`, `mpegts`, ...).
    pub fn split_path(path: &str) -> Result<(StreamName, &str), NameError> {
        let path = path.strip_prefix('/').unwrap_or(path);
        match path.rsplit_once('/') {
            Some((name, output)) => Ok((StreamName::new(name)?, output)),
            None => Err(NameError::Empty),
        }
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for StreamName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["main", "cams/yard/3", "a.b-c_d", "x/y.z", "...a"] {
            assert_eq!(StreamName::new(n).map(|s| s.to_string()), Ok(n.to_string()));
        }
    }

    #[test]
    fn refuses_escaping_names() {
        assert_eq!(StreamName::new(""), Err(NameError::Empty));
        assert_eq!(StreamName::new("../etc"), Err(NameError::DotSegment));
        assert_eq!(StreamName::new("a/../b"), Err(NameError::DotSegment));
        assert_eq!(StreamName::new("a/./b"), Err(NameError::DotSegment));
        assert_eq!(StreamName::new("/abs"), Err(NameError::EmptySegment));
        assert_eq!(StreamName::new("a//b"), Err(NameError::EmptySegment));
        assert_eq!(StreamName::new("a/"), Err(NameError::EmptySegment));
        assert_eq!(StreamName::new("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(StreamName::new("a%2e"), Err(NameError::BadChar('%')));
        assert_eq!(StreamName::new("a\\b"), Err(NameError::BadChar('\\')));
        assert_eq!(StreamName::new(&"a".repeat(300)), Err(NameError::TooLong));
    }

    #[test]
    fn splits_paths() {
        let (n, o) = StreamName::split_path("/cams/yard/3/index.m3u8").unwrap();
        assert_eq!((n.as_str(), o), ("cams/yard/3", "index.m3u8"));
        let (n, o) = StreamName::split_path("/main/mpegts").unwrap();
        assert_eq!((n.as_str(), o), ("main", "mpegts"));
        assert!(StreamName::split_path("/mpegts").is_err());
        assert!(StreamName::split_path("/../x/mpegts").is_err());
    }
}
