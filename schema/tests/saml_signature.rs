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
fn only_exclusive_canonicalization_is_accepted() {
    // The assertion's transforms without the exclusive c14n one.
    let inclusive = EC.replacen(
        "<ns0:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "",
        1,
    );
    assert_ne!(inclusive, EC, "the fixture has the transform");
    assert!(matches!(
        check(&inclusive, None),
        Err(SamlError::UnsupportedAlgorithm(a)) if a.contains("inclusive")
    ));
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

#[test]
fn what_the_relay_issues_verifies_and_its_request_reader_is_bounded() {
    use palisade_schema::saml::issue::{read_redirect_request, signed_response, Issue, SigningKey};
    use palisade_schema::saml::request::AuthnRequest;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["proxy.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let signing = SigningKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("signing key");
    let attributes = vec![(
        "groups".to_string(),
        vec!["eng".to_string(), "a<b".to_string()],
    )];
    let acs = "https://app.test/saml/acs";
    let xml = signed_response(
        &Issue {
            issuer: "https://app.test.proxy.test/.palisade/saml/idp",
            audience: "https://app.test/saml/metadata",
            acs_url: acs,
            in_response_to: Some("_req1"),
            name_id: "alice@corp.test",
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            attributes: &attributes,
            now: 1_800_000_000,
            id: "abc123",
        },
        &signing,
    )
    .expect("issued");
    let expect = Expect {
        idp_entity_id: "https://app.test.proxy.test/.palisade/saml/idp",
        certificates: &[cert.der().to_vec()],
        sp_entity_id: "https://app.test/saml/metadata",
        acs_url: acs,
        request_id: Some("_req1"),
        allow_unsolicited: false,
        now: 1_800_000_010,
    };
    let assertion = validate(&xml, &expect).expect("our own validator accepts it");
    assert_eq!(assertion.name_id, "alice@corp.test");
    assert_eq!(
        assertion.values("groups").collect::<Vec<_>>(),
        ["eng", "a<b"]
    );

    let request = AuthnRequest {
        id: "_req1",
        sp_entity_id: "https://app.test/saml/metadata",
        acs_url: acs,
        destination: "https://app.test.proxy.test/.palisade/saml/idp/sso",
        now: 0,
    };
    let url = url::Url::parse(&request.redirect_url("").expect("url")).expect("parses");
    let value = url
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .expect("SAMLRequest")
        .1
        .into_owned();
    let read = read_redirect_request(&value).expect("reads");
    assert_eq!(
        (
            read.id.as_str(),
            read.issuer.as_str(),
            read.acs_url.as_deref()
        ),
        ("_req1", "https://app.test/saml/metadata", Some(acs))
    );
    assert_eq!(
        read_redirect_request(&"A".repeat(20_000)),
        Err(SamlError::TooLarge)
    );
    assert_eq!(read_redirect_request("%%%"), Err(SamlError::NotBase64));
}
