//! HTTP: one port serves players, the API and (later) the cluster protocols.

pub mod body;
pub mod guard;
pub mod manners;
pub mod router;
pub mod server;
pub mod sniff;
