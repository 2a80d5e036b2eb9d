//! Where the rewrite driver writes: an [`Emit`] takes unchanged spans of
//! the input and bytes the engine made. Into a `Vec` everything is copied;
//! into a [`FilterOutput`] (the data plane's body relay) large unchanged
//! spans of the input are passed by reference, not copied.

use crate::body::{FilterOutput, ZERO_COPY_MIN};

/// Where a pass puts its output.
pub trait Emit {
    /// `data[range]`, unchanged; `in_input`: `data` is the input buffer of
    /// the current `feed` (so the span may be passed on without a copy).
    fn span(&mut self, data: &[u8], range: std::ops::Range<usize>, in_input: bool);
    /// Bytes the engine made.
    fn bytes(&mut self, bytes: &[u8]);
    /// [`Emit::span`] then [`Emit::bytes`].
    #[inline]
    fn span_then(
        &mut self,
        data: &[u8],
        range: std::ops::Range<usize>,
        in_input: bool,
        bytes: &[u8],
    ) {
        self.span(data, range, in_input);
        self.bytes(bytes);
    }
}

impl Emit for Vec<u8> {
    #[inline]
    fn span(&mut self, data: &[u8], range: std::ops::Range<usize>, _: bool) {
        self.extend_from_slice(&data[range]);
    }
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Emit for FilterOutput {
    #[inline]
    fn span(&mut self, data: &[u8], range: std::ops::Range<usize>, in_input: bool) {
        if in_input {
            self.pass(data, range);
        } else {
            self.bytes.extend_from_slice(&data[range]);
        }
    }
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
    #[inline]
    fn span_then(
        &mut self,
        data: &[u8],
        range: std::ops::Range<usize>,
        in_input: bool,
        bytes: &[u8],
    ) {
        if in_input && range.len() >= ZERO_COPY_MIN {
            self.pass(data, range);
        } else {
            // Both copies after one capacity check.
            self.bytes.reserve(range.len() + bytes.len());
            self.bytes.extend_from_slice(&data[range]);
        }
        self.bytes.extend_from_slice(bytes);
    }
}

/// Passes everything to the inner [`Emit`] as copies: for bytes fed to the
/// engine that are not the caller's input (held bytes, an injected tag).
pub struct Copied<'o, E>(pub &'o mut E);

impl<E: Emit> Emit for Copied<'_, E> {
    #[inline]
    fn span(&mut self, data: &[u8], range: std::ops::Range<usize>, _: bool) {
        self.0.span(data, range, false);
    }
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.bytes(bytes);
    }
    #[inline]
    fn span_then(&mut self, data: &[u8], range: std::ops::Range<usize>, _: bool, bytes: &[u8]) {
        self.0.span_then(data, range, false, bytes);
    }
}
