//! The floor proxies (`bench floor IO`) are faithful instruments: over each
//! I/O path, a keep-alive conversation through the floor gets byte for byte
//! what the same conversation gets from the origin directly, a response it
//! cannot frame ends the connection instead of being passed on half-read,
//! and `bench load` through it counts no error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::Duration;

use palisade_bench::testing::{spawn_announcing, RunOk};

/// A child process killed when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bench ARGS…` and returns it with the address it announces.
fn start(args: &[&str]) -> (Running, String) {
    let (child, addr) = spawn_announcing(Command::new(env!("CARGO_BIN_EXE_bench")).args(args));
    (Running(child), addr)
}

/// Sends `requests` (each written whole, in order) on one connection and
/// reads until `expect_len` bytes came or the peer closed.
fn converse(addr: &str, requests: &[&[u8]], expect_len: Option<usize>) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    for request in requests {
        stream.write_all(request).expect("send");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while expect_len.is_none_or(|n| got.len() < n) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read from {addr}: {e} after {} bytes", got.len()),
        }
    }
    got
}

const GET_PAGE: &[u8] = b"GET / HTTP/1.1\r\nHost: demo.test\r\n\r\n";
const GET_DENSE: &[u8] = b"GET /dense?size=262144&hosts=16 HTTP/1.1\r\nHost: demo.test\r\n\r\n";
const POST_ECHO: &[u8] =
    b"POST /echo HTTP/1.1\r\nHost: demo.test\r\nContent-Length: 11\r\n\r\nhello floor";
const GET_CHUNKED: &[u8] = b"GET /chunked HTTP/1.1\r\nHost: demo.test\r\n\r\n";

const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: demo.test\r\nConnection: close\r\n\r\n";

#[test]
fn every_floor_proxy_passes_a_conversation_byte_for_byte() {
    let (_origin, origin) = start(&["origin", "--listen", "127.0.0.1:0"]);
    // Three requests written at once (pipelined), then more one by one.
    let pipelined = [GET_PAGE, POST_ECHO, GET_PAGE].concat();
    let script: Vec<&[u8]> = vec![&pipelined, GET_DENSE, POST_ECHO, GET_PAGE];

    // Directly: the script, then a request the origin closes after, so the
    // whole conversation is what arrives before the close, minus that
    // last response.
    let mut with_close = script.clone();
    with_close.push(GET_CLOSE);
    let everything = converse(&origin, &with_close, None);
    let last = converse(&origin, &[GET_CLOSE], None);
    assert!(everything.ends_with(&last), "the origin answers alike");
    let expected = &everything[..everything.len() - last.len()];
    assert!(expected.len() > 262_144, "the dense page is in it");

    for io in ["glommio", "uring", "uring-multishot", "epoll"] {
        let (_floor, floor) = start(&[
            "floor",
            io,
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin,
        ]);
        let got = converse(&floor, &script, Some(expected.len()));
        assert!(
            got == expected,
            "{io}: {} bytes through the floor differ from the {} direct",
            got.len(),
            expected.len()
        );

        // A chunked response is not the floor's to frame: the connection
        // ends, and what came before it on the connection was whole.
        let got = converse(&floor, &[GET_PAGE, GET_CHUNKED], None);
        assert_eq!(
            got.len(),
            last.len(),
            "{io}: only the first response came back"
        );
        assert!(expected.starts_with(&got), "{io}: and it came back whole");

        // Under load, nothing fails.
        let dir = tempfile::tempdir().expect("dir");
        let json = dir.path().join("load.json");
        Command::new(env!("CARGO_BIN_EXE_bench"))
            .args([
                "load",
                &format!("http://{floor}/"),
                "--closed",
                "--connections",
                "8",
            ])
            .args([
                "--threads",
                "1",
                "--duration",
                "1",
                "--warmup",
                "0",
                "--json",
            ])
            .arg(&json)
            .ran_ok("bench load through the floor");
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
        assert!(
            result["requests"].as_u64().is_some_and(|n| n > 0),
            "{io}: {result}"
        );
        let errors: u64 = result["errors"]
            .as_object()
            .expect("errors")
            .values()
            .filter_map(|v| v.as_u64())
            .sum();
        assert_eq!(errors, 0, "{io}: {result}");
    }
}
