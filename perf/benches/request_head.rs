//! Head parsing and rewriting vs the baseline of parsing alone.
//!
//! `httparse_only` is the floor: what any httparse-based proxy pays to find
//! the fields. `prepare_request` adds Palisade's strict checks, routing and
//! writing the rewritten upstream head; `prepare_response` the same for the
//! response. The ratio to the baseline is the cost of being strict and
//! rewriting.

use std::net::SocketAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_dataplane::http::request::{prepare_request, ClientContext, RequestInfo};
use palisade_dataplane::http::response::prepare_response;
use palisade_dataplane::http::Framing;
use palisade_dataplane::limits::Limits;
use palisade_perf::{routes, APP_RESPONSE, BROWSER_REQUEST};

fn heads(c: &mut Criterion) {
    let routes = routes();
    let limits = Limits::default();
    let ctx = ClientContext::new(SocketAddr::from(([192, 0, 2, 1], 50000)), false);
    let mut out = Vec::with_capacity(2048);

    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    g.bench_function("httparse_only (baseline)", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(BROWSER_REQUEST)).is_ok())
        })
    });
    g.bench_function("prepare_request", |b| {
        b.iter(|| {
            black_box(
                prepare_request(black_box(BROWSER_REQUEST), &routes, &limits, &ctx, &mut out)
                    .is_ok(),
            )
        })
    });
    g.finish();

    let req = RequestInfo {
        head_len: 0,
        app: 0,
        framing: Framing::Empty,
        http11: true,
        keep_alive: true,
        expect_continue: false,
        upgrade: false,
        is_head: false,
        idempotent: true,
        app_host: palisade_dataplane::hostmap::HostName::lowercase(b"app.demo.test").expect("host"),
        accepted: Default::default(),
        unwrap_body: None,
        index: Default::default(),
    };
    let mut g = c.benchmark_group("response_head");
    g.throughput(Throughput::Bytes(APP_RESPONSE.len() as u64));
    g.bench_function("httparse_only (baseline)", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut resp = httparse::Response::new(&mut headers);
            black_box(resp.parse(black_box(APP_RESPONSE)).is_ok())
        })
    });
    g.bench_function("prepare_response", |b| {
        b.iter(|| {
            black_box(
                prepare_response(
                    black_box(APP_RESPONSE),
                    &req,
                    &routes.hosts,
                    palisade_dataplane::http::response::ResponseLimits {
                        max_header_bytes: 65536,
                        rewrite_bodies: false,
                        data_types: &[],
                        leak_guard: b"",
                    },
                    &mut out,
                )
                .is_ok(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, heads);
criterion_main!(benches);
