//! E-mailed alerts against a real SMTP server: aiosmtpd (PyPI) on
//! loopback, STARTTLS required, SMTP AUTH with the credentials file, the
//! first message refused with a temporary 451. A signed-in user trips an
//! alert policy four times; its daily limit of two lets exactly two mails
//! through (the first after a retry), each naming the policy, severity,
//! user and URL.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use support::signin::*;
use support::*;

/// A Python with aiosmtpd: `PALISADE_PYTHON`, the virtual environment
/// scripts/test makes (target/pyenv), or python3.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python3");
    let python = std::env::var_os("PALISADE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(if venv.exists() {
            venv
        } else {
            "python3".into()
        });
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import aiosmtpd: run scripts/test (it installs it into target/pyenv) or pip install aiosmtpd",
        python.display()
    );
    python
}

struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    fn start(env: &Env, user: &str, password: &str) -> SmtpServer {
        let dir = env.path("smtp");
        let out = dir.join("mail");
        std::fs::create_dir_all(&out).expect("dir");
        loopback_certificate(&dir);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .args([user, password])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read port line");
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("SMTP server said {line:?}"));
        SmtpServer { child, port, out }
    }

    /// The messages received, in order.
    fn mails(&self) -> Vec<String> {
        let mut names: Vec<(u32, PathBuf)> = std::fs::read_dir(&self.out)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let p = e.path();
                        let n = p
                            .file_name()?
                            .to_str()?
                            .strip_suffix(".eml")?
                            .parse()
                            .ok()?;
                        Some((n, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).expect("read mail"))
            .collect()
    }
}

/// The mail body with quoted-printable soft line breaks joined and
/// `=XX` escapes decoded (lettre picks the transfer encoding).
fn decoded(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn alert_mails_arrive_over_starttls_with_auth_and_the_daily_limit_holds() {
    let env = Env::new();
    let smtp = SmtpServer::start(&env, "palisade", "s3cret:with-colon");
    let credentials = env.path("smtp-credentials");
    std::fs::write(&credentials, "palisade:s3cret:with-colon\n").expect("write");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let relay = format!("127.0.0.1:{}", smtp.port);
    let ca = env.path("smtp/ca.pem");
    let rig = rig_with(
        env,
        "\n[[activity_policy]]\nname = \"secret pages\"\nurl_contains = \"/secret\"\nalert = { severity = \"high\", daily_limit = 2 }\n",
        &[
            "--alert-smtp",
            &relay,
            "--alert-smtp-credentials",
            credentials.to_str().unwrap(),
            "--alert-smtp-ca",
            ca.to_str().unwrap(),
            "--alert-smtp-from",
            "palisade@node.test",
            "--alert-smtp-to",
            "secops@example.test",
        ],
    );
    let client = rig.client(None);
    let host = "demo.test.proxy.test";
    let session = sign_in(&rig, &client, host, "");
    for i in 0..4 {
        let r = rig.get(
            &client,
            host,
            &format!("/secret/{i}"),
            &format!("Cookie: palisade_session={session}\r\n"),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    record_for(&rig.env, "/secret/3");
    eventually("two alerts delivered", || {
        let st = rig.env.status();
        st["alerts_raised"] == 2 && st["alerts_delivered"] == 2
    });
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "daily limit of 2: {mails:#?}");
    let attempts = std::fs::read_to_string(smtp.out.join("attempts")).expect("attempts");
    assert_eq!(attempts, "3", "the 451 was retried");
    for (i, mail) in mails.iter().enumerate() {
        let text = decoded(mail);
        assert!(text.contains("X-Authenticated: True"), "{text}");
        assert!(
            text.contains("X-Envelope-To: secops@example.test"),
            "{text}"
        );
        assert!(text.contains("From: palisade@node.test"), "{text}");
        assert!(
            text.contains("Subject: [Palisade] high alert: secret pages (alice)"),
            "{text}"
        );
        for line in [
            "Policy: secret pages".to_string(),
            "Severity: high".to_string(),
            "User: alice".to_string(),
            format!("URL: https://demo.test/secret/{i}"),
        ] {
            assert!(text.contains(&line), "{line:?} in {text}");
        }
    }
    // Still two after the other two requests' records were stored.
    assert_eq!(rig.env.alerts().len(), 2);
    assert_eq!(smtp.mails().len(), 2);
}

#[test]
fn a_credentials_file_everyone_can_read_is_refused_at_start() {
    let env = Env::new();
    let credentials = env.path("creds");
    std::fs::write(&credentials, "u:p\n").expect("write");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let policy = env.path("p.toml");
    std::fs::write(
        &policy,
        "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .expect("policy");
    let out = Command::new(controld_bin())
        .args(["serve", "--policy"])
        .arg(&policy)
        .arg("--socket")
        .arg(env.socket())
        .arg("--state-dir")
        .arg(env.path("state"))
        .args([
            "--alert-smtp",
            "127.0.0.1:25",
            "--alert-smtp-to",
            "a@b.test",
            "--alert-smtp-credentials",
        ])
        .arg(&credentials)
        .output()
        .expect("run controld");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by every user"), "{err}");
}
