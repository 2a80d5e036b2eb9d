//! A connection's byte stream: plain TCP, or TLS over it. The same enum
//! serves client connections (a rustls server stream) and upstream
//! connections (a rustls client stream); HTTP/1.1 runs over either alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

/// TCP, or TLS of type `T` over TCP.
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A client connection: TLS server side.
pub type ClientIo = MaybeTls<futures_rustls::server::TlsStream<TcpStream>>;

/// A connection to an app: TLS client side.
pub type UpstreamStream = MaybeTls<futures_rustls::client::TlsStream<TcpStream>>;

impl ClientIo {
    /// Stops sending (after a final TLS close_notify), keeps reading: the
    /// first half of a lingering close.
    pub async fn shutdown_write(&mut self) {
        match self {
            MaybeTls::Plain(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write).await;
            }
            MaybeTls::Tls(s) => {
                s.get_mut().1.send_close_notify();
                let _ = s.flush().await;
                let _ = s.get_ref().0.shutdown(std::net::Shutdown::Write).await;
            }
        }
    }
}

impl UpstreamStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A client connection (TCP or TLS) counting the bytes sent to it, for
/// the traffic log.
pub type ClientStream = crate::io::Counted<ClientIo>;
