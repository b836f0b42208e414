//! The versions of the cluster protocols this build speaks, and what differs between
//! them (docs/protocol.md "Versions").
//!
//! Owns: the version numbers, their path prefixes and which message MAC each uses.
//! Must not: frame, sign or choose a version for a peer (the client negotiates; see
//! `node/src/cluster/client.rs`).

/// A cluster protocol version. v2 differs from v1 only in the per-message MAC (keyed
/// BLAKE3 instead of HMAC-SHA256, under keys derived with their own labels); the
/// request auth, the messages and the endpoints are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// Messages tagged with HMAC-SHA256 (`/tern/v1/`).
    V1,
    /// Messages tagged with keyed BLAKE3 (`/tern/v2/`).
    V2,
}

impl ProtocolVersion {
    /// The newest version this build speaks: what a client tries first.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2;
    /// Every version this build speaks, oldest first.
    pub const ALL: [ProtocolVersion; 2] = [ProtocolVersion::V1, ProtocolVersion::V2];

    /// The number in paths, `Hello` and logs.
    pub fn number(self) -> u16 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
        }
    }

    pub fn from_number(n: u16) -> Option<ProtocolVersion> {
        Self::ALL.into_iter().find(|v| v.number() == n)
    }

    /// `/tern/v1/` or `/tern/v2/`.
    pub fn path_prefix(self) -> &'static str {
        match self {
            ProtocolVersion::V1 => "/tern/v1/",
            ProtocolVersion::V2 => "/tern/v2/",
        }
    }

    /// The version of a cluster path and the endpoint after its prefix
    /// (`/tern/v2/m4s/main` → `(V2, "m4s/main")`), or `None` for any other path.
    pub fn split_path(path: &str) -> Option<(ProtocolVersion, &str)> {
        Self::ALL
            .into_iter()
            .find_map(|v| path.strip_prefix(v.path_prefix()).map(|rest| (v, rest)))
    }

    /// `v1 and v2`, for refusals that say what this build speaks.
    pub fn spoken() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|v| format!("v{}", v.number()))
            .collect();
        names.join(" and ")
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
        assert_eq!(ProtocolVersion::split_path("/tern/v3/streams"), None);
        assert_eq!(ProtocolVersion::split_path("/tern/v12/streams"), None);
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::from_number(v.number()), Some(v));
        }
        assert_eq!(ProtocolVersion::from_number(3), None);
        assert_eq!(ProtocolVersion::spoken(), "v1 and v2");
    }
}
