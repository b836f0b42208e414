//! `curl` as the tests' HTTP client where real-client behaviour matters (headers,
//! ranges, compression, credentials).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::run_ok;

/// One answer as curl saw it: status, headers (lower-case names), body (decoded
/// when `--compressed` was given).
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// `curl -s -i ARGS URL` and its answer (the last one, after any `100 Continue`).
pub fn curl(args: &[&str], url: &str) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .arg(url);
    let (raw, _) = run_ok(&mut cmd, Duration::from_secs(15));
    let mut out = &raw[..];
    let head_end = loop {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("curl {args:?} {url}: no headers in {raw:?}"));
        if out.starts_with(b"HTTP/1.1 100") {
            out = &out[end + 4..];
            continue;
        }
        break end;
    };
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl {args:?} {url}: bad status line in {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: out[head_end + 4..].to_vec(),
    }
}
