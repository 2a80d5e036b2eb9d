//! HTTP/1.1 message syntax (RFC 9112): strict request and response head
//! parsing over the read buffer, field-value parsers, and the chunked
//! transfer coding.

pub mod chunked;
pub mod fields;
pub mod index;
pub mod request;
pub mod response;

use crate::simd::{Baseline16, Vector};

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// True when body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// Checks line endings of a complete head: every LF must follow a CR and
/// every CR must precede an LF (RFC 9112 §2.2: bare CR is invalid; we also
/// refuse bare LF in requests and trailers, which §2.2 allows a recipient
/// to accept, because disagreeing with an upstream about line ends enables
/// smuggling; a response head is held to [`has_bare_cr`] only: the client
/// gets a head the proxy writes itself).
pub fn line_endings_are_strict(head: &[u8]) -> bool {
    // Strict exactly when the LFs are the CRs moved one byte on.
    line_ends(head, |cr_then, lf| lf == cr_then)
}

/// A CR not followed by LF (RFC 9112 §2.2): what a response head may not
/// hold (a bare LF it may, as a line terminator).
pub fn has_bare_cr(head: &[u8]) -> bool {
    !line_ends(head, |cr_then, lf| cr_then & !lf == 0)
}

/// Whether `ok(cr_then, lf)` holds for every 16-byte block of `head`, where
/// `lf` has bit `k` set for an LF at the block's byte `k` and `cr_then` for
/// a CR just before it (in this block or the last one). One vector compare
/// per 16 bytes instead of a search per line end: a browser's request head
/// has 20 to 40 of them. The last block is zero-padded, so a CR at the very
/// end has no LF after it.
#[inline]
fn line_ends(head: &[u8], ok: impl Fn(u32, u32) -> bool) -> bool {
    // SAFETY (both calls): `masks` reads exactly the 16 bytes it is given.
    let masks = |block: &[u8; 16]| unsafe { cr_lf_masks::<Baseline16>(block) };
    let mut carry = 0u32;
    let mut blocks = head.chunks_exact(16);
    for block in &mut blocks {
        let (cr, lf) = masks(block.try_into().expect("16 bytes"));
        if !ok((cr << 1 | carry) & 0xffff, lf) {
            return false;
        }
        carry = cr >> 15;
    }
    let mut last = [0u8; 16];
    last[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    let (cr, lf) = masks(&last);
    ok((cr << 1 | carry) & 0xffff, lf)
}

/// Masks of the CRs and the LFs among 16 bytes.
///
/// # Safety
/// `V::LANES == 16` and `V`'s feature available.
#[inline(always)]
unsafe fn cr_lf_masks<V: Vector>(block: &[u8; 16]) -> (u32, u32) {
    let v = V::load(block.as_ptr());
    (v.eq_byte(b'\r').movemask(), v.eq_byte(b'\n').movemask())
}

/// Writes `name: value\r\n`.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions the block-mask checks must agree with.
    fn strict_by_bytes(head: &[u8]) -> bool {
        head.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && head[i - 1] == b'\r',
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            _ => true,
        })
    }

    fn bare_cr_by_bytes(head: &[u8]) -> bool {
        (0..head.len()).any(|i| head[i] == b'\r' && head.get(i + 1) != Some(&b'\n'))
    }

    proptest::proptest! {
        /// Heads of CR, LF and other bytes, of every length across the
        /// 16-byte blocks, the line ends falling on every block boundary.
        #[test]
        fn line_end_checks_agree_with_their_definitions(
            head in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a', 0u8, 0x8d]),
                0..70,
            )
        ) {
            proptest::prop_assert_eq!(line_endings_are_strict(&head), strict_by_bytes(&head));
            proptest::prop_assert_eq!(has_bare_cr(&head), bare_cr_by_bytes(&head));
        }
    }

    #[test]
    fn line_ends_at_block_boundaries() {
        for len in 0..40 {
            for at in 0..len {
                let mut head = vec![b'x'; len];
                head[at] = b'\r';
                assert!(has_bare_cr(&head), "{len} {at}");
                assert!(!line_endings_are_strict(&head), "{len} {at}");
                if at + 1 < len {
                    head[at + 1] = b'\n';
                    assert!(!has_bare_cr(&head), "{len} {at}");
                    assert!(line_endings_are_strict(&head), "{len} {at}");
                }
                let mut lf = vec![b'x'; len];
                lf[at] = b'\n';
                assert!(!line_endings_are_strict(&lf), "{len} {at}");
                assert!(!has_bare_cr(&lf), "{len} {at}");
            }
        }
    }

    #[test]
    fn line_endings() {
        assert!(has_bare_cr(b"a\rb"));
        assert!(has_bare_cr(b"a\r"));
        assert!(!has_bare_cr(b"a\r\nb\nc"));
        assert!(line_endings_are_strict(b"a\r\nb\r\n"));
        assert!(!line_endings_are_strict(b"a\nb"));
        assert!(!line_endings_are_strict(b"a\rb"));
    }
}
