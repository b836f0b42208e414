//! Third-party tools the tests need: skip, or fail with the install command under
//! `TERN_REQUIRE_TOOLS=1`.

use std::process::{Command, Stdio};

/// The Debian package that provides `tool`, for the install hint.
fn package_of(tool: &str) -> &str {
    match tool {
        "ffmpeg" | "ffprobe" | "ffplay" => "ffmpeg",
        other => other,
    }
}

/// Whether `tool` can be run. If not: panics when `TERN_REQUIRE_TOOLS=1` (CI) with the
/// command that installs it, else prints `skipping: TOOL not installed` and returns
/// false, and the calling test returns early.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var("TERN_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{tool} is not installed and TERN_REQUIRE_TOOLS=1 requires it: \
             install it with `apt-get install -y {}`",
            package_of(tool)
        );
    }
    println!("skipping: {tool} not installed");
    false
}

/// Like [`require_tool`] for what has no `-version` to try: whether `check` (a command
/// that exits 0 when `what` is usable) succeeds; `packages` are the Debian packages
/// that provide it.
pub fn require_check(what: &str, check: &mut Command, packages: &str) -> bool {
    let ok = check
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("TERN_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{what} is not usable and TERN_REQUIRE_TOOLS=1 requires it: \
             install it with `apt-get install -y {packages}`"
        );
    }
    println!("skipping: {what} not usable");
    false
}
