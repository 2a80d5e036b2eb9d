//! The streaming rewrite engine: keeps the user inside the proxy by
//! wrapping every app host in URL-authority position into its proxy host
//! (`https://demo.test/` → `https://demo.test.proxy.test/`), in every
//! encoding pages use, as the body streams through.
//!
//! - [`scan`] finds candidate positions with SIMD (byte pairs every anchor
//!   contains);
//! - [`anchor`] decides a candidate from a bounded window around it, and
//!   `host` finds and looks up the host of an authority in place;
//! - [`Rewriter`] (here) drives both over a body that arrives in arbitrary
//!   chunks, carrying over only the bytes an undecided candidate needs,
//!   and writes through an [`Emit`] (`emit`: copied or by reference);
//! - [`inject`] places the client instrumentation (a document's head, a
//!   worker's first statement);
//! - [`content`] says which media types are rewritten and how;
//! - [`codec`] decodes and re-encodes compressed bodies around the engine;
//! - [`unwrap`] is the reverse direction for request bodies.
//!
//! Output for any split of the input equals the output for the whole
//! input: a candidate is decided only once every byte its decision may
//! read has arrived (or the body ended), and the bytes a later candidate
//! may look back at are kept in the carry.

pub mod anchor;
pub mod codec;
pub mod consumer;
pub mod content;
pub mod contexts;
mod emit;
mod host;
mod html;
pub mod inject;
pub mod scan;
pub mod unwrap;
pub mod window;

use crate::body::{BodyFilter, FilterError, FilterOutput};
use crate::hostmap::HostMap;
pub use emit::Emit;
use scan::{Candidates, PairSet};
use window::{Decision, Insert, Window, LOOKBACK};

/// Input bytes copied next to the carry before switching to scanning the
/// new input in place: enough for every URL decision that starts in the
/// carry to complete without copying more.
const STITCH: usize = 1024;

/// The response-body rewriter for one response.
pub struct Rewriter<'r> {
    host_map: &'r HostMap,
    /// The app's bare-host context patterns, if it has any.
    contexts: Option<&'r contexts::ContextPatterns>,
    set: PairSet,
    /// Bytes kept from earlier input: context already emitted, then bytes
    /// not yet emitted.
    carry: Vec<u8>,
    /// `carry[..emitted]` was already emitted (kept as look-back context).
    emitted: usize,
    /// Scanning resumes at `carry[scanned]`.
    scanned: usize,
    /// `carry[0]` is the first byte of the body.
    at_body_start: bool,
    /// What is still to be injected, and the body's first bytes held until
    /// its place is known.
    inject: Option<(inject::Tags<'r>, Vec<u8>)>,
}

/// The largest carry buffer a core keeps for its next rewriter.
const KEEP_CARRY: usize = 16 * 1024;

thread_local! {
    /// A carry buffer given back by a finished rewriter: nearly every body
    /// leaves bytes in the carry at its end, and a response per request
    /// should not cost an allocation for them.
    static SPARE_CARRY: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for Rewriter<'_> {
    fn drop(&mut self) {
        if self.carry.capacity() <= KEEP_CARRY {
            let mut carry = std::mem::take(&mut self.carry);
            carry.clear();
            SPARE_CARRY.set(carry);
        }
    }
}

/// Where one pass over a buffer got to.
struct Progress {
    emitted: usize,
    scanned: usize,
}

impl<'r> Rewriter<'r> {
    /// A rewriter for HTML (`html`: also drops `integrity` attributes and
    /// rewrites meta Content-Security-Policy) or other text.
    pub fn new(host_map: &'r HostMap, html: bool) -> Rewriter<'r> {
        Rewriter {
            host_map,
            contexts: None,
            set: if html { PairSet::Html } else { PairSet::Urls },
            carry: SPARE_CARRY.take(),
            emitted: 0,
            scanned: 0,
            at_body_start: true,
            inject: None,
        }
    }

    /// Also rewrites bare app hosts right after these patterns.
    pub fn with_contexts(
        mut self,
        contexts: Option<&'r contexts::ContextPatterns>,
    ) -> Rewriter<'r> {
        self.contexts = contexts;
        self
    }

    /// Rewrites the next piece of the body, appending output to `out`
    /// (a `Vec<u8>`, or a [`FilterOutput`] that refers to unchanged spans
    /// of `input` instead of copying them).
    pub fn feed<E: Emit>(&mut self, input: &[u8], out: &mut E) {
        if input.is_empty() || self.prologue(input, false, out) {
            return;
        }
        self.feed_body(input, out);
    }

    /// [`Rewriter::feed`] after the prologue.
    fn feed_body<E: Emit>(&mut self, input: &[u8], out: &mut E) {
        if input.is_empty() {
            return;
        }
        if self.carry.is_empty() && self.at_body_start {
            // The body's first piece: nothing to stitch to, so it is
            // scanned in place from its first byte.
            let pass = Pass {
                data: input,
                data_is_input: true,
                at_body_start: true,
                emit_from: 0,
                scan_from: 0,
                at_end: false,
            };
            let p = run(self.engine(), pass, out);
            self.at_body_start = carry_start(&p) == 0;
            self.carry_from(input, p);
            return;
        }
        let old = self.carry.len();
        let take = input.len().min(STITCH);
        self.carry.extend_from_slice(&input[..take]);
        let progress = self.pass_over_carry(false, out);
        if take == input.len() {
            self.keep_carry(progress);
            return;
        }
        // Continue in place in `input` if everything before the end of the
        // stitched part is decided and enough look-back lies inside it.
        if progress.scanned >= old + LOOKBACK && progress.emitted >= old {
            let (scan_from, emit_from) = (progress.scanned - old, progress.emitted - old);
            self.carry.clear();
            let pass = Pass {
                data: input,
                data_is_input: true,
                at_body_start: false,
                emit_from,
                scan_from,
                at_end: false,
            };
            let p = run(self.engine(), pass, out);
            self.at_body_start = false;
            self.carry_from(input, p);
        } else {
            // A candidate in the carry needs more than the stitched bytes
            // (a long meta tag): copy the rest and decide again.
            self.carry.extend_from_slice(&input[take..]);
            self.emitted = progress.emitted;
            self.scanned = progress.scanned;
            let progress = self.pass_over_carry(false, out);
            self.keep_carry(progress);
        }
    }

    /// End of body: decides what was held back and emits the rest.
    pub fn finish<E: Emit>(&mut self, out: &mut E) {
        self.prologue(&[], true, out);
        let progress = self.pass_over_carry(true, out);
        debug_assert_eq!(progress.emitted, self.carry.len());
        self.carry.clear();
        self.emitted = 0;
        self.scanned = 0;
    }

    fn pass_over_carry<E: Emit>(&mut self, at_end: bool, out: &mut E) -> Progress {
        let pass = Pass {
            data: &self.carry,
            data_is_input: false,
            at_body_start: self.at_body_start,
            emit_from: self.emitted,
            scan_from: self.scanned,
            at_end,
        };
        run(self.engine(), pass, out)
    }

    fn engine(&self) -> Engine<'r> {
        Engine {
            host_map: self.host_map,
            contexts: self.contexts,
            set: self.set,
        }
    }

    /// Drops the carry's prefix that is neither pending nor look-back.
    fn keep_carry(&mut self, p: Progress) {
        let start = carry_start(&p);
        self.carry.drain(..start);
        if start > 0 {
            self.at_body_start = false;
        }
        self.emitted = p.emitted - start;
        self.scanned = p.scanned - start;
    }

    fn carry_from(&mut self, input: &[u8], p: Progress) {
        let start = carry_start(&p);
        self.carry.extend_from_slice(&input[start..]);
        self.emitted = p.emitted - start;
        self.scanned = p.scanned - start;
    }
}

fn carry_start(p: &Progress) -> usize {
    p.emitted.min(p.scanned.saturating_sub(LOOKBACK))
}

/// What a pass decides with: the host map, the app's bare-host context
/// patterns and the candidate pair set of the body's kind.
#[derive(Clone, Copy)]
struct Engine<'r> {
    host_map: &'r HostMap,
    contexts: Option<&'r contexts::ContextPatterns>,
    set: PairSet,
}

/// One pass's input and where it starts.
struct Pass<'d> {
    data: &'d [u8],
    /// `data` is the caller's input (not the carry).
    data_is_input: bool,
    at_body_start: bool,
    emit_from: usize,
    scan_from: usize,
    /// `data` ends the body.
    at_end: bool,
}

/// One pass over `data`: decides candidates from `scan_from`, emits from
/// `emit_from`. Without `at_end`, stops at the first candidate that needs
/// more input and emits only up to [`LOOKBACK`] bytes before the scan
/// position (a later edit may start that far back).
fn run<E: Emit>(engine: Engine<'_>, pass: Pass<'_>, out: &mut E) -> Progress {
    let Engine {
        host_map,
        contexts,
        set,
    } = engine;
    let Pass {
        data,
        data_is_input,
        at_body_start,
        emit_from,
        scan_from,
        at_end,
    } = pass;
    debug_assert!(at_body_start || scan_from >= LOOKBACK || data.is_empty());
    let html = set == PairSet::Html;
    let mut emitted = emit_from;
    let mut candidates = Candidates::new(data, scan_from, set);
    // Context patterns can only be trusted where a whole pattern fits:
    // candidates from `horizon` on wait for more input.
    let horizon = match contexts {
        Some(c) if !at_end => data.len().saturating_sub(c.max_len - 1),
        _ => usize::MAX,
    };
    let ctx_limit = horizon.min(data.len());
    let mut next_context = contexts.and_then(|c| c.find(data, scan_from, ctx_limit));
    let mut next_pair = candidates.next();
    let mut stopped_at = None;
    let mut resume = scan_from;
    loop {
        let (p, context_end) = match (next_pair, next_context) {
            (None, None) => break,
            (Some(a), Some((s, e))) if s < a => (s, Some(e)),
            (Some(a), _) => (a, None),
            (None, Some((s, e))) => (s, Some(e)),
        };
        if p >= horizon {
            stopped_at = Some(horizon.max(resume).max(scan_from));
            break;
        }
        if context_end.is_none()
            && p >= LOOKBACK
            && p + anchor::QUICK_REACH <= data.len()
            && data[p] == b'/'
            && data[p + 1] == b'/'
        {
            // The common anchor, decided and applied without a window or
            // a `Decision`.
            match anchor::plain_url(data, p, host_map) {
                anchor::Quick::Suffix(host_end) if host_end >= emitted => {
                    out.span_then(
                        data,
                        emitted..host_end,
                        data_is_input,
                        host_map.dotted_suffix(),
                    );
                    emitted = host_end;
                    resume = host_end;
                    candidates.skip_to(resume);
                    next_pair = candidates.next();
                    if next_context.is_some_and(|(s, _)| s < resume) {
                        next_context = contexts.and_then(|c| c.find(data, resume, ctx_limit));
                    }
                    continue;
                }
                anchor::Quick::Suffix(_) | anchor::Quick::Skip => {
                    next_pair = candidates.next();
                    continue;
                }
                anchor::Quick::Ask => {}
            }
        }
        let window = Window::new(data, p, at_end);
        let decision = match context_end {
            None => anchor::decide(&window, p, host_map, html),
            Some(end) => anchor::decide_bare_host(&window, end, host_map),
        };
        // Advance the source of this candidate.
        match context_end {
            None => next_pair = candidates.next(),
            Some(_) => next_context = contexts.and_then(|c| c.find(data, p + 1, ctx_limit)),
        }
        match decision {
            Decision::Skip => {}
            Decision::NeedMore => {
                stopped_at = Some(p);
                break;
            }
            Decision::Edit(edit) => {
                if edit.start < emitted {
                    // Overlaps an earlier edit: the earlier one wins.
                    continue;
                }
                out.span(data, emitted..edit.start, data_is_input);
                match edit.insert {
                    Insert::Suffix => out.bytes(host_map.dotted_suffix()),
                    Insert::Nothing => {}
                    Insert::Bytes(b) => out.bytes(&b),
                }
                emitted = edit.end;
                resume = edit.resume;
                candidates.skip_to(resume);
                if next_pair.is_some_and(|a| a < resume) {
                    next_pair = candidates.next();
                }
                if next_context.is_some_and(|(s, _)| s < resume) {
                    next_context = contexts.and_then(|c| c.find(data, resume, ctx_limit));
                }
            }
        }
    }
    let scanned = match stopped_at {
        Some(p) => p,
        None if at_end => data.len(),
        // The last byte may pair with the next input's first, and a
        // context pattern may start within `horizon..`.
        None => data
            .len()
            .saturating_sub(1)
            .min(horizon)
            .max(resume)
            .max(scan_from),
    };
    let flush_to = if at_end {
        data.len()
    } else {
        scanned.saturating_sub(LOOKBACK)
    };
    if flush_to > emitted {
        out.span(data, emitted..flush_to, data_is_input);
        emitted = flush_to;
    }
    Progress { emitted, scanned }
}

impl BodyFilter for Rewriter<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        Rewriter::feed(self, input, out);
        Ok(())
    }

    fn feed_pieces(&mut self, input: &[u8], out: &mut FilterOutput) -> Result<(), FilterError> {
        Rewriter::feed(self, input, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        Rewriter::finish(self, out);
        Ok(())
    }
}

/// Rewrites a whole body at once (tests, benchmarks, small documents).
pub fn rewrite_all(host_map: &HostMap, html: bool, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut r = Rewriter::new(host_map, html);
    r.feed(body, &mut out);
    r.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::fuzz_routes;

    fn rw(html: bool, s: &str) -> String {
        String::from_utf8(rewrite_all(&fuzz_routes().hosts, html, s.as_bytes())).unwrap()
    }

    #[test]
    fn control_bytes_are_not_letter_folded_into_anchors() {
        // `| 0x20` maps 0x0F to `/`, 0x1B to `;` and 0x1C to `<`: none of
        // them may open an anchor.
        for text in [
            " \x0f/demo.test",
            " \\\x0f\\/demo.test",
            "https:&#x2F\x1b&#x2F;demo.test",
            "\x1cmeta http-equiv=\"Content-Security-Policy\" content=\"img-src demo.test\">",
        ] {
            assert_eq!(rw(true, text), text);
        }
        assert_eq!(rw(true, " //demo.test"), " //demo.test.proxy.test");
    }

    #[test]
    fn every_encoding_is_rewritten() {
        let cases = [
            ("https://demo.test/", "https://demo.test.proxy.test/"),
            (
                "x=\"//cdn.demo-cdn.test/a.js\"",
                "x=\"//cdn.demo-cdn.test.proxy.test/a.js\"",
            ),
            ("wss://demo.test", "wss://demo.test.proxy.test"),
            (
                "\"https:\\/\\/demo.test\\/x\"",
                "\"https:\\/\\/demo.test.proxy.test\\/x\"",
            ),
            // JSON text inside a JS string literal (`JSON.parse("…")`):
            // the slashes are escaped twice.
            (
                "JSON.parse(\"{\\\"u\\\":\\\"https:\\\\/\\\\/demo.test\\\\/x\\\"}\")",
                "JSON.parse(\"{\\\"u\\\":\\\"https:\\\\/\\\\/demo.test.proxy.test\\\\/x\\\"}\")",
            ),
            (
                "'https:\\u002F\\u002Fdemo.test'",
                "'https:\\u002F\\u002Fdemo.test.proxy.test'",
            ),
            (
                "'http\\x3a\\x2f\\x2fdemo.test'",
                "'http\\x3a\\x2f\\x2fdemo.test.proxy.test'",
            ),
            (
                "?r=https%3A%2F%2Fdemo.test%2F",
                "?r=https%3A%2F%2Fdemo.test.proxy.test%2F",
            ),
            (
                "?r=https%253a%252f%252fdemo.test",
                "?r=https%253a%252f%252fdemo.test.proxy.test",
            ),
            (
                "https:&#x2F;&#x2F;demo.test",
                "https:&#x2F;&#x2F;demo.test.proxy.test",
            ),
            (
                "https:&#47;&#47;demo.test",
                "https:&#47;&#47;demo.test.proxy.test",
            ),
            (
                "https&colon;&sol;&sol;demo.test",
                "https&colon;&sol;&sol;demo.test.proxy.test",
            ),
            (
                "https://u@Demo.Test:8443/",
                "https://u@Demo.Test.proxy.test:8443/",
            ),
            (
                "see https://demo.test.",
                "see https://demo.test.proxy.test.",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(rw(false, input), want, "{input}");
        }
    }

    #[test]
    fn near_misses_and_bare_hosts_are_left_alone() {
        for input in [
            "https://notdemo.test/",
            "https://demo.test.evil.net/",
            "https://demo.testing/",
            "https://demo.test.proxy.test/",
            "ftp://demo.test/",
            "mail me at ops@demo.test or visit demo.test",
            "a//demo.test",
            "https://[::1]/",
        ] {
            assert_eq!(rw(false, input), input);
        }
    }

    #[test]
    fn html_drops_integrity_and_rewrites_meta_csp() {
        assert_eq!(
            rw(true, "<script src=\"https://demo.test/a.js\" integrity=\"sha384-x\" crossorigin></script>"),
            "<script src=\"https://demo.test.proxy.test/a.js\" crossorigin></script>"
        );
        assert_eq!(
            rw(true, "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self' demo.test *.demo-cdn.test https://demo.test\">"),
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self' demo.test.proxy.test *.demo-cdn.test.proxy.test https://demo.test.proxy.test\">"
        );
        // Not HTML: attributes are text.
        assert_eq!(rw(false, "a integrity=\"x\""), "a integrity=\"x\"");
    }
}
