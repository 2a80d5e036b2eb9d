//! The floor over epoll: non-blocking sockets registered once, edge
//! triggered for reading and writing, each connection pair driven with
//! `read`/`write` until one would block (the pattern of nginx and HAProxy).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use super::machine::{Machine, Side, Step};

const LISTENER: u64 = u64::MAX;

pub fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let listener = super::listener(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // SAFETY: epoll_create1 returns a new fd or -1.
    let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the fd was just created and is owned here.
    let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
    register(epfd, listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
    ready(addr);

    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: `events` has room for its length of entries.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events[..n as usize] {
            let token = event.u64;
            if token == LISTENER {
                accept_all(&listener, epfd, upstream, &mut pairs, &mut free);
                continue;
            }
            let index = token as usize;
            let Some(pair) = pairs.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if let Err(e) = pair.drive() {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    eprintln!("floor epoll: {e}");
                }
                pairs[index] = None; // closes both sockets (epoll forgets them)
                free.push(index);
            }
        }
    }
}

fn accept_all(
    listener: &std::net::TcpListener,
    epfd: RawFd,
    upstream: SocketAddr,
    pairs: &mut Vec<Option<Pair>>,
    free: &mut Vec<usize>,
) {
    loop {
        // SAFETY: accept4 on the listening socket; null address is allowed.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                eprintln!("floor epoll: accept: {e}");
            }
            return;
        }
        // SAFETY: accept4 returned a new fd owned here.
        let client = unsafe { OwnedFd::from_raw_fd(fd) };
        super::set_nodelay(fd);
        let index = free.pop().unwrap_or_else(|| {
            pairs.push(None);
            pairs.len() - 1
        });
        let edge = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if let Err(e) = register(epfd, fd, index as u64, edge) {
            eprintln!("floor epoll: epoll_ctl: {e}");
            free.push(index);
            continue;
        }
        pairs[index] = Some(Pair {
            client,
            upstream: None,
            upstream_addr: upstream,
            epfd,
            index,
            machine: Machine::default(),
        });
    }
}

/// One client connection and its upstream connection.
struct Pair {
    client: OwnedFd,
    upstream: Option<OwnedFd>,
    upstream_addr: SocketAddr,
    epfd: RawFd,
    index: usize,
    machine: Machine,
}

impl Pair {
    /// Makes all the progress the sockets allow; `Err` closes the pair.
    fn drive(&mut self) -> io::Result<()> {
        loop {
            let client = self.client.as_raw_fd();
            let upstream = self.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let fd = |side| {
                if side == Side::Client {
                    client
                } else {
                    upstream
                }
            };
            let moved = match self.machine.next()? {
                Step::Connect => {
                    self.connect()?;
                    self.machine.connected();
                    continue;
                }
                Step::Read(side, buf) => read(fd(side), buf)?,
                Step::Write(side, buf) => write(fd(side), buf)?,
            };
            let Some(n) = moved else {
                return Ok(()); // wait for the next edge
            };
            self.machine.done(n)?;
        }
    }

    /// Connects to the upstream (blocking: on loopback it completes at
    /// once, and it happens once per client connection).
    fn connect(&mut self) -> io::Result<()> {
        let socket = std::net::TcpStream::connect(self.upstream_addr)?;
        socket.set_nonblocking(true)?;
        let fd = socket.into_raw_fd();
        // SAFETY: into_raw_fd handed over ownership.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        super::set_nodelay(fd);
        let edge = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        register(self.epfd, fd, self.index as u64, edge)?;
        self.upstream = Some(owned);
        Ok(())
    }
}

/// `read(2)`: `None` when it would block.
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: reading into a live, exclusively borrowed buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        Ok(Some(n as usize))
    } else {
        would_block()
    }
}

/// `write(2)`: `None` when it would block.
fn write(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: writing from a live buffer.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n >= 0 {
        Ok(Some(n as usize))
    } else {
        would_block()
    }
}

fn would_block() -> io::Result<Option<usize>> {
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => Ok(None),
        _ => Err(e),
    }
}

fn register(epfd: RawFd, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: epoll_ctl with a valid event.
    cvt(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) }).map(drop)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
