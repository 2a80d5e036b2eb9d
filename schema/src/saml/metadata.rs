//! An identity provider's metadata (SAML Metadata §2.4.3,
//! `IDPSSODescriptor`): its entity ID, where the HTTP-Redirect binding of
//! its single sign-on service is, and the certificates its signatures are
//! checked against. Read by the policy compiler from a file or from what
//! controld fetched; the data plane gets the result in the snapshot.

use super::{dsig, parse_document, BINDING_REDIRECT, DSIG_NS, METADATA_NS};

/// What the proxy needs from an identity provider's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// The HTTP-Redirect SSO endpoint.
    pub sso_url: String,
    /// DER certificates of `KeyDescriptor`s for signing (or without a
    /// `use`).
    pub certificates: Vec<Vec<u8>>,
}

/// Reads an `EntityDescriptor` (or the one identity provider in an
/// `EntitiesDescriptor`).
pub fn parse_idp_metadata(xml: &str) -> Result<IdpMetadata, String> {
    let doc = parse_document(xml).map_err(|e| e.to_string())?;
    let mut idps = doc
        .descendants()
        .filter(|n| n.has_tag_name((METADATA_NS, "IDPSSODescriptor")));
    let idp = match (idps.next(), idps.next()) {
        (Some(one), None) => one,
        (None, _) => return Err("no IDPSSODescriptor in the metadata".into()),
        (Some(_), Some(_)) => {
            return Err("the metadata describes several identity providers; give one".into())
        }
    };
    let entity = idp
        .parent_element()
        .filter(|p| p.has_tag_name((METADATA_NS, "EntityDescriptor")))
        .ok_or("the IDPSSODescriptor is not in an EntityDescriptor")?;
    let entity_id = entity
        .attribute("entityID")
        .filter(|e| !e.trim().is_empty())
        .ok_or("the EntityDescriptor has no entityID")?
        .trim()
        .to_string();
    let sso_url = idp
        .children()
        .filter(|n| n.has_tag_name((METADATA_NS, "SingleSignOnService")))
        .find(|n| n.attribute("Binding") == Some(BINDING_REDIRECT))
        .and_then(|n| n.attribute("Location"))
        .ok_or("no SingleSignOnService with the HTTP-Redirect binding")?
        .to_string();
    match url::Url::parse(&sso_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(format!(
                "SingleSignOnService Location {sso_url:?} is not an http(s) URL"
            ))
        }
    }
    let mut certificates = Vec::new();
    for key in idp
        .children()
        .filter(|n| n.has_tag_name((METADATA_NS, "KeyDescriptor")))
        .filter(|n| n.attribute("use").is_none_or(|u| u == "signing"))
    {
        for cert in key
            .descendants()
            .filter(|n| n.has_tag_name((DSIG_NS, "X509Certificate")))
        {
            let der = dsig::base64_text(cert).map_err(|_| "an X509Certificate is not base64")?;
            let parsed = rustls_pki_types::CertificateDer::from(der.as_slice());
            webpki::EndEntityCert::try_from(&parsed)
                .map_err(|e| format!("an X509Certificate does not parse: {e:?}"))?;
            certificates.push(der);
        }
    }
    if certificates.is_empty() {
        return Err("no signing certificate (KeyDescriptor with an X509Certificate)".into());
    }
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_is_missing() {
        let no_sso = format!(
            r#"<EntityDescriptor xmlns="{METADATA_NS}" entityID="urn:idp"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor>"#
        );
        assert!(parse_idp_metadata(&no_sso)
            .unwrap_err()
            .contains("HTTP-Redirect"));
        assert!(parse_idp_metadata("<x/>")
            .unwrap_err()
            .contains("IDPSSODescriptor"));
    }
}
