//! A RELP client (the Reliable Event Logging Protocol of rsyslog and
//! librelp, <https://www.rsyslog.com/doc/relp.html>) for the SIEM export:
//! plain syslog over TCP has no acknowledgement from the receiving
//! application, so bytes its kernel took and it never processed are lost
//! unnoticed; RELP answers every message once the receiver took it, so the
//! export's mark moves only over messages the receiver has.
//!
//! A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, transaction
//! numbers running 1…999,999,999. The session opens with an `open`
//! command offering `relp_version=0` and `commands=syslog`; the server's
//! `rsp` must say `200` and offer `syslog` back. Each message is a
//! `syslog` command; each answer a `rsp` with the same transaction number
//! and a `200` code, in order. A server going away may first send
//! `0 serverclose 0`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

/// Commands sent before their answers are awaited (the window; rsyslog's
/// default is 128).
const WINDOW: usize = 128;
/// The largest answer accepted (an `rsp` is a code and a short text).
const MAX_ANSWER: usize = 64 * 1024;
/// The highest transaction number; the next one is 1 again.
const MAX_TXNR: u64 = 999_999_999;

/// Why a RELP exchange failed.
#[derive(Debug)]
pub enum RelpError {
    Io(std::io::Error),
    /// The server closed the session (`serverclose`, or end of stream).
    Closed,
    /// An answer that is not a well-formed `rsp` to the command awaited.
    Protocol(String),
    /// The server refused: its code and text.
    Refused(String),
}

impl std::fmt::Display for RelpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelpError::Io(e) => write!(f, "RELP: {e}"),
            RelpError::Closed => f.write_str("RELP: the receiver closed the session"),
            RelpError::Protocol(m) => write!(f, "RELP: unexpected answer: {m}"),
            RelpError::Refused(m) => write!(f, "RELP: refused: {m}"),
        }
    }
}

impl From<std::io::Error> for RelpError {
    fn from(e: std::io::Error) -> Self {
        RelpError::Io(e)
    }
}

/// An open RELP session.
pub struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    next: u64,
}

/// One frame's transaction number, command and data.
struct Frame {
    txnr: u64,
    command: String,
    data: Vec<u8>,
}

fn frame(txnr: u64, command: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    let _ = write!(out, "{txnr} {command} {}", data.len());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

impl Session {
    /// Opens a session on a connected stream (its timeouts bound every
    /// read and write).
    pub fn open(stream: TcpStream) -> Result<Session, RelpError> {
        let reader = BufReader::new(stream.try_clone()?);
        let mut s = Session {
            writer: stream,
            reader,
            next: 1,
        };
        let offers = format!(
            "relp_version=0\nrelp_software=palisade,{},https://palisade.invalid\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let txnr = s.take_txnr();
        s.writer
            .write_all(&frame(txnr, "open", offers.as_bytes()))?;
        let answer = s.answer(txnr)?;
        let text = String::from_utf8_lossy(&answer);
        if !text.lines().any(|l| {
            l.strip_prefix("commands=")
                .is_some_and(|c| c.split(',').any(|c| c == "syslog"))
        }) {
            return Err(RelpError::Protocol(format!(
                "the server does not offer the syslog command: {text:?}"
            )));
        }
        Ok(s)
    }

    fn take_txnr(&mut self) -> u64 {
        let t = self.next;
        self.next = if t >= MAX_TXNR { 1 } else { t + 1 };
        t
    }

    /// Sends every message as a `syslog` command and returns once the
    /// server acknowledged each (at most [`WINDOW`] outstanding).
    pub fn send_all(&mut self, messages: &[Vec<u8>]) -> Result<(), RelpError> {
        let mut outstanding = std::collections::VecDeque::with_capacity(WINDOW);
        let mut batch = Vec::new();
        for m in messages {
            let txnr = self.take_txnr();
            batch.extend_from_slice(&frame(txnr, "syslog", m));
            outstanding.push_back(txnr);
            if outstanding.len() == WINDOW {
                self.writer.write_all(&batch)?;
                batch.clear();
                // Half the window answered before more is sent.
                while outstanding.len() > WINDOW / 2 {
                    let t = outstanding.pop_front().expect("outstanding");
                    self.answer(t)?;
                }
            }
        }
        self.writer.write_all(&batch)?;
        while let Some(t) = outstanding.pop_front() {
            self.answer(t)?;
        }
        Ok(())
    }

    /// Ends the session politely (best effort: the connection is dropped
    /// right after).
    pub fn close(mut self) {
        let txnr = self.take_txnr();
        if self.writer.write_all(&frame(txnr, "close", b"")).is_ok() {
            let _ = self.answer(txnr);
        }
    }

    /// Reads the answer to `txnr`: a `rsp` whose code is 200; its data
    /// after the status line.
    fn answer(&mut self, txnr: u64) -> Result<Vec<u8>, RelpError> {
        let f = self.read_frame()?;
        if f.command == "serverclose" {
            return Err(RelpError::Closed);
        }
        if f.command != "rsp" || f.txnr != txnr {
            return Err(RelpError::Protocol(format!(
                "{} {} while awaiting the answer to {txnr}",
                f.txnr, f.command
            )));
        }
        let (status, rest) = match f.data.iter().position(|b| *b == b'\n') {
            Some(i) => (&f.data[..i], f.data[i + 1..].to_vec()),
            None => (&f.data[..], Vec::new()),
        };
        let status = String::from_utf8_lossy(status);
        if !status.starts_with("200") {
            return Err(RelpError::Refused(status.into_owned()));
        }
        Ok(rest)
    }

    fn read_frame(&mut self) -> Result<Frame, RelpError> {
        let mut word = |what: &str| -> Result<String, RelpError> {
            let mut buf = Vec::new();
            let n = self.reader.read_until(b' ', &mut buf)?;
            if n == 0 {
                return Err(RelpError::Closed);
            }
            if buf.len() > 32 {
                return Err(RelpError::Protocol(format!("{what} too long")));
            }
            if buf.last() == Some(&b' ') {
                buf.pop();
            }
            String::from_utf8(buf).map_err(|_| RelpError::Protocol(format!("{what} not text")))
        };
        let txnr: u64 = word("transaction number")?
            .trim()
            .parse()
            .map_err(|_| RelpError::Protocol("bad transaction number".into()))?;
        let command = word("command")?;
        // DATALEN ends at a space (data follows) or at the trailer.
        let mut len_text = Vec::new();
        loop {
            let mut b = [0u8; 1];
            std::io::Read::read_exact(&mut self.reader, &mut b).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    RelpError::Closed
                } else {
                    RelpError::Io(e)
                }
            })?;
            match b[0] {
                b'0'..=b'9' if len_text.len() < 9 => len_text.push(b[0]),
                b' ' | b'\n' => {
                    let len: usize = std::str::from_utf8(&len_text)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| RelpError::Protocol("bad data length".into()))?;
                    if len > MAX_ANSWER {
                        return Err(RelpError::Protocol(format!("{len}-byte answer")));
                    }
                    let mut data = vec![0u8; len];
                    if b[0] == b' ' {
                        std::io::Read::read_exact(&mut self.reader, &mut data)?;
                        let mut trailer = [0u8; 1];
                        std::io::Read::read_exact(&mut self.reader, &mut trailer)?;
                        if trailer[0] != b'\n' {
                            return Err(RelpError::Protocol("no trailer".into()));
                        }
                    } else if len != 0 {
                        return Err(RelpError::Protocol("data length without data".into()));
                    }
                    return Ok(Frame {
                        txnr,
                        command,
                        data,
                    });
                }
                _ => return Err(RelpError::Protocol("bad data length".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A server thread that answers like librelp, or as `answer` says.
    fn server(answer: impl Fn(u64, &str, &[u8]) -> Vec<u8> + Send + 'static) -> TcpStream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            loop {
                let mut head = Vec::new();
                for _ in 0..2 {
                    let mut word = Vec::new();
                    if r.read_until(b' ', &mut word).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(String::from_utf8(word).unwrap().trim().to_string());
                }
                let mut len = String::new();
                let mut b = [0u8; 1];
                loop {
                    r.read_exact(&mut b).unwrap();
                    if b[0] == b' ' || b[0] == b'\n' {
                        break;
                    }
                    len.push(b[0] as char);
                }
                let mut data = vec![0u8; len.parse().unwrap()];
                if b[0] == b' ' {
                    r.read_exact(&mut data).unwrap();
                    r.read_exact(&mut b).unwrap();
                }
                let txnr: u64 = head[0].parse().unwrap();
                if w.write_all(&answer(txnr, &head[1], &data)).is_err() {
                    return;
                }
            }
        });
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s
    }

    fn ok(txnr: u64, command: &str, _: &[u8]) -> Vec<u8> {
        if command == "open" {
            frame(txnr, "rsp", b"200 OK\nrelp_version=0\ncommands=syslog")
        } else {
            frame(txnr, "rsp", b"200 OK")
        }
    }

    #[test]
    fn frames_are_txnr_command_length_data_and_a_line_feed() {
        assert_eq!(frame(7, "syslog", b"hi there"), b"7 syslog 8 hi there\n");
        assert_eq!(frame(2, "close", b""), b"2 close 0\n");
    }

    #[test]
    fn a_session_sends_more_than_a_window_and_every_message_is_answered() {
        let mut s = Session::open(server(ok)).unwrap();
        let messages: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("<134>1 m{i}").into_bytes())
            .collect();
        s.send_all(&messages).unwrap();
        s.send_all(&messages[..3]).unwrap();
        s.close();
    }

    #[test]
    fn refusals_closes_and_wrong_answers_are_errors() {
        let refused = server(|t, c, d| {
            if c == "open" {
                ok(t, c, d)
            } else {
                frame(t, "rsp", b"500 no")
            }
        });
        let mut s = Session::open(refused).unwrap();
        assert!(
            matches!(s.send_all(&[b"x".to_vec()]), Err(RelpError::Refused(m)) if m == "500 no")
        );

        let closing = server(|t, c, d| {
            if c == "open" {
                ok(t, c, d)
            } else {
                b"0 serverclose 0\n".to_vec()
            }
        });
        let mut s = Session::open(closing).unwrap();
        assert!(matches!(
            s.send_all(&[b"x".to_vec()]),
            Err(RelpError::Closed)
        ));

        let wrong = server(|t, c, d| {
            if c == "open" {
                ok(t, c, d)
            } else {
                frame(t + 5, "rsp", b"200 OK")
            }
        });
        let mut s = Session::open(wrong).unwrap();
        assert!(matches!(
            s.send_all(&[b"x".to_vec()]),
            Err(RelpError::Protocol(_))
        ));

        let no_syslog =
            server(|t, _, _| frame(t, "rsp", b"200 OK\nrelp_version=0\ncommands=other"));
        assert!(matches!(
            Session::open(no_syslog),
            Err(RelpError::Protocol(_))
        ));
    }
}
