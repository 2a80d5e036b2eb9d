//! Validating a `Response` posted to the proxy's assertion consumer
//! service (SAML Profiles §4.1.4.3 and §4.1.4.5, SAML Core §2 and §3.2.2),
//! strictly:
//!
//! - the document: bounded, no DTD, a `samlp:Response` root, Success;
//! - **exactly one assertion in the whole message**, a child of the
//!   root, not encrypted;
//! - a signature on the response or on the assertion (both verified when
//!   both are there), each the child of the element it signs, that element
//!   named by a document-unique `ID`, and the assertion used being that
//!   element or inside it: every XML Signature Wrapping variant
//!   (XSW1–8) breaks one of these;
//! - no comment or processing instruction inside the assertion;
//! - issuer, destination, audience, bearer recipient, time bounds and
//!   `InResponseTo` against what this sign-in expects.
//!
//! Replay (an assertion ID used twice) is the caller's: it keeps the used
//! IDs until [`Assertion::not_on_or_after`].

use roxmltree::Node;

use super::{
    dsig, parse_document, parse_instant, SamlError, ASSERTION_NS, DSIG_NS, MAX_RESPONSE,
    PROTOCOL_NS, SKEW_SECS,
};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What the response must say.
pub struct Expect<'a> {
    pub idp_entity_id: &'a str,
    /// DER certificates from the identity provider's metadata.
    pub certificates: &'a [Vec<u8>],
    pub sp_entity_id: &'a str,
    /// This assertion consumer service's URL (recipient, destination).
    pub acs_url: &'a str,
    /// The ID of the `AuthnRequest` this browser sent, if it sent one.
    pub request_id: Option<&'a str>,
    pub allow_unsolicited: bool,
    pub now: i64,
}

/// A validated assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub id: String,
    pub name_id: String,
    /// (attribute `Name`, values) in document order.
    pub attributes: Vec<(String, Vec<String>)>,
    /// When the assertion stops being usable (Unix seconds): the earliest
    /// of its conditions and bearer confirmation bounds.
    pub not_on_or_after: i64,
    /// Whether it answered a request (false: unsolicited).
    pub solicited: bool,
}

impl Assertion {
    /// The values of attribute `name`.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.attributes
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.iter().map(String::as_str))
    }
}

/// Decodes the form's `SAMLResponse` value (base64, bounded first).
pub fn decode_form_value(value: &str) -> Result<String, SamlError> {
    use base64::Engine;
    // Base64 is 4/3 of the bytes; whitespace is allowed between groups.
    if value.len() > MAX_RESPONSE / 3 * 4 + 4096 {
        return Err(SamlError::TooLarge);
    }
    let compact: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::NotBase64)?;
    if bytes.len() > MAX_RESPONSE {
        return Err(SamlError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SamlError::NotXml("not UTF-8".into()))
}

fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name((ns, local)))
}

fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    local: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| c.has_tag_name((ns, local)))
}

/// All text of an element: a comment cannot cut it short.
fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_string()
}

fn time_attr(node: Node<'_, '_>, name: &str) -> Result<Option<i64>, SamlError> {
    node.attribute(name).map(parse_instant).transpose()
}

/// Validates the XML of a `Response`.
pub fn validate(xml: &str, expect: &Expect<'_>) -> Result<Assertion, SamlError> {
    if xml.len() > MAX_RESPONSE {
        return Err(SamlError::TooLarge);
    }
    let doc = parse_document(xml)?;
    let response = doc.root_element();
    if !response.has_tag_name((PROTOCOL_NS, "Response"))
        || response.attribute("Version") != Some("2.0")
    {
        return Err(SamlError::NotAResponse);
    }
    let status = child(response, PROTOCOL_NS, "Status")
        .and_then(|s| child(s, PROTOCOL_NS, "StatusCode"))
        .and_then(|c| c.attribute("Value"))
        .unwrap_or("none");
    if status != SUCCESS {
        return Err(SamlError::Status(
            status.rsplit(':').next().unwrap_or(status).to_string(),
        ));
    }
    if doc
        .descendants()
        .any(|n| n.has_tag_name((ASSERTION_NS, "EncryptedAssertion")))
    {
        return Err(SamlError::Encrypted);
    }
    let assertions: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((ASSERTION_NS, "Assertion")))
        .collect();
    if assertions.len() != 1 {
        return Err(SamlError::AssertionCount(assertions.len()));
    }
    let assertion = assertions[0];
    if assertion.parent() != Some(response) {
        return Err(SamlError::AssertionCount(0));
    }

    // Signatures: the response's and the assertion's own, each enveloped
    // in the element it signs.
    let mut signed = false;
    let mut response_signed = false;
    for holder in [response, assertion] {
        if let Some(signature) = child(holder, DSIG_NS, "Signature") {
            if children(holder, DSIG_NS, "Signature").count() > 1 {
                return Err(SamlError::MalformedSignature("two signatures"));
            }
            let covered = dsig::verify(&doc, signature, expect.certificates)?;
            if covered != holder {
                return Err(SamlError::NotEnveloped);
            }
            signed = true;
            response_signed |= holder == response;
        }
    }
    if !signed {
        return Err(SamlError::Unsigned);
    }
    if assertion.descendants().any(|n| n.is_comment() || n.is_pi()) {
        return Err(SamlError::Comment);
    }

    // The response: destination, issuer, InResponseTo.
    // A signed response must say where it was sent (SAML Bindings
    // §3.5.5.2), so it cannot be replayed at another consumer service.
    match response.attribute("Destination") {
        Some(d) if d != expect.acs_url => return Err(SamlError::WrongDestination),
        None if response_signed => return Err(SamlError::NoDestination),
        _ => {}
    }
    if let Some(issuer) = child(response, ASSERTION_NS, "Issuer") {
        if text_of(issuer) != expect.idp_entity_id {
            return Err(SamlError::WrongIssuer);
        }
    }
    match child(assertion, ASSERTION_NS, "Issuer") {
        Some(i) if text_of(i) == expect.idp_entity_id => {}
        _ => return Err(SamlError::WrongIssuer),
    }
    let answers = response.attribute("InResponseTo");
    check_in_response_to(answers, expect)?;

    // The subject: a NameID and a bearer confirmation for this ACS.
    let subject = child(assertion, ASSERTION_NS, "Subject").ok_or(SamlError::NoNameId)?;
    let name_id = child(subject, ASSERTION_NS, "NameID")
        .filter(|n| n.children().all(|c| c.is_text()))
        .map(text_of)
        .filter(|n| !n.is_empty())
        .ok_or(SamlError::NoNameId)?;
    let now = expect.now;
    let mut confirmation_error = SamlError::NoBearerConfirmation;
    let mut confirmed_until = None;
    for confirmation in children(subject, ASSERTION_NS, "SubjectConfirmation") {
        if confirmation.attribute("Method") != Some(BEARER) {
            continue;
        }
        let Some(data) = child(confirmation, ASSERTION_NS, "SubjectConfirmationData") else {
            continue;
        };
        let checked = (|| {
            if data.attribute("Recipient") != Some(expect.acs_url) {
                return Err(SamlError::WrongRecipient);
            }
            let until = time_attr(data, "NotOnOrAfter")?.ok_or(SamlError::NoBearerConfirmation)?;
            if until <= now - SKEW_SECS {
                return Err(SamlError::Expired);
            }
            if time_attr(data, "NotBefore")?.is_some_and(|t| t > now + SKEW_SECS) {
                return Err(SamlError::NotYetValid);
            }
            check_in_response_to(data.attribute("InResponseTo"), expect)?;
            Ok(until)
        })();
        match checked {
            Ok(until) => {
                confirmed_until = Some(until);
                break;
            }
            Err(e) => confirmation_error = e,
        }
    }
    let confirmed_until = confirmed_until.ok_or(confirmation_error)?;

    // Conditions: the time window and every audience restriction.
    let mut not_on_or_after = confirmed_until;
    if let Some(conditions) = child(assertion, ASSERTION_NS, "Conditions") {
        if time_attr(conditions, "NotBefore")?.is_some_and(|t| t > now + SKEW_SECS) {
            return Err(SamlError::NotYetValid);
        }
        if let Some(until) = time_attr(conditions, "NotOnOrAfter")? {
            if until <= now - SKEW_SECS {
                return Err(SamlError::Expired);
            }
            not_on_or_after = not_on_or_after.min(until);
        }
        for restriction in children(conditions, ASSERTION_NS, "AudienceRestriction") {
            if !children(restriction, ASSERTION_NS, "Audience")
                .any(|a| text_of(a) == expect.sp_entity_id)
            {
                return Err(SamlError::WrongAudience);
            }
        }
    }
    // Without an audience restriction the assertion could be for anyone
    // (SAML Profiles §4.1.4.2 requires one).
    if !child(assertion, ASSERTION_NS, "Conditions").is_some_and(|c| {
        children(c, ASSERTION_NS, "AudienceRestriction")
            .next()
            .is_some()
    }) {
        return Err(SamlError::WrongAudience);
    }

    let mut attributes = Vec::new();
    for statement in children(assertion, ASSERTION_NS, "AttributeStatement") {
        for attribute in children(statement, ASSERTION_NS, "Attribute") {
            let name = attribute.attribute("Name").unwrap_or("").to_string();
            let values = children(attribute, ASSERTION_NS, "AttributeValue")
                .map(text_of)
                .collect();
            attributes.push((name, values));
        }
    }
    let id = assertion
        .attribute("ID")
        .ok_or(SamlError::MalformedSignature("assertion ID"))?
        .to_string();
    Ok(Assertion {
        id,
        name_id,
        attributes,
        not_on_or_after,
        solicited: answers.is_some(),
    })
}

/// `InResponseTo` (on the response or a confirmation) against the request
/// this browser started: equal when there is one; absent only when the
/// policy allows unsolicited responses.
fn check_in_response_to(value: Option<&str>, expect: &Expect<'_>) -> Result<(), SamlError> {
    match (value, expect.request_id) {
        (Some(v), Some(id)) if v == id => Ok(()),
        (Some(_), _) => Err(SamlError::InResponseTo),
        (None, _) if expect.allow_unsolicited => Ok(()),
        (None, Some(_)) => Err(SamlError::InResponseTo),
        (None, None) => Err(SamlError::Unsolicited),
    }
}
