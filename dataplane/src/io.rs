//! Buffered reading over an async stream, per-core buffer pools, and
//! deadlines.
//!
//! [`Inbound`] owns a stream and its read buffer. Parsers look at
//! [`Inbound::buffered`] in place (no copy); the proxy consumes what it has
//! handled and asks for more with [`Inbound::fill`]. A pooled `Inbound`
//! gives its buffer back to the core's [`BufferPool`] whenever it holds no
//! unread bytes, so an idle keep-alive connection costs no buffer memory.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// A core's free buffers (never shared across cores). Buffers are taken for
/// the length of a read or an exchange and given back, so steady traffic
/// allocates nothing.
pub struct BufferPool {
    /// Read buffers: kept at `read_size` bytes, so taking one never zeroes.
    free_read: RefCell<Vec<Vec<u8>>>,
    /// Output buffers: cleared, capacity kept.
    free_scratch: RefCell<Vec<Vec<u8>>>,
    /// Size of read buffers handed out by [`BufferPool::take_read`].
    read_size: usize,
    /// Most buffers kept when given back.
    max_free: usize,
}

impl BufferPool {
    pub fn new(read_size: usize, max_free: usize) -> BufferPool {
        BufferPool {
            free_read: RefCell::new(Vec::new()),
            free_scratch: RefCell::new(Vec::new()),
            read_size,
            max_free,
        }
    }

    /// A read buffer: `read_size` bytes long.
    pub fn take_read(&self) -> Vec<u8> {
        self.free_read
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; self.read_size])
    }

    /// An empty buffer for building output.
    pub fn take_scratch(&self) -> Vec<u8> {
        self.free_scratch.borrow_mut().pop().unwrap_or_default()
    }

    /// Returns a read buffer; a grown one (a rare huge head) is dropped so
    /// the pool's memory stays bounded.
    pub fn give_read(&self, buffer: Vec<u8>) {
        let mut free = self.free_read.borrow_mut();
        if free.len() < self.max_free && buffer.len() == self.read_size {
            free.push(buffer);
        }
    }

    /// Returns an output buffer (cleared here).
    pub fn give_scratch(&self, mut buffer: Vec<u8>) {
        let mut free = self.free_scratch.borrow_mut();
        if free.len() < self.max_free && buffer.capacity() <= 4 * self.read_size {
            buffer.clear();
            free.push(buffer);
        }
    }
}

/// Bytes read before a pooled buffer is taken: an idle connection waits on
/// this small read instead of holding a whole buffer.
const FIRST_READ: usize = 1024;

use futures_lite::{AsyncRead, AsyncReadExt};

/// A stream with its read buffer.
pub struct Inbound<S> {
    pub stream: S,
    /// Storage (its length is the capacity in use); empty when a pooled
    /// buffer was given back.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pool: Option<Rc<BufferPool>>,
    /// Bytes consumed since the start (what the traffic log counts as
    /// received for each request).
    consumed: u64,
}

impl<S> Inbound<S> {
    pub fn new(stream: S, capacity: usize) -> Self {
        Inbound {
            stream,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            pool: None,
            consumed: 0,
        }
    }

    /// An `Inbound` whose buffer comes from `pool` when needed.
    pub fn pooled(stream: S, pool: Rc<BufferPool>) -> Self {
        Inbound {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            pool: Some(pool),
            consumed: 0,
        }
    }

    /// An `Inbound` reading into a buffer taken from `pool` at once (its
    /// first read gets the whole buffer); [`Inbound::release_if_idle`]
    /// gives it back and [`Inbound::reattach`] takes one again. For
    /// connections whose next bytes are due (an app's response), unlike
    /// [`Inbound::pooled`].
    pub fn with_pooled_buffer(stream: S, pool: Rc<BufferPool>) -> Self {
        Inbound {
            stream,
            buf: pool.take_read(),
            start: 0,
            end: 0,
            pool: Some(pool),
            consumed: 0,
        }
    }

    /// Takes a buffer from the pool again after
    /// [`Inbound::release_if_idle`] gave it back.
    pub fn reattach(&mut self) {
        if self.buf.is_empty() {
            if let Some(pool) = &self.pool {
                self.buf = pool.take_read();
            }
        }
    }

    /// Gives the buffer back to the pool if nothing is buffered.
    pub fn release_if_idle(&mut self) {
        if self.start == self.end && !self.buf.is_empty() {
            if let Some(pool) = &self.pool {
                pool.give_read(std::mem::take(&mut self.buf));
                self.start = 0;
                self.end = 0;
            }
        }
    }

    /// Bytes read but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as handled.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.consumed += n.min(self.end - self.start) as u64;
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bytes consumed since the stream was opened.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Gives back the stream and whatever was buffered.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        self.start = self.end;
        self.release_if_idle();
        (self.stream, rest)
    }
}

impl<S: AsyncRead + Unpin> Inbound<S> {
    /// Reads more bytes, letting the buffer grow to at most `max_buffered`
    /// unconsumed bytes. Returns how many were read (0 at end of stream);
    /// fails with `ErrorKind::OutOfMemory` when the buffer is full.
    pub async fn fill(&mut self, max_buffered: usize) -> io::Result<usize> {
        if self.buf.is_empty() {
            // No buffer held (pooled and idle): wait on a small read, then
            // take a buffer for what arrived.
            let mut first = [0u8; FIRST_READ];
            let n = self.stream.read(&mut first).await?;
            if n > 0 {
                self.buf = match &self.pool {
                    Some(pool) => pool.take_read(),
                    None => vec![0; FIRST_READ.max(4096)],
                };
                self.buf[..n].copy_from_slice(&first[..n]);
                self.start = 0;
                self.end = n;
            }
            return Ok(n);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < max_buffered {
                let grown = (self.buf.len() * 2).clamp(4096, max_buffered);
                self.buf.resize(grown, 0);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "read buffer full",
                ));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Runs `fut`, failing with `ErrorKind::TimedOut` if it takes longer than
/// `limit` (to a [`crate::deadline::TICK`]; never sooner). A `fut` that is
/// ready when first polled costs no deadline; one that has to wait
/// registers a coarse [`Deadline`](crate::deadline::Deadline), not a timer.
///
/// A struct rather than an `async fn`: an async wrapper would hold `fut`
/// twice (the argument and its pinned copy), doubling the size of every
/// request future that waits through it, and each exchange's future is
/// moved whole when its task is spawned.
pub fn within<F, T>(limit: Duration, fut: F) -> Within<F>
where
    F: Future<Output = io::Result<T>>,
{
    Within {
        fut,
        limit,
        deadline: None,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`].
    pub struct Within<F> {
        #[pin]
        fut: F,
        limit: Duration,
        deadline: Option<crate::deadline::Deadline>,
    }
}

impl<F, T> Future for Within<F>
where
    F: Future<Output = io::Result<T>>,
{
    type Output = io::Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(result) = this.fut.poll(cx) {
            return std::task::Poll::Ready(result);
        }
        match this.deadline {
            None => {
                *this.deadline = Some(crate::deadline::Deadline::register(*this.limit, cx.waker()))
            }
            Some(d) if d.fired(cx.waker()) => {
                return std::task::Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out",
                )))
            }
            Some(_) => {}
        }
        std::task::Poll::Pending
    }
}

/// A stream that counts the bytes written to it (the traffic log's bytes
/// down). Reads pass through.
pub struct Counted<S> {
    pub inner: S,
    written: u64,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Self {
        Counted { inner, written: 0 }
    }

    /// Bytes written since the stream was opened.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: futures_lite::AsyncWrite + Unpin> futures_lite::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            this.written += n as u64;
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}
