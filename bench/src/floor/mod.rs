//! The I/O floor: the least an HTTP/1.1 reverse proxy can do per request,
//! done over four I/O paths, so a benchmark can tell how much of the data
//! plane's cost is the runtime's I/O and how much is ours.
//!
//! Every floor proxy does exactly the same work: one upstream connection per
//! client connection (kept alive), a request forwarded byte for byte once
//! its head (and Content-Length body) is complete, the response forwarded
//! as it arrives until its Content-Length is done, then the next request.
//! No rewriting, no policy, no logging; the heads are parsed with
//! `httparse` only to find where each message ends (RFC 9112 §6.3), as any
//! proxy must. What differs is only how bytes move:
//!
//! - [`Io::Glommio`]: glommio's `TcpStream`, as the data plane uses it
//!   (a `recv`, then an io_uring poll when it would block).
//! - [`Io::Uring`]: io_uring `recv`/`send` submitted directly (the
//!   `io-uring` crate), one operation in flight per connection pair.
//! - [`Io::UringMultishot`]: multishot accept and multishot `recv` into a
//!   ring of provided buffers; each buffer is sent on as it is.
//! - [`Io::Epoll`]: non-blocking sockets, edge-triggered epoll, `read` and
//!   `write` syscalls.
//!
//! Each runs on one thread (one core); pin it with `taskset`.
//! `scripts/bench-compare --with-floor` measures them beside the data plane.

mod epoll;
mod framing;
mod glommio_io;
mod machine;
mod uring;
mod uring_multishot;

use std::net::SocketAddr;

pub use framing::{request_len, response_len, FramingError};

/// Largest request (head and body) a floor proxy forwards: the load it is
/// measured with sends bodiless GETs.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Bytes read from an upstream at a time.
pub const RESPONSE_CHUNK: usize = 64 * 1024;

/// Which I/O path a floor proxy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Glommio,
    Uring,
    UringMultishot,
    Epoll,
}

impl Io {
    pub const ALL: [Io; 4] = [Io::Glommio, Io::Uring, Io::UringMultishot, Io::Epoll];

    pub fn name(self) -> &'static str {
        match self {
            Io::Glommio => "glommio",
            Io::Uring => "uring",
            Io::UringMultishot => "uring-multishot",
            Io::Epoll => "epoll",
        }
    }

    pub fn parse(name: &str) -> Option<Io> {
        Io::ALL.into_iter().find(|io| io.name() == name)
    }
}

/// Serves `listen`, forwarding to `upstream`, until the process ends.
/// `ready` is called with the bound address once connections are accepted.
pub fn serve(
    io: Io,
    listen: SocketAddr,
    upstream: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    match io {
        Io::Glommio => glommio_io::serve(listen, upstream, ready),
        Io::Uring => uring::serve(listen, upstream, false, ready),
        Io::UringMultishot => uring::serve(listen, upstream, true, ready),
        Io::Epoll => epoll::serve(listen, upstream, ready),
    }
}

/// A listening socket with `SO_REUSEADDR`, backlog 4,096.
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    // std's backlog is 128; raise it as the proxies under comparison do.
    // SAFETY: listen(2) on a socket this function owns.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener)
}

/// Turns off Nagle on a socket (requests and responses are sent whole).
fn set_nodelay(fd: std::os::fd::RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on a socket fd.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
