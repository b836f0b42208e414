//! node's modules form no import cycle (docs/architecture.md): the runtime depends
//! on what it starts, the HTTP layer on `ctx` and on what it serves, never the other
//! way round. This reads `node/src` as text: every `crate::a::b` path outside
//! comments and test modules is an edge from the file's module to the deepest
//! module that path names; edges between a module and its own parent or child do
//! not count (a `mod.rs` that re-exports its files is one module with them).
//!
//! Owns: that check. Must not: compile or run anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`http::server`) of every `.rs` file under `dir`, with its text.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            modules(&path, &format!("{prefix}{name}::"), out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let module = match stem {
                "mod" => prefix.trim_end_matches("::").to_owned(),
                "lib" | "main" if prefix.is_empty() => continue,
                _ => format!("{prefix}{stem}"),
            };
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.insert(module, text);
        }
    }
}

/// The `a::b::c` paths after each `crate::` in `code`.
fn crate_paths(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                })
                .collect::<String>()
                .trim_end_matches(':')
                .to_owned()
        })
        .collect()
}

/// The code of a file without its line comments and its `#[cfg(test)]` modules
/// (everything after the first one: they sit at the end of a file here).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(lw));
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut c = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    c.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if c.len() > 1 {
                    c.sort();
                    self.found.push(c);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The import edges of `mods`, each with one path that makes it.
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in mods {
        let targets = edges.entry(m.clone()).or_default();
        for p in crate_paths(&code_of(text)) {
            // The deepest module the path names (`http::body::Body` -> `http::body`).
            let parts: Vec<&str> = p.split("::").collect();
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|c| mods.contains_key(c));
            if let Some(t) = target.filter(|t| !related(m, t)) {
                targets.insert(t);
            }
        }
    }
    edges
}

#[test]
fn node_modules_import_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&src, "", &mut mods);
    assert!(
        mods.len() > 50,
        "only {} modules read from {}",
        mods.len(),
        src.display()
    );
    let edges = edges(&mods);
    let found = cycles(&edges);
    let explain: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!("{c:?}: {}", inside.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles in node/src:\n{}",
        explain.join("\n")
    );
}

/// The check itself finds a cycle when there is one.
#[test]
fn a_cycle_is_found() {
    let mods: BTreeMap<String, String> = [
        ("a", "use crate::b::Thing;"),
        ("b", "fn f() { crate::c::g() }"),
        ("c", "// crate::a in a comment is no edge\nuse crate::a::x;"),
        (
            "d",
            "use crate::a;\n#[cfg(test)]\nmod tests { use crate::d; }",
        ),
        ("a::inner", "use super::*; use crate::a::y;"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let found = cycles(&edges(&mods));
    assert_eq!(found, vec![vec!["a".to_owned(), "b".into(), "c".into()]]);
    let no_c: BTreeMap<String, String> = mods
        .into_iter()
        .map(|(k, v)| {
            if k == "c" {
                (k, "// crate::a".into())
            } else {
                (k, v)
            }
        })
        .collect();
    assert!(cycles(&edges(&no_c)).is_empty());
}
