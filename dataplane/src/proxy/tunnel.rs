//! How a client connection ends when it cannot simply close: a tunnel
//! after `101 Switching Protocols`, and the lingering close after an error
//! page.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;

use crate::core::CLIENT_BUFFER;
use crate::io::{within, Inbound};
use crate::stream::ClientStream;
use crate::upstream::UpstreamConn;

/// Most bytes and time spent draining a client after an error response.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes after an error without losing the response: closing a socket
/// with unread input makes the kernel send RST, which can destroy the
/// response in flight. So: shut down our sending side, then read and
/// discard (bounded in bytes and time) until the client closes.
pub async fn lingering_close(mut client: Inbound<ClientStream>) {
    client.stream.inner.shutdown_write().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    loop {
        client.consume(client.buffered().len());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || drained > LINGER_BYTES {
            return;
        }
        match within(left, client.fill(CLIENT_BUFFER)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// After 101: copies bytes both ways until each side has finished sending,
/// propagating half-closes. The tunnel ends when neither direction has
/// carried a byte for `idle` (WebSocket apps ping well within the default).
pub async fn tunnel(client: Inbound<ClientStream>, up: UpstreamConn, idle: Duration) {
    let (client_stream, client_rest) = client.into_parts();
    let (up_stream, up_rest) = up.into_parts();
    let (client_read, client_write) = futures_lite::io::split(client_stream);
    let (up_read, up_write) = futures_lite::io::split(up_stream);
    let last_activity = Cell::new(Instant::now());
    futures_lite::future::zip(
        pump(client_read, up_write, client_rest, (&last_activity, idle)),
        pump(up_read, client_write, up_rest, (&last_activity, idle)),
    )
    .await;
}

/// One direction of a tunnel: `first` (bytes read ahead), then everything
/// `from` sends, then a half-close of `to`.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    first: Vec<u8>,
    (last_activity, idle): (&Cell<Instant>, Duration),
) where
    R: futures_lite::AsyncRead + Unpin,
    W: futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    if to.write_all(&first).await.is_ok() && to.flush().await.is_ok() {
        loop {
            let wait = idle.saturating_sub(last_activity.get().elapsed());
            if wait.is_zero() {
                break;
            }
            match within(wait, from.read(&mut buf)).await {
                Ok(0) => break,
                Ok(n) => {
                    last_activity.set(Instant::now());
                    // TLS holds written bytes until flushed.
                    if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                        break;
                    }
                }
                // The other direction may have been busy: re-check.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => break,
            }
        }
    }
    let _ = to.close().await;
}
