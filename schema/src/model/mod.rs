//! The policy model: plain, validated data that both binaries trust once
//! they hold it. Nothing here reads TOML or Cap'n Proto, and nothing here
//! imports the layers that do: the `source` compiler builds these types
//! from an operator's file and the `codec` carries them in snapshots.
//!
//! Dependencies point one way: `names` ← `access` ← `session` ← `app` ←
//! `policy`; `activity` stands alone.

pub mod access;
pub mod activity;
pub mod app;
pub mod names;
pub mod policy;
pub mod session;
