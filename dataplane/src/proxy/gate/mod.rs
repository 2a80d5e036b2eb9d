//! The gate: the identity and access phases of a request (after routing,
//! before anything reaches the app), and what they keep per connection.
//!
//! - [`identity`]: the proxy's own paths (`/.palisade/callback`, SAML's
//!   `/.palisade/saml/…` in `sign_in` and `relay`, `/.palisade/logout`,
//!   `/.palisade/notice`), the user from the sign-in cookie or trusted
//!   headers, and sending a user without one to sign in;
//! - [`access`]: the access policies (most restrictive matching action
//!   wins), the block page, the session policies that apply, and the
//!   monitoring notice.
//!
//! What a connection does not change between requests (its address's IP
//! sets, its device tags, the user for an unchanged cookie, the user-agent
//! match bits) is cached in [`Connection`] per snapshot version, so the
//! steady state costs a few comparisons and no allocation.

pub mod access;
pub mod identity;
mod relay;
mod sign_in;

use std::net::SocketAddr;
use std::rc::Rc;

use palisade_schema::access::AccessAction;

use crate::http::request::ClientContext;

/// Largest sign-in callback body accepted (bytes).
pub const MAX_CALLBACK_BODY: u64 = 64 * 1024;

/// A signed-in user as the access table sees them.
pub struct SignedInUser {
    pub user: String,
    pub groups: Vec<String>,
    user_id: Option<u32>,
    group_ids: Vec<u32>,
    /// Tags from the identity token (compliant, domain_joined).
    device_bits: u8,
    expires_unix: i64,
}

struct CachedUser {
    /// The cookie value or identity header bytes it was made from.
    key: Vec<u8>,
    version: u64,
    app: usize,
    user: Rc<SignedInUser>,
}

/// What a client connection knows across its requests.
pub struct Connection {
    /// Address and transport (forwarding headers, the log).
    pub ctx: ClientContext,
    /// Device tag bits of the connection (managed / unmanaged).
    pub devices: u8,
    ip_version: u64,
    /// The address's IP sets (ranges and country) under `ip_version`.
    ip_sets: Vec<u32>,
    signed_in: Option<CachedUser>,
    /// (version, user agent, kind bits, pattern bits).
    user_agent: Option<(u64, Vec<u8>, u8, u64)>,
}

impl Connection {
    /// `managed`: the client presented a certificate that verifies against
    /// the device roots.
    pub fn new(peer: SocketAddr, tls: bool, managed: bool) -> Connection {
        Self::with_context(ClientContext::new(peer, tls), managed)
    }

    /// A connection whose forwarding facts are `ctx`.
    pub fn with_context(ctx: ClientContext, managed: bool) -> Connection {
        Connection {
            ctx,
            devices: if managed {
                crate::access::DEVICE_MANAGED
            } else {
                crate::access::DEVICE_UNMANAGED
            },
            ip_version: u64::MAX,
            ip_sets: Vec::new(),
            signed_in: None,
            user_agent: None,
        }
    }
}

/// What the gate let through, for the request and its log record.
#[derive(Default)]
pub struct Admitted {
    pub signed_in: Option<Rc<SignedInUser>>,
    pub action: AccessAction,
    pub policy: Option<u32>,
    pub devices: u8,
    /// Session policies whose who/where filters match, in policy order.
    pub session_rules: crate::session_policy::RuleSet,
}

impl Admitted {
    /// The user's name (empty: nobody signed in).
    pub fn user(&self) -> &str {
        self.signed_in.as_ref().map_or("", |s| s.user.as_str())
    }

    /// What is known of a request answered before access was decided: the
    /// connection's device tags.
    pub fn undecided(conn: &Connection) -> Admitted {
        Admitted {
            devices: conn.devices,
            ..Admitted::default()
        }
    }
}

/// The host the user asked for: `<app host>.<suffix>`.
fn proxy_host(hosts: &crate::hostmap::HostMap, app_host: &str) -> String {
    format!("{app_host}.{}", String::from_utf8_lossy(hosts.suffix()))
}
