//! The floor over glommio's `TcpStream`, read and written as the data plane
//! does (`AsyncRead::read` into a buffer, `write_all`), one task per client
//! connection, one executor with the data plane's io memory and ring depth.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use super::{request_len, response_len, MAX_REQUEST, RESPONSE_CHUNK};

pub fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let std_listener = super::listener(listen)?;
    let addr = std_listener.local_addr()?;
    let fd = std_listener.into_raw_fd();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("floor-glommio")
        .io_memory(1024 * 1024)
        .ring_depth(4096)
        .spawn(move || async move {
            // SAFETY: `fd` is the listening socket just released by std.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            loop {
                match listener.accept().await {
                    Ok(client) => {
                        glommio::spawn_local(connection(client, upstream)).detach();
                    }
                    Err(e) => eprintln!("floor glommio: accept: {e}"),
                }
            }
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    ready(addr);
    executor
        .join()
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
}

async fn connection(mut client: TcpStream, upstream_addr: SocketAddr) {
    if let Err(e) = relay(&mut client, upstream_addr).await {
        if e.kind() != std::io::ErrorKind::UnexpectedEof {
            eprintln!("floor glommio: {e}");
        }
    }
}

async fn relay(client: &mut TcpStream, upstream_addr: SocketAddr) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut upstream: Option<TcpStream> = None;
    let mut request = vec![0u8; MAX_REQUEST];
    let mut have = 0;
    let mut response = vec![0u8; RESPONSE_CHUNK];
    loop {
        // A whole request, kept with whatever follows it.
        let len = loop {
            if let Some(len) = request_len(&request[..have]).map_err(std::io::Error::other)? {
                if have >= len {
                    break len;
                }
            }
            let n = client.read(&mut request[have..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            have += n;
        };
        let up = match &mut upstream {
            Some(up) => up,
            None => {
                let up = TcpStream::connect(upstream_addr).await?;
                let _ = up.set_nodelay(true);
                upstream.insert(up)
            }
        };
        up.write_all(&request[..len]).await?;
        request.copy_within(len..have, 0);
        have -= len;

        // The response, forwarded read by read.
        let mut total = None;
        let mut sent = 0;
        let mut head = 0;
        while total.is_none_or(|t| sent < t) {
            let n = up.read(&mut response[head..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let got = head + n;
            if total.is_none() {
                match response_len(&response[..got]).map_err(std::io::Error::other)? {
                    Some(t) => total = Some(t),
                    None if got < response.len() => {
                        head = got;
                        continue;
                    }
                    None => return Err(std::io::Error::other("response head too long")),
                }
                head = 0;
            }
            client.write_all(&response[..got]).await?;
            sent += got;
        }
        if total.is_some_and(|t| sent > t) {
            return Err(std::io::Error::other("upstream sent past its response"));
        }
    }
}
