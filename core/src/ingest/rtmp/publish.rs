//! Which stream an RTMP publisher names, and the password it offers.
//!
//! Accepted forms (`app` is what `connect` says, `key` what `publish` says; ffmpeg
//! puts everything up to the last `/` of the URL's path in `app` and the rest in
//! `key`, OBS takes its "Server" URL's path as `app` and its "Stream Key" as `key`):
//! - `rtmp://HOST:PORT/STREAM` (key empty), `rtmp://HOST:PORT/cams/yard/3`
//!   (`app` + `/` + `key` is the stream's name);
//! - `rtmp://HOST:PORT/APP/STREAM`, e.g. `live/studio`: the key names the stream and
//!   the app (any) is ignored, when `APP/STREAM` is not itself a stream;
//! - the password as `?password=SECRET` after the name (on the app or on the key), or
//!   as the stream key itself: server `rtmp://HOST:PORT/STREAM`, key `SECRET`.
//!
//! Owns: that grammar. Must not: compare passwords or know the config (the caller
//! says which names are streams taking publishers).

/// What a publisher asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishTarget {
    /// The stream's name.
    pub stream: String,
    /// The password given, if any.
    pub password: Option<String>,
}

/// Splits `s?query` and finds `password=` in the query.
fn split(s: &str) -> (&str, Option<String>) {
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    let password = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("password="))
            .map(percent_decode)
    });
    (path.trim_matches('/'), password)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The stream `app` and `key` name, given which names are streams (`is_stream`);
/// `None` if they name none.
pub fn resolve(app: &str, key: &str, is_stream: impl Fn(&str) -> bool) -> Option<PublishTarget> {
    let (app, app_pw) = split(app);
    let (key, key_pw) = split(key);
    let query_pw = key_pw.or(app_pw);
    let target = |stream: &str, password: Option<String>| {
        Some(PublishTarget {
            stream: stream.to_owned(),
            password,
        })
    };
    if key.is_empty() {
        return if is_stream(app) {
            target(app, query_pw)
        } else {
            None
        };
    }
    let joined = if app.is_empty() {
        key.to_owned()
    } else {
        format!("{app}/{key}")
    };
    if is_stream(&joined) {
        return target(&joined, query_pw);
    }
    if is_stream(key) {
        return target(key, query_pw);
    }
    if is_stream(app) {
        // The stream key is the password.
        return target(app, query_pw.or_else(|| Some(percent_decode(key))));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(name: &str) -> bool {
        ["studio", "cams/yard/3", "live"].contains(&name)
    }

    fn r(app: &str, key: &str) -> Option<(String, Option<String>)> {
        resolve(app, key, streams).map(|t| (t.stream, t.password))
    }

    fn some(s: &str, p: Option<&str>) -> Option<(String, Option<String>)> {
        Some((s.to_owned(), p.map(str::to_owned)))
    }

    #[test]
    fn the_accepted_forms() {
        // ffmpeg rtmp://h/studio and rtmp://h/studio?password=x (the query stays on
        // the app when the path has one part).
        assert_eq!(r("studio", ""), some("studio", None));
        assert_eq!(r("studio?password=x", ""), some("studio", Some("x")));
        // ffmpeg rtmp://h/cams/yard/3?password=a%26b.
        assert_eq!(
            r("cams/yard", "3?password=a%26b"),
            some("cams/yard/3", Some("a&b"))
        );
        // OBS: server rtmp://h/live, key studio?password=x; an app that is also a
        // stream loses to the key that names one.
        assert_eq!(r("live", "studio?password=x"), some("studio", Some("x")));
        assert_eq!(r("app", "studio"), some("studio", None));
        // OBS: server rtmp://h/studio, the key is the password.
        assert_eq!(r("studio", "s%40cret"), some("studio", Some("s@cret")));
        assert_eq!(r("studio/", "secret"), some("studio", Some("secret")));
        // Nothing named.
        assert_eq!(r("other", ""), None);
        assert_eq!(r("other", "thing"), None);
        assert_eq!(r("", ""), None);
    }
}
