# Palisade policy snapshot.
#
# A snapshot is the compiled, immutable form of an operator's policy source
# (TOML). controld writes it; every data-plane core decodes its own copy.
#
# Evolution rules (Cap'n Proto): never renumber or retype a field; add new
# fields with the next ordinal; add new structs for new policy kinds (access
# policies, session policies, IP tags, keys, certificates). `formatVersion`
# is bumped only when an older data plane would misread a newer snapshot;
# the data plane refuses a snapshot whose formatVersion it does not know.
@0xd4a82e3d9905a742;

struct Snapshot {
  formatVersion @0 :UInt32;
  # Layout revision of this schema the snapshot was written for (see
  # `FORMAT_VERSION` in the schema crate).

  version @1 :UInt64;
  # Policy version, assigned by whoever compiled it (controld numbers them).

  compiledAtUnixMs @2 :Int64;
  # Wall-clock time of compilation, for operators; never used for routing.

  source @3 :Text;
  # Where the policy came from (file name), for status and error messages.

  proxy @4 :Proxy;
  apps @5 :List(App);

  ipTags @6 :List(IpTag);
  # Named sets of client address ranges (corporate network, VPN egress…)
  # for access and session policies to match on.

  activityPolicies @7 :List(ActivityPolicy);
  # Evaluated by controld on the stored log stream (the data plane ignores
  # them): each matching record may raise an alert.

  tls @8 :Tls;
  # Certificates served on the TLS listener and the client-certificate
  # trust used to tell managed devices. Carried here so an apply rotates
  # them with no restart.

  identity @9 :Identity;
  # How users are identified (OpenID Connect or trusted headers) and the
  # keys that seal the proxy session cookie.

  locations @10 :List(IpTag);
  # Named locations: CIDR lists (office, branch, VPN egress).

  accessPolicies @11 :List(AccessPolicy);
  # Ordered; the most restrictive matching action wins.

  blockPage @12 :BlockPage;

  geoipCountryDatabase @13 :Data;
  # A MaxMind-format country database for locations by country; empty:
  # none.

  sessionPolicies @14 :List(SessionPolicy);
  # What users may do inside an app: evaluated per request after access.

  monitoringNotice @15 :Text;
  # The operator's text on the monitoring-notice interstitial.
}

enum SessionControl {
  monitor @0;
  controlDownload @1;
  controlUpload @2;
  blockActivities @3;
}

enum SessionAction {
  audit @0;
  protect @1;
  block @2;
}

struct SessionPolicy {
  filters @0 :AccessPolicy;
  # Who and where (every access-policy filter); its name is the policy's
  # name and its action is unused.
  control @1 :SessionControl;
  activities @2 :List(Text);
  # blockActivities: the activity names blocked.
  fileNames @3 :List(Text);
  # Globs (`*`, `?`), matched case-insensitively.
  extensions @4 :List(Text);
  # Lower case, without the dot.
  fileTypes @5 :List(Text);
  # Detected from the first bytes: pdf, docx, xlsx, pptx, ooxml, zip...
  minSize @6 :UInt64;
  maxSize @7 :UInt64;
  # 0: no bound.
  labels @8 :List(Text);
  # Sensitivity labels (MSIP_Label_*_Name).
  inspection @9 :Inspection;
  hasInspection @10 :Bool;
  action @11 :SessionAction;
  message @12 :Text;
  # The operator's text in `<name>.blocked.txt` or on the block page.
  recipients @13 :List(Text);
  # protect: age X25519 recipients (`age1...`).
  alertSeverity @14 :Text;
  notice @15 :Bool;
  # Show the monitoring notice on the first request of a session.
}

struct Inspection {
  detectors @0 :List(Detector);
  keywords @1 :List(Text);
  regexes @2 :List(Text);
  minMatches @3 :UInt32;
  # For keywords and regexes (each counted on its own).
  maxBytes @4 :UInt64;
  maxChars @5 :UInt64;
  failClosed @6 :Bool;
  # A file that cannot be inspected (too big, encrypted, corrupt) gets the
  # action anyway; false: it passes and is logged.
}

struct Detector {
  name @0 :Text;
  # credit_card, ssn, iban, aws_key, private_key.
  minMatches @1 :UInt32;
}

struct AppProfile {
  downloadContentTypes @0 :List(Text);
  downloadPaths @1 :List(Text);
  uploadPaths @2 :List(Text);
  activities @3 :List(CustomActivity);
}

struct CustomActivity {
  name @0 :Text;
  method @1 :Text;
  # Upper case; empty: any.
  path @2 :Text;
  # Glob over the path (no query).
  queryContains @3 :Text;
  bodyContains @4 :Text;
}

struct Tls {
  defaultCertificate @0 :CertifiedKey;
  # Served when the SNI name is missing or no app owns it.
  clientCaPem @1 :Data;
  # Roots for client certificates (managed devices); empty: none requested.
  clientCrlPem @2 :Data;
  # Optional CRLs (PEM) for client certificates.
}

struct CertifiedKey {
  certificateChainPem @0 :Data;
  privateKeyPem @1 :Data;
}

struct Identity {
  union {
    none @0 :Void;
    oidc @1 :Oidc;
    trustedHeader @2 :TrustedHeader;
    saml @5 :Saml;
  }
  sessionKeys @3 :List(SessionKey);
  # The first seals new sessions; every listed key opens them (rotation).
  sessionLifetimeSecs @4 :UInt64;
}

struct Oidc {
  issuer @0 :Text;
  clientId @1 :Text;
  authorizationEndpoint @2 :Text;
  jwks @3 :Text;
  # The provider's JSON Web Key Set (RFC 7517), loaded by controld.
  scopes @4 :Text;
}

struct Saml {
  # The proxy as a SAML 2.0 service provider (Web Browser SSO profile).
  idpEntityId @0 :Text;
  ssoUrl @1 :Text;
  # The identity provider's HTTP-Redirect single sign-on endpoint.
  certificates @2 :List(Data);
  # DER certificates from its metadata: the only keys its signatures are
  # checked against.
  spEntityId @3 :Text;
  allowUnsolicited @4 :Bool;
  # Identity-provider-initiated sign-in (a response no request asked for).
  userAttribute @5 :Text;
  # The attribute naming the user; empty: the NameID.
  groupsAttribute @6 :Text;
  deviceAttribute @7 :Text;
  # Attribute values that are device tags (compliant, domain_joined).
  requestSigning @8 :CertifiedKey;
  hasRequestSigning @9 :Bool;
  # Signs the AuthnRequests (HTTP-Redirect binding); its certificate is in
  # the proxy's service-provider metadata.
}

struct TrustedHeader {
  userHeader @0 :Text;
  groupsHeader @1 :Text;
  sources @2 :List(IpRange);
  # Only requests from these addresses may assert identity by header.
}

struct SessionKey {
  id @0 :Text;
  key @1 :Data;
  # 32 bytes (AES-256-GCM).
}

struct BlockPage {
  message @0 :Text;
  supportUrl @1 :Text;
}

enum AccessAction {
  allow @0;
  audit @1;
  monitor @2;
  block @3;
}

struct AccessPolicy {
  name @0 :Text;
  apps @1 :List(Text);
  users @2 :List(Text);
  groups @3 :List(Text);
  ipTags @4 :List(Text);
  notIpTags @5 :List(Text);
  ipRanges @6 :List(IpRange);
  locations @7 :List(Text);
  notLocations @8 :List(Text);
  devices @9 :List(Text);
  clientApps @10 :List(Text);
  # "browser", "native".
  userAgentContains @11 :List(Text);
  userAgentRegex @12 :Text;
  action @13 :AccessAction;
  message @14 :Text;
  alertSeverity @15 :Text;
  # Empty: no alert.
}

# A log-stream policy: records matching every non-empty filter match.
struct ActivityPolicy {
  name @0 :Text;
  kinds @1 :List(Text);
  # "traffic", "activity".
  apps @2 :List(Text);
  users @3 :List(Text);
  activities @4 :List(Text);
  # Activity names (download, upload, login…).
  actions @5 :List(Text);
  # allow, block, monitor, protect, audit.
  methods @6 :List(Text);
  statuses @7 :List(UInt16);
  urlContains @8 :Text;
  alert @9 :Alert;
  hasAlert @10 :Bool;
  policies @11 :List(Text);
  # Names of the access or session policies that decided the request.
}

# What to do when a policy matches: an alert record, at most `dailyLimit`
# per policy per UTC day (0: no limit).
struct Alert {
  severity @0 :Text;
  # low, medium, high.
  dailyLimit @1 :UInt32;
}

struct IpTag {
  name @0 :Text;
  ranges @1 :List(IpRange);
  countries @2 :List(Text);
  # Locations only: ISO 3166 codes looked up in geoipCountryDatabase.
}

struct IpRange {
  address @0 :Data;
  # 4 bytes (IPv4) or 16 bytes (IPv6), network byte order, host bits zero.
  prefixLength @1 :UInt8;
}

struct Proxy {
  suffix @0 :Text;
  # Lower-case DNS suffix: users reach `<app host>.<suffix>`.
}

struct App {
  name @0 :Text;

  domains @1 :List(Text);
  # Lower-case DNS names the app owns, each with all its subdomains.

  upstream @2 :Upstream;

  bareHostContexts @3 :List(Text);
  # Literal text after which a bare app host (no scheme, no `//`) is
  # rewritten in this app's responses, e.g. `"domain":"` in a JSON config
  # or `document.domain = "`. Empty: bare hosts are left alone.

  certificate @4 :CertifiedKey;
  # Served for `<domain>.<suffix>` and its subdomains (SNI); unset: the
  # default certificate.
  hasCertificate @5 :Bool;

  accessDefault @6 :AccessAction;
  # What happens when no access policy matches.

  loginRequired @7 :Bool;
  # Requests need a proxy session (identity configured and not turned off
  # for this app).

  oidc @8 :Oidc;
  hasOidc @9 :Bool;
  # The app's own OpenID Connect provider, overriding the global one.

  profile @10 :AppProfile;
  # How the app's downloads, uploads and custom activities look (session
  # control); unset lists: the defaults.

  rewrite @11 :RewriteSettings;
  # How the app's responses are rewritten beyond the defaults; unset:
  # data passes through untouched, the leak guard reports.

  saml @12 :Saml;
  hasSaml @13 :Bool;
  # The app's own SAML identity provider, overriding the global sign-in.

  samlRelay @14 :SamlRelay;
  hasSamlRelay @15 :Bool;
  # The app's own SAML sign-in, answered by the proxy as its identity
  # provider.
}

struct SamlRelay {
  acsUrl @0 :Text;
  # The app's assertion consumer service (HTTP-POST), on one of its domains.
  entityId @1 :Text;
  # The app's entity ID: the audience of what the proxy issues.
  nameIdFormat @2 :Text;
  idpEntityId @3 :Text;
  # The proxy's entity ID toward this app.
  signing @4 :CertifiedKey;
  # The certificate the app trusts and the key signing its assertions.
}

struct RewriteSettings {
  dataPaths @0 :List(Text);
  # Path globs (`*`, `?`) of requests whose data responses are rewritten.
  dataContentTypes @1 :List(Text);
  # Lower-case `type/subtype` of data responses that are rewritten.
  leakGuard @2 :LeakGuard;
  # The Content-Security-Policy the proxy adds to the app's documents,
  # allowing network destinations on proxy hosts only.
  leakAllow @3 :List(Text);
  # Further CSP sources the leak guard allows (`https://cdn.example`).
}

enum LeakGuard {
  report @0;
  # Report-only: escapes are logged as `leak` activities.
  enforce @1;
  # Escapes are blocked by the browser, and logged.
  off @2;
}

struct Upstream {
  union {
    direct @0 :Void;
    # No fixed upstream: connect to the requested app host itself over
    # HTTPS on port 443.

    fixed @1 :FixedUpstream;
    # Connect here for every host of the app.
  }

  caCertificatesPem @2 :Data;
  # Extra trust anchors (PEM) for HTTPS upstreams of private apps, carried
  # inside the snapshot so the data plane needs no file. Empty: system roots.
}

struct FixedUpstream {
  scheme @0 :Scheme;
  host @1 :Text;
  # DNS name or IP literal (IPv6 without brackets).
  port @2 :UInt16;
}

enum Scheme {
  http @0;
  https @1;
}
