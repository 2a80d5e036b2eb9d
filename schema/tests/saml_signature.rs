//! The SAML response checks against responses a real identity provider
//! signed (pysaml2 through xmlsec1; `tests/saml/`, made by
//! `controld/tests/saml/idp.py`): they verify as they are, and each
//! change below is refused for its own reason, not only by the
//! one-assertion rule that stops every wrapping attack the end-to-end
//! test sends.

use palisade_schema::saml::metadata::parse_idp_metadata;
use palisade_schema::saml::response::{validate, Expect};
use palisade_schema::saml::{parse_instant, SamlError};

const METADATA: &str = include_str!("saml/idp-metadata.xml");
/// Response and assertion both signed (RSA-SHA256).
const BOTH: &str = include_str!("saml/response-both.xml");
/// The assertion signed with the ECDSA P-256 key.
const EC: &str = include_str!("saml/response-ec.xml");

fn check(xml: &str, certificates: Option<&[Vec<u8>]>) -> Result<String, SamlError> {
    let metadata = parse_idp_metadata(METADATA).expect("metadata");
    let issued = xml
        .split("IssueInstant=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("IssueInstant");
    let expect = Expect {
        idp_entity_id: &metadata.entity_id,
        certificates: certificates.unwrap_or(&metadata.certificates),
        sp_entity_id: "https://proxy.test/saml",
        acs_url: "https://demo.test.proxy.test/.palisade/saml/acs",
        request_id: None,
        allow_unsolicited: true,
        now: parse_instant(issued).expect("instant"),
    };
    validate(xml, &expect).map(|a| a.name_id)
}

/// `xml` with the `n`th `<ns2:Signature …>…</ns2:Signature>` cut out;
/// returns it and the cut.
fn cut_signature(xml: &str, n: usize) -> (String, String) {
    let start = xml
        .match_indices("<ns2:Signature ")
        .nth(n)
        .expect("signature")
        .0;
    let end =
        start + xml[start..].find("</ns2:Signature>").expect("end") + "</ns2:Signature>".len();
    (
        format!("{}{}", &xml[..start], &xml[end..]),
        xml[start..end].to_string(),
    )
}

#[test]
fn responses_signed_by_the_identity_provider_verify() {
    assert_eq!(check(BOTH, None).as_deref(), Ok("alice"));
    assert_eq!(check(EC, None).as_deref(), Ok("alice"));
    // Line breaks inside the base64 values are allowed (the response's
    // own: the assertion's, with its signature, is inside what the
    // response's signature covers).
    let wrapped = BOTH.replacen("<ns2:SignatureValue>", "<ns2:SignatureValue>\n", 1);
    assert_eq!(check(&wrapped, None).as_deref(), Ok("alice"));
    let inner = BOTH.replacen("</ns2:SignatureValue>", "\n</ns2:SignatureValue>", 2);
    assert_eq!(check(&inner, None), Err(SamlError::DigestMismatch));
}

#[test]
fn only_the_metadata_certificates_verify() {
    let metadata = parse_idp_metadata(METADATA).expect("metadata");
    // The EC certificate alone does not verify the RSA signatures.
    let ec_only = vec![metadata.certificates[1].clone()];
    assert_eq!(check(BOTH, Some(&ec_only)), Err(SamlError::BadSignature));
    assert_eq!(check(EC, Some(&[])), Err(SamlError::BadSignature));
}

#[test]
fn a_signature_moved_away_from_what_it_signs_is_refused() {
    // Drop the response's signature, then move the assertion's up into
    // the response: it still verifies, but signs another element than
    // the one it is in.
    let (without_response_sig, _) = cut_signature(BOTH, 0);
    let (bare, assertion_sig) = cut_signature(&without_response_sig, 0);
    let issuer_end = bare.find("</ns1:Issuer>").expect("issuer") + "</ns1:Issuer>".len();
    let moved = format!(
        "{}{assertion_sig}{}",
        &bare[..issuer_end],
        &bare[issuer_end..]
    );
    assert_eq!(check(&moved, None), Err(SamlError::NotEnveloped));
    assert_eq!(check(&bare, None), Err(SamlError::Unsigned));
}

#[test]
fn changes_under_a_signature_and_ambiguous_ids_are_refused() {
    let changed = BOTH.replacen(
        "Destination=\"https://demo.test.proxy.test",
        "Destination=\"https://demo.test.proxy.test.",
        1,
    );
    assert_eq!(check(&changed, None), Err(SamlError::DigestMismatch));
    // The EC response signs only its assertion: a twin ID elsewhere is
    // the first thing wrong with it.
    let assertion_id = EC
        .split("<ns1:Assertion ")
        .nth(1)
        .and_then(|s| s.split(" ID=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .expect("assertion ID");
    let status_end = EC.find("</ns0:Status>").expect("status");
    let twin = format!(
        "{}<ns0:Extensions><ns1:Advice ID=\"{assertion_id}\"/></ns0:Extensions>{}",
        &EC[..status_end],
        &EC[status_end..]
    );
    assert_eq!(check(&twin, None), Err(SamlError::DuplicateId));
}
