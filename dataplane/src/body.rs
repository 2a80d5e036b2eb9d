//! Streaming body transfer between a buffered source and a sink, with
//! framing translated on the way (Content-Length, chunked, until-close) and
//! an optional body filter (the rewrite engine plugs in here).
//!
//! Bodies are never held whole: each read is forwarded before the next. Data
//! passed through unchanged with a known length is written straight from
//! the read buffer; chunk framing and small pieces are coalesced into one
//! write per read.

use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::http::chunked::{push_chunk_header, push_last_chunk, ChunkError, ChunkedDecoder, Step};
use crate::http::Framing;
use crate::io::{within, Inbound};

/// A transformation of a body stream. Output for any split of the input
/// must equal the output for the whole input.
pub trait BodyFilter {
    /// Consumes `input`, appending output to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError>;
    /// End of body: appends whatever was held back.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError>;
    /// Like `feed`, but may pass large unchanged spans of `input` by
    /// reference (zero-copy); the default copies through `feed`.
    fn feed_pieces(&mut self, input: &[u8], out: &mut FilterOutput) -> Result<(), FilterError> {
        self.feed(input, &mut out.bytes)
    }
}

/// Spans of the input at least this long are passed by reference.
pub const ZERO_COPY_MIN: usize = 8 * 1024;

/// A filter's output for one input: bytes (copied or made) with large
/// unchanged spans of the input referenced in between, not copied.
#[derive(Debug, Default)]
pub struct FilterOutput {
    pub bytes: Vec<u8>,
    /// `(at, range)`: `input[range]` follows `bytes[..at]`, in order.
    pub spans: Vec<(usize, std::ops::Range<usize>)>,
}

impl FilterOutput {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    /// Passes `input[range]` on: by reference when large, else copied.
    #[inline]
    pub fn pass(&mut self, input: &[u8], range: std::ops::Range<usize>) {
        if range.len() >= ZERO_COPY_MIN {
            self.spans.push((self.bytes.len(), range));
        } else {
            self.bytes.extend_from_slice(&input[range]);
        }
    }

    /// Total bytes of output.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.spans.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The output as one buffer.
    pub fn to_vec(&self, input: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        let mut copied = 0;
        for (at, r) in &self.spans {
            v.extend_from_slice(&self.bytes[copied..*at]);
            v.extend_from_slice(&input[r.clone()]);
            copied = *at;
        }
        v.extend_from_slice(&self.bytes[copied..]);
        v
    }
}

/// The body could not be transformed: the source is to blame for a body
/// that does not decode; encrypting a protected file is the proxy's own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterError {
    /// A content-coded body does not decode, or the rewritten one does not
    /// encode again (`stage` names which coding or step).
    Coding { stage: &'static str, reason: String },
    /// A compressed body ended before its coding's end marker.
    Truncated,
    /// Encrypting a protected file failed.
    Encrypt(String),
    /// Bytes arrived after the filter had finished.
    AfterFinish,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Coding { stage, reason } => write!(f, "{stage}: {reason}"),
            FilterError::Truncated => f.write_str("the compressed body ended early"),
            FilterError::Encrypt(e) => write!(f, "age: {e}"),
            FilterError::AfterFinish => f.write_str("encryption already finished"),
        }
    }
}

impl std::error::Error for FilterError {}

/// A sink that remembers whether any byte reached it (so a failed body
/// filter can still be answered with an error page).
struct Tracked<'a, W> {
    inner: &'a mut W,
    wrote: bool,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut *this.inner).poll_write(cx, buf);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_close(cx)
    }
}

/// How the body is framed toward the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkFraming {
    /// Bytes as they are (Content-Length or until-close).
    Raw,
    /// Chunked transfer coding.
    Chunked,
}

/// Which side failed a transfer: decides the status and who is to blame.
#[derive(Debug)]
pub enum RelayError {
    /// Reading from the source failed, timed out or ended early.
    /// `sent_nothing`: no byte reached the sink (as for `Filter`).
    Source {
        error: io::Error,
        sent_nothing: bool,
    },
    /// The source's framing was invalid (`sent_nothing`: as for `Filter`;
    /// a bad chunk in the same read as the head leaves the head unsent).
    Framing {
        error: ChunkError,
        sent_nothing: bool,
    },
    /// Writing to the sink failed.
    Sink(io::Error),
    /// The body filter refused the body (e.g. corrupt compressed data).
    /// `sent_nothing`: no byte reached the sink, so the caller may still
    /// answer with an error page.
    Filter {
        reason: FilterError,
        sent_nothing: bool,
    },
}

/// Above this many bytes a pass-through slice is written directly instead
/// of being copied into the pending buffer.
const DIRECT_WRITE_MIN: usize = 8 * 1024;
/// Pending output is flushed once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

/// How one body crosses: its framing at the source and toward the sink,
/// and the bounds on reading it.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub framing: Framing,
    pub sink_framing: SinkFraming,
    /// Longest wait for the next source bytes.
    pub read_timeout: Duration,
    /// Read-buffer size for the source.
    pub max_buffer: usize,
}

/// Transfers one body from `src` to `sink`. `pending` holds bytes already
/// due to the sink (e.g. a head) and is flushed along with the body.
/// Returns the number of body bytes read from the source.
pub async fn relay<R, W>(
    src: &mut Inbound<R>,
    sink: &mut W,
    how: Transfer,
    mut filter: Option<&mut dyn BodyFilter>,
    pending: &mut Vec<u8>,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Transfer {
        framing,
        sink_framing,
        read_timeout,
        max_buffer,
    } = how;
    let sink = &mut Tracked {
        inner: sink,
        wrote: false,
    };
    let mut filtered = FilterOutput::default();
    let mut total = 0u64;
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    let mut done = !framing.has_body();
    while !done {
        if src.buffered().is_empty() {
            flush(sink, pending).await?;
            let n = within(read_timeout, src.fill(max_buffer))
                .await
                .map_err(|error| RelayError::Source {
                    error,
                    sent_nothing: !sink.wrote,
                })?;
            if n == 0 {
                if framing == Framing::UntilClose {
                    break;
                }
                return Err(RelayError::Source {
                    error: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the end of the body",
                    ),
                    sent_nothing: !sink.wrote,
                });
            }
        }
        let buffered = src.buffered();
        let (consumed, data) = match framing {
            Framing::Length(_) => {
                let take = (buffered.len() as u64).min(remaining) as usize;
                remaining -= take as u64;
                done = remaining == 0;
                (take, 0..take)
            }
            Framing::UntilClose => (buffered.len(), 0..buffered.len()),
            Framing::Chunked => {
                match decoder
                    .step(buffered)
                    .map_err(|error| RelayError::Framing {
                        error,
                        sent_nothing: !sink.wrote,
                    })? {
                    (n, Step::Data(r)) => (n, r),
                    (n, Step::Framing) => (n, 0..0),
                    (n, Step::Done) => {
                        done = true;
                        (n, 0..0)
                    }
                }
            }
            Framing::Empty => (0, 0..0),
        };
        let chunk = &buffered[data];
        total += chunk.len() as u64;
        if !chunk.is_empty() {
            match filter.as_deref_mut() {
                Some(f) => {
                    filter_into_pending(f, chunk, &mut filtered, pending, sink_framing).map_err(
                        |reason| RelayError::Filter {
                            reason,
                            sent_nothing: !sink.wrote,
                        },
                    )?;
                    write_spans(sink, pending, chunk, &filtered.spans).await?;
                    if pending.len() >= FLUSH_AT {
                        flush(sink, pending).await?;
                    }
                }
                None => emit(sink, pending, chunk, sink_framing).await?,
            }
        }
        src.consume(consumed);
    }
    if let Some(f) = filter {
        let header_at = open_chunk(pending, sink_framing);
        let body_at = pending.len();
        let result = f.finish(pending);
        let total = pending.len() - body_at;
        close_chunk(pending, sink_framing, header_at, total);
        result.map_err(|reason| RelayError::Filter {
            reason,
            sent_nothing: !sink.wrote,
        })?;
    }
    if sink_framing == SinkFraming::Chunked {
        push_last_chunk(pending, decoder.trailers());
    }
    flush(sink, pending).await?;
    Ok(total)
}

async fn emit<W: AsyncWrite + Unpin>(
    sink: &mut W,
    pending: &mut Vec<u8>,
    data: &[u8],
    framing: SinkFraming,
) -> Result<(), RelayError> {
    if data.is_empty() {
        return Ok(());
    }
    if framing == SinkFraming::Chunked {
        push_chunk_header(pending, data.len());
    }
    if data.len() >= DIRECT_WRITE_MIN {
        flush(sink, pending).await?;
        sink.write_all(data).await.map_err(RelayError::Sink)?;
    } else {
        pending.extend_from_slice(data);
    }
    if framing == SinkFraming::Chunked {
        pending.extend_from_slice(b"\r\n");
    }
    if pending.len() >= FLUSH_AT {
        flush(sink, pending).await?;
    }
    Ok(())
}

/// Runs the filter on `chunk` with its output going straight into
/// `pending` (one copy for what is copied at all), framed as one chunk
/// when chunked. Large unchanged spans stay in `chunk`, listed in
/// `out.spans` with their positions in `pending`.
fn filter_into_pending(
    f: &mut dyn BodyFilter,
    chunk: &[u8],
    out: &mut FilterOutput,
    pending: &mut Vec<u8>,
    framing: SinkFraming,
) -> Result<(), FilterError> {
    out.clear();
    // Room for the output at once: rewriting lengthens a body by its
    // hosts' suffixes, and growing by doubling from a small pooled buffer
    // cost a few reallocations per response.
    pending.reserve(chunk.len() + chunk.len() / 4 + 64);
    let header_at = open_chunk(pending, framing);
    out.bytes = std::mem::take(pending);
    let body_at = out.bytes.len();
    let result = f.feed_pieces(chunk, out);
    *pending = std::mem::take(&mut out.bytes);
    result?;
    let total = pending.len() - body_at + out.spans.iter().map(|(_, r)| r.len()).sum::<usize>();
    close_chunk(pending, framing, header_at, total);
    Ok(())
}

/// Starts a chunk whose size is written once the output is known
/// ([`close_chunk`]): eight hex digits (leading zeros are valid, RFC 9112
/// §7.1). Returns where its header starts.
fn open_chunk(pending: &mut Vec<u8>, framing: SinkFraming) -> usize {
    let header_at = pending.len();
    if framing == SinkFraming::Chunked {
        pending.extend_from_slice(b"00000000\r\n");
    }
    header_at
}

/// Ends the chunk [`open_chunk`] started, now that it holds `total` bytes
/// (an empty one is taken back: a zero size would end the body).
fn close_chunk(pending: &mut Vec<u8>, framing: SinkFraming, header_at: usize, total: usize) {
    if framing != SinkFraming::Chunked {
        return;
    }
    if total == 0 {
        pending.truncate(header_at);
    } else {
        // Eight hex digits, written in place (no allocation per read).
        for (k, digit) in pending[header_at..header_at + 8].iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[(total >> (4 * (7 - k))) & 0xf];
        }
        pending.extend_from_slice(b"\r\n");
    }
}

/// Writes `pending` up to each span and the span itself from `input`;
/// what follows the last span stays pending.
async fn write_spans<W: AsyncWrite + Unpin>(
    sink: &mut W,
    pending: &mut Vec<u8>,
    input: &[u8],
    spans: &[(usize, std::ops::Range<usize>)],
) -> Result<(), RelayError> {
    if spans.is_empty() {
        return Ok(());
    }
    let mut written = 0;
    for (at, range) in spans {
        if *at > written {
            sink.write_all(&pending[written..*at])
                .await
                .map_err(RelayError::Sink)?;
        }
        sink.write_all(&input[range.clone()])
            .await
            .map_err(RelayError::Sink)?;
        written = *at;
    }
    pending.drain(..written);
    Ok(())
}

/// Writes out and clears `pending`.
pub async fn flush<W: AsyncWrite + Unpin>(
    sink: &mut W,
    pending: &mut Vec<u8>,
) -> Result<(), RelayError> {
    if !pending.is_empty() {
        sink.write_all(pending).await.map_err(RelayError::Sink)?;
        pending.clear();
    }
    // TLS sinks hold records until flushed; plain TCP flush is free.
    sink.flush().await.map_err(RelayError::Sink)
}
