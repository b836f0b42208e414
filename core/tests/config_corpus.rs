//! The corpus of bad configs in `tests/bad_configs/*.conf`: every file must be
//! refused, and its message (with the offending line and a caret under the column)
//! is pinned by an insta snapshot named after the file, in
//! `tests/bad_configs/snapshots/`. Review a changed message by eye: it must name the
//! right line and column and say what was expected there.
//!
//! Owns: only this test. Must not: hold configs inline (add a file to the corpus).

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_configs")
}

fn corpus() -> Vec<(String, String)> {
    let dir = corpus_dir();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "conf" {
                return None;
            }
            let name = path.file_stem()?.to_str()?.to_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some((name, text))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn config_corpus_every_bad_config_is_refused_with_its_message() {
    let files = corpus();
    assert!(files.len() >= 25, "only {} bad configs", files.len());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(corpus_dir().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for (name, text) in &files {
            let err = match tern_core::config::parse(text) {
                Ok(cfg) => panic!("{name}.conf was accepted: {cfg:?}"),
                Err(e) => e,
            };
            let shown = format!("{err}\n\n{}\n", err.excerpt(text));
            insta::assert_snapshot!(name.as_str(), shown);
        }
    });
}

#[test]
fn config_corpus_has_no_stale_snapshots() {
    let names: Vec<String> = corpus().into_iter().map(|(n, _)| n).collect();
    let dir = corpus_dir().join("snapshots");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = file.strip_suffix(".snap") {
            assert!(
                names.iter().any(|n| n == stem),
                "{file} has no {stem}.conf in the corpus: delete it"
            );
        }
    }
}
