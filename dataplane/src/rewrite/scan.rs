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
//!
//! Where the vector type can look bytes up in a table ([`Lookup`]: AVX2,
//! and the portable type), each byte of the pair is classified by its two
//! nibbles against every pair bucket at once ([`PairTables`]: four lookups
//! and three ANDs for all the pairs); SSE2 has no byte shuffle, so it tests
//! the pairs with compares. Both kernels are written once over
//! [`crate::simd::Vector`] and run at the widest level the CPU has;
//! [`is_pair`] is their oracle in the tests.

use crate::simd::{Bytes16, Level, Lookup, Vector};

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

/// The candidate pairs as buckets of `(first bytes, second bytes, HTML
/// only)`. Each byte set is exactly the product of the low and high
/// nibbles of its members (`/` and 0x0F share the low nibble F and have
/// high nibbles 2 and 0, and nothing else has those), so classifying a
/// byte by its two nibbles tests membership exactly; a pair is a
/// candidate when both bytes agree on some bucket bit.
const BUCKETS: [(&[u8], &[u8], bool); 7] = [
    (b"/\x0f", b"/", false),
    (b"/\x0f", b"\\", false),
    (b"fF", b"\\", false),
    (b"fF", b"%", false),
    (b";\x1b", b"&", false),
    (b"yY", b"=", true),
    (b"<", b"mM", true),
];

/// Bucket bits by nibble: `a_low[n]` has bucket `k`'s bit when some first
/// byte of bucket `k` has low nibble `n`, and so on.
pub struct PairTables {
    a_low: [u8; 16],
    a_high: [u8; 16],
    b_low: [u8; 16],
    b_high: [u8; 16],
}

impl PairTables {
    const fn build(html: bool) -> PairTables {
        let mut t = PairTables {
            a_low: [0; 16],
            a_high: [0; 16],
            b_low: [0; 16],
            b_high: [0; 16],
        };
        let mut k = 0;
        while k < BUCKETS.len() {
            let (first, second, html_only) = BUCKETS[k];
            if html || !html_only {
                let bit = 1u8 << k;
                let mut i = 0;
                while i < first.len() {
                    t.a_low[(first[i] & 0x0f) as usize] |= bit;
                    t.a_high[(first[i] >> 4) as usize] |= bit;
                    i += 1;
                }
                let mut i = 0;
                while i < second.len() {
                    t.b_low[(second[i] & 0x0f) as usize] |= bit;
                    t.b_high[(second[i] >> 4) as usize] |= bit;
                    i += 1;
                }
            }
            k += 1;
        }
        t
    }

    fn of(set: PairSet) -> &'static PairTables {
        static URLS: PairTables = PairTables::build(false);
        static HTML: PairTables = PairTables::build(true);
        match set {
            PairSet::Urls => &URLS,
            PairSet::Html => &HTML,
        }
    }

    /// The nibble classification of one pair, byte by byte (the tables'
    /// own definition, checked against [`is_pair`] for every pair).
    #[cfg(test)]
    fn classifies(&self, a: u8, b: u8) -> bool {
        let (a_lo, a_hi) = (usize::from(a & 0x0f), usize::from(a >> 4));
        let (b_lo, b_hi) = (usize::from(b & 0x0f), usize::from(b >> 4));
        self.a_low[a_lo] & self.a_high[a_hi] & self.b_low[b_lo] & self.b_high[b_hi] != 0
    }
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
    level: Level,
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
            level: Level::detect(),
        };
        c.load(from);
        c
    }

    /// Skips every candidate before `pos`.
    #[inline]
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
    #[inline]
    fn load(&mut self, at: usize) {
        let (block, mask) = match self.level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 was detected at run time.
            Level::Avx2 => unsafe { next_block_avx2(self.data, at, self.end, self.set) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Level::Sse2 => unsafe { next_block_sse2(self.data, at, self.end, self.set) },
            // SAFETY: `end < data.len()`; Bytes16 needs no CPU feature.
            Level::Scalar => unsafe { next_block_portable(self.data, at, self.end, self.set) },
        };
        self.block = block;
        self.mask = mask;
    }
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

/// Bit `k` set when `(p[k], p[k + 1])` is a candidate pair, for
/// `V::LANES` positions: two shifted loads, a handful of compares.
///
/// # Safety
/// `p..p + V::LANES + 1` must be readable; `V`'s feature available.
#[inline(always)]
unsafe fn pair_mask<V: Vector>(p: *const u8, set: PairSet) -> u32 {
    let a = V::load(p);
    let b = V::load(p.add(1));
    let al = a.fold_case();
    let backslash = b.eq_byte(b'\\');
    let slash_first = al.eq_byte(b'/').and(b.eq_byte(b'/').or(backslash));
    let f_first = al.eq_byte(b'f').and(backslash.or(b.eq_byte(b'%')));
    let semi_first = al.eq_byte(b';').and(b.eq_byte(b'&'));
    let mut m = slash_first.or(f_first).or(semi_first);
    if set == PairSet::Html {
        let y = al.eq_byte(b'y').and(b.eq_byte(b'='));
        let meta = a.eq_byte(b'<').and(b.fold_case().eq_byte(b'm'));
        m = m.or(y.or(meta));
    }
    m.movemask()
}

/// [`pair_mask`] by nibble classification: each byte's two nibbles look
/// up its bucket bits, and a position is a candidate when its byte and the
/// next share one.
///
/// # Safety
/// As [`pair_mask`].
#[inline(always)]
unsafe fn pair_mask_by_nibbles<V: Lookup>(p: *const u8, t: &PairTables) -> u32 {
    let a = V::load(p);
    let b = V::load(p.add(1));
    let class = a
        .low_nibbles()
        .lookup(&t.a_low)
        .and(a.high_nibbles().lookup(&t.a_high))
        .and(b.low_nibbles().lookup(&t.b_low))
        .and(b.high_nibbles().lookup(&t.b_high));
    !class.eq(V::splat(0)).movemask() & (u32::MAX >> (32 - V::LANES))
}

/// The first block from `at` with a candidate: `(block start, mask)`, or
/// `(end, 0)`. Blocks are 32 positions, a vector at a time; the last may be
/// shorter, scanned over a zero-padded copy. `mask_of` is the kernel
/// ([`pair_mask`] or [`pair_mask_by_nibbles`]). Instantiated inside each
/// `target_feature` function below, so the whole loop is compiled for that
/// feature (a call per block would cost more than the block).
///
/// # Safety
/// `end < data.len()`; `V`'s feature available; `mask_of` reads at most
/// `V::LANES + 1` bytes from its pointer.
#[inline(always)]
unsafe fn next_block<V: Vector>(
    data: &[u8],
    mut at: usize,
    end: usize,
    mask_of: impl Fn(*const u8) -> u32,
) -> (usize, u32) {
    // `at + BLOCK <= end` keeps the second load (one byte further) inside
    // `data`.
    while at + BLOCK <= end {
        let p = data.as_ptr().add(at);
        let mut mask = 0u32;
        let mut k = 0;
        while k < BLOCK {
            mask |= mask_of(p.add(k)) << k;
            k += V::LANES;
        }
        if mask != 0 {
            return (at, mask);
        }
        at += BLOCK;
    }
    if at < end {
        // The last, partial block (every read ends in one): the same
        // kernel over a zero-padded copy, the padding's positions masked
        // off below. Position by position it cost ~15 instructions each.
        let n = end - at;
        let mut tail = [0u8; 2 * BLOCK];
        tail[..=n].copy_from_slice(&data[at..=end]);
        let p = tail.as_ptr();
        let mut mask = 0u32;
        let mut k = 0;
        while k < BLOCK {
            mask |= mask_of(p.add(k)) << k;
            k += V::LANES;
        }
        // `n < BLOCK`: positions `n..` are padding.
        mask &= (1u32 << n) - 1;
        if mask != 0 {
            return (at, mask);
        }
    }
    (end, 0)
}

/// # Safety
/// AVX2 must be available; `end < data.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_block_avx2(data: &[u8], at: usize, end: usize, set: PairSet) -> (usize, u32) {
    use std::arch::x86_64::__m256i;
    let tables = PairTables::of(set);
    next_block::<__m256i>(data, at, end, |p| {
        pair_mask_by_nibbles::<__m256i>(p, tables)
    })
}

/// # Safety
/// `end < data.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn next_block_sse2(data: &[u8], at: usize, end: usize, set: PairSet) -> (usize, u32) {
    use std::arch::x86_64::__m128i;
    next_block::<__m128i>(data, at, end, |p| pair_mask::<__m128i>(p, set))
}

/// The portable level: the nibble kernel over [`Bytes16`].
///
/// # Safety
/// `end < data.len()`.
unsafe fn next_block_portable(data: &[u8], at: usize, end: usize, set: PairSet) -> (usize, u32) {
    let tables = PairTables::of(set);
    next_block::<Bytes16>(data, at, end, |p| {
        pair_mask_by_nibbles::<Bytes16>(p, tables)
    })
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
        Level::available()
            .into_iter()
            .map(|level| {
                let mut c = Candidates::new(data, from, set);
                c.level = level;
                c.load(from);
                c.collect()
            })
            .collect()
    }

    #[test]
    fn the_nibble_tables_classify_every_pair_as_is_pair_does() {
        for set in [PairSet::Urls, PairSet::Html] {
            let tables = PairTables::of(set);
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    assert_eq!(
                        tables.classifies(a, b),
                        is_pair(a, b, set),
                        "{a:#04x} {b:#04x} {set:?}"
                    );
                }
            }
        }
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
