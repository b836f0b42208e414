//! The `rtsp://` input: reads an IP camera with the `retina` crate (the RTSP client of
//! Moonfire NVR) and keeps reading — reconnecting with jittered backoff when the
//! camera refuses, drops the connection or goes silent for `source_timeout`.
//!
//! retina owns its sockets (a tokio `TcpStream`, and UDP sockets with
//! `?transport=udp`), so this input runs on real sockets only, never in the turmoil
//! simulation; the conversion of what it depacketizes into Tern frames is pure and
//! tested in `tern_core::rtp_ingest`.
//!
//! Owns: the RTSP session's lifecycle and its timers. Must not: shape frames (core's
//! `RtpIngest` does), log or report the camera's credentials.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use retina::client::{
    Credentials, PlayOptions, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tern_core::capture_clock::ReportOutcome;
use tern_core::cluster::backoff::Backoff;
use tern_core::config::{RtspInput, RtspTransport};
use tern_core::ingest::h26x::reorder_depth;
use tern_core::rtp_ingest::{Kind, RtpIngest, VideoCodec, AUDIO_TRACK, VIDEO_TRACK};
use tern_core::stream_status::lasting_refusal;
use tern_core::{MediaInfo, TrackInfo, TrackParams};
use tern_net::Clock;
use tracing::{debug, info, warn};

use crate::input::{Gate, Sink};

/// Longest wait for the camera to answer DESCRIBE, SETUP or PLAY.
pub const RTSP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnect delay after a failure (before jitter).
pub const RTSP_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest delay between two attempts: cameras allow few sessions, so a broken one
/// is not hammered.
pub const RTSP_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What the driver needs to know of the input.
pub struct Options {
    pub input: RtspInput,
    /// Silence after which the session is given up and opened again.
    pub source_timeout: Duration,
    pub seed: u64,
}

/// Runs until aborted. While the gate is shut (a failover backup not needed), it
/// stays disconnected.
#[allow(clippy::disallowed_methods)] // driver: reconnect delays of an rtsp:// input
pub async fn run<C: Clock>(sink: Arc<dyn Sink>, opts: Options, clock: C, mut gate: Gate) {
    let mut backoff = Backoff::with_limits(opts.seed, RTSP_BACKOFF_BASE, RTSP_BACKOFF_CAP);
    // The URL as shown everywhere: credentials replaced by `***`.
    let camera = opts.input.to_string();
    loop {
        if !gate.opened().await {
            return;
        }
        let mut delivered = false;
        let reason = tokio::select! {
            biased;
            () = gate.closed() => "input not needed (failover, or no viewers)".to_owned(),
            r = session(&sink, &opts, &clock, &mut delivered) => r,
        };
        if delivered {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        warn!(%camera, reason, retry_in_ms = delay.as_millis() as u64, "camera session ended; reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// Why a request failed; a refusal retrying will not fix (401, 404...) also puts
/// the stream in `error` until a frame arrives.
fn refused(sink: &Arc<dyn Sink>, step: &str, e: &retina::Error) -> String {
    let why = format!("{step} failed: {}", one_line(e));
    if e.status_code().is_some_and(lasting_refusal) {
        sink.hub()
            .note_refused(format!("the camera refused {step}: {}", one_line(e)));
    }
    why
}

/// One RTSP session, from DESCRIBE to its end; returns why it ended.
#[allow(clippy::disallowed_methods)] // driver: request and source timeouts on retina's session
async fn session<C: Clock>(
    sink: &Arc<dyn Sink>,
    opts: &Options,
    clock: &C,
    delivered: &mut bool,
) -> String {
    let camera = opts.input.to_string();
    let url = match url::Url::parse(&opts.input.camera_url()) {
        Ok(u) => u,
        Err(e) => return format!("bad camera URL: {e}"),
    };
    let creds = opts.input.credentials.as_ref().map(|c| Credentials {
        username: c.user.clone(),
        password: c.password.clone(),
    });
    let session_opts = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("tern/{}", env!("CARGO_PKG_VERSION")))
        .session_group(Arc::new(SessionGroup::default()));
    let described = tokio::time::timeout(
        RTSP_REQUEST_TIMEOUT,
        retina::client::Session::describe(url, session_opts),
    )
    .await;
    let mut described = match described {
        Err(_) => return "no answer to DESCRIBE within 10 s".to_owned(),
        Ok(Err(e)) => return refused(sink, "DESCRIBE", &e),
        Ok(Ok(s)) => s,
    };
    let streams = described.streams();
    let video = streams
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"));
    let audio = streams
        .iter()
        .position(|s| s.media() == "audio" && s.encoding_name() == "mpeg4-generic");
    let skipped: Vec<String> = streams
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != video && Some(*i) != audio)
        .map(|(_, s)| format!("{}/{}", s.media(), s.encoding_name()))
        .collect();
    if !skipped.is_empty() {
        info!(%camera, ?skipped, "camera tracks left out (Tern takes H.264 or H.265 video and AAC audio from RTSP)");
    }
    if video.is_none() && audio.is_none() {
        return "the camera offers neither H.264/H.265 video nor AAC audio".to_owned();
    }
    let transport = match opts.input.transport {
        RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
        RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
    };
    let format = FrameFormat {
        h26x_framing: retina::codec::h26x::Framing::AnnexB,
        parameter_set_insertion: retina::codec::ParameterSetInsertion::EachKeyFrame,
        aac_framing: retina::codec::aac::Framing::Raw,
    };
    for i in [video, audio].into_iter().flatten() {
        let setup = SetupOptions::default()
            .transport(transport.clone())
            .frame_format(format);
        match tokio::time::timeout(RTSP_REQUEST_TIMEOUT, described.setup(i, setup)).await {
            Err(_) => return "no answer to SETUP within 10 s".to_owned(),
            Ok(Err(e)) => return refused(sink, "SETUP", &e),
            Ok(Ok(())) => {}
        }
    }
    let play = described.play(PlayOptions::default());
    let playing = match tokio::time::timeout(RTSP_REQUEST_TIMEOUT, play).await {
        Err(_) => return "no answer to PLAY within 10 s".to_owned(),
        Ok(Err(e)) => return refused(sink, "PLAY", &e),
        Ok(Ok(p)) => p,
    };
    let mut demuxed = match playing.demuxed() {
        Ok(d) => d,
        Err(e) => return format!("cannot depacketize: {}", one_line(&e)),
    };

    let epoch = clock.utc_ms();
    let mut ingest = RtpIngest::new(epoch);
    if let Some(i) = video {
        let s = &demuxed.streams()[i];
        let codec = if s.encoding_name() == "h265" {
            VideoCodec::H265
        } else {
            VideoCodec::H264
        };
        ingest.set_video(s.clock_rate_hz(), codec);
    }
    let mut media = MediaState::default();
    if let Some(i) = audio {
        let s = &demuxed.streams()[i];
        if let Some(ParametersRef::Audio(p)) = s.parameters() {
            ingest.set_audio(s.clock_rate_hz(), p.clock_rate());
            media.audio = Some(TrackParams::Aac {
                config: bytes::Bytes::copy_from_slice(p.extra_data()),
                sample_rate: p.clock_rate(),
                channels: u8::try_from(p.channels().get()).unwrap_or(u8::MAX),
                frame_samples: p
                    .frame_length()
                    .map_or(1024, |n| u16::try_from(n.get()).unwrap_or(1024)),
            });
        }
    }
    info!(%camera, epoch, video = video.is_some(), audio = media.audio.is_some(), "camera playing");
    let mut capture_source = None;
    let mut reorder = ingest.reorder_depth();
    loop {
        let item = match tokio::time::timeout(opts.source_timeout, demuxed.next()).await {
            Err(_) => {
                return format!(
                    "no media from the camera for {} ms (source_timeout)",
                    opts.source_timeout.as_millis()
                )
            }
            Ok(None) => return "the camera ended the session".to_owned(),
            Ok(Some(Err(e))) => return format!("RTSP error: {}", one_line(&e)),
            Ok(Some(Ok(item))) => item,
        };
        let now = clock.utc_ms();
        match item {
            CodecItem::VideoFrame(f) => {
                if f.has_new_parameters() || media.video.is_none() {
                    let params = demuxed.streams()[f.stream_id()].parameters();
                    if let Some(ParametersRef::Video(p)) = params {
                        media.video = video_params(p);
                        let Some(params) = &media.video else {
                            return "the camera's video parameters are not usable".to_owned();
                        };
                        // B-frames: RTP has presentation times only, decode times
                        // follow from the reorder depth (learnt when not stated).
                        if let Some(depth) = reorder_depth(params) {
                            ingest.set_reorder_depth(depth.into());
                            reorder = ingest.reorder_depth();
                            if depth > 0 {
                                info!(%camera, depth, "B-frames: reorder depth from the SPS");
                            }
                        }
                        sink.media_info(Arc::new(media.info()));
                    }
                }
                if media.video.is_none() {
                    continue; // nothing decodable before the first parameters
                }
                let ts = f.timestamp();
                let key = f.is_random_access_point();
                match ingest.frame(
                    Kind::Video,
                    ts.elapsed(),
                    ts.timestamp(),
                    key,
                    f.into_data(),
                    now,
                ) {
                    Ok(frame) => {
                        sink.hub().note_delay(now, frame.capture_ms);
                        sink.frame(frame);
                        *delivered = true;
                    }
                    Err(why) => debug!(%camera, ?why, "video frame dropped"),
                }
                if ingest.reorder_depth() != reorder {
                    reorder = ingest.reorder_depth();
                    warn!(%camera, depth = reorder, "B-frames reordered deeper than the SPS states: reorder depth learnt from the timestamps, video frames dropped until the next keyframe");
                }
            }
            CodecItem::AudioFrame(f) => {
                if media.video.is_none() && video.is_some() {
                    continue; // audio waits for the video's parameters
                }
                if !media.announced {
                    sink.media_info(Arc::new(media.info()));
                }
                let ts = f.timestamp();
                let data = f.data().to_vec();
                match ingest.frame(Kind::Audio, ts.elapsed(), ts.timestamp(), true, data, now) {
                    Ok(frame) => {
                        sink.frame(frame);
                        *delivered = true;
                    }
                    Err(why) => debug!(%camera, ?why, "audio frame dropped"),
                }
            }
            CodecItem::Rtcp(rtcp) => {
                let kind = if Some(rtcp.stream_id()) == video {
                    Kind::Video
                } else {
                    Kind::Audio
                };
                let Some(rtp) = rtcp.rtp_timestamp() else {
                    continue;
                };
                let sr = rtcp
                    .pkts()
                    .find_map(|p| p.as_sender_report().ok().flatten());
                let Some(sr) = sr else { continue };
                let outcome =
                    ingest.handle_sender_report(kind, rtp.timestamp(), sr.ntp_timestamp().0, now);
                if let ReportOutcome::Skewed { skew_ms } = outcome {
                    if capture_source.is_none() {
                        warn!(%camera, skew_ms, "the camera's clock is off: capture times are arrival times");
                    }
                }
            }
            _ => {}
        }
        let source = ingest.capture_source();
        if capture_source != Some(source) {
            capture_source = Some(source);
            sink.hub().note_capture_source(source.as_str());
            info!(%camera, capture_time = source.as_str(), "capture time source");
        }
    }
}

/// The tracks known so far; media info is sent when they change.
#[derive(Default)]
struct MediaState {
    video: Option<TrackParams>,
    audio: Option<TrackParams>,
    announced: bool,
}

impl MediaState {
    fn info(&mut self) -> MediaInfo {
        self.announced = true;
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(TrackInfo {
                id: VIDEO_TRACK,
                params: v.clone(),
            });
        }
        if let Some(a) = &self.audio {
            tracks.push(TrackInfo {
                id: AUDIO_TRACK,
                params: a.clone(),
            });
        }
        MediaInfo { tracks }
    }
}

/// H.264 or H.265 track parameters from retina's; `None` for another codec or a
/// picture size Tern cannot carry.
fn video_params(p: &retina::codec::VideoParameters) -> Option<TrackParams> {
    let (w, h) = p.pixel_dimensions();
    let fps = p
        .frame_rate()
        .and_then(|(num, den)| (num > 0).then(|| (den + num / 2) / num))
        .filter(|&f| f > 0)
        .unwrap_or(25);
    let (width, height) = (u16::try_from(w).ok()?, u16::try_from(h).ok()?);
    let fps = u16::try_from(fps).unwrap_or(u16::MAX);
    let b = bytes::Bytes::copy_from_slice;
    match p.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => Some(TrackParams::H264 {
            sps: b(sps),
            pps: b(pps),
            width,
            height,
            fps,
        }),
        VideoParametersCodec::H265 { vps, sps, pps } => Some(TrackParams::H265 {
            vps: b(vps),
            sps: b(sps),
            pps: b(pps),
            width,
            height,
            fps,
        }),
        _ => None,
    }
}

/// retina's error text on one line (it spreads its context over several).
fn one_line(e: &retina::Error) -> String {
    e.to_string()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
