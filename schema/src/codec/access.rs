//! Snapshot encoding of the access-control part of a policy (TLS material,
//! identity, access policies and the filters session policies share, the
//! block page), validated again on decode like every other snapshot field.

use super::error::SnapshotError;
use super::fields::{decode_range, encode_range, invalid, known, text, text_lists, texts};
use crate::model::access::{
    check_jwks, AccessAction, AccessPolicy, BlockPage, CertifiedKeyPem, Filters, Identity,
    IdentityProvider, Oidc, Saml, SessionKey, TlsSettings, TrustedHeader, CLIENT_APPS, DEVICE_TAGS,
};
use crate::model::activity::SEVERITIES;
use crate::model::policy::Policy;
use crate::policy_capnp;

pub(crate) fn action_to_capnp(a: AccessAction) -> policy_capnp::AccessAction {
    match a {
        AccessAction::Allow => policy_capnp::AccessAction::Allow,
        AccessAction::Audit => policy_capnp::AccessAction::Audit,
        AccessAction::Monitor => policy_capnp::AccessAction::Monitor,
        AccessAction::Block => policy_capnp::AccessAction::Block,
    }
}

pub(crate) fn decode_action(
    a: Result<policy_capnp::AccessAction, capnp::NotInSchema>,
) -> Result<AccessAction, SnapshotError> {
    Ok(match known(a)? {
        policy_capnp::AccessAction::Allow => AccessAction::Allow,
        policy_capnp::AccessAction::Audit => AccessAction::Audit,
        policy_capnp::AccessAction::Monitor => AccessAction::Monitor,
        policy_capnp::AccessAction::Block => AccessAction::Block,
    })
}

pub(crate) fn encode_key(mut out: policy_capnp::certified_key::Builder<'_>, k: &CertifiedKeyPem) {
    out.set_certificate_chain_pem(&k.chain_pem);
    out.set_private_key_pem(&k.key_pem);
}

fn decode_key(
    r: policy_capnp::certified_key::Reader<'_>,
) -> Result<Option<CertifiedKeyPem>, SnapshotError> {
    let chain_pem = r.get_certificate_chain_pem()?.to_vec();
    let key_pem = r.get_private_key_pem()?.to_vec();
    if chain_pem.is_empty() && key_pem.is_empty() {
        return Ok(None);
    }
    if chain_pem.is_empty() || key_pem.is_empty() {
        return Err(invalid("a certificate without its key (or a key alone)"));
    }
    Ok(Some(CertifiedKeyPem { chain_pem, key_pem }))
}

pub(crate) fn decode_certified_key(
    has: bool,
    r: capnp::Result<policy_capnp::certified_key::Reader<'_>>,
) -> Result<Option<CertifiedKeyPem>, SnapshotError> {
    if !has {
        return Ok(None);
    }
    decode_key(r?)?
        .map(Some)
        .ok_or_else(|| invalid("app certificate is empty"))
}

pub(crate) fn encode_oidc(mut b: policy_capnp::oidc::Builder<'_>, o: &Oidc) {
    b.set_issuer(o.issuer.as_str());
    b.set_client_id(o.client_id.as_str());
    b.set_authorization_endpoint(o.authorization_endpoint.as_str());
    b.set_jwks(o.jwks.as_str());
    b.set_scopes(o.scopes.as_str());
}

fn decode_oidc(o: policy_capnp::oidc::Reader<'_>) -> Result<Oidc, SnapshotError> {
    let jwks = text(o.get_jwks())?;
    check_jwks(&jwks).map_err(|e| SnapshotError::Invalid(format!("identity JWKS: {e}")))?;
    Ok(Oidc {
        issuer: text(o.get_issuer())?,
        client_id: text(o.get_client_id())?,
        authorization_endpoint: text(o.get_authorization_endpoint())?,
        jwks,
        jwks_url: None,
        scopes: text(o.get_scopes())?,
    })
}

pub(crate) fn encode_saml(mut b: policy_capnp::saml::Builder<'_>, s: &Saml) {
    b.set_idp_entity_id(s.idp_entity_id.as_str());
    b.set_sso_url(s.sso_url.as_str());
    let mut certs = b.reborrow().init_certificates(s.certificates.len() as u32);
    for (i, c) in s.certificates.iter().enumerate() {
        certs.set(i as u32, c);
    }
    b.set_sp_entity_id(s.sp_entity_id.as_str());
    b.set_allow_unsolicited(s.allow_unsolicited);
    b.set_user_attribute(s.user_attribute.as_str());
    b.set_groups_attribute(s.groups_attribute.as_str());
    b.set_device_attribute(s.device_attribute.as_str());
    if let Some(k) = &s.request_signing {
        b.set_has_request_signing(true);
        encode_key(b.init_request_signing(), k);
    }
}

fn decode_saml(r: policy_capnp::saml::Reader<'_>) -> Result<Saml, SnapshotError> {
    let mut certificates = Vec::new();
    for c in r.get_certificates()?.iter() {
        certificates.push(c?.to_vec());
    }
    let saml = Saml {
        idp_entity_id: text(r.get_idp_entity_id())?,
        sso_url: text(r.get_sso_url())?,
        certificates,
        metadata_url: None,
        sp_entity_id: text(r.get_sp_entity_id())?,
        allow_unsolicited: r.get_allow_unsolicited(),
        user_attribute: text(r.get_user_attribute())?,
        groups_attribute: text(r.get_groups_attribute())?,
        device_attribute: text(r.get_device_attribute())?,
        request_signing: decode_certified_key(
            r.get_has_request_signing(),
            r.get_request_signing(),
        )?,
    };
    if saml.certificates.is_empty() || saml.idp_entity_id.is_empty() || saml.sso_url.is_empty() {
        return Err(invalid(
            "SAML identity provider without entity ID, SSO URL or certificate",
        ));
    }
    Ok(saml)
}

/// An app's own SAML identity provider.
pub(crate) fn decode_app_saml(
    has: bool,
    r: capnp::Result<policy_capnp::saml::Reader<'_>>,
) -> Result<Option<Saml>, SnapshotError> {
    if !has {
        return Ok(None);
    }
    decode_saml(r?).map(Some)
}

/// An app's own OIDC provider.
pub(crate) fn decode_app_oidc(
    has: bool,
    r: capnp::Result<policy_capnp::oidc::Reader<'_>>,
) -> Result<Option<Oidc>, SnapshotError> {
    if !has {
        return Ok(None);
    }
    decode_oidc(r?).map(Some)
}

/// The snapshot-level fields of the access part.
pub(crate) fn encode(mut snap: policy_capnp::snapshot::Builder<'_>, policy: &Policy) {
    {
        let mut tls = snap.reborrow().init_tls();
        if let Some(k) = &policy.tls.default_certificate {
            encode_key(tls.reborrow().init_default_certificate(), k);
        }
        tls.set_client_ca_pem(&policy.tls.client_ca_pem);
        tls.set_client_crl_pem(&policy.tls.client_crl_pem);
    }
    {
        let identity = &policy.identity;
        let mut out = snap.reborrow().init_identity();
        out.set_session_lifetime_secs(identity.session_lifetime_secs);
        let mut keys = out
            .reborrow()
            .init_session_keys(identity.session_keys.len() as u32);
        for (i, k) in identity.session_keys.iter().enumerate() {
            let mut kb = keys.reborrow().get(i as u32);
            kb.set_id(k.id.as_str());
            kb.set_key(&k.key);
        }
        match &identity.provider {
            IdentityProvider::None => out.set_none(()),
            IdentityProvider::Oidc(o) => encode_oidc(out.init_oidc(), o),
            IdentityProvider::Saml(saml) => encode_saml(out.init_saml(), saml),
            IdentityProvider::TrustedHeader(t) => {
                let mut b = out.init_trusted_header();
                b.set_user_header(t.user_header.as_str());
                b.set_groups_header(t.groups_header.as_str());
                let mut sources = b.init_sources(t.sources.len() as u32);
                for (i, r) in t.sources.iter().enumerate() {
                    encode_range(sources.reborrow().get(i as u32), r);
                }
            }
        }
    }
    {
        let mut page = snap.reborrow().init_block_page();
        page.set_message(policy.block_page.message.as_str());
        page.set_support_url(policy.block_page.support_url.as_str());
    }
    let mut list = snap.init_access_policies(policy.access_policies.len() as u32);
    for (i, p) in policy.access_policies.iter().enumerate() {
        encode_access_policy(list.reborrow().get(i as u32), p);
    }
}

fn encode_access_policy(mut out: policy_capnp::access_policy::Builder<'_>, p: &AccessPolicy) {
    out.set_name(p.name.as_str());
    encode_filters(out.reborrow(), &p.filters);
    out.set_action(action_to_capnp(p.action));
    out.set_message(p.message.as_str());
    out.set_alert_severity(p.alert_severity.as_str());
}

/// The who/where filters, written into an `AccessPolicy` struct (a session
/// policy carries its filters in one too).
pub(crate) fn encode_filters(mut out: policy_capnp::access_policy::Builder<'_>, f: &Filters) {
    text_lists!(out;
        init_apps: f.apps,
        init_users: f.users,
        init_groups: f.groups,
        init_ip_tags: f.ip_tags,
        init_not_ip_tags: f.not_ip_tags,
        init_locations: f.locations,
        init_not_locations: f.not_locations,
        init_devices: f.devices,
        init_client_apps: f.client_apps,
        init_user_agent_contains: f.user_agent_contains,
    );
    let mut ranges = out.reborrow().init_ip_ranges(f.ip_ranges.len() as u32);
    for (j, r) in f.ip_ranges.iter().enumerate() {
        encode_range(ranges.reborrow().get(j as u32), r);
    }
    out.set_user_agent_regex(f.user_agent_regex.as_str());
}

pub(crate) fn decode_tls(r: policy_capnp::tls::Reader<'_>) -> Result<TlsSettings, SnapshotError> {
    let client_ca_pem = r.get_client_ca_pem()?.to_vec();
    let client_crl_pem = r.get_client_crl_pem()?.to_vec();
    if client_ca_pem.is_empty() && !client_crl_pem.is_empty() {
        return Err(invalid("client CRL without client CA"));
    }
    Ok(TlsSettings {
        default_certificate: if r.has_default_certificate() {
            decode_key(r.get_default_certificate()?)?
        } else {
            None
        },
        client_ca_pem,
        client_crl_pem,
    })
}

pub(crate) fn decode_identity(
    r: policy_capnp::identity::Reader<'_>,
) -> Result<Identity, SnapshotError> {
    let mut session_keys = Vec::new();
    for k in r.get_session_keys()?.iter() {
        let key: [u8; 32] = k
            .get_key()?
            .try_into()
            .map_err(|_| invalid("session key is not 32 bytes"))?;
        session_keys.push(SessionKey {
            id: text(k.get_id())?,
            key,
        });
    }
    let provider = match known(r.which())? {
        policy_capnp::identity::None(()) => IdentityProvider::None,
        policy_capnp::identity::Oidc(o) => IdentityProvider::Oidc(decode_oidc(o?)?),
        policy_capnp::identity::Saml(s) => IdentityProvider::Saml(decode_saml(s?)?),
        policy_capnp::identity::TrustedHeader(t) => {
            let t = t?;
            let mut sources = Vec::new();
            for s in t.get_sources()?.iter() {
                sources.push(decode_range(s)?);
            }
            IdentityProvider::TrustedHeader(TrustedHeader {
                user_header: text(t.get_user_header())?,
                groups_header: text(t.get_groups_header())?,
                sources,
            })
        }
    };
    if provider != IdentityProvider::None && session_keys.is_empty() {
        return Err(invalid("identity without session keys"));
    }
    Ok(Identity {
        provider,
        session_keys,
        session_lifetime_secs: r.get_session_lifetime_secs(),
    })
}

pub(crate) fn decode_block_page(
    r: policy_capnp::block_page::Reader<'_>,
) -> Result<BlockPage, SnapshotError> {
    Ok(BlockPage {
        message: text(r.get_message())?,
        support_url: text(r.get_support_url())?,
    })
}

pub(crate) fn decode_access_policies(
    list: capnp::struct_list::Reader<'_, policy_capnp::access_policy::Owned>,
) -> Result<Vec<AccessPolicy>, SnapshotError> {
    list.iter().map(decode_access_policy).collect()
}

fn decode_access_policy(
    p: policy_capnp::access_policy::Reader<'_>,
) -> Result<AccessPolicy, SnapshotError> {
    let name = text(p.get_name())?;
    let alert_severity = text(p.get_alert_severity())?;
    if !(alert_severity.is_empty() || SEVERITIES.contains(&alert_severity.as_str())) {
        return Err(invalid(format!(
            "access policy {name:?}: unknown severity {alert_severity:?}"
        )));
    }
    Ok(AccessPolicy {
        filters: decode_filters(p, &name)?,
        name,
        action: decode_action(p.get_action())?,
        message: text(p.get_message())?,
        alert_severity,
    })
}

/// The who/where filters of an access or session policy (`name` is for
/// messages), checked.
pub(crate) fn decode_filters(
    p: policy_capnp::access_policy::Reader<'_>,
    name: &str,
) -> Result<Filters, SnapshotError> {
    let mut ip_ranges = Vec::new();
    for r in p.get_ip_ranges()?.iter() {
        ip_ranges.push(decode_range(r)?);
    }
    let filters = Filters {
        apps: texts(p.get_apps())?,
        users: texts(p.get_users())?,
        groups: texts(p.get_groups())?,
        ip_tags: texts(p.get_ip_tags())?,
        not_ip_tags: texts(p.get_not_ip_tags())?,
        ip_ranges,
        locations: texts(p.get_locations())?,
        not_locations: texts(p.get_not_locations())?,
        devices: texts(p.get_devices())?,
        client_apps: texts(p.get_client_apps())?,
        user_agent_contains: texts(p.get_user_agent_contains())?,
        user_agent_regex: text(p.get_user_agent_regex())?,
    };
    if filters
        .devices
        .iter()
        .any(|d| !DEVICE_TAGS.contains(&d.as_str()))
        || filters
            .client_apps
            .iter()
            .any(|c| !CLIENT_APPS.contains(&c.as_str()))
    {
        return Err(invalid(format!(
            "policy {name:?}: unknown device tag or client app"
        )));
    }
    if !filters.user_agent_regex.is_empty() && regex::Regex::new(&filters.user_agent_regex).is_err()
    {
        return Err(invalid(format!("policy {name:?}: bad user agent regex")));
    }
    Ok(filters)
}
