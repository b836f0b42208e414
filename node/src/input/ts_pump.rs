//! What every MPEG-TS input (`udp://`, `http://`) does with the bytes it receives:
//! feeds them, with their arrival time, to core's `TsIngest` and hands its media
//! info and frames to the stream's sink, logging discontinuities and ignored streams.
//!
//! Owns: one `TsIngest` per connection (a new one, and so a new epoch, after every
//! reconnect or silence). Must not: own a socket or a timer (the drivers do).

use std::sync::Arc;

use tern_core::ingest::ts_demux::DemuxStats;
use tern_core::ingest::ts_ingest::{IngestEvent, TsIngest};
use tern_core::UtcMs;
use tracing::{info, warn};

use crate::input::Sink;

pub struct TsPump {
    ingest: TsIngest,
    sink: Arc<dyn Sink>,
    /// The input as shown in logs (never holds credentials).
    label: String,
    /// Frames handed to the sink since this pump started.
    pub frames: u64,
    reported: DemuxStats,
}

impl TsPump {
    /// A pump whose first epoch is `utc_ms` (the connect time).
    pub fn new(sink: Arc<dyn Sink>, label: String, utc_ms: UtcMs) -> TsPump {
        TsPump {
            ingest: TsIngest::new(utc_ms),
            sink,
            label,
            frames: 0,
            reported: DemuxStats::default(),
        }
    }

    /// Feeds bytes that arrived at `utc_ms`.
    pub fn feed(&mut self, utc_ms: UtcMs, data: &[u8]) {
        self.ingest.handle_bytes(utc_ms, data);
        self.drain();
    }

    /// The input ended: what is still buffered goes out.
    pub fn end(&mut self) {
        self.ingest.handle_end();
        self.drain();
        self.report();
    }

    /// The sender went silent for the source timeout: what is still buffered (the
    /// frame whose end was never seen) is that old, and is dropped, not published.
    /// Published late, it would reach live viewers a source timeout behind and keep
    /// a dead stream `running` for another source timeout.
    pub fn abandon(mut self) {
        self.report();
    }

    fn drain(&mut self) {
        while let Some(ev) = self.ingest.poll_event() {
            match ev {
                IngestEvent::MediaInfo(mi) => {
                    let tracks: Vec<String> = mi
                        .tracks
                        .iter()
                        .map(|t| t.codec_name().to_owned())
                        .collect();
                    info!(input = %self.label, ?tracks, "media info");
                    self.sink.media_info(mi);
                }
                IngestEvent::Frame(f) => {
                    self.frames += 1;
                    self.sink.frame(f);
                }
                IngestEvent::Discontinuity(reason) => {
                    warn!(input = %self.label, ?reason, epoch = self.ingest.epoch(), "discontinuity");
                    self.report();
                }
                IngestEvent::Ignored(es) => {
                    info!(input = %self.label, pid = es.pid, stream_type = es.stream_type, "stream of the program not taken (Tern takes H.264/H.265 video and AAC audio)");
                }
            }
        }
    }

    /// Logs what went wrong in the transport stream since the last report.
    fn report(&mut self) {
        let s = self.ingest.stats();
        let r = self.reported;
        if s != r {
            info!(
                input = %self.label,
                packets = s.packets - r.packets,
                skipped_bytes = s.skipped_bytes - r.skipped_bytes,
                continuity_errors = s.continuity_errors - r.continuity_errors,
                duplicates = s.duplicates - r.duplicates,
                bad_sections = s.bad_sections - r.bad_sections,
                dropped_pes = s.dropped_pes - r.dropped_pes,
                "transport stream figures"
            );
            self.reported = s;
        }
    }
}
