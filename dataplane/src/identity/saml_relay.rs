//! The SAML relay: the proxy as the identity provider an app's own SAML
//! sign-in is configured with (`[app.saml_relay]`). The app is given the
//! proxy's metadata (served at [`METADATA_PATH`] on its proxy host); its
//! `AuthnRequest` arrives, through the proxy host, at [`SSO_PATH`]; the
//! proxy signs the user in through its own provider first if needed,
//! decides access, and answers with a `Response` it signs for the app,
//! posted by the browser to the app's ACS *on the proxy host*, so the app
//! sets its session cookie there and the user stays inside.
//!
//! The assertion names the user the proxy signed in (the original NameID
//! and attributes when that sign-in was SAML, else the user and groups);
//! it is valid for [`ISSUED_LIFETIME_SECS`] for the app's entity ID and ACS.

use palisade_schema::saml::issue::{
    read_redirect_request, signed_response, AppRequest, Issue, SigningKey,
};
use palisade_schema::saml::SamlError;

pub use palisade_schema::saml::issue::ISSUED_LIFETIME_SECS;

use super::Session;

/// The proxy's single sign-on service toward the app (HTTP-Redirect).
pub const SSO_PATH: &str = "/.palisade/saml/idp/sso";
/// The proxy's identity-provider metadata toward the app.
pub const METADATA_PATH: &str = "/.palisade/saml/idp/metadata";

/// One app's relay, ready to sign.
pub struct SamlRelay {
    pub settings: palisade_schema::access::SamlRelay,
    key: SigningKey,
}

/// Why an app's request was not answered.
#[derive(Debug)]
pub enum RelayError {
    NoRequest,
    Request(SamlError),
    /// The request names another service provider.
    WrongIssuer(String),
    /// It asks for a response at another assertion consumer service.
    WrongAcs(String),
    Signing(String),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::NoRequest => f.write_str("no SAMLRequest from the app"),
            RelayError::Request(e) => write!(f, "the app's SAMLRequest: {e}"),
            RelayError::WrongIssuer(i) => {
                write!(
                    f,
                    "the SAMLRequest is from {i:?}, not this app's service provider"
                )
            }
            RelayError::WrongAcs(a) => {
                write!(
                    f,
                    "the SAMLRequest asks for another consumer service: {a:?}"
                )
            }
            RelayError::Signing(e) => write!(f, "signing the response failed: {e}"),
        }
    }
}

impl SamlRelay {
    pub fn build(settings: &palisade_schema::access::SamlRelay) -> Result<SamlRelay, String> {
        let key = SigningKey::from_pem(&settings.signing.chain_pem, &settings.signing.key_pem)?;
        Ok(SamlRelay {
            settings: settings.clone(),
            key,
        })
    }

    /// The metadata the app's administrator loads; its SSO URL is on the
    /// proxy host `host`.
    pub fn metadata(&self, scheme: &str, host: &str) -> String {
        palisade_schema::saml::issue::idp_metadata(
            &self.settings.idp_entity_id,
            &format!("{scheme}://{host}{SSO_PATH}"),
            &self.key,
        )
    }

    /// The app's `AuthnRequest` from the query of an SSO request, checked
    /// against this app's entity ID and ACS.
    pub fn read_request(&self, query: &[u8]) -> Result<(AppRequest, String), RelayError> {
        let mut request = None;
        let mut relay_state = String::new();
        for (k, v) in url::form_urlencoded::parse(query) {
            match &*k {
                "SAMLRequest" => request = Some(v.into_owned()),
                "RelayState" => relay_state = v.into_owned(),
                _ => {}
            }
        }
        let request = read_redirect_request(&request.ok_or(RelayError::NoRequest)?)
            .map_err(RelayError::Request)?;
        if request.issuer != self.settings.entity_id {
            return Err(RelayError::WrongIssuer(request.issuer));
        }
        if let Some(acs) = &request.acs_url {
            if acs != &self.settings.acs_url {
                return Err(RelayError::WrongAcs(acs.clone()));
            }
        }
        Ok((request, relay_state))
    }

    /// A response for the app (base64, as the HTTP-POST binding carries
    /// it), answering `in_response_to` if the app asked.
    pub fn issue(
        &self,
        session: &Session,
        in_response_to: Option<&str>,
        id: &str,
        now: i64,
    ) -> Result<String, RelayError> {
        use base64::Engine;
        let name_id = if session.name_id.is_empty() {
            &session.user
        } else {
            &session.name_id
        };
        let fallback;
        let attributes = if session.attributes.is_empty() {
            fallback = if session.groups.is_empty() {
                Vec::new()
            } else {
                vec![("groups".to_string(), session.groups.clone())]
            };
            &fallback
        } else {
            &session.attributes
        };
        let s = &self.settings;
        let xml = signed_response(
            &Issue {
                issuer: &s.idp_entity_id,
                audience: &s.entity_id,
                acs_url: &s.acs_url,
                in_response_to,
                name_id,
                name_id_format: &s.name_id_format,
                attributes,
                now,
                id,
            },
            &self.key,
        )
        .map_err(RelayError::Signing)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(xml))
    }

    /// The app's ACS as the browser reaches it: on the app's proxy host,
    /// with the scheme the browser uses (no port: proxy hosts are served
    /// on the default ports, as the sign-in callbacks are).
    pub fn proxied_acs(&self, scheme: &str, suffix: &str) -> String {
        match url::Url::parse(&self.settings.acs_url) {
            Ok(mut u) => {
                let host = format!("{}.{suffix}", u.host_str().unwrap_or(""));
                let _ = u.set_scheme(scheme);
                let _ = u.set_port(None);
                if u.set_host(Some(&host)).is_err() {
                    return self.settings.acs_url.clone();
                }
                u.to_string()
            }
            Err(_) => self.settings.acs_url.clone(),
        }
    }
}
