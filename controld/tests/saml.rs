//! SAML sign-in end to end: real `controld` and `dataplane` processes, a
//! real origin, and a SAML identity provider nobody here wrote (pysaml2,
//! signing through xmlsec1; `tests/saml/idp.py`). Both flows
//! (service-provider and identity-provider initiated), every way a
//! response must be refused (XML Signature Wrapping XSW1–8 included), the
//! log record of each outcome, and the relay of a python3-saml app's own
//! sign-in. The rig is `support/saml.rs`.

mod support;

use support::https::{self, Response};
use support::saml::*;
use support::signin::record_for;

#[test]
fn both_saml_flows_sign_in_and_reach_the_app_with_a_scoped_session() {
    let rig = rig();
    let client = rig.client();
    // Service-provider initiated, with each way pysaml2 signs, and an
    // assertion signed with the identity provider's ECDSA P-256 key.
    for (i, params) in ["sign=assertion", "sign=response", "sign=both", "mutate=ec"]
        .iter()
        .enumerate()
    {
        let (location, login) = rig.start(&client, DEMO);
        let form = rig.idp_form(&format!(
            "{location}&user=alice&groups=eng,finance&{params}"
        ));
        assert_eq!(form.action, format!("https://{DEMO}/.palisade/saml/acs"));
        let r = rig.post(&client, &form, Some(&login));
        let session = session_of(&r, DEMO);
        assert_eq!(r.header("location"), Some("/start?x=1"), "{params}");
        let target = format!("/app/{i}");
        let r = rig.get(
            &client,
            &format!("www.{DEMO}"),
            &target,
            &format!("Cookie: theme=dark; palisade_session={session}\r\n"),
        );
        assert_eq!(r.status, 200, "{params}: {r:?}");
        assert_eq!(r.body, format!("app saw {target}"));
        let row = record_for(&rig.env, &target);
        assert_eq!(row["user"], "alice", "{row}");
        assert_eq!(row["action"], "allow", "{row}");
    }
    assert!(
        rig.origin
            .requests()
            .iter()
            .all(|q| q.head.windows(8).all(|w| w != b"palisade")),
        "no proxy cookie or path ever reaches the app"
    );
    let record = sign_in_record(&rig.env, "initiated by the service provider");
    assert_eq!(record["user"], "alice", "{record}");
    assert_eq!(record["action"], "allow", "{record}");
    assert_eq!(record["app"], "demo", "{record}");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("idp={}/metadata", rig.idp))),
        "{record}"
    );

    // Started on another host of the app: the callback is the app
    // domain's (one ACS per domain at the identity provider), the login
    // cookie set for that domain, and the user goes back to the host they
    // opened.
    let (location, login) = rig.start(&client, &format!("www.{DEMO}"));
    let form = rig.idp_form(&format!("{location}&user=alice"));
    assert_eq!(form.action, format!("https://{DEMO}/.palisade/saml/acs"));
    let r = rig.post(&client, &form, Some(&login));
    session_of(&r, DEMO);
    assert_eq!(
        r.header("location"),
        Some(format!("https://www.{DEMO}/start?x=1").as_str())
    );

    // Identity-provider initiated: no login cookie, RelayState is where
    // to go.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{DEMO}/.palisade/saml/acs&user=bob&relay=/welcome",
        rig.idp
    ));
    let r = rig.post(&client, &form, None);
    let session = session_of(&r, DEMO);
    assert_eq!(r.header("location"), Some("/welcome"));
    let r = rig.get(
        &client,
        DEMO,
        "/bob-was-here",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(record_for(&rig.env, "/bob-was-here")["user"], "bob");
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the identity provider")["user"],
        "bob"
    );

    // An app with its own provider entry signs in there (its own entity
    // ID and ACS).
    let (location, login) = rig.start(&client, BOX);
    assert!(
        location.contains("&SigAlg=") && location.contains("&Signature="),
        "box's provider entry signs its requests: {location}"
    );
    // The identity provider checks that signature: changed, it refuses.
    let tampered = location.replacen("RelayState=", "RelayState=x", 1);
    let (status, page) = https::http_get(&format!("{tampered}&user=carol"));
    assert_eq!(status, 403, "{page}");
    let form = rig.idp_form(&format!("{location}&user=carol"));
    assert_eq!(form.action, format!("https://{BOX}/.palisade/saml/acs"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), BOX);
    let r = rig.get(
        &client,
        BOX,
        "/carol-in-box",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // The access policies see the SAML user: eve signs in, and is blocked.
    let (location, login) = rig.start(&client, DEMO);
    let form = rig.idp_form(&format!("{location}&user=eve"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), DEMO);
    let r = rig.get(
        &client,
        DEMO,
        "/eve-tries",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("Not for eve."), "{}", r.body);
    let row = record_for(&rig.env, "/eve-tries");
    assert_eq!(
        (row["user"].as_str(), row["action"].as_str()),
        (Some("eve"), Some("block"))
    );
}

#[test]
fn every_refused_saml_response_gets_its_reason_and_a_record_never_a_session() {
    let rig = rig();
    let client = rig.client();
    let refused = |r: &Response, reason: &str, what: &str| {
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert!(
            r.body.contains("Sign-in failed") && r.body.contains(reason),
            "{what}: expected {reason:?} in {}",
            r.body
        );
        assert!(
            !r.headers_named("set-cookie")
                .iter()
                .any(|c| c.starts_with("palisade_session=")),
            "{what}: no session"
        );
        let record = sign_in_record(&rig.env, reason);
        assert_eq!(record["action"], "block", "{what}: {record}");
        assert_eq!(record["user"], "", "{what}: {record}");
    };

    // Responses the identity provider signed, wrong in one way each, and
    // the attacks on signed responses.
    let cases: &[(&str, &str)] = &[
        ("mutate=expired", "the assertion has expired"),
        ("mutate=notyet", "the assertion is not yet valid"),
        ("mutate=audience", "the assertion is for another audience"),
        ("mutate=recipient", "the assertion is for another recipient"),
        ("mutate=nodest", "the signed response names no destination"),
        (
            "mutate=unsigned",
            "neither the response nor the assertion is signed",
        ),
        ("mutate=othercert", "is not valid for the identity provider"),
        ("mutate=sha1", "weak signature algorithm"),
        ("mutate=tamper", "the signed content was changed"),
        ("mutate=xxe", "document type declaration"),
        ("mutate=comment&user=alice.evil", "contains a comment"),
    ];
    for (params, reason) in cases {
        let (location, login) = rig.start(&client, DEMO);
        let user = if params.contains("user=") {
            ""
        } else {
            "&user=alice"
        };
        let form = rig.idp_form(&format!("{location}{user}&{params}"));
        refused(&rig.post(&client, &form, Some(&login)), reason, params);
    }
    // XML Signature Wrapping: the signed original kept somewhere, an
    // evil assertion (for "mallory") where a careless reader looks.
    for variant in 1..=8 {
        let (location, login) = rig.start(&client, DEMO);
        let params = format!("mutate=xsw{variant}");
        let form = rig.idp_form(&format!("{location}&user=alice&{params}"));
        let r = rig.post(&client, &form, Some(&login));
        let reason = [
            "assertions, not one",
            "does not sign the element it is in",
            "names no element",
            "two elements share the signed ID",
            "the signed content was changed",
            "the signature is malformed",
        ]
        .into_iter()
        .find(|reason| r.body.contains(reason))
        .unwrap_or_else(|| panic!("{params}: a wrapping refusal in {r:?}"));
        eprintln!("{params}: {reason}");
        refused(&r, reason, &params);
        assert!(!r.body.contains("mallory"), "{params}: {}", r.body);
    }

    // A response answering another browser's request.
    let (location_a, _login_a) = rig.start(&client, DEMO);
    let (_location_b, login_b) = rig.start(&client, DEMO);
    let form = rig.idp_form(&format!("{location_a}&user=alice"));
    refused(
        &rig.post(&client, &form, Some(&login_b)),
        "answers a sign-in this browser did not start",
        "InResponseTo from another browser",
    );

    // Replay: an unsolicited response used once, then again.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{DEMO}/.palisade/saml/acs&user=dave",
        rig.idp
    ));
    session_of(&rig.post(&client, &form, None), DEMO);
    refused(
        &rig.post(&client, &form, None),
        "the assertion was already used",
        "replay",
    );

    // Unsolicited where the app's provider does not allow it.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{BOX}/.palisade/saml/acs&user=dave",
        rig.idp
    ));
    refused(
        &rig.post(&client, &form, None),
        "unsolicited responses are not accepted here",
        "unsolicited",
    );
}

#[test]
fn the_relay_answers_the_apps_own_saml_sign_in_on_the_proxy_host() {
    let rig = rig();
    let client = rig.client();

    // App-initiated: the app sends the browser to its identity provider,
    // the proxy, on the proxy host.
    let r = rig.get(&client, CRM, "/private", "");
    assert_eq!(r.status, 302, "{r:?}");
    let to_sso = r.header("location").expect("Location").to_string();
    assert!(
        to_sso.starts_with(&format!(
            "https://{CRM}/.palisade/saml/idp/sso?SAMLRequest="
        )),
        "{to_sso}"
    );
    let app_request = https::cookie(&r.headers_named("set-cookie"), "app_request")
        .expect("the app remembers its request")
        .to_string();
    let sso = target_of(&to_sso);
    // No proxy session yet: sign in at the proxy, which returns here.
    let r = rig.get(&client, CRM, &sso, "");
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("location").expect("Location").to_string();
    let login = https::cookie(&r.headers_named("set-cookie"), "palisade_login")
        .expect("login cookie")
        .to_string();
    let form = rig.idp_form(&format!("{location}&user=alice&groups=eng,finance"));
    let r = rig.post(&client, &form, Some(&login));
    let session = session_of(&r, CRM);
    assert_eq!(
        r.header("location"),
        Some(sso.as_str()),
        "back to the app's request"
    );
    // Signed in at the proxy: the answer for the app.
    let r = rig.get(
        &client,
        CRM,
        &sso,
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let form = Form::parse(&r.body);
    // The app gets its own RelayState back as it sent it (the proxy host
    // in the redirect was the proxy's rewriting of it).
    assert_eq!(form.relay_state, "https://crm.test/private");
    let cookies = format!("palisade_session={session}; app_request={app_request}");
    let (r, app_session) = post_to_app(&rig, &client, &form, &cookies);
    assert_eq!(
        r.header("location"),
        Some(format!("https://{CRM}/private").as_str())
    );
    let r = rig.get(
        &client,
        CRM,
        "/private",
        &format!("Cookie: palisade_session={session}; app_session={app_session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "signed in as alice groups=eng,finance");
    let record = sign_in_record(&rig.env, "initiated by the app");
    assert_eq!(
        (record["user"].as_str(), record["app"].as_str()),
        (Some("alice"), Some("crm"))
    );
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sp=https://crm.test/saml/metadata")),
        "{record}"
    );

    // Identity-provider initiated: the proxy signs in and, in the same
    // answer, sends the browser on to the app.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{CRM}/.palisade/saml/acs&user=bob&groups=sales&relay=/private",
        rig.idp
    ));
    let r = rig.post(&client, &form, None);
    assert_eq!(r.status, 200, "{r:?}");
    let session = https::cookie(&r.headers_named("set-cookie"), "palisade_session")
        .expect("the proxy session comes with it")
        .to_string();
    let form = Form::parse(&r.body);
    assert_eq!(form.relay_state, "/private");
    let (_, app_session) =
        post_to_app(&rig, &client, &form, &format!("palisade_session={session}"));
    let r = rig.get(
        &client,
        CRM,
        "/private",
        &format!("Cookie: palisade_session={session}; app_session={app_session}\r\n"),
    );
    assert_eq!(r.body, "signed in as bob groups=sales", "{r:?}");
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the identity provider")["user"],
        "bob"
    );

    // A user the access policies block gets the block page, and the app
    // gets nothing.
    let (location, login) = {
        let r = rig.get(&client, CRM, &sso, "");
        let location = r.header("location").expect("Location").to_string();
        let login = https::cookie(&r.headers_named("set-cookie"), "palisade_login")
            .expect("login")
            .to_string();
        (location, login)
    };
    let form = rig.idp_form(&format!("{location}&user=eve"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), CRM);
    let r = rig.get(
        &client,
        CRM,
        &sso,
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body.contains("Not for eve.") && !r.body.contains("SAMLResponse"),
        "{}",
        r.body
    );
    assert_eq!(
        sign_in_record(&rig.env, "blocked by access policy")["user"],
        "eve"
    );

    // A request from another service provider is refused.
    let foreign = palisade_schema::saml::request::AuthnRequest {
        id: "_x1",
        sp_entity_id: "https://evil.test/saml",
        acs_url: "https://evil.test/acs",
        destination: &format!("https://{CRM}/.palisade/saml/idp/sso"),
        now: 0,
    }
    .redirect_url("")
    .expect("url");
    let r = rig.get(&client, CRM, &target_of(&foreign), "");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("not this app"), "{}", r.body);
}
