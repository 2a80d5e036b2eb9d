//! Control-socket framing: a 4-byte little-endian length, then one Cap'n
//! Proto message of exactly that many bytes.
//!
//! Lengths are checked against a maximum before anything is allocated, and
//! messages are read with explicit traversal and nesting limits, so a peer
//! cannot make the reader allocate or walk more than the frame it sent.

use std::io::{self, Read, Write};

use capnp::message::{Builder, HeapAllocator, Reader, ReaderOptions};
use capnp::serialize::OwnedSegments;

/// Largest frame accepted from any peer: room for a snapshot of tens of
/// thousands of apps, far below what would hurt the daemon.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 4;

/// Why a frame was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// The announced length exceeds the maximum.
    TooLarge(usize),
    /// Zero-length frame.
    Empty,
    /// The bytes are not a well-formed Cap'n Proto message within limits.
    Malformed(String),
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
            ),
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::Malformed(e) => write!(f, "malformed message: {e}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<capnp::Error> for FrameError {
    fn from(e: capnp::Error) -> Self {
        FrameError::Malformed(e.to_string())
    }
}

/// Reader limits for a frame of `len` bytes: each word may be visited a few
/// times (the generated readers re-read lists), nesting is shallow by design.
pub fn reader_options(len: usize) -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(len / 8 * 4 + 1024))
        .nesting_limit(16);
    options
}

/// Serialises `message` as one frame.
pub fn encode(message: &Builder<HeapAllocator>) -> Vec<u8> {
    let size = capnp::serialize::compute_serialized_size_in_words(message) * 8;
    let mut out = Vec::with_capacity(PREFIX_BYTES + size);
    out.extend_from_slice(&(size as u32).to_le_bytes());
    // Writing into a Vec cannot fail.
    capnp::serialize::write_message(&mut out, message).expect("write to Vec");
    out
}

/// Checks a length prefix.
pub fn check_length(prefix: [u8; PREFIX_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes the body of a frame (without its prefix).
pub fn decode(body: &[u8]) -> Result<Reader<OwnedSegments>, FrameError> {
    let mut slice = body;
    let reader = capnp::serialize::read_message(&mut slice, reader_options(body.len()))?;
    if !slice.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes after the message",
            slice.len()
        )));
    }
    Ok(reader)
}

/// Reads one frame from a blocking stream; `Closed` at a clean end between
/// frames.
pub fn read_blocking(stream: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut got = 0;
    while got < PREFIX_BYTES {
        match stream.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = check_length(prefix, max)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

/// Writes one frame to a blocking stream.
pub fn write_blocking(stream: &mut impl Write, message: &Builder<HeapAllocator>) -> io::Result<()> {
    stream.write_all(&encode(message))?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_capnp;

    #[test]
    fn round_trip_and_limits() {
        let mut m = Builder::new_default();
        m.init_root::<control_capnp::request::Builder>()
            .set_status(());
        let frame = encode(&m);
        let mut cursor = &frame[..];
        let body = read_blocking(&mut cursor, MAX_FRAME_BYTES).unwrap();
        let reader = decode(&body).unwrap();
        let req = reader.get_root::<control_capnp::request::Reader>().unwrap();
        assert!(matches!(
            req.which(),
            Ok(control_capnp::request::Status(()))
        ));

        let mut huge = &[0xff, 0xff, 0xff, 0x7f][..];
        assert!(matches!(
            read_blocking(&mut huge, MAX_FRAME_BYTES),
            Err(FrameError::TooLarge(_))
        ));
        let mut empty = &[0u8, 0, 0, 0][..];
        assert!(matches!(
            read_blocking(&mut empty, MAX_FRAME_BYTES),
            Err(FrameError::Empty)
        ));
        let mut closed = &[][..];
        assert!(matches!(
            read_blocking(&mut closed, MAX_FRAME_BYTES),
            Err(FrameError::Closed)
        ));
        assert!(decode(b"garbage!").is_err());
    }
}
