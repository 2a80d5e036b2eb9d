//! The TOML policy source and its compiler: an operator's file becomes a
//! validated [`Policy`](crate::model::policy::Policy), or every problem in
//! it as a [`Diagnostic`] naming file, line and column.
//!
//! One module per table family; [`compile`] is the driver. Each table's
//! compiler reports problems through a [`report::Report`] callback with the
//! source span and returns the model value it could build, so one run finds
//! every mistake. Dependencies point one way: `report` and `filters` are
//! used by the tables, the tables by `compile`.

mod access;
mod activity;
mod app;
mod compile;
mod filters;
mod identity;
mod ip_tags;
mod profile;
mod report;
mod saml;
mod session;
mod tls;

pub use compile::{compile_file, compile_source, CompileOptions};
pub use report::{Diagnostic, Diagnostics};

#[cfg(test)]
mod tests;
