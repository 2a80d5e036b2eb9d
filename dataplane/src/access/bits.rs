//! The bits access policies match on: device tags and client kinds, and
//! the bound on user-agent patterns (one bit each).

/// Device tag bits.
pub const DEVICE_MANAGED: u8 = 1;
pub const DEVICE_UNMANAGED: u8 = 2;
pub const DEVICE_COMPLIANT: u8 = 4;
pub const DEVICE_DOMAIN_JOINED: u8 = 8;
/// Client kind bits.
pub const CLIENT_BROWSER: u8 = 1;
pub const CLIENT_NATIVE: u8 = 2;

/// Most distinct user-agent patterns across all policies (one bit each).
pub const MAX_USER_AGENT_PATTERNS: usize = 64;

pub(crate) fn device_bit(tag: &str) -> u8 {
    match tag {
        "managed" => DEVICE_MANAGED,
        "unmanaged" => DEVICE_UNMANAGED,
        "compliant" => DEVICE_COMPLIANT,
        "domain_joined" => DEVICE_DOMAIN_JOINED,
        _ => 0,
    }
}
