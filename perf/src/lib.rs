//! Palisade micro-benchmarks (criterion) live in `benches/`; this library
//! holds the shared inputs so every benchmark measures the same bytes.

pub mod corpus;

/// A typical browser request for a proxied app.
pub const BROWSER_REQUEST: &[u8] = b"GET /app/items?page=2&return_to=https%3A%2F%2Fapp.demo.test.proxy.test%2Fhome HTTP/1.1\r\n\
Host: app.demo.test.proxy.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://app.demo.test.proxy.test/home\r\n\
Cookie: sid=0123456789abcdef; pref=dark\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

/// A typical app response head with headers the proxy rewrites.
pub const APP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 4096\r\n\
Cache-Control: private, max-age=0\r\n\
Set-Cookie: sid=0123456789abcdef; Path=/; Domain=.demo.test; Secure; HttpOnly\r\n\
Content-Security-Policy: default-src 'self' https://static.demo.test *.demo-cdn.test; img-src data: https:\r\n\
Link: <https://static.demo.test/app.css>; rel=preload; as=style\r\n\
Strict-Transport-Security: max-age=31536000\r\n\
Date: Sun, 22 Nov 2026 12:00:00 GMT\r\n\r\n";

/// The routing table the benchmarks use.
pub fn routes() -> palisade_dataplane::snapshot::Snapshot {
    palisade_dataplane::fuzz::fuzz_routes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn inputs_are_valid_http() {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut h);
        assert!(
            matches!(req.parse(super::BROWSER_REQUEST), Ok(httparse::Status::Complete(n)) if n == super::BROWSER_REQUEST.len())
        );
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut h);
        assert!(
            matches!(resp.parse(super::APP_RESPONSE), Ok(httparse::Status::Complete(n)) if n == super::APP_RESPONSE.len())
        );
        println!(
            "request {} bytes, response {} bytes",
            super::BROWSER_REQUEST.len(),
            super::APP_RESPONSE.len()
        );
    }
}
