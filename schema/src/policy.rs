//! The policy model and its TOML source compiler.
//!
//! `compile_source` turns an operator's TOML policy into a validated
//! [`Policy`]; every problem is reported as a [`Diagnostic`] naming file,
//! line and column. The model's types cannot hold invalid state (a
//! [`DnsName`] is always a lower-case LDH name), so both binaries can trust a
//! `Policy` once they hold one.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// A validated, lower-case DNS name (RFC 1035 §2.3.1 "preferred name
/// syntax", with digits allowed first as RFC 1123 §2.1 permits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    /// Parses `text` as a DNS name, folding ASCII letters to lower case.
    pub fn parse(text: &str) -> Result<DnsName, String> {
        if text.is_empty() {
            return Err("empty DNS name".into());
        }
        if text.len() > 253 {
            return Err(format!(
                "DNS name is {} bytes long (at most 253)",
                text.len()
            ));
        }
        if text.ends_with('.') {
            return Err(format!("{text:?}: write the name without a trailing dot"));
        }
        for label in text.split('.') {
            if label.is_empty() {
                return Err(format!("{text:?}: empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{text:?}: label {label:?} is longer than 63 bytes"));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(format!(
                    "{text:?}: {bad:?} is not allowed in a DNS name (letters, digits, '-' and '.')"
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("{text:?}: label {label:?} starts or ends with '-'"));
            }
        }
        let last = text.rsplit('.').next().unwrap_or(text);
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} looks like an IP address, not a DNS name"));
        }
        Ok(DnsName(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` equals `parent` or lies under it on a label boundary.
    pub fn is_within(&self, parent: &DnsName) -> bool {
        self.0 == parent.0
            || (self.0.len() > parent.0.len()
                && self.0.ends_with(parent.0.as_str())
                && self.0.as_bytes()[self.0.len() - parent.0.len() - 1] == b'.')
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// URL scheme of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Host part of a fixed upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamHost {
    Name(DnsName),
    Ip(IpAddr),
}

impl fmt::Display for UpstreamHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamHost::Name(n) => n.fmt(f),
            UpstreamHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            UpstreamHost::Ip(ip) => ip.fmt(f),
        }
    }
}

/// Where the data plane connects for an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The requested app host itself, HTTPS on port 443.
    Direct,
    /// This address for every host of the app.
    Fixed {
        scheme: Scheme,
        host: UpstreamHost,
        port: u16,
    },
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Direct => f.write_str("https://<app host>"),
            Upstream::Fixed { scheme, host, port } => {
                write!(f, "{}://{host}:{port}", scheme.as_str())
            }
        }
    }
}

impl Upstream {
    /// Parses an upstream URL: `http` or `https`, a host, an optional port,
    /// nothing else (no user info, path, query or fragment).
    pub fn parse_url(text: &str) -> Result<Upstream, String> {
        let url = url::Url::parse(text).map_err(|e| format!("bad upstream URL {text:?}: {e}"))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(format!(
                    "bad upstream URL {text:?}: scheme {other:?} (use http or https)"
                ))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "bad upstream URL {text:?}: user info is not allowed"
            ));
        }
        if !(url.path().is_empty() || url.path() == "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "bad upstream URL {text:?}: only scheme, host and port are allowed (no path, query or fragment)"
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => UpstreamHost::Name(
                DnsName::parse(d).map_err(|e| format!("bad upstream URL {text:?}: {e}"))?,
            ),
            Some(url::Host::Ipv4(ip)) => UpstreamHost::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => UpstreamHost::Ip(IpAddr::V6(ip)),
            None => return Err(format!("bad upstream URL {text:?}: no host")),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err(format!("bad upstream URL {text:?}: port 0"));
        }
        Ok(Upstream::Fixed { scheme, host, port })
    }
}

/// One protected app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// Non-empty; each owns all its subdomains.
    pub domains: Vec<DnsName>,
    pub upstream: Upstream,
    /// Extra trust anchors (PEM) for an HTTPS upstream; empty for system roots.
    pub ca_certificates_pem: Vec<u8>,
    /// Literal text after which a bare app host is rewritten in this app's
    /// responses (see [`MAX_BARE_HOST_CONTEXTS`]).
    pub bare_host_contexts: Vec<String>,
    /// Served for `<domain>.<suffix>` and its subdomains; `None`: the
    /// default certificate.
    pub certificate: Option<crate::access::CertifiedKeyPem>,
    /// What happens when no access policy matches.
    pub access_default: crate::access::AccessAction,
    /// Requests need a proxy session (identity is configured and the app
    /// did not turn login off).
    pub login_required: bool,
    /// The app's own OpenID Connect provider (else the global one).
    pub oidc: Option<crate::access::Oidc>,
    /// How the app's downloads, uploads and custom activities look.
    pub profile: crate::session::AppProfile,
}

/// Most bare-host context patterns per app.
pub const MAX_BARE_HOST_CONTEXTS: usize = 32;
/// Longest bare-host context pattern (bytes).
pub const MAX_BARE_HOST_CONTEXT_LEN: usize = 64;

/// Checks one bare-host context pattern.
pub fn check_bare_host_context(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("bare_host_contexts: empty pattern".into());
    }
    if pattern.len() > MAX_BARE_HOST_CONTEXT_LEN {
        return Err(format!(
            "bare_host_contexts: pattern {pattern:?} is longer than {MAX_BARE_HOST_CONTEXT_LEN} bytes"
        ));
    }
    if pattern.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "bare_host_contexts: control character in {pattern:?}"
        ));
    }
    Ok(())
}

/// An address range in CIDR form with its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or
    /// /128). Host bits must be zero, so a typo like `10.1.2.3/8` is an
    /// error rather than a silently wider range.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        };
        IpRange::checked(addr, prefix)
            .map_err(|fixed| format!("{text:?}: host bits are set (did you mean {fixed}?)"))
    }

    /// The range if `prefix` fits the family and no host bit is set; else
    /// the range with host bits cleared, as a hint.
    fn checked(addr: IpAddr, prefix: u8) -> Result<IpRange, IpRange> {
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.min(max);
        let range = IpRange { addr, prefix };
        let bits = range.bits();
        let host_bits = u32::from(max - prefix);
        let host_mask = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        if bits & host_mask != 0 {
            return Err(IpRange::from_bits(
                addr.is_ipv4(),
                bits & !host_mask,
                prefix,
            ));
        }
        Ok(range)
    }

    /// Builds a range from its parts; `None` if the length is out of range
    /// for the family or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpRange> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        IpRange::checked(addr, prefix).ok()
    }

    /// First and last address of the range, as integers in the IPv6 space
    /// (IPv4 mapped into `::ffff:0:0/96`), for interval lookups.
    pub fn bounds(&self) -> (u128, u128) {
        let (base, width) = match self.addr {
            IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 32u32),
            IpAddr::V6(a) => (u128::from(a), 128u32),
        };
        let host_bits = width - u32::from(self.prefix);
        let span = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        (base, base | span)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The address as an integer in its own family's width.
    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn from_bits(v4: bool, bits: u128, prefix: u8) -> IpRange {
        let addr = if v4 {
            IpAddr::V4((bits as u32).into())
        } else {
            IpAddr::V6(bits.into())
        };
        IpRange { addr, prefix }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A named set of client address ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpTag {
    pub name: String,
    pub ranges: Vec<IpRange>,
    /// Country codes (locations only), matched through the GeoIP database.
    pub countries: Vec<String>,
}

/// A whole validated policy: what a snapshot carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub version: u64,
    pub compiled_at_unix_ms: i64,
    pub source: String,
    pub suffix: DnsName,
    pub apps: Vec<App>,
    pub ip_tags: Vec<IpTag>,
    /// Rules controld evaluates on the log stream (alerts).
    pub activity_policies: Vec<crate::activity::ActivityPolicy>,
    pub tls: crate::access::TlsSettings,
    pub identity: crate::access::Identity,
    pub locations: Vec<IpTag>,
    pub access_policies: Vec<crate::access::AccessPolicy>,
    pub block_page: crate::access::BlockPage,
    /// A MaxMind-format country database (bytes) for locations by country;
    /// empty: none.
    pub geoip_country_database: Vec<u8>,
    /// What users may do inside apps.
    pub session_policies: Vec<crate::session::SessionPolicy>,
    /// The operator's text on the monitoring notice (empty: a default).
    pub monitoring_notice: String,
}

/// One problem in a policy source, located by file, line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All problems found in one policy source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            d.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySource {
    proxy: Spanned<ProxySource>,
    #[serde(default, rename = "app")]
    apps: Vec<Spanned<AppSource>>,
    #[serde(default, rename = "ip_tag")]
    ip_tags: Vec<Spanned<IpTagSourcePub>>,
    #[serde(default, rename = "activity_policy")]
    activity_policies: Vec<Spanned<crate::activity::ActivityPolicySource>>,
    tls: Option<Spanned<crate::access::TlsSource>>,
    identity: Option<Spanned<crate::access::IdentitySource>>,
    #[serde(default, rename = "location")]
    locations: Vec<Spanned<IpTagSourcePub>>,
    #[serde(default, rename = "access_policy")]
    access_policies: Vec<Spanned<crate::access::AccessPolicySource>>,
    block_page: Option<crate::access::BlockPageSource>,
    geoip: Option<Spanned<crate::access::GeoipSource>>,
    #[serde(default, rename = "session_policy")]
    session_policies: Vec<Spanned<crate::session::SessionPolicySource>>,
    monitoring_notice: Option<crate::session::MonitoringNoticeSource>,
}

/// `[[ip_tag]]` and `[[location]]`: a name and CIDR ranges.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IpTagSourcePub {
    name: Spanned<String>,
    #[serde(default)]
    ranges: Vec<Spanned<String>>,
    /// Locations only: ISO 3166 country codes looked up in the
    /// `[geoip] country_database`.
    #[serde(default)]
    countries: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySource {
    suffix: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSource {
    name: Spanned<String>,
    domains: Spanned<Vec<Spanned<String>>>,
    upstream: Option<Spanned<String>>,
    /// PEM file of extra CAs for an HTTPS upstream, relative to the policy file.
    ca_file: Option<Spanned<String>>,
    /// Literal text after which bare app hosts are rewritten.
    #[serde(default)]
    bare_host_contexts: Vec<Spanned<String>>,
    /// PEM certificate chain and key served for this app's proxy hosts.
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    /// allow (default), audit, monitor or block when no access policy matches.
    access_default: Option<Spanned<String>>,
    /// false: no login for this app even when identity is configured.
    login: Option<bool>,
    /// This app's own OpenID Connect provider.
    oidc: Option<Spanned<crate::access::OidcSource>>,
    /// How the app's activities look (session control).
    profile: Option<Spanned<crate::session::AppProfileSource>>,
}

/// Options for one compilation.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Version stamped into the snapshot.
    pub version: u64,
    /// Time stamped into the snapshot.
    pub compiled_at_unix_ms: i64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        CompileOptions {
            version: 1,
            compiled_at_unix_ms: now,
        }
    }
}

/// Reads and compiles the policy file at `path`.
pub fn compile_file(path: &Path, options: &CompileOptions) -> Result<Policy, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read policy: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    compile_source(&file, &text, base, options)
}

/// Compiles policy `text` (named `file` in messages; relative paths inside
/// it resolve against `base_dir`).
pub fn compile_source(
    file: &str,
    text: &str,
    base_dir: &Path,
    options: &CompileOptions,
) -> Result<Policy, Diagnostics> {
    // Line starts, found once: positions are turned into line numbers by
    // binary search, so a policy with many thousands of apps compiles in
    // linear time.
    let lines = LineIndex::new(text);
    let line_column = |_: &str, offset: usize| lines.line_column(text, offset);
    let locate = |span: Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let source: PolicySource = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        Diagnostics(vec![locate(span, e.message().trim().to_string())])
    })?;

    let mut errors = Vec::new();
    let suffix = match DnsName::parse(source.proxy.get_ref().suffix.get_ref()) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(locate(
                source.proxy.get_ref().suffix.span(),
                format!("bad proxy suffix: {e}"),
            ));
            None
        }
    };

    let mut apps = Vec::with_capacity(source.apps.len());
    let mut upstream_cache: HashMap<String, Upstream> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    // domain -> (app name, line of first mention)
    let mut owners: HashMap<DnsName, (String, usize)> = HashMap::new();
    for app_src in &source.apps {
        let app_src = app_src.get_ref();
        let name = app_src.name.get_ref().trim().to_string();
        if name.is_empty() {
            errors.push(locate(app_src.name.span(), "app name is empty".into()));
        } else if let Some(line) = names.get(&name) {
            errors.push(locate(
                app_src.name.span(),
                format!("duplicate app name {name:?} (first used on line {line})"),
            ));
        } else {
            names.insert(name.clone(), line_column(text, app_src.name.span().start).0);
        }

        let mut domains = Vec::new();
        if app_src.domains.get_ref().is_empty() {
            errors.push(locate(
                app_src.domains.span(),
                format!("app {name:?} lists no domains"),
            ));
        }
        for domain_src in app_src.domains.get_ref() {
            let domain = match DnsName::parse(domain_src.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(locate(domain_src.span(), format!("bad domain: {e}")));
                    continue;
                }
            };
            if let Some(suffix) = &suffix {
                if domain.is_within(suffix) || suffix.is_within(&domain) {
                    errors.push(locate(
                        domain_src.span(),
                        format!("domain {domain} overlaps the proxy suffix {suffix}"),
                    ));
                    continue;
                }
            }
            let line = line_column(text, domain_src.span().start).0;
            if let Some((owner, first_line)) = owners.get(&domain) {
                errors.push(locate(
                    domain_src.span(),
                    format!(
                        "duplicate domain {domain}: already owned by app {owner:?} (line {first_line})"
                    ),
                ));
                continue;
            }
            owners.insert(domain.clone(), (name.clone(), line));
            domains.push(domain);
        }

        let upstream = match &app_src.upstream {
            None => Upstream::Direct,
            // Many apps often share one upstream: parse each URL once.
            Some(u) => match upstream_cache.get(u.get_ref().as_str()) {
                Some(up) => up.clone(),
                None => match Upstream::parse_url(u.get_ref()) {
                    Ok(up) => {
                        upstream_cache.insert(u.get_ref().clone(), up.clone());
                        up
                    }
                    Err(e) => {
                        errors.push(locate(u.span(), e));
                        Upstream::Direct
                    }
                },
            },
        };

        let mut ca_certificates_pem = Vec::new();
        if let Some(ca) = &app_src.ca_file {
            let path = base_dir.join(ca.get_ref());
            match std::fs::read(&path) {
                Ok(bytes) if contains(&bytes, b"-----BEGIN CERTIFICATE-----") => {
                    ca_certificates_pem = bytes
                }
                Ok(_) => errors.push(locate(
                    ca.span(),
                    format!("ca_file {}: no PEM certificate in it", path.display()),
                )),
                Err(e) => errors.push(locate(
                    ca.span(),
                    format!("ca_file {}: {e}", path.display()),
                )),
            }
            if matches!(
                upstream,
                Upstream::Direct
                    | Upstream::Fixed {
                        scheme: Scheme::Http,
                        ..
                    }
            ) && app_src.upstream.is_some()
            {
                errors.push(locate(ca.span(), "ca_file needs an https upstream".into()));
            }
        }

        if app_src.bare_host_contexts.len() > MAX_BARE_HOST_CONTEXTS {
            errors.push(locate(
                app_src.bare_host_contexts[MAX_BARE_HOST_CONTEXTS].span(),
                format!("at most {MAX_BARE_HOST_CONTEXTS} bare_host_contexts per app"),
            ));
        }
        let mut bare_host_contexts = Vec::new();
        for pattern in &app_src.bare_host_contexts {
            match check_bare_host_context(pattern.get_ref()) {
                Ok(()) => bare_host_contexts.push(pattern.get_ref().clone()),
                Err(e) => errors.push(locate(pattern.span(), e)),
            }
        }

        let mut report = |span: Range<usize>, message: String| errors.push(locate(span, message));
        let certificate = match (&app_src.tls_cert, &app_src.tls_key) {
            (Some(c), Some(k)) => crate::access::certified_key(base_dir, c, k, &mut report),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                report(c.span(), "tls_cert and tls_key go together".into());
                None
            }
        };
        let access_default = match &app_src.access_default {
            None => crate::access::AccessAction::Allow,
            Some(a) => crate::access::AccessAction::parse(a.get_ref()).unwrap_or_else(|| {
                report(
                    a.span(),
                    format!(
                        "unknown access_default {:?} (allow, audit, monitor, block)",
                        a.get_ref()
                    ),
                );
                crate::access::AccessAction::Allow
            }),
        };
        let oidc = app_src
            .oidc
            .as_ref()
            .map(|o| o.get_ref().compile(o.span(), base_dir, &mut report));
        let profile = app_src
            .profile
            .as_ref()
            .map(|p| crate::session::compile_profile(p, &mut report))
            .unwrap_or_default();
        apps.push(App {
            name,
            domains,
            upstream,
            ca_certificates_pem,
            bare_host_contexts,
            certificate,
            access_default,
            oidc,
            // Settled below, once identity is known.
            login_required: app_src.login.unwrap_or(true),
            profile,
        });
    }

    let ip_tags = {
        let mut report = |span: Range<usize>, message: String| errors.push(locate(span, message));
        compile_ip_tags(&source.ip_tags, "ip_tag", &mut report, &|o| {
            line_column(text, o).0
        })
    };
    let activity_policies =
        crate::activity::compile(&source.activity_policies, &names, &mut |span, message| {
            errors.push(locate(span, message))
        });

    let (tls, identity, locations, access_policies, session_policies) = {
        let mut report = |span: Range<usize>, message: String| errors.push(locate(span, message));
        let tls = crate::access::compile_tls(source.tls.as_ref(), base_dir, &mut report);
        let identity =
            crate::access::compile_identity(source.identity.as_ref(), base_dir, &mut report);
        let locations = compile_ip_tags(&source.locations, "location", &mut report, &|o| {
            line_column(text, o).0
        });
        let known = crate::access::KnownNames {
            apps: &names,
            ip_tags: &ip_tags,
            locations: &locations,
        };
        let access_policies =
            crate::access::compile_access_policies(&source.access_policies, &known, &mut report);
        let activity_names: Vec<String> = apps
            .iter()
            .flat_map(|a| a.profile.activities.iter().map(|c| c.name.clone()))
            .collect();
        let session_policies = crate::session::compile(
            &source.session_policies,
            &known,
            &activity_names,
            &mut report,
        );
        (tls, identity, locations, access_policies, session_policies)
    };
    let identity_on = identity.provider != crate::access::IdentityProvider::None;
    for app in &mut apps {
        app.login_required &= identity_on || app.oidc.is_some();
    }
    if let (Some(app), true) = (
        apps.iter().find(|a| a.oidc.is_some()),
        identity.session_keys.is_empty(),
    ) {
        let at = source.identity.as_ref().map_or(0..0, |i| i.span());
        errors.push(locate(
            at,
            format!(
                "app {:?} has its own oidc provider: [identity] session_keys are needed to seal its sessions",
                app.name
            ),
        ));
    }
    let block_page = crate::access::compile_block_page(source.block_page.as_ref());
    let geoip_country_database = {
        let mut report = |span: Range<usize>, message: String| errors.push(locate(span, message));
        crate::access::compile_geoip(source.geoip.as_ref(), &locations, base_dir, &mut report)
    };
    // An access policy's alert is raised by controld like any other: as a
    // rule on the log stream matching the records that policy decided.
    let mut activity_policies = activity_policies;
    for p in access_policies
        .iter()
        .filter(|p| !p.alert_severity.is_empty())
    {
        activity_policies.push(crate::activity::ActivityPolicy {
            name: format!("access policy: {}", p.name),
            kinds: vec!["traffic".into()],
            policies: vec![p.name.clone()],
            alert: Some(crate::activity::AlertSpec {
                severity: p.alert_severity.clone(),
                daily_limit: 0,
            }),
            ..Default::default()
        });
    }
    // Likewise a session policy's: on the activity records it decided.
    for p in session_policies
        .iter()
        .filter(|p| !p.alert_severity.is_empty())
    {
        activity_policies.push(crate::activity::ActivityPolicy {
            name: format!("session policy: {}", p.name()),
            kinds: vec!["activity".into()],
            policies: vec![p.name().to_string()],
            alert: Some(crate::activity::AlertSpec {
                severity: p.alert_severity.clone(),
                daily_limit: 0,
            }),
            ..Default::default()
        });
    }
    let monitoring_notice = crate::session::compile_notice(source.monitoring_notice.as_ref());

    match suffix {
        Some(suffix) if errors.is_empty() => Ok(Policy {
            version: options.version,
            compiled_at_unix_ms: options.compiled_at_unix_ms,
            source: file.to_string(),
            suffix,
            apps,
            ip_tags,
            activity_policies,
            tls,
            identity,
            locations,
            access_policies,
            block_page,
            geoip_country_database,
            session_policies,
            monitoring_notice,
        }),
        _ => Err(Diagnostics(errors)),
    }
}

/// Compiles `[[ip_tag]]` or `[[location]]` tables (`what` names them in
/// messages).
pub(crate) fn compile_ip_tags(
    sources: &[Spanned<IpTagSourcePub>],
    what: &str,
    report: crate::access::Report<'_>,
    line_of: &dyn Fn(usize) -> usize,
) -> Vec<IpTag> {
    let mut ip_tags = Vec::with_capacity(sources.len());
    let mut tag_names: HashMap<String, usize> = HashMap::new();
    for tag_src in sources {
        let tag_src = tag_src.get_ref();
        let name = tag_src.name.get_ref().trim().to_string();
        let line = line_of(tag_src.name.span().start);
        if name.is_empty() {
            report(tag_src.name.span(), format!("{what} name is empty"));
        } else if let Some(first) = tag_names.get(&name) {
            report(
                tag_src.name.span(),
                format!("duplicate {what} {name:?} (first defined on line {first})"),
            );
        } else {
            tag_names.insert(name.clone(), line);
        }
        if tag_src.ranges.is_empty() && tag_src.countries.is_empty() {
            let what_is_missing = if what == "location" {
                "ranges or countries"
            } else {
                "ranges"
            };
            report(
                tag_src.name.span(),
                format!("{what} {name:?} lists no {what_is_missing}"),
            );
        }
        let mut ranges = Vec::with_capacity(tag_src.ranges.len());
        for r in &tag_src.ranges {
            match IpRange::parse(r.get_ref()) {
                Ok(range) => ranges.push(range),
                Err(e) => report(r.span(), format!("bad IP range: {e}")),
            }
        }
        let mut countries = Vec::with_capacity(tag_src.countries.len());
        for c in &tag_src.countries {
            let code = c.get_ref().trim().to_ascii_uppercase();
            if what != "location" {
                report(
                    c.span(),
                    format!("countries are for locations, not {what}s"),
                );
            } else if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                report(
                    c.span(),
                    format!(
                        "{:?} is not a two-letter ISO 3166 country code",
                        c.get_ref()
                    ),
                );
            } else {
                countries.push(code);
            }
        }
        ip_tags.push(IpTag {
            name,
            ranges,
            countries,
        });
    }

    ip_tags
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Byte offsets where each line of a text starts.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr_newlines(text));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of byte `offset` in `text`.
    fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |t| t.chars().count());
        (line, column + 1)
    }
}

fn memchr_newlines(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let decoded = crate::snapshot::decode(&crate::snapshot::encode(&ok)).expect("decodes");
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
