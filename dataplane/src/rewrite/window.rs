//! What a rewrite decision may see and what it answers: the bounded
//! [`Window`] around a candidate, and the [`Decision`] (skip, need more
//! bytes, or an [`Edit`]).

/// Bytes before a candidate a decision may read (scheme, encoded colon
/// and encoded first slash: `https%253A%252F` is 15 bytes).
pub const LOOKBACK: usize = 24;
/// Bytes from a candidate a decision may read (a whole `<meta>` tag).
pub const LOOKAHEAD: usize = MAX_TAG + 64;
/// Longest `<meta ...>` tag examined for a Content-Security-Policy.
pub const MAX_TAG: usize = 4096;
/// What to do at a candidate.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to change here.
    Skip,
    /// The decision needs bytes that have not arrived yet.
    NeedMore,
    /// Replace `start..end` and continue scanning at `resume`.
    Edit(Edit),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Edit {
    pub start: usize,
    pub end: usize,
    pub insert: Insert,
    pub resume: usize,
}

impl Edit {
    /// The suffix appended after an app host ending at `host_end`.
    pub fn suffix_at(host_end: usize) -> Edit {
        Edit {
            start: host_end,
            end: host_end,
            insert: Insert::Suffix,
            resume: host_end,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// `.` followed by the proxy suffix (after an app host).
    Suffix,
    /// Nothing (a removed attribute).
    Nothing,
    /// Replacement text (a rewritten meta tag value).
    Bytes(Vec<u8>),
}

/// The bytes a decision may see.
pub struct Window<'a> {
    pub(crate) data: &'a [u8],
    /// First readable index (bytes before it read as "nothing").
    pub(crate) lo: usize,
    /// One past the last readable index.
    pub(crate) hi: usize,
    /// `hi` is the end of the whole body.
    at_end: bool,
    /// `hi` is the lookahead limit (not the end of the data so far).
    full: bool,
}

/// Why a forward read could not be answered.
pub(crate) enum Stop {
    NeedMore,
    Skip,
}

impl<'a> Window<'a> {
    /// The window around candidate `p` of `data`; `at_end`: `data` ends
    /// the body.
    pub fn new(data: &'a [u8], p: usize, at_end: bool) -> Window<'a> {
        let limit = p + LOOKAHEAD;
        Window {
            data,
            lo: p.saturating_sub(LOOKBACK),
            hi: data.len().min(limit),
            at_end: at_end && data.len() <= limit,
            full: data.len() >= limit,
        }
    }

    /// The byte at `i` (ahead of the candidate): `Ok(None)` at the end of
    /// the body.
    #[inline]
    pub(crate) fn at(&self, i: usize) -> Result<Option<u8>, Stop> {
        if i < self.hi {
            Ok(Some(self.data[i]))
        } else if self.at_end {
            Ok(None)
        } else if self.full {
            Err(Stop::Skip)
        } else {
            Err(Stop::NeedMore)
        }
    }

    /// The byte at `i` behind the candidate (`None` outside the window).
    #[inline]
    pub(crate) fn before(&self, i: usize) -> Option<u8> {
        (i >= self.lo && i < self.hi).then(|| self.data[i])
    }

    /// `data[end - pat.len()..end]` equals `pat` (ASCII case-insensitive),
    /// within the window.
    pub(crate) fn ends_with(&self, end: usize, pat: &[u8]) -> bool {
        end >= self.lo + pat.len()
            && end <= self.hi
            && self.data[end - pat.len()..end].eq_ignore_ascii_case(pat)
    }

    /// `data[start..]` begins with `pat` (ASCII case-insensitive).
    pub(crate) fn starts_with(&self, start: usize, pat: &[u8]) -> Result<bool, Stop> {
        for (k, want) in pat.iter().enumerate() {
            match self.at(start + k)? {
                Some(b) if b.eq_ignore_ascii_case(want) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

pub(crate) fn is_html_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}
