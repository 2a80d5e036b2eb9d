//! Malformed and hostile requests (RFC 9112 §2.2, §3, §5, §6, §7): each is
//! answered with the expected status, never reaches the origin, the
//! connection is closed, and a fresh connection still works. Every case is
//! delivered whole, one byte at a time and in random splits.

mod support;

use std::io::Write;

use support::*;

const H: &str = "demo.test.proxy.test";

/// (attack name, raw request, expected status)
fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let h = H;
    let mut v: Vec<(&'static str, String, u16)> = vec![
        ("te_and_cl_is_rejected_and_not_forwarded", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("cl_and_te_is_rejected_and_not_forwarded", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), 400),
        ("differing_content_lengths_are_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400),
        ("content_length_with_plus_sign_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: +5\r\n\r\nhello"), 400),
        ("negative_content_length_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: -1\r\n\r\nhello"), 400),
        ("hex_content_length_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0x5\r\n\r\nhello"), 400),
        ("content_length_with_two_numbers_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5 5\r\n\r\nhello"), 400),
        ("empty_content_length_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: \r\n\r\nhello"), 400),
        ("overflowing_content_length_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 18446744073709551616\r\n\r\nhello"), 400),
        ("content_length_list_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5, 5\r\n\r\nhello"), 400),
        ("te_with_final_coding_not_chunked_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), 400),
        ("te_identity_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"), 400),
        ("te_with_unknown_coding_gets_501", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), 501),
        ("te_chunked_twice_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("te_chunked_twice_in_one_list_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), 400),
        ("te_on_http10_is_rejected", format!("POST / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("te_with_garbage_token_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"), 400),
        ("obs_fold_is_rejected", format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-A: a\r\n b\r\n\r\n"), 400),
        ("obs_fold_of_transfer_encoding_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"), 400),
        ("whitespace_before_colon_is_rejected", format!("GET / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400),
        ("bare_cr_in_header_is_rejected", format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-A: a\rb\r\n\r\n"), 400),
        ("bare_lf_line_endings_are_rejected", format!("GET / HTTP/1.1\nHost: {h}\n\n"), 400),
        ("bare_lf_inside_head_is_rejected", format!("GET / HTTP/1.1\r\nHost: {h}\nX-A: b\r\n\r\n"), 400),
        ("missing_host_is_rejected", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n".to_string(), 400),
        ("repeated_host_is_rejected", format!("GET / HTTP/1.1\r\nHost: {h}\r\nHost: other.test.proxy.test\r\n\r\n"), 400),
        ("host_with_userinfo_is_rejected", format!("GET / HTTP/1.1\r\nHost: user@{h}\r\n\r\n"), 400),
        ("chunk_size_with_hex_prefix_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk_size_with_plus_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"), 400),
        ("empty_chunk_size_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk_size_over_64_bits_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk_longer_than_declared_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk_extension_too_long_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(2000)), 400),
        ("chunk_extension_with_control_char_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01b\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk_size_with_bare_lf_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), 400),
        ("content_length_in_trailers_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), 400),
        ("transfer_encoding_in_trailers_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400),
        ("host_in_trailers_is_rejected", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n"), 400),
        ("request_line_too_long_gets_414", format!("GET /{} HTTP/1.1\r\nHost: {h}\r\n\r\n", "a".repeat(9000)), 414),
        ("header_section_too_large_gets_431", format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)), 431),
        ("too_many_headers_get_431", format!("GET / HTTP/1.1\r\nHost: {h}\r\n{}\r\n", (0..150).map(|i| format!("X-{i}: v\r\n")).collect::<String>()), 431),
        ("unknown_expectation_gets_417", format!("POST / HTTP/1.1\r\nHost: {h}\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx"), 417),
        ("connect_method_is_refused", format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: {h}\r\n\r\n"), 405),
        ("trace_method_is_refused", format!("TRACE / HTTP/1.1\r\nHost: {h}\r\n\r\n"), 405),
        ("http2_preface_is_rejected", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), 400),
        ("nul_in_request_line_is_rejected", format!("GET /\0 HTTP/1.1\r\nHost: {h}\r\n\r\n"), 400),
        // Routing: the proxy must never become an open proxy or SSRF vector.
        ("absolute_form_disagreeing_with_host_is_rejected", format!("GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: {h}\r\n\r\n"), 400),
        ("absolute_form_to_other_app_host_is_rejected", format!("GET http://other.test.proxy.test/ HTTP/1.1\r\nHost: {h}\r\n\r\n"), 400),
        ("unknown_app_under_suffix_gets_404", "GET / HTTP/1.1\r\nHost: evil.com.proxy.test\r\n\r\n".to_string(), 404),
        ("host_without_suffix_gets_421", "GET / HTTP/1.1\r\nHost: demo.test\r\n\r\n".to_string(), 421),
        ("ip_literal_host_gets_421", "GET / HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".to_string(), 421),
        ("suffix_itself_gets_421", "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n".to_string(), 421),
        ("lookalike_suffix_gets_421", "GET / HTTP/1.1\r\nHost: demo.test.proxy.test.evil.net\r\n\r\n".to_string(), 421),
        ("absolute_form_https_to_internal_host_is_rejected", "GET https://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".to_string(), 421),
    ];
    v.drain(..)
        .map(|(n, s, c)| (n, s.into_bytes(), c))
        .collect()
}

#[test]
fn malformed_requests_are_refused_and_never_forwarded() {
    let origin = origin(demo_app("demo.test"));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let mut failures = Vec::new();
    for (name, bytes, want) in cases() {
        for delivery in DELIVERIES {
            let before = origin.requests().len();
            let mut s = dp.connect();
            send(&mut s, &bytes, delivery);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut r = Reader::new(&mut s);
            let resp = r.response(false);
            if resp.status != want {
                failures.push(format!(
                    "{name} ({delivery:?}): status {} (want {want}): {}",
                    resp.status,
                    resp.text()
                ));
                continue;
            }
            if resp.header("connection") != Some("close") || !r.closed() {
                failures.push(format!("{name} ({delivery:?}): connection not closed"));
            }
            // A fresh connection still works, and the origin saw only it.
            let marker = format!("/fresh-{name}");
            let ok = request(&dp, &get(H, &marker));
            if ok.status != 200 && ok.status != 404 {
                failures.push(format!(
                    "{name} ({delivery:?}): fresh request got {}",
                    ok.status
                ));
            }
            let seen = origin.requests();
            let new: Vec<_> = seen[before..].iter().map(|r| r.target.clone()).collect();
            if new != vec![marker.clone()] {
                failures.push(format!(
                    "{name} ({delivery:?}): origin received {new:?}, want only {marker}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn slowloris_head_times_out_with_408() {
    let origin = origin(demo_app("demo.test"));
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--header-timeout", "0.5"],
    );
    let mut s = dp.connect();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {H}\r\nX-Slow: ").as_bytes())
        .expect("write");
    // Keep trickling bytes; the deadline covers the whole head, not each read.
    let trickle = std::thread::spawn({
        let mut s = s.try_clone().expect("clone");
        move || {
            for _ in 0..40 {
                if s.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    });
    let mut r = Reader::new(&mut s);
    let resp = r.response(false);
    assert_eq!(resp.status, 408);
    trickle.join().expect("trickle thread");
    assert!(origin.requests().is_empty());
    assert_eq!(request(&dp, &get(H, "/")).status, 200);
}

#[test]
fn idle_keep_alive_connection_is_closed_quietly() {
    let origin = origin(demo_app("demo.test"));
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--idle-timeout", "0.3"],
    );
    let mut s = dp.connect();
    s.write_all(&get(H, "/")).expect("write");
    let mut r = Reader::new(&mut s);
    assert_eq!(r.response(false).status, 200);
    // No 408 on an idle connection: just a close.
    assert!(r.closed(), "idle connection closed without bytes");
}
