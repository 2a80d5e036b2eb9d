//! SAML response validation, per response: what a sign-in at the proxy's
//! assertion consumer service costs once the form is read, for responses
//! a real identity provider signed (pysaml2 through xmlsec1, the fixtures
//! of `schema/tests/saml/`), one signature each on the assertion:
//!
//! - `validate, RSA-2048`: the whole check (parse, one assertion, the
//!   signature's reference, exclusive c14n, SHA-256 digest, RSA
//!   PKCS#1 v1.5 verification, conditions);
//! - `validate, ECDSA P-256`: the same with an ECDSA signature;
//! - `validate, RSA-2048, response and assertion signed`: two signatures;
//! - `c14n of the assertion`: the canonicalisation alone;
//! - `issue, ECDSA P-256`: what the relay pays to sign an assertion for
//!   an app.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_schema::saml::c14n::canonicalize;
use palisade_schema::saml::issue::{signed_response, Issue, SigningKey};
use palisade_schema::saml::metadata::parse_idp_metadata;
use palisade_schema::saml::response::{validate, Expect};
use palisade_schema::saml::{parse_instant, ASSERTION_NS};

const METADATA: &str = include_str!("../../schema/tests/saml/idp-metadata.xml");
const RSA: &str = include_str!("../../schema/tests/saml/response-rsa.xml");
const EC: &str = include_str!("../../schema/tests/saml/response-ec.xml");
const BOTH: &str = include_str!("../../schema/tests/saml/response-both.xml");

fn issued_at(xml: &str) -> i64 {
    let t = xml
        .split("IssueInstant=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("IssueInstant");
    parse_instant(t).expect("instant")
}

fn bench(c: &mut Criterion) {
    let metadata = parse_idp_metadata(METADATA).expect("metadata");
    let mut group = c.benchmark_group("saml");
    for (name, xml) in [
        ("validate, RSA-2048", RSA),
        ("validate, ECDSA P-256", EC),
        ("validate, RSA-2048, response and assertion signed", BOTH),
    ] {
        let expect = Expect {
            idp_entity_id: &metadata.entity_id,
            certificates: &metadata.certificates,
            sp_entity_id: "https://proxy.test/saml",
            acs_url: "https://demo.test.proxy.test/.palisade/saml/acs",
            request_id: None,
            allow_unsolicited: true,
            now: issued_at(xml),
        };
        validate(xml, &expect).expect("the fixture validates");
        group.bench_function(name, |b| {
            b.iter(|| validate(black_box(xml), &expect).expect("valid"))
        });
    }
    group.bench_function("c14n of the assertion", |b| {
        let doc = roxmltree::Document::parse(RSA).expect("parses");
        let assertion = doc
            .descendants()
            .find(|n| n.has_tag_name((ASSERTION_NS, "Assertion")))
            .expect("assertion");
        b.iter(|| canonicalize(black_box(assertion), None, &[]))
    });
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["proxy.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let signing =
        SigningKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("key");
    let attributes = vec![("groups".to_string(), vec!["eng".to_string()])];
    group.bench_function("issue, ECDSA P-256", |b| {
        b.iter(|| {
            signed_response(
                &Issue {
                    issuer: "https://crm.test.proxy.test/.palisade/saml/idp",
                    audience: "https://crm.test/saml/metadata",
                    acs_url: "https://crm.test/saml/acs",
                    in_response_to: Some("_r1"),
                    name_id: "alice",
                    name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                    attributes: &attributes,
                    now: 1_800_000_000,
                    id: "abc",
                },
                &signing,
            )
            .expect("issued")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
