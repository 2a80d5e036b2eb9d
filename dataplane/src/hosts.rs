//! Host rewriting inside header values: wrapping app hosts into proxy hosts
//! toward the user (`demo.test` → `demo.test.proxy.test`) and unwrapping
//! proxy hosts toward the app.
//!
//! These work on header-sized text; the streaming body rewriter (a body
//! filter) is a separate engine. Functions return `None` when nothing
//! changes so the caller can copy the original bytes.

use crate::domains::is_host_byte;
use crate::hostmap::{HostMap, MAX_HOST_LEN};

/// Appends `.suffix` to every app host in URL-authority position in
/// `value` (after `scheme://` or a leading/delimited `//`), keeping user
/// info and port. Used for Location, Content-Location, Link, Refresh,
/// Access-Control-Allow-Origin.
pub fn wrap_urls(host_map: &HostMap, value: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut search = 0;
    while let Some(rel) = memchr::memchr(b'/', &value[search..]) {
        let at = search + rel;
        search = at + 1;
        if value.get(at + 1) != Some(&b'/') {
            continue;
        }
        search = at + 2;
        if !authority_may_follow(value, at) {
            continue;
        }
        let (host_start, host_end) = match authority_host(value, at + 2) {
            Some(h) => h,
            None => continue,
        };
        search = host_end;
        if host_map
            .app_for_host(&value[host_start..host_end])
            .is_none()
        {
            continue;
        }
        let o = out.get_or_insert_with(|| Vec::with_capacity(value.len() + 32));
        o.extend_from_slice(&value[copied..host_end]);
        o.push(b'.');
        o.extend_from_slice(host_map.suffix());
        copied = host_end;
    }
    out.map(|mut o| {
        o.extend_from_slice(&value[copied..]);
        o
    })
}

/// True when `//` at `at` starts an authority: preceded by a URL scheme
/// (`https:`), or standing at the start / after a delimiter (scheme-relative).
fn authority_may_follow(value: &[u8], at: usize) -> bool {
    if at == 0 {
        return true;
    }
    let prev = value[at - 1];
    if prev == b':' {
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1)
        let mut i = at - 1;
        while i > 0
            && (value[i - 1].is_ascii_alphanumeric() || matches!(value[i - 1], b'+' | b'-' | b'.'))
        {
            i -= 1;
        }
        return i < at - 1 && value[i].is_ascii_alphabetic();
    }
    matches!(
        prev,
        b'<' | b'=' | b' ' | b'\t' | b'"' | b'\'' | b',' | b';' | b'('
    )
}

/// Finds the host in the authority starting at `start`: skips user info,
/// stops at port, path, query or fragment. `None` for IP literals and empty
/// hosts.
fn authority_host(value: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut end = start;
    while end < value.len()
        && !matches!(
            value[end],
            b'/' | b'?' | b'#' | b'>' | b'"' | b'\'' | b' ' | b',' | b';' | b'\\'
        )
    {
        end += 1;
    }
    let authority = &value[start..end];
    let host_start = match memchr::memrchr(b'@', authority) {
        Some(i) => start + i + 1,
        None => start,
    };
    let mut host_end = host_start;
    while host_end < end && is_host_byte(value[host_end]) {
        host_end += 1;
    }
    if host_end == host_start || (host_end < end && value[host_end] != b':') {
        return None;
    }
    Some((host_start, host_end))
}

/// Rewrites the host sources of a Content-Security-Policy value (RFC: CSP
/// Level 3 §2.3.1 `host-source`): `https://demo.test`, `*.demo.test`,
/// `demo.test:443/path` all gain the suffix when the host is an app host.
pub fn wrap_csp(host_map: &HostMap, value: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < value.len() {
        if matches!(value[i], b' ' | b'\t' | b';' | b',') {
            i += 1;
            continue;
        }
        let token_start = i;
        while i < value.len() && !matches!(value[i], b' ' | b'\t' | b';' | b',') {
            i += 1;
        }
        let token = &value[token_start..i];
        if token.starts_with(b"'") {
            continue;
        }
        // Skip an optional scheme: `https://`.
        let mut host_start = token_start;
        if let Some(p) = memchr::memmem::find(token, b"://") {
            host_start = token_start + p + 3;
        } else if token.ends_with(b":") {
            continue; // scheme-source such as `data:`
        }
        if value[host_start..i].starts_with(b"*.") {
            host_start += 2;
        }
        let mut host_end = host_start;
        while host_end < i && is_host_byte(value[host_end]) {
            host_end += 1;
        }
        if host_end == host_start
            || (host_end < i && !matches!(value[host_end], b':' | b'/'))
            || host_map
                .app_for_host(&value[host_start..host_end])
                .is_none()
        {
            continue;
        }
        let o = out.get_or_insert_with(|| Vec::with_capacity(value.len() + 64));
        o.extend_from_slice(&value[copied..host_end]);
        o.push(b'.');
        o.extend_from_slice(host_map.suffix());
        copied = host_end;
    }
    out.map(|mut o| {
        o.extend_from_slice(&value[copied..]);
        o
    })
}

/// Rewrites the `Domain` attribute of a Set-Cookie value (RFC 6265 §5.2.3):
/// `Domain=.demo.test` → `Domain=.demo.test.proxy.test`. Host-only cookies
/// (no Domain attribute) are left host-only.
pub fn wrap_cookie_domain(host_map: &HostMap, value: &[u8]) -> Option<Vec<u8>> {
    let mut pos = memchr::memchr(b';', value)?;
    while pos < value.len() {
        let attr_start = pos + 1;
        let attr_end =
            memchr::memchr(b';', &value[attr_start..]).map_or(value.len(), |i| attr_start + i);
        let attr = &value[attr_start..attr_end];
        let trimmed_start = attr_start
            + attr
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
        let name_end =
            memchr::memchr(b'=', &value[trimmed_start..attr_end]).map(|i| trimmed_start + i);
        if let Some(eq) = name_end {
            if value[trimmed_start..eq]
                .trim_ascii()
                .eq_ignore_ascii_case(b"domain")
            {
                let mut v_start = eq + 1;
                while v_start < attr_end && value[v_start] == b' ' {
                    v_start += 1;
                }
                let mut v_end = attr_end;
                while v_end > v_start && value[v_end - 1] == b' ' {
                    v_end -= 1;
                }
                let domain = &value[v_start..v_end];
                let bare = domain.strip_prefix(b".").unwrap_or(domain);
                if host_map.app_for_host(bare).is_some() {
                    let mut o = Vec::with_capacity(value.len() + host_map.suffix().len() + 1);
                    o.extend_from_slice(&value[..v_end]);
                    o.push(b'.');
                    o.extend_from_slice(host_map.suffix());
                    o.extend_from_slice(&value[v_end..]);
                    return Some(o);
                }
            }
        }
        pos = attr_end;
    }
    None
}

/// Removes `.suffix` from every proxy host (`<app host>.<suffix>`) in
/// `value`, wherever it stands: in URLs, in percent-encoded URLs inside
/// query strings (`https%3A%2F%2Fdemo.test.proxy.test`, also double
/// encoded), or bare. Used for Origin, Referer and request query strings.
pub fn unwrap_proxy_hosts(host_map: &HostMap, value: &[u8]) -> Option<Vec<u8>> {
    let suffix_len = host_map.suffix().len();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for dot in host_map.find_dotted_suffix(value) {
        if dot < copied || !is_proxy_host_suffix(host_map, value, 0, dot, true) {
            continue;
        }
        let o = out.get_or_insert_with(|| Vec::with_capacity(value.len()));
        o.extend_from_slice(&value[copied..dot]);
        copied = dot + 1 + suffix_len;
    }
    out.map(|mut o| {
        o.extend_from_slice(&value[copied..]);
        o
    })
}

/// True when the `.<suffix>` found at `dot` ends a proxy host: an app host
/// stands before it and no further host label follows. `lo` is where the
/// readable text begins; `at_end`: nothing follows `value`.
pub fn is_proxy_host_suffix(
    host_map: &HostMap,
    value: &[u8],
    lo: usize,
    dot: usize,
    at_end: bool,
) -> bool {
    let end = dot + 1 + host_map.suffix().len();
    // Right label boundary: the host ends here (a further `.label` would
    // make it another name, e.g. `proxy.test.evil.net`).
    match value.get(end) {
        Some(&b) if is_host_byte(b) => return false,
        None if !at_end => return false,
        _ => {}
    }
    let mut start = dot;
    while start > lo && is_host_byte(value[start - 1]) {
        start -= 1;
    }
    // Inside percent-encoded text the host run may begin with the hex
    // digits of an escape (`%2Fdemo.test`): try each escape boundary.
    let escape_at = |p: usize| {
        p >= lo + 3
            && value[p - 3] == b'%'
            && value[p - 2].is_ascii_hexdigit()
            && value[p - 1].is_ascii_hexdigit()
    };
    // `%2F` or the double-encoded `%252F`.
    let double_escape_at = |p: usize| {
        p >= lo + 5
            && value[p - 5] == b'%'
            && &value[p - 4..p - 2] == b"25"
            && value[p - 2].is_ascii_hexdigit()
            && value[p - 1].is_ascii_hexdigit()
    };
    // JSON and JavaScript escapes: `\u002Fdemo.test`, `\x2Fdemo.test`.
    let js_escape_at = |p: usize| {
        (p >= lo + 6 && value[p - 6] == b'\\' && value[p - 5] == b'u')
            || (p >= lo + 4 && value[p - 4] == b'\\' && value[p - 3] == b'x')
    };
    (start.max(dot.saturating_sub(MAX_HOST_LEN + 8))..dot).any(|s| {
        let boundary = s == start || escape_at(s) || double_escape_at(s) || js_escape_at(s);
        boundary && value[s] != b'.' && host_map.app_for_host(&value[s..dot]).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HostMap {
        let p = crate::testing::policy(
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"http://127.0.0.1:1\"\n",
        );
        crate::snapshot::Snapshot::build(&p, &rustls::RootCertStore::empty())
            .unwrap()
            .hosts
    }

    fn s(v: Option<Vec<u8>>) -> Option<String> {
        v.map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn urls_are_wrapped_with_userinfo_and_port_kept() {
        let t = table();
        let w = |v: &str| s(wrap_urls(&t, v.as_bytes()));
        assert_eq!(
            w("https://demo.test/a?b#c").as_deref(),
            Some("https://demo.test.proxy.test/a?b#c")
        );
        assert_eq!(
            w("https://u@Demo.Test:8443/").as_deref(),
            Some("https://u@Demo.Test.proxy.test:8443/")
        );
        assert_eq!(
            w("//cdn.demo-cdn.test/x.js").as_deref(),
            Some("//cdn.demo-cdn.test.proxy.test/x.js")
        );
        assert_eq!(
            w("wss://demo.test").as_deref(),
            Some("wss://demo.test.proxy.test")
        );
        assert_eq!(
            w("<https://demo.test/a>; rel=preload, <https://other.net/b>; rel=next").as_deref(),
            Some("<https://demo.test.proxy.test/a>; rel=preload, <https://other.net/b>; rel=next")
        );
        assert_eq!(
            w("5; url=https://a.demo.test/x").as_deref(),
            Some("5; url=https://a.demo.test.proxy.test/x")
        );
        assert_eq!(w("/relative/path"), None);
        assert_eq!(w("https://notdemo.test/"), None);
        assert_eq!(w("https://demo.test.evil.net/"), None);
        assert_eq!(w("https://demo.testing/"), None);
        assert_eq!(w("https://demo.test.proxy.test/"), None);
        assert_eq!(w("https://[::1]:8080/"), None);
        assert_eq!(w("*"), None);
    }

    #[test]
    fn csp_host_sources_are_wrapped() {
        let t = table();
        let c = |v: &str| s(wrap_csp(&t, v.as_bytes()));
        assert_eq!(
            c("default-src 'self' https://demo.test *.demo-cdn.test demo.test:443/p data:; img-src other.net").as_deref(),
            Some("default-src 'self' https://demo.test.proxy.test *.demo-cdn.test.proxy.test demo.test.proxy.test:443/p data:; img-src other.net")
        );
        assert_eq!(c("default-src 'none'"), None);
    }

    #[test]
    fn cookie_domain_is_wrapped_and_host_only_stays() {
        let t = table();
        let c = |v: &str| s(wrap_cookie_domain(&t, v.as_bytes()));
        assert_eq!(
            c("sid=1; Path=/; Domain=.demo.test; Secure").as_deref(),
            Some("sid=1; Path=/; Domain=.demo.test.proxy.test; Secure")
        );
        assert_eq!(
            c("sid=1; domain=app.demo.test").as_deref(),
            Some("sid=1; domain=app.demo.test.proxy.test")
        );
        assert_eq!(c("sid=1; Path=/; HttpOnly"), None);
        assert_eq!(c("sid=1; Domain=other.net"), None);
        assert_eq!(c("sid=domain=demo.test"), None);
    }

    #[test]
    fn proxy_hosts_are_unwrapped() {
        let t = table();
        let u = |v: &str| s(unwrap_proxy_hosts(&t, v.as_bytes()));
        assert_eq!(
            u("https://demo.test.proxy.test/x").as_deref(),
            Some("https://demo.test/x")
        );
        assert_eq!(
            u("/cb?redirect_uri=https%3A%2F%2Fa.demo.test.proxy.test%2Fcb&x=https%253A%252F%252Fdemo.test.PROXY.test").as_deref(),
            Some("/cb?redirect_uri=https%3A%2F%2Fa.demo.test%2Fcb&x=https%253A%252F%252Fdemo.test")
        );
        assert_eq!(
            u("https://Demo.Test.proxy.test:8080").as_deref(),
            Some("https://Demo.Test:8080")
        );
        assert_eq!(u("https://other.test.proxy.test/"), None);
        assert_eq!(u("https://demo.test.proxy.testing/"), None);
        assert_eq!(u("https://demo.test.proxy.test.evil.net/"), None);
        assert_eq!(u("nothing here"), None);
    }
}
