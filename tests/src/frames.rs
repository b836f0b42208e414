//! ffmpeg's raw gray output as luma planes, the `fake://` barcode read back from
//! them, and the latency probe.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use crate::{run_ok, utc_now_ms, Proc, FFMPEG_RW_TIMEOUT_US, FRAME_BYTES, HEIGHT, WIDTH};
use tern_core::fake::barcode;

/// Decodes the first `n` video frames of `url` with `ffmpeg -xerror` into gray luma
/// planes of [`WIDTH`]×[`HEIGHT`]. Every decoded frame comes out once
/// (`-fps_mode passthrough`: no duplicates or drops to a constant rate). Panics with
/// ffmpeg's stderr if it fails, and if fewer than `n` frames came out.
pub fn decode_frames(url: &str, n: usize) -> Vec<Vec<u8>> {
    let frames = n.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-xerror", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
        .args(["-an", "-frames:v", &frames, "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
    let (out, stderr) = run_ok(&mut cmd, Duration::from_secs(30));
    assert!(
        out.len() == n * FRAME_BYTES,
        "ffmpeg gave {} bytes from {url}, expected {n} frames of {WIDTH}x{HEIGHT} gray \
         ({} bytes); stderr:\n{stderr}",
        out.len(),
        n * FRAME_BYTES
    );
    out.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// Decodes every video frame of a finite `url` (an archive playlist or an archive
/// `.ts`) with `ffmpeg -xerror` into gray luma planes of [`WIDTH`]×[`HEIGHT`], each
/// decoded frame once (`-fps_mode passthrough`). Panics with ffmpeg's stderr if it
/// fails, does not end within `timeout`, or gives no frame at all.
pub fn decode_all_frames(url: &str, timeout: Duration) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-xerror", "-loglevel", "error"])
        .args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US, "-i", url])
        .args(["-an", "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
    let (out, stderr) = run_ok(&mut cmd, timeout);
    assert!(
        !out.is_empty() && out.len().is_multiple_of(FRAME_BYTES),
        "ffmpeg gave {} bytes from {url}, expected whole frames of {WIDTH}x{HEIGHT} gray \
         ({FRAME_BYTES} bytes each); stderr:\n{stderr}",
        out.len()
    );
    out.chunks(FRAME_BYTES).map(<[u8]>::to_vec).collect()
}

/// The full capture UTC ms of a barcode, which carries only its low 32 bits: the
/// value with those low bits nearest to `near_ms` (any UTC ms within ~24 days).
pub fn capture_utc_ms(low32: u32, near_ms: u64) -> u64 {
    let delta = i64::from(low32.wrapping_sub(near_ms as u32) as i32);
    near_ms.saturating_add_signed(delta)
}

/// The barcode of a decoded [`WIDTH`]×[`HEIGHT`] luma plane: (frame index, capture
/// UTC ms low 32 bits).
pub fn read_barcode(luma: &[u8]) -> (u64, u32) {
    let v = barcode::read(luma, WIDTH, HEIGHT).unwrap_or_else(|| {
        panic!(
            "no barcode in a {} byte plane (expected {WIDTH}x{HEIGHT})",
            luma.len()
        )
    });
    barcode::split(v)
}

/// Asserts the frames' barcode indices go up by exactly one; returns them.
pub fn assert_consecutive(what: &str, frames: &[Vec<u8>]) -> Vec<u64> {
    let idx: Vec<u64> = frames.iter().map(|f| read_barcode(f).0).collect();
    for (i, w) in idx.windows(2).enumerate() {
        assert!(
            w[1] == w[0] + 1,
            "{what}: frame {} has barcode index {} after {} (expected {}); all indices: {idx:?}",
            i + 1,
            w[1],
            w[0],
            w[0] + 1
        );
    }
    idx
}

/// Glass-to-glass latency figures of one probe.
pub struct Latency {
    pub median_ms: u32,
    pub min_ms: u32,
    pub max_ms: u32,
    pub samples: Vec<u32>,
}

/// The latency probe: reads frames from `url` through a low-delay ffmpeg as they
/// arrive, skips the first `skip` (the viewer's initial GOP, older than "now"), then
/// measures `measure` frames: now minus the barcode's capture time. Asserts their
/// barcodes run on by one.
pub fn probe_latency(url: &str, skip: usize, measure: usize) -> Latency {
    let mut reader = FrameReader::start(url, Duration::from_secs(20));
    let mut samples = Vec::with_capacity(measure);
    let mut indices = Vec::with_capacity(measure);
    for i in 0..skip + measure {
        let frame = reader
            .next_frame()
            .unwrap_or_else(|e| panic!("frame {i} of {}: {e}", skip + measure));
        let now = utc_now_ms();
        let (index, capture) = read_barcode(&frame);
        if i >= skip {
            samples.push(barcode::latency_ms(capture, now));
            indices.push(index);
        }
    }
    let (_, stderr) = reader.proc.kill();
    assert_eq!(samples.len(), measure);
    for w in indices.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "indices {indices:?}; ffmpeg stderr:\n{stderr}"
        );
    }
    Latency {
        median_ms: median(&samples).expect("latencies measured"),
        min_ms: samples.iter().min().copied().unwrap_or_default(),
        max_ms: samples.iter().max().copied().unwrap_or_default(),
        samples,
    }
}

/// Reads gray frames from a running ffmpeg as they arrive (the latency probe).
pub struct FrameReader {
    pub proc: Proc,
}

impl FrameReader {
    /// Starts `ffmpeg -fflags nobuffer -flags low_delay -i URL -fps_mode passthrough
    /// -f rawvideo -pix_fmt gray pipe:1` (docs/media.md, "Real clients"), plus
    /// `-flush_packets 1` so each frame leaves ffmpeg as soon as it is decoded rather
    /// than when the next fills its output buffer; killed after `timeout`. An
    /// `rtsp://` URL is read over TCP with the same I/O timeout.
    pub fn start(url: &str, timeout: Duration) -> FrameReader {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-fflags", "nobuffer", "-flags", "low_delay"]);
        if url.starts_with("rtsp://") {
            cmd.args(["-rtsp_transport", "tcp", "-timeout", FFMPEG_RW_TIMEOUT_US]);
        } else {
            cmd.args(["-rw_timeout", FFMPEG_RW_TIMEOUT_US]);
        }
        cmd.args(["-i", url])
            .args(["-an", "-fps_mode", "passthrough", "-flush_packets", "1"])
            .args(["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]);
        FrameReader {
            proc: Proc::spawn(&mut cmd, timeout),
        }
    }

    /// The next frame, or the reason there is none (ffmpeg ended: its stderr).
    pub fn next_frame(&mut self) -> Result<Vec<u8>, String> {
        let mut f = vec![0u8; FRAME_BYTES];
        match self.proc.stdout().read_exact(&mut f) {
            Ok(()) => Ok(f),
            Err(e) => {
                let (status, stderr) = self.proc.kill();
                Err(format!(
                    "no more frames from ffmpeg ({e}; {status}); stderr:\n{stderr}"
                ))
            }
        }
    }
}

/// The median of `v` (the lower middle for an even count); `None` if empty.
pub fn median(v: &[u32]) -> Option<u32> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len().saturating_sub(1) / 2).copied()
}

/// The x264 arguments that give a B-frame stream (`-bf 2`, a GOP of 25), audio copied.
pub const X264_B_FRAMES: [&str; 10] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-bf",
    "2",
    "-g",
    "25",
    "-c:a",
    "copy",
];

/// ffprobe's video packets of the first 3 s of `url`, as (DTS, PTS), checked: at
/// least 25 of them, DTS strictly increasing, and some reordered (PTS ≠ DTS), as a
/// B-frame stream must reach a player. Returns how many were reordered.
pub fn assert_b_frames_reach(url: &str) -> (usize, usize) {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        FFMPEG_RW_TIMEOUT_US,
    ])
    .args(["-read_intervals", "%+3"])
    .args(["-select_streams", "v", "-show_packets", "-of", "json"])
    .arg(url);
    let (out, _) = run_ok(&mut cmd, Duration::from_secs(30));
    let probe: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "ffprobe output not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    let packets: Vec<(i64, i64)> = probe["packets"]
        .as_array()
        .unwrap_or_else(|| panic!("no packets: {probe}"))
        .iter()
        .filter_map(|p| Some((p["dts"].as_i64()?, p["pts"].as_i64()?)))
        .collect();
    assert!(
        packets.len() >= 25,
        "{} video packets: {packets:?}",
        packets.len()
    );
    for w in packets.windows(2) {
        assert!(w[1].0 > w[0].0, "DTS not monotonic: {packets:?}");
    }
    for (dts, pts) in &packets {
        assert!(dts <= pts, "a DTS after its PTS: {packets:?}");
    }
    let reordered = packets.iter().filter(|(dts, pts)| pts != dts).count();
    assert!(reordered > 0, "no packet with pts != dts: {packets:?}");
    (packets.len(), reordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcode_round_trip_at_test_size() {
        let mut luma = vec![100u8; FRAME_BYTES];
        barcode::draw(
            &mut luma,
            WIDTH,
            WIDTH,
            barcode::value(42, 1_700_000_123_456),
        );
        assert_eq!(
            read_barcode(&luma),
            (42, (1_700_000_123_456u64 & 0xFFFF_FFFF) as u32)
        );
    }

    #[test]
    fn capture_times_from_low_bits() {
        let t = 1_795_609_669_253u64;
        for near in [t, t - 5_000, t + 5_000, t - 86_400_000] {
            assert_eq!(capture_utc_ms(t as u32, near), t, "near {near}");
        }
        // Across the wrap of the low word.
        let t = 0x1_0000_0010u64;
        assert_eq!(capture_utc_ms(t as u32, t - 0x40), t);
        assert_eq!(capture_utc_ms((t - 0x40) as u32, t), t - 0x40);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }
}
