//! `UdpInput`: the receiving UDP socket of a `udp://` input (unicast, or a multicast
//! group joined on one interface) or of an `srt://` input (which also answers its
//! peer), over tokio's real sockets.
//!
//! Owns: binding and joining. Must not: parse what arrives (core's `TsIngest` does).
//! Not part of `Net`: the simulation does not drive UDP inputs (their parsing is pure
//! and tested in core).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Receive buffer asked of the OS (capped by `net.core.rmem_max`): a sender that
/// bursts a keyframe (ffmpeg without `bitrate=`, 100+ KiB at once) overflows Linux's
/// default 208 KiB and loses datagrams.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// A bound (and, for a group, joined) UDP socket.
pub struct UdpInput {
    socket: tokio::net::UdpSocket,
}

impl UdpInput {
    /// Binds `addr:port`. For a multicast `addr`, joins the group on the interface
    /// with address `interface` (the OS's default interface when `None`).
    pub async fn bind(addr: IpAddr, port: u16, interface: Option<Ipv4Addr>) -> io::Result<Self> {
        let sa = SocketAddr::new(addr, port);
        let raw = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Several listeners of one multicast group on one host.
        raw.set_reuse_address(addr.is_multicast())?;
        // Best effort: a smaller buffer still works, with losses on bursts.
        let _ = raw.set_recv_buffer_size(UDP_RECV_BUFFER);
        raw.bind(&sa.into())?;
        raw.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(raw.into())?;
        match addr {
            IpAddr::V4(group) if group.is_multicast() => {
                socket.join_multicast_v4(group, interface.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
            }
            IpAddr::V6(group) if group.is_multicast() => {
                socket.join_multicast_v6(&group, 0)?;
            }
            _ => {}
        }
        Ok(UdpInput { socket })
    }

    /// Receives one datagram into `buf` (a longer one is cut to `buf`'s length).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv(buf).await
    }

    /// Receives one datagram and its sender's address.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Sends one datagram to `to` (an `srt://` input answers its sender).
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(buf, to).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The receive buffer the OS gave (Linux reports twice what it counts as data).
    pub fn recv_buffer(&self) -> Option<usize> {
        socket2::SockRef::from(&self.socket).recv_buffer_size().ok()
    }
}
