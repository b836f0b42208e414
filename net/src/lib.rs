//! # tern-net
//!
//! What the node runtime needs from the outside world, as traits, so the same driver
//! runs on real sockets (tokio) and in the deterministic simulation (turmoil):
//!
//! - [`Net`]: bind a TCP listener, accept, connect by `host:port`;
//! - [`Clock`]: a monotonic `now` since the node started and the UTC wall clock.
//!
//! Must not: hold protocol logic (that is tern-core) or node policy (tern-node).

mod clock;
mod net;
mod tokio_net;
#[cfg(feature = "turmoil")]
mod turmoil_net;
mod udp;

pub use clock::{Clock, TokioClock};
pub use net::{Listener, Net};
pub use tokio_net::TokioNet;
#[cfg(feature = "turmoil")]
pub use turmoil_net::{TurmoilClock, TurmoilNet};
pub use udp::UdpInput;
