//! Names and addresses a policy is built from: DNS names, upstream URLs,
//! CIDR ranges and named range sets (ip tags, locations). Each type can only
//! hold a valid value, so every later stage can trust it.

use std::fmt;
use std::net::IpAddr;

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
