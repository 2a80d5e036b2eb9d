//! [`Vector`] for x86_64: `__m128i` with SSE2 (part of the x86_64 baseline,
//! so always available) and `__m256i` with AVX2 (detected at run time).

use std::arch::x86_64::*;

use super::Vector;

impl Vector for __m128i {
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn load(ptr: *const u8) -> Self {
        _mm_loadu_si128(ptr as *const __m128i)
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        _mm_set1_epi8(b as i8)
    }
    #[inline(always)]
    unsafe fn eq(self, other: Self) -> Self {
        _mm_cmpeq_epi8(self, other)
    }
    #[inline(always)]
    unsafe fn and(self, other: Self) -> Self {
        _mm_and_si128(self, other)
    }
    #[inline(always)]
    unsafe fn or(self, other: Self) -> Self {
        _mm_or_si128(self, other)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        _mm_sub_epi8(self, other)
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        _mm_min_epu8(self, other)
    }
    #[inline(always)]
    unsafe fn movemask(self) -> u32 {
        _mm_movemask_epi8(self) as u32 & 0xffff
    }
}

impl Vector for __m256i {
    const LANES: usize = 32;

    #[inline(always)]
    unsafe fn load(ptr: *const u8) -> Self {
        _mm256_loadu_si256(ptr as *const __m256i)
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        _mm256_set1_epi8(b as i8)
    }
    #[inline(always)]
    unsafe fn eq(self, other: Self) -> Self {
        _mm256_cmpeq_epi8(self, other)
    }
    #[inline(always)]
    unsafe fn and(self, other: Self) -> Self {
        _mm256_and_si256(self, other)
    }
    #[inline(always)]
    unsafe fn or(self, other: Self) -> Self {
        _mm256_or_si256(self, other)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        _mm256_sub_epi8(self, other)
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        _mm256_min_epu8(self, other)
    }
    #[inline(always)]
    unsafe fn movemask(self) -> u32 {
        _mm256_movemask_epi8(self) as u32
    }
}
