//! The `udp://` input: MPEG-TS datagrams to a local address or a multicast group.
//!
//! Owns: the socket's life (bind, join, rebind with backoff after an error, leave
//! while a failover backup is not needed) and the silence rule: after
//! `source_timeout` without a datagram the stream is declared silent, and what
//! arrives next starts a new epoch (a sender that restarted). Must not: parse the
//! transport stream (core's `TsIngest`, through `TsPump`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tern_core::cluster::backoff::Backoff;
use tern_net::{Clock, UdpInput};
use tracing::{info, warn};

use crate::input::ts_pump::TsPump;
use crate::input::{Gate, Sink};

/// Largest datagram read (a longer one is cut). MPEG-TS over UDP sends 7 packets
/// (1316 bytes) per datagram; 64 KiB covers any sender.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Where to listen.
#[derive(Clone, Debug)]
pub struct UdpTarget {
    pub addr: IpAddr,
    pub port: u16,
    pub interface: Option<Ipv4Addr>,
    /// The input's URL, for logs.
    pub label: String,
}

/// Runs until aborted.
#[allow(clippy::disallowed_methods)] // driver: socket timeouts and rebind delays of a udp:// input
pub async fn run<C: Clock>(
    sink: Arc<dyn Sink>,
    target: UdpTarget,
    source_timeout: Duration,
    clock: C,
    mut gate: Gate,
) {
    let label = target.label.clone();
    let mut backoff = Backoff::new(seed_of(&label));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        if !gate.opened().await {
            return;
        }
        let socket = match UdpInput::bind(target.addr, target.port, target.interface).await {
            Ok(s) => s,
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(input = %label, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot listen for MPEG-TS over UDP");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        info!(input = %label, local = ?socket.local_addr().ok(), recv_buffer = ?socket.recv_buffer(), "listening for MPEG-TS over UDP");
        let mut pump = TsPump::new(sink.clone(), label.clone(), clock.utc_ms());
        let mut got_data = false;
        let reason = loop {
            tokio::select! {
                biased;
                () = gate.closed() => break "input not needed (failover, or no viewers)".to_owned(),
                r = tokio::time::timeout(source_timeout, socket.recv(&mut buf)) => match r {
                    Ok(Ok(n)) => {
                        got_data = true;
                        pump.feed(clock.utc_ms(), &buf[..n]);
                        if pump.frames > 0 {
                            backoff.reset();
                        }
                    }
                    Ok(Err(e)) => break e.to_string(),
                    Err(_) if got_data => {
                        // The sender went quiet: whatever comes next is a new epoch.
                        warn!(input = %label, timeout_ms = source_timeout.as_millis() as u64, "no datagram within the source timeout");
                        std::mem::replace(&mut pump, TsPump::new(sink.clone(), label.clone(), clock.utc_ms())).abandon();
                        got_data = false;
                    }
                    Err(_) => {}
                },
            }
        };
        pump.end();
        drop(socket);
        let delay = backoff.next_delay();
        warn!(input = %label, reason, retry_in_ms = delay.as_millis() as u64, "UDP input stopped");
        tokio::time::sleep(delay).await;
    }
}

/// A backoff seed from the input's URL (FNV-1a): inputs of one node jitter apart.
pub fn seed_of(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
