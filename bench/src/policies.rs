//! Generated policies for load and scale tests.

use std::fmt::Write;

/// A policy with `apps` apps (each owning `app<i>.scale.test`, all sent to
/// `upstream`) and `ranges` IP ranges spread over 100 tags. Deterministic.
pub fn large_policy_toml(apps: usize, ranges: usize, upstream: &str) -> String {
    let mut out = String::with_capacity(apps * 120 + ranges * 20);
    out.push_str("[proxy]\nsuffix = \"proxy.test\"\n\n");
    for i in 0..apps {
        let _ = write!(
            out,
            "[[app]]\nname = \"app{i}\"\ndomains = [\"app{i}.scale.test\"]\nupstream = \"{upstream}\"\n\n"
        );
    }
    let tags = 100.min(ranges.max(1));
    let per_tag = ranges.div_ceil(tags);
    let mut n = 0usize;
    for t in 0..tags {
        let _ = write!(out, "[[ip_tag]]\nname = \"tag{t}\"\nranges = [");
        for j in 0..per_tag {
            if n == ranges {
                break;
            }
            if j > 0 {
                out.push_str(", ");
            }
            // Distinct /24s: 10.x.y.0/24 then 11.x.y.0/24 …
            let a = 10 + (n >> 16);
            let b = (n >> 8) & 0xff;
            let c = n & 0xff;
            let _ = write!(out, "\"{a}.{b}.{c}.0/24\"");
            n += 1;
        }
        out.push_str("]\n\n");
    }
    out
}

/// A policy with `policies` access policies over 100 apps and `ranges` IP
/// ranges (in 100 ip tags, as [`large_policy_toml`]): every app has
/// `policies / 100` policies of its own (an ip tag or a negated one, a
/// group or a user, device tags, client kinds; actions block, monitor,
/// audit and allow in turn) and 10 policies apply to every app.
/// Deterministic: the policy-evaluation benchmark and tests share it.
pub fn access_policy_toml(policies: usize, ranges: usize) -> String {
    access_policy_toml_over(policies, ranges, 100)
}

/// [`access_policy_toml`] with every app sent to `upstream`.
pub fn access_policy_toml_to(policies: usize, ranges: usize, upstream: &str) -> String {
    access_policy_toml_over(policies, ranges, 100).replace("http://127.0.0.1:18080", upstream)
}

/// [`access_policy_toml`] with the app-specific policies spread over
/// `apps` of the 100 apps (1: every policy names `app0`, the worst case for
/// a request to it).
pub fn access_policy_toml_over(policies: usize, ranges: usize, apps: usize) -> String {
    let apps = apps.clamp(1, 100);
    let mut out = large_policy_toml(100, ranges, "http://127.0.0.1:18080");
    let actions = ["block", "monitor", "audit", "allow"];
    let global = 10.min(policies);
    for i in 0..policies {
        let _ = write!(out, "[[access_policy]]\nname = \"policy{i}\"\n");
        if i >= global {
            let _ = writeln!(out, "apps = [\"app{}\"]", i % apps);
        }
        match i % 5 {
            0 => {
                let _ = writeln!(out, "ip_tags = [\"tag{}\"]", i % 100);
            }
            1 => {
                let _ = writeln!(
                    out,
                    "not_ip_tags = [\"tag{}\"]\ngroups = [\"group{}\"]",
                    i % 100,
                    i % 37
                );
            }
            2 => {
                let _ = writeln!(
                    out,
                    "users = [\"user{}\"]\ndevices = [\"unmanaged\"]",
                    i % 53
                );
            }
            3 => {
                let _ = writeln!(
                    out,
                    "groups = [\"group{}\", \"group{}\"]\nclient_apps = [\"native\"]",
                    i % 37,
                    (i + 1) % 37
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "ip_tags = [\"tag{}\"]\ndevices = [\"managed\"]\nusers = [\"user{}\"]",
                    i % 100,
                    i % 53
                );
            }
        }
        let _ = write!(out, "action = \"{}\"\n\n", actions[i % 4]);
    }
    out
}

/// [`access_policy_toml_over`], compiled.
pub fn access_policy(
    policies: usize,
    ranges: usize,
    apps: usize,
) -> palisade_schema::policy::Policy {
    let text = access_policy_toml_over(policies, ranges, apps);
    palisade_schema::policy::compile_source(
        "access.toml",
        &text,
        std::path::Path::new("."),
        &palisade_schema::policy::CompileOptions::default(),
    )
    // A generated policy that does not compile is a bug in this module.
    .expect("the generated access policy compiles")
}
