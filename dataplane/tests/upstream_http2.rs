//! HTTP/2 toward apps: an app whose TLS server offers `h2` (nginx, with
//! `listen … ssl http2`, in front of a recording origin) is reached over
//! one multiplexed HTTP/2 connection per core; upgrades still go over
//! HTTP/1.1; the app's GOAWAY (an nginx reload) costs no request. nginx's
//! access log says which protocol each request came over.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const H: &str = "demo.test.proxy.test";

fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx (Debian package nginx; scripts/test installs it)")
}

/// nginx serving HTTP/2 (and HTTP/1.1) over TLS on a free port, proxying
/// to `origin`; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (SIGKILL
        // would leave them running).
        // SAFETY: a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(dir: &Path, origin: std::net::SocketAddr) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format proto '$server_protocol $connection $request_method $request_uri';
    access_log {d}/access.log proto;
    client_body_temp_path {d};
    proxy_temp_path {d};
    fastcgi_temp_path {d};
    uwsgi_temp_path {d};
    scgi_temp_path {d};
    client_max_body_size 64m;
    proxy_request_buffering off;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {d}/app.pem;
        ssl_certificate_key {d}/app.key;
        location / {{
            proxy_pass http://{origin};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $http_connection;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new(nginx_bin())
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        eventually("nginx listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        nginx
    }

    /// Access log lines: (protocol, connection serial, method, target).
    fn log(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                ))
            })
            .collect()
    }

    /// The protocol and connection of the request for `target`, waiting
    /// (to the deadline) for nginx to log it: nginx writes the entry
    /// after the response has gone, so a client can read the response
    /// before the entry exists. `None` if it never appears.
    fn logged(&self, target: &str) -> Option<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let entry = self
                .log()
                .into_iter()
                .find(|(_, _, _, t)| t == target)
                .map(|(p, c, _, _)| (p, c));
            if entry.is_some() || Instant::now() > deadline {
                return entry;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Graceful reload: the old worker sends GOAWAY and finishes.
    fn reload(&self) {
        let pid = std::fs::read_to_string(self.dir.join("nginx.pid")).expect("pid");
        let ok = Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .expect("kill -HUP");
        assert!(ok.success());
    }
}

/// 1 MiB holding every byte value, in an order that repeats rarely.
fn blob() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn app_origin() -> Origin {
    origin(Arc::new(|req: &Request| {
        let path = req.target.split('?').next().unwrap_or("");
        match path {
            "/page" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<a href=\"https://demo.test/next\">next</a>".to_vec(),
            },
            "/stream" => Reply::Chunked {
                headers: vec![("Content-Type".into(), "text/plain".into())],
                chunks: vec![b"one ".to_vec(), b"two ".to_vec(), b"three".to_vec()],
                trailers: String::new(),
            },
            "/upgrade" => Reply::UpgradeEcho,
            "/blob" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: blob(),
            },
            _ => Reply::text(
                200,
                format!("{} {} body={}", req.method, req.target, req.body.len()),
            ),
        }
    }))
}

/// The app (origin behind nginx, its certificate from a CA made here)
/// and a data plane with `args` in front of it.
fn rig(args: &[&str]) -> (tempfile::TempDir, Origin, Nginx, Dataplane) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path(), "app", &["127.0.0.1"]);
    let origin = app_origin();
    let nginx = Nginx::start(dir.path(), origin.addr());
    let policy = policy(
        &format!("https://127.0.0.1:{}", nginx.port),
        &format!(
            "ca_file = {:?}\n",
            dir.path().join("ca.pem").display().to_string()
        ),
    );
    let dp = Dataplane::start(&policy, args);
    (dir, origin, nginx, dp)
}

#[test]
fn an_app_that_offers_h2_is_reached_over_one_multiplexed_connection() {
    let (_dir, origin, nginx, dp) = rig(&[]);

    // A page, rewritten (and instrumented) as ever.
    let r = request(&dp, &get(H, "/page?x=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .ends_with("<a href=\"https://demo.test.proxy.test/next\">next</a>"),
        "{}",
        r.text()
    );
    let (protocol, first_connection) = nginx.logged("/page?x=1").expect("nginx saw the page");
    assert_eq!(protocol, "HTTP/2.0", "the app was reached over HTTP/2");

    // A body with a length, and a chunked one, arrive whole.
    let body: Vec<u8> = blob()[..300_000].to_vec();
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = request(&dp, &req);
    assert_eq!(r.text(), "POST /upload body=300000");
    // Round trip: the app got exactly the bytes sent, and a binary
    // download arrives exactly as the app sent it.
    let got = origin
        .requests()
        .into_iter()
        .find(|q| q.target == "/upload")
        .expect("the upload reached the app");
    assert!(got.body == body, "the upload changed on its way");
    let r = request(&dp, &get(H, "/blob"));
    assert!(r.body == blob(), "the download changed on its way");
    let mut req = format!(
        "POST /chunked HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        req.extend_from_slice(b"2710\r\n");
        req.extend_from_slice(&[b'c'; 10_000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = request(&dp, &req);
    assert_eq!(r.text(), "POST /chunked body=50000");
    // A response without a length; a HEAD.
    let r = request(&dp, &get(H, "/stream"));
    assert_eq!(r.text(), "one two three");
    let r = request(
        &dp,
        format!("HEAD /head HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // 20 requests at once share the one connection.
    std::thread::scope(|s| {
        for i in 0..20 {
            let dp = &dp;
            s.spawn(move || {
                let r = request(dp, &get(H, &format!("/many/{i}")));
                assert_eq!(r.text(), format!("GET /many/{i} body=0"));
            });
        }
    });
    let log = nginx.log();
    for i in 0..20 {
        let (protocol, connection) = nginx
            .logged(&format!("/many/{i}"))
            .unwrap_or_else(|| panic!("/many/{i} not in {log:?}"));
        assert_eq!(protocol, "HTTP/2.0");
        assert_eq!(connection, first_connection, "one connection: {log:?}");
    }
    for path in ["/upload", "/chunked", "/stream", "/head"] {
        assert_eq!(
            nginx.logged(path).map(|(p, _)| p).as_deref(),
            Some("HTTP/2.0"),
            "{path}"
        );
    }

    // An upgrade takes HTTP/1.1, and tunnels.
    let mut s = dp.connect();
    s.write_all(
        format!("GET /upgrade HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let mut reader = Reader::new(&mut s);
    let r = reader.response(false);
    assert_eq!(r.status, 101, "{}", r.text());
    reader.stream.write_all(b"ping").expect("write");
    let mut echo = [0u8; 4];
    std::io::Read::read_exact(reader.stream, &mut echo).expect("echo");
    assert_eq!(&echo, b"ping");
    // nginx logs a tunnelled request once the tunnel closes.
    drop(s);
    eventually("nginx logs the upgrade", || {
        nginx.logged("/upgrade").is_some()
    });
    assert_eq!(
        nginx.logged("/upgrade").map(|(p, _)| p).as_deref(),
        Some("HTTP/1.1")
    );

    // nginx reloads: its old worker sends GOAWAY. Requests keep working,
    // on a new HTTP/2 connection.
    nginx.reload();
    let mut attempt = 0;
    eventually("requests succeed after the app's GOAWAY", || {
        attempt += 1;
        let path = format!("/after-reload/{attempt}");
        let r = request(&dp, &get(H, &path));
        assert_eq!(r.status, 200, "{path} after the reload: {}", r.text());
        nginx
            .logged(&path)
            .is_some_and(|(p, c)| p == "HTTP/2.0" && c != first_connection)
    });
}

#[test]
fn with_upstream_http2_off_the_app_is_reached_over_http1() {
    let (_dir, _origin, nginx, dp) = rig(&["--upstream-http2", "off"]);
    let r = request(&dp, &get(H, "/plain"));
    assert_eq!(r.text(), "GET /plain body=0");
    assert_eq!(
        nginx.logged("/plain").map(|(p, _)| p).as_deref(),
        Some("HTTP/1.1")
    );
}
