//! The io_uring floor with multishot operations: one multishot accept, and
//! on every socket one multishot `recv` that stays armed and fills buffers
//! the kernel picks from a registered ring of provided buffers (kernel ≥
//! 6.0). A response buffer is sent to the client as it is and returned to
//! the ring when the send completes, so nothing is copied and no `recv` is
//! submitted per read. Requests (small) are copied into the pair's buffer,
//! where their end is found.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, types, IoUring};

use super::uring::{connect, drain, push, Op, Token};
use super::{request_len, response_len, MAX_REQUEST};

/// Provided buffers, and their size: 4,096 × 16 KiB (64 MiB, not locked).
const BUFFERS: u16 = 4096;
const BUFFER_SIZE: usize = 16 * 1024;
const GROUP: u16 = 0;

pub fn run(ring: &mut IoUring, listener: &TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let mut buffers = BufferRing::register(ring)?;
    let accept = |ring: &mut IoUring| {
        let token = Token {
            op: Op::Accept,
            index: 0,
            generation: 0,
            buffer: None,
        };
        push(
            ring,
            opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                .build()
                .user_data(token.encode()),
        )
    };
    accept(ring)?;
    let mut proxy = Proxy {
        pairs: Vec::new(),
        generations: Vec::new(),
        free: Vec::new(),
        upstream,
    };
    let mut completions = Vec::new();
    loop {
        super::uring::submit_and_wait(ring)?;
        drain(ring, &mut completions);
        for &(data, result, flags) in &completions {
            let Some(token) = Token::decode(data) else {
                continue;
            };
            if token.op == Op::Accept {
                if !cqueue::more(flags) {
                    accept(ring)?;
                }
                if result >= 0 {
                    proxy.open(ring, result)?;
                } else {
                    eprintln!(
                        "floor uring-multishot: accept: {}",
                        io::Error::from_raw_os_error(-result)
                    );
                }
                continue;
            }
            proxy.complete(ring, &mut buffers, token, result, flags);
        }
        buffers.publish();
    }
}

/// The registered ring of provided buffers. Buffers go back with
/// [`BufferRing::recycle`]; the kernel sees them after
/// [`BufferRing::publish`] (once per batch of completions).
struct BufferRing {
    /// The ring's entries (page-aligned, as the kernel requires).
    entries: *mut io_uring::types::BufRingEntry,
    memory: Vec<u8>,
    tail: u16,
}

impl BufferRing {
    fn register(ring: &IoUring) -> io::Result<BufferRing> {
        let bytes = BUFFERS as usize * std::mem::size_of::<io_uring::types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut this = BufferRing {
            entries: entries.cast(),
            memory: vec![0; BUFFERS as usize * BUFFER_SIZE],
            tail: 0,
        };
        // SAFETY: the mapping and the buffers live as long as the process
        // (run never returns while the ring is in use).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)?
        };
        for id in 0..BUFFERS {
            this.recycle(id);
        }
        this.publish();
        Ok(this)
    }

    fn buffer(&self, id: u16) -> &[u8] {
        &self.memory[id as usize * BUFFER_SIZE..][..BUFFER_SIZE]
    }

    fn recycle(&mut self, id: u16) {
        let address = self.memory[id as usize * BUFFER_SIZE..].as_ptr() as u64;
        // SAFETY: `tail % BUFFERS` is within the mapping.
        let entry = unsafe { &mut *self.entries.add((self.tail % BUFFERS) as usize) };
        entry.set_addr(address);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, shared with the
        // kernel: a release store publishes the entries written before it.
        let tail =
            unsafe { &*(io_uring::types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// Bytes on their way to the client.
enum Chunk {
    /// `len` bytes of a provided buffer, `off` already sent.
    Provided { id: u16, off: usize, len: usize },
    /// A response head that spanned buffers, copied together.
    Owned { data: Vec<u8>, off: usize },
}

struct Pair {
    generation: u16,
    client: OwnedFd,
    upstream: Option<OwnedFd>,
    request: Vec<u8>,
    have: usize,
    /// The request being sent upstream: its length and what is sent.
    sending: Option<(usize, usize)>,
    /// A request went upstream and its response is not all sent back.
    exchanging: bool,
    /// The response's length once its head is parsed, and bytes received.
    response_total: Option<usize>,
    response_seen: usize,
    /// An incomplete response head, when it spans buffers.
    head: Vec<u8>,
    to_client: VecDeque<Chunk>,
    client_send_in_flight: bool,
}

struct Proxy {
    pairs: Vec<Option<Pair>>,
    generations: Vec<u16>,
    free: Vec<usize>,
    upstream: SocketAddr,
}

impl Proxy {
    fn token(&self, op: Op, index: usize, buffer: Option<u16>) -> u64 {
        Token {
            op,
            index: index as u32,
            generation: self.generations[index],
            buffer,
        }
        .encode()
    }

    fn open(&mut self, ring: &mut IoUring, fd: RawFd) -> io::Result<()> {
        super::set_nodelay(fd);
        let index = self.free.pop().unwrap_or_else(|| {
            self.pairs.push(None);
            self.generations.push(0);
            self.pairs.len() - 1
        });
        let generation = self.generations[index];
        // SAFETY: accept returned a new fd owned here.
        let client = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        self.pairs[index] = Some(Pair {
            generation,
            client,
            upstream: None,
            request: vec![0; MAX_REQUEST],
            have: 0,
            sending: None,
            exchanging: false,
            response_total: None,
            response_seen: 0,
            head: Vec::new(),
            to_client: VecDeque::new(),
            client_send_in_flight: false,
        });
        self.arm_recv(ring, index, Op::ClientRecv, fd)
    }

    fn arm_recv(&self, ring: &mut IoUring, index: usize, op: Op, fd: RawFd) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(self.token(op, index, None));
        push(ring, entry)
    }

    fn complete(
        &mut self,
        ring: &mut IoUring,
        buffers: &mut BufferRing,
        token: Token,
        result: i32,
        flags: u32,
    ) {
        let received = cqueue::buffer_select(flags);
        let index = token.index as usize;
        let live = self
            .pairs
            .get(index)
            .is_some_and(|p| p.as_ref().is_some_and(|p| p.generation == token.generation));
        if !live {
            // A completion for a pair already closed: only give back what
            // it holds.
            received
                .into_iter()
                .chain(token.buffer)
                .for_each(|id| buffers.recycle(id));
            return;
        }
        if let Err(e) = self.advance(ring, buffers, token, result, flags, received) {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                eprintln!("floor uring-multishot: {e}");
            }
            self.close(buffers, index);
        }
    }

    fn advance(
        &mut self,
        ring: &mut IoUring,
        buffers: &mut BufferRing,
        token: Token,
        result: i32,
        flags: u32,
        received: Option<u16>,
    ) -> io::Result<()> {
        let index = token.index as usize;
        let rearm = !cqueue::more(flags);
        if result == -libc::ENOBUFS {
            // The ring ran dry: this multishot recv ended; arm it again
            // (buffers come back as sends complete).
            let pair = self.pairs[index].as_ref().expect("live");
            let fd = match token.op {
                Op::ClientRecv => pair.client.as_raw_fd(),
                _ => pair.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            };
            return self.arm_recv(ring, index, token.op, fd);
        }
        if result < 0 {
            if let Some(id) = received.or(token.buffer) {
                buffers.recycle(id);
            }
            return Err(io::Error::from_raw_os_error(-result));
        }
        let n = result as usize;
        match token.op {
            Op::ClientRecv => {
                let pair = self.pairs[index].as_mut().expect("live");
                if let Some(id) = received {
                    let fits = pair.have + n <= pair.request.len();
                    if fits {
                        pair.request[pair.have..][..n].copy_from_slice(&buffers.buffer(id)[..n]);
                        pair.have += n;
                    }
                    buffers.recycle(id);
                    if !fits {
                        return Err(io::Error::other("request longer than the floor buffer"));
                    }
                }
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if rearm {
                    let fd = pair.client.as_raw_fd();
                    self.arm_recv(ring, index, Op::ClientRecv, fd)?;
                }
                self.send_request(ring, index)
            }
            Op::UpstreamSend => {
                let pair = self.pairs[index].as_mut().expect("live");
                let (len, off) = pair.sending.expect("a request is being sent");
                if off + n < len {
                    pair.sending = Some((len, off + n));
                    return self.push_request_send(ring, index);
                }
                pair.sending = None;
                pair.request.copy_within(len..pair.have, 0);
                pair.have -= len;
                Ok(())
            }
            Op::UpstreamRecv => {
                let Some(id) = received else {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                };
                let pair = self.pairs[index].as_mut().expect("live");
                if n == 0 || !pair.exchanging {
                    buffers.recycle(id);
                    return Err(io::Error::other("upstream closed or sent unasked"));
                }
                let chunk = match pair.response_total {
                    Some(_) => Some(Chunk::Provided { id, off: 0, len: n }),
                    None if pair.head.is_empty() => match response_len(&buffers.buffer(id)[..n]) {
                        Ok(Some(total)) => {
                            pair.response_total = Some(total);
                            Some(Chunk::Provided { id, off: 0, len: n })
                        }
                        Ok(None) => {
                            pair.head.extend_from_slice(&buffers.buffer(id)[..n]);
                            buffers.recycle(id);
                            None
                        }
                        Err(e) => {
                            buffers.recycle(id);
                            return Err(io::Error::other(e));
                        }
                    },
                    None => {
                        pair.head.extend_from_slice(&buffers.buffer(id)[..n]);
                        buffers.recycle(id);
                        pair.response_total = response_len(&pair.head).map_err(io::Error::other)?;
                        pair.response_total.map(|_| Chunk::Owned {
                            data: std::mem::take(&mut pair.head),
                            off: 0,
                        })
                    }
                };
                pair.response_seen += n;
                if let Some(chunk) = chunk {
                    pair.to_client.push_back(chunk);
                }
                if pair
                    .response_total
                    .is_some_and(|total| pair.response_seen > total)
                {
                    return Err(io::Error::other("upstream sent past its response"));
                }
                if rearm {
                    let fd = pair.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd);
                    self.arm_recv(ring, index, Op::UpstreamRecv, fd)?;
                }
                self.send_to_client(ring, buffers, index)
            }
            Op::ClientSend => {
                let pair = self.pairs[index].as_mut().expect("live");
                pair.client_send_in_flight = false;
                let front = pair.to_client.front_mut().expect("a chunk is being sent");
                let (off, len) = match front {
                    Chunk::Provided { off, len, .. } => (off, *len),
                    Chunk::Owned { data, off } => (off, data.len()),
                };
                *off += n;
                if *off >= len {
                    if let Some(Chunk::Provided { id, .. }) = pair.to_client.pop_front() {
                        buffers.recycle(id);
                    }
                }
                let finished = pair.to_client.is_empty()
                    && pair
                        .response_total
                        .is_some_and(|total| pair.response_seen == total);
                if finished {
                    pair.exchanging = false;
                    pair.response_total = None;
                    pair.response_seen = 0;
                    return self.send_request(ring, index);
                }
                self.send_to_client(ring, buffers, index)
            }
            Op::Accept | Op::PairIo => Ok(()),
        }
    }

    /// Sends the next whole request upstream, when the previous exchange is
    /// over.
    fn send_request(&mut self, ring: &mut IoUring, index: usize) -> io::Result<()> {
        let upstream = self.upstream;
        let pair = self.pairs[index].as_mut().expect("live");
        if pair.exchanging || pair.sending.is_some() {
            return Ok(());
        }
        let whole = request_len(&pair.request[..pair.have]).map_err(io::Error::other)?;
        let Some(len) = whole.filter(|&len| pair.have >= len) else {
            return Ok(());
        };
        let fresh = pair.upstream.is_none();
        if fresh {
            pair.upstream = Some(connect(upstream)?);
        }
        pair.exchanging = true;
        pair.sending = Some((len, 0));
        if fresh {
            let fd = pair.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            self.arm_recv(ring, index, Op::UpstreamRecv, fd)?;
        }
        self.push_request_send(ring, index)
    }

    fn push_request_send(&mut self, ring: &mut IoUring, index: usize) -> io::Result<()> {
        let pair = self.pairs[index].as_ref().expect("live");
        let (len, off) = pair.sending.expect("sending");
        let fd = pair.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let bytes = &pair.request[off..len];
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), bytes.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(self.token(Op::UpstreamSend, index, None));
        push(ring, entry)
    }

    /// Sends the first queued chunk when no send to the client is in flight
    /// (one at a time keeps the bytes in order).
    fn send_to_client(
        &mut self,
        ring: &mut IoUring,
        buffers: &BufferRing,
        index: usize,
    ) -> io::Result<()> {
        let pair = self.pairs[index].as_mut().expect("live");
        if pair.client_send_in_flight {
            return Ok(());
        }
        let Some(front) = pair.to_client.front() else {
            return Ok(());
        };
        let (bytes, id) = match front {
            Chunk::Provided { id, off, len } => (&buffers.buffer(*id)[*off..*len], Some(*id)),
            Chunk::Owned { data, off } => (&data[*off..], None),
        };
        let entry = opcode::Send::new(
            types::Fd(pair.client.as_raw_fd()),
            bytes.as_ptr(),
            bytes.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        pair.client_send_in_flight = true;
        let token = self.token(Op::ClientSend, index, id);
        push(ring, entry.user_data(token))
    }

    /// Ends a pair: both sockets shut down (so their armed receives
    /// complete), buffers not in flight given back, the slot's generation
    /// moved on so late completions are recognised.
    fn close(&mut self, buffers: &mut BufferRing, index: usize) {
        let Some(mut pair) = self.pairs[index].take() else {
            return;
        };
        // SAFETY: shutdown(2) on sockets owned by the pair.
        unsafe {
            libc::shutdown(pair.client.as_raw_fd(), libc::SHUT_RDWR);
            if let Some(up) = &pair.upstream {
                libc::shutdown(up.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        if pair.client_send_in_flight {
            // Its buffer comes back with the send's completion, and an
            // owned chunk must outlive that send.
            if let Some(Chunk::Owned { data, .. }) = pair.to_client.pop_front() {
                std::mem::forget(data);
            }
        }
        for chunk in pair.to_client.drain(..) {
            if let Chunk::Provided { id, .. } = chunk {
                buffers.recycle(id);
            }
        }
        if pair.sending.is_some() {
            // The request buffer must outlive the send in flight.
            std::mem::forget(std::mem::take(&mut pair.request));
        }
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.free.push(index);
    }
}
