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
