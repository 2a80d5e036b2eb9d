//! SIEM export against a real syslog daemon: rsyslog (Debian `rsyslog`,
//! `rsyslog-gnutls` for TLS) on loopback receives every activity record
//! and alert as CEF in RFC 5424 syslog, including records stored while it
//! was stopped. rsyslog parses the syslog header itself (its
//! `%protocol-version%`, `%app-name%` and `%msgid%` properties are written
//! out); the test parses the CEF.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const HOST: &str = "demo.test.proxy.test";

fn rsyslogd() -> PathBuf {
    let path = PathBuf::from(std::env::var("RSYSLOGD").unwrap_or("/usr/sbin/rsyslogd".into()));
    assert!(
        path.exists(),
        "{} is missing: install rsyslog and rsyslog-gnutls (scripts/test does)",
        path.display()
    );
    path
}

/// An rsyslogd in the foreground with its own configuration, work
/// directory and output file; killed on drop.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How rsyslog listens.
#[derive(Clone, Copy)]
enum Listen {
    /// TCP with TLS (gtls), on a port (0: any; the port is written to
    /// `port` in the directory).
    Tls(u16),
    Tcp(u16),
    Udp(u16),
    /// RELP (imrelp, Debian `rsyslog-relp`) on a port.
    Relp(u16),
}

impl Rsyslog {
    fn start(dir: &Path, listen: Listen) -> Rsyslog {
        std::fs::create_dir_all(dir.join("work")).expect("work dir");
        let d = dir.display();
        let _ = std::fs::remove_file(dir.join("port"));
        let input = match listen {
            Listen::Tls(port) => format!(
                "global(workDirectory=\"{d}/work\" defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{d}/ca.pem\" defaultNetstreamDriverCertFile=\"{d}/cert.pem\" defaultNetstreamDriverKeyFile=\"{d}/key.pem\")\n\
                 module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{d}/port\")\n"
            ),
            Listen::Tcp(port) => format!(
                "global(workDirectory=\"{d}/work\")\nmodule(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{d}/port\")\n"
            ),
            Listen::Relp(port) => format!(
                "global(workDirectory=\"{d}/work\")\nmodule(load=\"imrelp\")\n\
                 input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\")\n"
            ),
            Listen::Udp(port) => format!(
                "global(workDirectory=\"{d}/work\")\nmodule(load=\"imudp\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n"
            ),
        };
        let config = format!(
            "{input}\
             template(name=\"palisade\" type=\"string\" string=\"%protocol-version% %app-name% %msgid% %msg%\\n\")\n\
             if $app-name == \"palisade\" then {{\n  action(type=\"omfile\" file=\"{d}/out.log\" template=\"palisade\")\n}}\n"
        );
        std::fs::write(dir.join("rsyslog.conf"), config).expect("config");
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        Rsyslog {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// Waits until rsyslog listens on `port` (it writes the port file only
    /// for a port it picked).
    fn wait_listening(&mut self, port: u16) {
        eventually(&format!("rsyslog listens on {port}"), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited: {status}");
            }
            bound("tcp", port)
        });
    }

    /// The port rsyslog reports it listens on.
    fn port(&mut self) -> u16 {
        let mut port = 0;
        eventually("rsyslog writes its port", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited: {status}");
            }
            port = std::fs::read_to_string(self.dir.join("port"))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            port != 0
        });
        port
    }

    /// Stops rsyslog the way the service manager does (SIGTERM) and waits
    /// for it to exit.
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    /// Every message received so far, parsed.
    fn received(&self) -> Vec<Received> {
        std::fs::read_to_string(self.dir.join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(Received::parse)
            .collect()
    }
}

/// Whether a socket of `proto` (`tcp`, `udp`) is bound to 127.0.0.1:`port`
/// (listening, for TCP), per /proc/net.
fn bound(proto: &str, port: u16) -> bool {
    let table = std::fs::read_to_string(format!("/proc/net/{proto}")).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == local && (proto == "udp" || f[3] == "0A")
    })
}

/// One message as rsyslog parsed it, with its CEF parsed here.
#[derive(Debug, Clone)]
struct Received {
    msgid: String,
    class: String,
    name: String,
    severity: u8,
    ext: BTreeMap<String, String>,
}

impl Received {
    fn parse(line: &str) -> Received {
        let mut parts = line.splitn(4, ' ');
        let (version, app, msgid, msg) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        assert_eq!(version, "1", "rsyslog parsed an RFC 5424 message: {line}");
        assert_eq!(app, "palisade", "{line}");
        let (header, extension) = cef_header(msg).unwrap_or_else(|| panic!("not CEF: {line}"));
        assert_eq!(
            &header[..4],
            ["CEF:0", "Palisade", "Palisade", env!("CARGO_PKG_VERSION")]
        );
        Received {
            msgid: msgid.to_string(),
            class: header[4].clone(),
            name: header[5].clone(),
            severity: header[6].parse().expect("CEF severity"),
            ext: cef_extension(extension),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.ext.get(key).map(String::as_str).unwrap_or("")
    }
}

/// The seven `|`-separated CEF header fields (unescaped) and the rest.
fn cef_header(msg: &str) -> Option<(Vec<String>, &str)> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = msg.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => field.push(chars.next()?.1),
            '|' => {
                fields.push(std::mem::take(&mut field));
                if fields.len() == 7 {
                    return Some((fields, &msg[i + 1..]));
                }
            }
            c => field.push(c),
        }
    }
    None
}

/// CEF extension `key=value` pairs: a key is a run of word characters
/// before an unescaped `=`; a value runs to the space before the next key.
fn cef_extension(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Split at unescaped '=' positions, remembering escapes.
    let mut pieces: Vec<String> = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => pieces.last_mut().unwrap().push('\n'),
                Some('r') => pieces.last_mut().unwrap().push('\r'),
                Some(e) => pieces.last_mut().unwrap().push(e),
                None => {}
            },
            '=' => pieces.push(String::new()),
            c => pieces.last_mut().unwrap().push(c),
        }
    }
    // pieces: key0, "value0 key1", "value1 key2", …, valueN
    let mut key = pieces[0].trim().to_string();
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let (value, next) = if i + 1 == pieces.len() {
            (piece.as_str(), "")
        } else {
            piece.rsplit_once(' ').expect("a key after a value")
        };
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "CEF key {key:?} in {text}"
        );
        out.insert(std::mem::take(&mut key), value.to_string());
        key = next.to_string();
    }
    out
}

fn app_origin() -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: Arc::new(|r: &Request| {
            if r.target.starts_with("/gone") {
                Reply::text(404, "gone")
            } else {
                Reply::text(200, "page")
            }
        }),
        tls: None,
        split_writes: false,
        record: false,
    })
    .expect("origin")
}

fn get(addr: SocketAddr, target: &str, user_agent: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("send");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf).expect("response").0
}

/// Record ids in the store, by URL.
fn stored(env: &Env, n: usize) -> BTreeMap<i64, serde_json::Value> {
    env.wait_for_records("traffic", n)
        .into_iter()
        .map(|r| (r["id"].as_i64().expect("id"), r))
        .collect()
}

/// Waits until rsyslog received every stored record (by `externalId`) and
/// `alerts` alerts; returns what it received.
fn wait_for_all(
    syslog: &Rsyslog,
    records: &BTreeMap<i64, serde_json::Value>,
    alerts: usize,
) -> Vec<Received> {
    let mut got = Vec::new();
    palisade_bench::testing::eventually_within(
        &format!("rsyslog has {} records and {alerts} alerts", records.len()),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            got = syslog.received();
            let ids: BTreeSet<i64> = got
                .iter()
                .filter(|m| m.msgid == "traffic")
                .filter_map(|m| m.get("externalId").parse().ok())
                .collect();
            let n_alerts = got
                .iter()
                .filter(|m| m.msgid == "alert")
                .map(|m| m.get("externalId"))
                .collect::<BTreeSet<_>>()
                .len();
            records.keys().all(|id| ids.contains(id)) && n_alerts >= alerts
        },
    );
    got
}

/// Each received record says what the store says.
fn check_against_store(got: &[Received], records: &BTreeMap<i64, serde_json::Value>) {
    for m in got.iter().filter(|m| m.msgid == "traffic") {
        let id: i64 = m.get("externalId").parse().expect("externalId");
        let Some(r) = records.get(&id) else { continue };
        assert_eq!(m.class, "traffic");
        assert_eq!(m.get("request"), r["url"].as_str().unwrap(), "{m:?}");
        assert_eq!(m.get("suser"), r["user"].as_str().unwrap(), "{m:?}");
        assert_eq!(m.get("src"), r["client_ip"].as_str().unwrap(), "{m:?}");
        assert_eq!(m.get("requestMethod"), "GET");
        assert_eq!(
            m.get("requestClientApplication"),
            r["user_agent"].as_str().unwrap()
        );
        assert_eq!(m.get("cs1Label"), "app");
        assert_eq!(m.get("cs1"), "demo");
        assert_eq!(m.get("cn1Label"), "httpStatus");
        assert_eq!(m.get("cn1"), r["status"].to_string(), "{m:?}");
        assert_eq!(m.get("act"), r["action"].as_str().unwrap());
        assert_eq!(m.get("out"), r["bytes_down"].to_string());
        assert!((0..=10).contains(&m.severity));
        let rt_ms: i64 = m.get("rt").parse().expect("rt");
        let time = humantime::parse_rfc3339(r["time"].as_str().unwrap()).expect("time");
        let time_ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(rt_ms as u128, time_ms, "{m:?}");
    }
}

#[test]
fn every_record_and_alert_reaches_rsyslog_over_tls_also_those_stored_while_it_was_down() {
    let env = Env::new();
    let dir = env.path("rsyslog");
    std::fs::create_dir_all(&dir).expect("dir");
    loopback_certificate(&dir);
    let mut syslog = Rsyslog::start(&dir, Listen::Tls(0));
    let port = syslog.port();
    let origin = app_origin();
    let policy = env.policy(
        "p.toml",
        origin.addr(),
        "\n[[activity_policy]]\nname = \"not-found\"\nstatuses = [404]\nalert = { severity = \"high\" }\n",
    );
    let url = format!("syslog+tls://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let _controld = env.controld(
        &policy,
        &["--siem", &url, "--siem-ca", ca.to_str().unwrap()],
    );
    let (_dp, addr) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);

    // Before the outage: five pages and one 404 (an alert).
    for i in 0..5 {
        assert_eq!(get(addr, &format!("/page/{i}"), "before/1"), 200);
    }
    assert_eq!(get(addr, "/gone/1", "before/1"), 404);
    let records = stored(&env, 6);
    let got = wait_for_all(&syslog, &records, 1);
    check_against_store(&got, &records);
    let alert = got.iter().find(|m| m.msgid == "alert").expect("alert");
    assert_eq!(alert.class, "alert");
    assert_eq!(alert.name, "alert: not-found");
    assert_eq!(alert.get("cs2"), "not-found");
    assert_eq!(alert.get("cs6"), "high");
    assert_eq!(alert.get("request"), format!("http://demo.test/gone/1"));
    assert_eq!(alert.severity, 8);

    // The outage: records stored while rsyslog is down wait for it.
    syslog.stop();
    for i in 0..8 {
        assert_eq!(get(addr, &format!("/page/down{i}"), "during/1"), 200);
    }
    assert_eq!(get(addr, "/gone/2", "during/1"), 404);
    let records = stored(&env, 15);
    // controld keeps trying (status and metrics say so) while the rows
    // wait in the store.
    eventually("the export failing for a while", || {
        let st = env.status();
        let d = &st["siem"][0];
        d["failures"].as_u64().unwrap_or(0) >= 3
            && !d["last_error"].as_str().unwrap_or("").is_empty()
    });
    let metrics = env.cli(&["status", "--prometheus"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains(&format!("palisade_siem_failing{{destination=\"{url}\"}} 1")),
        "{metrics}"
    );
    // Back on the same port, appending to the same file.
    let mut syslog = Rsyslog::start(&dir, Listen::Tls(port));
    syslog.wait_listening(port);
    for i in 0..3 {
        assert_eq!(get(addr, &format!("/page/after{i}"), "after/1"), 200);
    }
    let records = {
        let mut all = records;
        all.extend(stored(&env, 18));
        all
    };
    assert_eq!(records.len(), 18);
    let got = wait_for_all(&syslog, &records, 2);
    check_against_store(&got, &records);
    let urls: BTreeSet<&str> = got
        .iter()
        .filter(|m| m.msgid == "traffic")
        .map(|m| m.get("request"))
        .collect();
    for i in 0..8 {
        assert!(
            urls.contains(format!("http://demo.test/page/down{i}").as_str()),
            "{urls:?}"
        );
    }
}

#[test]
fn plain_tcp_and_udp_receivers_get_the_records_too() {
    let env = Env::new();
    let tcp_dir = env.path("tcp");
    let mut tcp = Rsyslog::start(&tcp_dir, Listen::Tcp(0));
    let tcp_port = tcp.port();
    // imudp cannot report a port it picked: take a free one.
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let udp = Rsyslog::start(&env.path("udp"), Listen::Udp(udp_port));
    let origin = app_origin();
    let policy = env.policy("p.toml", origin.addr(), "");
    let (tcp_url, udp_url) = (
        format!("syslog+tcp://127.0.0.1:{tcp_port}"),
        format!("syslog+udp://127.0.0.1:{udp_port}"),
    );
    // rsyslog's UDP socket may not be bound yet: the export starts with
    // the first record after it is (UDP has no acknowledgement).
    eventually("rsyslog listens on UDP", || {
        std::fs::read_to_string("/proc/net/udp")
            .is_ok_and(|t| t.contains(&format!("0100007F:{udp_port:04X}")))
    });
    let _controld = env.controld(&policy, &["--siem", &tcp_url, "--siem", &udp_url]);
    let (_dp, addr) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);
    for i in 0..4 {
        assert_eq!(get(addr, &format!("/page/{i}"), "plain/1"), 200);
    }
    let records = stored(&env, 4);
    for syslog in [&tcp, &udp] {
        let got = wait_for_all(syslog, &records, 0);
        check_against_store(&got, &records);
    }
}

/// A TCP port nothing listens on now (imrelp cannot report one it picked).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn a_relp_receiver_acknowledges_every_record_also_across_a_restart() {
    let env = Env::new();
    let dir = env.path("relp");
    let port = free_tcp_port();
    let mut syslog = Rsyslog::start(&dir, Listen::Relp(port));
    syslog.wait_listening(port);
    let origin = app_origin();
    let policy = env.policy(
        "p.toml",
        origin.addr(),
        "\n[[activity_policy]]\nname = \"not-found\"\nstatuses = [404]\nalert = { severity = \"high\" }\n",
    );
    let url = format!("relp://127.0.0.1:{port}");
    let _controld = env.controld(&policy, &["--siem", &url]);
    let (_dp, addr) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);
    for i in 0..5 {
        assert_eq!(get(addr, &format!("/page/{i}"), "relp/1"), 200);
    }
    assert_eq!(get(addr, "/gone/1", "relp/1"), 404);
    let records = stored(&env, 6);
    let got = wait_for_all(&syslog, &records, 1);
    check_against_store(&got, &records);
    // The mark moved only over what rsyslog answered: status says so.
    eventually("the export caught up", || {
        let st = env.status();
        let d = &st["siem"][0];
        d["sent"].as_u64() == Some(7) && d["last_error"].as_str() == Some("")
    });

    // rsyslog stopped, records stored meanwhile, rsyslog back on the same
    // port: every record arrives.
    syslog.stop();
    for i in 0..6 {
        assert_eq!(get(addr, &format!("/page/down{i}"), "relp/2"), 200);
    }
    let records = stored(&env, 12);
    eventually("the export failing while rsyslog is down", || {
        env.status()["siem"][0]["failures"].as_u64().unwrap_or(0) >= 1
    });
    let mut syslog = Rsyslog::start(&dir, Listen::Relp(port));
    syslog.wait_listening(port);
    let got = wait_for_all(&syslog, &records, 1);
    check_against_store(&got, &records);
}
