//! What the proxy sends as a service provider: the `AuthnRequest` over
//! the HTTP-Redirect binding (SAML Bindings §3.4: DEFLATE, base64, a
//! query parameter) and its own metadata (SAML Metadata §2.4.4), which the
//! identity provider's administrator loads.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{format_instant, BINDING_POST, METADATA_NS};

/// Escapes text for an XML attribute value or element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An `AuthnRequest` asking for a response posted to `acs_url`.
pub struct AuthnRequest<'a> {
    /// Starts with a letter (an `xs:ID`).
    pub id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub destination: &'a str,
    pub now: i64,
}

impl AuthnRequest<'_> {
    pub fn xml(&self) -> String {
        format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
                r#"IssueInstant="{now}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" "#,
                r#"ProtocolBinding="{post}"><saml:Issuer>{issuer}</saml:Issuer>"#,
                r#"<samlp:NameIDPolicy AllowCreate="true"/></samlp:AuthnRequest>"#
            ),
            id = escape(self.id),
            now = format_instant(self.now),
            dest = escape(self.destination),
            acs = escape(self.acs_url),
            post = BINDING_POST,
            issuer = escape(self.sp_entity_id),
        )
    }

    /// The identity provider's SSO URL with `SAMLRequest` and
    /// `RelayState` (SAML Bindings §3.4.4.1).
    pub fn redirect_url(&self, relay_state: &str) -> Option<String> {
        self.signed_redirect_url(relay_state, None)
    }

    /// [`AuthnRequest::redirect_url`], signed with `signer` when given:
    /// `SigAlg` and `Signature` over the URL-encoded
    /// `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as sent (SAML
    /// Bindings §3.4.4.1).
    pub fn signed_redirect_url(
        &self,
        relay_state: &str,
        signer: Option<&super::issue::SigningKey>,
    ) -> Option<String> {
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(self.xml().as_bytes()).ok()?;
        let encoded = STANDARD.encode(deflate.finish().ok()?);
        let mut signed = url::form_urlencoded::Serializer::new(String::new());
        signed
            .append_pair("SAMLRequest", &encoded)
            .append_pair("RelayState", relay_state);
        if let Some(key) = signer {
            signed.append_pair("SigAlg", key.algorithm());
        }
        let mut query = signed.finish();
        if let Some(key) = signer {
            let signature = STANDARD.encode(key.sign(query.as_bytes())?);
            query.push('&');
            query.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("Signature", &signature)
                    .finish(),
            );
        }
        let mut url = url::Url::parse(self.destination).ok()?;
        let joined = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{query}"),
            _ => query,
        };
        url.set_query(Some(&joined));
        Some(url.to_string())
    }
}

/// The proxy's service-provider metadata: its entity ID, the certificate
/// its `AuthnRequest`s are signed with (if they are), and one HTTP-POST
/// assertion consumer service per URL given (one per app domain signing in
/// there).
pub fn sp_metadata(
    entity_id: &str,
    acs_urls: &[String],
    signer: Option<&super::issue::SigningKey>,
) -> String {
    let mut xml = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{id}">"#,
            "\n",
            r#"  <md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" "#,
            r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            "\n"
        ),
        md = METADATA_NS,
        ds = super::DSIG_NS,
        id = escape(entity_id),
        signed = signer.is_some(),
    );
    if let Some(key) = signer {
        xml.push_str(&format!(
            "    <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n",
            key.certificate_b64()
        ));
    }
    for (index, url) in acs_urls.iter().enumerate() {
        xml.push_str(&format!(
            "    <md:AssertionConsumerService Binding=\"{BINDING_POST}\" Location=\"{}\" index=\"{index}\"{}/>\n",
            escape(url),
            if index == 0 { " isDefault=\"true\"" } else { "" }
        ));
    }
    xml.push_str("  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_redirect_carries_the_deflated_request() {
        let request = AuthnRequest {
            id: "_a1",
            sp_entity_id: "https://sp.test/saml",
            acs_url: "https://app.test.proxy.test/.palisade/saml/acs",
            destination: "https://idp.test/sso?tenant=1",
            now: 0,
        };
        let url = url::Url::parse(&request.redirect_url("r&s").unwrap()).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("tenant".into(), "1".into()));
        assert_eq!(pairs[2], ("RelayState".into(), "r&s".into()));
        let deflated = STANDARD.decode(&pairs[1].1).unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("ID"), Some("_a1"));
        assert_eq!(
            root.attribute("AssertionConsumerServiceURL"),
            Some("https://app.test.proxy.test/.palisade/saml/acs")
        );
        assert_eq!(root.attribute("IssueInstant"), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn metadata_lists_every_acs() {
        let xml = sp_metadata(
            "urn:sp",
            &["https://a/acs".into(), "https://b/acs?x&y".into()],
            None,
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let acs: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name((METADATA_NS, "AssertionConsumerService")))
            .filter_map(|n| n.attribute("Location"))
            .collect();
        assert_eq!(acs, ["https://a/acs", "https://b/acs?x&y"]);
    }
}
