//! Palisade's schemas and the policy compiler shared by `controld` and the
//! data plane: generated Cap'n Proto code, the snapshot file framing, the
//! log record layout, and the policy in three layers that depend one way:
//!
//! - [`model`]: the validated policy types, plain data;
//! - [`source`]: the TOML policy source and its compiler (→ model);
//! - [`codec`]: the Cap'n Proto snapshot encoding (→ model).
//!
//! [`policy`], [`access`], [`session`], [`activity`] and [`snapshot`] are
//! the stable paths the binaries import; each only re-exports from the three
//! layers. [`metrics_http`] and [`systemd`] (readiness, journal) are the
//! daemons' shared plumbing.

pub mod codec;
pub mod frame;
pub mod generated;
pub mod jwt;
pub mod logrec;
pub mod metrics_http;
pub mod model;
pub mod saml;
pub mod source;
pub mod systemd;

pub use generated::{control_capnp, policy_capnp};

/// The whole policy and its compiler.
pub mod policy {
    pub use crate::model::app::{
        check_bare_host_context, App, LeakGuard, RewriteSettings, MAX_BARE_HOST_CONTEXTS,
        MAX_BARE_HOST_CONTEXT_LEN,
    };
    pub use crate::model::names::{DnsName, IpRange, IpTag, Scheme, Upstream, UpstreamHost};
    pub use crate::model::policy::Policy;
    pub use crate::source::{
        compile_file, compile_source, CompileOptions, Diagnostic, Diagnostics,
    };
}

/// Access control: TLS material, identity, access policies, the block page.
pub mod access {
    pub use crate::model::access::*;
}

/// Session control: session policies and app activity profiles.
pub mod session {
    pub use crate::model::session::*;
}

/// Activity policies (controld's alert rules on the log stream).
pub mod activity {
    pub use crate::model::activity::*;
}

/// Snapshot files.
pub mod snapshot {
    pub use crate::codec::*;
}
