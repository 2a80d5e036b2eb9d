//! Field helpers every part of the codec shares: text and text lists
//! (checked UTF-8), address ranges (re-validated on decode), and the
//! "invalid" error.

use std::net::IpAddr;

use super::error::SnapshotError;
use crate::model::names::IpRange;
use crate::policy_capnp;

pub(crate) type TextResult<'a> = capnp::Result<capnp::text::Reader<'a>>;

/// A text field, refused unless it is UTF-8.
pub(crate) fn text(r: TextResult<'_>) -> Result<String, SnapshotError> {
    Ok(r?
        .to_str()
        .map_err(|e| SnapshotError::Decode(e.to_string()))?
        .to_string())
}

pub(crate) fn texts(
    r: capnp::Result<capnp::text_list::Reader<'_>>,
) -> Result<Vec<String>, SnapshotError> {
    r?.iter().map(text).collect()
}

pub(crate) fn set_texts(mut list: capnp::text_list::Builder<'_>, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        list.set(i as u32, v.as_str());
    }
}

/// Writes text-list fields of a builder, one `init_field: values` each:
/// `text_lists!(out; init_apps: f.apps, init_users: f.users)`.
macro_rules! text_lists {
    ($builder:ident; $($init:ident: $values:expr),* $(,)?) => {
        $(
            $crate::codec::fields::set_texts(
                $builder.reborrow().$init($values.len() as u32),
                &$values,
            );
        )*
    };
}
pub(crate) use text_lists;

pub(crate) fn invalid(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(what.into())
}

/// An enum field, refused when this build does not know the value.
pub(crate) fn known<T>(value: Result<T, capnp::NotInSchema>) -> Result<T, SnapshotError> {
    value.map_err(|e| SnapshotError::Decode(e.to_string()))
}

pub(crate) fn encode_range(mut out: policy_capnp::ip_range::Builder<'_>, r: &IpRange) {
    match r.addr() {
        IpAddr::V4(a) => out.set_address(&a.octets()),
        IpAddr::V6(a) => out.set_address(&a.octets()),
    }
    out.set_prefix_length(r.prefix());
}

/// A range, refused when the address is neither 4 nor 16 bytes, the prefix
/// is too long or host bits are set.
pub(crate) fn decode_range(
    r: policy_capnp::ip_range::Reader<'_>,
) -> Result<IpRange, SnapshotError> {
    let address = r.get_address()?;
    let addr = match <[u8; 4]>::try_from(address) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => IpAddr::from(
            <[u8; 16]>::try_from(address)
                .map_err(|_| invalid(format!("address of {} bytes", address.len())))?,
        ),
    };
    IpRange::new(addr, r.get_prefix_length())
        .ok_or_else(|| invalid(format!("bad range {addr}/{}", r.get_prefix_length())))
}
