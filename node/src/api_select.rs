//! `select=` of the streams API (Flussonic's): `?select=name,stats.alive` keeps only
//! those fields of each stream, with their parents (`{"name": …, "stats": {"alive": …}}`).
//!
//! Owns: reading the parameter and pruning a JSON value. Must not: know which fields
//! exist (a path that names nothing is simply absent from the answer).

use serde_json::{Map, Value};

/// The most paths one `select=` may name.
pub const MAX_SELECT_PATHS: usize = 64;

/// The `select=` paths of a query string (`None`: no `select=`), each split at `.`,
/// or why they are refused (a 400).
pub fn parse(query: Option<&str>) -> Result<Option<Vec<Vec<String>>>, String> {
    let Some(value) = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == "select").then_some(v)
    }) else {
        return Ok(None);
    };
    let value = value.replace("%2C", ",").replace("%2c", ",");
    let mut paths = Vec::new();
    for p in value.split(',').filter(|p| !p.is_empty()) {
        let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
        if parts.iter().any(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }) {
            return Err(format!(
                "bad select= path {p:?}: expected field names joined by `.` (select=name,stats.alive)"
            ));
        }
        paths.push(parts);
    }
    if paths.is_empty() {
        return Err("select= names no field: expected select=name,stats.alive".into());
    }
    if paths.len() > MAX_SELECT_PATHS {
        return Err(format!("select= names more than {MAX_SELECT_PATHS} fields"));
    }
    Ok(Some(paths))
}

/// `v` with only the fields at `paths` (and the objects on the way to them).
pub fn select(v: &Value, paths: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for p in paths {
        copy_path(v, p, &mut out);
    }
    Value::Object(out)
}

fn copy_path(v: &Value, path: &[String], out: &mut Map<String, Value>) {
    let (Some((first, rest)), Value::Object(obj)) = (path.split_first(), v) else {
        return;
    };
    let Some(child) = obj.get(first) else { return };
    if rest.is_empty() {
        out.insert(first.clone(), child.clone());
        return;
    }
    let slot = out
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = slot {
        copy_path(child, rest, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_paths() {
        let v = json!({"name": "a", "stats": {"alive": true, "bitrate": 5, "media_info": {"tracks": []}}, "inputs": []});
        let paths = parse(Some("x=1&select=name,stats.alive,stats.nope,missing"))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(
            select(&v, &paths),
            json!({"name": "a", "stats": {"alive": true}})
        );
        assert_eq!(parse(Some("x=1")), Ok(None));
        assert_eq!(parse(None), Ok(None));
        assert!(parse(Some("select=")).is_err());
        assert!(parse(Some("select=a..b")).is_err());
        assert!(parse(Some("select=a%2Cb")).is_ok_and(|p| p.is_some_and(|p| p.len() == 2)));
    }
}
