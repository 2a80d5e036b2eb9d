//! Where the client instrumentation goes: into an HTML document, or in
//! front of a worker's script.
//!
//! A document gets a script element first in its head, which is right
//! after the doctype. A `<script>` before `<html>` or `<head>` is placed
//! in the head by the parser (WHATWG HTML §13.2.6.4.1–3, the "before html"
//! and "before head" insertion modes), so it runs before any script of the
//! page; before the doctype it would put the page in quirks mode, so the
//! doctype (after an optional byte order mark, white space and comments)
//! is skipped first.
//!
//! A worker's script gets one statement that loads the instrumentation,
//! after its directive prologue: in front of a `"use strict"` directive
//! it would turn the directive into a plain expression and the worker's
//! code sloppy (ECMA-262 §11.2.1). A classic worker loads it with
//! `importScripts`, a module worker only with an `import` declaration
//! (`importScripts` throws there, and an `import` declaration is a syntax
//! error in a classic script); the request does not say which (Chromium
//! fetches both in `same-origin` mode), so the script's first statement
//! decides: an `import` or `export` declaration makes it a module and the
//! statement an `import`; anything else gets `importScripts` guarded by
//! `try` (a module worker starting otherwise runs without the
//! translation). When the prologue cannot be told apart within the first
//! bytes, the script is left as it is. The leak guard watches workers
//! either way.
//!
//! The rewriter's side is here too ([`Rewriter::with_injection`] and its
//! prologue): the body's first bytes are held until the point is known,
//! then joined with the tag and rewritten as one piece.

use std::cell::Cell;

use super::emit::{Copied, Emit};
use super::Rewriter;

/// What the instrumentation goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// An HTML document (a script element in its head).
    Document,
    /// A dedicated or shared worker's script.
    Worker,
}

/// Whether the script `head` is a module, from its first statement at or
/// after `at` (past white space and comments).
pub fn is_module(head: &[u8], at: usize) -> bool {
    skip_blank(head, at).is_some_and(|(first, _)| starts_as_module(&head[first..]))
}

/// Whether a script whose first statement starts with `rest` is a module:
/// an `import` declaration (not `import(…)` or `import.meta`) or an
/// `export` (ECMA-262 §16.2).
pub fn starts_as_module(rest: &[u8]) -> bool {
    let declaration = |word: &[u8]| {
        rest.starts_with(word)
            && rest.get(word.len()).is_some_and(|c| {
                matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'*' | b'"' | b'\'')
            })
    };
    declaration(b"import") || declaration(b"export")
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether `bytes`, all there is so far, are a proper prefix of `whole`:
/// the split fell inside it, and what follows decides.
fn cut_short(bytes: &[u8], whole: &[u8]) -> bool {
    bytes.len() < whole.len() && whole.starts_with(bytes)
}

/// Whether `rest`, all of the script's bytes so far from its first
/// statement on, may still turn out to start an `import` or `export`
/// declaration ([`starts_as_module`] needs the word and the byte after it).
fn may_start_a_module(rest: &[u8]) -> bool {
    // The word and the byte after it: one more than the word.
    cut_short(rest, b"import_") || cut_short(rest, b"export_")
}

/// Where the injection goes, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// More bytes are needed to tell.
    Wait,
    /// At this offset of the first bytes.
    At(usize),
    /// Nowhere: the body is left as it is.
    Skip,
}

/// How far into a document the injection point is looked for; past it
/// the script goes at the start (after the byte order mark).
pub const MAX_PROLOGUE: usize = 4096;

/// The offset in `head` (the document's first bytes) where the script
/// goes, or `None` when more bytes are needed to tell; `complete`: there
/// are no more bytes.
pub fn injection_point(head: &[u8], complete: bool) -> Option<usize> {
    if !complete && cut_short(head, BOM) {
        return None;
    }
    let bom = if head.starts_with(BOM) { 3 } else { 0 };
    let mut at = bom;
    loop {
        while at < head.len() && head[at].is_ascii_whitespace() {
            at += 1;
        }
        let rest = &head[at..];
        if !complete && cut_short(rest, b"<!--") {
            return give_up(head, complete, bom);
        }
        if rest.starts_with(b"<!--") {
            match memchr::memmem::find(&rest[4..], b"-->") {
                Some(end) => {
                    at += 4 + end + 3;
                    continue;
                }
                None => return give_up(head, complete, bom),
            }
        }
        const DOCTYPE: &[u8] = b"<!doctype";
        let probe = rest.len().min(DOCTYPE.len());
        if rest[..probe].eq_ignore_ascii_case(&DOCTYPE[..probe]) {
            if rest.len() < DOCTYPE.len() {
                return give_up(head, complete, bom);
            }
            return match memchr::memchr(b'>', rest) {
                Some(end) => Some(at + end + 1),
                None => give_up(head, complete, bom),
            };
        }
        if rest.is_empty() && !complete {
            return give_up(head, complete, bom);
        }
        return Some(at);
    }
}

/// More bytes are needed; unless there are none, or enough were seen.
fn give_up(head: &[u8], complete: bool, bom: usize) -> Option<usize> {
    (complete || head.len() >= MAX_PROLOGUE).then_some(bom)
}

/// Where the statement goes in a script starting with `head`: after a
/// byte order mark, a hashbang line (ECMA-262 §12.5), and the directive
/// prologue (§11.2.1: string literal statements), white space and
/// comments between them kept before it.
pub fn script_injection_point(head: &[u8], complete: bool) -> Point {
    if !complete && cut_short(head, BOM) {
        return Point::Wait;
    }
    let mut at = if head.starts_with(BOM) { 3 } else { 0 };
    if !complete && cut_short(&head[at..], b"#!") {
        return wait_or_skip(head, complete);
    }
    if head[at..].starts_with(b"#!") {
        match memchr::memchr2(b'\n', b'\r', &head[at..]) {
            // The statement goes on the next line, not into the comment.
            Some(end) => at += end + 1,
            None => return wait_or_skip(head, complete),
        }
    }
    // The end of the last directive (or of the hashbang) so far.
    let mut point = at;
    loop {
        at = match skip_blank(head, at) {
            Some((next, _)) => next,
            None => return wait_or_skip(head, complete),
        };
        let quote = match head.get(at) {
            Some(q @ (b'"' | b'\'')) => *q,
            // `impor…` at the end of the bytes so far: whether the script
            // is a module ([`is_module`]) is not known yet.
            Some(_) if !complete && may_start_a_module(&head[at..]) => {
                return wait_or_skip(head, complete)
            }
            Some(_) => return Point::At(point),
            None if complete => return Point::At(point),
            None => return wait_or_skip(head, complete),
        };
        let Some(end) = string_end(head, at, quote) else {
            return wait_or_skip(head, complete);
        };
        // A directive is a string literal alone in its statement: ended by
        // `;`, or by a line break (automatic semicolon insertion, §12.10)
        // before a token that cannot continue the expression.
        let Some((after, line_break)) = skip_blank(head, end) else {
            return wait_or_skip(head, complete);
        };
        match head.get(after) {
            Some(b';') => point = after + 1,
            None if complete => return Point::At(end),
            None => return wait_or_skip(head, complete),
            Some(c) if line_break && !continues_expression(*c, &head[after..]) => point = end,
            // `"a" + b`, `"a".length`, `"a" in o`: an expression, not a
            // directive; the prologue ended before it.
            Some(_) => return Point::At(point),
        }
        at = point.max(end);
    }
}

/// Skips white space and comments from `at`; the offset reached and
/// whether a line break was crossed, or `None` inside an unfinished
/// comment.
fn skip_blank(head: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut line_break = false;
    loop {
        match head.get(at) {
            Some(b'\n' | b'\r') => {
                line_break = true;
                at += 1;
            }
            Some(b' ' | b'\t' | b'\x0b' | b'\x0c') => at += 1,
            Some(b'/') if head.get(at + 1) == Some(&b'/') => {
                let end = memchr::memchr2(b'\n', b'\r', &head[at..])?;
                at += end;
            }
            Some(b'/') if head.get(at + 1) == Some(&b'*') => {
                let end = memchr::memmem::find(&head[at + 2..], b"*/")?;
                line_break |= memchr::memchr2(b'\n', b'\r', &head[at + 2..at + 2 + end]).is_some();
                at += 2 + end + 2;
            }
            Some(b'/') if at + 1 == head.len() => return None,
            _ => return Some((at, line_break)),
        }
    }
}

/// The offset after the string literal opened by `quote` at `at`.
fn string_end(head: &[u8], at: usize, quote: u8) -> Option<usize> {
    let mut i = at + 1;
    while i < head.len() {
        match head[i] {
            b'\\' => i += 2,
            b'\n' | b'\r' => return None,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Whether a token starting with `c` (`rest`) continues the expression a
/// string literal began on the line before: then there is no automatic
/// semicolon and the literal is no directive.
fn continues_expression(c: u8, rest: &[u8]) -> bool {
    let word = |w: &[u8]| {
        rest.starts_with(w)
            && !rest
                .get(w.len())
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$')
    };
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'('
            | b'['
            | b'.'
            | b','
            | b'?'
            | b'='
            | b'<'
            | b'>'
            | b'&'
            | b'|'
            | b'^'
            | b'`'
    ) || word(b"in")
        || word(b"instanceof")
}

/// Not enough bytes: wait for more, unless there are none or enough were
/// seen (then the script is left alone).
fn wait_or_skip(head: &[u8], complete: bool) -> Point {
    if complete || head.len() >= MAX_PROLOGUE {
        Point::Skip
    } else {
        Point::Wait
    }
}

/// What a rewriter injects.
#[derive(Clone, Copy)]
pub(super) enum Tags<'r> {
    /// A script element, first in a document's head.
    Document(&'r [u8]),
    /// A statement in front of a worker's script: one for a classic
    /// script, one for a module ([`starts_as_module`]).
    Worker { classic: &'r [u8], module: &'r [u8] },
}

/// Where `tags` go in `body` (whose first bytes are the body's first):
/// the tag and its offset, or `None` to wait for more of the body.
fn tag_and_point<'r>(tags: Tags<'r>, body: &[u8], complete: bool) -> Option<(&'r [u8], usize)> {
    match tags {
        Tags::Document(tag) => injection_point(body, complete).map(|at| (tag, at)),
        Tags::Worker { classic, module } => match script_injection_point(body, complete) {
            Point::Wait => None,
            Point::Skip => Some((&[], 0)),
            Point::At(at) if is_module(body, at) => Some((module, at)),
            Point::At(at) => Some((classic, at)),
        },
    }
}

/// The largest body-and-tag buffer a core keeps for the next document.
const KEEP_WHOLE: usize = 64 * 1024;

thread_local! {
    /// The buffer the prologue joins the body's first bytes and the tag in,
    /// kept between documents so that injecting costs no allocation.
    static WHOLE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl<'r> Rewriter<'r> {
    /// Injects `tag` (the client instrumentation's script element) first in
    /// the document's head ([`injection_point`]).
    pub fn with_injection(mut self, tag: &'r [u8]) -> Rewriter<'r> {
        self.inject = Some((Tags::Document(tag), Vec::new()));
        self
    }

    /// Puts the statement loading the client instrumentation in front of a
    /// worker's script, after its directive prologue
    /// ([`script_injection_point`]): `classic` or `module` as the script's
    /// first statement says.
    pub fn with_worker_injection(mut self, classic: &'r [u8], module: &'r [u8]) -> Rewriter<'r> {
        self.inject = Some((Tags::Worker { classic, module }, Vec::new()));
        self
    }

    /// Holds the body's first bytes until the injection point is known,
    /// then rewrites them with the tag in place. `true`: `input` was taken.
    pub(super) fn prologue<E: Emit>(&mut self, input: &[u8], complete: bool, out: &mut E) -> bool {
        let Some((tags, held)) = self.inject.as_mut() else {
            return false;
        };
        let tags = *tags;
        // Most documents have their injection point in the first piece:
        // it is then found in the input itself, which is not held.
        let found = if held.is_empty() {
            tag_and_point(tags, input, complete)
        } else {
            held.extend_from_slice(input);
            tag_and_point(tags, held, complete)
        };
        let Some((tag, at)) = found else {
            if held.is_empty() {
                held.extend_from_slice(input);
            }
            return true;
        };
        let held = std::mem::take(held);
        self.inject = None;
        let body = if held.is_empty() { input } else { &held };
        // The tag is rewritten in place with the body (one piece: the
        // engine scans its input's tail and the carry more slowly than its
        // middle); none of it is the caller's input, so all is copied out.
        let mut whole = WHOLE.take();
        whole.clear();
        whole.reserve(body.len() + tag.len());
        whole.extend_from_slice(&body[..at]);
        whole.extend_from_slice(tag);
        whole.extend_from_slice(&body[at..]);
        self.feed_body(&whole, &mut Copied(out));
        if whole.capacity() <= KEEP_WHOLE {
            WHOLE.set(whole);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_goes_right_after_the_doctype() {
        // (document start, complete, where; None: wait for more)
        let cases: [(&[u8], bool, Option<usize>); 15] = [
            (b"<!doctype html><html>", false, Some(15)),
            // Cut inside a byte order mark or a comment's opening: the
            // bytes to come decide.
            (b"\xEF", false, None),
            (b"\xEF\xBB", false, None),
            (b"<!-", false, None),
            (b"\xEF\xBB", true, Some(0)),
            (
                b"<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0//EN\">\n<html>",
                false,
                Some(50),
            ),
            (b"\xEF\xBB\xBF<!doctype html><p>", false, Some(18)),
            (b"  \n<!-- built --><!doctype html><p>", false, Some(32)),
            (b"<html><head>", false, Some(0)),
            (b"\xEF\xBB\xBF<p>hi", false, Some(3)),
            (b"<!doc", false, None),
            (b"<!doctype html", false, None),
            (b"<!-- long", false, None),
            (b"<!-- long", true, Some(0)),
            (b"", true, Some(0)),
        ];
        for (head, complete, want) in cases {
            assert_eq!(
                injection_point(head, complete),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let long_comment = [b"<!--".as_slice(), &[b'x'; MAX_PROLOGUE]].concat();
        assert_eq!(injection_point(&long_comment, false), Some(0));
    }

    #[test]
    fn a_worker_script_gets_it_after_its_directive_prologue() {
        use Point::{At, Skip, Wait};
        // (script start, complete, where)
        let cases: [(&str, bool, Point); 29] = [
            ("fetch('/x');", false, At(0)),
            ("'use strict';\nfetch('/x');", false, At(13)),
            ("\"use strict\"; 'use asm';  x()", false, At(24)),
            ("'use strict'\nx()", false, At(12)),
            ("// built\n'use strict';\nx()", false, At(22)),
            ("/* a\n */ \"use strict\";x()", false, At(22)),
            ("#!/usr/bin/env node\n'use strict';x", false, At(33)),
            ("#!/usr/bin/env node\nx", false, At(20)),
            ("\u{feff}'use strict';x", false, At(16)),
            // Not directives: the prologue ended before them.
            ("'a' + b;", false, At(0)),
            ("'a'\n.length", false, At(0)),
            ("'a'\n+ b", false, At(0)),
            ("'use strict';\n'b'.length", false, At(13)),
            ("'a' in o", false, At(0)),
            ("'use strict'\ninstanceof X", false, At(0)),
            ("'use strict'\nin_place()", false, At(12)),
            // Wait for more, or leave it alone when there is no more.
            ("'use str", false, Wait),
            ("'use str", true, Skip),
            ("'use strict'", false, Wait),
            ("'use strict'", true, At(12)),
            ("/* long", false, Wait),
            ("", true, At(0)),
            // Cut where the next bytes decide: a hashbang's `#!` (the
            // statement must not go before it), a module's first word.
            ("#", false, Wait),
            ("'use strict';impor", false, Wait),
            ("export", false, Wait),
            ("import", true, At(0)),
            ("importer()", false, At(0)),
            ("\u{feff}#", false, Wait),
            ("ex", false, Wait),
        ];
        for (head, complete, want) in cases {
            assert_eq!(
                script_injection_point(head.as_bytes(), complete),
                want,
                "{head:?}"
            );
        }
        let long = [b"'".as_slice(), &[b'x'; MAX_PROLOGUE]].concat();
        assert_eq!(script_injection_point(&long, false), Point::Skip);
    }

    #[test]
    fn modules_are_told_by_their_first_statement() {
        for (rest, module) in [
            ("import { a } from './a.js';", true),
            ("import './a.js';", true),
            ("import * as a from './a.js';", true),
            ("import\n{a} from 'a'", true),
            ("export const a = 1;", true),
            ("export{a}", true),
            ("import('./a.js')", false),
            ("import.meta.url", false),
            ("importScripts('a.js')", false),
            ("exports.a = 1", false),
            ("fetch('/x')", false),
        ] {
            assert_eq!(starts_as_module(rest.as_bytes()), module, "{rest:?}");
        }
        assert!(is_module(
            b"/* built */\n// by a bundler\nimport a from 'a';",
            0
        ));
        assert!(!is_module(b"// a\nfetch('/x')", 0));
        assert!(!is_module(b"/* unfinished", 0));
    }
}
