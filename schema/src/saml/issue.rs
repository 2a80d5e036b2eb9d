//! What the proxy sends as an identity provider, when it relays an app's
//! own SAML sign-in: a `Response` with one `Assertion` for the app's
//! entity ID and assertion consumer service, the assertion signed with the
//! proxy's key (enveloped signature over exclusive c14n, RSA-SHA256 or
//! ECDSA-SHA256 by the key's type), and the app-facing metadata; and the
//! app's `AuthnRequest`, read back from the HTTP-Redirect binding.
//!
//! The signature is made over this module's own canonical form of the
//! assertion (`c14n`, the same code that verifies), so what is signed is
//! exactly what a verifier recomputes.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};

use super::c14n::canonicalize;
use super::request::escape;
use super::{
    format_instant, parse_document, SamlError, ASSERTION_NS, BINDING_REDIRECT, DSIG_NS,
    METADATA_NS, PROTOCOL_NS,
};

/// How long an issued assertion may be used (seconds).
pub const ISSUED_LIFETIME_SECS: i64 = 300;
/// Largest `SAMLRequest` accepted from an app, inflated (bytes).
pub const MAX_REQUEST: usize = 16 * 1024;

/// The proxy's signing key for relayed sign-ins, with its certificate.
pub struct SigningKey {
    key: KeyKind,
    /// The certificate (DER, base64) for `KeyInfo` and the metadata.
    certificate_b64: String,
}

enum KeyKind {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl SigningKey {
    /// From a PEM certificate and a PEM PKCS#8 private key (ECDSA P-256,
    /// as `controld certs saml` makes, or RSA).
    pub fn from_pem(certificate_pem: &[u8], key_pem: &[u8]) -> Result<SigningKey, String> {
        let der_of = |pem: &[u8], label: &str| -> Result<Vec<u8>, String> {
            let text = std::str::from_utf8(pem).map_err(|_| format!("{label}: not PEM"))?;
            let begin = format!("-----BEGIN {label}-----");
            let start = text
                .find(&begin)
                .ok_or_else(|| format!("no {label} PEM block"))?
                + begin.len();
            let end = text[start..]
                .find("-----END")
                .ok_or_else(|| format!("{label}: unterminated PEM block"))?;
            let b64: String = text[start..start + end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            STANDARD
                .decode(b64)
                .map_err(|_| format!("{label}: bad base64"))
        };
        let certificate = der_of(certificate_pem, "CERTIFICATE")?;
        let pkcs8 = der_of(key_pem, "PRIVATE KEY")?;
        let rng = SystemRandom::new();
        let key = match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng) {
            Ok(k) => KeyKind::Ecdsa(k),
            Err(_) => KeyKind::Rsa(
                RsaKeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| format!("the key is neither ECDSA P-256 nor RSA PKCS#8: {e}"))?,
            ),
        };
        Ok(SigningKey {
            key,
            certificate_b64: STANDARD.encode(certificate),
        })
    }

    /// The signature algorithm's URI (RFC 6931).
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            KeyKind::Ecdsa(_) => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            KeyKind::Rsa(_) => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        }
    }

    /// Signs `message`: RSA PKCS#1 v1.5 or ECDSA (r || s), SHA-256.
    pub fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.key {
            // ring's FIXED form is r || s, as XML signatures carry it.
            KeyKind::Ecdsa(k) => k.sign(&rng, message).ok().map(|s| s.as_ref().to_vec()),
            KeyKind::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).ok()?;
                Some(sig)
            }
        }
    }

    pub fn certificate_b64(&self) -> &str {
        &self.certificate_b64
    }
}

/// An app's `AuthnRequest`, as far as the relay needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct AppRequest {
    pub id: String,
    pub issuer: String,
    pub acs_url: Option<String>,
}

/// Reads the `SAMLRequest` of the HTTP-Redirect binding (base64 of raw
/// DEFLATE, SAML Bindings §3.4.4.1), bounded.
pub fn read_redirect_request(value: &str) -> Result<AppRequest, SamlError> {
    if value.len() > MAX_REQUEST {
        return Err(SamlError::TooLarge);
    }
    let compressed = STANDARD
        .decode(value.trim())
        .map_err(|_| SamlError::NotBase64)?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&compressed[..])
        .take(MAX_REQUEST as u64 + 1)
        .read_to_string(&mut xml)
        .map_err(|_| SamlError::NotXml("not DEFLATE-compressed UTF-8".into()))?;
    if xml.len() > MAX_REQUEST {
        return Err(SamlError::TooLarge);
    }
    let doc = parse_document(&xml)?;
    let root = doc.root_element();
    if !root.has_tag_name((PROTOCOL_NS, "AuthnRequest")) {
        return Err(SamlError::NotXml("not an AuthnRequest".into()));
    }
    let id = root
        .attribute("ID")
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or(SamlError::NotXml("the AuthnRequest has no ID".into()))?;
    let issuer = root
        .children()
        .find(|c| c.has_tag_name((ASSERTION_NS, "Issuer")))
        .and_then(|i| i.text())
        .map(str::trim)
        .unwrap_or("");
    Ok(AppRequest {
        id: id.to_string(),
        issuer: issuer.to_string(),
        acs_url: root
            .attribute("AssertionConsumerServiceURL")
            .map(str::to_string),
    })
}

/// What an issued response says.
pub struct Issue<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub acs_url: &'a str,
    pub in_response_to: Option<&'a str>,
    pub name_id: &'a str,
    pub name_id_format: &'a str,
    /// (name, values)
    pub attributes: &'a [(String, Vec<String>)],
    pub now: i64,
    /// Random, unique: the response's and the assertion's IDs derive from it.
    pub id: &'a str,
}

/// A signed `Response` for the app (its XML).
pub fn signed_response(issue: &Issue<'_>, key: &SigningKey) -> Result<String, String> {
    let now = format_instant(issue.now);
    let until = format_instant(issue.now + ISSUED_LIFETIME_SECS);
    let before = format_instant(issue.now - 30);
    let assertion_id = format!("_a{}", issue.id);
    let in_response_to = issue
        .in_response_to
        .map(|r| format!(" InResponseTo=\"{}\"", escape(r)))
        .unwrap_or_default();
    let mut attributes = String::new();
    for (name, values) in issue.attributes {
        attributes.push_str(&format!(
            "<saml:Attribute Name=\"{}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">",
            escape(name)
        ));
        for v in values {
            attributes.push_str(&format!(
                "<saml:AttributeValue xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"xs:string\">{}</saml:AttributeValue>",
                escape(v)
            ));
        }
        attributes.push_str("</saml:Attribute>");
    }
    let statement = if attributes.is_empty() {
        String::new()
    } else {
        format!("<saml:AttributeStatement>{attributes}</saml:AttributeStatement>")
    };
    let issuer = escape(issue.issuer);
    let acs = escape(issue.acs_url);
    // The assertion with an empty slot where its signature goes (after the
    // Issuer, SAML Core §5.4.1's schema order).
    let head = format!(
        "<saml:Assertion xmlns:saml=\"{ASSERTION_NS}\" ID=\"{assertion_id}\" Version=\"2.0\" IssueInstant=\"{now}\"><saml:Issuer>{issuer}</saml:Issuer>"
    );
    let tail = format!(
        concat!(
            "<saml:Subject><saml:NameID Format=\"{fmt}\">{name}</saml:NameID>",
            "<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">",
            "<saml:SubjectConfirmationData NotOnOrAfter=\"{until}\" Recipient=\"{acs}\"{irt}/>",
            "</saml:SubjectConfirmation></saml:Subject>",
            "<saml:Conditions NotBefore=\"{before}\" NotOnOrAfter=\"{until}\"><saml:AudienceRestriction>",
            "<saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>",
            "<saml:AuthnStatement AuthnInstant=\"{now}\" SessionIndex=\"{aid}\"><saml:AuthnContext>",
            "<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef>",
            "</saml:AuthnContext></saml:AuthnStatement>{statement}</saml:Assertion>"
        ),
        fmt = escape(issue.name_id_format),
        name = escape(issue.name_id),
        until = until,
        acs = acs,
        irt = in_response_to,
        before = before,
        aud = escape(issue.audience),
        now = now,
        aid = assertion_id,
        statement = statement,
    );
    let unsigned = format!("{head}{tail}");
    let digest = {
        let doc = roxmltree::Document::parse(&unsigned).map_err(|e| e.to_string())?;
        let c14n = canonicalize(doc.root_element(), None, &[]);
        STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, &c14n))
    };
    let signed_info = format!(
        concat!(
            "<ds:SignedInfo xmlns:ds=\"{ds}\">",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:SignatureMethod Algorithm=\"{alg}\"/>",
            "<ds:Reference URI=\"#{aid}\"><ds:Transforms>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>",
            "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>",
            "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        ),
        ds = DSIG_NS,
        alg = key.algorithm(),
        aid = assertion_id,
        digest = digest,
    );
    let signature_value = {
        let doc = roxmltree::Document::parse(&signed_info).map_err(|e| e.to_string())?;
        let c14n = canonicalize(doc.root_element(), None, &[]);
        STANDARD.encode(key.sign(&c14n).ok_or("signing failed")?)
    };
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{signature_value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>",
        key.certificate_b64
    );
    Ok(format!(
        concat!(
            "<samlp:Response xmlns:samlp=\"{p}\" xmlns:saml=\"{a}\" ID=\"_r{id}\" Version=\"2.0\" ",
            "IssueInstant=\"{now}\" Destination=\"{acs}\"{irt}><saml:Issuer>{issuer}</saml:Issuer>",
            "<samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>",
            "{head}{signature}{tail}</samlp:Response>"
        ),
        p = PROTOCOL_NS,
        a = ASSERTION_NS,
        id = issue.id,
        now = now,
        acs = acs,
        irt = in_response_to,
        issuer = issuer,
        head = head,
        signature = signature,
        tail = tail,
    ))
}

/// The proxy's identity-provider metadata for one app: what the app's
/// administrator loads (entity ID, the HTTP-Redirect SSO URL on the app's
/// proxy host, the signing certificate).
pub fn idp_metadata(entity_id: &str, sso_url: &str, key: &SigningKey) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<md:EntityDescriptor xmlns:md=\"{md}\" xmlns:ds=\"{ds}\" entityID=\"{id}\">\n",
            "  <md:IDPSSODescriptor WantAuthnRequestsSigned=\"false\" ",
            "protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n",
            "    <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}",
            "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n",
            "    <md:SingleSignOnService Binding=\"{binding}\" Location=\"{sso}\"/>\n",
            "  </md:IDPSSODescriptor>\n</md:EntityDescriptor>\n"
        ),
        md = METADATA_NS,
        ds = DSIG_NS,
        id = escape(entity_id),
        cert = key.certificate_b64,
        binding = BINDING_REDIRECT,
        sso = escape(sso_url),
    )
}
