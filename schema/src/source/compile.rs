//! The compiler's driver: parses the TOML text, runs each table's
//! compiler in dependency order (apps and ip tags before the policies that
//! name them; identity before the apps' login settings), derives the alert
//! rules controld raises for access and session policies, and returns a
//! [`Policy`] only when no problem was found.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::access::{
    compile_access_policies, compile_block_page, AccessPolicySource, BlockPageSource,
};
use super::activity::{self, ActivityPolicySource};
use super::app::{compile_apps, AppSource};
use super::filters::KnownNames;
use super::identity::{compile_identity, IdentitySource};
use super::ip_tags::{compile_geoip, compile_ip_tags, GeoipSource, IpTagSource};
use super::report::{Diagnostic, Diagnostics, Locator};
use super::session::{self, MonitoringNoticeSource, SessionPolicySource};
use super::tls::{compile_tls, TlsSource};
use crate::model::access::IdentityProvider;
use crate::model::activity::{ActivityPolicy, AlertSpec};
use crate::model::names::DnsName;
use crate::model::policy::Policy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySource {
    proxy: Spanned<ProxySource>,
    #[serde(default, rename = "app")]
    apps: Vec<Spanned<AppSource>>,
    #[serde(default, rename = "ip_tag")]
    ip_tags: Vec<Spanned<IpTagSource>>,
    #[serde(default, rename = "activity_policy")]
    activity_policies: Vec<Spanned<ActivityPolicySource>>,
    tls: Option<Spanned<TlsSource>>,
    identity: Option<Spanned<IdentitySource>>,
    #[serde(default, rename = "location")]
    locations: Vec<Spanned<IpTagSource>>,
    #[serde(default, rename = "access_policy")]
    access_policies: Vec<Spanned<AccessPolicySource>>,
    block_page: Option<BlockPageSource>,
    geoip: Option<Spanned<GeoipSource>>,
    #[serde(default, rename = "session_policy")]
    session_policies: Vec<Spanned<SessionPolicySource>>,
    monitoring_notice: Option<MonitoringNoticeSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySource {
    suffix: Spanned<String>,
}

/// Options for one compilation.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Version stamped into the snapshot.
    pub version: u64,
    /// Time stamped into the snapshot.
    pub compiled_at_unix_ms: i64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        CompileOptions {
            version: 1,
            compiled_at_unix_ms: now,
        }
    }
}

/// Reads and compiles the policy file at `path`.
pub fn compile_file(path: &Path, options: &CompileOptions) -> Result<Policy, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read policy: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    compile_source(&file, &text, base, options)
}

/// Compiles policy `text` (named `file` in messages; relative paths inside
/// it resolve against `base_dir`).
pub fn compile_source(
    file: &str,
    text: &str,
    base_dir: &Path,
    options: &CompileOptions,
) -> Result<Policy, Diagnostics> {
    let at = Locator::new(file, text);
    let source: PolicySource = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        Diagnostics(vec![at.diagnostic(span, e.message().trim().to_string())])
    })?;

    let mut errors = Vec::new();
    let mut report =
        |span: Range<usize>, message: String| errors.push(at.diagnostic(span, message));
    let suffix = match DnsName::parse(source.proxy.get_ref().suffix.get_ref()) {
        Ok(s) => Some(s),
        Err(e) => {
            report(
                source.proxy.get_ref().suffix.span(),
                format!("bad proxy suffix: {e}"),
            );
            None
        }
    };
    let (mut apps, app_names) =
        compile_apps(&source.apps, suffix.as_ref(), base_dir, &at, &mut report);
    let line_of = |offset: usize| at.line_of(offset);
    let ip_tags = compile_ip_tags(&source.ip_tags, "ip_tag", &mut report, &line_of);
    let mut activity_policies =
        activity::compile(&source.activity_policies, &app_names, &mut report);
    let tls = compile_tls(source.tls.as_ref(), base_dir, &mut report);
    let identity = compile_identity(source.identity.as_ref(), base_dir, &mut report);
    let locations = compile_ip_tags(&source.locations, "location", &mut report, &line_of);
    let known = KnownNames {
        apps: &app_names,
        ip_tags: &ip_tags,
        locations: &locations,
    };
    let access_policies = compile_access_policies(&source.access_policies, &known, &mut report);
    let activity_names: Vec<String> = apps
        .iter()
        .flat_map(|a| a.profile.activities.iter().map(|c| c.name.clone()))
        .collect();
    let session_policies = session::compile(
        &source.session_policies,
        &known,
        &activity_names,
        &mut report,
    );
    let identity_on = identity.provider != IdentityProvider::None;
    // The relay answers an app for the user the proxy signed in: that
    // takes a sign-in with a session cookie.
    let cookie_sign_in = matches!(
        identity.provider,
        IdentityProvider::Oidc(_) | IdentityProvider::Saml(_)
    );
    for app in &apps {
        if app.saml_relay.is_some() && !(cookie_sign_in || app.oidc.is_some() || app.saml.is_some())
        {
            report(
                source.identity.as_ref().map_or(0..0, |i| i.span()),
                format!(
                    "app {:?} relays its SAML sign-in: the proxy must sign users in itself ([identity] provider \"oidc\" or \"saml\", or the app's [app.oidc] or [app.saml])",
                    app.name
                ),
            );
        }
    }
    for app in &mut apps {
        app.login_required &= identity_on || app.oidc.is_some() || app.saml.is_some();
    }
    if let (Some(app), true) = (
        apps.iter().find(|a| a.oidc.is_some() || a.saml.is_some()),
        identity.session_keys.is_empty(),
    ) {
        let kind = if app.oidc.is_some() { "oidc" } else { "saml" };
        report(
            source.identity.as_ref().map_or(0..0, |i| i.span()),
            format!(
                "app {:?} has its own {kind} provider: [identity] session_keys are needed to seal its sessions",
                app.name
            ),
        );
    }
    let block_page = compile_block_page(source.block_page.as_ref());
    let geoip_country_database =
        compile_geoip(source.geoip.as_ref(), &locations, base_dir, &mut report);
    // An access policy's alert is raised by controld like any other: as a
    // rule on the log stream matching the records that policy decided;
    // likewise a session policy's, on the activity records it decided.
    let access_alerts = access_policies
        .iter()
        .map(|p| ("access policy", "traffic", &p.name, &p.alert_severity));
    let session_alerts = session_policies
        .iter()
        .map(|p| ("session policy", "activity", &p.name, &p.alert_severity));
    for (what, kind, name, severity) in access_alerts.chain(session_alerts) {
        if severity.is_empty() {
            continue;
        }
        activity_policies.push(ActivityPolicy {
            name: format!("{what}: {name}"),
            kinds: vec![kind.into()],
            policies: vec![name.clone()],
            alert: Some(AlertSpec {
                severity: severity.clone(),
                daily_limit: 0,
            }),
            ..Default::default()
        });
    }
    let monitoring_notice = session::compile_notice(source.monitoring_notice.as_ref());

    match suffix {
        Some(suffix) if errors.is_empty() => Ok(Policy {
            version: options.version,
            compiled_at_unix_ms: options.compiled_at_unix_ms,
            source: file.to_string(),
            suffix,
            apps,
            ip_tags,
            activity_policies,
            tls,
            identity,
            locations,
            access_policies,
            block_page,
            geoip_country_database,
            session_policies,
            monitoring_notice,
        }),
        _ => Err(Diagnostics(errors)),
    }
}
