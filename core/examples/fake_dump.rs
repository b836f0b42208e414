//! Manual checks of the `fake://` source with real decoders.
//!
//! Owns: a small CLI around `tern_core::fake`. Must not: be used by anything else.
//!
//! ```text
//! cargo run -p tern-core --example fake_dump -- dump WIDTH HEIGHT FPS FRAMES PREFIX [GOP_MS] [BITRATE]
//!     writes PREFIX.h264 (Annex B video) and PREFIX.aac (ADTS-wrapped audio)
//! cargo run -p tern-core --example fake_dump -- read WIDTH HEIGHT FILE.yuv
//!     reads the barcode of every yuv420p frame of FILE.yuv, prints "index capture_low32"
//! ```
//! Then e.g. `ffmpeg -xerror -i PREFIX.h264 -f rawvideo -pix_fmt yuv420p out.yuv`.

use std::process::ExitCode;

use tern_core::fake::{barcode, FakeOptions, FakeSource};

/// 7-byte ADTS header of an AAC-LC, 48 kHz, stereo frame of `payload_len` bytes.
fn adts_header(payload_len: usize) -> [u8; 7] {
    let len = payload_len + 7;
    let (profile, sfi, chan) = (1u8, 3u8, 2u8); // LC, 48 kHz, stereo
    [
        0xFF,
        0xF1, // MPEG-4, layer 0, no CRC
        (profile << 6) | (sfi << 2) | (chan >> 2),
        ((chan & 3) << 6) | ((len >> 11) as u8 & 0x03),
        (len >> 3) as u8,
        (((len & 7) as u8) << 5) | 0x1F,
        0xFC,
    ]
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {name}"))?
        .parse()
        .map_err(|_| format!("bad {name}"))
}

fn dump(args: &[String]) -> Result<(), String> {
    let opts = FakeOptions {
        width: arg(args, 0, "WIDTH")?,
        height: arg(args, 1, "HEIGHT")?,
        fps: arg(args, 2, "FPS")?,
        gop_ms: if args.len() > 5 {
            arg(args, 5, "GOP_MS")?
        } else {
            1000
        },
        bitrate: if args.len() > 6 {
            Some(arg(args, 6, "BITRATE")?)
        } else {
            None
        },
    };
    opts.validate()?;
    let frames: u64 = arg(args, 3, "FRAMES")?;
    let prefix: String = arg(args, 4, "PREFIX")?;
    let mut src = FakeSource::new(&opts, 1);
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let mut n = 0;
    // A made-up wall clock: 2023-11-14T22:13:20Z plus stream time.
    while n < frames {
        let now = 1_700_000_000_000 + src.next_due().as_millis() as u64;
        let f = src.next_frame(now);
        if f.track == 1 {
            video.extend_from_slice(&f.payload);
            n += 1;
        } else {
            audio.extend_from_slice(&adts_header(f.payload.len()));
            audio.extend_from_slice(&f.payload);
        }
    }
    std::fs::write(format!("{prefix}.h264"), &video).map_err(|e| e.to_string())?;
    std::fs::write(format!("{prefix}.aac"), &audio).map_err(|e| e.to_string())?;
    println!(
        "{frames} video frames ({} bytes) to {prefix}.h264, {} audio bytes to {prefix}.aac",
        video.len(),
        audio.len()
    );
    Ok(())
}

fn read(args: &[String]) -> Result<(), String> {
    let width: usize = arg(args, 0, "WIDTH")?;
    let height: usize = arg(args, 1, "HEIGHT")?;
    let file: String = arg(args, 2, "FILE")?;
    let data = std::fs::read(&file).map_err(|e| e.to_string())?;
    let frame_len = width * height * 3 / 2;
    for (i, frame) in data.chunks_exact(frame_len).enumerate() {
        match barcode::read(&frame[..width * height], width, height) {
            Some(v) => {
                let (index, low) = barcode::split(v);
                println!("{i} {index} {low}");
            }
            None => println!("{i} unreadable"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dump") => dump(&args[1..]),
        Some("read") => read(&args[1..]),
        _ => Err(
            "usage: fake_dump dump W H FPS FRAMES PREFIX [GOP_MS] [BITRATE] | read W H FILE.yuv"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake_dump: {e}");
            ExitCode::FAILURE
        }
    }
}
