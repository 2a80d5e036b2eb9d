//! Streaming decoder for the chunked transfer coding (RFC 9112 §7.1) and
//! helpers to re-encode it.
//!
//! The decoder accepts input in arbitrary splits and never buffers chunk
//! data: it hands back ranges of the caller's input. Only the trailer
//! section is kept (bounded), so it can be validated and forwarded.

use std::ops::Range;

/// Longest chunk extension accepted per chunk (bytes).
pub const MAX_CHUNK_EXTENSION: usize = 1024;
/// Largest trailer section accepted (bytes).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;
/// Most hex digits in a chunk size: 16 digits fill a u64.
const MAX_SIZE_DIGITS: u8 = 16;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    InvalidSize,
    SizeOverflow,
    InvalidExtension,
    ExtensionTooLong,
    /// CR not followed by LF, or LF without CR.
    BadLineEnding,
    /// Data continued past the declared chunk size.
    ChunkLongerThanDeclared,
    TrailersTooLarge,
    InvalidTrailers,
    /// Content-Length, Transfer-Encoding or Host in the trailers
    /// (RFC 9110 §6.5.1: fields needed for framing or routing).
    ForbiddenTrailer,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size over 64 bits",
            ChunkError::InvalidExtension => "invalid chunk extension",
            ChunkError::ExtensionTooLong => "chunk extension too long",
            ChunkError::BadLineEnding => "bad line ending in chunked body",
            ChunkError::ChunkLongerThanDeclared => "chunk longer than declared",
            ChunkError::TrailersTooLarge => "trailer section too large",
            ChunkError::InvalidTrailers => "invalid trailer section",
            ChunkError::ForbiddenTrailer => "Content-Length, Transfer-Encoding or Host in trailers",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the size (none read yet when `digits == 0`).
    Size,
    /// After the digits: optional whitespace, then `;` or CR.
    AfterSize,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// What one step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// `consumed` bytes were framing; keep feeding.
    Framing,
    /// This range of the input is body data.
    Data(Range<usize>),
    /// The last chunk and trailers are complete.
    Done,
}

/// Incremental chunked-body decoder.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    extension_len: usize,
    remaining: u64,
    trailers: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            extension_len: 0,
            remaining: 0,
            trailers: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields (each line with its CRLF, without the final empty
    /// line), valid once done.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    /// Decodes from the start of `input`; returns bytes consumed and what
    /// they were. Call again with the rest until the input is used up or
    /// the body is done.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Step), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match hex_value(b) {
                    Some(v) => {
                        if self.digits == MAX_SIZE_DIGITS && self.size >> 60 != 0 {
                            return Err(ChunkError::SizeOverflow);
                        }
                        self.size = self.size.checked_mul(16).ok_or(ChunkError::SizeOverflow)?
                            | u64::from(v);
                        self.digits = self.digits.saturating_add(1);
                        if self.digits > MAX_SIZE_DIGITS {
                            return Err(ChunkError::SizeOverflow);
                        }
                    }
                    None if self.digits == 0 => return Err(ChunkError::InvalidSize),
                    None => {
                        self.state = State::AfterSize;
                        continue;
                    }
                },
                State::AfterSize => match b {
                    // BWS before ";" (RFC 9112 §7.1.1).
                    b' ' | b'\t' => {
                        self.extension_len += 1;
                        if self.extension_len > MAX_CHUNK_EXTENSION {
                            return Err(ChunkError::ExtensionTooLong);
                        }
                    }
                    b';' => self.state = State::Extension,
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    _ => return Err(ChunkError::InvalidSize),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.extension_len += 1;
                        if self.extension_len > MAX_CHUNK_EXTENSION {
                            return Err(ChunkError::ExtensionTooLong);
                        }
                    }
                    _ => return Err(ChunkError::InvalidExtension),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    i += 1;
                    if self.size == 0 {
                        self.state = State::Trailers;
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                    self.digits = 0;
                    self.extension_len = 0;
                    continue;
                }
                State::Data => {
                    if i > 0 {
                        // Report framing first so data ranges start at 0.
                        return Ok((i, Step::Framing));
                    }
                    let take = (input.len() as u64).min(self.remaining) as usize;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((take, Step::Data(0..take)));
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::ChunkLongerThanDeclared);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    if self.trailers.len() >= MAX_TRAILER_BYTES {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    self.trailers.push(b);
                    let t = &self.trailers;
                    if t == b"\r\n" || t.ends_with(b"\r\n\r\n") {
                        i += 1;
                        self.trailers.truncate(self.trailers.len() - 2);
                        validate_trailers(&self.trailers)?;
                        self.state = State::Done;
                        return Ok((i, Step::Done));
                    }
                }
                State::Done => return Ok((i, Step::Done)),
            }
            i += 1;
        }
        if self.state == State::Done {
            return Ok((i, Step::Done));
        }
        Ok((i, Step::Framing))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks the trailer section (`trailers` holds each field line with its
/// CRLF): field syntax as in a head, strict line endings, and no framing or
/// routing fields.
fn validate_trailers(trailers: &[u8]) -> Result<(), ChunkError> {
    if trailers.is_empty() {
        return Ok(());
    }
    if !super::line_endings_are_strict(trailers) {
        return Err(ChunkError::BadLineEnding);
    }
    let mut section = Vec::with_capacity(trailers.len() + 2);
    section.extend_from_slice(trailers);
    section.extend_from_slice(b"\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::parse_headers(&section, &mut headers) {
        Ok(httparse::Status::Complete((_, fields))) => {
            for f in fields {
                let n = f.name.as_bytes();
                if n.eq_ignore_ascii_case(b"content-length")
                    || n.eq_ignore_ascii_case(b"transfer-encoding")
                    || n.eq_ignore_ascii_case(b"host")
                {
                    return Err(ChunkError::ForbiddenTrailer);
                }
            }
            Ok(())
        }
        _ => Err(ChunkError::InvalidTrailers),
    }
}

/// Appends a chunk header for `len` bytes of data.
pub fn push_chunk_header(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk, `trailers` (field lines with CRLF) and the end.
pub fn push_last_chunk(out: &mut Vec<u8>, trailers: &[u8]) {
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(b"\r\n");
}

/// Checks the framing of the start of a chunked body (as much as `input`
/// holds) without keeping any data.
pub fn check_prefix(input: &[u8]) -> Result<(), ChunkError> {
    let mut d = ChunkedDecoder::new();
    let mut pos = 0;
    while pos < input.len() && !d.is_done() {
        let (n, _) = d.step(&input[pos..])?;
        pos += n;
    }
    Ok(())
}

/// Decodes the start of a chunked body (as much as `input` holds): its
/// data so far, and whether the body ended within `input`.
pub fn decode_prefix(input: &[u8]) -> Result<(Vec<u8>, bool), ChunkError> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let (n, step) = d.step(&input[pos..])?;
        match step {
            Step::Data(r) => data.extend_from_slice(&input[pos + r.start..pos + r.end]),
            Step::Done => return Ok((data, true)),
            Step::Framing => {}
        }
        if n == 0 {
            break;
        }
        pos += n;
    }
    Ok((data, false))
}

/// Decodes a whole chunked body at once: the oracle used by tests and the
/// fuzz harness. Returns the data and the trailers.
pub fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), ChunkError> {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let (n, step) = d.step(&input[pos..])?;
        match step {
            Step::Data(r) => data.extend_from_slice(&input[pos + r.start..pos + r.end]),
            Step::Done => return Ok((data, d.trailers().to_vec(), pos + n)),
            Step::Framing => {}
        }
        pos += n;
        if n == 0 && pos >= input.len() {
            return Err(ChunkError::InvalidSize);
        }
        if pos >= input.len() && !d.is_done() {
            // Incomplete input.
            return Err(ChunkError::InvalidSize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(input: &[u8], splits: &[usize]) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut start = 0;
        for cut in cuts {
            let mut piece = &input[start..cut];
            while !piece.is_empty() {
                let (n, step) = d.step(piece)?;
                if let Step::Data(r) = step {
                    data.extend_from_slice(&piece[r]);
                }
                if d.is_done() {
                    return Ok((data, d.trailers().to_vec()));
                }
                piece = &piece[n..];
            }
            start = cut;
        }
        if d.is_done() {
            Ok((data, d.trailers().to_vec()))
        } else {
            Err(ChunkError::InvalidSize)
        }
    }

    #[test]
    fn valid_bodies() {
        let (d, t, n) =
            decode_all(b"5\r\nhello\r\n6;ext=\"x y\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT")
                .unwrap();
        assert_eq!(d, b"hello world");
        assert_eq!(t, b"X-T: 1\r\n");
        assert_eq!(n, 44);
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap().0, b"");
        assert_eq!(
            decode_all(b"A \t;x\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
        assert_eq!(
            decode_all(b"000000000000000001\r\nx\r\n0\r\n\r\n"),
            Err(ChunkError::SizeOverflow)
        );
    }

    #[test]
    fn invalid_bodies() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"0x5\r\nhello\r\n0\r\n\r\n", ChunkError::InvalidSize),
            (b"+5\r\nhello\r\n0\r\n\r\n", ChunkError::InvalidSize),
            (b"\r\nhello\r\n0\r\n\r\n", ChunkError::InvalidSize),
            (b";x\r\nhello\r\n0\r\n\r\n", ChunkError::InvalidSize),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
            (
                b"3\r\nhello\r\n0\r\n\r\n",
                ChunkError::ChunkLongerThanDeclared,
            ),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::BadLineEnding),
            (
                b"5\r\nhello\n0\r\n\r\n",
                ChunkError::ChunkLongerThanDeclared,
            ),
            (b"5\rhello\r\n0\r\n\r\n", ChunkError::BadLineEnding),
            (
                b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
                ChunkError::InvalidExtension,
            ),
            (
                b"0\r\nContent-Length: 5\r\n\r\n",
                ChunkError::ForbiddenTrailer,
            ),
            (
                b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
                ChunkError::ForbiddenTrailer,
            ),
            (b"0\r\nhost: x\r\n\r\n", ChunkError::ForbiddenTrailer),
            (b"0\r\nbad header\r\n\r\n", ChunkError::InvalidTrailers),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).map(|_| ()),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_ext = format!(
            "1;{}\r\nx\r\n0\r\n\r\n",
            "a".repeat(MAX_CHUNK_EXTENSION + 1)
        );
        assert_eq!(
            decode_all(long_ext.as_bytes()).map(|_| ()),
            Err(ChunkError::ExtensionTooLong)
        );
        let big_trailer = format!("0\r\nX: {}\r\n\r\n", "a".repeat(MAX_TRAILER_BYTES));
        assert_eq!(
            decode_all(big_trailer.as_bytes()).map(|_| ()),
            Err(ChunkError::TrailersTooLarge)
        );
    }

    #[test]
    fn chunk_header_encoding() {
        let mut out = Vec::new();
        push_chunk_header(&mut out, 0x1a2b);
        push_chunk_header(&mut out, 0);
        assert_eq!(out, b"1a2b\r\n0\r\n");
    }

    fn encode(chunks: &[Vec<u8>], trailers: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            push_chunk_header(&mut out, c.len());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        push_last_chunk(&mut out, trailers);
        out
    }

    proptest! {
        #[test]
        fn any_split_decodes_like_the_whole(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            splits in proptest::collection::vec(any::<usize>(), 0..12),
            with_trailer in any::<bool>(),
        ) {
            let trailers: &[u8] = if with_trailer { b"X-Sum: 1\r\n" } else { b"" };
            let body = encode(&chunks, trailers);
            let whole = decode_all(&body).unwrap();
            prop_assert_eq!(&whole.0, &chunks.concat());
            prop_assert_eq!(&whole.1[..], trailers);
            let split = feed_split(&body, &splits).unwrap();
            prop_assert_eq!(split.0, whole.0);
            prop_assert_eq!(split.1, whole.1);
        }

        #[test]
        fn a_prefix_decodes_to_a_prefix_of_the_data(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cut in any::<usize>(),
        ) {
            let body = encode(&chunks, b"");
            let data = chunks.concat();
            let cut = cut % (body.len() + 1);
            let (got, done) = decode_prefix(&body[..cut]).unwrap();
            prop_assert!(data.starts_with(&got));
            // Whole exactly when the last chunk's empty line is in.
            prop_assert_eq!(done, cut == body.len());
            if done {
                prop_assert_eq!(got, data);
            }
        }

        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200), splits in proptest::collection::vec(any::<usize>(), 0..6)) {
            let whole = decode_all(&input).map(|r| (r.0, r.1));
            let split = feed_split(&input, &splits);
            // A body that decodes whole decodes identically in pieces.
            if let Ok(w) = whole {
                prop_assert_eq!(split.unwrap(), w);
            }
        }
    }
}
