//! Alerts end to end: activity policies raise them from a real data
//! plane's records; controld delivers them to a webhook (retried after a
//! 500) and a JSON-lines file, holds the daily limit, and counts what a
//! sink could not take. Over HTTP/1.1, or HTTP/2 with
//! `PALISADE_TEST_HTTP=2` (see `log_suite`).

mod log_suite;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use log_suite::*;
use support::*;

/// A webhook receiver: answers 500 to the first POST, 200 after; keeps
/// every body it accepted and counts attempts.
struct Webhook {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<serde_json::Value>>>,
    attempts: Arc<Mutex<usize>>,
}

fn webhook() -> Webhook {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let (acc, att) = (accepted.clone(), attempts.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (acc, att) = (acc.clone(), att.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut r = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(head)) = r.parse(&buf) {
                        let len = content_length(r.headers);
                        if buf.len() >= head + len {
                            let body = buf[head..head + len].to_vec();
                            buf.drain(..head + len);
                            let first = {
                                let mut n = att.lock().unwrap();
                                *n += 1;
                                *n == 1
                            };
                            let reply: &[u8] = if first {
                                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
                            } else {
                                acc.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).expect("JSON body"));
                                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                            };
                            if conn.write_all(reply).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Webhook {
        addr,
        accepted,
        attempts,
    }
}

#[test]
fn alert_daily_limit_holds_and_the_webhook_gets_json_retried_after_a_500() {
    let env = Env::new();
    let origin = app_origin();
    let hook = webhook();
    let policy = demo_policy(
        &env,
        "p.toml",
        origin.addr(),
        "\n[[activity_policy]]\nname = \"not-found\"\napps = [\"demo\"]\nstatuses = [404]\nalert = { severity = \"high\", daily_limit = 3 }\n\n[[activity_policy]]\nname = \"silent\"\nstatuses = [404]\n",
    );
    let hook_url = format!("http://{}/alerts", hook.addr);
    let file = env.path("alerts.jsonl");
    let _controld = env.controld(
        &policy,
        &[
            "--alert-webhook",
            &hook_url,
            "--alert-file",
            file.to_str().unwrap(),
        ],
    );
    let (_dp, front) = start_dataplane(&env, 1, &[]);
    env.wait_for_cores(1, 1);
    let mut s = Conn::open(&front);
    for i in 0..5 {
        assert_eq!(s.roundtrip(&get(&format!("/gone/{i}"), "a")).0, 404);
    }
    assert_eq!(s.roundtrip(&get("/page/3", "a")).0, 200);
    env.wait_for_records("traffic", 6);

    let alerts = env.alerts();
    assert_eq!(alerts.len(), 3, "daily limit of 3: {alerts:#?}");
    for (i, a) in alerts.iter().enumerate() {
        assert_eq!(a["policy"], "not-found");
        assert_eq!(a["severity"], "high");
        assert_eq!(a["url"], url(&format!("/gone/{i}")));
    }
    eventually("3 alerts delivered to the webhook", || {
        hook.accepted.lock().unwrap().len() == 3
    });
    assert_eq!(*hook.attempts.lock().unwrap(), 4, "one 500, then retried");
    let delivered = hook.accepted.lock().unwrap().clone();
    let urls: BTreeSet<&str> = delivered.iter().filter_map(|a| a["url"].as_str()).collect();
    assert_eq!(urls.len(), 3);
    eventually("3 alerts in the JSON-lines file", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() == 3)
    });
    // controld counts them (status, and the metrics it renders from it).
    eventually("3 alerts counted raised and delivered", || {
        let st = env.status();
        st["alerts_raised"] == 3
            && st["alerts_delivered"] == 3
            && st["alerts_failed"] == 0
            && st["alerts_pending"] == 0
    });
}

#[test]
fn alerts_a_sink_cannot_take_are_counted_failed_and_kept() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(
        &env,
        "p.toml",
        origin.addr(),
        "\n[[activity_policy]]\nname = \"not-found\"\nstatuses = [404]\nalert = { severity = \"low\" }\n",
    );
    // The alert file's directory does not exist: every write fails.
    let file = env.path("missing-dir/alerts.jsonl");
    let _controld = env.controld(&policy, &["--alert-file", file.to_str().unwrap()]);
    let (_dp, front) = start_dataplane(&env, 1, &[]);
    env.wait_for_cores(1, 1);
    let mut s = Conn::open(&front);
    for i in 0..2 {
        assert_eq!(s.roundtrip(&get(&format!("/gone/{i}"), "a")).0, 404);
    }
    eventually("2 alerts counted raised and failed", || {
        let st = env.status();
        st["alerts_raised"] == 2 && st["alerts_failed"] == 2 && st["alerts_delivered"] == 0
    });
    assert_eq!(env.alerts().len(), 2, "kept in the store");
}
