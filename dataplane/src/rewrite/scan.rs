//! The candidate finder: positions where a rewrite may start, found with
//! SIMD by looking at byte pairs.
//!
//! Every URL-authority anchor the engine knows contains one of a few byte
//! pairs at a fixed place: `//` (plain), `/\` (`\/\/`), `F\` (`\u002F\u002F`,
//! `\x2F\x2F`), `F%` (`%2F%2F`, `%252F%252F`) and `;&` (`&#x2F;&#x2F;`,
//! `&#47;&#47;`, `&sol;&sol;`), with `F` in either letter case. HTML adds
//! `y=` (the `integrity=` attribute) and `<m` (`<meta`). Testing two
//! shifted loads against these pairs costs a handful of vector operations
//! per 16 or 32 bytes, and real text rarely contains the pairs, so the scan
//! runs near memory speed and its cost does not depend on how many apps
//! the snapshot has. Candidates are only hints: `anchor` decides.

/// Which pair set to look for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairSet {
    /// URL anchors only (scripts, stylesheets, JSON, XML).
    Urls,
    /// URL anchors plus the HTML attribute and tag anchors.
    Html,
}

/// True when `(a, b)` is a candidate pair: the scalar definition the SIMD
/// paths must agree with.
#[inline]
pub fn is_pair(a: u8, b: u8, set: PairSet) -> bool {
    let al = a | 0x20;
    let bl = b | 0x20;
    let url = (al == b'/' && (b == b'/' || b == b'\\'))
        || (al == b'f' && (b == b'\\' || b == b'%'))
        || (al == b';' && b == b'&');
    url || (set == PairSet::Html && ((al == b'y' && b == b'=') || (a == b'<' && bl == b'm')))
}

/// Iterates over candidate positions `i` (with `data[i + 1]` in `data`)
/// in increasing order, 32 bytes at a time.
pub struct Candidates<'a> {
    data: &'a [u8],
    set: PairSet,
    /// Start of the block `mask` describes.
    block: usize,
    /// Bit `k` set: `block + k` is a candidate not yet returned.
    mask: u32,
    /// Positions from here on are not examined (exclusive end).
    end: usize,
    simd: Simd,
}

#[derive(Clone, Copy)]
enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Sse2,
    #[allow(dead_code)]
    Scalar,
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            Simd::Avx2
        } else {
            // SSE2 is part of the x86_64 baseline.
            Simd::Sse2
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Scalar
    }
}

const BLOCK: usize = 32;

impl<'a> Candidates<'a> {
    /// Candidates at positions `from..` whose pair lies inside `data`.
    pub fn new(data: &'a [u8], from: usize, set: PairSet) -> Candidates<'a> {
        let end = data.len().saturating_sub(1);
        let mut c = Candidates {
            data,
            set,
            block: from,
            mask: 0,
            end,
            simd: detect(),
        };
        c.load(from);
        c
    }

    /// Skips every candidate before `pos`.
    pub fn skip_to(&mut self, pos: usize) {
        if pos < self.block + BLOCK {
            let shift = pos.saturating_sub(self.block);
            self.mask &= if shift >= 32 { 0 } else { !0u32 << shift };
        } else {
            self.load(pos);
        }
    }

    /// Moves to the first block at or after `at` that has a candidate
    /// (or past the end).
    fn load(&mut self, at: usize) {
        let (block, mask) = match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 was detected at run time.
            Simd::Avx2 => unsafe { x86::next_block_avx2(self.data, at, self.end, self.set) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Simd::Sse2 => unsafe { x86::next_block_sse2(self.data, at, self.end, self.set) },
            Simd::Scalar => next_block_scalar(self.data, at, self.end, self.set),
        };
        self.block = block;
        self.mask = mask;
    }
}

/// The first block from `at` with a candidate: `(block start, mask)`, or
/// `(end, 0)`. Blocks are 32 positions; the last may be shorter.
fn next_block_scalar(data: &[u8], mut at: usize, end: usize, set: PairSet) -> (usize, u32) {
    while at < end {
        let n = (end - at).min(BLOCK);
        let mask = scalar_mask(data, at, n, set);
        if mask != 0 {
            return (at, mask);
        }
        at += n;
    }
    (end, 0)
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let bit = self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                return Some(self.block + bit);
            }
            let next = self.block + BLOCK;
            if next >= self.end {
                return None;
            }
            self.load(next);
            if self.mask == 0 {
                return None;
            }
        }
    }
}

fn scalar_mask(data: &[u8], at: usize, n: usize, set: PairSet) -> u32 {
    let mut mask = 0u32;
    for k in 0..n {
        if is_pair(data[at + k], data[at + k + 1], set) {
            mask |= 1 << k;
        }
    }
    mask
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::PairSet;
    use std::arch::x86_64::*;

    /// Pair mask of 32 positions from `at` with AVX2.
    ///
    /// # Safety
    /// AVX2 must be available and `at + 33 <= data.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn mask32_avx2(data: &[u8], at: usize, set: PairSet) -> u32 {
        debug_assert!(at + 33 <= data.len());
        let p = data.as_ptr().add(at);
        let a = _mm256_loadu_si256(p as *const __m256i);
        let b = _mm256_loadu_si256(p.add(1) as *const __m256i);
        let case = _mm256_set1_epi8(0x20);
        let al = _mm256_or_si256(a, case);
        let eq = |v, c: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8));
        let backslash = eq(b, b'\\');
        let slash_first = _mm256_and_si256(eq(al, b'/'), _mm256_or_si256(eq(b, b'/'), backslash));
        let f_first = _mm256_and_si256(eq(al, b'f'), _mm256_or_si256(backslash, eq(b, b'%')));
        let semi_first = _mm256_and_si256(eq(al, b';'), eq(b, b'&'));
        let mut m = _mm256_or_si256(_mm256_or_si256(slash_first, f_first), semi_first);
        if set == PairSet::Html {
            let bl = _mm256_or_si256(b, case);
            let y = _mm256_and_si256(eq(al, b'y'), eq(b, b'='));
            let meta = _mm256_and_si256(eq(a, b'<'), eq(bl, b'm'));
            m = _mm256_or_si256(m, _mm256_or_si256(y, meta));
        }
        _mm256_movemask_epi8(m) as u32
    }

    /// [`super::next_block_scalar`] with a vector mask function: the whole
    /// search loop is generated inside each `target_feature` function (a
    /// call per block would cost more than the block).
    macro_rules! next_block {
        ($name:ident, $feature:literal, $mask:ident) => {
            /// # Safety
            #[doc = concat!("`", $feature, "` must be available; `end < data.len()`.")]
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                data: &[u8],
                mut at: usize,
                end: usize,
                set: PairSet,
            ) -> (usize, u32) {
                while at + 32 <= end {
                    let mask = $mask(data, at, set);
                    if mask != 0 {
                        return (at, mask);
                    }
                    at += 32;
                }
                super::next_block_scalar(data, at, end, set)
            }
        };
    }

    next_block!(next_block_avx2, "avx2", mask32_avx2);
    next_block!(next_block_sse2, "sse2", mask32_sse2);

    /// The same with two SSE2 halves.
    ///
    /// # Safety
    /// `at + 33 <= data.len()`.
    #[target_feature(enable = "sse2")]
    #[inline]
    pub unsafe fn mask32_sse2(data: &[u8], at: usize, set: PairSet) -> u32 {
        debug_assert!(at + 33 <= data.len());
        let half = |off: usize| {
            let p = data.as_ptr().add(at + off);
            let a = _mm_loadu_si128(p as *const __m128i);
            let b = _mm_loadu_si128(p.add(1) as *const __m128i);
            let case = _mm_set1_epi8(0x20);
            let al = _mm_or_si128(a, case);
            let eq = |v, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let backslash = eq(b, b'\\');
            let slash_first = _mm_and_si128(eq(al, b'/'), _mm_or_si128(eq(b, b'/'), backslash));
            let f_first = _mm_and_si128(eq(al, b'f'), _mm_or_si128(backslash, eq(b, b'%')));
            let semi_first = _mm_and_si128(eq(al, b';'), eq(b, b'&'));
            let mut m = _mm_or_si128(_mm_or_si128(slash_first, f_first), semi_first);
            if set == PairSet::Html {
                let bl = _mm_or_si128(b, case);
                let y = _mm_and_si128(eq(al, b'y'), eq(b, b'='));
                let meta = _mm_and_si128(eq(a, b'<'), eq(bl, b'm'));
                m = _mm_or_si128(m, _mm_or_si128(y, meta));
            }
            _mm_movemask_epi8(m) as u32 & 0xffff
        };
        half(0) | (half(16) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(data: &[u8], from: usize, set: PairSet) -> Vec<usize> {
        (from..data.len().saturating_sub(1))
            .filter(|&i| is_pair(data[i], data[i + 1], set))
            .collect()
    }

    fn all_paths(data: &[u8], from: usize, set: PairSet) -> Vec<Vec<usize>> {
        let mut paths = vec![detect()];
        paths.push(Simd::Scalar);
        #[cfg(target_arch = "x86_64")]
        paths.push(Simd::Sse2);
        paths
            .into_iter()
            .map(|simd| {
                let mut c = Candidates::new(data, from, set);
                c.simd = simd;
                c.load(from);
                c.collect()
            })
            .collect()
    }

    #[test]
    fn finds_every_anchor_pair() {
        let text = b"a https://x \\/\\/ \\u002F\\u002f %2f%2F &#x2F;&#x2F; y= <META ";
        for set in [PairSet::Urls, PairSet::Html] {
            for got in all_paths(text, 0, set) {
                assert_eq!(got, naive(text, 0, set));
            }
        }
        assert_eq!(naive(text, 0, PairSet::Urls).len(), 5);
        assert_eq!(naive(text, 0, PairSet::Html).len(), 7);
    }

    proptest! {
        #[test]
        fn simd_paths_agree_with_the_scalar_definition(
            data in proptest::collection::vec(
                prop_oneof![Just(b'/'), Just(b'\\'), Just(b'F'), Just(b'f'), Just(b'%'),
                    Just(b';'), Just(b'&'), Just(b'y'), Just(b'='), Just(b'<'), Just(b'M'),
                    Just(0x0f_u8), any::<u8>()],
                0..200),
            from in 0usize..50,
        ) {
            for set in [PairSet::Urls, PairSet::Html] {
                let want = naive(&data, from, set);
                for got in all_paths(&data, from, set) {
                    prop_assert_eq!(&got, &want);
                }
            }
        }
    }
}
