//! A client connection's byte stream: plain TCP or TLS over it. The proxy
//! speaks HTTP/1.1 over either the same way; only closing differs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

/// TLS server stream over a glommio socket.
pub type TlsStream = futures_rustls::server::TlsStream<TcpStream>;

pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

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
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_close(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
