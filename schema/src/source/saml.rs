//! SAML sign-in settings, in `[identity]` (`provider = "saml"`) or an app's
//! own `[app.saml]`:
//!
//! ```toml
//! [identity]
//! provider = "saml"
//! idp_metadata_file = "idp-metadata.xml"   # the identity provider's metadata
//! sp_entity_id = "https://proxy.example/saml"
//! allow_unsolicited = false                 # identity-provider-initiated sign-in
//! user_attribute = "uid"                    # default: the NameID
//! groups_attribute = "groups"               # the default
//! device_attribute = "device"               # default: none
//! session_keys = [{ id = "k1", secret_file = "keys/k1" }]
//! ```
//!
//! The metadata is read when the policy is compiled (file:line errors for
//! what is missing in it); the snapshot carries the entity ID, the
//! HTTP-Redirect SSO URL and the signing certificates.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use crate::model::access::Saml;
use crate::saml::metadata::parse_idp_metadata;

/// The SAML fields, shared by `[identity]` and `[app.saml]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SamlSource {
    pub idp_metadata_file: Option<Spanned<String>>,
    pub sp_entity_id: Option<Spanned<String>>,
    pub allow_unsolicited: Option<bool>,
    pub user_attribute: Option<Spanned<String>>,
    pub groups_attribute: Option<Spanned<String>>,
    pub device_attribute: Option<Spanned<String>>,
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
            || self.sp_entity_id.is_some()
            || self.allow_unsolicited.is_some()
            || self.user_attribute.is_some()
            || self.groups_attribute.is_some()
            || self.device_attribute.is_some()
    }

    pub(crate) fn compile(&self, at: Range<usize>, base_dir: &Path, report: Report<'_>) -> Saml {
        let mut saml = Saml {
            idp_entity_id: String::new(),
            sso_url: String::new(),
            certificates: Vec::new(),
            sp_entity_id: String::new(),
            allow_unsolicited: self.allow_unsolicited.unwrap_or(false),
            user_attribute: attribute_name(&self.user_attribute, "", report),
            groups_attribute: attribute_name(&self.groups_attribute, "groups", report),
            device_attribute: attribute_name(&self.device_attribute, "", report),
        };
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
        match &self.idp_metadata_file {
            Some(f) => {
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
            None => report(
                at,
                "SAML sign-in needs idp_metadata_file (the identity provider's metadata)".into(),
            ),
        }
        saml
    }
}
