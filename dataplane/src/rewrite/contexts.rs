//! Bare-host context patterns: literal text after which an app host with
//! no scheme and no `//` is rewritten in that app's responses (policy
//! `bare_host_contexts`), compiled once per snapshot.

/// An app's bare-host context patterns, compiled.
pub struct ContextPatterns {
    finder: aho_corasick::AhoCorasick,
    /// Longest pattern (bytes).
    pub max_len: usize,
}

impl ContextPatterns {
    pub fn build(patterns: &[String]) -> Result<Option<ContextPatterns>, aho_corasick::BuildError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(patterns)?;
        Ok(Some(ContextPatterns {
            finder,
            max_len: patterns.iter().map(String::len).max().unwrap_or(1),
        }))
    }

    /// The first pattern occurrence starting in `from..limit`: (start, end).
    /// The answer depends only on the bytes and `from` (leftmost start,
    /// first-listed pattern at that start).
    pub fn find(&self, data: &[u8], from: usize, limit: usize) -> Option<(usize, usize)> {
        if from >= limit {
            return None;
        }
        let input = aho_corasick::Input::new(data).range(from..);
        self.finder
            .find(input)
            .filter(|m| m.start() < limit)
            .map(|m| (m.start(), m.end()))
    }
}
