//! The operator's fleet commands: `apply --fleet`, `rollback --fleet`,
//! `fleet status`. Each talks to etcd only; the nodes do the rest.

use std::path::Path;
use std::time::Duration;

use palisade_schema::policy::CompileOptions;
use palisade_schema::snapshot;
use serde::Serialize;

use super::{node_settled, Fleet, Meta, NodeReport};

/// What an apply or rollback did, fleet-wide.
#[derive(Serialize)]
pub struct Outcome {
    pub published: Meta,
    /// Every node's report once all answered or the wait ran out.
    pub nodes: Vec<NodeReport>,
    /// Whether every core of every node holds the version.
    pub all_ok: bool,
}

/// `controld apply POLICY --fleet …`: compile and validate here, publish,
/// wait for the nodes.
pub fn apply(
    policy: &Path,
    spec: &str,
    expect: Option<u64>,
    wait: Duration,
) -> Result<Outcome, String> {
    let fleet = Fleet::connect(spec)?;
    let published = fleet.publish(expect, |version| {
        let compiled = crate::commands::compile_policy(
            policy,
            &CompileOptions {
                version,
                ..CompileOptions::default()
            },
        )?;
        Ok(snapshot::encode(&compiled))
    })?;
    Ok(outcome(&fleet, published, wait))
}

/// `controld rollback [VERSION] --fleet …`.
pub fn rollback(version: Option<u64>, spec: &str, wait: Duration) -> Result<Outcome, String> {
    let fleet = Fleet::connect(spec)?;
    let published = fleet.rollback(version)?;
    Ok(outcome(&fleet, published, wait))
}

fn outcome(fleet: &Fleet, published: Meta, wait: Duration) -> Outcome {
    let nodes = fleet.wait_for(published.version, wait);
    let all_ok = !nodes.is_empty()
        && nodes
            .iter()
            .all(|n| n.cores.iter().all(|c| c.version == published.version) && !n.cores.is_empty());
    Outcome {
        published,
        nodes,
        all_ok,
    }
}

/// `controld fleet prune`: the versions deleted.
pub fn prune(spec: &str, keep: usize) -> Result<Vec<u64>, String> {
    Fleet::connect(spec)?.prune(keep)
}

/// `controld fleet status`.
#[derive(Serialize)]
pub struct Status {
    pub current: Option<Meta>,
    pub nodes: Vec<NodeReport>,
}

pub fn status(spec: &str) -> Result<Status, String> {
    let fleet = Fleet::connect(spec)?;
    Ok(Status {
        current: fleet.current()?,
        nodes: fleet.nodes()?,
    })
}

/// The nodes, one line per core.
pub fn render_nodes(nodes: &[NodeReport], version: u64) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("  no node reports to the fleet\n");
    }
    for n in nodes {
        let state = if node_settled(n, version) && n.cores.iter().all(|c| c.version == version) {
            "ok".to_string()
        } else if n.cores.is_empty() {
            "no data-plane core connected".to_string()
        } else {
            "not every core holds it".to_string()
        };
        out.push_str(&format!(
            "  node {}: controld at version {}; {state}\n",
            n.node, n.version
        ));
        for c in &n.cores {
            out.push_str(&format!(
                "    pid {} core {}: version {}",
                c.pid, c.core, c.version
            ));
            if c.refused_version != 0 {
                out.push_str(&format!(
                    " (refused version {}: {})",
                    c.refused_version, c.error
                ));
            }
            out.push('\n');
        }
    }
    out
}

impl Outcome {
    pub fn render(&self, verb: &str) -> String {
        format!(
            "{verb} version {} to the fleet ({} bytes, sha256 {}, by {})\n{}",
            self.published.version,
            self.published.size,
            &self.published.digest[..16],
            self.published.by,
            render_nodes(&self.nodes, self.published.version)
        )
    }
}

impl Status {
    pub fn render(&self) -> String {
        match &self.current {
            Some(m) => format!(
                "fleet version: {} (sha256 {}, by {} at {} unix ms)\n{}",
                m.version,
                &m.digest[..16],
                m.by,
                m.at_unix_ms,
                render_nodes(&self.nodes, m.version)
            ),
            None => format!(
                "fleet version: none published\n{}",
                render_nodes(&self.nodes, 0)
            ),
        }
    }
}
