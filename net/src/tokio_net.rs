//! `TokioNet`: the `Net` of the `tern` binary, over tokio's real TCP sockets.

use std::io;
use std::net::SocketAddr;

use crate::net::{Listener, Net};

#[derive(Clone, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        // Frames go out as they come: never wait to coalesce.
        s.set_nodelay(true)?;
        Ok(s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = tokio::net::TcpListener::accept(self).await?;
        s.set_nodelay(true)?;
        Ok((s, a))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}
