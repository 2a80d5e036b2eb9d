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
    /// Idle upstream connections kept per upstream and core.
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
            pool_max_idle: 64,
            pool_idle_timeout: Duration::from_secs(30),
            max_connections: 16 * 1024,
            tunnel_idle_timeout: Duration::from_secs(300),
            rewrite_bodies: true,
        }
    }
}
