//! The HTML-only decisions of the rewrite engine: a Subresource Integrity
//! attribute dropped from a tag whose resource is rewritten, and the host
//! sources of a `<meta http-equiv="Content-Security-Policy">` rewritten.

use super::window::{is_html_space, Decision, Edit, Insert, Stop, Window, MAX_TAG};
use crate::hostmap::HostMap;
use crate::hosts;

/// Longest `integrity` attribute value.
const MAX_INTEGRITY: usize = 1024;

/// ` integrity="sha384-..."` inside a tag: a rewritten script or
/// stylesheet would fail its Subresource Integrity check, so the attribute
/// goes (W3C SRI §3.3).
pub(crate) fn integrity_attribute(win: &Window<'_>, p: usize) -> Result<Decision, Stop> {
    if !win.ends_with(p + 1, b"integrity") {
        return Ok(Decision::Skip);
    }
    let start = p + 1 - b" integrity".len();
    if !win.before(start).is_some_and(is_html_space) {
        return Ok(Decision::Skip);
    }
    let value = p + 2;
    let end = match win.at(value)? {
        Some(q @ (b'"' | b'\'')) => {
            let mut i = value + 1;
            loop {
                match win.at(i)? {
                    Some(b) if b == q => break i + 1,
                    Some(_) if i - value < MAX_INTEGRITY => i += 1,
                    _ => return Ok(Decision::Skip),
                }
            }
        }
        _ => {
            let mut i = value;
            loop {
                match win.at(i)? {
                    Some(b) if !is_html_space(b) && b != b'>' && i - value < MAX_INTEGRITY => {
                        i += 1
                    }
                    _ => break i,
                }
            }
        }
    };
    Ok(Decision::Edit(Edit {
        start,
        end,
        insert: Insert::Nothing,
        resume: end,
    }))
}

/// `<meta http-equiv="Content-Security-Policy" content="...">`: its host
/// sources are rewritten like the response header (CSP3 §3.3).
pub(crate) fn meta_csp(win: &Window<'_>, p: usize, host_map: &HostMap) -> Result<Decision, Stop> {
    if !win.starts_with(p + 1, b"meta")? {
        return Ok(Decision::Skip);
    }
    match win.at(p + 5)? {
        Some(b) if is_html_space(b) || b == b'/' => {}
        _ => return Ok(Decision::Skip),
    }
    let mut i = p + 5;
    let mut is_csp = false;
    let mut content = None;
    let tag_end = loop {
        if i - p > MAX_TAG {
            return Ok(Decision::Skip);
        }
        let Some(b) = win.at(i)? else {
            return Ok(Decision::Skip);
        };
        if is_html_space(b) || b == b'/' {
            i += 1;
            continue;
        }
        if b == b'>' {
            break i + 1;
        }
        let name_start = i;
        while let Some(b) = win.at(i)? {
            if is_html_space(b) || matches!(b, b'/' | b'>' | b'=') {
                break;
            }
            i += 1;
        }
        let name = &win.data[name_start..i];
        while win.at(i)?.is_some_and(is_html_space) {
            i += 1;
        }
        if win.at(i)? != Some(b'=') {
            continue;
        }
        i += 1;
        while win.at(i)?.is_some_and(is_html_space) {
            i += 1;
        }
        let (v_start, v_end) = match win.at(i)? {
            Some(q @ (b'"' | b'\'')) => {
                let s = i + 1;
                i = s;
                loop {
                    match win.at(i)? {
                        Some(b) if b == q => break,
                        Some(_) => i += 1,
                        None => return Ok(Decision::Skip),
                    }
                }
                i += 1;
                (s, i - 1)
            }
            _ => {
                let s = i;
                while let Some(b) = win.at(i)? {
                    if is_html_space(b) || b == b'>' {
                        break;
                    }
                    i += 1;
                }
                (s, i)
            }
        };
        let value = &win.data[v_start..v_end];
        if name.eq_ignore_ascii_case(b"http-equiv") {
            is_csp = value.eq_ignore_ascii_case(b"content-security-policy");
        } else if name.eq_ignore_ascii_case(b"content") {
            content = Some((v_start, v_end));
        }
    };
    let Some((c_start, c_end)) = content.filter(|_| is_csp) else {
        return Ok(Decision::Skip);
    };
    match hosts::wrap_csp(host_map, &win.data[c_start..c_end]) {
        Some(new) => Ok(Decision::Edit(Edit {
            start: c_start,
            end: c_end,
            insert: Insert::Bytes(new),
            resume: tag_end,
        })),
        None => Ok(Decision::Skip),
    }
}
