//! `bench tls-handshake`: new-connection load over TLS. Each connection
//! makes one TCP connection, a TLS handshake (full, or resumed from the
//! previous connection's ticket), one small GET and a close — the cost a
//! server pays per handshake, measured as handshakes per second and
//! latency percentiles (HdrHistogram).
//!
//! The client does not verify the server's certificate (a load generator
//! measuring the server; verifying would double the client's CPU per
//! handshake and make it the bottleneck on a shared machine). Never use it
//! to talk to anything but a test server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::HandshakeKind;

/// What to run.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    pub target: SocketAddr,
    /// SNI and Host.
    pub host: String,
    pub path: String,
    /// Concurrent connections (one thread each).
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Resume each connection from the previous one's session.
    pub resume: bool,
    /// Offer only TLS 1.2.
    pub tls12: bool,
}

/// The outcome.
#[derive(Debug, serde::Serialize)]
pub struct HandshakeReport {
    /// Completed in the measured period.
    pub handshakes: u64,
    /// Completed from start to stop, warm-up included (for dividing CPU
    /// time read around the whole run).
    pub total_handshakes: u64,
    pub resumed: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub first_error: String,
}

fn client_config(resume: bool, tls12: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        // The ring provider supports both versions.
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAnything(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// One connection: handshake, GET, read to close. Returns whether it
/// resumed.
fn one(
    config: &Arc<rustls::ClientConfig>,
    c: &HandshakeConfig,
    request: &[u8],
) -> Result<bool, String> {
    let tcp = TcpStream::connect(c.target).map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(c.host.clone()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)
        .map_err(|e| format!("handshake/write: {e}"))?;
    let mut buf = [0u8; 16384];
    let mut head = Vec::with_capacity(12);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let want = 12usize.saturating_sub(head.len()).min(n);
                head.extend_from_slice(&buf[..want]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if !head.starts_with(b"HTTP/1.1 2") {
        return Err(format!(
            "not a 2xx response: {:?}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok(tls.conn.handshake_kind() == Some(HandshakeKind::Resumed))
}

/// Runs the load and reports.
pub fn run(c: &HandshakeConfig) -> Result<HandshakeReport, String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Mozilla/5.0 (bench tls-handshake)\r\nConnection: close\r\n\r\n",
        c.path, c.host
    )
    .into_bytes();
    // Check once before loading.
    one(&client_config(c.resume, c.tls12), c, &request)?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(String::new()));
    let histogram = Arc::new(Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| e.to_string())?,
    ));
    let mut threads = Vec::new();
    for _ in 0..c.connections.max(1) {
        let total = total.clone();
        let (measuring, stop, done, resumed, errors, first_error, histogram) = (
            measuring.clone(),
            stop.clone(),
            done.clone(),
            resumed.clone(),
            errors.clone(),
            first_error.clone(),
            histogram.clone(),
        );
        let c = c.clone();
        let request = request.clone();
        threads.push(std::thread::spawn(move || {
            // One config per thread: its session cache resumes this
            // thread's next connection.
            let config = client_config(c.resume, c.tls12);
            let mut local = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("histogram bounds");
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let result = one(&config, &c, &request);
                if result.is_ok() {
                    total.fetch_add(1, Ordering::Relaxed);
                }
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok(was_resumed) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        if was_resumed {
                            resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if first.is_empty() {
                            *first = e;
                        }
                    }
                }
            }
            let _ = histogram
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&local);
        }));
    }
    std::thread::sleep(c.warmup);
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(c.duration);
    measuring.store(false, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let h = histogram.lock().unwrap_or_else(|p| p.into_inner());
    let handshakes = done.load(Ordering::Relaxed);
    let first_error = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(HandshakeReport {
        handshakes,
        total_handshakes: total.load(Ordering::Relaxed) + 1,
        resumed: resumed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        per_second: handshakes as f64 / seconds,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        first_error,
    })
}
