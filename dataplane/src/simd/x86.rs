//! [`Vector`] for x86_64: `__m128i` with SSE2 (part of the x86_64 baseline,
//! so always available) and `__m256i` with AVX2 (detected at run time).

use std::arch::x86_64::*;

use super::{Lookup, Vector};

/// One `impl Vector` per register type, from its intrinsics.
macro_rules! vector {
    ($ty:ty, $lanes:literal, $mask:expr, load: $load:ident, splat: $splat:ident,
     eq: $eq:ident, and: $and:ident, or: $or:ident, sub: $sub:ident, min: $min:ident,
     movemask: $movemask:ident) => {
        impl Vector for $ty {
            const LANES: usize = $lanes;

            #[inline(always)]
            unsafe fn load(ptr: *const u8) -> Self {
                $load(ptr as *const $ty)
            }
            #[inline(always)]
            unsafe fn splat(b: u8) -> Self {
                $splat(b as i8)
            }
            #[inline(always)]
            unsafe fn eq(self, other: Self) -> Self {
                $eq(self, other)
            }
            #[inline(always)]
            unsafe fn and(self, other: Self) -> Self {
                $and(self, other)
            }
            #[inline(always)]
            unsafe fn or(self, other: Self) -> Self {
                $or(self, other)
            }
            #[inline(always)]
            unsafe fn sub(self, other: Self) -> Self {
                $sub(self, other)
            }
            #[inline(always)]
            unsafe fn min(self, other: Self) -> Self {
                $min(self, other)
            }
            #[inline(always)]
            unsafe fn movemask(self) -> u32 {
                $movemask(self) as u32 & $mask
            }
        }
    };
}

vector!(__m128i, 16, 0xffff, load: _mm_loadu_si128, splat: _mm_set1_epi8,
    eq: _mm_cmpeq_epi8, and: _mm_and_si128, or: _mm_or_si128, sub: _mm_sub_epi8,
    min: _mm_min_epu8, movemask: _mm_movemask_epi8);

vector!(__m256i, 32, u32::MAX, load: _mm256_loadu_si256, splat: _mm256_set1_epi8,
    eq: _mm256_cmpeq_epi8, and: _mm256_and_si256, or: _mm256_or_si256, sub: _mm256_sub_epi8,
    min: _mm256_min_epu8, movemask: _mm256_movemask_epi8);

impl Lookup for __m256i {
    #[inline(always)]
    unsafe fn high_nibbles(self) -> Self {
        // No byte shift on x86: shift 16-bit lanes, then drop the bits the
        // neighbouring byte shifted in.
        _mm256_and_si256(_mm256_srli_epi16(self, 4), _mm256_set1_epi8(0x0f))
    }
    #[inline(always)]
    unsafe fn lookup(self, table: &[u8; 16]) -> Self {
        // `vpshufb` looks up within each 128-bit half: the table is in both.
        let t = _mm_loadu_si128(table.as_ptr() as *const __m128i);
        _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(t), self)
    }
}
