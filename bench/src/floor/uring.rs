//! The floor over io_uring used directly (the `io-uring` crate): one ring,
//! one `io_uring_enter` per loop that both submits everything the last
//! batch of completions asked for and waits for the next batch.
//!
//! This file holds the ring, the completion tokens and the plain variant:
//! one `recv` or `send` in flight per connection pair, driven by
//! [`super::machine::Machine`] exactly like the epoll floor. The multishot
//! variant with provided buffers is [`super::uring_multishot`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};

use super::machine::{Machine, Side, Step};

/// Submission queue entries (completion queue: twice that).
const ENTRIES: u32 = 4096;

/// What a completion is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
    Accept = 1,
    /// The one operation of a plain pair.
    PairIo = 2,
    ClientRecv = 3,
    UpstreamRecv = 4,
    UpstreamSend = 5,
    ClientSend = 6,
}

/// A completion's `user_data`: operation, slot, the slot's generation (so
/// a completion for a closed pair is recognised even when its slot has been
/// reused) and the provided buffer a send came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub op: Op,
    pub index: u32,
    pub generation: u16,
    pub buffer: Option<u16>,
}

impl Token {
    pub fn encode(self) -> u64 {
        debug_assert!(self.index < 1 << 24);
        // A buffer id of u16::MAX means none (rings hold at most 32,768).
        let buffer = self.buffer.unwrap_or(u16::MAX);
        (self.generation as u64) << 48
            | (self.index as u64) << 24
            | (buffer as u64) << 8
            | self.op as u64
    }

    pub fn decode(data: u64) -> Option<Token> {
        let op = match data as u8 {
            1 => Op::Accept,
            2 => Op::PairIo,
            3 => Op::ClientRecv,
            4 => Op::UpstreamRecv,
            5 => Op::UpstreamSend,
            6 => Op::ClientSend,
            _ => return None,
        };
        let buffer = (data >> 8) as u16;
        Some(Token {
            op,
            index: ((data >> 24) & 0xff_ffff) as u32,
            generation: (data >> 48) as u16,
            buffer: (buffer != u16::MAX).then_some(buffer),
        })
    }
}

/// A ring set up for one thread: `SINGLE_ISSUER` and `DEFER_TASKRUN`
/// (kernel ≥ 6.1), so completions are only run when this thread enters the
/// kernel to wait; a plain ring where the kernel refuses those flags.
pub(super) fn ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(2 * ENTRIES)
        .build(ENTRIES)
        .or_else(|_| IoUring::builder().setup_cqsize(2 * ENTRIES).build(ENTRIES))
}

/// Queues `entry`, submitting what is queued first if the queue is full.
pub(super) fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every entry queued here points at memory (a pair's
        // buffers, the provided-buffer ring) that outlives its completion:
        // pairs are only dropped with no operation in flight, or their
        // completions are recognised as stale and only release buffers.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// Submits what is queued and waits for a completion; a signal (a profiler
/// or tracer attaching) interrupting the wait is not an error.
pub(super) fn submit_and_wait(ring: &mut IoUring) -> io::Result<()> {
    match ring.submit_and_wait(1) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The completions ready now, copied out so handling them may queue more.
pub(super) fn drain(ring: &mut IoUring, into: &mut Vec<(u64, i32, u32)>) {
    into.clear();
    into.extend(
        ring.completion()
            .map(|c| (c.user_data(), c.result(), c.flags())),
    );
}

/// A blocking connect to the upstream (once per client connection; on
/// loopback it completes at once), returned with Nagle off.
pub(super) fn connect(upstream: SocketAddr) -> io::Result<OwnedFd> {
    let socket = std::net::TcpStream::connect(upstream)?;
    let fd = socket.into_raw_fd();
    super::set_nodelay(fd);
    // SAFETY: into_raw_fd handed over ownership.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    multishot: bool,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let listener = super::listener(listen)?;
    let mut ring = ring()?;
    ready(listener.local_addr()?);
    if multishot {
        return super::uring_multishot::run(&mut ring, &listener, upstream);
    }
    let accept = |ring: &mut IoUring| {
        let token = Token {
            op: Op::Accept,
            index: 0,
            generation: 0,
            buffer: None,
        };
        let entry = opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .build()
        .user_data(token.encode());
        push(ring, entry)
    };
    accept(&mut ring)?;
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut completions = Vec::new();
    loop {
        submit_and_wait(&mut ring)?;
        drain(&mut ring, &mut completions);
        for &(data, result, _flags) in &completions {
            let Some(token) = Token::decode(data) else {
                continue;
            };
            if token.op == Op::Accept {
                accept(&mut ring)?;
                if result < 0 {
                    eprintln!(
                        "floor uring: accept: {}",
                        io::Error::from_raw_os_error(-result)
                    );
                    continue;
                }
                super::set_nodelay(result);
                let index = free.pop().unwrap_or_else(|| {
                    pairs.push(None);
                    pairs.len() - 1
                });
                // SAFETY: accept returned a new fd owned here.
                let client = unsafe { OwnedFd::from_raw_fd(result) };
                let mut pair = Pair {
                    client,
                    upstream: None,
                    upstream_addr: upstream,
                    machine: Machine::default(),
                };
                match pair.start(&mut ring, index) {
                    Ok(()) => pairs[index] = Some(pair),
                    Err(e) => {
                        eprintln!("floor uring: {e}");
                        free.push(index);
                    }
                }
                continue;
            }
            let index = token.index as usize;
            let Some(pair) = pairs.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let outcome = if result < 0 {
                Err(io::Error::from_raw_os_error(-result))
            } else {
                pair.machine
                    .done(result as usize)
                    .and_then(|()| pair.start(&mut ring, index))
            };
            if let Err(e) = outcome {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    eprintln!("floor uring: {e}");
                }
                pairs[index] = None; // nothing is in flight for it: close both
                free.push(index);
            }
        }
    }
}

/// A client connection, its upstream connection and their exchange.
struct Pair {
    client: OwnedFd,
    upstream: Option<OwnedFd>,
    upstream_addr: SocketAddr,
    machine: Machine,
}

impl Pair {
    /// Queues the pair's next operation.
    fn start(&mut self, ring: &mut IoUring, index: usize) -> io::Result<()> {
        let token = Token {
            op: Op::PairIo,
            index: index as u32,
            generation: 0,
            buffer: None,
        }
        .encode();
        loop {
            let client = self.client.as_raw_fd();
            let upstream: RawFd = self.upstream.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let fd = |side| {
                types::Fd(if side == Side::Client {
                    client
                } else {
                    upstream
                })
            };
            let entry = match self.machine.next()? {
                Step::Connect => {
                    self.upstream = Some(connect(self.upstream_addr)?);
                    self.machine.connected();
                    continue;
                }
                Step::Read(side, buf) => {
                    opcode::Recv::new(fd(side), buf.as_mut_ptr(), buf.len() as u32).build()
                }
                Step::Write(side, buf) => {
                    opcode::Send::new(fd(side), buf.as_ptr(), buf.len() as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                }
            };
            return push(ring, entry.user_data(token));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_its_round_trip_through_user_data() {
        for token in [
            Token {
                op: Op::Accept,
                index: 0,
                generation: 0,
                buffer: None,
            },
            Token {
                op: Op::ClientSend,
                index: 0xff_ffff,
                generation: u16::MAX,
                buffer: Some(32767),
            },
            Token {
                op: Op::UpstreamRecv,
                index: 12,
                generation: 7,
                buffer: Some(0),
            },
        ] {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
        assert_eq!(Token::decode(0), None);
    }
}
