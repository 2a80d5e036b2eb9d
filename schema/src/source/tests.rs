//! The compiler's tests, by table: each compiles a policy text, checks the
//! model it yields (and that it survives a snapshot round trip), and checks
//! that every mistake is reported at its file:line:column.

mod policy {

    use crate::model::names::{DnsName, IpRange, Scheme, Upstream, UpstreamHost};
    use crate::model::policy::Policy;
    use crate::source::{compile_source, CompileOptions, Diagnostics};
    use std::path::Path;

    fn compile(text: &str) -> Result<Policy, Diagnostics> {
        compile_source(
            "p.toml",
            text,
            Path::new("."),
            &CompileOptions {
                version: 7,
                compiled_at_unix_ms: 0,
            },
        )
    }

    const MINIMAL: &str = r#"[proxy]
suffix = "proxy.test"            # users reach <app host>.proxy.test

[[app]]
name = "demo"
domains = ["demo.test", "demo-cdn.test"]   # the app owns these and all their subdomains
upstream = "http://127.0.0.1:18080"        # optional: connect here for every host of the app (http or https)
"#;

    #[test]
    fn minimal_policy_compiles_as_written() {
        let p = compile(MINIMAL).expect("compiles");
        assert_eq!(p.suffix.as_str(), "proxy.test");
        assert_eq!(p.version, 7);
        assert_eq!(p.apps.len(), 1);
        assert_eq!(
            p.apps[0].domains,
            vec![
                DnsName::parse("demo.test").unwrap(),
                DnsName::parse("demo-cdn.test").unwrap()
            ]
        );
        assert_eq!(
            p.apps[0].upstream,
            Upstream::Fixed {
                scheme: Scheme::Http,
                host: UpstreamHost::Ip("127.0.0.1".parse().unwrap()),
                port: 18080
            }
        );
    }

    fn first_error(text: &str) -> String {
        compile(text).expect_err("must fail").0[0].to_string()
    }

    #[test]
    fn unknown_key_is_located() {
        let e = first_error("[proxy]\nsuffix = \"p.test\"\nsufix = 1\n");
        assert!(
            e.starts_with("p.toml:3:1: error: unknown field `sufix`"),
            "{e}"
        );
    }

    #[test]
    fn bad_domain_is_located() {
        let e = first_error("[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"a\"\ndomains = [\"ok.test\", \"bad_domain.test\"]\n");
        assert!(e.starts_with("p.toml:5:23: error: bad domain"), "{e}");
    }

    #[test]
    fn bare_host_contexts_are_checked_and_survive_a_snapshot() {
        let ok = compile(&format!(
            "{MINIMAL}bare_host_contexts = ['\"domain\":\"', 'document.domain = \"']\n"
        ))
        .expect("compiles");
        assert_eq!(
            ok.apps[0].bare_host_contexts,
            vec![
                "\"domain\":\"".to_string(),
                "document.domain = \"".to_string()
            ]
        );
        let decoded = crate::codec::decode(&crate::codec::encode(&ok)).expect("decodes");
        assert_eq!(
            decoded.apps[0].bare_host_contexts,
            ok.apps[0].bare_host_contexts
        );
        let e = first_error(&format!("{MINIMAL}bare_host_contexts = [\"ok=\", \"\"]\n"));
        assert!(
            e.starts_with("p.toml:8:30: error: bare_host_contexts: empty pattern"),
            "{e}"
        );
        let long = "x".repeat(65);
        let e = first_error(&format!("{MINIMAL}bare_host_contexts = [\"{long}\"]\n"));
        assert!(e.contains("longer than 64 bytes"), "{e}");
    }

    #[test]
    fn duplicate_domain_across_apps_names_first_owner() {
        let e = first_error(
            "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"a\"\ndomains = [\"x.test\"]\n[[app]]\nname = \"b\"\ndomains = [\"X.test\"]\n",
        );
        assert!(
            e.starts_with(
                "p.toml:8:12: error: duplicate domain x.test: already owned by app \"a\" (line 5)"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_upstream_urls_are_refused() {
        for (url, why) in [
            ("ftp://h", "scheme"),
            ("http://u:p@h.test", "user info"),
            ("http://h.test/path", "no path"),
            ("http://", "bad upstream URL"),
            ("not a url", "bad upstream URL"),
        ] {
            let text = format!("[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"a\"\ndomains = [\"x.test\"]\nupstream = \"{url}\"\n");
            let e = first_error(&text);
            assert!(
                e.starts_with("p.toml:6:12: error: ") && e.contains(why),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn domain_under_suffix_is_refused() {
        let e = first_error(
            "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"a\"\ndomains = [\"x.p.test\"]\n",
        );
        assert!(e.contains("overlaps the proxy suffix"), "{e}");
    }

    #[test]
    fn ip_tags_compile_and_ranges_are_strict() {
        let p = compile(
            "[proxy]\nsuffix = \"p.test\"\n[[ip_tag]]\nname = \"corp\"\nranges = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        assert_eq!(p.ip_tags[0].name, "corp");
        let shown: Vec<String> = p.ip_tags[0].ranges.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        let e = first_error("[proxy]\nsuffix = \"p.test\"\n[[ip_tag]]\nname = \"corp\"\nranges = [\"10.1.2.3/8\"]\n");
        assert!(
            e.starts_with("p.toml:5:11: error: bad IP range")
                && e.contains("did you mean 10.0.0.0/8"),
            "{e}"
        );
        for bad in ["10.0.0.0/33", "::/129", "10.0.0", "x/8", "10.0.0.0/-1"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        assert!(IpRange::parse("0.0.0.0/0").is_ok());
        assert!(IpRange::parse("::/0").is_ok());
        let e = first_error("[proxy]\nsuffix = \"p.test\"\n[[ip_tag]]\nname = \"a\"\nranges = [\"10.0.0.0/8\"]\n[[ip_tag]]\nname = \"a\"\nranges = [\"10.0.0.0/8\"]\n");
        assert!(
            e.contains("duplicate ip_tag \"a\" (first defined on line 4)"),
            "{e}"
        );
    }

    #[test]
    fn dns_names() {
        assert!(DnsName::parse("a.b-c.test").is_ok());
        assert_eq!(DnsName::parse("Demo.TEST").unwrap().as_str(), "demo.test");
        for bad in [
            "",
            "a..b",
            "-a.test",
            "a-.test",
            "a.test.",
            "1.2.3.4",
            "a b.test",
            &"x".repeat(64),
        ] {
            assert!(DnsName::parse(bad).is_err(), "{bad:?}");
        }
        let d = DnsName::parse("demo.test").unwrap();
        assert!(DnsName::parse("a.demo.test").unwrap().is_within(&d));
        assert!(!DnsName::parse("notdemo.test").unwrap().is_within(&d));
    }
}

mod access {

    use crate::model::policy::Policy;
    use crate::source::{compile_source, CompileOptions, Diagnostics};
    use std::path::Path;

    const BASE: &str = "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.test\"]\n[[ip_tag]]\nname = \"corp\"\nranges = [\"10.0.0.0/8\"]\n";

    fn compile(extra: &str) -> Result<Policy, Diagnostics> {
        compile_source(
            "p.toml",
            &format!("{BASE}{extra}"),
            Path::new("."),
            &CompileOptions::default(),
        )
    }

    fn first_error(extra: &str) -> String {
        compile(extra).expect_err("must fail").0[0].to_string()
    }

    #[test]
    fn access_policies_compile_and_survive_a_snapshot() {
        let p = compile(
            "[[location]]\nname = \"office\"\nranges = [\"192.0.2.0/24\"]\n[[access_policy]]\nname = \"a\"\napps = [\"box\"]\nip_tags = [\"corp\"]\nnot_locations = [\"office\"]\ndevices = [\"unmanaged\"]\nclient_apps = [\"native\"]\nuser_agent_regex = \"^curl/\"\naction = \"block\"\nalert = { severity = \"high\" }\n",
        )
        .expect("compiles");
        assert_eq!(
            p.access_policies[0].action,
            crate::model::access::AccessAction::Block
        );
        assert_eq!(p.locations[0].name, "office");
        // The alert becomes a log-stream rule for controld.
        assert_eq!(p.activity_policies[0].policies, vec!["a".to_string()]);
        let decoded = crate::codec::decode(&crate::codec::encode(&p)).expect("decodes");
        assert_eq!(decoded.access_policies, p.access_policies);
        assert_eq!(decoded.locations, p.locations);
        assert_eq!(decoded.activity_policies, p.activity_policies);
    }

    #[test]
    fn saml_settings_survive_a_snapshot() {
        let key = "00".repeat(32);
        let p = compile(&format!(
            "[identity]\nprovider = \"saml\"\nsp_entity_id = \"urn:sp\"\nidp_metadata_file = \"tests/saml/idp-metadata.xml\"\nallow_unsolicited = true\ndevice_attribute = \"device\"\nsession_keys = [{{ id = \"k1\", secret = \"{key}\" }}]\n[app.saml]\nsp_entity_id = \"urn:box\"\nidp_metadata_file = \"tests/saml/idp-metadata.xml\"\nuser_attribute = \"uid\"\n"
        ))
        .expect("compiles");
        let crate::model::access::IdentityProvider::Saml(saml) = &p.identity.provider else {
            panic!("{:?}", p.identity.provider);
        };
        assert_eq!(saml.certificates.len(), 2, "the RSA and the EC certificate");
        assert!(saml.sso_url.ends_with("/sso") && saml.allow_unsolicited);
        assert_eq!(
            (
                saml.groups_attribute.as_str(),
                saml.device_attribute.as_str()
            ),
            ("groups", "device")
        );
        let app = p.apps[0].saml.as_ref().expect("app's own");
        assert_eq!(
            (app.sp_entity_id.as_str(), app.user_attribute.as_str()),
            ("urn:box", "uid")
        );
        assert!(!app.allow_unsolicited, "off unless asked for");
        let decoded = crate::codec::decode(&crate::codec::encode(&p)).expect("decodes");
        assert_eq!(decoded.identity, p.identity);
        assert_eq!(decoded.apps[0].saml, p.apps[0].saml);
    }

    #[test]
    fn a_saml_relay_needs_the_proxy_to_sign_users_in() {
        let dir = tempfile::tempdir().expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        std::fs::write(dir.path().join("saml.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("saml.key"), key.serialize_pem()).expect("write");
        let relay = "[app.saml_relay]\nacs_url = \"https://box.test/acs\"\nentity_id = \"urn:box\"\nsigning_cert = \"saml.pem\"\nsigning_key = \"saml.key\"\n";
        let compile_in =
            |text: String| compile_source("p.toml", &text, dir.path(), &CompileOptions::default());
        let e = compile_in(format!("{BASE}{relay}")).expect_err("no sign-in");
        assert!(
            e.to_string()
                .contains("relays its SAML sign-in: the proxy must sign users in itself"),
            "{e}"
        );
        let key_hex = "00".repeat(32);
        let metadata = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/saml/idp-metadata.xml");
        let p = compile_in(format!(
            "{BASE}{relay}[identity]\nprovider = \"saml\"\nsp_entity_id = \"urn:sp\"\nidp_metadata_file = \"{metadata}\"\nsession_keys = [{{ id = \"k1\", secret = \"{key_hex}\" }}]\n"
        ))
        .expect("compiles with a sign-in");
        let relay = p.apps[0].saml_relay.as_ref().expect("relay");
        assert_eq!(
            relay.idp_entity_id,
            "https://box.test.p.test/.palisade/saml/idp"
        );
        let decoded = crate::codec::decode(&crate::codec::encode(&p)).expect("decodes");
        assert_eq!(decoded.apps[0].saml_relay, p.apps[0].saml_relay);
    }

    #[test]
    fn access_policy_mistakes_are_located() {
        // (the text after the base policy, what the first error starts with
        // or contains)
        let cases: &[(&str, &str)] = &[
            ("[[access_policy]]\nname = \"a\"\nip_tags = [\"nope\"]\naction = \"block\"\n", "p.toml:11:12: error: unknown ip_tag \"nope\""),
            ("[[access_policy]]\nname = \"a\"\naction = \"deny\"\n", "p.toml:11:10: error: unknown action \"deny\""),
            ("[[access_policy]]\nname = \"a\"\ndevices = [\"laptop\"]\naction = \"block\"\n", "unknown device tag"),
            ("[[access_policy]]\nname = \"a\"\nuser_agent_regex = \"(\"\naction = \"block\"\n", "p.toml:11:20: error: bad user_agent_regex"),
            ("[identity]\nprovider = \"oidc\"\nissuer = \"https://idp.test\"\nclient_id = \"c\"\nauthorization_endpoint = \"https://idp.test/a\"\njwks_file = \"missing.json\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "jwks_file ./missing.json: No such file"),
            ("[identity]\nprovider = \"trusted_header\"\nuser_header = \"X-User\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "needs trusted_sources"),
            ("[identity]\nprovider = \"trusted_header\"\nuser_header = \"X-User\"\ntrusted_sources = [\"10.0.0.0/8\"]\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "64 hex digits"),
            ("[app.oidc]\nissuer = \"https://idp.test\"\nclient_id = \"c\"\nauthorization_endpoint = \"https://idp.test/a\"\njwks_url = \"https://idp.test/jwks\"\n", "app \"box\" has its own oidc provider: [identity] session_keys are needed"),
            ("[app.oidc]\nissuer = \"https://idp.test\"\n", "provider \"oidc\" needs client_id"),
            ("[identity]\nprovider = \"saml\"\nsp_entity_id = \"urn:sp\"\nidp_metadata_file = \"missing.xml\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "p.toml:12:21: error: idp_metadata_file ./missing.xml: No such file"),
            ("[identity]\nprovider = \"saml\"\nidp_metadata_file = \"tests/saml/idp-metadata.xml\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "SAML sign-in needs sp_entity_id"),
            ("[identity]\nprovider = \"oidc\"\nsp_entity_id = \"urn:sp\"\n", "SAML settings given, but provider is \"oidc\""),
            ("[app.saml]\nsp_entity_id = \"urn:sp\"\n", "SAML sign-in needs idp_metadata_file"),
            ("[app.saml]\nsp_entity_id = \"urn:sp\"\nidp_metadata_url = \"https://idp.test/md\"\nsigning_cert = \"c.pem\"\n", "signing_cert and signing_key go together"),
            ("[app.saml_relay]\nacs_url = \"https://box.test/acs\"\n", "[app.saml_relay] needs entity_id"),
            ("[app.saml_relay]\nacs_url = \"https://box.test/acs\"\nentity_id = \"urn:box\"\nsigning_cert = \"../controld/tests/support/https.rs\"\nsigning_key = \"k.pem\"\n", "no -----BEGIN CERTIFICATE-----"),
            ("[app.saml_relay]\nacs_url = \"https://evil.test/acs\"\nentity_id = \"urn:box\"\nsigning_cert = \"c.pem\"\nsigning_key = \"k.pem\"\n", "p.toml:10:11: error: acs_url: an http(s) URL on one of the app's domains"),
            ("[app.saml_relay]\nacs_url = \"https://www.box.test/acs\"\nentity_id = \"urn:box\"\nsigning_cert = \"missing.pem\"\nsigning_key = \"k.pem\"\n", "certificate ./missing.pem: No such file"),
            ("[[location]]\nname = \"far\"\ncountries = [\"KP\"]\n", "location \"far\" lists countries: add [geoip] country_database"),
            ("[[location]]\nname = \"far\"\ncountries = [\"Korea\"]\n", "not a two-letter ISO 3166 country code"),
            ("[[ip_tag]]\nname = \"x\"\ncountries = [\"KP\"]\n", "countries are for locations"),
            ("[[app]]\nname = \"b\"\ndomains = [\"b.test\"]\ntls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n", "p.toml:12:12: error: certificate ./missing.pem: No such file"),
        ];
        for (extra, expected) in cases {
            let e = first_error(extra);
            let located = expected.starts_with("p.toml:");
            assert!(
                if located {
                    e.starts_with(expected)
                } else {
                    e.contains(expected)
                },
                "{extra:?}: {e}"
            );
        }
    }
}

mod session {

    use crate::source::{compile_source, CompileOptions};

    const FULL: &str = r#"
[proxy]
suffix = "p.test"
[[app]]
name = "box"
domains = ["box.test"]
[app.profile]
download_content_types = ["application/pdf"]
download_paths = ["/export/*"]
upload_paths = ["/api/files/*"]
[[app.profile.activity]]
name = "share"
method = "post"
path = "/api/*/share"
query_contains = "a=1"
body_contains = "invitees"
[[location]]
name = "office"
ranges = ["10.0.0.0/8"]
[monitoring_notice]
message = "Watched."
[[session_policy]]
name = "everything"
control = "control_download"
apps = ["box"]
users = ["alice"]
groups = ["eng"]
not_locations = ["office"]
devices = ["unmanaged"]
client_apps = ["browser"]
user_agent_regex = "Chrome"
file_names = ["*.docx"]
extensions = [".DOCX", "xlsx"]
file_types = ["ooxml", "pdf"]
min_size = 10
max_size = 1000000
labels = ["Confidential"]
action = "protect"
message = "Protected."
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
alert = { severity = "high" }
notice = false
[session_policy.inspect]
detectors = ["credit_card", { name = "ssn", min_matches = 3 }]
keywords = ["falcon"]
regexes = ["T-[0-9]+"]
min_matches = 2
max_bytes = 1000
max_chars = 500
on_uninspectable = "allow"
[[session_policy]]
name = "no sharing"
control = "block_activities"
activities = ["share"]
"#;

    #[test]
    fn every_session_field_survives_a_snapshot() {
        let p = compile_source(
            "t.toml",
            FULL,
            std::path::Path::new("."),
            &CompileOptions::default(),
        )
        .expect("compiles");
        assert_eq!(p.session_policies.len(), 2);
        let s = &p.session_policies[0];
        assert_eq!(s.file.extensions, ["docx", "xlsx"]);
        assert_eq!(
            s.inspection.as_ref().map(|i| i.detectors.clone()),
            Some(vec![("credit_card".into(), 1), ("ssn".into(), 3)])
        );
        assert!(!s.notice && !s.inspection.as_ref().is_some_and(|i| i.fail_closed));
        assert_eq!(p.apps[0].profile.activities[0].method, "POST");
        // The alert is raised by controld on the policy's activity records.
        assert!(p
            .activity_policies
            .iter()
            .any(|a| a.policies == ["everything"] && a.kinds == ["activity"]));
        let back = crate::codec::decode(&crate::codec::encode(&p)).expect("decodes");
        assert_eq!(back.session_policies, p.session_policies);
        assert_eq!(back.apps[0].profile, p.apps[0].profile);
        assert_eq!(back.monitoring_notice, "Watched.");
    }
}

mod activity {

    use crate::codec as snapshot;
    use crate::source::{compile_source, CompileOptions};
    use std::path::Path;

    const BASE: &str =
        "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.test\"]\n";

    fn compile(extra: &str) -> Result<crate::policy::Policy, String> {
        compile_source(
            "t.toml",
            &format!("{BASE}{extra}"),
            Path::new("."),
            &CompileOptions::default(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn activity_policies_compile_and_survive_a_snapshot() {
        let p = compile(
            "[[activity_policy]]\nname = \"dl\"\nactivities = [\"download\"]\napps = [\"box\"]\nmethods = [\"get\"]\nstatuses = [200]\nalert = { severity = \"High\", daily_limit = 10 }\n[[activity_policy]]\nname = \"quiet\"\nactions = [\"block\"]\n",
        )
        .unwrap();
        assert_eq!(p.activity_policies.len(), 2);
        let dl = &p.activity_policies[0];
        assert_eq!(dl.methods, ["GET"]);
        let alert = dl.alert.as_ref().unwrap();
        assert_eq!((alert.severity.as_str(), alert.daily_limit), ("high", 10));
        assert!(p.activity_policies[1].alert.is_none());
        let back = snapshot::decode(&snapshot::encode(&p)).unwrap();
        assert_eq!(back.activity_policies, p.activity_policies);
    }

    #[test]
    fn bad_activity_policies_are_located() {
        let e = compile("[[activity_policy]]\nname = \"x\"\napps = [\"nope\"]\n").unwrap_err();
        assert!(
            e.contains("t.toml:8:") && e.contains("no app is named \"nope\""),
            "{e}"
        );
        let e = compile("[[activity_policy]]\nname = \"x\"\nalert = { severity = \"urgent\" }\n")
            .unwrap_err();
        assert!(
            e.contains("t.toml:8:") && e.contains("unknown severity"),
            "{e}"
        );
        let e = compile("[[activity_policy]]\nname = \"x\"\nactions = [\"zap\"]\n").unwrap_err();
        assert!(e.contains("unknown action \"zap\""), "{e}");
        let e = compile("[[activity_policy]]\nname = \"x\"\n[[activity_policy]]\nname = \"x\"\n")
            .unwrap_err();
        assert!(e.contains("duplicate activity_policy"), "{e}");
    }
}
