//! Session policies end to end: real `controld` and `dataplane`
//! processes, an origin serving files generated here (a .docx zip with a
//! card number in `word/document.xml`, a labelled .xlsx, a labelled PDF,
//! CSVs, an executable, an encrypted document), real multipart and PUT
//! uploads, custom activities and the monitoring notice. Every decision
//! is checked on the wire, at the origin and in the stored activity log.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use support::https::{self, Response};
use support::{Env, Origin, OriginConfig, Proc, Reply, Request};

use palisade_bench::samples::{docx, encrypted_docx, executable, pdf, xlsx, CARD, NOT_A_CARD};

/// The files the origin serves under `/files/<name>` as attachments.
fn files() -> HashMap<String, Vec<u8>> {
    let mut f: HashMap<String, Vec<u8>> = HashMap::new();
    let mut put = |name: &str, bytes: Vec<u8>| {
        f.insert(name.to_string(), bytes);
    };
    put("cards.docx", docx(&format!("Card on file: {CARD}"), None));
    put("cards-clean.docx", docx("No numbers here", None));
    put(
        "cards.csv",
        format!("name,card\nalice,{CARD}\n").into_bytes(),
    );
    put(
        "cards-invalid.csv",
        format!("name,card\nalice,{NOT_A_CARD}\n").into_bytes(),
    );
    put("report.xlsx", xlsx(Some("Confidential")));
    put("public.xlsx", xlsx(Some("Public")));
    put("plain.xlsx", xlsx(None));
    put("plan.pdf", pdf("Internal"));
    put("contract.pdf", pdf("Confidential"));
    put("tool.bin", executable());
    put("detect-ssn.txt", b"Employee SSN: 123-45-6789\n".to_vec());
    put(
        "detect-ssn-invalid.txt",
        b"Not an SSN: 000-12-3456 or 666-12-3456\n".to_vec(),
    );
    put(
        "detect-iban.csv",
        b"payee,iban\nbob,GB82 WEST 1234 5698 7654 32\n".to_vec(),
    );
    put(
        "detect-iban-invalid.csv",
        b"payee,iban\nbob,GB83 WEST 1234 5698 7654 32\n".to_vec(),
    );
    put(
        "detect-aws.json",
        br#"{"key":"AKIAIOSFODNN7EXAMPLE"}"#.to_vec(),
    );
    put(
        "detect-aws-invalid.json",
        br#"{"key":"AKIA-not-a-key"}"#.to_vec(),
    );
    put("detect-key.txt", b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----\n".to_vec());
    put(
        "detect-key-invalid.txt",
        b"We never paste a PRIVATE KEY----- into docs.\n".to_vec(),
    );
    put(
        "kw-twice.html",
        b"<p>Project Falcon is on.</p><p>project falcon ships</p>".to_vec(),
    );
    put("kw-once.html", b"<p>Project Falcon is on.</p>".to_vec());
    put("rx-ticket.txt", b"see TICKET-1234 and TICKET-5678".to_vec());
    put(
        "big-closed.csv",
        format!("a,b\n{}", "x,y\n".repeat(2000)).into_bytes(),
    );
    put(
        "big-open.csv",
        format!("a,b\n{}", "x,y\n".repeat(2000)).into_bytes(),
    );
    put("sized-small.txt", vec![b'a'; 100]);
    put("sized-big.txt", vec![b'a'; 2000]);
    put("secret-closed.docx", encrypted_docx());
    put("secret-open.docx", encrypted_docx());
    f
}

fn origin(files: Arc<HashMap<String, Vec<u8>>>) -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: Arc::new(move |r: &Request| {
            let path = r.target.split('?').next().unwrap_or("");
            if let Some(name) = path.strip_prefix("/files/") {
                if let Some(bytes) = files.get(name) {
                    return Reply::Full {
                        status: 200,
                        headers: vec![
                            ("Content-Type".into(), "application/octet-stream".into()),
                            (
                                "Content-Disposition".into(),
                                format!("attachment; filename=\"{name}\""),
                            ),
                        ],
                        body: bytes.clone(),
                    };
                }
                return Reply::text(404, "no such file");
            }
            if let Some(name) = path.strip_prefix("/gz/") {
                // The same files gzip-encoded, as apps send text.
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(
                    &mut gz,
                    files.get(name).map_or(&[][..], |f| f.as_slice()),
                )
                .expect("gzip");
                return Reply::Full {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "application/octet-stream".into()),
                        ("Content-Encoding".into(), "gzip".into()),
                        (
                            "Content-Disposition".into(),
                            format!("attachment; filename=\"{name}\""),
                        ),
                    ],
                    body: gz.finish().expect("gzip"),
                };
            }
            if let Some(name) = path.strip_prefix("/report/") {
                // A download recognized by the profile's content type only.
                return Reply::Full {
                    status: 200,
                    headers: vec![(
                        "Content-Type".into(),
                        "application/x-acme-report; charset=utf-8".into(),
                    )],
                    body: files.get(name).cloned().unwrap_or_default(),
                };
            }
            if let Some(name) = path.strip_prefix("/export/") {
                // A download recognized by the app profile's path only.
                return Reply::Full {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/csv".into())],
                    body: files.get(name).cloned().unwrap_or_default(),
                };
            }
            Reply::text(
                200,
                format!("app saw {} {} ({} bytes)", r.method, r.target, r.body.len()),
            )
        }),
        tls: None,
        split_writes: false,
        record: true,
    })
    .expect("origin")
}

struct Rig {
    env: Env,
    _controld: Proc,
    _dataplane: Proc,
    addr: SocketAddr,
    /// The HTTPS listener and a client trusting its CA: what
    /// [`Rig::request`] uses when the suite runs over HTTP/2.
    tls: SocketAddr,
    client: https::Client,
    origin: Origin,
    files: Arc<HashMap<String, Vec<u8>>>,
    identity: age::x25519::Identity,
}

const POLICY: &str = r#"
[app.profile]
upload_paths = ["/put/*"]
download_paths = ["/export/*"]
download_content_types = ["application/x-acme-report"]
[[app.profile.activity]]
name = "share"
method = "POST"
path = "/api/share"
[[app.profile.activity]]
name = "print"
method = "GET"
path = "/doc/*"
query_contains = "print=1"
[[app.profile.activity]]
name = "send_message"
method = "POST"
path = "/api/messages"
body_contains = "\"to\":"

[monitoring_notice]
message = "Acme monitors this session."

[[session_policy]]
name = "cards-blocked"
control = "control_download"
devices = ["unmanaged"]
file_names = ["cards*"]
action = "block"
message = "Card data stays in the app."
alert = { severity = "high" }
[session_policy.inspect]
detectors = ["credit_card"]

[[session_policy]]
name = "labelled-protected"
control = "control_download"
labels = ["Confidential"]
action = "protect"
recipients = ["RECIPIENT"]

[[session_policy]]
name = "executables-blocked"
control = "control_download"
file_types = ["executable"]
action = "block"

[[session_policy]]
name = "pdf-audit"
control = "control_download"
extensions = ["pdf"]
action = "audit"

[[session_policy]]
name = "detectors"
control = "control_download"
file_names = ["detect-*"]
action = "block"
[session_policy.inspect]
detectors = ["ssn", "iban", "aws_key", "private_key"]

[[session_policy]]
name = "keywords"
control = "control_download"
file_names = ["kw-*", "rx-*"]
action = "block"
[session_policy.inspect]
keywords = ["project falcon"]
regexes = ["TICKET-[0-9]{4}"]
min_matches = 2

[[session_policy]]
name = "size"
control = "control_download"
file_names = ["sized-*"]
min_size = 1000
action = "block"

[[session_policy]]
name = "limit-closed"
control = "control_download"
file_names = ["big-closed*", "secret-closed*"]
action = "block"
[session_policy.inspect]
detectors = ["credit_card"]
max_bytes = 1000
on_uninspectable = "apply"

[[session_policy]]
name = "limit-open"
control = "control_download"
file_names = ["big-open*", "secret-open*"]
action = "block"
[session_policy.inspect]
detectors = ["credit_card"]
max_bytes = 1000
on_uninspectable = "allow"

[[session_policy]]
name = "uploads"
control = "control_upload"
action = "block"
message = "No card numbers in uploads."
[session_policy.inspect]
detectors = ["credit_card"]

[[session_policy]]
name = "no-sharing"
control = "block_activities"
activities = ["share", "send_message"]

[[session_policy]]
name = "watch"
control = "monitor"
"#;

fn rig() -> Rig {
    let env = Env::new();
    let files = Arc::new(files());
    let origin = origin(files.clone());
    let identity = age::x25519::Identity::generate();
    env.app_certificates("certs", &[("demo", "demo.test")]);
    let policy_text = format!(
        "tls_cert = \"certs/demo.pem\"\ntls_key = \"certs/demo.key\"\n{}",
        POLICY.replace("RECIPIENT", &identity.to_public().to_string())
    );
    let policy = env.policy("policy.toml", origin.addr(), &policy_text);
    let controld = env.controld(&policy, &[]);
    let (dataplane, addr, tls) = env.dataplane_tls(1, &[]);
    env.wait_for_cores(1, 1);
    let client = https::Client::new(&env.path("ca/ca.pem"), None);
    Rig {
        env,
        _controld: controld,
        _dataplane: dataplane,
        addr,
        tls,
        client,
        origin,
        files,
        identity,
    }
}

impl Rig {
    /// One request on a new connection: plain HTTP/1.1, or HTTP/2 over
    /// TLS when the suite runs over HTTP/2.
    fn request(&self, request: &str) -> Response {
        if https::over_http2() {
            return self
                .client
                .request(self.tls, "demo.test.proxy.test", request);
        }
        let mut conn = TcpStream::connect(self.addr).expect("connect");
        https::send(&mut conn, request);
        https::read_response(&mut conn)
    }

    fn get(&self, target: &str, headers: &str) -> Response {
        self.request(&format!(
            "GET {target} HTTP/1.1\r\nHost: demo.test.proxy.test\r\n{headers}Connection: close\r\n\r\n"
        ))
    }

    fn download(&self, name: &str) -> Response {
        self.get(&format!("/files/{name}"), "")
    }

    fn origin_saw(&self, target: &str) -> bool {
        self.origin.requests().iter().any(|r| r.target == target)
    }

    /// The activity records, once `n` are stored.
    fn activities(&self, n: usize) -> Vec<serde_json::Value> {
        self.env.wait_for_records("activity", n)
    }
}

fn disposition(r: &Response) -> String {
    r.header("content-disposition").unwrap_or("").to_string()
}

fn assert_blocked(r: &Response, name: &str) {
    assert_eq!(r.status, 200, "{name}: {r:?}");
    assert!(
        disposition(r).contains(&format!("filename=\"{name}.blocked.txt\"")),
        "{name}: {:?}",
        disposition(r)
    );
    assert!(
        r.body.starts_with("Download restricted"),
        "{name}: {}",
        r.body
    );
}

fn assert_untouched(rig: &Rig, r: &Response, name: &str) {
    assert_eq!(r.status, 200, "{name}");
    assert_eq!(r.bytes, rig.files[name], "{name}: bytes changed on the way");
    assert!(
        disposition(r).contains(&format!("filename=\"{name}\"")),
        "{name}"
    );
}

/// The activity record of the download of `file`.
fn record_of<'a>(
    records: &'a [serde_json::Value],
    activity: &str,
    file: &str,
) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["activity"] == activity && r["file_name"] == file)
        .unwrap_or_else(|| panic!("no {activity} record for {file}: {records:#?}"))
}

#[test]
fn downloads_are_blocked_protected_or_audited_by_file_and_content() {
    let rig = rig();
    // Content inspection inside a .docx (inflated word/document.xml).
    let r = rig.download("cards.docx");
    assert_blocked(&r, "cards.docx");
    assert!(r.body.contains("Card data stays in the app."), "{}", r.body);
    assert_untouched(&rig, &rig.download("cards-clean.docx"), "cards-clean.docx");
    // A CSV: a real card blocks, a Luhn-invalid number passes.
    assert_blocked(&rig.download("cards.csv"), "cards.csv");
    assert_untouched(
        &rig,
        &rig.download("cards-invalid.csv"),
        "cards-invalid.csv",
    );

    // Label filter and protect: the file arrives encrypted to the
    // policy's recipient and decrypts to the original bytes.
    let r = rig.download("report.xlsx");
    assert_eq!(r.status, 200);
    assert!(
        disposition(&r).contains("filename=\"report.xlsx.age\""),
        "{:?}",
        disposition(&r)
    );
    assert!(
        r.bytes.starts_with(b"age-encryption.org/v1"),
        "not an age file"
    );
    let plain = age::decrypt(&rig.identity, &r.bytes).expect("decrypts with the policy's identity");
    assert_eq!(plain, rig.files["report.xlsx"]);
    assert_untouched(&rig, &rig.download("public.xlsx"), "public.xlsx");
    // A PDF's label from its metadata: protect beats the PDF audit policy.
    let r = rig.download("contract.pdf");
    assert!(
        disposition(&r).contains("filename=\"contract.pdf.age\""),
        "{:?}",
        disposition(&r)
    );
    assert_eq!(
        age::decrypt(&rig.identity, &r.bytes).expect("decrypts"),
        rig.files["contract.pdf"]
    );
    assert_untouched(&rig, &rig.download("plain.xlsx"), "plain.xlsx");

    // Content-encoded downloads are inspected and protected decoded.
    assert_blocked(
        &rig.get("/gz/cards.csv", "Accept-Encoding: gzip\r\n"),
        "cards.csv",
    );
    let r = rig.get("/gz/report.xlsx", "Accept-Encoding: gzip\r\n");
    assert!(
        disposition(&r).contains("filename=\"report.xlsx.age\""),
        "{r:?}"
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        age::decrypt(&rig.identity, &r.bytes).expect("decrypts"),
        rig.files["report.xlsx"]
    );
    // A byte range cannot slip a controlled file past inspection: the app
    // is asked for the whole file.
    assert_blocked(
        &rig.get("/files/cards.csv", "Range: bytes=0-3\r\n"),
        "cards.csv",
    );
    assert!(
        rig.origin
            .requests()
            .iter()
            .all(|r| r.header("range").is_none()),
        "a Range reached the app"
    );

    // Type filter from magic bytes (the name says nothing).
    assert_blocked(&rig.download("tool.bin"), "tool.bin");
    // Extension filter with audit: through untouched, logged.
    assert_untouched(&rig, &rig.download("plan.pdf"), "plan.pdf");
    // A download recognized by the profile's path, not by a disposition
    // (named by the path's last segment).
    assert_blocked(&rig.get("/export/cards.csv", ""), "cards.csv");
    // ... and by the profile's content type.
    assert_blocked(&rig.get("/report/cards.csv", ""), "cards.csv");
    let r = rig.get("/export/cards-invalid.csv", "");
    assert_eq!(r.bytes, rig.files["cards-invalid.csv"]);

    let records = rig.activities(16);
    // (file, action, deciding policy, found in the detail); passed files
    // are logged under the monitor policy.
    for (file, action, policy, found) in [
        (
            "cards.docx",
            "block",
            "cards-blocked",
            "type=docx credit_card=1",
        ),
        (
            "report.xlsx",
            "protect",
            "labelled-protected",
            "label=Confidential",
        ),
        (
            "contract.pdf",
            "protect",
            "labelled-protected",
            "label=Confidential",
        ),
        ("plan.pdf", "audit", "pdf-audit", "label=Internal"),
        (
            "tool.bin",
            "block",
            "executables-blocked",
            "type=executable",
        ),
        ("cards-invalid.csv", "monitor", "watch", "type=text"),
    ] {
        let rec = record_of(&records, "download", file);
        assert_eq!(
            (rec["action"].as_str(), rec["policy"].as_str()),
            (Some(action), Some(policy)),
            "{file}"
        );
        let detail = rec["detail"].as_str().unwrap_or("");
        assert!(detail.contains(found), "{file}: {detail:?}");
    }
    // The blocking policy's alert.
    support::eventually("the cards-blocked alert", || {
        rig.env.alerts().iter().any(|a| {
            a["policy"] == "session policy: cards-blocked" && a["file_name"] == "cards.docx"
        })
    });
}

#[test]
fn each_detector_finds_true_positives_and_passes_false_ones() {
    let rig = rig();
    for name in [
        "detect-ssn.txt",
        "detect-iban.csv",
        "detect-aws.json",
        "detect-key.txt",
    ] {
        assert_blocked(&rig.download(name), name);
    }
    for name in [
        "detect-ssn-invalid.txt",
        "detect-iban-invalid.csv",
        "detect-aws-invalid.json",
        "detect-key-invalid.txt",
    ] {
        assert_untouched(&rig, &rig.download(name), name);
    }
    // Keywords (case-insensitive) and regexes need two matches each.
    assert_blocked(&rig.download("kw-twice.html"), "kw-twice.html");
    assert_untouched(&rig, &rig.download("kw-once.html"), "kw-once.html");
    assert_blocked(&rig.download("rx-ticket.txt"), "rx-ticket.txt");
    // The size filter.
    assert_blocked(&rig.download("sized-big.txt"), "sized-big.txt");
    assert_untouched(&rig, &rig.download("sized-small.txt"), "sized-small.txt");
    let records = rig.activities(13);
    for (file, want) in [
        ("detect-ssn.txt", "ssn=1"),
        ("detect-iban.csv", "iban=1"),
        ("detect-aws.json", "aws_key=1"),
        ("detect-key.txt", "private_key=1"),
        ("kw-twice.html", "keyword#1=2"),
        ("rx-ticket.txt", "regex#1=2"),
    ] {
        let rec = record_of(&records, "download", file);
        assert_eq!(rec["action"], "block", "{file}");
        assert!(
            rec["detail"].as_str().unwrap_or("").contains(want),
            "{file}: {rec}"
        );
    }
}

#[test]
fn uninspectable_files_fail_open_or_closed_as_configured() {
    let rig = rig();
    // Over max_bytes (1000) and encrypted: closed blocks, open passes.
    assert_blocked(&rig.download("big-closed.csv"), "big-closed.csv");
    assert_untouched(&rig, &rig.download("big-open.csv"), "big-open.csv");
    assert_blocked(&rig.download("secret-closed.docx"), "secret-closed.docx");
    assert_untouched(&rig, &rig.download("secret-open.docx"), "secret-open.docx");
    let records = rig.activities(4);
    for (file, why) in [
        ("big-closed.csv", "too big"),
        ("big-open.csv", "too big"),
        ("secret-closed.docx", "encrypted"),
        ("secret-open.docx", "encrypted"),
    ] {
        let rec = record_of(&records, "download", file);
        assert!(
            rec["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("not inspected: {why}")),
            "{file}: {rec}"
        );
    }
    assert_eq!(
        record_of(&records, "download", "big-closed.csv")["action"],
        "block"
    );
    assert_eq!(
        record_of(&records, "download", "big-open.csv")["action"],
        "monitor"
    );
}

fn multipart(name: &str, content: &str) -> (String, String) {
    let boundary = "----palisadetest";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/csv\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn uploads_with_card_numbers_are_refused_before_the_app_sees_them() {
    let rig = rig();
    let post = |target: &str, content_type: &str, body: &str, accept: &str| {
        rig.request(&format!(
            "POST {target} HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{accept}Connection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let (ct, body) = multipart("payroll.csv", &format!("name,card\nbob,{CARD}"));
    let r = post("/upload-1", &ct, &body, "Accept: application/json\r\n");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("No card numbers in uploads."), "{}", r.body);
    assert!(
        !rig.origin_saw("/upload-1"),
        "a blocked upload reached the app"
    );
    let (ct, body) = multipart("payroll.csv", &format!("name,card\nbob,{NOT_A_CARD}"));
    let r = post("/upload-2", &ct, &body, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(rig.origin_saw("/upload-2"));
    // A PUT to a profile upload path: the body is the file.
    let r = rig.request(&format!(
        "PUT /put/cards.csv HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: {}\r\n\r\n{CARD}",
        CARD.len()
    ));
    assert_eq!(r.status, 403);
    assert!(!rig.origin_saw("/put/cards.csv"));
    // The connection survives a refused upload whose body was read whole.
    let mut conn = TcpStream::connect(rig.addr).expect("connect");
    https::send(
        &mut conn,
        &format!(
        "PUT /put/a.csv HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: {}\r\n\r\n{CARD}",
        CARD.len()
    ),
    );
    assert_eq!(https::read_response(&mut conn).status, 403);
    https::send(
        &mut conn,
        "GET /after HTTP/1.1\r\nHost: demo.test.proxy.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(https::read_response(&mut conn).status, 200);
    assert!(rig.origin_saw("/after") && !rig.origin_saw("/put/a.csv"));

    // A client that waits for 100 Continue gets it before its body is
    // held for inspection (once).
    let mut conn = TcpStream::connect(rig.addr).expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    https::send(&mut conn, &format!(
        "PUT /put/e.csv HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        CARD.len()
    ));
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut conn, &mut interim).expect("100 Continue before the body");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    https::send(&mut conn, CARD);
    assert_eq!(https::read_response(&mut conn).status, 403);

    let records = rig.activities(5);
    let rec = record_of(&records, "upload", "payroll.csv");
    assert_eq!(
        (rec["action"].as_str(), rec["policy"].as_str()),
        (Some("block"), Some("uploads"))
    );
    assert_eq!(
        record_of(&records, "upload", "cards.csv")["action"],
        "block"
    );
}

#[test]
fn custom_activities_are_recognized_and_blocked() {
    let rig = rig();
    let r = rig.request("POST /api/share HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!rig.origin_saw("/api/share"));
    // The body marker decides: a message is blocked, a draft is not.
    let msg = r#"{"to":"eve","text":"hi"}"#;
    let r = rig.request(&format!("POST /api/messages HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len()));
    assert_eq!(r.status, 403);
    let draft = r#"{"text":"draft"}"#;
    let r = rig.request(&format!("POST /api/messages HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{draft}", draft.len()));
    assert_eq!(r.status, 200);
    assert_eq!(
        rig.origin
            .requests()
            .iter()
            .filter(|r| r.target == "/api/messages")
            .count(),
        1
    );
    // Recognized but not blocked: logged under the monitor policy.
    assert_eq!(rig.get("/doc/7?print=1", "").status, 200);
    assert_eq!(rig.get("/doc/7", "").status, 200);
    let records = rig.activities(3);
    let names: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["activity"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or(""),
                r["policy"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        names.contains(&("share", "block", "no-sharing")),
        "{names:?}"
    );
    assert!(
        names.contains(&("send_message", "block", "no-sharing")),
        "{names:?}"
    );
    assert!(names.contains(&("print", "monitor", "watch")), "{names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn the_monitoring_notice_is_shown_once_per_session() {
    let rig = rig();
    let html = "Accept: text/html,application/xhtml+xml\r\n";
    let r = rig.get("/home", html);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-palisade-session"), Some("notice"));
    assert!(r.body.contains("Acme monitors this session."), "{}", r.body);
    assert!(
        !rig.origin_saw("/home"),
        "the app was reached before the notice"
    );
    // Scripts and API calls are never replaced by the notice.
    assert!(rig
        .get("/app.js", "Accept: */*\r\n")
        .body
        .starts_with("app saw"));
    // Continue: a cookie and back to the page.
    let href = r
        .body
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("continue link")
        .to_string();
    assert_eq!(href, "/.palisade/notice?return=/home");
    let r = rig.get(&href, html);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/home"));
    let cookie = https::cookie(&r.headers_named("set-cookie"), "palisade_notice")
        .expect("notice cookie")
        .to_string();
    let with_cookie = format!("{html}Cookie: palisade_notice={cookie}\r\n");
    for _ in 0..2 {
        let r = rig.get("/home", &with_cookie);
        assert!(r.body.starts_with("app saw GET /home"), "{}", r.body);
    }
    // The app never sees the proxy's cookie.
    let seen = rig
        .origin
        .requests()
        .into_iter()
        .find(|r| r.target == "/home")
        .expect("home");
    assert!(seen
        .header("cookie")
        .is_none_or(|c| !c.contains("palisade_notice")));
    // A forged or missing acknowledgement shows the notice again.
    assert_eq!(
        rig.get(
            "/home",
            &format!("{html}Cookie: palisade_notice=n.forged\r\n")
        )
        .header("x-palisade-session"),
        Some("notice")
    );
    assert_eq!(
        rig.get("/home", html).header("x-palisade-session"),
        Some("notice")
    );
}

#[test]
fn session_policies_are_checked_at_compile_time_with_locations() {
    let env = Env::new();
    let origin: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for (extra, want) in [
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_everything\"\naction = \"block\"\n", "unknown control"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_download\"\naction = \"protect\"\n", "protect needs recipients"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_download\"\naction = \"protect\"\nrecipients = [\"age1nope\"]\n", "bad age recipient"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_download\"\naction = \"block\"\nfile_types = [\"spreadsheet\"]\n", "unknown file type"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_download\"\naction = \"block\"\n[session_policy.inspect]\ndetectors = [\"passport\"]\n", "unknown detector"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_download\"\naction = \"block\"\n[session_policy.inspect]\nregexes = [\"(\"]\n", "bad regex"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"block_activities\"\nactivities = [\"teleport\"]\n", "no app profile defines activity"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"control_upload\"\naction = \"block\"\ndevices = [\"toaster\"]\n", "unknown device tag"),
        ("[[session_policy]]\nname = \"x\"\ncontrol = \"monitor\"\nextensions = [\"pdf\"]\n", "file filters and inspect need"),
    ] {
        let path = env.policy("bad.toml", origin, extra);
        let out = env.cli_offline(&["validate", path.to_str().expect("path")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra} was accepted");
        assert!(err.contains(want) && err.contains("bad.toml:"), "{extra}: {err}");
    }
}
