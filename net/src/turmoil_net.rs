//! `TurmoilNet` and `TurmoilClock`: the same traits over turmoil's simulated network
//! and virtual time, for tern-sim. Host names resolve to simulated hosts.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tern_core::UtcMs;

use crate::clock::Clock;
use crate::net::{Listener, Net};

#[derive(Clone, Debug, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }
}

impl Listener for turmoil::net::TcpListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        turmoil::net::TcpListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        turmoil::net::TcpListener::local_addr(self)
    }
}

/// Virtual time of the current turmoil host: tokio's paused clock for `now`, the
/// simulation's pinned epoch plus elapsed time for UTC.
#[derive(Clone, Debug)]
pub struct TurmoilClock {
    start: tokio::time::Instant,
}

impl TurmoilClock {
    pub fn new() -> Self {
        TurmoilClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TurmoilClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TurmoilClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn utc_ms(&self) -> UtcMs {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as UtcMs)
            .unwrap_or(0)
    }
}
