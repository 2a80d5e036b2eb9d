//! A connection's byte stream: plain TCP, or TLS over it. The same enum
//! serves client connections (a rustls server stream) and upstream
//! connections (a rustls client stream); HTTP/1.1 runs over either alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

/// TCP, or TLS of type `T` over TCP, or (toward apps) one HTTP/2 stream
/// presented as an HTTP/1.1 connection.
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    H2(Box<crate::http2::upstream::AppStream>),
}

/// The TLS client side of a connection to an app.
pub type ClientTls = futures_rustls::client::TlsStream<TcpStream>;

/// The TLS server side of a client connection.
pub type ServerTls = futures_rustls::server::TlsStream<TcpStream>;

/// What the request path reads a request from and writes its response
/// to: an HTTP/1.1 connection (TCP or TLS), or one HTTP/2 stream presented
/// as an HTTP/1.1 exchange.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<ServerTls>),
    H2(Box<crate::http2::stream::StreamIo>),
}

/// A connection to an app: TLS client side.
pub type UpstreamStream = MaybeTls<ClientTls>;

impl ClientIo {
    /// Stops sending (after a final TLS close_notify), keeps reading: the
    /// first half of a lingering close.
    pub async fn shutdown_write(&mut self) {
        match self {
            ClientIo::Plain(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write).await;
            }
            ClientIo::Tls(s) => {
                s.get_mut().1.send_close_notify();
                let _ = s.flush().await;
                let _ = s.get_ref().0.shutdown(std::net::Shutdown::Write).await;
            }
            // The response is over; the stream then reads as closed, so a
            // lingering close ends at once (the h2 crate resets a request
            // body still arriving).
            ClientIo::H2(s) => s.finish(),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        match self {
            ClientIo::Plain(_) => false,
            ClientIo::Tls(_) => true,
            ClientIo::H2(s) => s.tls,
        }
    }
}

impl UpstreamStream {
    /// The TCP socket underneath (none for an HTTP/2 stream: its
    /// connection is shared).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(s) => Some(s),
            MaybeTls::Tls(s) => Some(s.get_ref().0),
            MaybeTls::H2(_) => None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::H2(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::H2(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::H2(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            MaybeTls::H2(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Dispatches the stream traits over the variants.
macro_rules! each_variant {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientIo::Plain($s) => $e,
            ClientIo::Tls($s) => $e,
            ClientIo::H2($s) => $e,
        }
    };
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        each_variant!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_variant!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_variant!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_variant!(self, s => Pin::new(s).poll_close(cx))
    }
}

/// A client connection (TCP or TLS) counting the bytes sent to it, for
/// the traffic log.
pub type ClientStream = crate::io::Counted<ClientIo>;
