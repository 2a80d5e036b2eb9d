//! controld: the Palisade control daemon and operator CLI.
//!
//! This release carries the offline commands (`compile`, `validate`); the
//! daemon (`serve`), live `apply`/`status`/`rollback` and log collection
//! build on the same policy compiler from `palisade-schema`.

pub mod commands;
