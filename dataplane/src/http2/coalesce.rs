//! The I/O adapter under every HTTP/2 connection (to browsers and to
//! apps): writes collected until the codec flushes, reads through lent
//! buffers.
//!
//! The `h2` crate writes a round of frames as many small pieces (a frame
//! header, then its payload, frame after frame) and flushes at the end of
//! the round. Over TLS each write would become a record of its own and a
//! `send` system call; collected here, the round goes out as one write:
//! full records, one `send` per 16 KiB record at most. The buffer is lent
//! by the core's pool for the length of a round, so an idle connection
//! holds none.
//!
//! It is also where the connection meets the `h2` crate's I/O traits
//! (tokio's): reads go through a pooled, already initialised buffer. A
//! generic adapter has to zero the codec's whole free read space before
//! every read (tokio's `ReadBuf` over uninitialised memory), about 4 KiB
//! per read of a request or two.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use tokio::io::ReadBuf;

use crate::io::BufferPool;

/// Bytes collected before they are written out without waiting for the
/// flush (a large round: a body larger than this goes in pieces).
const MAX_COLLECTED: usize = 64 * 1024;

pub struct Coalesce<T> {
    inner: T,
    collected: Vec<u8>,
    /// How much of `collected` the inner stream took already.
    written: usize,
    pool: Rc<BufferPool>,
}

impl<T> Coalesce<T> {
    pub fn new(inner: T, pool: Rc<BufferPool>) -> Coalesce<T> {
        Coalesce {
            inner,
            collected: Vec::new(),
            written: 0,
            pool,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes out everything collected; the buffer goes back to the pool.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.collected.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.collected[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.collected.capacity() > 0 {
            self.pool.give_scratch(std::mem::take(&mut self.collected));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> tokio::io::AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.collected.len() + buf.len() > MAX_COLLECTED && !this.collected.is_empty() {
            ready!(this.poll_drain(cx))?;
        }
        if this.collected.capacity() == 0 {
            this.collected = this.pool.take_scratch();
        }
        this.collected.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<T: AsyncRead + Unpin> tokio::io::AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // An initialised buffer lent for this read only: nothing is held
        // between reads, and nothing is zeroed per read.
        let mut lent = this.pool.take_read();
        let want = buf.remaining().min(lent.len());
        let result = Pin::new(&mut this.inner).poll_read(cx, &mut lent[..want]);
        if let Poll::Ready(Ok(n)) = &result {
            buf.put_slice(&lent[..*n]);
        }
        this.pool.give_read(lent);
        result.map_ok(|_| ())
    }
}
