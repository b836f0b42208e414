//! The versions of the cluster protocols this build speaks, and what differs between
//! them (docs/protocol.md "Versions").
//!
//! Owns: the version numbers, their path prefixes, which message MAC each uses and
//! the order a client steps down in.
//! Must not: frame, sign or choose a version for a peer (the client negotiates:
//! `handshake.rs`).

/// What a node answers, with a `400`, to a path of a version it does not speak
/// (every version so far has said this; a client steps down on it).
pub const VERSION_MISMATCH: &str = "cluster protocol version mismatch";

/// A cluster protocol version. v2 differs from v1 only in the per-message MAC (keyed
/// BLAKE3 instead of HMAC-SHA256, under keys derived with their own labels); v3
/// differs from v2 only in how a segment with a digest is tagged (the MAC covers
/// the segment's header and digest, the digest covers the rest:
/// `SegmentByDigest`). The request auth, the other messages and the endpoints are
/// the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// Messages tagged with HMAC-SHA256 (`/tern/v1/`).
    V1,
    /// Messages tagged with keyed BLAKE3 (`/tern/v2/`).
    V2,
    /// As v2, but a segment with a digest is sent as `SegmentByDigest`, whose tag
    /// covers its header and digest only (`/tern/v3/`).
    V3,
}

impl ProtocolVersion {
    /// The newest version this build speaks: what a client tries first.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V3;
    /// Every version this build speaks, oldest first.
    pub const ALL: [ProtocolVersion; 3] = [
        ProtocolVersion::V1,
        ProtocolVersion::V2,
        ProtocolVersion::V3,
    ];

    /// The number in paths, `Hello` and logs.
    pub fn number(self) -> u16 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
            ProtocolVersion::V3 => 3,
        }
    }

    /// The version before this one (what a client asks next when a peer refuses
    /// this one), `None` for v1.
    pub fn older(self) -> Option<ProtocolVersion> {
        match self {
            ProtocolVersion::V1 => None,
            ProtocolVersion::V2 => Some(ProtocolVersion::V1),
            ProtocolVersion::V3 => Some(ProtocolVersion::V2),
        }
    }

    /// Whether a segment with a digest goes out as `SegmentByDigest` (its tag
    /// covering the digest, the digest covering the bytes): v3 and later.
    pub fn segments_by_digest(self) -> bool {
        self >= ProtocolVersion::V3
    }

    pub fn from_number(n: u16) -> Option<ProtocolVersion> {
        Self::ALL.into_iter().find(|v| v.number() == n)
    }

    /// `/tern/v1/` or `/tern/v2/`.
    pub fn path_prefix(self) -> &'static str {
        match self {
            ProtocolVersion::V1 => "/tern/v1/",
            ProtocolVersion::V2 => "/tern/v2/",
            ProtocolVersion::V3 => "/tern/v3/",
        }
    }

    /// The version of a cluster path and the endpoint after its prefix
    /// (`/tern/v2/m4s/main` → `(V2, "m4s/main")`), or `None` for any other path.
    pub fn split_path(path: &str) -> Option<(ProtocolVersion, &str)> {
        Self::ALL
            .into_iter()
            .find_map(|v| path.strip_prefix(v.path_prefix()).map(|rest| (v, rest)))
    }

    /// The body of the `400` refusing `path` (of a version this build does not
    /// speak): [`VERSION_MISMATCH`], then what this build speaks.
    pub fn mismatch_refusal(path: &str) -> String {
        format!(
            "{VERSION_MISMATCH}: this node speaks {} ({path:?})",
            Self::spoken()
        )
    }

    /// `v1, v2 and v3`, for refusals that say what this build speaks.
    pub fn spoken() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|v| format!("v{}", v.number()))
            .collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_numbers() {
        assert_eq!(
            ProtocolVersion::split_path("/tern/v2/m4s/main"),
            Some((ProtocolVersion::V2, "m4s/main"))
        );
        assert_eq!(
            ProtocolVersion::split_path("/tern/v1/streams"),
            Some((ProtocolVersion::V1, "streams"))
        );
        assert_eq!(
            ProtocolVersion::split_path("/tern/v3/archive/main"),
            Some((ProtocolVersion::V3, "archive/main"))
        );
        assert_eq!(ProtocolVersion::split_path("/tern/v4/streams"), None);
        assert_eq!(ProtocolVersion::split_path("/tern/v12/streams"), None);
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::from_number(v.number()), Some(v));
        }
        assert_eq!(ProtocolVersion::from_number(4), None);
        assert_eq!(ProtocolVersion::spoken(), "v1, v2 and v3");
        // Each version steps down to the one before it, down to v1.
        let mut chain = vec![ProtocolVersion::LATEST];
        while let Some(v) = chain.last().and_then(|v| v.older()) {
            chain.push(v);
        }
        chain.reverse();
        assert_eq!(chain, ProtocolVersion::ALL);
        assert!(!ProtocolVersion::V2.segments_by_digest());
        assert!(ProtocolVersion::V3.segments_by_digest());
    }
}
