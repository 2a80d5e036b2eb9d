//! The `GET /metrics` endpoint both binaries serve (the data plane's
//! per-core counters, controld's status) in the Prometheus text exposition
//! format (version 0.0.4), from a plain thread of its own so a scrape
//! never takes a serving thread's time.
//!
//! The endpoint is read-only and has no authentication, as Prometheus
//! expects of a target: bind it to loopback or a management network,
//! never to the address users reach.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Appends a metric's `# HELP` and `# TYPE` lines to `out` (`kind`:
/// counter, gauge, histogram).
pub fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// Binds `addr` and answers scrapes with `render()` from a thread until
/// the process ends (`Err`: 503 with the message). Returns the bound
/// address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    render: impl Fn() -> Result<String, String> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("palisade-metrics".into())
        .spawn(move || loop {
            // One scrape at a time: Prometheus scrapes a target every few
            // seconds, and a slow client is cut off by the timeouts.
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = answer(s, &render);
                }
                // Out of descriptors and the like: back off, not spin.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        })?;
    Ok(bound)
}

/// Reads one request head and answers it, then closes.
fn answer(mut s: TcpStream, render: &impl Fn() -> Result<String, String>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let (status, body) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("");
                let path = path.split('?').next().unwrap_or("");
                break match (req.method, path) {
                    (Some("GET" | "HEAD"), "/metrics") => match render() {
                        Ok(text) => ("200 OK", text),
                        Err(e) => ("503 Service Unavailable", format!("{e}\n")),
                    },
                    (Some("GET" | "HEAD"), _) => {
                        ("404 Not Found", "not found: try /metrics\n".into())
                    }
                    _ => ("405 Method Not Allowed", "GET /metrics only\n".into()),
                };
            }
            Ok(httparse::Status::Partial) if head.len() < 16 * 1024 => continue,
            _ => break ("400 Bad Request", "bad request\n".to_string()),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head.starts_with(b"HEAD ") {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `request` and returns the whole answer.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn answers_scrapes_and_refuses_everything_else() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), || Ok("m 1\n".into())).unwrap();
        let ok = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.ends_with("\r\n\r\nm 1\n"), "{ok}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 4\r\n"));
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        for (request, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                "405",
            ),
            (b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n", "400"),
            (b"\x00\x01\x02\r\n\r\n", "400"),
        ] {
            let answer = exchange(addr, request);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{request:?}: {answer}"
            );
        }
    }

    #[test]
    fn a_failed_render_is_a_503_with_its_reason() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), || {
            Err("controld is not answering".into())
        })
        .unwrap();
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with("controld is not answering\n"), "{answer}");
    }
}
