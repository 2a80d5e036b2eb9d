//! A fleet of nodes sharing one policy through etcd.
//!
//! `controld apply --fleet` compiles and validates locally, then publishes
//! the snapshot as the fleet's next version in one etcd transaction guarded
//! by a compare on the current version (two operators racing: one wins,
//! the other is told). Every node's `controld serve --fleet … --node NAME`
//! watches the current version, installs it (state directory, push to its
//! own data plane exactly as a local apply does) and reports under a lease
//! which version each of its cores holds or why it refused one. A node that
//! loses etcd keeps serving what it has and catches up when it is back.
//!
//! Keys, all under `/palisade/fleet/`:
//!
//! ```text
//! current                         {"version", "digest", "size", "chunks", "by", "at_unix_ms"}
//! latest                          the highest version ever published (versions never repeat)
//! versions/<v:020>                that version's metadata, for rollback
//! snapshots/<v:020>/<chunk:04>    the snapshot in chunks of 512 KiB (etcd refuses
//!                                 requests over 1.5 MiB by default; base64 in the
//!                                 gateway adds a third), checked against the SHA-256
//! nodes/<name>                    the node's report, attached to its lease (10 s)
//! ```

pub mod cli;
pub mod etcd;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use etcd::{Compare, Etcd};

const CURRENT: &[u8] = b"/palisade/fleet/current";
const LATEST: &[u8] = b"/palisade/fleet/latest";
const NODES: &[u8] = b"/palisade/fleet/nodes/";
/// Bytes per snapshot chunk.
const CHUNK: usize = 512 * 1024;
/// A node's report lives this long without renewal (a dead node's report
/// goes away).
const LEASE_TTL: u64 = 10;

fn version_key(v: u64) -> Vec<u8> {
    format!("/palisade/fleet/versions/{v:020}").into_bytes()
}

fn chunk_prefix(v: u64) -> Vec<u8> {
    format!("/palisade/fleet/snapshots/{v:020}/").into_bytes()
}

fn node_key(name: &str) -> Vec<u8> {
    let mut k = NODES.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// A published version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub version: u64,
    /// SHA-256 of the snapshot, hex.
    pub digest: String,
    pub size: usize,
    pub chunks: usize,
    /// Who published it (user@host).
    pub by: String,
    pub at_unix_ms: i64,
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeReport {
    pub node: String,
    /// The version its controld holds as current.
    pub version: u64,
    pub cores: Vec<CoreReport>,
}

/// One data-plane core of a node.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CoreReport {
    pub pid: u32,
    pub core: u32,
    /// The version it serves.
    pub version: u64,
    /// The version it last refused and why (empty: none).
    pub refused_version: u64,
    pub error: String,
}

/// SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn who() -> String {
    // SAFETY: getuid has no preconditions.
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    format!("{user}@{}", host_name())
}

/// This machine's host name.
pub fn host_name() -> String {
    let mut host = [0u8; 256];
    // SAFETY: the buffer's length is passed.
    unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) };
    let end = host.iter().position(|b| *b == 0).unwrap_or(0);
    String::from_utf8_lossy(&host[..end]).into_owned()
}

/// The fleet's etcd.
pub struct Fleet {
    etcd: Etcd,
}

/// The fleet's current version as read, with what a compare needs.
struct Seen {
    current: Option<Meta>,
    current_rev: i64,
    latest: u64,
    latest_rev: i64,
    /// The store's revision at the read (watch from here).
    revision: i64,
}

impl Fleet {
    /// A fleet from `etcd://HOST:PORT[,…]`.
    pub fn connect(spec: &str) -> Result<Fleet, String> {
        Ok(Fleet {
            etcd: Etcd::new(etcd::parse_endpoints(spec)?),
        })
    }

    fn seen(&self) -> Result<Seen, String> {
        let (current, revision) = self.etcd.get(CURRENT)?;
        let (latest, _) = self.etcd.get(LATEST)?;
        let meta = match &current {
            Some(kv) => Some(
                serde_json::from_slice::<Meta>(&kv.value)
                    .map_err(|e| format!("the fleet's current version is unreadable: {e}"))?,
            ),
            None => None,
        };
        Ok(Seen {
            current: meta,
            current_rev: current.map_or(0, |kv| kv.mod_revision),
            latest: latest
                .as_ref()
                .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.trim().parse().ok())
                .unwrap_or(0),
            latest_rev: latest.map_or(0, |kv| kv.mod_revision),
            revision,
        })
    }

    /// The fleet's current version, if any was published.
    pub fn current(&self) -> Result<Option<Meta>, String> {
        Ok(self.seen()?.current)
    }

    /// Reads a version's snapshot and checks it against its digest.
    pub fn fetch(&self, meta: &Meta) -> Result<Vec<u8>, String> {
        let chunks = self.etcd.get_prefix(&chunk_prefix(meta.version))?;
        if chunks.len() != meta.chunks {
            return Err(format!(
                "version {}: {} of {} chunks in etcd",
                meta.version,
                chunks.len(),
                meta.chunks
            ));
        }
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|kv| kv.value).collect();
        if bytes.len() != meta.size || digest(&bytes) != meta.digest {
            return Err(format!(
                "version {}: the snapshot in etcd does not match its digest",
                meta.version
            ));
        }
        Ok(bytes)
    }

    /// Publishes the snapshot `make(version)` returns as the next version.
    /// `expect`: the version the operator's change is based on; publishing
    /// is refused when another is current (by default, whatever is current
    /// when read). The compare in the transaction refuses it when another
    /// apply got in between.
    pub fn publish(
        &self,
        expect: Option<u64>,
        make: impl FnOnce(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Meta, String> {
        let seen = self.seen()?;
        let current = seen.current.as_ref().map_or(0, |m| m.version);
        if let Some(expected) = expect {
            if expected != current {
                return Err(format!(
                    "the fleet is at version {current}, not {expected}: another apply won; nothing was published (look at the change, then apply again)"
                ));
            }
        }
        let version = seen.latest.max(current) + 1;
        let bytes = make(version)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        let meta = Meta {
            version,
            digest: digest(&bytes),
            size: bytes.len(),
            chunks: chunks.len(),
            by: who(),
            at_unix_ms: now_unix_ms(),
        };
        let meta_json = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
        let mut puts: Vec<(Vec<u8>, Vec<u8>)> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut k = chunk_prefix(version);
                k.extend_from_slice(format!("{i:04}").as_bytes());
                (k, c.to_vec())
            })
            .collect();
        puts.push((version_key(version), meta_json.clone()));
        puts.push((LATEST.to_vec(), version.to_string().into_bytes()));
        puts.push((CURRENT.to_vec(), meta_json));
        let guards = [
            Compare {
                key: CURRENT,
                mod_revision: seen.current_rev,
            },
            Compare {
                key: LATEST,
                mod_revision: seen.latest_rev,
            },
        ];
        if !self.etcd.txn(&guards, &puts)? {
            let now = self.current()?;
            // A retried transaction whose first try committed (its answer
            // lost) fails its own compare: the current version is ours.
            if now.as_ref() == Some(&meta) {
                return Ok(meta);
            }
            let now = now.map_or(0, |m| m.version);
            return Err(format!(
                "another apply changed the fleet's policy meanwhile (now version {now}); nothing was published (look at the change, then apply again)"
            ));
        }
        Ok(meta)
    }

    /// Makes an earlier version current again (default: the highest below
    /// the current one).
    pub fn rollback(&self, target: Option<u64>) -> Result<Meta, String> {
        let seen = self.seen()?;
        let current = seen.current.as_ref().map_or(0, |m| m.version);
        let versions = self.etcd.get_prefix(b"/palisade/fleet/versions/")?;
        let metas: Vec<Meta> = versions
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let meta = match target {
            Some(v) => metas.into_iter().find(|m| m.version == v),
            None => metas.into_iter().rfind(|m| m.version < current),
        }
        .ok_or_else(|| match target {
            Some(v) => {
                format!("version {v} is not in the fleet's history (never published, or pruned)")
            }
            None => "no earlier version in the fleet's history".into(),
        })?;
        let json = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
        let guard = [Compare {
            key: CURRENT,
            mod_revision: seen.current_rev,
        }];
        if !self.etcd.txn(&guard, &[(CURRENT.to_vec(), json)])? {
            return Err(
                "another apply changed the fleet's policy meanwhile; nothing was changed".into(),
            );
        }
        Ok(meta)
    }

    /// Deletes every version but the newest `keep` and the current one
    /// (metadata and snapshot chunks), in one transaction that does nothing
    /// if the current version changed meanwhile; the versions deleted.
    /// etcd keeps the deleted keys' history until it compacts (its
    /// `--auto-compaction-retention`).
    pub fn prune(&self, keep: usize) -> Result<Vec<u64>, String> {
        if keep == 0 {
            return Err("--keep must be at least 1".into());
        }
        let seen = self.seen()?;
        let current = seen.current.as_ref().map_or(0, |m| m.version);
        let mut versions: Vec<u64> = self
            .etcd
            .get_prefix(b"/palisade/fleet/versions/")?
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Meta>(&kv.value).ok())
            .map(|m| m.version)
            .collect();
        versions.sort_unstable();
        let newest: Vec<u64> = versions.iter().rev().take(keep).copied().collect();
        let gone: Vec<u64> = versions
            .into_iter()
            .filter(|v| *v != current && !newest.contains(v))
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let prefixes: Vec<Vec<u8>> = gone
            .iter()
            .flat_map(|v| [version_key(*v), chunk_prefix(*v)])
            .collect();
        let guard = [Compare {
            key: CURRENT,
            mod_revision: seen.current_rev,
        }];
        if !self.etcd.delete_prefixes(&guard, &prefixes)? {
            return Err(
                "the fleet's current version changed meanwhile; nothing was pruned (run it again)"
                    .into(),
            );
        }
        Ok(gone)
    }

    /// Every node's report.
    pub fn nodes(&self) -> Result<Vec<NodeReport>, String> {
        Ok(self
            .etcd
            .get_prefix(NODES)?
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// Waits until every node reports `version` on every core (held or
    /// refused), or `wait` passes; the reports as last read.
    pub fn wait_for(&self, version: u64, wait: Duration) -> Vec<NodeReport> {
        let deadline = Instant::now() + wait;
        loop {
            let nodes = self.nodes().unwrap_or_default();
            let done = !nodes.is_empty() && nodes.iter().all(|n| node_settled(n, version));
            if done || Instant::now() >= deadline {
                return nodes;
            }
            // One small range request to a local cluster: polling this
            // often keeps the wait from adding to the measured latency.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether every core of `node` answered `version`.
pub fn node_settled(node: &NodeReport, version: u64) -> bool {
    !node.cores.is_empty()
        && node
            .cores
            .iter()
            .all(|c| c.version == version || c.refused_version == version)
}

/// See [`Hooks::wait_change`].
pub type WaitChange = Box<dyn Fn(&NodeReport, Duration) + Send + Sync>;

/// What the node's daemon gives the follower.
pub struct Hooks {
    /// The current version and its snapshot's digest.
    pub installed: Box<dyn Fn() -> Option<(u64, String)> + Send + Sync>,
    /// Stores, makes current and pushes a version (as an apply does).
    pub install: Box<dyn Fn(u64, Vec<u8>) -> Result<(), String> + Send + Sync>,
    /// The node's report.
    pub report: Box<dyn Fn() -> NodeReport + Send + Sync>,
    /// Blocks until the node's report differs from the one given (a core
    /// connected, acknowledged or left) or the time passes; returns at once
    /// when it already differs.
    pub wait_change: WaitChange,
}

/// Starts the node's two threads: one follows the fleet's current version,
/// one reports the node under a lease.
pub fn follow(spec: &str, node: String, hooks: Hooks) -> Result<(), String> {
    let hooks = std::sync::Arc::new(hooks);
    let follower = Fleet::connect(spec)?;
    let reporter = Fleet::connect(spec)?;
    let h = hooks.clone();
    std::thread::Builder::new()
        .name("controld-fleet".into())
        .spawn(move || run_follower(follower, &h))
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("controld-fleet-report".into())
        .spawn(move || run_reporter(reporter, node, &hooks))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn say(priority: palisade_schema::systemd::Priority, message: String) {
    crate::say(priority, &message, &[]);
}

fn run_follower(fleet: Fleet, hooks: &Hooks) {
    use palisade_schema::systemd::Priority;
    let mut failing = String::new();
    loop {
        let step = (|| -> Result<i64, String> {
            let seen = fleet.seen()?;
            if let Some(meta) = &seen.current {
                let have = (hooks.installed)();
                if have.as_ref() != Some(&(meta.version, meta.digest.clone())) {
                    let bytes = fleet.fetch(meta)?;
                    (hooks.install)(meta.version, bytes)?;
                    say(
                        Priority::Notice,
                        format!(
                            "controld: fleet: installed version {} (published by {})",
                            meta.version, meta.by
                        ),
                    );
                }
            }
            Ok(seen.revision)
        })();
        match step {
            Ok(revision) => {
                if !failing.is_empty() {
                    say(Priority::Notice, "controld: fleet: etcd is back".into());
                    failing.clear();
                }
                // Blocks until the current version changes, or 10 s pass
                // (then reads again: a missed event costs at most that).
                if let Err(e) = fleet.etcd.watch(CURRENT, revision, Duration::from_secs(10)) {
                    if failing != e {
                        say(
                            Priority::Warning,
                            format!("controld: fleet: watch: {e}; serving the current version"),
                        );
                        failing = e;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            Err(e) => {
                if failing != e {
                    say(
                        Priority::Warning,
                        format!("controld: fleet: {e}; serving the current version, retrying"),
                    );
                    failing = e;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn run_reporter(fleet: Fleet, node: String, hooks: &Hooks) {
    let key = node_key(&node);
    let mut lease = 0i64;
    let mut written: Option<NodeReport> = None;
    let mut renewed = Instant::now();
    loop {
        let mut report = (hooks.report)();
        report.node = node.clone();
        let step = (|| -> Result<(), String> {
            if lease == 0 {
                lease = fleet.etcd.grant(LEASE_TTL)?;
                written = None;
                renewed = Instant::now();
            }
            if renewed.elapsed() >= Duration::from_secs(LEASE_TTL / 3) {
                if !fleet.etcd.keep_alive(lease)? {
                    lease = 0;
                    return Err("lease expired".into());
                }
                renewed = Instant::now();
            }
            if written.as_ref() != Some(&report) {
                let json = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
                fleet.etcd.put(&key, &json, lease)?;
                written = Some(report);
            }
            Ok(())
        })();
        if step.is_err() {
            written = None;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        // Woken by the next ack: an apply's wait ends as soon as the
        // last core answered; at least once a second for the lease.
        match &written {
            Some(last) => (hooks.wait_change)(last, Duration::from_secs(1)),
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
