//! Field values that name files: `Content-Disposition: attachment` and
//! its file name (RFC 6266, preferring the RFC 8187 `filename*` form), the
//! first file part of a multipart body, and a multipart boundary.

/// The file name of an `attachment` disposition (possibly empty when none
/// is given); `None` for `inline` or anything else.
pub fn attachment_name(value: &[u8]) -> Option<Vec<u8>> {
    let mut parts = value.split(|b| *b == b';');
    let kind = parts.next()?.trim_ascii();
    if !kind.eq_ignore_ascii_case(b"attachment") {
        return None;
    }
    let mut plain = None;
    for p in parts {
        let p = p.trim_ascii();
        let Some(eq) = p.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (name, v) = (p[..eq].trim_ascii(), p[eq + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"filename*") {
            // charset'language'percent-encoded (RFC 8187 §3.2.1).
            let mut fields = v.splitn(3, |b| *b == b'\'');
            let (_, _, encoded) = (fields.next(), fields.next(), fields.next());
            if let Some(encoded) = encoded {
                return Some(percent_decode(encoded));
            }
        } else if name.eq_ignore_ascii_case(b"filename") {
            plain = Some(unquote(v));
        }
    }
    Some(plain.unwrap_or_default())
}

fn unquote(v: &[u8]) -> Vec<u8> {
    match v {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if b == b'\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(b);
            }
            out
        }
        _ => v.to_vec(),
    }
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// The `boundary` parameter of a multipart Content-Type value.
pub fn multipart_boundary(content_type: &[u8]) -> Option<&[u8]> {
    let mut parts = content_type.split(|b| *b == b';');
    if !parts
        .next()?
        .trim_ascii()
        .eq_ignore_ascii_case(b"multipart/form-data")
    {
        return None;
    }
    for p in parts {
        let p = p.trim_ascii();
        if p.len() > 9 && p[..9].eq_ignore_ascii_case(b"boundary=") {
            let v = &p[9..];
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            return (!v.is_empty() && v.len() <= 70).then_some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::attachment_name;

    #[test]
    fn names_of_attachments() {
        let name = |v: &str| attachment_name(v.as_bytes()).map(|n| String::from_utf8(n).unwrap());
        assert_eq!(
            name("attachment; filename=\"a b.pdf\"").as_deref(),
            Some("a b.pdf")
        );
        assert_eq!(name("ATTACHMENT;filename=r.csv").as_deref(), Some("r.csv"));
        assert_eq!(
            name("attachment; filename=\"x.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt")
                .as_deref(),
            Some("€ rates.txt")
        );
        assert_eq!(name("attachment").as_deref(), Some(""));
        assert_eq!(name("inline; filename=\"a.pdf\""), None);
        assert_eq!(
            name("attachment; filename=\"q\\\"uote\"").as_deref(),
            Some("q\"uote")
        );
        assert_eq!(
            name("attachment; filename*=UTF-8''50%").as_deref(),
            Some("50%")
        );
    }
}

/// The file name of the first file part of a multipart body, if its part
/// header is within `buffered` (RFC 7578 §4.2: `filename` parameter).
pub fn multipart_file_name(buffered: &[u8]) -> Option<Vec<u8>> {
    let finder = memchr::memmem::Finder::new(b"filename=");
    let at = finder.find(buffered)?;
    // The parameter must belong to a part header: the line starts with
    // Content-Disposition.
    let line_start = memchr::memrchr(b'\n', &buffered[..at]).map_or(0, |i| i + 1);
    let line = &buffered[line_start..];
    let line = &line[..memchr::memchr(b'\r', line).unwrap_or(line.len())];
    if !line
        .get(..20)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"content-disposition:"))
    {
        return None;
    }
    let value = &line[20..];
    let mut with_kind = b"attachment".to_vec();
    // Reuse the parameter parser by presenting the part's parameters as an
    // attachment disposition.
    if let Some(semi) = memchr::memchr(b';', value) {
        with_kind.extend_from_slice(&value[semi..]);
    }
    attachment_name(&with_kind).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod multipart_tests {
    #[test]
    fn first_file_part_is_named() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"r.pdf\"\r\n\r\n%PDF";
        assert_eq!(
            super::multipart_file_name(body).as_deref(),
            Some(&b"r.pdf"[..])
        );
        assert_eq!(
            super::multipart_file_name(b"--b\r\nX: filename=\"no\"\r\n"),
            None
        );
    }
}
