//! Sending on an HTTP/2 stream under the peer's flow control, shared by
//! both directions (responses to browsers, requests to apps), and the
//! errors of the `h2` crate as I/O errors for the phases.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::SendStream;

use crate::http::chunked::{ChunkedDecoder, Step};

/// Waits until the stream may send at least one byte; returns how many
/// it may (never more than the send buffer the connection allows, so a
/// peer that stops reading stalls the sender instead of a buffer).
pub fn poll_room(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    loop {
        let room = send.capacity();
        if room > 0 {
            return Poll::Ready(Ok(room));
        }
        send.reserve_capacity(want.max(1));
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// Sends as much of `data` as the stream may now, as one DATA frame;
/// `last`: END_STREAM with the last byte.
pub fn poll_send(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    data: &[u8],
    last: bool,
) -> Poll<io::Result<usize>> {
    let room = ready!(poll_room(send, cx, data.len()))?;
    let n = room.min(data.len());
    send.send_data(Bytes::copy_from_slice(&data[..n]), last && n == data.len())
        .map_err(h2_error)?;
    Poll::Ready(Ok(n))
}

/// Sends the next of a body's `*left` announced bytes from `buf`,
/// END_STREAM with the last one; returns how many of `buf` were taken
/// (bytes past the announced end are dropped: the phases write none).
pub fn poll_send_length(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    buf: &[u8],
    left: &mut u64,
) -> Poll<io::Result<usize>> {
    let n = (*left).min(buf.len() as u64) as usize;
    if n == 0 {
        return Poll::Ready(Ok(buf.len()));
    }
    let sent = ready!(poll_send(send, cx, &buf[..n], *left == n as u64))?;
    *left -= sent as u64;
    Poll::Ready(Ok(sent))
}

/// Takes a body in HTTP/1.1 chunked framing: framing is consumed, the
/// data of every chunk in `buf` goes out as one DATA frame, and the last
/// chunk ends the stream (on that frame when it is in `buf` too). Returns
/// how many bytes of `buf` were taken and whether the body is complete.
///
/// One frame per write, not per chunk: the relay writes a rewritten body's
/// last pieces and the last chunk together, and a frame for each (data,
/// the filter's tail, an empty END_STREAM) cost the codec three rounds.
pub fn poll_send_chunked(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    decoder: &mut ChunkedDecoder,
    buf: &[u8],
) -> Poll<io::Result<(usize, bool)>> {
    // The decoder gets no more than can be sent now, so the data it hands
    // out is sent whole.
    let room = ready!(poll_room(send, cx, buf.len()))?;
    let input = &buf[..room.min(buf.len())];
    let mut pieces: [std::ops::Range<usize>; 4] = Default::default();
    let mut count = 0;
    let mut used = 0;
    let mut done = false;
    // At most four pieces per frame (a small fixed list, no allocation):
    // the rest of `buf` comes with the next write.
    while used < input.len() && count < pieces.len() {
        let (n, step) = decoder
            .step(&input[used..])
            .map_err(|e| invalid(&format!("chunked body: {e}")))?;
        match step {
            Step::Framing => {}
            Step::Data(range) => {
                pieces[count] = used + range.start..used + range.end;
                count += 1;
            }
            Step::Done => {
                used += n;
                done = true;
                break;
            }
        }
        if n == 0 {
            break;
        }
        used += n;
    }
    let data = match &pieces[..count] {
        [] => Bytes::new(),
        [one] => Bytes::copy_from_slice(&input[one.clone()]),
        many => {
            let mut joined = Vec::with_capacity(many.iter().map(|r| r.len()).sum());
            for piece in many {
                joined.extend_from_slice(&input[piece.clone()]);
            }
            Bytes::from(joined)
        }
    };
    if !data.is_empty() || done {
        send.send_data(data, done).map_err(h2_error)?;
    }
    Poll::Ready(Ok((used, done)))
}

pub fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A failure of the connection or of this stream (reset by the peer).
pub fn h2_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into())
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e.to_string())
    }
}
