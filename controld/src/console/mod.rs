//! The admin console (`controld serve --console ADDR`): a web portal over
//! what controld already keeps — the log store, alerts, the policy history
//! and the cores' status — served over HTTPS from inside the daemon.
//!
//! - [`auth`]: sessions, CSRF, the bootstrap token, OIDC sign-in.
//! - [`data`]: the store queries behind the pages.
//! - [`exports`]: background exports with progress.
//! - [`pages`]: the HTML (maud templates) and the handlers.
//!
//! The server is axum on a small tokio runtime of its own (two worker
//! threads), TLS by tokio-rustls; store queries run on tokio's blocking
//! pool, each on its own read-only SQLite connection. Policy changes go
//! through the daemon's own apply and rollback (one at a time, pushed to
//! every core, acks awaited) and every admin action is stored as an
//! activity record ([`crate::server::AdminEntry`]).
//!
//! Every route but sign-in and the static assets needs a session; every
//! POST needs the session's CSRF token; the answers carry a strict Content
//! Security Policy (scripts and styles from this origin only; no inline
//! script), `X-Frame-Options: DENY` and `Cache-Control: no-store`.

pub mod auth;
pub mod data;
pub mod exports;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use palisade_schema::systemd::Priority;

use crate::server::Daemon;
use auth::{Keys, Role, Session};

/// `--console` settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// PEM certificate chain and key; `None`: a self-signed certificate
    /// kept in `<state>/console/` (made at first start).
    pub certificate: Option<(PathBuf, PathBuf)>,
    pub state_dir: PathBuf,
    /// Identity-provider groups mapped to the two roles.
    pub admin_group: String,
    pub viewer_group: String,
    pub session_lifetime: Duration,
    /// How long finished exports are kept.
    pub export_keep: Duration,
}

/// Shared by every handler.
pub(crate) struct Console {
    pub settings: Settings,
    pub daemon: Arc<Daemon>,
    pub keys: Keys,
    pub exports: Arc<exports::Exports>,
    /// The overview's aggregates, kept a short while.
    pub recent: Recent,
    /// Sessions signed out before they expired: id → expiry (Unix s).
    pub signed_out: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Console {
    /// Ends a session for good: its cookie, even kept by someone, is
    /// refused from now until it would have expired.
    pub fn sign_out(&self, session: &Session) {
        let mut out = self.signed_out.lock().unwrap_or_else(|e| e.into_inner());
        let now = auth::now_secs();
        out.retain(|_, expires| *expires > now);
        out.insert(session.id.clone(), session.expires);
    }

    fn is_signed_out(&self, session: &Session) -> bool {
        self.signed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&session.id)
    }
}

use data::Tops;

/// Results of the overview's aggregate queries, kept a short while: each
/// reads every record of its range (a day for the top lists, up to a week
/// for the chart; half a second and two over 10 million records), so a
/// page reloaded, or open in several admins' browsers, pays once per
/// interval instead of once per view.
#[derive(Default)]
pub(crate) struct Recent {
    tops: std::sync::Mutex<Option<(std::time::Instant, Arc<Tops>)>>,
    series: std::sync::Mutex<Vec<(&'static str, std::time::Instant, Arc<data::Series>)>>,
}

/// How long the top lists are reused.
const TOPS_FOR: Duration = Duration::from_secs(30);

impl Recent {
    pub fn tops(&self) -> Option<Arc<Tops>> {
        let kept = self.tops.lock().unwrap_or_else(|e| e.into_inner());
        kept.as_ref()
            .filter(|(at, _)| at.elapsed() < TOPS_FOR)
            .map(|(_, t)| t.clone())
    }

    pub fn keep_tops(&self, tops: Arc<Tops>) {
        *self.tops.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), tops));
    }

    /// A range's series if computed less than `fresh` ago.
    pub fn series(&self, range: &str, fresh: Duration) -> Option<Arc<data::Series>> {
        let kept = self.series.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .find(|(r, at, _)| *r == range && at.elapsed() < fresh)
            .map(|(_, _, s)| s.clone())
    }

    pub fn keep_series(&self, range: &'static str, series: Arc<data::Series>) {
        let mut kept = self.series.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(r, _, _)| *r != range);
        kept.push((range, std::time::Instant::now(), series));
    }
}

/// The signed-in user of a request (set by [`guard`]).
#[derive(Clone)]
pub(crate) struct Who {
    pub session: Session,
    pub csrf: String,
    pub peer: SocketAddr,
    pub user_agent: String,
    pub host: String,
}

/// The peer address of a connection (set per connection).
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// Largest POST body (a policy text edited in the page).
const MAX_POST_BYTES: usize = 4 << 20;

/// Starts the console on its own threads; returns once it listens.
pub fn start(settings: Settings, daemon: Arc<Daemon>) -> Result<SocketAddr, String> {
    let tls = tls_config(&settings)?;
    let exports = Arc::new(exports::Exports::open(
        &settings.state_dir,
        settings.export_keep,
    )?);
    let console = Arc::new(Console {
        settings: settings.clone(),
        daemon,
        keys: Keys::generate()?,
        exports,
        recent: Recent::default(),
        signed_out: Default::default(),
    });
    let std_listener = std::net::TcpListener::bind(settings.listen)
        .map_err(|e| format!("--console {}: {e}", settings.listen))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let bound = std_listener.local_addr().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_name("controld-console")
        .enable_all()
        .build()
        .map_err(|e| format!("console runtime: {e}"))?;
    let app = router(console);
    std::thread::Builder::new()
        .name("controld-console".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        crate::say(Priority::Error, &format!("controld: console: {e}"), &[]);
                        return;
                    }
                };
                serve(listener, tls, app).await;
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(bound)
}

async fn serve(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors and the like: wait, do not spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A handshake that stalls is dropped.
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    let app = app.clone();
                    async move {
                        use tower::ServiceExt;
                        app.oneshot(req.map(Body::new)).await
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(20))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The TLS settings: the given certificate, or a self-signed one kept in
/// the state directory.
fn tls_config(settings: &Settings) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert_path, key_path) = match &settings.certificate {
        Some(pair) => pair.clone(),
        None => self_signed(settings)?,
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let chain: Vec<_> = rustls_pemfile::certs(&mut read(&cert_path)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert_path.display()));
    }
    let key = rustls_pemfile::private_key(&mut read(&key_path)?.as_slice())
        .map_err(|e| format!("{}: {e}", key_path.display()))?
        .ok_or_else(|| format!("{}: no private key", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("console certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `<state>/console/tls.{pem,key}`, made once: localhost, the loopback
/// addresses and the listen address.
fn self_signed(settings: &Settings) -> Result<(PathBuf, PathBuf), String> {
    let dir = settings.state_dir.join("console");
    let (cert, key) = (dir.join("tls.pem"), dir.join("tls.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip = settings.listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    crate::commands::write_atomically(&key, made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", key.display()))?;
    crate::commands::write_atomically(&cert, made.cert.pem().as_bytes())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok((cert, key))
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/overview/series", get(pages::overview_series))
        .route("/signin", get(pages::signin_page))
        .route("/signin/token", post(pages::signin_token))
        .route("/signin/oidc", get(pages::signin_oidc))
        .route("/signin/oidc/callback", post(pages::signin_oidc_callback))
        .route("/signout", post(pages::signout))
        .route("/log", get(pages::log))
        .route("/log/record/{id}", get(pages::record))
        .route("/tail", get(pages::tail))
        .route("/tail/events", get(pages::tail_events))
        .route("/report", get(pages::report))
        .route(
            "/exports",
            get(pages::exports_page).post(pages::export_start),
        )
        .route("/exports/{id}/progress", get(pages::export_progress))
        .route("/exports/{id}/download", get(pages::export_download))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/{id}/ack", post(pages::alert_ack))
        .route("/policies", get(pages::policies))
        .route("/policies/version/{version}", get(pages::policy_version))
        .route("/policies/validate", post(pages::policy_validate))
        .route("/policies/apply", post(pages::policy_apply))
        .route("/policies/rollback", post(pages::policy_rollback))
        .route("/assets/{name}", get(pages::asset))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// Paths reachable without a session.
fn public(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("GET", "/signin")
            | ("POST", "/signin/token")
            | ("GET", "/signin/oidc")
            | ("POST", "/signin/oidc/callback")
    ) || (method == Method::GET && path.starts_with("/assets/"))
}

/// Every request passes here: methods other than GET, HEAD and POST are
/// refused; outside the public paths a genuine, unexpired session is
/// required (a page request without one is sent to sign in, anything else
/// gets 401); a POST must carry the session's CSRF token; every answer
/// gets the security headers.
async fn guard(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let mut response = check(&console, req, next).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' https:; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn check(console: &Console, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::HEAD | Method::POST) {
        return pages::refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET and POST are served here.",
        );
    }
    let path = req.uri().path().to_string();
    if public(&method, &path) {
        return next.run(req).await;
    }
    // Everything borrowed from the request ends in this block: a borrow
    // of it held across the body read would make the future not Send.
    let who = {
        let header_text = |name: header::HeaderName| -> String {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let session = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| auth::cookie(h, auth::SESSION_COOKIE))
            .and_then(|c| console.keys.session(c))
            .filter(|s| !console.is_signed_out(s));
        let Some(session) = session else {
            if method == Method::GET
                && !path.starts_with("/tail/events")
                && !path.ends_with("/progress")
            {
                return (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, "/signin".to_string())],
                )
                    .into_response();
            }
            return pages::refusal(StatusCode::UNAUTHORIZED, "Sign in first.");
        };
        let peer = req
            .extensions()
            .get::<Peer>()
            .map(|p| p.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Who {
            csrf: console.keys.csrf(&session),
            user_agent: header_text(header::USER_AGENT),
            host: header_text(header::HOST),
            session,
            peer,
        }
    };
    let mut req = req;
    if method == Method::POST {
        // The token from the header, else from the form body (read here,
        // bounded, and handed on to the handler unchanged).
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_POST_BYTES).await else {
            return pages::refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
            );
        };
        let token = header_token.or_else(|| {
            url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
        });
        if !token.is_some_and(|t| console.keys.csrf_ok(&who.session, &t)) {
            return pages::refusal(
                StatusCode::FORBIDDEN,
                "This form is missing its CSRF token or it does not belong to your session. Reload the page and try again.",
            );
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// A viewer's refusal (403 with a page saying why); `None` for an admin.
pub(crate) fn refuse_viewer(who: &Who) -> Option<Response> {
    (who.session.role == Role::Viewer).then(|| {
        pages::refusal(
            StatusCode::FORBIDDEN,
            "Viewers can look but not change anything: this needs the admin role.",
        )
    })
}
