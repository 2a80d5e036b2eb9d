//! Resource limits for client and upstream connections, with the defaults
//! documented in the README. Every limit has a command-line flag.

use std::time::Duration;

/// Limits applied per connection and per message.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line (method, target, version), bytes. Over: 414.
    pub max_request_line: usize,
    /// Largest request header section, bytes. Over: 431.
    pub max_header_bytes: usize,
    /// Most header fields in a request. Over: 431.
    pub max_headers: usize,
    /// Time allowed to receive a whole request head once its first byte
    /// arrived (slowloris defence). Over: 408 and close.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Time allowed between two reads of a body (either direction).
    pub body_timeout: Duration,
    /// Time allowed to connect to an upstream (TCP and TLS). Over: 504.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response head after the request was
    /// sent. Over: 504.
    pub response_timeout: Duration,
    /// Largest response header section from an upstream, bytes. Over: 502.
    pub max_response_header_bytes: usize,
    /// Idle upstream connections kept per upstream and core. Above the
    /// exchanges a core runs at once toward one app, every exchange would
    /// find one; below it, the excess is closed and reopened (at 100
    /// concurrent HTTP/2 streams and 64 kept, a new connection for ~10% of
    /// requests, ~20% of the data plane's CPU). An idle connection holds
    /// its socket, not a read buffer.
    pub pool_max_idle: usize,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Client connections served at once per core; further ones wait in
    /// the kernel's accept queue.
    pub max_connections: usize,
    /// An Upgrade tunnel (WebSocket) is closed after this long without a
    /// byte in either direction.
    pub tunnel_idle_timeout: Duration,
    /// Response bodies go through the rewrite engine. Off only to measure
    /// the engine's cost: without it users leave the session on the first
    /// absolute link.
    pub rewrite_bodies: bool,
    /// HTTP/2 toward browsers.
    pub http2: Http2Limits,
}

/// HTTP/2 on the TLS listener (RFC 9113), and its bounds. The header list
/// of a request is bounded by `max_header_bytes` like an HTTP/1.1 head.
#[derive(Clone, Debug)]
pub struct Http2Limits {
    /// Offer `h2` by ALPN. Off: HTTP/1.1 only.
    pub enabled: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams (and so exchanges) running
    /// at once per connection.
    pub max_streams: u32,
    /// Receive window per stream, bytes: request body a client may send
    /// ahead of the phases reading it.
    pub stream_window: u32,
    /// Receive window per connection, bytes.
    pub connection_window: u32,
    /// Response bytes queued per stream ahead of the client's window.
    pub send_buffer: usize,
    /// Offer `h2` by ALPN to HTTPS apps, and use it when chosen.
    pub upstream: bool,
    /// Serve HTTP/2 with prior knowledge (RFC 9113 §3.3) on the plain
    /// listener: a connection opening with the HTTP/2 preface.
    pub cleartext: bool,
    /// Streams the client may reset before their response is whole (and
    /// malformed frames it may provoke resets with), leaking a tenth of
    /// this per second; past it, GOAWAY ENHANCE_YOUR_CALM (rapid reset,
    /// CVE-2023-44487).
    pub max_resets: u32,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            enabled: true,
            upstream: true,
            cleartext: false,
            max_streams: 100,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            send_buffer: 256 * 1024,
            max_resets: 200,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            max_response_header_bytes: 64 * 1024,
            pool_max_idle: 256,
            pool_idle_timeout: Duration::from_secs(30),
            max_connections: 16 * 1024,
            tunnel_idle_timeout: Duration::from_secs(300),
            rewrite_bodies: true,
            http2: Http2Limits::default(),
        }
    }
}
