//! An app's upstream failing in every way a node meets, under load, with a
//! policy push in the middle: an upstream that accepts and never answers,
//! one that drips its head a byte at a time, one that resets mid-body, and
//! one that sends a gigabyte with no head at all. Each fault ends with the
//! timeout or limit made for it (504, 502, a closed connection), while
//! normal traffic to another app on the same core never fails; then the
//! node serves again and every request is in the log (nothing lost).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{Env, DEADLINE};

/// A raw TCP server misbehaving by request target.
fn faulty_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || misbehave(stream));
        }
    });
    addr
}

fn misbehave(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
    match target.as_str() {
        // Accepts, reads the request, never answers: waits for the proxy
        // to give up and close.
        "/hang" => {
            let _ = s.read(&mut [0u8; 1]);
        }
        // The head a byte at a time, slower than any deadline allows.
        "/drip" => {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(400));
            }
        }
        // A head and part of the body, then a reset (SO_LINGER 0).
        "/reset" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            let _ = s.write_all(&[b'r'; 1000]);
            let _ = s.flush();
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
        // A gigabyte and no head: the response head limit ends it.
        "/no-head" => {
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..(1024 * 1024 * 1024 / block.len()) {
                if s.write_all(&block).is_err() {
                    return;
                }
            }
        }
        _ => {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// One request on a new connection: the status (0 when the connection
/// ended before a complete head) and how many body bytes arrived.
fn attempt(dp: SocketAddr, host: &str, target: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(dp).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut all = Vec::new();
    // A read error (a reset) ends the response like a close does; a
    // timeout is a hang, which must not happen.
    loop {
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{target}: the proxy left the client hanging")
            }
            Err(_) => break,
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut fields);
    match r.parse(&all) {
        Ok(httparse::Status::Complete(n)) => (r.code.unwrap_or(0), all.len() - n),
        _ => (0, 0),
    }
}

#[test]
fn upstream_faults_under_load_leave_other_apps_unharmed() {
    let env = Env::new();
    let healthy = support::named_origin("healthy");
    let faulty = faulty_upstream();
    // The second version adds an app (a policy that compiles to the same
    // snapshot is no new version).
    let policy_text = |extra_app: &str| {
        format!(
            "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{}\"\n\n[[app]]\nname = \"faulty\"\ndomains = [\"faulty.test\"]\nupstream = \"http://{faulty}\"\n\n{extra_app}",
            healthy.addr()
        )
    };
    let policy = env.path("policy.toml");
    std::fs::write(&policy, policy_text("")).expect("policy");
    let _controld = env.controld(&policy, &[]);
    let (_dp, addr) = env.dataplane(1, &["--response-timeout", "1", "--body-timeout", "1"]);
    env.wait_for_cores(1, 1);

    // Normal traffic on the same core throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match support::fetch(addr, "demo.test.proxy.test") {
                        Ok((200, body)) if body.contains("healthy") => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Every fault twice at once, while a new policy is pushed.
    let faults = ["/hang", "/drip", "/reset", "/no-head"];
    let running: Vec<_> = faults
        .iter()
        .flat_map(|f| [f, f])
        .map(|target| {
            let target = target.to_string();
            std::thread::spawn(move || {
                (
                    target.clone(),
                    attempt(addr, "faulty.test.proxy.test", &target),
                )
            })
        })
        .collect();
    let extra = format!(
        "[[app]]\nname = \"extra\"\ndomains = [\"extra.test\"]\nupstream = \"http://{}\"\n",
        healthy.addr()
    );
    std::fs::write(&policy, policy_text(&extra)).expect("policy");
    env.apply(&policy, "mid-fault");
    env.wait_for_cores(1, 2);
    for handle in running {
        let (target, (status, body)) = handle.join().expect("fault thread");
        match target.as_str() {
            "/hang" | "/drip" => assert_eq!(status, 504, "{target}"),
            "/no-head" => assert_eq!(status, 502, "{target}"),
            // Either nothing was sent yet (502), or the head went out and
            // the connection ended with the body short.
            "/reset" => assert!(
                status == 502 || (status == 200 && body < 100_000),
                "{target}: {status} with {body} body bytes"
            ),
            other => unreachable!("{other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().expect("load thread");
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(served > 0, "no normal traffic was served");
    assert_eq!(
        failed, 0,
        "normal traffic failed during the faults ({served} served)"
    );

    // The node serves again, and every request is in the log.
    assert_eq!(
        support::fetch(addr, "demo.test.proxy.test").map(|(s, _)| s),
        Ok(200)
    );
    let total = served as usize + 1 + 2 * faults.len();
    let records = env.wait_for_records("traffic", total);
    assert_eq!(records.len(), total, "every request logged once");
    for f in faults {
        let logged = records
            .iter()
            .filter(|r| r["app"] == "faulty" && r["url"].as_str().is_some_and(|u| u.ends_with(f)))
            .count();
        assert_eq!(logged, 2, "{f} logged");
    }
}
