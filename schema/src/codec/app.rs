//! Snapshot encoding of one app: name, domains, bare-host contexts,
//! upstream, certificate, default access action, login, own OpenID Connect
//! provider and activity profile. Decoding re-checks what the compiler
//! checked (domains valid, unique across apps, apart from the suffix).

use std::collections::HashSet;
use std::net::IpAddr;

use super::access::{
    action_to_capnp, decode_action, decode_app_oidc, decode_app_saml, decode_certified_key,
    encode_key, encode_oidc, encode_saml,
};
use super::error::SnapshotError;
use super::fields::{invalid, known, set_texts, text, text_lists, texts};
use super::session::{decode_profile, encode_profile};
use crate::model::access::SamlRelay;
use crate::model::app::{
    check_bare_host_context, App, LeakGuard, RewriteSettings, MAX_BARE_HOST_CONTEXTS,
};
use crate::model::names::{DnsName, Scheme, Upstream, UpstreamHost};
use crate::policy_capnp;

pub(crate) fn encode_app(mut a: policy_capnp::app::Builder<'_>, app: &App) {
    a.set_name(app.name.as_str());
    let mut domains = a.reborrow().init_domains(app.domains.len() as u32);
    for (j, d) in app.domains.iter().enumerate() {
        domains.set(j as u32, d.as_str());
    }
    if !app.bare_host_contexts.is_empty() {
        set_texts(
            a.reborrow()
                .init_bare_host_contexts(app.bare_host_contexts.len() as u32),
            &app.bare_host_contexts,
        );
    }
    if let Some(c) = &app.certificate {
        a.set_has_certificate(true);
        encode_key(a.reborrow().init_certificate(), c);
    }
    a.set_access_default(action_to_capnp(app.access_default));
    a.set_login_required(app.login_required);
    if let Some(o) = &app.oidc {
        a.set_has_oidc(true);
        encode_oidc(a.reborrow().init_oidc(), o);
    }
    if let Some(s) = &app.saml {
        a.set_has_saml(true);
        encode_saml(a.reborrow().init_saml(), s);
    }
    if let Some(r) = &app.saml_relay {
        a.set_has_saml_relay(true);
        let mut b = a.reborrow().init_saml_relay();
        b.set_acs_url(r.acs_url.as_str());
        b.set_entity_id(r.entity_id.as_str());
        b.set_name_id_format(r.name_id_format.as_str());
        b.set_idp_entity_id(r.idp_entity_id.as_str());
        encode_key(b.init_signing(), &r.signing);
    }
    if app.profile != Default::default() {
        encode_profile(a.reborrow().init_profile(), &app.profile);
    }
    if !app.rewrite.is_default() {
        let settings = &app.rewrite;
        let mut r = a.reborrow().init_rewrite();
        text_lists!(r;
            init_data_paths: settings.data_paths,
            init_data_content_types: settings.data_content_types,
            init_leak_allow: settings.leak_allow,
        );
        r.set_leak_guard(match settings.leak_guard {
            LeakGuard::Report => policy_capnp::LeakGuard::Report,
            LeakGuard::Enforce => policy_capnp::LeakGuard::Enforce,
            LeakGuard::Off => policy_capnp::LeakGuard::Off,
        });
    }
    let mut up = a.init_upstream();
    up.set_ca_certificates_pem(&app.ca_certificates_pem);
    match &app.upstream {
        Upstream::Direct => up.set_direct(()),
        Upstream::Fixed { scheme, host, port } => {
            let mut f = up.init_fixed();
            f.set_scheme(match scheme {
                Scheme::Http => policy_capnp::Scheme::Http,
                Scheme::Https => policy_capnp::Scheme::Https,
            });
            let host_text = match host {
                UpstreamHost::Name(n) => n.as_str().to_string(),
                UpstreamHost::Ip(ip) => ip.to_string(),
            };
            f.set_host(host_text.as_str());
            f.set_port(*port);
        }
    }
}

/// One app, checked; `seen` holds the domains of the apps decoded before.
pub(crate) fn decode_app(
    a: policy_capnp::app::Reader<'_>,
    suffix: &DnsName,
    seen: &mut HashSet<DnsName>,
) -> Result<App, SnapshotError> {
    let name = text(a.get_name())?;
    let bad = |e: String| invalid(format!("app {name:?}: {e}"));
    let mut domains = Vec::new();
    for d in a.get_domains()?.iter() {
        let d = DnsName::parse(&text(d)?).map_err(|e| bad(format!("domain: {e}")))?;
        if d.is_within(suffix) || suffix.is_within(&d) {
            return Err(bad(format!("domain {d} overlaps the suffix")));
        }
        if !seen.insert(d.clone()) {
            return Err(bad(format!("duplicate domain {d}")));
        }
        domains.push(d);
    }
    if domains.is_empty() {
        return Err(bad("no domains".into()));
    }
    let contexts = a.get_bare_host_contexts()?;
    if contexts.len() as usize > MAX_BARE_HOST_CONTEXTS {
        return Err(bad("too many bare_host_contexts".into()));
    }
    let mut bare_host_contexts = Vec::with_capacity(contexts.len() as usize);
    for c in contexts.iter() {
        let c = text(c)?;
        check_bare_host_context(&c).map_err(&bad)?;
        bare_host_contexts.push(c);
    }
    let up = a.get_upstream()?;
    let upstream = match known(up.which())? {
        policy_capnp::upstream::Direct(()) => Upstream::Direct,
        policy_capnp::upstream::Fixed(f) => {
            let f = f?;
            let scheme = match known(f.get_scheme())? {
                policy_capnp::Scheme::Http => Scheme::Http,
                policy_capnp::Scheme::Https => Scheme::Https,
            };
            let host_text = text(f.get_host())?;
            let host = match host_text.parse::<IpAddr>() {
                Ok(ip) => UpstreamHost::Ip(ip),
                Err(_) => UpstreamHost::Name(
                    DnsName::parse(&host_text).map_err(|e| bad(format!("upstream: {e}")))?,
                ),
            };
            let port = f.get_port();
            if port == 0 {
                return Err(bad("upstream: port 0".into()));
            }
            Upstream::Fixed { scheme, host, port }
        }
    };
    Ok(App {
        ca_certificates_pem: up.get_ca_certificates_pem()?.to_vec(),
        bare_host_contexts,
        certificate: decode_certified_key(a.get_has_certificate(), a.get_certificate())?,
        access_default: decode_action(a.get_access_default())?,
        login_required: a.get_login_required(),
        oidc: decode_app_oidc(a.get_has_oidc(), a.get_oidc())?,
        saml: decode_app_saml(a.get_has_saml(), a.get_saml())?,
        saml_relay: if a.get_has_saml_relay() {
            let r = a.get_saml_relay()?;
            Some(SamlRelay {
                acs_url: text(r.get_acs_url())?,
                entity_id: text(r.get_entity_id())?,
                name_id_format: text(r.get_name_id_format())?,
                idp_entity_id: text(r.get_idp_entity_id())?,
                signing: decode_certified_key(true, r.get_signing())?
                    .ok_or_else(|| invalid("SAML relay without a signing key"))?,
            })
        } else {
            None
        },
        profile: decode_profile(a.has_profile(), a.get_profile())?,
        rewrite: if a.has_rewrite() {
            let r = a.get_rewrite()?;
            let leak_allow = texts(r.get_leak_allow())?;
            if leak_allow
                .iter()
                .any(|s| s.is_empty() || s.contains([' ', ';', ',', '\'', '"']))
            {
                return Err(bad("leak_allow: not one CSP source expression".into()));
            }
            RewriteSettings {
                data_paths: texts(r.get_data_paths())?,
                data_content_types: texts(r.get_data_content_types())?,
                leak_guard: match known(r.get_leak_guard())? {
                    policy_capnp::LeakGuard::Report => LeakGuard::Report,
                    policy_capnp::LeakGuard::Enforce => LeakGuard::Enforce,
                    policy_capnp::LeakGuard::Off => LeakGuard::Off,
                },
                leak_allow,
            }
        } else {
            RewriteSettings::default()
        },
        ..App::new(name, domains, upstream)
    })
}
