//! Content codings around the rewrite engine (RFC 9110 §8.4): compressed
//! bodies are decoded, rewritten and encoded again, streaming, with the
//! coding the client accepted at a fast level.
//!
//! The upstream `Accept-Encoding` is narrowed to the codings decoded here
//! (gzip, deflate, br, zstd), so any compressed body an app sends can be
//! rewritten. Decoding works through compressed input in small slices so a
//! highly compressed body (a "zip bomb") expands at most one slice's worth
//! at a time.

use std::io::Write;

use crate::body::{BodyFilter, FilterError};

use super::Rewriter;

/// A content coding the engine decodes and encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    /// Preference when the engine chooses for the client: fast to encode
    /// first.
    const PREFERENCE: [Coding; 4] = [Coding::Gzip, Coding::Zstd, Coding::Br, Coding::Deflate];

    pub fn token(self) -> &'static [u8] {
        match self {
            Coding::Gzip => b"gzip",
            Coding::Deflate => b"deflate",
            Coding::Br => b"br",
            Coding::Zstd => b"zstd",
        }
    }

    /// Recognises a coding token (`x-gzip` is gzip, RFC 9110 §8.4.1.3).
    pub fn from_token(token: &[u8]) -> Option<Coding> {
        let t = token.trim_ascii();
        [
            (&b"gzip"[..], Coding::Gzip),
            (b"x-gzip", Coding::Gzip),
            (b"deflate", Coding::Deflate),
            (b"br", Coding::Br),
            (b"zstd", Coding::Zstd),
        ]
        .iter()
        .find(|(name, _)| t.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of decodable codings a client accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted(u8);

impl Accepted {
    /// Parses `Accept-Encoding` values (RFC 9110 §12.5.3): codings with
    /// `q=0` are refused, `*` stands for every coding not named.
    pub fn parse<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Accepted {
        // What browsers send, answered without parsing.
        const COMMON: [(&[u8], u8); 3] = [
            (b"gzip, deflate, br, zstd", 0b1111),
            (b"gzip, deflate, br", 0b0111),
            (b"gzip, deflate", 0b0011),
        ];
        let first = values.next();
        if let Some(v) = first {
            if let Some((_, bits)) = COMMON.iter().find(|(c, _)| *c == v) {
                let rest: Vec<&[u8]> = values.collect();
                if rest.is_empty() {
                    return Accepted(*bits);
                }
                return Self::parse_slow(std::iter::once(v).chain(rest));
            }
        }
        Self::parse_slow(first.into_iter().chain(values))
    }

    fn parse_slow<'a>(values: impl Iterator<Item = &'a [u8]>) -> Accepted {
        let mut accepted = 0u8;
        let mut refused = 0u8;
        let mut star = false;
        for value in values {
            for element in value.split(|&b| b == b',') {
                let mut parts = element.split(|&b| b == b';');
                let token = parts.next().unwrap_or_default().trim_ascii();
                let zero = parts.any(|p| {
                    let p = p.trim_ascii();
                    p.len() >= 2
                        && p[..2].eq_ignore_ascii_case(b"q=")
                        && p[2..].trim_ascii().iter().all(|&b| b == b'0' || b == b'.')
                });
                let bit = if token == b"*" {
                    if !zero {
                        star = true;
                    }
                    continue;
                } else {
                    match Coding::from_token(token) {
                        Some(c) => c.bit(),
                        None => continue,
                    }
                };
                if zero {
                    refused |= bit;
                } else {
                    accepted |= bit;
                }
            }
        }
        if star {
            accepted |= 0b1111 & !refused;
        }
        Accepted(accepted & !refused)
    }

    pub fn contains(self, c: Coding) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The narrowed `Accept-Encoding` value sent upstream.
    pub fn header_value(self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_header_value(&mut v);
        v
    }

    /// Appends the narrowed `Accept-Encoding` value (no allocation).
    pub fn write_header_value(self, out: &mut Vec<u8>) {
        let mut first = true;
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd] {
            if self.contains(c) {
                if !first {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(c.token());
                first = false;
            }
        }
    }

    /// The coding for a rewritten body the app sent in `from`: the same if
    /// the client accepts it, else the engine's preference, else none.
    pub fn choose(self, from: Option<Coding>) -> Option<Coding> {
        match from {
            Some(c) if self.contains(c) => Some(c),
            None => None,
            Some(_) => Coding::PREFERENCE.into_iter().find(|c| self.contains(*c)),
        }
    }
}

/// A response coding the engine cannot undo (unknown or stacked codings):
/// such bodies pass through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotDecodable;

/// A response `Content-Encoding`: `Ok(None)` for identity.
pub fn response_coding<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Coding>, NotDecodable> {
    let mut found: Option<Coding> = None;
    let mut count = 0;
    for value in values.by_ref() {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() || token.eq_ignore_ascii_case(b"identity") {
                continue;
            }
            count += 1;
            found = Some(Coding::from_token(token).ok_or(NotDecodable)?);
        }
    }
    if count > 1 {
        return Err(NotDecodable);
    }
    Ok(found)
}

/// Compressed input is decoded this many bytes at a time.
const DECODE_SLICE: usize = 4096;

/// Most decoded bytes one slice of compressed input may produce (1000:1;
/// text compresses maybe 20:1): a slice that expands beyond this is a
/// decompression bomb, and the response is aborted. Bounds the memory a
/// response can take to 4 MiB per slice, 64 MiB per 64 KiB read.
pub const MAX_EXPANSION_PER_SLICE: usize = 4 * 1024 * 1024;

/// A decoder's output buffer that refuses to grow beyond
/// [`MAX_EXPANSION_PER_SLICE`] (it is emptied after every slice).
#[derive(Default)]
pub struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + data.len() > MAX_EXPANSION_PER_SLICE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a {DECODE_SLICE}-byte slice of the compressed body expands beyond {} MiB (decompression bomb?)",
                    MAX_EXPANSION_PER_SLICE >> 20
                ),
            ));
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Capped>),
    /// HTTP "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); some servers
    /// send raw deflate. Which one is decided on the first two bytes.
    DeflateUndecided(Vec<u8>),
    Zlib(flate2::write::ZlibDecoder<Capped>),
    RawDeflate(flate2::write::DeflateDecoder<Capped>),
    Br(Box<brotli::DecompressorWriter<Capped>>),
    Zstd(zstd::stream::write::Decoder<'static, Capped>),
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

fn bad(stage: &'static str, e: impl std::fmt::Display) -> FilterError {
    FilterError::Coding {
        stage,
        reason: e.to_string(),
    }
}

impl Decoder {
    fn new(c: Coding) -> Decoder {
        match c {
            Coding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(Capped::default())),
            Coding::Deflate => Decoder::DeflateUndecided(Vec::new()),
            Coding::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(
                Capped::default(),
                4096,
            ))),
            Coding::Zstd => Decoder::Zstd(
                // Creating a zstd context only fails when out of memory.
                zstd::stream::write::Decoder::new(Capped::default()).expect("zstd decoder"),
            ),
        }
    }

    /// Decodes `input`, appending the result to `out`.
    fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        if let Decoder::DeflateUndecided(head) = self {
            head.extend_from_slice(input);
            if head.len() < 2 {
                return Ok(());
            }
            // A zlib header: CM = 8 and the check bits (RFC 1950 §2.2).
            let zlib =
                head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            let head = std::mem::take(head);
            *self = if zlib {
                Decoder::Zlib(flate2::write::ZlibDecoder::new(Capped::default()))
            } else {
                Decoder::RawDeflate(flate2::write::DeflateDecoder::new(Capped::default()))
            };
            return self.write(&head, out);
        }
        let (result, inner) = match self {
            Decoder::Gzip(d) => (d.write_all(input), d.get_mut()),
            Decoder::Zlib(d) => (d.write_all(input), d.get_mut()),
            Decoder::RawDeflate(d) => (d.write_all(input), d.get_mut()),
            Decoder::Br(d) => (d.write_all(input), d.get_mut()),
            Decoder::Zstd(d) => (d.write_all(input), d.get_mut()),
            Decoder::DeflateUndecided(_) => unreachable!("handled above"),
        };
        out.append(&mut inner.0);
        result.map_err(|e| bad("decoding the compressed body", e))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        let incomplete = || FilterError::Truncated;
        match self {
            Decoder::Gzip(d) => {
                d.try_finish().map_err(|e| bad("gzip", e))?;
                out.append(&mut d.get_mut().0);
            }
            Decoder::Zlib(d) => {
                d.try_finish().map_err(|e| bad("deflate", e))?;
                out.append(&mut d.get_mut().0);
            }
            Decoder::RawDeflate(d) => {
                d.try_finish().map_err(|e| bad("deflate", e))?;
                out.append(&mut d.get_mut().0);
            }
            Decoder::Br(d) => {
                d.close().map_err(|e| bad("br", e))?;
                out.append(&mut d.get_mut().0);
            }
            Decoder::Zstd(d) => {
                d.flush().map_err(|e| bad("zstd", e))?;
                out.append(&mut d.get_mut().0);
            }
            Decoder::DeflateUndecided(head) => {
                if !head.is_empty() {
                    return Err(incomplete());
                }
            }
        }
        Ok(())
    }
}

impl Encoder {
    fn new(c: Coding) -> Encoder {
        match c {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            Coding::Deflate => Encoder::Deflate(flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            // Quality 1, 4 MiB window: fast and still well ahead of gzip.
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                1,
                22,
            ))),
            Coding::Zstd => Encoder::Zstd(
                // Creating a zstd context only fails when out of memory.
                zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd encoder"),
            ),
        }
    }

    /// Encodes `input`; whatever output the encoder produced is appended.
    fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        let (result, inner) = match self {
            Encoder::Gzip(e) => (e.write_all(input), e.get_mut()),
            Encoder::Deflate(e) => (e.write_all(input), e.get_mut()),
            Encoder::Br(e) => (e.write_all(input), e.get_mut()),
            Encoder::Zstd(e) => (e.write_all(input), e.get_mut()),
        };
        out.append(inner);
        result.map_err(|e| bad("encoding the rewritten body", e))
    }

    fn finish(self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        let mut rest = match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Deflate(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
        .map_err(|e| bad("encoding the rewritten body", e))?;
        out.append(&mut rest);
        Ok(())
    }
}

/// Decode → rewrite → encode, as one body filter.
pub struct Transcoder<'r> {
    decoder: Option<Decoder>,
    rewriter: Rewriter<'r>,
    encoder: Option<Encoder>,
    decoded: Vec<u8>,
    rewritten: Vec<u8>,
}

impl<'r> Transcoder<'r> {
    /// `from`: the coding of the app's body; `to`: the coding sent to the
    /// client (`None`: identity).
    pub fn new(rewriter: Rewriter<'r>, from: Option<Coding>, to: Option<Coding>) -> Transcoder<'r> {
        Transcoder {
            decoder: from.map(Decoder::new),
            rewriter,
            encoder: to.map(Encoder::new),
            decoded: Vec::new(),
            rewritten: Vec::new(),
        }
    }

    fn rewrite_and_encode(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        let decoded = std::mem::take(&mut self.decoded);
        let result = self.rewrite_plain(&decoded, out);
        self.decoded = decoded;
        self.decoded.clear();
        result
    }

    /// Rewrites decoded bytes and encodes them for the client.
    fn rewrite_plain(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        if plain.is_empty() {
            return Ok(());
        }
        match &mut self.encoder {
            Some(enc) => {
                self.rewritten.clear();
                self.rewriter.feed(plain, &mut self.rewritten);
                enc.write(&self.rewritten, out)
            }
            None => {
                self.rewriter.feed(plain, out);
                Ok(())
            }
        }
    }
}

impl BodyFilter for Transcoder<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        match self.decoder.as_mut() {
            None => self.rewrite_plain(input, out),
            Some(_) => {
                for slice in input.chunks(DECODE_SLICE) {
                    // Re-borrowed per slice: rewrite_and_encode needs self.
                    if let Some(d) = self.decoder.as_mut() {
                        d.write(slice, &mut self.decoded)?;
                    }
                    self.rewrite_and_encode(out)?;
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        if let Some(d) = self.decoder.as_mut() {
            d.finish(&mut self.decoded)?;
        }
        self.rewrite_and_encode(out)?;
        self.rewritten.clear();
        match self.encoder.take() {
            Some(mut enc) => {
                self.rewriter.finish(&mut self.rewritten);
                enc.write(&self.rewritten, out)?;
                enc.finish(out)
            }
            None => {
                self.rewriter.finish(out);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_honours_q_zero_and_star() {
        let a = |v: &str| Accepted::parse([v.as_bytes()].into_iter());
        assert_eq!(
            a("gzip, deflate, br, zstd").header_value(),
            b"gzip, deflate, br, zstd"
        );
        assert_eq!(
            a("br;q=1.0, gzip;q=0.5, compress").header_value(),
            b"gzip, br"
        );
        assert_eq!(a("gzip;q=0, br").header_value(), b"br");
        assert_eq!(a("*;q=0.1, gzip;q=0").header_value(), b"deflate, br, zstd");
        assert_eq!(a("identity"), Accepted::default());
        assert_eq!(a("gzip, deflate, br"), a("br, deflate, gzip"));
        assert_eq!(a("gzip, deflate, br, zstd"), a("zstd,br,deflate,gzip"));
        assert_eq!(a("x-gzip").choose(Some(Coding::Br)), Some(Coding::Gzip));
        assert_eq!(a("br").choose(Some(Coding::Br)), Some(Coding::Br));
        assert_eq!(a("").choose(Some(Coding::Br)), None);
    }

    #[test]
    fn response_codings_beyond_one_known_are_refused() {
        let r = |v: &str| response_coding([v.as_bytes()].into_iter());
        assert_eq!(r("gzip"), Ok(Some(Coding::Gzip)));
        assert_eq!(r("identity"), Ok(None));
        assert_eq!(r("gzip, br"), Err(NotDecodable));
        assert_eq!(r("compress"), Err(NotDecodable));
    }
}
