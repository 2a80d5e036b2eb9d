//! ID token verification: the schema crate's, shared with the console.

pub use palisade_schema::jwt::*;
