//! Deciding a candidate: is there an app host in URL-authority position
//! here (in which encoding), an `integrity` attribute to drop, or a
//! `<meta http-equiv="Content-Security-Policy">` to rewrite?
//!
//! A decision reads only a bounded window around the candidate: at most
//! [`LOOKBACK`] bytes before it and [`LOOKAHEAD`] bytes from it. When the
//! window is cut short by the end of what has arrived so far, a decision
//! that needs the missing bytes says [`Decision::NeedMore`] and the
//! streaming driver retries once more input is there; a decision that
//! would read past the full window gives up ([`Decision::Skip`]). The
//! outcome therefore depends only on the bytes, never on how they were
//! split into chunks.
//!
//! The common cases skip the general machinery, and are tested to answer
//! as it does: a plain `//` with its whole reach in the data is decided by
//! [`plain_url`] without a window; every family finds its host in place
//! (`host::host_at`: two 16-byte runs, no copy) and its encoded slashes with two
//! word loads (`encoded_double_slash_by_words`), falling back to the
//! byte-wise reads near the window's edges.

use super::host::{authority_host, host_at, HOST_REACH};
use super::html::{integrity_attribute, meta_csp};
use super::window::{Decision, Edit, Stop, Window, LOOKBACK};
use crate::domains::is_host_byte;
use crate::hostmap::{HostMap, MAX_HOST_LEN};

/// The encodings of `/` an anchor may use; both slashes of `//` use the
/// same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Plain,
    JsEscaped,
    /// `\\/\\/`: JSON text inside a JS string literal, escaped twice.
    JsDoubleEscaped,
    Unicode,
    Hex,
    Percent,
    DoublePercent,
    Entity,
}

/// Encoded `/` forms per family (ASCII case-insensitive).
const ENTITY_SLASHES: [&[u8]; 3] = [b"&#x2f;", b"&#47;", b"&sol;"];

impl Family {
    /// How `:` may be written right before `//` in this family.
    fn colons(self) -> &'static [&'static [u8]] {
        match self {
            Family::Plain | Family::JsEscaped | Family::JsDoubleEscaped => &[b":"],
            Family::Unicode => &[b":", b"\\u003a"],
            Family::Hex => &[b":", b"\\x3a"],
            Family::Percent => &[b"%3a"],
            Family::DoublePercent => &[b"%253a"],
            Family::Entity => &[b":", b"&#x3a;", b"&#58;", b"&colon;"],
        }
    }
}

/// Bytes that may end a scheme-relative `//` on the left.
fn is_left_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'\x0c'
            | b'"'
            | b'\''
            | b'`'
            | b'='
            | b'('
            | b','
            | b';'
            | b'<'
            | b'>'
            | b'['
            | b'{'
    )
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// The schemes whose authority is rewritten (RFC 9110 §4.2, RFC 6455 §3).
const SCHEMES: [&[u8]; 4] = [b"http", b"https", b"ws", b"wss"];

/// Decides the candidate at `p` (a pair found by the scanner).
pub fn decide(win: &Window<'_>, p: usize, host_map: &HostMap, html: bool) -> Decision {
    let result = match (win.data[p], win.data[p + 1]) {
        (b'/' | b'f' | b'F', _) | (b';', b'&') => url_anchor(win, p, host_map),
        (b'y' | b'Y', b'=') if html => integrity_attribute(win, p),
        (b'<', _) if html => meta_csp(win, p, host_map),
        _ => Ok(Decision::Skip),
    };
    settle(result)
}

/// What [`plain_url`] says about a candidate.
pub enum Quick {
    /// An app host ends here: append the suffix.
    Suffix(usize),
    /// Nothing to change at this candidate.
    Skip,
    /// Not the common case: ask [`decide`].
    Ask,
}

/// Bytes from a plain `//` candidate the fast path may read: the slashes,
/// the longest host and the byte after it.
pub const PLAIN_REACH: usize = 2 + MAX_HOST_LEN + 3;

/// Bytes from a plain `//` candidate [`plain_url`] needs: the slashes and
/// [`HOST_REACH`]. What those do not settle (a host of 32 bytes or more
/// without [`PLAIN_REACH`], user information running on) is asked.
pub const QUICK_REACH: usize = 2 + HOST_REACH;

/// The common case of [`decide`], without building a window: a plain `//`
/// at `p` with [`LOOKBACK`] bytes before it and [`QUICK_REACH`] after it in
/// `data` (every byte the decision reads is present whatever the split),
/// after `scheme:` or a delimiter, followed by a bare host. Anything else
/// (user information, a long host near the end of `data`) is
/// [`Quick::Ask`]. Agrees with [`decide`] wherever it answers (tested below
/// and by the oracle tests).
#[inline]
pub fn plain_url(data: &[u8], p: usize, host_map: &HostMap) -> Quick {
    debug_assert!(p >= LOOKBACK && p + QUICK_REACH <= data.len());
    debug_assert!(data[p] == b'/' && data[p + 1] == b'/');
    let before = data[p - 1];
    let positioned = if before == b':' {
        scheme_word_before(data, p - 1)
    } else {
        is_left_delimiter(before)
    };
    if !positioned {
        return Quick::Skip;
    }
    host_at(data, p + 2, host_map)
}

/// A decision, with a read that could not be answered turned into one.
fn settle(result: Result<Decision, Stop>) -> Decision {
    match result {
        Ok(d) => d,
        Err(Stop::NeedMore) => Decision::NeedMore,
        Err(Stop::Skip) => Decision::Skip,
    }
}

/// Up to 8 pattern bytes matched against a word of the body, letters in
/// either case (a letter's byte with bit 5 set is its lower case; other
/// bytes compare exactly).
#[derive(Clone, Copy)]
struct WordPattern {
    value: u64,
    fold: u64,
    mask: u64,
}

impl WordPattern {
    /// `pat` at the start of a word (its low bytes).
    const fn prefix(pat: &[u8]) -> WordPattern {
        let mut p = WordPattern {
            value: 0,
            fold: 0,
            mask: 0,
        };
        let mut i = 0;
        while i < pat.len() {
            let b = pat[i];
            p.value |= (b.to_ascii_lowercase() as u64) << (8 * i);
            p.mask |= 0xff << (8 * i);
            if b.is_ascii_alphabetic() {
                p.fold |= 0x20 << (8 * i);
            }
            i += 1;
        }
        p
    }

    /// `pat` at the end of a word (its high bytes).
    const fn suffix(pat: &[u8]) -> WordPattern {
        let p = WordPattern::prefix(pat);
        let shift = 8 * (8 - pat.len() as u32);
        WordPattern {
            value: p.value << shift,
            fold: p.fold << shift,
            mask: p.mask << shift,
        }
    }

    #[inline]
    fn matches(self, word: u64) -> bool {
        (word | self.fold) & self.mask == self.value
    }
}

/// The encoded slashes, as word patterns: before the candidate pair's
/// second byte (`..._END`) and from it (`..._START`).
const BACKSLASH2_END: WordPattern = WordPattern::suffix(b"\\\\");
const BACKSLASH2_SLASH_START: WordPattern = WordPattern::prefix(b"\\\\/");
const BACKSLASH_END: WordPattern = WordPattern::suffix(b"\\");
const BACKSLASH_SLASH_START: WordPattern = WordPattern::prefix(b"\\/");
const UNICODE_END: WordPattern = WordPattern::suffix(b"\\u002f");
const UNICODE_START: WordPattern = WordPattern::prefix(b"\\u002f");
const HEX_END: WordPattern = WordPattern::suffix(b"\\x2f");
const HEX_START: WordPattern = WordPattern::prefix(b"\\x2f");
const PERCENT_END: WordPattern = WordPattern::suffix(b"%2f");
const PERCENT_START: WordPattern = WordPattern::prefix(b"%2f");
const PERCENT2_END: WordPattern = WordPattern::suffix(b"%252f");
const PERCENT2_START: WordPattern = WordPattern::prefix(b"%252f");
const ENTITY_ENDS: [(WordPattern, usize); 3] = [
    (WordPattern::suffix(b"&#x2f;"), 6),
    (WordPattern::suffix(b"&#47;"), 5),
    (WordPattern::suffix(b"&sol;"), 5),
];
const ENTITY_STARTS: [(WordPattern, usize); 3] = [
    (WordPattern::prefix(b"&#x2f;"), 6),
    (WordPattern::prefix(b"&#47;"), 5),
    (WordPattern::prefix(b"&sol;"), 5),
];

/// [`encoded_double_slash`] with two word loads, for a candidate with 8
/// window bytes before it and 9 after it; `None` otherwise (then the
/// byte-wise version answers). Same answers (tested below).
#[inline]
fn encoded_double_slash_by_words(
    win: &Window<'_>,
    p: usize,
) -> Option<Option<(Family, usize, usize)>> {
    if p < win.lo + 8 || p + 9 > win.hi {
        return None;
    }
    let d = win.data;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // Bytes `p - 7..=p` (ending with the pair's first byte) and
    // `p + 1..p + 9` (starting with its second).
    let (before, from) = (word(p - 7), word(p + 1));
    let before_first = word(p - 8);
    Some(match (d[p], d[p + 1]) {
        (b'/', b'/') => Some((Family::Plain, p, p + 2)),
        (b'/', b'\\') => {
            if BACKSLASH2_END.matches(before_first) && BACKSLASH2_SLASH_START.matches(from) {
                Some((Family::JsDoubleEscaped, p - 2, p + 4))
            } else if BACKSLASH_END.matches(before_first) && BACKSLASH_SLASH_START.matches(from) {
                Some((Family::JsEscaped, p - 1, p + 3))
            } else {
                None
            }
        }
        (b'f' | b'F', b'\\') => {
            if UNICODE_END.matches(before) && UNICODE_START.matches(from) {
                Some((Family::Unicode, p - 5, p + 7))
            } else if HEX_END.matches(before) && HEX_START.matches(from) {
                Some((Family::Hex, p - 3, p + 5))
            } else {
                None
            }
        }
        (b'f' | b'F', b'%') => {
            if PERCENT_END.matches(before) && PERCENT_START.matches(from) {
                Some((Family::Percent, p - 2, p + 4))
            } else if PERCENT2_END.matches(before) && PERCENT2_START.matches(from) {
                Some((Family::DoublePercent, p - 4, p + 6))
            } else {
                None
            }
        }
        (b';', b'&') => {
            let first = ENTITY_ENDS.iter().find(|(f, _)| f.matches(before));
            let second = ENTITY_STARTS.iter().find(|(f, _)| f.matches(from));
            match (first, second) {
                (Some((_, f)), Some((_, s))) => Some((Family::Entity, p + 1 - f, p + 1 + s)),
                _ => None,
            }
        }
        _ => None,
    })
}

/// Finds the encoded `//` the pair at `p` belongs to: (family, start of
/// the first slash, start of the authority).
fn encoded_double_slash(
    win: &Window<'_>,
    p: usize,
) -> Result<Option<(Family, usize, usize)>, Stop> {
    let d = win.data;
    // Only letters are folded: `| 0x20` would also turn 0x0F into `/`
    // and 0x1B into `;`.
    let a = match d[p] {
        b'F' => b'f',
        other => other,
    };
    let b = d[p + 1];
    Ok(match (a, b) {
        (b'/', b'/') => Some((Family::Plain, p, p + 2)),
        (b'/', b'\\') => {
            if win.ends_with(p, b"\\\\") && win.starts_with(p + 1, b"\\\\/")? {
                Some((Family::JsDoubleEscaped, p - 2, p + 4))
            } else if win.before(p.wrapping_sub(1)) == Some(b'\\')
                && win.starts_with(p + 1, b"\\/")?
            {
                Some((Family::JsEscaped, p - 1, p + 3))
            } else {
                None
            }
        }
        (b'f', b'\\') => {
            if win.ends_with(p + 1, b"\\u002f") && win.starts_with(p + 1, b"\\u002f")? {
                Some((Family::Unicode, p - 5, p + 7))
            } else if win.ends_with(p + 1, b"\\x2f") && win.starts_with(p + 1, b"\\x2f")? {
                Some((Family::Hex, p - 3, p + 5))
            } else {
                None
            }
        }
        (b'f', b'%') => {
            if win.ends_with(p + 1, b"%2f") && win.starts_with(p + 1, b"%2f")? {
                Some((Family::Percent, p - 2, p + 4))
            } else if win.ends_with(p + 1, b"%252f") && win.starts_with(p + 1, b"%252f")? {
                Some((Family::DoublePercent, p - 4, p + 6))
            } else {
                None
            }
        }
        (b';', b'&') => {
            let first = ENTITY_SLASHES.iter().find(|f| win.ends_with(p + 1, f));
            let mut second = None;
            if first.is_some() {
                for f in ENTITY_SLASHES {
                    if win.starts_with(p + 1, f)? {
                        second = Some(f);
                        break;
                    }
                }
            }
            match (first, second) {
                (Some(f), Some(s)) => Some((Family::Entity, p + 1 - f.len(), p + 1 + s.len())),
                _ => None,
            }
        }
        _ => None,
    })
}

/// One of [`SCHEMES`] ends at `end`, standing alone (not the tail of a
/// longer scheme). One 8-byte load in the common case.
#[inline]
fn scheme_before(win: &Window<'_>, end: usize) -> bool {
    if end < win.lo + 8 || end > win.hi {
        let mut s = end;
        while win.before(s.wrapping_sub(1)).is_some_and(is_scheme_byte) {
            s -= 1;
        }
        let scheme = &win.data[s..end];
        return SCHEMES.iter().any(|k| scheme.eq_ignore_ascii_case(k));
    }
    scheme_word_before(win.data, end)
}

/// [`scheme_before`] with the 8 bytes before `end` known to be inside the
/// window: one load.
#[inline]
fn scheme_word_before(data: &[u8], end: usize) -> bool {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[end - 8..end]);
    let word = u64::from_be_bytes(w);
    // Letters folded to lower case (other bytes are checked unfolded).
    let folded = word | 0x2020_2020_2020_2020;
    let standalone = |len: usize| !is_scheme_byte(w[7 - len]);
    let tail = |len: usize| folded & (u64::MAX >> (64 - 8 * len));
    let is = |len: usize, name: &[u8]| {
        let mut v = 0u64;
        for &b in name {
            v = (v << 8) | u64::from(b);
        }
        tail(len) == v && standalone(len)
    };
    is(5, b"https") || is(4, b"http") || is(3, b"wss") || is(2, b"ws")
}

/// True when the `//` starting at `start` opens an authority: after one of
/// [`SCHEMES`] and a colon in the same encoding, or standing alone after a
/// delimiter (scheme-relative, RFC 3986 §4.2).
fn authority_position(win: &Window<'_>, family: Family, start: usize) -> bool {
    if family == Family::Plain && win.before(start.wrapping_sub(1)) == Some(b':') {
        return scheme_before(win, start - 1);
    }
    for colon in family.colons() {
        if win.ends_with(start, colon) {
            return scheme_before(win, start - colon.len());
        }
    }
    match win.before(start.wrapping_sub(1)) {
        None => start == 0,
        Some(b) => is_left_delimiter(b),
    }
}

fn url_anchor(win: &Window<'_>, p: usize, host_map: &HostMap) -> Result<Decision, Stop> {
    let found = match encoded_double_slash_by_words(win, p) {
        Some(found) => found,
        None => encoded_double_slash(win, p)?,
    };
    let Some((family, start, authority)) = found else {
        return Ok(Decision::Skip);
    };
    if !authority_position(win, family, start) {
        return Ok(Decision::Skip);
    }
    // The in-place path answers all but user information, trailing dots
    // and what the window's bytes do not settle; those take the general
    // read (the definition).
    if authority + HOST_REACH <= win.hi {
        match host_at(&win.data[..win.hi], authority, host_map) {
            Quick::Suffix(host_end) => return Ok(Decision::Edit(Edit::suffix_at(host_end))),
            Quick::Skip => return Ok(Decision::Skip),
            Quick::Ask => {}
        }
    }
    match authority_host(win, authority)? {
        Some((start, end))
            if end > start
                && win.data[start] != b'.'
                && host_map.app_for_host(&win.data[start..end]).is_some() =>
        {
            Ok(Decision::Edit(Edit::suffix_at(end)))
        }
        _ => Ok(Decision::Skip),
    }
}

/// A bare host right after one of the app's context patterns (which ends
/// at `host_start`): rewritten when it is an app host.
pub fn decide_bare_host(win: &Window<'_>, host_start: usize, host_map: &HostMap) -> Decision {
    let result = (|| {
        let mut end = host_start;
        let after = loop {
            match win.at(end)? {
                Some(b) if is_host_byte(b) && end - host_start <= MAX_HOST_LEN => end += 1,
                other => break other,
            }
        };
        if after.is_some_and(is_host_byte) || after == Some(b'@') {
            return Ok(Decision::Skip);
        }
        let mut host_end = end;
        while host_end > host_start && win.data[host_end - 1] == b'.' {
            host_end -= 1;
        }
        let host = &win.data[host_start..host_end];
        if host.is_empty() || host[0] == b'.' || host_map.app_for_host(host).is_none() {
            return Ok(Decision::Skip);
        }
        Ok(Decision::Edit(Edit::suffix_at(host_end)))
    })();
    settle(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::scan;
    use crate::rewrite::window::Insert;
    use proptest::prelude::*;

    proptest! {
        /// The plain `//` fast path answers as `decide` does wherever it
        /// answers at all.
        #[test]
        fn the_plain_fast_path_agrees_with_decide(
            before in "[a-zA-Z:= \"./@]{24,32}",
            host in prop_oneof![
                "[a-zA-Z0-9.@:_-]{0,40}",
                "([a-z]{1,12}[.@])?(demo|Demo|xdemo|demo-cdn)\\.(test|TEST|testing)\\.?",
                "[a-z]{10,20}\\.[a-z]{10,20}\\.demo\\.test",
            ],
            after in "[ /\"?#:@.a-z]{0,4}",
            cut in any::<prop::sample::Index>(),
        ) {
            let routes = crate::fuzz::fuzz_routes();
            let mut doc = before.into_bytes();
            let p = doc.len();
            doc.extend_from_slice(b"//");
            doc.extend_from_slice(host.as_bytes());
            doc.extend_from_slice(after.as_bytes());
            doc.resize(p + PLAIN_REACH + 1 + after.len(), b' ');
            let want = decide(&Window::new(&doc, p, false), p, &routes.hosts, true);
            // The fast path sees the body up to anywhere from its reach on.
            let shortest = p + QUICK_REACH;
            let seen = &doc[..shortest + cut.index(doc.len() - shortest + 1)];
            match plain_url(seen, p, &routes.hosts) {
                Quick::Suffix(end) => prop_assert_eq!(
                    want,
                    Decision::Edit(Edit { start: end, end, insert: Insert::Suffix, resume: end })
                ),
                Quick::Skip => prop_assert_eq!(want, Decision::Skip),
                Quick::Ask => {}
            }
        }

        /// User information longer than the fast path's reach: wherever
        /// the bytes end, the fast path asks or agrees with the whole read
        /// (`demo.test:…@` is user information, not the host).
        #[test]
        fn the_fast_path_never_takes_cut_user_information_for_a_host(
            run in "[a-z0-9:%]{30,120}",
            host in prop_oneof![Just("evil.net"), Just("demo.test")],
        ) {
            let routes = crate::fuzz::fuzz_routes();
            let doc = format!("<p>a paragraph first</p><a href=\"https://demo.test:{run}@{host}/x\">{}", " ".repeat(PLAIN_REACH));
            let doc = doc.as_bytes();
            let p = doc.windows(2).position(|w| w == b"//").expect("slashes");
            let want = decide(&Window::new(doc, p, false), p, &routes.hosts, true);
            for cut in p + QUICK_REACH..=doc.len() {
                match plain_url(&doc[..cut], p, &routes.hosts) {
                    Quick::Ask => {}
                    Quick::Skip => prop_assert_eq!(&want, &Decision::Skip, "cut at {}", cut),
                    Quick::Suffix(end) => prop_assert_eq!(
                        &want,
                        &Decision::Edit(Edit { start: end, end, insert: Insert::Suffix, resume: end }),
                        "cut at {}", cut
                    ),
                }
            }
        }

        /// The word-wise slash finder answers as the byte-wise one.
        #[test]
        fn encoded_slashes_by_words_agree_with_the_bytewise_finder(
            parts in proptest::collection::vec(prop_oneof![
                // Whole encoded slashes, in both cases…
                Just("\\u002f"), Just("\\U002F"), Just("\\x2f"), Just("\\X2F"),
                Just("%2f"), Just("%2F"), Just("%252f"), Just("%252F"), Just("&#x2f;"),
                Just("&#X2F;"), Just("&#47;"), Just("&sol;"), Just("&SOL;"), Just("\\/"),
                Just("\\\\/"), Just("/"),
                // …and their pieces.
                Just("\\"), Just("u002"), Just("x2"), Just("f"), Just("F"), Just("%"),
                Just("25"), Just("&#x2"), Just(";"), Just("&"), Just("a"), Just(":"),
            ], 0..24),
            cut in any::<prop::sample::Index>(),
        ) {
            let doc = parts.concat().into_bytes();
            for p in 0..doc.len().saturating_sub(1) {
                if !scan::is_pair(doc[p], doc[p + 1], scan::PairSet::Urls) {
                    continue;
                }
                // Any end of the data so far, at the end of the body or not.
                let end = p + 2 + cut.index(doc.len() - p - 1);
                for at_end in [false, true] {
                    let win = Window::new(&doc[..end], p, at_end);
                    if let Some(fast) = encoded_double_slash_by_words(&win, p) {
                        let slow = encoded_double_slash(&win, p);
                        prop_assert!(matches!(slow, Ok(ref s) if *s == fast), "at {}: {:?}", p, fast);
                    }
                }
            }
        }
    }
}
