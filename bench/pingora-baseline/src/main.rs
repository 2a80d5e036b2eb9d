//! Minimal Pingora reverse proxy for side-by-side benchmarks: listens on
//! `PINGORA_LISTEN`, forwards every request unchanged (keep-alive upstream
//! pool, Host kept) to `PINGORA_UPSTREAM`. Worker threads come from the
//! Pingora configuration file given with `-c` (`threads: 1` in
//! bench-compare).

use async_trait::async_trait;
use pingora::prelude::*;

struct Forward {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let listen = std::env::var("PINGORA_LISTEN").unwrap_or_else(|_| "127.0.0.1:6188".into());
    let upstream = std::env::var("PINGORA_UPSTREAM").unwrap_or_else(|_| "127.0.0.1:18080".into());
    let mut server = Server::new(Some(Opt::parse_args())).expect("pingora server");
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Forward { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    println!("pingora-baseline: listening on {listen}");
    server.run_forever();
}
