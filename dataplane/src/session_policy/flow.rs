//! Moving the bytes of a controlled file: holding a body in the
//! connection's own read buffer until it is whole (bounded), the
//! replacement for a blocked download (`<name>.blocked.txt`), the `age`
//! encryption filter for a protected one (`<name>.age`), and the file
//! parts of a multipart upload.
//!
//! Holding keeps the raw framed bytes where they arrived, so a file that
//! passes is relayed by the normal path untouched (framing, rewriting);
//! only a chunked body is decoded into a copy for inspection.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncRead;

use crate::body::{BodyFilter, FilterError};
use crate::http::chunked::{ChunkedDecoder, Step};
use crate::http::Framing;
use crate::io::{within, Inbound};

/// Most bytes of files one core holds at once for session control: past
/// it, a file that would need holding is treated as uninspectable (the
/// policy's fail-open or fail-closed choice applies), so many concurrent
/// large transfers cannot exhaust memory.
pub const MAX_HELD_BYTES_PER_CORE: u64 = 512 * 1024 * 1024;

/// A reservation of held bytes against the core's budget, given back
/// when dropped.
pub struct HoldBudget<'c> {
    held: &'c std::cell::Cell<u64>,
    bytes: u64,
}

impl Drop for HoldBudget<'_> {
    fn drop(&mut self) {
        self.held.set(self.held.get().saturating_sub(self.bytes));
    }
}

/// Reserves `bytes` from `held` (the core's count); `None` when that
/// would pass [`MAX_HELD_BYTES_PER_CORE`].
pub fn reserve(held: &std::cell::Cell<u64>, bytes: u64) -> Option<HoldBudget<'_>> {
    let now = held.get();
    if now + bytes > MAX_HELD_BYTES_PER_CORE {
        return None;
    }
    held.set(now + bytes);
    Some(HoldBudget { held, bytes })
}

/// A held body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The whole body is buffered: its first `raw_len` buffered bytes.
    Complete { raw_len: usize },
    /// Longer than the limit (what arrived so far stays buffered).
    TooBig,
}

/// Reads until the whole body is in `src`'s buffer, or it is known to be
/// longer than `limit` decoded bytes.
pub async fn hold_body<S: AsyncRead + Unpin>(
    src: &mut Inbound<S>,
    framing: Framing,
    limit: u64,
    timeout: Duration,
) -> io::Result<Held> {
    let deadline = std::time::Instant::now() + timeout;
    let limit = limit as usize;
    // Chunk framing adds bytes: leave room for it.
    let room = limit + limit / 8 + 64 * 1024;
    let mut decoder = ChunkedDecoder::new();
    let (mut scanned, mut decoded) = (0usize, 0usize);
    loop {
        match framing {
            Framing::Empty => return Ok(Held::Complete { raw_len: 0 }),
            Framing::Length(n) if n as usize > limit => return Ok(Held::TooBig),
            Framing::Length(n) if src.buffered().len() >= n as usize => {
                return Ok(Held::Complete {
                    raw_len: n as usize,
                })
            }
            Framing::Chunked => {
                let buffered = src.buffered();
                while scanned < buffered.len() {
                    let (n, step) = decoder
                        .step(&buffered[scanned..])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                    if let Step::Data(r) = &step {
                        decoded += r.len();
                    }
                    scanned += n;
                    if matches!(step, Step::Done) {
                        return Ok(Held::Complete { raw_len: scanned });
                    }
                    if n == 0 {
                        break;
                    }
                }
                if decoded > limit {
                    return Ok(Held::TooBig);
                }
            }
            Framing::UntilClose if src.buffered().len() > limit => return Ok(Held::TooBig),
            _ => {}
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let n = within(left, src.fill(room)).await?;
        if n == 0 {
            if framing == Framing::UntilClose {
                return Ok(Held::Complete {
                    raw_len: src.buffered().len(),
                });
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the body",
            ));
        }
    }
}

/// The decoded bytes of a held body.
pub fn held_bytes(buffered: &[u8], framing: Framing, raw_len: usize) -> Cow<'_, [u8]> {
    match framing {
        Framing::Chunked => crate::http::chunked::decode_all(&buffered[..raw_len])
            .map(|(data, _, _)| Cow::Owned(data))
            .unwrap_or(Cow::Borrowed(&[])),
        _ => Cow::Borrowed(&buffered[..raw_len]),
    }
}

/// A writer appending to a shared buffer (the encryptor owns its writer;
/// the filter drains what it wrote).
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encrypts a body to `age` recipients as it streams (the age format's
/// 64 KiB STREAM chunks): nothing is held beyond one chunk.
pub struct Protect {
    writer: Option<age::stream::StreamWriter<Shared>>,
    out: Shared,
}

impl Protect {
    pub fn new(recipients: &[age::x25519::Recipient]) -> Result<Protect, FilterError> {
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| FilterError::Encrypt(e.to_string()))?;
        let out = Shared::default();
        let writer = encryptor
            .wrap_output(out.clone())
            .map_err(|e| FilterError::Encrypt(e.to_string()))?;
        Ok(Protect {
            writer: Some(writer),
            out,
        })
    }

    fn drain(&self, out: &mut Vec<u8>) {
        out.append(&mut self.out.0.borrow_mut());
    }
}

impl BodyFilter for Protect {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        let w = self.writer.as_mut().ok_or(FilterError::AfterFinish)?;
        w.write_all(input)
            .map_err(|e| FilterError::Encrypt(e.to_string()))?;
        self.drain(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        if let Some(w) = self.writer.take() {
            w.finish()
                .map_err(|e| FilterError::Encrypt(e.to_string()))?;
        }
        self.drain(out);
        Ok(())
    }
}

/// The file parts of a whole multipart/form-data body (RFC 7578): each
/// part whose Content-Disposition has a `filename`, as (name, content).
pub fn multipart_files<'b>(body: &'b [u8], boundary: &[u8]) -> Vec<(Vec<u8>, &'b [u8])> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut files = Vec::new();
    let finder = memchr::memmem::Finder::new(&delimiter);
    let mut at = match finder.find(body) {
        Some(a) => a + delimiter.len(),
        None => return files,
    };
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = memchr::memmem::find(rest, b"\r\n\r\n") else {
            break;
        };
        let headers = &rest[..head_end];
        let content_start = head_end + 4;
        let Some(next) = finder.find(&rest[content_start..]) else {
            break;
        };
        // The CRLF before the delimiter belongs to it (RFC 2046 §5.1.1).
        let content_end = (content_start + next).saturating_sub(2).max(content_start);
        for line in headers.split(|b| *b == b'\n') {
            let line = line.trim_ascii();
            if line.len() > 20 && line[..20].eq_ignore_ascii_case(b"content-disposition:") {
                let value = line[20..].trim_ascii();
                // form-data; name="f"; filename="x" — read as an attachment.
                let mut as_attachment = b"attachment".to_vec();
                if let Some(semi) = memchr::memchr(b';', value) {
                    as_attachment.extend_from_slice(&value[semi..]);
                    if memchr::memmem::find(value, b"filename").is_some() {
                        let name = crate::activity::disposition::attachment_name(&as_attachment)
                            .unwrap_or_default();
                        files.push((name, &rest[content_start..content_end]));
                    }
                }
            }
        }
        at += content_start + next + delimiter.len();
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::disposition::multipart_boundary;

    #[test]
    fn a_part_naming_its_file_twice_is_checked_under_both_names() {
        // Servers differ on which of two Content-Disposition fields wins
        // (RFC 7578 §4.2 allows one); a policy must see both names.
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Disposition: form-data; name=\"f\"; filename=\"b.exe\"\r\n\r\nMZ\r\n--XyZ--\r\n";
        let files = multipart_files(body, b"XyZ");
        let names: Vec<&[u8]> = files.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"a.txt"[..], &b"b.exe"[..]]);
        assert!(files.iter().all(|(_, content)| *content == b"MZ"));
    }

    #[test]
    fn multipart_file_parts_are_found() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"cards.csv\"\r\nContent-Type: text/csv\r\n\r\nn,4111 1111 1111 1111\r\n--XyZ--\r\n";
        let files = multipart_files(body, b"XyZ");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, b"cards.csv");
        assert_eq!(files[0].1, b"n,4111 1111 1111 1111");
        assert_eq!(
            multipart_boundary(b"multipart/form-data; boundary=\"XyZ\""),
            Some(&b"XyZ"[..])
        );
        assert_eq!(multipart_boundary(b"text/plain"), None);
    }

    #[test]
    fn protect_output_decrypts_to_the_input() {
        let id = age::x25519::Identity::generate();
        let mut p = Protect::new(&[id.to_public()]).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        for piece in data.chunks(7777) {
            p.feed(piece, &mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        assert_eq!(age::decrypt(&id, &out).unwrap(), data);
    }

    #[test]
    fn the_hold_budget_is_given_back() {
        let held = std::cell::Cell::new(0);
        let a = reserve(&held, MAX_HELD_BYTES_PER_CORE - 10).expect("fits");
        assert!(reserve(&held, 11).is_none());
        let b = reserve(&held, 10).expect("fits exactly");
        drop(a);
        assert_eq!(held.get(), 10);
        drop(b);
        assert_eq!(held.get(), 0);
    }
}
