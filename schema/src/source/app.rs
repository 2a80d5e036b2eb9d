//! `[[app]]`: one protected app, its domains (each owned by one app, none
//! overlapping the proxy suffix), its upstream, certificate, default access
//! action, own OpenID Connect provider and activity profile.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::identity::OidcSource;
use super::profile::{compile_profile, compile_rewrite, AppProfileSource, RewriteSource};
use super::report::{Locator, Report};
use super::saml::{SamlRelaySource, SamlSource};
use super::tls::certified_key;
use crate::model::access::AccessAction;
use crate::model::app::{check_bare_host_context, App, MAX_BARE_HOST_CONTEXTS};
use crate::model::names::{DnsName, Scheme, Upstream};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSource {
    name: Spanned<String>,
    domains: Spanned<Vec<Spanned<String>>>,
    upstream: Option<Spanned<String>>,
    /// PEM file of extra CAs for an HTTPS upstream, relative to the policy file.
    ca_file: Option<Spanned<String>>,
    /// Literal text after which bare app hosts are rewritten.
    #[serde(default)]
    bare_host_contexts: Vec<Spanned<String>>,
    /// PEM certificate chain and key served for this app's proxy hosts.
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    /// allow (default), audit, monitor or block when no access policy matches.
    access_default: Option<Spanned<String>>,
    /// false: no login for this app even when identity is configured.
    login: Option<bool>,
    /// This app's own OpenID Connect provider.
    oidc: Option<Spanned<OidcSource>>,
    /// This app's own SAML identity provider.
    saml: Option<Spanned<SamlSource>>,
    /// The app's own SAML sign-in, answered by the proxy.
    saml_relay: Option<Spanned<SamlRelaySource>>,
    /// How the app's activities look (session control).
    profile: Option<Spanned<AppProfileSource>>,
    /// Data responses rewritten anyway.
    rewrite: Option<Spanned<RewriteSource>>,
}

/// Compiles the `[[app]]` tables. Returns the apps and each app name with
/// the line it was defined on (for later references and messages).
pub(crate) fn compile_apps(
    sources: &[Spanned<AppSource>],
    suffix: Option<&DnsName>,
    base_dir: &Path,
    at: &Locator<'_>,
    report: Report<'_>,
) -> (Vec<App>, HashMap<String, usize>) {
    let mut apps = Vec::with_capacity(sources.len());
    let mut upstream_cache: HashMap<String, Upstream> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    // domain -> (app name, line of first mention)
    let mut owners: HashMap<DnsName, (String, usize)> = HashMap::new();
    for app_src in sources {
        let app_src = app_src.get_ref();
        let name = app_src.name.get_ref().trim().to_string();
        if name.is_empty() {
            report(app_src.name.span(), "app name is empty".into());
        } else if let Some(line) = names.get(&name) {
            report(
                app_src.name.span(),
                format!("duplicate app name {name:?} (first used on line {line})"),
            );
        } else {
            names.insert(name.clone(), at.line_of(app_src.name.span().start));
        }

        let mut domains = Vec::new();
        if app_src.domains.get_ref().is_empty() {
            report(
                app_src.domains.span(),
                format!("app {name:?} lists no domains"),
            );
        }
        for domain_src in app_src.domains.get_ref() {
            let domain = match DnsName::parse(domain_src.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    report(domain_src.span(), format!("bad domain: {e}"));
                    continue;
                }
            };
            if let Some(suffix) = suffix {
                if domain.is_within(suffix) || suffix.is_within(&domain) {
                    report(
                        domain_src.span(),
                        format!("domain {domain} overlaps the proxy suffix {suffix}"),
                    );
                    continue;
                }
            }
            let line = at.line_of(domain_src.span().start);
            if let Some((owner, first_line)) = owners.get(&domain) {
                report(
                    domain_src.span(),
                    format!(
                        "duplicate domain {domain}: already owned by app {owner:?} (line {first_line})"
                    ),
                );
                continue;
            }
            owners.insert(domain.clone(), (name.clone(), line));
            domains.push(domain);
        }

        let upstream = match &app_src.upstream {
            None => Upstream::Direct,
            // Many apps often share one upstream: parse each URL once.
            Some(u) => match upstream_cache.get(u.get_ref().as_str()) {
                Some(up) => up.clone(),
                None => match Upstream::parse_url(u.get_ref()) {
                    Ok(up) => {
                        upstream_cache.insert(u.get_ref().clone(), up.clone());
                        up
                    }
                    Err(e) => {
                        report(u.span(), e);
                        Upstream::Direct
                    }
                },
            },
        };

        let mut ca_certificates_pem = Vec::new();
        if let Some(ca) = &app_src.ca_file {
            let path = base_dir.join(ca.get_ref());
            match std::fs::read(&path) {
                Ok(bytes) if contains(&bytes, b"-----BEGIN CERTIFICATE-----") => {
                    ca_certificates_pem = bytes
                }
                Ok(_) => report(
                    ca.span(),
                    format!("ca_file {}: no PEM certificate in it", path.display()),
                ),
                Err(e) => report(ca.span(), format!("ca_file {}: {e}", path.display())),
            }
            if matches!(
                upstream,
                Upstream::Direct
                    | Upstream::Fixed {
                        scheme: Scheme::Http,
                        ..
                    }
            ) && app_src.upstream.is_some()
            {
                report(ca.span(), "ca_file needs an https upstream".into());
            }
        }

        if app_src.bare_host_contexts.len() > MAX_BARE_HOST_CONTEXTS {
            report(
                app_src.bare_host_contexts[MAX_BARE_HOST_CONTEXTS].span(),
                format!("at most {MAX_BARE_HOST_CONTEXTS} bare_host_contexts per app"),
            );
        }
        let mut bare_host_contexts = Vec::new();
        for pattern in &app_src.bare_host_contexts {
            match check_bare_host_context(pattern.get_ref()) {
                Ok(()) => bare_host_contexts.push(pattern.get_ref().clone()),
                Err(e) => report(pattern.span(), e),
            }
        }

        let certificate = match (&app_src.tls_cert, &app_src.tls_key) {
            (Some(c), Some(k)) => certified_key(base_dir, c, k, report),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                report(c.span(), "tls_cert and tls_key go together".into());
                None
            }
        };
        let access_default = match &app_src.access_default {
            None => AccessAction::Allow,
            Some(a) => AccessAction::parse(a.get_ref()).unwrap_or_else(|| {
                report(
                    a.span(),
                    format!(
                        "unknown access_default {:?} (allow, audit, monitor, block)",
                        a.get_ref()
                    ),
                );
                AccessAction::Allow
            }),
        };
        let oidc = app_src
            .oidc
            .as_ref()
            .map(|o| o.get_ref().compile(o.span(), base_dir, report));
        let saml = app_src
            .saml
            .as_ref()
            .map(|s| s.get_ref().compile(s.span(), base_dir, report));
        let saml_relay = app_src.saml_relay.as_ref().and_then(|r| {
            let first = domains
                .first()
                .map(|d| match suffix {
                    Some(s) => format!("{}.{}", d.as_str(), s.as_str()),
                    None => d.as_str().to_string(),
                })
                .unwrap_or_default();
            r.get_ref()
                .compile(r.span(), (&domains, &first), base_dir, report)
        });
        if let (Some(_), Some(s)) = (&oidc, &app_src.saml) {
            report(
                s.span(),
                "an app has [app.oidc] or [app.saml], not both".into(),
            );
        }
        let profile = app_src
            .profile
            .as_ref()
            .map(|p| compile_profile(p, report))
            .unwrap_or_default();
        let rewrite = app_src
            .rewrite
            .as_ref()
            .map(|r| compile_rewrite(r, report))
            .unwrap_or_default();
        apps.push(App {
            ca_certificates_pem,
            bare_host_contexts,
            certificate,
            access_default,
            oidc,
            saml,
            saml_relay,
            // Settled by the caller, once identity is known.
            login_required: app_src.login.unwrap_or(true),
            profile,
            rewrite,
            ..App::new(name, domains, upstream)
        });
    }
    (apps, names)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
