//! Tests of the whole config language through [`parse`]: the example configs and
//! the good form of every directive. The bad forms live in the corpus of
//! `core/tests/bad_configs` (snapshotted by `core/tests/config_corpus.rs`).
//!
//! Owns: nothing but tests. Must not: test one file's internals (each file has its own
//! tests).

use super::*;
use crate::fake::FakeOptions;
use crate::stream_name::StreamName;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ORIGIN: &str = include_str!("../../../examples/origin.conf");
const EDGE: &str = include_str!("../../../examples/edge.conf");
const API_AUTH: &str = include_str!("../../../examples/api-auth.conf");
const RTMP_STUDIO: &str = include_str!("../../../examples/rtmp-studio-origin.conf");
const SRT_ORIGIN: &str = include_str!("../../../examples/srt-encoder-origin.conf");

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{}", e.excerpt(text)))
}

fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn key(s: &str) -> ClusterKey {
    ClusterKey::new(s).unwrap_or_else(|| panic!("empty key"))
}

/// Asserts that each config (`prefix` then the case) is refused with an error
/// that contains the case's text.
fn assert_refused(prefix: &str, cases: &[(&str, &str)]) {
    for (bad, says) in cases {
        match parse(&format!("{prefix}{bad}")) {
            Err(e) => assert!(e.to_string().contains(says), "{bad:?}: {e}"),
            Ok(_) => panic!("accepted {bad:?}"),
        }
    }
}

fn listen(port: u16) -> Listen {
    Listen { addr: None, port }
}

#[test]
fn config_api_auth_example() {
    use crate::api_auth::{Access, Credentials};
    let c = ok(API_AUTH);
    assert_eq!(c.api_auth.view, Credentials::new("viewer", "watch-only"));
    assert_eq!(
        c.api_auth.edit,
        Credentials::new("admin", "change me, please")
    );
    assert_eq!(
        c.api_auth
            .check(Access::Edit, Some("Bearer change me, please")),
        Ok(())
    );
}

#[test]
fn config_origin_example() {
    let want = Config {
        http: vec![listen(8888)],
        cluster_key: Some(key("123")),
        segment_duration_ms: None,
        streams: vec![StreamConfig {
            on_demand_ms: None,
            name: name("main"),
            inputs: vec![InputConfig {
                url: InputUrl::Fake(FakeOptions::default()),
                priority: None,
                source_timeout_ms: None,
                cluster_key: None,
            }],
            dvr: Some(DvrConfig {
                path: "dvr-data/origin".into(),
                depth_secs: None,
                limit_bytes: None,
            }),
            segment_duration_ms: None,
        }],
        sources: vec![],
        limits: Default::default(),
        api_auth: Default::default(),
        cluster_bandwidth_bps: None,
        rtmp: None,
    };
    let cfg = ok(ORIGIN);
    assert_eq!(cfg, want);
    assert_eq!(cfg.streams[0].segment_duration_ms(&cfg), 2000);
    assert_eq!(cfg.http[0].socket_addr().to_string(), "0.0.0.0:8888");
    let w = cfg.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("top-level `cluster_key` is only 3 characters"),
        "{w:?}"
    );
}

#[test]
fn config_edge_example() {
    let want = Config {
        http: vec![listen(9999)],
        cluster_key: Some(key("123")),
        segment_duration_ms: None,
        streams: vec![],
        sources: vec![SourceConfig {
            protocol: SourceProtocol::M4s,
            host: "127.0.0.1".into(),
            port: 8888,
            only: vec![],
            except: vec![],
            cluster_key: None,
            cache: None,
            static_streams: StaticStreams::None,
            clients_timeout_ms: DEFAULT_CLIENTS_TIMEOUT_MS,
            archive_bandwidth_bps: None,
            max_streams: DEFAULT_MAX_STREAMS,
        }],
        limits: Default::default(),
        api_auth: Default::default(),
        cluster_bandwidth_bps: None,
        rtmp: None,
    };
    let cfg = ok(EDGE);
    assert_eq!(cfg, want);
    assert_eq!(cfg.sources[0].url(), "m4s://127.0.0.1:8888");
    assert_eq!(cfg.key_for_source(&cfg.sources[0]), Some(&key("123")));
    assert!(cfg.sources[0].wants(&name("main")));
}

#[test]
fn config_http_forms() {
    let cfg = ok("http 80; http 127.0.0.1:8080; http [::1]:8080; http 0; http 0;");
    let want = vec![
        listen(80),
        Listen {
            addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 8080,
        },
        Listen {
            addr: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            port: 8080,
        },
        listen(0),
        listen(0),
    ];
    assert_eq!(cfg.http, want);
    let shown: Vec<_> = cfg.http.iter().map(|l| l.to_string()).collect();
    assert_eq!(shown, ["80", "127.0.0.1:8080", "[::1]:8080", "0", "0"]);
    // The same port on another address is another listener.
    assert_eq!(ok("http 80; http 127.0.0.1:80;").http.len(), 2);
}

#[test]
fn config_segment_duration_nearest_wins() {
    let cfg = ok("http 1; segment_duration 4;
        stream a { input fake://fake; }
        stream b { input fake://fake; segment_duration 0.5; }");
    assert_eq!(cfg.segment_duration_ms, Some(4000));
    assert_eq!(cfg.streams[0].segment_duration_ms(&cfg), 4000);
    assert_eq!(cfg.streams[1].segment_duration_ms(&cfg), 500);
    let cfg = ok("http 1; stream a { input fake://fake; segment_duration 60; }");
    assert_eq!(cfg.streams[0].segment_duration_ms, Some(60_000));
    let cfg = ok("http 1; segment_duration 1.25;");
    assert_eq!(cfg.segment_duration_ms, Some(1250));
}

#[test]
fn config_inputs_and_options() {
    let cfg = ok("http 1; cluster_key top-level-key-long-enough;
        stream cams/yard/3 {
          input fake://fake?width=640&height=360&fps=30&gop=2&bitrate=3M priority=2;
          input m4s://10.0.0.2:8888/cams/yard/3 priority=1 source_timeout=2.5 cluster_key=\"input key with spaces\";
          input m4f://origin.example:9/a/b source_timeout=10;
        }");
    let s = &cfg.streams[0];
    assert_eq!(s.name.as_str(), "cams/yard/3");
    let fake = FakeOptions {
        width: 640,
        height: 360,
        fps: 30,
        gop_ms: 2000,
        bitrate: Some(3_000_000),
    };
    assert_eq!(
        s.inputs,
        vec![
            InputConfig {
                url: InputUrl::Fake(fake),
                priority: Some(2),
                source_timeout_ms: None,
                cluster_key: None,
            },
            InputConfig {
                url: InputUrl::M4s {
                    host: "10.0.0.2".into(),
                    port: 8888,
                    name: name("cams/yard/3"),
                },
                priority: Some(1),
                source_timeout_ms: Some(2500),
                cluster_key: Some(key("input key with spaces")),
            },
            InputConfig {
                url: InputUrl::M4f {
                    host: "origin.example".into(),
                    port: 9,
                    name: name("a/b"),
                },
                priority: None,
                source_timeout_ms: Some(10_000),
                cluster_key: None,
            },
        ]
    );
    let urls: Vec<_> = s.inputs.iter().map(|i| i.url.to_string()).collect();
    assert_eq!(
        urls,
        [
            "fake://fake?width=640&height=360&fps=30&gop=2&bitrate=3000000",
            "m4s://10.0.0.2:8888/cams/yard/3",
            "m4f://origin.example:9/a/b",
        ]
    );
    let order: Vec<_> = s.failover_order().iter().map(|i| i.priority).collect();
    assert_eq!(order, [Some(1), Some(2), None]);
    // Nearest key wins.
    assert_eq!(
        cfg.key_for_input(&s.inputs[1]),
        Some(&key("input key with spaces"))
    );
    assert_eq!(
        cfg.key_for_input(&s.inputs[2]),
        Some(&key("top-level-key-long-enough"))
    );
    assert_eq!(
        ok("http 1; stream a { input fake://fake?gop=0.5; }").streams[0].inputs[0]
            .url
            .to_string(),
        "fake://fake?gop=0.5"
    );
}

#[test]
fn config_rtmp_studio_example() {
    let c = ok(RTMP_STUDIO);
    assert_eq!(c.rtmp, Some(listen(1935)));
    let studio = &c.streams[0];
    let p = studio.publish_input().expect("publish input");
    assert!(p.password.as_ref().is_some_and(|p| p.matches("change-me")));
    assert_eq!(
        studio.failover_order()[0].url.to_string(),
        "publish://?password=***"
    );
    assert_eq!(studio.inputs[0].source_timeout_ms, Some(5000));
    assert!(studio.dvr.is_some());
}

#[test]
fn config_srt_example() {
    use crate::config::{InputUrl, SrtMode};
    let c = ok(SRT_ORIGIN);
    let urls: Vec<String> = c
        .streams
        .iter()
        .map(|s| s.inputs[0].url.to_string())
        .collect();
    assert_eq!(
        urls,
        [
            "srt://0.0.0.0:9000?passphrase=***&latency=200",
            "srt://encoder.example.net:9001?passphrase=***"
        ]
    );
    let modes: Vec<SrtMode> = c
        .streams
        .iter()
        .filter_map(|s| match &s.inputs[0].url {
            InputUrl::Srt(i) => Some(i.mode),
            _ => None,
        })
        .collect();
    assert_eq!(modes, [SrtMode::Listener, SrtMode::Caller]);
    let e = parse("http 8080; stream a { input srt://:9000?passphrase=short; }")
        .expect_err("short passphrase");
    assert!(
        e.to_string().contains("has 5 bytes; SRT takes 10 to 79"),
        "{e}"
    );
    assert!(!e.to_string().contains("short"), "{e}");
}

#[test]
fn config_rtmp_publish() {
    let cfg = ok("http 8080; rtmp 1935;
        stream studio { input publish://?password=s3cret; dvr /dvr 1d; }
        stream open { input publish://; input fake://fake priority=2; }");
    assert_eq!(cfg.rtmp, Some(listen(1935)));
    let studio = cfg.streams[0].publish_input().expect("publish input");
    assert!(studio
        .password
        .as_ref()
        .is_some_and(|p| p.matches("s3cret")));
    assert_eq!(
        cfg.streams[1].publish_input(),
        Some(&PublishInput::default())
    );
    assert_eq!(
        ok("http 1; rtmp 127.0.0.1:19350;")
            .rtmp
            .map(|l| l.to_string()),
        Some("127.0.0.1:19350".into())
    );
    assert_eq!(ok("http 1;").rtmp, None);
    assert_refused(
        "http 8080;\n",
        &[
            ("stream a { input publish://; }", "no `rtmp PORT;`"),
            (
                "rtmp 1935; stream a { input publish://; input publish://?password=x; }",
                "a second `input publish://`",
            ),
            ("rtmp 8080;", "port of the `http` listener"),
            ("rtmp 1935; rtmp 1936;", "duplicate `rtmp`"),
            (
                "rtmp 1935; stream a { input publish:// cluster_key=abc; }",
                "cluster_key",
            ),
        ],
    );
}

#[test]
fn config_dvr_forms() {
    let dvr = |line: &str| {
        let cfg = ok(&format!("http 1; stream a {{ input fake://fake; {line} }}"));
        cfg.streams[0].dvr.clone()
    };
    let d = |path: &str, depth: Option<u64>, limit: Option<u64>| {
        Some(DvrConfig {
            path: path.into(),
            depth_secs: depth,
            limit_bytes: limit,
        })
    };
    assert_eq!(dvr("dvr /storage;"), d("/storage", None, None));
    assert_eq!(dvr("dvr /storage 2d;"), d("/storage", Some(172_800), None));
    assert_eq!(
        dvr("dvr /storage 12h 10G;"),
        d("/storage", Some(43_200), Some(10 << 30))
    );
    assert_eq!(dvr("dvr d 30m 500M;"), d("d", Some(1800), Some(500 << 20)));
    assert_eq!(dvr("dvr d 3600 1T;"), d("d", Some(3600), Some(1 << 40)));
    assert_eq!(dvr("dvr d 45s 1024;"), d("d", Some(45), Some(1024)));
    assert_eq!(
        dvr("dvr \"/mnt/my disk\" 1d 512K;"),
        d("/mnt/my disk", Some(86_400), Some(512 << 10))
    );
}

#[test]
fn config_source_forms() {
    let cfg = ok("http 1; cluster_key 0123456789abcdef;
        source m4s://origin:8888 {
          only cams/* main;
          only other;
          except cams/test cams/yard/*;
          cluster_key \"source key, long enough\";
          cache /var/cache/tern 1d 50G;
        }
        source m4f://[::1]:8888/;
        source m4f://10.1.1.1:1 { }");
    assert_eq!(cfg.sources.len(), 3);
    let s = &cfg.sources[0];
    let pat = |p: &str| NamePattern::parse(p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.protocol, SourceProtocol::M4s);
    assert_eq!((s.host.as_str(), s.port), ("origin", 8888));
    assert_eq!(s.only, vec![pat("cams/*"), pat("main"), pat("other")]);
    assert_eq!(s.except, vec![pat("cams/test"), pat("cams/yard/*")]);
    assert_eq!(
        s.cache,
        Some(CacheConfig {
            path: "/var/cache/tern".into(),
            depth_secs: 86_400,
            limit_bytes: 50 << 30,
        })
    );
    assert_eq!(cfg.key_for_source(s), Some(&key("source key, long enough")));
    assert_eq!(
        cfg.key_for_source(&cfg.sources[1]),
        Some(&key("0123456789abcdef"))
    );
    assert!(s.wants(&name("cams/3")));
    assert!(s.wants(&name("main")));
    assert!(!s.wants(&name("cams/test")));
    assert!(!s.wants(&name("cams/yard/1")));
    assert!(!s.wants(&name("radio")));
    assert_eq!(cfg.sources[1].url(), "m4f://[::1]:8888");
    assert_eq!(cfg.sources[1].protocol.to_string(), "m4f");
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
}

#[test]
fn config_on_demand_forms() {
    let cfg = ok("http 1; cluster_key 0123456789abcdef;
        source m4s://a:1 { static; clients_timeout 3; }
        source m4s://b:1 { static cams/yard/*; static main; }
        source m4s://c:1 { clients_timeout 0.5; }
        source m4s://d:1 { static cams/*; static; }");
    let pat = |p: &str| NamePattern::parse(p).unwrap_or_else(|e| panic!("{e}"));
    let s = &cfg.sources;
    assert_eq!(s[0].static_streams, StaticStreams::All);
    assert_eq!(s[0].clients_timeout_ms, 3000);
    assert_eq!(
        s[1].static_streams,
        StaticStreams::Matching(vec![pat("cams/yard/*"), pat("main")])
    );
    assert_eq!(s[1].clients_timeout_ms, DEFAULT_CLIENTS_TIMEOUT_MS);
    assert!(s[1].static_streams.covers(&name("cams/yard/2")));
    assert!(!s[1].static_streams.covers(&name("cams/gate/2")));
    assert_eq!(s[2].static_streams, StaticStreams::None);
    assert_eq!(s[2].clients_timeout_ms, 500);
    assert_eq!(s[3].static_streams, StaticStreams::All);
    let cases = [
        (
            "source m4s://a:1 { clients_timeout -1; }",
            "bad `clients_timeout -1`",
        ),
        (
            "source m4s://a:1 { clients_timeout 2d; }",
            "bad `clients_timeout 2d`",
        ),
        (
            "source m4s://a:1 { clients_timeout 1; clients_timeout 2; }",
            "duplicate `clients_timeout`",
        ),
        ("source m4s://a:1 { static ../x; }", ""),
        ("source m4s://a:1 { statik; }", "static"),
        ("stream a { input fake://fake; static; }", "static"),
    ];
    assert_refused("http 1; cluster_key 0123456789abcdef; ", &cases);
}

#[test]
fn config_bandwidth_caps() {
    let cfg = ok(
        "http 1; cluster_key 0123456789abcdef; cluster_bandwidth 20M;
        source m4s://a:1 { archive_bandwidth 800k; }",
    );
    assert_eq!(cfg.cluster_bandwidth_bps, Some(20_000_000));
    assert_eq!(cfg.sources[0].archive_bandwidth_bps, Some(800_000));
    let cases = [
        ("cluster_bandwidth 10;", "bad `cluster_bandwidth 10`"),
        ("cluster_bandwidth 2T;", "bad `cluster_bandwidth 2T`"),
        (
            "cluster_bandwidth 1M; cluster_bandwidth 2M;",
            "duplicate `cluster_bandwidth`",
        ),
        (
            "source m4s://a:1 { archive_bandwidth fast; }",
            "bad `archive_bandwidth fast`",
        ),
        (
            "stream a { input fake://fake; archive_bandwidth 1M; }",
            "archive_bandwidth",
        ),
    ];
    assert_refused("http 1; cluster_key 0123456789abcdef; ", &cases);
}

#[test]
fn config_ondemand_streams() {
    let cfg = ok("http 1;
        ondemand cam1 { input fake://fake; }
        ondemand cam2 { input fake://fake; segment_duration 1; clients_timeout 5; }
        stream rec { input fake://fake; }");
    assert_eq!(
        cfg.streams[0].on_demand_ms,
        Some(DEFAULT_CLIENTS_TIMEOUT_MS)
    );
    assert_eq!(cfg.streams[1].on_demand_ms, Some(5000));
    assert_eq!(cfg.streams[1].segment_duration_ms, Some(1000));
    assert_eq!(cfg.streams[2].on_demand_ms, None);
    let cases = [
        (
            "ondemand c { input fake://fake; dvr /tmp/x; }",
            "a recorded stream is always on",
        ),
        ("ondemand c { }", "ondemand `c` has no `input`"),
        ("ondemand c;", "`ondemand c` needs a block"),
        (
            "stream c { input fake://fake; clients_timeout 3; }",
            "belongs inside `ondemand NAME",
        ),
        (
            "ondemand c { input fake://fake; } stream c { input fake://fake; }",
            "duplicate stream `c`",
        ),
    ];
    assert_refused("http 1; ", &cases);
}

#[test]
fn config_max_streams_of_a_source() {
    let cfg = ok("http 1; cluster_key 0123456789abcdef;
        source m4s://a:1 { max_streams 50; }
        source m4s://b:1;");
    assert_eq!(cfg.sources[0].max_streams, 50);
    assert_eq!(cfg.sources[1].max_streams, DEFAULT_MAX_STREAMS);
    let cases = [
        ("source m4s://a:1 { max_streams 0; }", "bad `max_streams 0`"),
        (
            "source m4s://a:1 { max_streams +5; }",
            "bad `max_streams +5`",
        ),
        (
            "source m4s://a:1 { max_streams many; }",
            "bad `max_streams many`",
        ),
        (
            "source m4s://a:1 { max_streams 1; max_streams 2; }",
            "duplicate `max_streams`",
        ),
        (
            "stream a { input fake://fake; max_streams 5; }",
            "max_streams",
        ),
    ];
    assert_refused("http 1; cluster_key 0123456789abcdef; ", &cases);
}

#[test]
fn config_comments_quotes_and_free_whitespace() {
    let text = "# a comment\n\thttp\n 8888 # trailing\n;stream\n\"main\"{input\n\
                fake://fake;}cluster_key \"a key; with { } # inside\";";
    let cfg = ok(text);
    assert_eq!(cfg.http, vec![listen(8888)]);
    assert_eq!(cfg.streams[0].name.as_str(), "main");
    assert_eq!(cfg.cluster_key, Some(key("a key; with { } # inside")));
}

#[test]
fn config_cluster_key_is_redacted_and_short_keys_warned() {
    let cfg = ok("http 1; cluster_key s3cret;
        stream a { input m4s://h:1/a cluster_key=short; }
        source m4s://h:2 { cluster_key x; }");
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("s3cret") && !dbg.contains("short"), "{dbg}");
    assert!(dbg.contains("ClusterKey(<redacted>)"));
    let w = cfg.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("the top-level `cluster_key` is only 6 characters long"));
    assert!(w[1].starts_with("the `cluster_key=` of input 1 (`m4s://h:1/a`) of stream `a`"));
    assert!(w[2].starts_with("the `cluster_key` of `source m4s://h:2` is only 1 character long"));
    assert!(w[0].contains("offline"));
}

#[test]
fn config_warns_about_an_empty_node() {
    let w = ok("http 1;").warnings();
    assert_eq!(
        w,
        ["no `stream` and no `source`: this node has nothing to serve"]
    );
}

#[test]
fn config_error_display_and_excerpt() {
    let text = "http 1;\nstrem main {\n}\n";
    let e = parse(text).err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!((e.line, e.column), (2, 1));
    assert!(e
        .to_string()
        .starts_with("line 2, column 1: unknown directive `strem`"));
    assert_eq!(e.excerpt(text), "2 | strem main {\n  | ^");
}

/// Bad input is an error value, never a panic: every prefix of the examples and of
/// a config using the whole grammar, and many random byte edits of it.
#[test]
fn config_never_panics_on_mangled_input() {
    let full = "http 127.0.0.1:8888; cluster_key \"k \\\" q\"; segment_duration 1.5;
        stream cams/yard/3 { input fake://fake?width=640&gop=0.5&bitrate=3M priority=1;
          input m4s://[::1]:1/a/b source_timeout=5 cluster_key=x; dvr \"/d\" 2d 10G; }
        source m4f://h:2 { only a/* b; except c; cluster_key k; cache /c 1d 1T; } # é";
    for text in [ORIGIN, EDGE, full] {
        for (i, _) in text.char_indices() {
            let _ = parse(&text[..i]);
        }
    }
    let bytes = full.as_bytes();
    let alphabet = b" \n;{}\"#=?&/:.*0123456789azAZ\\\x00";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap_or(0)
    };
    for _ in 0..5000 {
        let mut b = bytes.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = next() % b.len();
            match next() % 3 {
                0 => {
                    b.remove(at);
                }
                1 => b.insert(at, alphabet[next() % alphabet.len()]),
                _ => b[at] = alphabet[next() % alphabet.len()],
            }
        }
        if let Ok(text) = std::str::from_utf8(&b) {
            if let Err(e) = parse(text) {
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                let _ = e.excerpt(text);
            }
        }
    }
}

/// The example in the module documentation (keep the two in step).
#[test]
fn config_module_doc_example() {
    let cfg = ok(r#"
http 8888;                          # PORT or ADDR:PORT; several allowed, one required
cluster_key "a long random secret"; # top, in `source`, or `cluster_key=` on an input
segment_duration 2;                 # seconds, 0.5..=60, top or stream; default 2
stream cams/yard/3 {
  input fake://fake?width=640&height=360&fps=30&gop=0.5&bitrate=3M priority=1;
  input m4s://10.0.0.2:8888/cams/yard/3 priority=2 source_timeout=5;
  dvr /storage 2d 10G;              # PATH [DEPTH] [LIMIT]
}
source m4f://origin:8888 { only cams/*; except cams/test; cache /cache 1d 50G; }
"#);
    assert_eq!((cfg.streams.len(), cfg.sources.len()), (1, 1));
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
}

/// Finding 6: a config starting with a UTF-8 BOM was refused for an invisible
/// character.
#[test]
fn utf8_bom_is_ignored() {
    let plain = ok("http 8888;\nstream main { input fake://fake; }\n");
    let bom = ok("\u{feff}http 8888;\nstream main { input fake://fake; }\n");
    assert_eq!(plain, bom);
}

#[test]
fn http_limits() {
    let c = ok("http 1;\nmax_connections 100;\nmax_connections_per_ip 8;\n\
                header_timeout 2.5;\nidle_timeout 30;\nstall_timeout 90;\n");
    assert_eq!(c.limits.max_connections, 100);
    assert_eq!(c.limits.max_per_ip, Some(8));
    assert_eq!(c.limits.header_timeout_ms, 2500);
    assert_eq!(c.limits.idle_timeout_ms, 30_000);
    assert_eq!(c.limits.stall_timeout_ms, 90_000);
    let d = ok("http 1;\n");
    assert_eq!(d.limits, crate::limits::ConnLimits::default());
    assert_eq!(d.limits.max_per_ip, None);
    for (bad, want) in [
        (
            "http 1;\nmax_connections 0;\n",
            "expected a whole number from 1",
        ),
        ("http 1;\nmax_connections -3;\n", "expected a whole number"),
        (
            "http 1;\nheader_timeout 0;\n",
            "expected seconds from 0.1 to 3600",
        ),
        ("http 1;\nidle_timeout 2h;\n", "expected seconds"),
        (
            "http 1;\nstall_timeout 5;\nstall_timeout 6;\n",
            "duplicate `stall_timeout`",
        ),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
}

// Property tests of the lexer and parser (bounded: proptest's default 256 cases; a
// longer run: `PROPTEST_CASES=100000 cargo test -p tern-core --lib config`).
proptest::proptest! {
    #[test]
    fn any_text_parses_or_fails_without_panic(text in "[ -~\n\t]{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn directive_soup_parses_or_fails_without_panic(
        words in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("http".to_string()),
                proptest::strategy::Just("stream".to_string()),
                proptest::strategy::Just("source".to_string()),
                proptest::strategy::Just("input".to_string()),
                proptest::strategy::Just("dvr".to_string()),
                proptest::strategy::Just("max_streams".to_string()),
                proptest::strategy::Just("{".to_string()),
                proptest::strategy::Just("}".to_string()),
                proptest::strategy::Just(";".to_string()),
                proptest::strategy::Just("\"".to_string()),
                proptest::strategy::Just("#".to_string()),
                "[a-z0-9:/.?=_-]{1,12}",
            ],
            0..40,
        )
    ) {
        let _ = parse(&words.join(" "));
    }
}
