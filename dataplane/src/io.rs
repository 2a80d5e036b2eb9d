//! Buffered reading over an async stream, and deadlines.
//!
//! [`Inbound`] owns a stream and its read buffer. Parsers look at
//! [`Inbound::buffered`] in place (no copy); the proxy consumes what it has
//! handled and asks for more with [`Inbound::fill`].

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt};

/// A stream with its read buffer.
pub struct Inbound<S> {
    pub stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S> Inbound<S> {
    pub fn new(stream: S, capacity: usize) -> Self {
        Inbound {
            stream,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// Bytes read but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as handled.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives back the stream and whatever was buffered.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.stream, rest)
    }
}

impl<S: AsyncRead + Unpin> Inbound<S> {
    /// Reads more bytes, letting the buffer grow to at most `max_buffered`
    /// unconsumed bytes. Returns how many were read (0 at end of stream);
    /// fails with `ErrorKind::OutOfMemory` when the buffer is full.
    pub async fn fill(&mut self, max_buffered: usize) -> io::Result<usize> {
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
/// `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        glommio::timer::Timer::new(limit).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}
