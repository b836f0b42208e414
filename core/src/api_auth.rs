//! Who may use the operator's API and status page: `view_auth USER PASS;` and
//! `edit_auth USER PASS;`, checked against HTTP Basic, or Bearer where the token is
//! the password (Flussonic's rule).
//!
//! Owns: the credentials (never shown by `Debug`), reading an `Authorization`
//! header, and the decision. Comparisons are in constant time: both sides are
//! hashed with BLAKE3 and the digests compared with `blake3::Hash`'s constant-time
//! equality, so neither the length nor the content of a guess shows in the timing.
//! Must not: know URLs (the node says which access a request needs) or log.

use std::fmt;

/// A user name and password from `view_auth` / `edit_auth`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    /// BLAKE3 of `user`, NUL, `password` (Basic) and of the password alone (Bearer).
    pair: blake3::Hash,
    pass: blake3::Hash,
}

impl Credentials {
    /// `None` for an empty user or password, or a user with a `:` (Basic could not
    /// carry it).
    pub fn new(user: &str, password: &str) -> Option<Credentials> {
        if user.is_empty() || password.is_empty() || user.contains(':') {
            return None;
        }
        Some(Credentials {
            user: user.to_owned(),
            pair: pair_hash(user.as_bytes(), password.as_bytes()),
            pass: blake3::hash(password.as_bytes()),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn matches(&self, given: &Given) -> bool {
        match given {
            // Hash equality is constant-time; both are computed either way.
            Given::Basic { pair } => *pair == self.pair,
            Given::Bearer { pass } => *pass == self.pass,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.user)
    }
}

fn pair_hash(user: &[u8], pass: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(user);
    h.update(&[0]);
    h.update(pass);
    h.finalize()
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading: the API's GETs, `/metrics`, the status page at `/`.
    View,
    /// Changing: the API's `PUT` and `DELETE`.
    Edit,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this needs credentials: send HTTP Basic (view_auth or edit_auth user and password) or `Authorization: Bearer PASSWORD`")]
    Missing,
    #[error("unreadable Authorization header: {0}")]
    Malformed(&'static str),
    #[error("wrong credentials")]
    Wrong,
    #[error("these are the view_auth credentials: changing needs edit_auth's")]
    ViewOnly,
    #[error("changing streams through the API is off: the config has no edit_auth")]
    NoEditAuth,
}

impl AuthError {
    /// `401` (the client may try credentials: with `WWW-Authenticate`) or `403`.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::Wrong => 401,
            AuthError::ViewOnly | AuthError::NoEditAuth => 403,
        }
    }
}

/// `WWW-Authenticate` of a `401`.
pub const CHALLENGE: &str = "Basic realm=\"tern\", charset=\"UTF-8\"";

/// The credentials of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiAuth {
    pub view: Option<Credentials>,
    pub edit: Option<Credentials>,
}

/// What an `Authorization` header carried, hashed.
enum Given {
    Basic { pair: blake3::Hash },
    Bearer { pass: blake3::Hash },
}

fn read_header(h: &str) -> Result<Given, AuthError> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64_decode(rest).ok_or(AuthError::Malformed("Basic value is not base64"))?;
        let colon = raw
            .iter()
            .position(|&b| b == b':')
            .ok_or(AuthError::Malformed("Basic value has no `user:password`"))?;
        Ok(Given::Basic {
            pair: pair_hash(&raw[..colon], &raw[colon + 1..]),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(AuthError::Malformed("Bearer without a token"));
        }
        Ok(Given::Bearer {
            pass: blake3::hash(rest.as_bytes()),
        })
    } else {
        Err(AuthError::Malformed("expected Basic or Bearer"))
    }
}

impl ApiAuth {
    /// Whether anything is guarded (reading is open when neither is set).
    pub fn guarded(&self) -> bool {
        self.view.is_some() || self.edit.is_some()
    }

    /// Decides a request that needs `need`, with its `Authorization` header.
    ///
    /// - Reading is open when neither `view_auth` nor `edit_auth` is set; otherwise
    ///   it takes either's credentials (who may change may also look).
    /// - Changing takes only `edit_auth`'s, and is off without it.
    pub fn check(&self, need: Access, authorization: Option<&str>) -> Result<(), AuthError> {
        if need == Access::View && !self.guarded() {
            return Ok(());
        }
        if need == Access::Edit && self.edit.is_none() {
            return Err(AuthError::NoEditAuth);
        }
        let given = read_header(authorization.ok_or(AuthError::Missing)?)?;
        // Check both, always, so the time does not say which one matched.
        let edit = self.edit.as_ref().is_some_and(|c| c.matches(&given));
        let view = self.view.as_ref().is_some_and(|c| c.matches(&given));
        match need {
            _ if edit => Ok(()),
            Access::View if view => Ok(()),
            Access::Edit if view => Err(AuthError::ViewOnly),
            _ => Err(AuthError::Wrong),
        }
    }
}

/// Standard base64 (RFC 4648, `+/`, padding optional); `None` if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone 6-bit group cannot end a base64 text.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        // Encoded by hand through the table below, checked by the decoder test.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let raw = format!("{user}:{pass}").into_bytes();
        let mut s = String::new();
        for c in raw.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        format!("Basic {s}")
    }

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("YWxhZGRpbjpvcGVuc2VzYW1l").as_deref(),
            Some(&b"aladdin:opensesame"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("Y"), None);
        assert_eq!(base64_decode("a*b"), None);
        assert_eq!(
            basic("aladdin", "opensesame"),
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l"
        );
    }

    #[test]
    fn decisions() {
        let open = ApiAuth::default();
        assert_eq!(open.check(Access::View, None), Ok(()));
        assert_eq!(open.check(Access::Edit, None), Err(AuthError::NoEditAuth));

        let auth = ApiAuth {
            view: Credentials::new("viewer", "v-pass"),
            edit: Credentials::new("admin", "e-pass"),
        };
        assert_eq!(auth.check(Access::View, None), Err(AuthError::Missing));
        assert_eq!(
            auth.check(Access::View, Some(&basic("viewer", "v-pass"))),
            Ok(())
        );
        assert_eq!(
            auth.check(Access::View, Some(&basic("admin", "e-pass"))),
            Ok(())
        );
        assert_eq!(auth.check(Access::View, Some("Bearer v-pass")), Ok(()));
        assert_eq!(auth.check(Access::View, Some("bearer e-pass")), Ok(()));
        assert_eq!(
            auth.check(Access::View, Some(&basic("viewer", "e-pass"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            auth.check(Access::View, Some(&basic("viewer", "v-pas"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            auth.check(Access::Edit, Some(&basic("viewer", "v-pass"))),
            Err(AuthError::ViewOnly)
        );
        assert_eq!(auth.check(Access::Edit, Some("Bearer e-pass")), Ok(()));
        assert!(matches!(
            auth.check(Access::View, Some("Digest x")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            auth.check(Access::View, Some("Basic !!!")),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(AuthError::Missing.status(), 401);
        assert_eq!(AuthError::ViewOnly.status(), 403);

        // Only edit_auth: reading needs it too.
        let edit_only = ApiAuth {
            view: None,
            edit: Credentials::new("admin", "e-pass"),
        };
        assert_eq!(edit_only.check(Access::View, None), Err(AuthError::Missing));
        assert!(!format!("{edit_only:?}").contains("e-pass"));
        assert!(Credentials::new("a:b", "x").is_none());
        assert!(Credentials::new("a", "").is_none());
    }
}
