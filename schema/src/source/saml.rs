//! SAML sign-in settings, in `[identity]` (`provider = "saml"`) or an app's
//! own `[app.saml]`:
//!
//! ```toml
//! [identity]
//! provider = "saml"
//! idp_metadata_file = "idp-metadata.xml"   # the identity provider's metadata,
//! # idp_metadata_url = "https://idp.example/metadata"  # or fetched by controld
//! sp_entity_id = "https://proxy.example/saml"
//! allow_unsolicited = false                 # identity-provider-initiated sign-in
//! user_attribute = "uid"                    # default: the NameID
//! groups_attribute = "groups"               # the default
//! device_attribute = "device"               # default: none
//! # signing_cert = "saml/sp.pem"             # sign the AuthnRequests (RSA or ECDSA P-256;
//! # signing_key = "saml/sp.key"              # the certificate goes in the proxy's metadata)
//! session_keys = [{ id = "k1", secret_file = "keys/k1" }]
//! ```
//!
//! The metadata is read when the policy is compiled (file:line errors for
//! what is missing in it), or fetched by controld from `idp_metadata_url`
//! right after; the snapshot carries the entity ID, the HTTP-Redirect SSO
//! URL and the signing certificates.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::tls::certified_key;
use crate::model::access::{Saml, SamlRelay, NAME_ID_UNSPECIFIED};
use crate::model::names::DnsName;
use crate::saml::issue::SigningKey;
use crate::saml::metadata::parse_idp_metadata;

/// The SAML fields, shared by `[identity]` and `[app.saml]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SamlSource {
    pub idp_metadata_file: Option<Spanned<String>>,
    pub idp_metadata_url: Option<Spanned<String>>,
    pub sp_entity_id: Option<Spanned<String>>,
    pub allow_unsolicited: Option<bool>,
    pub user_attribute: Option<Spanned<String>>,
    pub groups_attribute: Option<Spanned<String>>,
    pub device_attribute: Option<Spanned<String>>,
    /// Sign the `AuthnRequest`s with this certificate's key.
    pub signing_cert: Option<Spanned<String>>,
    pub signing_key: Option<Spanned<String>>,
}

fn attribute_name(field: &Option<Spanned<String>>, default: &str, report: Report<'_>) -> String {
    match field {
        None => default.to_string(),
        Some(v) => {
            let name = v.get_ref().trim();
            if name.chars().any(char::is_control) {
                report(v.span(), "attribute name with a control character".into());
            }
            name.to_string()
        }
    }
}

impl SamlSource {
    /// Whether any SAML field is set (they only mean something with
    /// `provider = "saml"`).
    pub(crate) fn any_set(&self) -> bool {
        self.idp_metadata_file.is_some()
            || self.idp_metadata_url.is_some()
            || self.sp_entity_id.is_some()
            || self.allow_unsolicited.is_some()
            || self.user_attribute.is_some()
            || self.groups_attribute.is_some()
            || self.device_attribute.is_some()
            || self.signing_cert.is_some()
            || self.signing_key.is_some()
    }

    pub(crate) fn compile(&self, at: Range<usize>, base_dir: &Path, report: Report<'_>) -> Saml {
        let mut saml = Saml {
            idp_entity_id: String::new(),
            sso_url: String::new(),
            certificates: Vec::new(),
            metadata_url: None,
            sp_entity_id: String::new(),
            allow_unsolicited: self.allow_unsolicited.unwrap_or(false),
            user_attribute: attribute_name(&self.user_attribute, "", report),
            groups_attribute: attribute_name(&self.groups_attribute, "groups", report),
            device_attribute: attribute_name(&self.device_attribute, "", report),
            request_signing: None,
        };
        match (&self.signing_cert, &self.signing_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                if let Some(pem) = certified_key(base_dir, cert, key, report) {
                    match SigningKey::from_pem(&pem.chain_pem, &pem.key_pem) {
                        Ok(_) => saml.request_signing = Some(pem),
                        Err(e) => report(key.span(), format!("signing_key: {e}")),
                    }
                }
            }
            (Some(f), None) | (None, Some(f)) => {
                report(f.span(), "signing_cert and signing_key go together".into())
            }
        }
        match &self.sp_entity_id {
            Some(v) if !v.get_ref().trim().is_empty() => {
                saml.sp_entity_id = v.get_ref().trim().to_string();
            }
            Some(v) => report(v.span(), "sp_entity_id is empty".into()),
            None => report(
                at.clone(),
                "SAML sign-in needs sp_entity_id (the proxy's entity ID at the identity provider)"
                    .into(),
            ),
        }
        match (&self.idp_metadata_file, &self.idp_metadata_url) {
            (Some(f), Some(_)) => {
                report(f.span(), "give idp_metadata_file or idp_metadata_url, not both".into())
            }
            (None, Some(u)) => match url::Url::parse(u.get_ref()) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    saml.metadata_url = Some(u.get_ref().clone());
                }
                _ => report(u.span(), "idp_metadata_url: not an http(s) URL".into()),
            },
            (Some(f), None) => {
                let path = base_dir.join(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(xml) => match parse_idp_metadata(&xml) {
                        Ok(m) => {
                            saml.idp_entity_id = m.entity_id;
                            saml.sso_url = m.sso_url;
                            saml.certificates = m.certificates;
                        }
                        Err(e) => report(
                            f.span(),
                            format!("idp_metadata_file {}: {e}", path.display()),
                        ),
                    },
                    Err(e) => report(
                        f.span(),
                        format!("idp_metadata_file {}: {e}", path.display()),
                    ),
                }
            }
            (None, None) => report(
                at,
                "SAML sign-in needs idp_metadata_file or idp_metadata_url (the identity provider's metadata)"
                    .into(),
            ),
        }
        saml
    }
}

/// `[app.saml_relay]`: the proxy answers the app's own SAML sign-in.
///
/// ```toml
/// [app.saml_relay]
/// acs_url = "https://files.test/saml/acs"          # the app's ACS, on one of its domains
/// entity_id = "https://files.test/saml/metadata"   # the app's entity ID
/// signing_cert = "saml/saml.pem"                   # `controld certs saml` makes these;
/// signing_key = "saml/saml.key"                    # the certificate goes to the app
/// # name_id_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
/// # idp_entity_id = "..."   # default https://<first domain>.<suffix>/.palisade/saml/idp
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SamlRelaySource {
    acs_url: Option<Spanned<String>>,
    entity_id: Option<Spanned<String>>,
    name_id_format: Option<Spanned<String>>,
    idp_entity_id: Option<Spanned<String>>,
    signing_cert: Option<Spanned<String>>,
    signing_key: Option<Spanned<String>>,
}

impl SamlRelaySource {
    /// `domains` are the app's; `first_proxy_host` its first proxy host.
    pub(crate) fn compile(
        &self,
        at: Range<usize>,
        (domains, first_proxy_host): (&[DnsName], &str),
        base_dir: &Path,
        report: Report<'_>,
    ) -> Option<SamlRelay> {
        let mut missing = |name: &str| {
            report(at.clone(), format!("[app.saml_relay] needs {name}"));
        };
        let (Some(acs), Some(entity), Some(cert), Some(key)) = (
            &self.acs_url,
            &self.entity_id,
            &self.signing_cert,
            &self.signing_key,
        ) else {
            for (field, name) in [
                (
                    self.acs_url.is_none(),
                    "acs_url (the app's assertion consumer service)",
                ),
                (self.entity_id.is_none(), "entity_id (the app's entity ID)"),
                (self.signing_cert.is_none(), "signing_cert"),
                (self.signing_key.is_none(), "signing_key"),
            ] {
                if field {
                    missing(name);
                }
            }
            return None;
        };
        // The ACS must be one of the app's hosts: the browser posts to it
        // through the proxy.
        match url::Url::parse(acs.get_ref()) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| {
                        domains.iter().any(|d| {
                            let d = d.as_str();
                            h.eq_ignore_ascii_case(d)
                                || h.to_ascii_lowercase().ends_with(&format!(".{d}"))
                        })
                    }) => {}
            _ => {
                report(
                    acs.span(),
                    "acs_url: an http(s) URL on one of the app's domains".into(),
                );
                return None;
            }
        }
        let signing = certified_key(base_dir, cert, key, report)?;
        if let Err(e) = SigningKey::from_pem(&signing.chain_pem, &signing.key_pem) {
            report(key.span(), format!("signing_key: {e}"));
            return None;
        }
        let non_empty = |f: &Option<Spanned<String>>| {
            f.as_ref()
                .map(|v| v.get_ref().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Some(SamlRelay {
            acs_url: acs.get_ref().trim().to_string(),
            entity_id: entity.get_ref().trim().to_string(),
            name_id_format: non_empty(&self.name_id_format)
                .unwrap_or_else(|| NAME_ID_UNSPECIFIED.to_string()),
            idp_entity_id: non_empty(&self.idp_entity_id)
                .unwrap_or_else(|| format!("https://{first_proxy_host}/.palisade/saml/idp")),
            signing,
        })
    }
}
