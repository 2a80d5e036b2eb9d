//! Built-in content detectors: payment card numbers (Luhn), US social
//! security numbers, IBANs (ISO 13616 mod-97), AWS access key ids and
//! private-key blocks.
//!
//! One pass finds every ASCII digit with SSE2 (16 bytes per step, a scalar
//! fallback elsewhere); card numbers, SSNs and IBANs all contain digits, so
//! each candidate is examined only where a digit run starts and text
//! without digits costs one vector compare per 16 bytes. AWS keys and
//! private-key headers are found with `memmem`. Every fast path is checked
//! against a naive oracle in the tests.

use crate::simd::{Bytes16, Level, Vector};
use memchr::memmem;

/// Matches per built-in detector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub credit_card: u32,
    pub ssn: u32,
    pub iban: u32,
    pub aws_key: u32,
    pub private_key: u32,
}

impl Counts {
    /// The count of a detector by its policy name.
    pub fn of(&self, name: &str) -> u32 {
        match name {
            "credit_card" => self.credit_card,
            "ssn" => self.ssn,
            "iban" => self.iban,
            "aws_key" => self.aws_key,
            "private_key" => self.private_key,
            _ => 0,
        }
    }
}

/// Counts every built-in detector's matches in `text`.
pub fn scan(text: &[u8]) -> Counts {
    let mut c = Counts::default();
    let mut resume = 0;
    for_each_run_start(text, |d| {
        if d >= resume {
            resume = examine(text, d, &mut c);
        }
    });
    for prefix in [&b"AKIA"[..], b"ASIA"] {
        for at in memmem::find_iter(text, prefix) {
            if is_aws_key(text, at) {
                c.aws_key += 1;
            }
        }
    }
    for at in memmem::find_iter(text, b"PRIVATE KEY-----") {
        // "-----BEGIN [RSA |EC |OPENSSH |ENCRYPTED ]PRIVATE KEY-----"
        let start = at.saturating_sub(24);
        if memmem::rfind(&text[start..at], b"-----BEGIN ").is_some() {
            c.private_key += 1;
        }
    }
    c
}

/// Calls `f` with the position of every digit that starts a run of
/// digits, in order.
#[inline]
pub fn for_each_run_start(text: &[u8], f: impl FnMut(usize)) {
    run_starts_at(Level::detect(), text, f)
}

/// [`for_each_run_start`] at a given SIMD level (the tests run each).
pub fn run_starts_at(level: Level, text: &[u8], f: impl FnMut(usize)) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected at run time.
        Level::Avx2 => unsafe { run_starts_avx2(text, f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE2 is part of the x86_64 baseline.
        Level::Sse2 => unsafe { run_starts_sse2(text, f) },
        // SAFETY: Bytes16 needs no CPU feature.
        Level::Scalar => unsafe { run_starts::<Bytes16>(text, f) },
    }
}

/// From `from` on; `after_digit`: the byte before `from` is a digit.
pub fn run_starts_scalar(
    text: &[u8],
    from: usize,
    mut after_digit: bool,
    mut f: impl FnMut(usize),
) {
    for (i, b) in text.iter().enumerate().skip(from) {
        let digit = b.is_ascii_digit();
        if digit && !after_digit {
            f(i);
        }
        after_digit = digit;
    }
}

/// The digit-run kernel, a vector at a time: a lane starts a run when it
/// is a digit and the lane before it (or the previous vector's last) is
/// not; the tail goes to [`run_starts_scalar`], its oracle.
///
/// # Safety
/// `V`'s feature must be available.
#[inline(always)]
unsafe fn run_starts<V: Vector>(text: &[u8], mut f: impl FnMut(usize)) {
    let mut i = 0;
    // Bit 0: the last byte of the previous vector was a digit.
    let mut carry = 0u32;
    // Every load reads `text[i..i + LANES]`, kept in bounds by the loop
    // condition.
    while i + V::LANES <= text.len() {
        let mask = V::load(text.as_ptr().add(i))
            .in_range(b'0', b'9')
            .movemask();
        let mut starts = mask & !((mask << 1) | carry);
        while starts != 0 {
            f(i + starts.trailing_zeros() as usize);
            starts &= starts - 1;
        }
        carry = (mask >> (V::LANES - 1)) & 1;
        i += V::LANES;
    }
    run_starts_scalar(text, i, carry == 1, f)
}

/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_starts_avx2(text: &[u8], f: impl FnMut(usize)) {
    run_starts::<std::arch::x86_64::__m256i>(text, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn run_starts_sse2(text: &[u8], f: impl FnMut(usize)) {
    run_starts::<std::arch::x86_64::__m128i>(text, f)
}

/// The position of the first ASCII digit at or after `from` (the
/// straightforward search the tests use as an oracle).
pub fn next_digit_scalar(text: &[u8], from: usize) -> Option<usize> {
    text.get(from..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| p + from)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Examines the digit run starting at `d` (and what it may belong to);
/// returns where scanning resumes.
fn examine(text: &[u8], d: usize, c: &mut Counts) -> usize {
    // A digit inside a word ("A1", "x64") starts nothing, except as an
    // IBAN's check digits right after the country code.
    if d >= 2 && text[d - 1].is_ascii_uppercase() && text[d - 2].is_ascii_uppercase() {
        if let Some(end) = iban_at(text, d - 2) {
            c.iban += 1;
            return end;
        }
    }
    let run_end = d + text[d..].iter().take_while(|b| b.is_ascii_digit()).count();
    if d > 0 && is_word(text[d - 1]) {
        return run_end;
    }
    // Most runs are short numbers in prose ("2024", "$350"): only a run
    // long enough for a card, or one continued after a single separator
    // (a grouped card or an SSN), can match.
    let continued = matches!(text.get(run_end), Some(b' ' | b'-'))
        && text.get(run_end + 1).is_some_and(u8::is_ascii_digit);
    if !continued && run_end - d < 13 {
        return run_end;
    }
    if let Some(end) = ssn_at(text, d) {
        c.ssn += 1;
        return end;
    }
    if matches!(text[d], b'2'..=b'6') {
        if let Some(end) = card_at(text, d) {
            c.credit_card += 1;
            return end;
        }
    }
    run_end
}

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        let mut v = (b - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A card number at `d`: 13–19 digits, optionally in groups separated by
/// one space or dash (the same throughout), a known issuer prefix and a
/// valid Luhn checksum, not inside a longer number.
fn card_at(text: &[u8], d: usize) -> Option<usize> {
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut i = d;
    let mut sep: Option<u8> = None;
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_digit() {
            if n == 19 {
                return None;
            }
            digits[n] = b;
            n += 1;
            i += 1;
        } else if (b == b' ' || b == b'-')
            && n > 0
            && sep.is_none_or(|s| s == b)
            && text.get(i + 1).is_some_and(u8::is_ascii_digit)
        {
            sep = Some(b);
            i += 1;
        } else {
            break;
        }
    }
    if i < text.len() && is_word(text[i]) {
        return None;
    }
    let digits = &digits[..n];
    if !(13..=19).contains(&n) || !matches!(digits[0], b'2'..=b'6') {
        return None;
    }
    luhn_valid(digits).then_some(i)
}

/// `AAA-GG-SSSS` (dashes or spaces, the same twice) with the SSA's
/// never-issued values excluded: area 000, 666, 900–999; group 00;
/// serial 0000.
fn ssn_at(text: &[u8], d: usize) -> Option<usize> {
    let s = text.get(d..d + 11)?;
    let sep = s[3];
    if !(sep == b'-' || sep == b' ') || s[6] != sep {
        return None;
    }
    let digits_ok = |r: std::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
    if !(digits_ok(0..3) && digits_ok(4..6) && digits_ok(7..11)) {
        return None;
    }
    if text.get(d + 11).is_some_and(|b| is_word(*b)) {
        return None;
    }
    let area = &s[0..3];
    if area == b"000"
        || area == b"666"
        || area[0] == b'9'
        || &s[4..6] == b"00"
        || &s[7..11] == b"0000"
    {
        return None;
    }
    Some(d + 11)
}

/// An IBAN starting at `at` (country code): 2 letters, 2 check digits,
/// 11–30 alphanumerics, optionally in groups of four separated by single
/// spaces; valid when the ISO 7064 mod-97 remainder is 1.
fn iban_at(text: &[u8], at: usize) -> Option<usize> {
    if at > 0 && is_word(text[at - 1]) {
        return None;
    }
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut i = at;
    while i < text.len() && n < 34 {
        let b = text[i];
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            chars[n] = b;
            n += 1;
            i += 1;
        } else if b == b' '
            && n % 4 == 0
            && text
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            i += 1;
        } else {
            break;
        }
    }
    if i < text.len() && is_word(text[i]) {
        return None;
    }
    let iban = &chars[..n];
    if !(15..=34).contains(&n) || !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return None;
    }
    // Move the first four characters to the end, letters to 10..35.
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        } else {
            rem = (rem * 100 + (b - b'A') as u32 + 10) % 97;
        }
    }
    (rem == 1).then_some(i)
}

/// `AKIA`/`ASIA` + 16 of `A-Z2-7`… in practice upper-case alphanumerics,
/// not inside a longer word.
fn is_aws_key(text: &[u8], at: usize) -> bool {
    if at > 0 && is_word(text[at - 1]) {
        return false;
    }
    let Some(key) = text.get(at + 4..at + 20) else {
        return false;
    };
    key.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && !text.get(at + 20).is_some_and(|b| is_word(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cards_need_a_valid_luhn_checksum() {
        assert_eq!(scan(b"card 4111 1111 1111 1111 ok").credit_card, 1);
        assert_eq!(scan(b"card 4111-1111-1111-1111.").credit_card, 1);
        assert_eq!(scan(b"4111111111111111").credit_card, 1);
        assert_eq!(scan(b"amex 378282246310005").credit_card, 1);
        // One digit off: the checksum fails.
        assert_eq!(scan(b"card 4111 1111 1111 1112").credit_card, 0);
        // Mixed separators, too long, inside a word, unknown issuer.
        assert_eq!(scan(b"4111 1111-1111 1111").credit_card, 0);
        assert_eq!(scan(b"41111111111111110000").credit_card, 0);
        assert_eq!(scan(b"id4111111111111111").credit_card, 0);
        assert_eq!(scan(b"0000000000000000").credit_card, 0);
    }

    #[test]
    fn ssns_exclude_never_issued_numbers() {
        assert_eq!(scan(b"SSN: 123-45-6789.").ssn, 1);
        assert_eq!(scan(b"ssn 123 45 6789 end").ssn, 1);
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45-67890",
            "123-45 6789",
        ] {
            assert_eq!(scan(bad.as_bytes()).ssn, 0, "{bad}");
        }
    }

    #[test]
    fn ibans_need_mod_97() {
        assert_eq!(scan(b"pay to GB82 WEST 1234 5698 7654 32 now").iban, 1);
        assert_eq!(scan(b"DE89370400440532013000").iban, 1);
        assert_eq!(scan(b"pay to GB83 WEST 1234 5698 7654 32 now").iban, 0);
        assert_eq!(scan(b"XGB82WEST12345698765432").iban, 0);
    }

    #[test]
    fn aws_keys_and_private_keys() {
        let c = scan(b"key=AKIAIOSFODNN7EXAMPLE\n-----BEGIN RSA PRIVATE KEY-----\nMII");
        assert_eq!((c.aws_key, c.private_key), (1, 1));
        let c = scan(b"AKIAshort XAKIAIOSFODNN7EXAMPLE PRIVATE KEY----- alone");
        assert_eq!((c.aws_key, c.private_key), (0, 0));
    }

    fn naive_scan(text: &[u8]) -> Counts {
        let mut c = Counts::default();
        let mut i = 0;
        while let Some(d) = next_digit_scalar(text, i) {
            i = examine(text, d, &mut c);
        }
        c
    }

    proptest! {
        #[test]
        fn simd_run_starts_match_scalar(text in proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'9'), Just(b'a'), Just(b' '), any::<u8>()], 0..200)) {
            let mut slow = Vec::new();
            run_starts_scalar(&text, 0, false, |d| slow.push(d));
            for level in Level::available() {
                let mut fast = Vec::new();
                run_starts_at(level, &text, |d| fast.push(d));
                prop_assert_eq!(&fast, &slow, "{:?}", level);
            }
        }

        #[test]
        fn scan_matches_scalar_oracle(text in "([0-9 \\-A-Z]{0,8}(4111 1111 1111 1111|123-45-6789|GB82 WEST 1234 5698 7654 32)?){0,6}") {
            let t = text.as_bytes();
            let fast = scan(t);
            let slow = naive_scan(t);
            prop_assert_eq!((fast.credit_card, fast.ssn, fast.iban), (slow.credit_card, slow.ssn, slow.iban));
        }
    }
}
