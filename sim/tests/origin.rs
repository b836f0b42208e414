//! The origin config of docs/design.md §1 as a turmoil host: a client host fetches its live
//! playlist and a segment on simulated time. Owns this smoke test of the harness
//! itself; must not grow into a cluster scenario (those are in `scenarios.rs`).

use std::time::Duration;

use tern_sim::{add_node, builder, http_get};

const ORIGIN: &str = "http 8888;\ncluster_key 123;\nstream main {\n  input fake://fake;\n}\n";

#[test]
#[allow(clippy::disallowed_methods)] // sim scenario on turmoil time
fn origin_serves_playlist_and_segment_on_simulated_time() {
    let mut sim = builder(1, Duration::from_secs(30)).build();
    add_node(&mut sim, "origin", ORIGIN);
    sim.client("player", async {
        // Segments are 2 s: after 7 simulated seconds at least 3 are closed.
        tokio::time::sleep(Duration::from_secs(7)).await;
        // index.m3u8 is the master playlist: one variant, video and audio.
        let (status, body) = http_get("origin", 8888, "/main/index.m3u8").await?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let master = String::from_utf8(body.to_vec())?;
        let inf = master
            .lines()
            .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
            .unwrap_or_else(|| panic!("no variant in the master playlist:\n{master}"));
        assert!(
            inf.contains(",CODECS=\"avc1.")
                && inf.contains(",mp4a.40.2\"")
                && inf.contains(",RESOLUTION=320x240"),
            "{master}"
        );
        let bandwidth: u64 = inf
            .split_once("BANDWIDTH=")
            .and_then(|(_, r)| r.split(',').next())
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("no BANDWIDTH in {inf}"));
        assert!(bandwidth > 100_000, "{master}");
        let variant = master
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty());
        assert_eq!(variant, Some("tracks-v1a1/mono.m3u8"), "{master}");

        let (status, body) = http_get("origin", 8888, "/main/tracks-v1a1/mono.m3u8").await?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8(body.to_vec())?;
        assert!(text.starts_with("#EXTM3U"), "{text}");
        let segs: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
        assert!(segs.len() >= 3, "expected ≥3 segments after 7 s:\n{text}");
        // The simulation's pinned epoch shows in the segment names (UTC ms).
        assert!(segs[0].starts_with("seg-1767225"), "{text}");

        let (status, ts) =
            http_get("origin", 8888, &format!("/main/tracks-v1a1/{}", segs[0])).await?;
        assert_eq!(status, 200);
        assert!(
            !ts.is_empty() && ts.len().is_multiple_of(188),
            "TS length {}",
            ts.len()
        );
        assert!(
            ts.chunks(188).all(|p| p[0] == 0x47),
            "every packet starts with 0x47"
        );
        // 2 s of 320x240 fake video is far more than a few packets.
        assert!(ts.len() > 100_000, "segment of {} bytes", ts.len());

        let (status, _) = http_get("origin", 8888, "/nosuch/index.m3u8").await?;
        assert_eq!(status, 404);
        Ok(())
    });
    sim.run().expect("simulation");
}
