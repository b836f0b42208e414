//! Who watches a stream on this node, and how many bytes it was sent: the figures
//! behind the API's `online_clients` and `bytes_out` and the metrics.
//!
//! A client is an open streaming response (archive or timeshift MPEG-TS; live
//! MPEG-TS viewers are held by the hub's demand machine, which counts them), or an
//! address that fetched one of the stream's HLS playlists or
//! segments within the last [`HLS_CLIENT_WINDOW`] (HLS has no connection to count;
//! several players behind one address count once). Bytes are counted as hyper takes
//! them from the body, so a response cut short counts what was sent.
//!
//! Owns: the counters of one stream. Must not: decide anything from them (the
//! on-demand logic of other issues reads [`Clients::online`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HLS player counts as online this long after its last request (playlists are
/// reloaded every target duration, at most 60 s).
pub const HLS_CLIENT_WINDOW: Duration = Duration::from_secs(30);
/// At most this many HLS addresses are remembered per stream; past it the oldest is
/// forgotten (and no longer counted).
pub const MAX_HLS_CLIENTS: usize = 100_000;

/// The out bit rate is measured between reads at least this far apart (see
/// [`Clients::out_bitrate`]).
pub const OUT_RATE_WINDOW: Duration = Duration::from_secs(5);

/// The counters of one stream.
#[derive(Debug, Default)]
pub struct Clients {
    streaming: AtomicU64,
    bytes_out: AtomicU64,
    /// Live MPEG-TS viewers skipped forward to a keyframe, and cut for taking
    /// nothing.
    skips: AtomicU64,
    cuts: AtomicU64,
    hls: Mutex<BTreeMap<IpAddr, Duration>>,
    /// Two (time, bytes out) snapshots: the rate runs from the older to now.
    rate: Mutex<[Option<(Duration, u64)>; 2]>,
}

/// How a response counts its client.
#[derive(Clone, Debug)]
pub enum Viewer {
    /// An HLS request from this address (counted for [`HLS_CLIENT_WINDOW`]).
    Hls(IpAddr),
    /// A streaming response: counted while it is open.
    Streaming,
    /// A response whose client is counted elsewhere (live MPEG-TS: the hub's
    /// demand machine holds it): only its bytes count here.
    Held,
}

/// Tags a response with the stream it serves (in its extensions): the server counts
/// its bytes and its client.
#[derive(Clone, Debug)]
pub struct Counted {
    pub clients: Arc<Clients>,
    pub viewer: Viewer,
}

/// Holds one streaming client; dropped with the response.
#[derive(Debug)]
pub struct Open(Arc<Clients>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Clients {
    /// A streaming response begins.
    pub fn open(self: &Arc<Self>) -> Open {
        self.streaming.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    /// An HLS request from `ip` at `now` (monotonic).
    pub fn seen(&self, ip: IpAddr, now: Duration) {
        let mut hls = self.hls.lock().unwrap_or_else(|e| e.into_inner());
        hls.insert(ip, now);
        if hls.len() > MAX_HLS_CLIENTS {
            prune(&mut hls, now);
            while hls.len() > MAX_HLS_CLIENTS {
                let Some((&oldest, _)) = hls.iter().min_by_key(|(_, &t)| t) else {
                    break;
                };
                hls.remove(&oldest);
            }
        }
    }

    /// A live MPEG-TS viewer fell behind the fan-out ring and skipped `n` times.
    pub fn skipped(&self, n: u64) {
        self.skips.fetch_add(n, Ordering::Relaxed);
    }

    /// A live MPEG-TS viewer was cut (its socket took nothing).
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
    }

    /// (skips, cuts) of live MPEG-TS viewers since the stream started.
    pub fn skips_and_cuts(&self) -> (u64, u64) {
        (
            self.skips.load(Ordering::Relaxed),
            self.cuts.load(Ordering::Relaxed),
        )
    }

    /// Bytes sent to a client of this stream.
    pub fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Clients online at `now`: open streaming responses and HLS addresses seen
    /// within [`HLS_CLIENT_WINDOW`].
    pub fn online(&self, now: Duration) -> u64 {
        let mut hls = self.hls.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut hls, now);
        self.streaming.load(Ordering::Relaxed) + hls.len() as u64
    }

    /// Bytes sent to this stream's clients since it started.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Bits per second sent to this stream's clients, measured from a snapshot
    /// taken [`OUT_RATE_WINDOW`] to twice that before `now` by an earlier read (0
    /// on the first read, or when the last read is older than that).
    pub fn out_bitrate(&self, now: Duration) -> u64 {
        let bytes = self.bytes_out();
        let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        // Snapshots too old to measure the present are forgotten.
        for slot in r.iter_mut() {
            if slot.is_some_and(|(t, _)| now.saturating_sub(t) > 2 * OUT_RATE_WINDOW) {
                *slot = None;
            }
        }
        if r[1].is_none_or(|(t, _)| now.saturating_sub(t) >= OUT_RATE_WINDOW) {
            r[0] = r[1].or(r[0]);
            r[1] = Some((now, bytes));
        }
        let from = r[0].or(r[1]);
        match from {
            Some((t, b)) if now > t => {
                let ms = now.saturating_sub(t).as_millis().max(1) as u64;
                bytes.saturating_sub(b).saturating_mul(8000) / ms
            }
            _ => 0,
        }
    }
}

fn prune(hls: &mut BTreeMap<IpAddr, Duration>, now: Duration) {
    hls.retain(|_, &mut t| now.saturating_sub(t) < HLS_CLIENT_WINDOW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn counts_streams_and_recent_hls_addresses() {
        let c = Arc::new(Clients::default());
        let s = Duration::from_secs;
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        c.seen(a, s(0));
        c.seen(a, s(1));
        c.seen(b, s(10));
        let open = c.open();
        assert_eq!(c.online(s(11)), 3);
        assert_eq!(c.online(s(35)), 2, "a left the window");
        drop(open);
        assert_eq!(c.online(s(35)), 1);
        assert_eq!(c.online(s(41)), 0);
        c.sent(10);
        c.sent(5);
        assert_eq!(c.bytes_out(), 15);
    }

    #[test]
    fn out_bitrate_between_reads() {
        let c = Clients::default();
        let s = Duration::from_secs;
        assert_eq!(c.out_bitrate(s(100)), 0, "first read");
        c.sent(10_000);
        assert_eq!(c.out_bitrate(s(102)), 40_000, "10 kB in 2 s");
        c.sent(10_000);
        assert_eq!(c.out_bitrate(s(105)), 32_000, "20 kB in 5 s");
        c.sent(5_000);
        // At 110 the snapshot of 105 becomes the older one.
        assert_eq!(c.out_bitrate(s(110)), 8_000, "5 kB since 105");
        assert_eq!(c.out_bitrate(s(112)), 5_000 * 8 / 7, "5 kB since 105");
        assert_eq!(c.out_bitrate(s(200)), 0, "stale snapshots forgotten");
    }
}
