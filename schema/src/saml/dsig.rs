//! Verifying one enveloped XML signature (XML Signature Syntax and
//! Processing 1.1, §3.2 core validation) the way a SAML service provider
//! must: against the identity provider's certificates from its metadata
//! only (a `KeyInfo` in the message is never read), with exactly one
//! `Reference` naming an element by a document-unique `ID`, the transforms
//! SAML allows (enveloped signature, exclusive canonicalisation) and no
//! SHA-1. The caller then checks that the element returned is the one it
//! uses (`response.rs`): that is what XML Signature Wrapping attacks get
//! wrong elsewhere.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use roxmltree::Node;
use rustls_pki_types::CertificateDer;
use webpki::EndEntityCert;

use super::c14n::canonicalize;
use super::{SamlError, DSIG_NS};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N_NS: &str = EXC_C14N;

/// The signature algorithms accepted (RFC 6931 §2.3), each with the
/// verifiers to try (the certificate's key type picks one) and whether it
/// is ECDSA.
fn signature_algorithm(
    uri: &str,
) -> Result<(&'static [&'static dyn pki_alg::Alg], bool), SamlError> {
    use webpki::ring as w;
    static RSA256: [&dyn pki_alg::Alg; 1] = [w::RSA_PKCS1_2048_8192_SHA256];
    static RSA384: [&dyn pki_alg::Alg; 1] = [w::RSA_PKCS1_2048_8192_SHA384];
    static RSA512: [&dyn pki_alg::Alg; 1] = [w::RSA_PKCS1_2048_8192_SHA512];
    static EC256: [&dyn pki_alg::Alg; 2] = [w::ECDSA_P256_SHA256, w::ECDSA_P384_SHA256];
    static EC384: [&dyn pki_alg::Alg; 2] = [w::ECDSA_P384_SHA384, w::ECDSA_P256_SHA384];
    Ok(match uri {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => (&RSA256, false),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => (&RSA384, false),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => (&RSA512, false),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => (&EC256, true),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => (&EC384, true),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1" => {
            return Err(SamlError::WeakAlgorithm(uri.to_string()))
        }
        other => return Err(SamlError::UnsupportedAlgorithm(other.to_string())),
    })
}

mod pki_alg {
    pub use rustls_pki_types::SignatureVerificationAlgorithm as Alg;
}

fn digest_algorithm(uri: &str) -> Result<&'static ring::digest::Algorithm, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2001/04/xmlenc#sha256" => &ring::digest::SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => &ring::digest::SHA384,
        "http://www.w3.org/2001/04/xmlenc#sha512" => &ring::digest::SHA512,
        "http://www.w3.org/2000/09/xmldsig#sha1" => {
            return Err(SamlError::WeakAlgorithm(uri.to_string()))
        }
        other => return Err(SamlError::UnsupportedAlgorithm(other.to_string())),
    })
}

/// The one child element of `node` named `local` in the signature
/// namespace; none or several is a malformed signature.
fn only_child<'a, 'i>(node: Node<'a, 'i>, local: &'static str) -> Result<Node<'a, 'i>, SamlError> {
    let mut found = node.children().filter(|c| c.has_tag_name((DSIG_NS, local)));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(SamlError::MalformedSignature(local)),
    }
}

fn algorithm<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    node.attribute("Algorithm")
        .ok_or(SamlError::MalformedSignature("Algorithm"))
}

/// The `PrefixList` of an `InclusiveNamespaces` child of `method`.
fn prefix_list<'a>(method: Node<'a, '_>) -> Vec<&'a str> {
    method
        .children()
        .find(|c| c.has_tag_name((EXC_C14N_NS, "InclusiveNamespaces")))
        .and_then(|n| n.attribute("PrefixList"))
        .map(|l| l.split_ascii_whitespace().collect())
        .unwrap_or_default()
}

/// Base64 as XML carries it: line breaks and spaces between the groups.
pub(super) fn base64_text(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let text: String = node
        .descendants()
        .filter(|n| n.is_text())
        .flat_map(|n| n.text().unwrap_or("").chars())
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| SamlError::MalformedSignature("base64"))
}

/// The element whose `ID` attribute is `id`, if exactly one has it.
pub(super) fn element_by_id<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    id: &str,
) -> Result<Node<'a, 'i>, SamlError> {
    let mut found = doc
        .descendants()
        .filter(|n| n.is_element() && n.attribute("ID") == Some(id));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(SamlError::ReferenceNotFound),
        (Some(_), Some(_)) => Err(SamlError::DuplicateId),
    }
}

/// Verifies the `Signature` element `signature` and returns the element
/// it signs. `certificates` are DER certificates from the identity
/// provider's metadata; one of them must verify the signature.
pub fn verify<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    signature: Node<'a, 'i>,
    certificates: &[Vec<u8>],
) -> Result<Node<'a, 'i>, SamlError> {
    let signed_info = only_child(signature, "SignedInfo")?;
    let c14n_method = only_child(signed_info, "CanonicalizationMethod")?;
    if algorithm(c14n_method)? != EXC_C14N {
        return Err(SamlError::UnsupportedAlgorithm(
            algorithm(c14n_method)?.to_string(),
        ));
    }
    let (verifiers, ecdsa) =
        signature_algorithm(algorithm(only_child(signed_info, "SignatureMethod")?)?)?;
    let reference = only_child(signed_info, "Reference")?;
    let uri = reference.attribute("URI").unwrap_or("");
    let id = uri
        .strip_prefix('#')
        .filter(|id| !id.is_empty())
        .ok_or(SamlError::MalformedSignature("Reference URI"))?;
    let signed = element_by_id(doc, id)?;

    // Transforms: the enveloped signature, then exclusive c14n; nothing
    // else (XPath and XSLT transforms are how references get bent).
    let transforms = only_child(reference, "Transforms")?;
    let mut enveloped = false;
    let mut inclusive = Vec::new();
    for t in transforms.children().filter(|c| c.is_element()) {
        if !t.has_tag_name((DSIG_NS, "Transform")) {
            return Err(SamlError::MalformedSignature("Transforms"));
        }
        match algorithm(t)? {
            ENVELOPED => enveloped = true,
            EXC_C14N => inclusive = prefix_list(t),
            other => return Err(SamlError::UnsupportedAlgorithm(other.to_string())),
        }
    }
    if !enveloped {
        return Err(SamlError::NotEnveloped);
    }
    // Without its transform the digest would be over inclusive c14n
    // (XML Signature §4.4.3.2); only exclusive c14n is accepted.
    if !transforms
        .children()
        .any(|t| t.attribute("Algorithm") == Some(EXC_C14N))
    {
        return Err(SamlError::UnsupportedAlgorithm(
            "inclusive canonicalization (no exclusive c14n transform)".into(),
        ));
    }
    let digest_alg = digest_algorithm(algorithm(only_child(reference, "DigestMethod")?)?)?;
    let digest_value = base64_text(only_child(reference, "DigestValue")?)?;
    let canonical = canonicalize(signed, Some(signature), &inclusive);
    let digest = ring::digest::digest(digest_alg, &canonical);
    if digest.as_ref() != digest_value.as_slice() {
        return Err(SamlError::DigestMismatch);
    }

    let signed_info_c14n = canonicalize(signed_info, None, &prefix_list(c14n_method));
    let value = base64_text(only_child(signature, "SignatureValue")?)?;
    // XML signatures carry ECDSA as r || s (RFC 4051 §3.3); webpki
    // verifies the ASN.1 form.
    let value = if ecdsa {
        ecdsa_der(&value).ok_or(SamlError::BadSignature)?
    } else {
        value
    };
    for der in certificates {
        let der = CertificateDer::from(der.as_slice());
        let Ok(cert) = EndEntityCert::try_from(&der) else {
            continue;
        };
        if verifiers.iter().any(|alg| {
            cert.verify_signature(*alg, &signed_info_c14n, &value)
                .is_ok()
        }) {
            return Ok(signed);
        }
    }
    Err(SamlError::BadSignature)
}

/// `r || s` (two equal halves) as a DER `ECDSA-Sig-Value` (RFC 3279
/// §2.2.3).
fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let integer = |v: &[u8]| {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1)..];
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let (r, s) = (integer(r), integer(s));
    let len = r.len() + s.len();
    let mut out = vec![0x30];
    if len >= 0x80 {
        out.push(0x81);
    }
    out.push(len as u8);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_values_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 1; // s is 1
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
    }
}
