//! One connection pair's exchange as a state machine without I/O: it says
//! which read or write comes next and is told how many bytes it moved.
//! The epoll and the one-operation-at-a-time io_uring floors drive it, so
//! they do the same work and differ only in how the bytes move.

use std::io;

use super::{request_len, response_len, MAX_REQUEST, RESPONSE_CHUNK};

/// Which socket of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// The next operation.
pub enum Step<'a> {
    /// Open the upstream connection, then call [`Machine::connected`].
    Connect,
    Read(Side, &'a mut [u8]),
    Write(Side, &'a [u8]),
}

#[derive(Clone, Copy)]
enum Phase {
    ReadRequest,
    SendRequest {
        len: usize,
        off: usize,
    },
    /// `head` bytes of an incomplete response head are buffered.
    ReadResponse {
        total: Option<usize>,
        sent: usize,
        head: usize,
    },
    SendResponse {
        total: usize,
        sent: usize,
        len: usize,
        off: usize,
    },
}

pub struct Machine {
    request: Vec<u8>,
    have: usize,
    response: Vec<u8>,
    phase: Phase,
    connected: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            request: vec![0; MAX_REQUEST],
            have: 0,
            response: vec![0; RESPONSE_CHUNK],
            phase: Phase::ReadRequest,
            connected: false,
        }
    }
}

impl Machine {
    /// What to do next. The buffer it lends stays valid (it is never
    /// reallocated) until [`Machine::done`].
    pub fn next(&mut self) -> io::Result<Step<'_>> {
        if let Phase::ReadRequest = self.phase {
            let whole = request_len(&self.request[..self.have])
                .map_err(io::Error::other)?
                .filter(|&len| self.have >= len);
            if let Some(len) = whole {
                if !self.connected {
                    return Ok(Step::Connect);
                }
                self.phase = Phase::SendRequest { len, off: 0 };
            }
        }
        Ok(match self.phase {
            Phase::ReadRequest => Step::Read(Side::Client, &mut self.request[self.have..]),
            Phase::SendRequest { len, off } => Step::Write(Side::Upstream, &self.request[off..len]),
            Phase::ReadResponse { head, .. } => {
                Step::Read(Side::Upstream, &mut self.response[head..])
            }
            Phase::SendResponse { len, off, .. } => {
                Step::Write(Side::Client, &self.response[off..len])
            }
        })
    }

    /// The upstream connection is open.
    pub fn connected(&mut self) {
        self.connected = true;
    }

    /// The operation [`Machine::next`] asked for moved `n` bytes (a read of
    /// 0 is the peer closing).
    pub fn done(&mut self, n: usize) -> io::Result<()> {
        self.phase = match self.phase {
            Phase::ReadRequest | Phase::ReadResponse { .. } if n == 0 => {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Phase::ReadRequest => {
                self.have += n;
                Phase::ReadRequest
            }
            Phase::SendRequest { len, off } if off + n < len => {
                Phase::SendRequest { len, off: off + n }
            }
            Phase::SendRequest { len, .. } => {
                self.request.copy_within(len..self.have, 0);
                self.have -= len;
                Phase::ReadResponse {
                    total: None,
                    sent: 0,
                    head: 0,
                }
            }
            Phase::ReadResponse { total, sent, head } => {
                let got = head + n;
                let total = match total {
                    Some(total) => Some(total),
                    None => response_len(&self.response[..got]).map_err(io::Error::other)?,
                };
                match total {
                    Some(total) => Phase::SendResponse {
                        total,
                        sent,
                        len: got,
                        off: 0,
                    },
                    None if got < self.response.len() => Phase::ReadResponse {
                        total,
                        sent,
                        head: got,
                    },
                    None => return Err(io::Error::other("response head too long")),
                }
            }
            Phase::SendResponse {
                total,
                sent,
                len,
                off,
            } if off + n < len => Phase::SendResponse {
                total,
                sent,
                len,
                off: off + n,
            },
            Phase::SendResponse {
                total, sent, len, ..
            } => {
                let sent = sent + len;
                if sent > total {
                    return Err(io::Error::other("upstream sent past its response"));
                }
                if sent < total {
                    Phase::ReadResponse {
                        total: Some(total),
                        sent,
                        head: 0,
                    }
                } else {
                    Phase::ReadRequest
                }
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the machine a scripted conversation, checking each step.
    #[test]
    fn a_pair_forwards_a_request_then_its_response_in_pieces_then_the_next() {
        let mut m = Machine::default();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
        let Step::Read(Side::Client, buf) = m.next().unwrap() else {
            panic!("read client")
        };
        buf[..request.len()].copy_from_slice(request);
        m.done(request.len()).unwrap();
        assert!(matches!(m.next().unwrap(), Step::Connect));
        m.connected();
        let Step::Write(Side::Upstream, out) = m.next().unwrap() else {
            panic!("write up")
        };
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        m.done(10).unwrap();
        let Step::Write(Side::Upstream, out) = m.next().unwrap() else {
            panic!("rest")
        };
        assert_eq!(out.len(), 27 - 10);
        m.done(17).unwrap();

        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef";
        for piece in [&response[..20], &response[20..41], &response[41..]] {
            let Step::Read(Side::Upstream, buf) = m.next().unwrap() else {
                panic!("read up")
            };
            buf[..piece.len()].copy_from_slice(piece);
            m.done(piece.len()).unwrap();
            if let Step::Write(Side::Client, out) = m.next().unwrap() {
                let n = out.len();
                m.done(n).unwrap();
            }
        }
        // The pipelined start of the next request is kept.
        let Step::Read(Side::Client, buf) = m.next().unwrap() else {
            panic!("next request")
        };
        buf[..2].copy_from_slice(b"\r\n");
        m.done(2).unwrap();
        let Step::Write(Side::Upstream, out) = m.next().unwrap() else {
            panic!("second")
        };
        assert_eq!(out, b"GET /2 HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_response_longer_than_announced_or_an_early_close_ends_the_pair() {
        let mut m = Machine::default();
        let Step::Read(_, buf) = m.next().unwrap() else {
            panic!()
        };
        buf[..18].copy_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        m.done(18).unwrap();
        m.next().unwrap();
        m.connected();
        m.next().unwrap();
        m.done(18).unwrap();
        let Step::Read(_, buf) = m.next().unwrap() else {
            panic!()
        };
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab";
        buf[..long.len()].copy_from_slice(long);
        m.done(long.len()).unwrap();
        m.next().unwrap();
        assert!(m.done(long.len()).is_err());

        let mut m = Machine::default();
        m.next().unwrap();
        assert_eq!(m.done(0).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
