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
}

/// The body could not be transformed (e.g. corrupt compressed data): the
/// source is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn filter_failed(e: FilterError) -> RelayError {
    RelayError::Source(io::Error::new(io::ErrorKind::InvalidData, e.0))
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
    Source(io::Error),
    /// The source's framing was invalid.
    Framing(ChunkError),
    /// Writing to the sink failed.
    Sink(io::Error),
}

/// Above this many bytes a pass-through slice is written directly instead
/// of being copied into the pending buffer.
const DIRECT_WRITE_MIN: usize = 8 * 1024;
/// Pending output is flushed once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

/// Transfers one body from `src` to `sink`. `pending` holds bytes already
/// due to the sink (e.g. a head) and is flushed along with the body.
/// Returns the number of body bytes read from the source.
#[allow(clippy::too_many_arguments)]
pub async fn relay<R, W>(
    src: &mut Inbound<R>,
    sink: &mut W,
    framing: Framing,
    sink_framing: SinkFraming,
    mut filter: Option<&mut dyn BodyFilter>,
    pending: &mut Vec<u8>,
    read_timeout: Duration,
    max_buffer: usize,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut filtered = Vec::new();
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
                .map_err(RelayError::Source)?;
            if n == 0 {
                if framing == Framing::UntilClose {
                    break;
                }
                return Err(RelayError::Source(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of the body",
                )));
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
            Framing::Chunked => match decoder.step(buffered).map_err(RelayError::Framing)? {
                (n, Step::Data(r)) => (n, r),
                (n, Step::Framing) => (n, 0..0),
                (n, Step::Done) => {
                    done = true;
                    (n, 0..0)
                }
            },
            Framing::Empty => (0, 0..0),
        };
        let chunk = &buffered[data];
        total += chunk.len() as u64;
        if !chunk.is_empty() {
            let out: &[u8] = match filter.as_deref_mut() {
                Some(f) => {
                    filtered.clear();
                    f.feed(chunk, &mut filtered).map_err(filter_failed)?;
                    &filtered
                }
                None => chunk,
            };
            emit(sink, pending, out, sink_framing).await?;
        }
        src.consume(consumed);
    }
    if let Some(f) = filter {
        filtered.clear();
        f.finish(&mut filtered).map_err(filter_failed)?;
        emit(sink, pending, &filtered, sink_framing).await?;
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
