//! Sign-in: the page, the one-time bootstrap token, OpenID Connect through
//! the policy's provider (form_post), and sign-out.

use super::*;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct SigninQuery {
    error: String,
}

fn oidc_of(console: &Console) -> Option<palisade_schema::access::Oidc> {
    match console.daemon.current_policy()?.identity.provider {
        IdentityProvider::Oidc(o) => Some(o),
        _ => None,
    }
}

pub async fn signin_page(State(console): Ctx, Query(q): Query<SigninQuery>) -> Response {
    let oidc = oidc_of(&console);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign in · Palisade console" } link rel="stylesheet" href="/assets/console.css"; }
            body.bare {
                main.narrow {
                    h1 { "Palisade console" }
                    @if !q.error.is_empty() { p.error #signin-error { (q.error) } }
                    @if let Some(o) = &oidc {
                        p { a.button #signin-oidc href="/signin/oidc" { "Sign in with " (o.issuer) } }
                    } @else {
                        p { "The policy names no OpenID Connect provider: sign in with a bootstrap token." }
                    }
                    details open[oidc.is_none()] {
                        summary { "Bootstrap token" }
                        p { "A one-time token from " code { "controld console-token" } " signs in as admin once." }
                        form method="post" action="/signin/token" {
                            label { "Token " input #token type="password" name="token" autocomplete="off"; }
                            " "
                            button #signin-token type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
    };
    page.into_response()
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    token: String,
}

fn start_session(
    console: &Console,
    user: String,
    role: Role,
    provider: String,
) -> (Session, String) {
    let session = Session {
        user,
        role,
        expires: auth::now_secs() + console.settings.session_lifetime.as_secs() as i64,
        id: console.keys.random(16),
        provider,
    };
    let cookie = auth::session_set_cookie(
        &console.keys.session_cookie(&session),
        console.settings.session_lifetime.as_secs() as i64,
    );
    (session, cookie)
}

fn who_of(
    console: &Console,
    session: Session,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
) -> Who {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Who {
        csrf: console.keys.csrf(&session),
        session,
        peer: peer
            .map(|p| p.0 .0)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        user_agent: text(header::USER_AGENT),
        host: text(header::HOST),
    }
}

fn to_signin(error: &str) -> Response {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", error)
        .finish();
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/signin?{q}"))],
    )
        .into_response()
}

pub async fn signin_token(
    State(console): Ctx,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let state_dir = console.settings.state_dir.clone();
    let token = form.token;
    let used =
        tokio::task::spawn_blocking(move || auth::use_bootstrap_token(&state_dir, &token)).await;
    match used {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return to_signin(&e.to_string()),
        Err(e) => return to_signin(&e.to_string()),
    }
    let (session, cookie) = start_session(
        &console,
        "bootstrap".into(),
        Role::Admin,
        "bootstrap".into(),
    );
    let who = who_of(&console, session, peer, &headers);
    record_admin(
        &console,
        &who,
        "/signin/token",
        "console sign-in",
        "bootstrap token, role admin".into(),
        String::new(),
    )
    .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

pub async fn signin_oidc(State(console): Ctx, headers: HeaderMap) -> Response {
    let Some(oidc) = oidc_of(&console) else {
        return to_signin("The policy names no OpenID Connect provider.");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pending = console.keys.new_pending();
    let Ok(mut url) = url::Url::parse(&oidc.authorization_endpoint) else {
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The provider's authorization endpoint is not a URL.",
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "id_token")
        .append_pair("response_mode", "form_post")
        .append_pair("client_id", &oidc.client_id)
        .append_pair(
            "redirect_uri",
            &format!("https://{host}/signin/oidc/callback"),
        )
        .append_pair(
            "scope",
            if oidc.scopes.is_empty() {
                "openid profile"
            } else {
                &oidc.scopes
            },
        )
        .append_pair("nonce", &pending.nonce)
        .append_pair("state", &pending.state);
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                auth::pending_set_cookie(&console.keys.pending_cookie(&pending)),
            ),
            (header::LOCATION, url.to_string()),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Callback {
    id_token: String,
    state: String,
    error: String,
}

pub async fn signin_oidc_callback(
    State(console): Ctx,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<Callback>,
) -> Response {
    let pending = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::cookie(h, auth::SIGNIN_COOKIE))
        .and_then(|c| console.keys.pending(c));
    let Some(pending) = pending else {
        return to_signin("This sign-in was not started here, or took too long: try again.");
    };
    if !form.error.is_empty() {
        return to_signin(&format!("The provider refused: {}", form.error));
    }
    if !auth::same(form.state.as_bytes(), pending.state.as_bytes()) {
        return to_signin("The sign-in answer does not belong to this browser's sign-in.");
    }
    let Some(oidc) = oidc_of(&console) else {
        return to_signin("The policy names no OpenID Connect provider.");
    };
    let claims = palisade_schema::jwt::KeySet::parse(&oidc.jwks)
        .map_err(|e| e.to_string())
        .and_then(|keys| {
            palisade_schema::jwt::verify(
                &form.id_token,
                &keys,
                &palisade_schema::jwt::Expect {
                    issuer: &oidc.issuer,
                    audience: &oidc.client_id,
                    nonce: &pending.nonce,
                    now_unix: auth::now_secs(),
                },
            )
            .map_err(|e| e.to_string())
        });
    let claims = match claims {
        Ok(c) => c,
        Err(e) => return to_signin(&format!("The provider's token was refused: {e}")),
    };
    let role = if claims
        .groups
        .iter()
        .any(|g| *g == console.settings.admin_group)
    {
        Role::Admin
    } else if claims
        .groups
        .iter()
        .any(|g| *g == console.settings.viewer_group)
    {
        Role::Viewer
    } else {
        return to_signin(&format!(
            "{} is in neither the {} nor the {} group.",
            claims.user, console.settings.admin_group, console.settings.viewer_group
        ));
    };
    let (session, cookie) = start_session(&console, claims.user.clone(), role, oidc.issuer.clone());
    let who = who_of(&console, session, peer, &headers);
    record_admin(
        &console,
        &who,
        "/signin/oidc/callback",
        "console sign-in",
        format!("{}, role {}", oidc.issuer, role.as_str()),
        String::new(),
    )
    .await;
    // The provider posted here cross-site: a Strict cookie would not go
    // with a redirect from this answer, so the page moves on itself.
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta http-equiv="refresh" content="0;url=/"; title { "Signed in" } }
            body { p { "Signed in. " a href="/" { "Continue" } } }
        }
    };
    (
        StatusCode::OK,
        // Appended: an array of headers would keep only the last cookie.
        axum::response::AppendHeaders([
            (header::SET_COOKIE, cookie),
            (header::SET_COOKIE, auth::pending_clear_cookie()),
        ]),
        page,
    )
        .into_response()
}

pub async fn signout(State(console): Ctx, Extension(who): Extension<Who>) -> Response {
    console.sign_out(&who.session);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, auth::session_clear_cookie()),
            (header::LOCATION, "/signin".to_string()),
        ],
    )
        .into_response()
}
