//! One SIMD layer for every byte scanner in the data plane: the rewrite
//! candidate finder (`rewrite::scan`), the host-run measure of the anchor
//! matcher (`rewrite::anchor`) and the digit-run finder of the content
//! detectors (`session_policy::detect`).
//!
//! Each scanner writes its kernel once, generic over [`Vector`]; this module
//! provides the vector types (AVX2 and SSE2 on x86_64, a portable 16-byte
//! scalar type everywhere) and the run-time choice between them
//! ([`Level::detect`]). The kernels are tested against their plain byte-by-
//! byte definitions (the oracles) with proptest, for every level this
//! machine can run.
//!
//! The pattern follows how memchr holds its vector code: trait methods are
//! `#[inline(always)]`, and a kernel is instantiated inside a
//! `#[target_feature]` function, so the intrinsics inline into code compiled
//! for that feature.

#[cfg(target_arch = "x86_64")]
pub mod x86;

mod scalar;
pub use scalar::Bytes16;

/// A vector of [`Vector::LANES`] bytes and the lane-wise operations the
/// scanners use. Comparisons return all-ones lanes for true, zero for
/// false.
pub trait Vector: Copy {
    /// Bytes per vector (16 or 32); a [`Vector::movemask`] has this many
    /// bits.
    const LANES: usize;

    /// Loads `LANES` bytes from `ptr`, unaligned.
    ///
    /// # Safety
    /// `ptr..ptr + LANES` must be readable, and the CPU must support the
    /// implementation's feature.
    unsafe fn load(ptr: *const u8) -> Self;
    /// Every lane `b`.
    ///
    /// # Safety
    /// The CPU must support the implementation's feature.
    unsafe fn splat(b: u8) -> Self;
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn eq(self, other: Self) -> Self;
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn and(self, other: Self) -> Self;
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn or(self, other: Self) -> Self;
    /// Lane-wise wrapping subtraction.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn sub(self, other: Self) -> Self;
    /// Lane-wise unsigned minimum.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn min(self, other: Self) -> Self;
    /// Bit `k` is the top bit of lane `k`.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn movemask(self) -> u32;

    /// Lanes equal to `b`.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    #[inline(always)]
    unsafe fn eq_byte(self, b: u8) -> Self {
        self.eq(Self::splat(b))
    }

    /// Lanes in `lo..=hi`, as unsigned bytes (`x - lo <= hi - lo`, with
    /// wrapping subtraction, is one compare).
    ///
    /// # Safety
    /// As [`Vector::splat`].
    #[inline(always)]
    unsafe fn in_range(self, lo: u8, hi: u8) -> Self {
        let d = self.sub(Self::splat(lo));
        d.min(Self::splat(hi - lo)).eq(d)
    }

    /// ASCII letters folded to lower case (and other bytes with bit 5 set);
    /// what the scanners compare case-insensitively.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    #[inline(always)]
    unsafe fn fold_case(self) -> Self {
        self.or(Self::splat(0x20))
    }
}

/// Table lookups by nibble (`pshufb`): what a classifier needs to test a
/// byte against several sets at once. AVX2 has it; SSE2 does not (it came
/// with SSSE3), so kernels that use it keep a compare-only variant for the
/// SSE2 level.
pub trait Lookup: Vector {
    /// Each lane shifted right by 4 (its high nibble).
    ///
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn high_nibbles(self) -> Self;
    /// Each lane's low nibble.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    #[inline(always)]
    unsafe fn low_nibbles(self) -> Self {
        self.and(Self::splat(0x0f))
    }
    /// Lane `k` becomes `table[self[k]]`; every lane of `self` must be
    /// below 16.
    ///
    /// # Safety
    /// As [`Vector::splat`].
    unsafe fn lookup(self, table: &[u8; 16]) -> Self;
}

/// Which vector implementation the scanners run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// [`Bytes16`]: portable, and the tests' second opinion.
    Scalar,
}

impl Level {
    /// The widest level this CPU supports (checked once, then cached by
    /// the standard library's feature detection).
    #[inline]
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                Level::Avx2
            } else {
                // SSE2 is part of the x86_64 baseline.
                Level::Sse2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Level::Scalar
        }
    }

    /// Every level this CPU can run, widest first (for tests and
    /// benchmarks).
    pub fn available() -> Vec<Level> {
        let mut levels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                levels.push(Level::Avx2);
            }
            levels.push(Level::Sse2);
        }
        levels.push(Level::Scalar);
        levels
    }
}

/// The 16-byte vector that is always available: SSE2 on x86_64, else
/// [`Bytes16`]. For kernels over exactly 16 bytes where AVX2 would not help.
#[cfg(target_arch = "x86_64")]
pub type Baseline16 = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
pub type Baseline16 = Bytes16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every operation of a vector type, lane by lane, against plain byte
    /// arithmetic (the definition each implementation must meet).
    fn check_ops<V: Vector>(a: &[u8; 32], b: &[u8; 32], c: u8) {
        let n = V::LANES;
        let lanes = |v: V| -> u32 { unsafe { v.movemask() } };
        let bits = |f: &dyn Fn(u8, u8) -> bool| -> u32 {
            (0..n).fold(0, |m, k| m | (u32::from(f(a[k], b[k])) << k))
        };
        // SAFETY: 32 readable bytes; the callers pass only levels this CPU
        // supports.
        unsafe {
            let (va, vb) = (V::load(a.as_ptr()), V::load(b.as_ptr()));
            assert_eq!(lanes(va), bits(&|x, _| x >= 0x80), "movemask");
            assert_eq!(lanes(va.eq(vb)), bits(&|x, y| x == y), "eq");
            assert_eq!(lanes(va.eq_byte(c)), bits(&|x, _| x == c), "eq_byte");
            assert_eq!(lanes(va.and(vb)), bits(&|x, y| x & y >= 0x80), "and");
            assert_eq!(lanes(va.or(vb)), bits(&|x, y| x | y >= 0x80), "or");
            assert_eq!(
                lanes(va.sub(vb)),
                bits(&|x, y| x.wrapping_sub(y) >= 0x80),
                "sub"
            );
            assert_eq!(lanes(va.min(vb)), bits(&|x, y| x.min(y) >= 0x80), "min");
            let (lo, hi) = (c.min(b[0]), c.max(b[0]));
            assert_eq!(
                lanes(va.in_range(lo, hi)),
                bits(&|x, _| (lo..=hi).contains(&x)),
                "in_range"
            );
            assert_eq!(
                lanes(va.fold_case().eq_byte(b'q')),
                bits(&|x, _| x | 0x20 == b'q'),
                "fold_case"
            );
        }
    }

    /// [`Lookup`]'s operations against plain byte arithmetic: the table
    /// value of each nibble, tested by its top bit and by equality.
    fn check_lookup<V: Lookup>(a: &[u8; 32], table: &[u8; 16]) {
        let n = V::LANES;
        let bits = |f: &dyn Fn(u8) -> bool| -> u32 {
            (0..n).fold(0, |m, k| m | (u32::from(f(a[k])) << k))
        };
        // SAFETY: as in `check_ops`.
        unsafe {
            let va = V::load(a.as_ptr());
            let (lo, hi) = (va.low_nibbles(), va.high_nibbles());
            for probe in [0u8, 0x0f, a[0] & 0x0f, a[1] >> 4] {
                assert_eq!(
                    lo.eq_byte(probe).movemask(),
                    bits(&|x| x & 0x0f == probe),
                    "low"
                );
                assert_eq!(
                    hi.eq_byte(probe).movemask(),
                    bits(&|x| x >> 4 == probe),
                    "high"
                );
            }
            for (got, nibble) in [(lo.lookup(table), 0), (hi.lookup(table), 4)] {
                let want = |x: u8| table[usize::from((x >> nibble) & 0x0f)];
                assert_eq!(got.movemask(), bits(&|x| want(x) >= 0x80), "lookup top bit");
                for probe in [table[0], table[7], table[15]] {
                    assert_eq!(
                        got.eq_byte(probe).movemask(),
                        bits(&|x| want(x) == probe),
                        "lookup"
                    );
                }
            }
        }
    }

    fn check_level(level: Level, a: &[u8; 32], b: &[u8; 32], c: u8) {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                #[target_feature(enable = "avx2")]
                unsafe fn run(a: &[u8; 32], b: &[u8; 32], c: u8) {
                    check_ops::<std::arch::x86_64::__m256i>(a, b, c);
                    check_lookup::<std::arch::x86_64::__m256i>(a, &b[..16].try_into().unwrap());
                }
                // SAFETY: listed by `available`, so AVX2 was detected.
                unsafe { run(a, b, c) }
            }
            #[cfg(target_arch = "x86_64")]
            Level::Sse2 => check_ops::<std::arch::x86_64::__m128i>(a, b, c),
            Level::Scalar => {
                check_ops::<Bytes16>(a, b, c);
                check_lookup::<Bytes16>(a, &b[16..].try_into().unwrap());
            }
        }
    }

    proptest! {
        #[test]
        fn every_level_computes_the_lane_definitions(
            a in proptest::array::uniform32(any::<u8>()),
            b in proptest::array::uniform32(any::<u8>()),
            c in any::<u8>(),
        ) {
            for level in Level::available() {
                check_level(level, &a, &b, c);
            }
        }
    }

    #[test]
    fn the_detected_level_is_available() {
        assert!(Level::available().contains(&Level::detect()));
    }
}
