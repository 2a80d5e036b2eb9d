//! [`Bytes16`]: the portable [`Vector`], sixteen bytes in an array with
//! each operation a loop the compiler may vectorise itself. It is what runs
//! off x86_64 and a second opinion in the tests on it.

use super::{Lookup, Vector};

/// Sixteen bytes, lane by lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes16(pub [u8; 16]);

impl Bytes16 {
    #[inline(always)]
    fn zip(self, other: Self, f: impl Fn(u8, u8) -> u8) -> Self {
        let mut out = [0u8; 16];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = f(*a, *b);
        }
        Bytes16(out)
    }
}

impl Vector for Bytes16 {
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn load(ptr: *const u8) -> Self {
        // SAFETY: the caller guarantees 16 readable bytes at `ptr`.
        Bytes16(unsafe { std::ptr::read_unaligned(ptr as *const [u8; 16]) })
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        Bytes16([b; 16])
    }
    #[inline(always)]
    unsafe fn eq(self, other: Self) -> Self {
        self.zip(other, |a, b| if a == b { 0xff } else { 0 })
    }
    #[inline(always)]
    unsafe fn and(self, other: Self) -> Self {
        self.zip(other, |a, b| a & b)
    }
    #[inline(always)]
    unsafe fn or(self, other: Self) -> Self {
        self.zip(other, |a, b| a | b)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        self.zip(other, u8::wrapping_sub)
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        self.zip(other, u8::min)
    }
    #[inline(always)]
    unsafe fn movemask(self) -> u32 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (k, b)| m | (u32::from(b >> 7) << k))
    }
}

impl Lookup for Bytes16 {
    #[inline(always)]
    unsafe fn high_nibbles(self) -> Self {
        Bytes16(self.0.map(|b| b >> 4))
    }
    #[inline(always)]
    unsafe fn lookup(self, table: &[u8; 16]) -> Self {
        Bytes16(self.0.map(|i| table[usize::from(i & 0x0f)]))
    }
}
