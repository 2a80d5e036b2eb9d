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
