//! Where the client instrumentation goes into an HTML document: first in
//! its head, which is right after the doctype. A `<script>` before
//! `<html>` or `<head>` is placed in the head by the parser (WHATWG HTML
//! §13.2.6.4.1–3, the "before html" and "before head" insertion modes), so
//! it runs before any script of the page; before the doctype it would put
//! the page in quirks mode, so the doctype (after an optional byte order
//! mark, white space and comments) is skipped first.

/// How far into a document the injection point is looked for; past it
/// the script goes at the start (after the byte order mark).
pub const MAX_PROLOGUE: usize = 4096;

/// The offset in `head` (the document's first bytes) where the script
/// goes, or `None` when more bytes are needed to tell; `complete`: there
/// are no more bytes.
pub fn injection_point(head: &[u8], complete: bool) -> Option<usize> {
    let bom = if head.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut at = bom;
    loop {
        while at < head.len() && head[at].is_ascii_whitespace() {
            at += 1;
        }
        let rest = &head[at..];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_goes_right_after_the_doctype() {
        // (document start, complete, where; None: wait for more)
        let cases: [(&[u8], bool, Option<usize>); 11] = [
            (b"<!doctype html><html>", false, Some(15)),
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
}
