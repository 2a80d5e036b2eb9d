//! A small etcd v3 client over etcd's own JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`; keys and values base64, 64-bit
//! numbers as strings), on the blocking HTTP client controld already uses.
//!
//! Why not a gRPC client crate: every Rust etcd client generates its gRPC
//! code with `protoc` at build time, and a Palisade build needs no code
//! generator (the Cap'n Proto code is committed for the same reason). The
//! gateway is part of etcd's supported API and carries the same requests.
//!
//! Every call goes to one member and moves on to the next when a member
//! cannot be reached or answers with a server error, so a dead member costs
//! one failed attempt, not an outage.

use std::cell::Cell;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// How long one request may take (a member without quorum hangs).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call goes on trying when no member answers.
const CALL_RETRY_FOR: Duration = Duration::from_secs(15);

/// Why one round of a call failed.
enum Failed {
    /// A member answered 4xx: the request itself is wrong.
    Refused(String),
    /// No member answered with success (the last error).
    Unavailable(String),
}

/// A key and its value as stored.
#[derive(Clone, Debug)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A guard of a transaction: the key's last modification revision (0: the
/// key must not exist).
pub struct Compare<'a> {
    pub key: &'a [u8],
    pub mod_revision: i64,
}

/// The gateway's form of `compares` (each: the key's mod revision equals).
fn compares_json(compares: &[Compare<'_>]) -> Vec<Value> {
    compares
        .iter()
        .map(|c| {
            json!({
                "key": B64.encode(c.key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": c.mod_revision.to_string(),
            })
        })
        .collect()
}

/// A cluster, by its members' client URLs.
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    /// The member tried first (the last one that answered).
    preferred: Cell<usize>,
}

/// Parses `etcd://HOST:PORT[,HOST:PORT…]` into member URLs.
pub fn parse_endpoints(spec: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| format!("--fleet {spec:?}: {why}");
    let rest = spec
        .strip_prefix("etcd://")
        .ok_or_else(|| bad("expected etcd://HOST:PORT[,HOST:PORT…]"))?;
    let mut out = Vec::new();
    for member in rest.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (host, port) = member
            .rsplit_once(':')
            .ok_or_else(|| bad("each member needs a port (2379 is etcd's)"))?;
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("a port must be 1-65535"))?;
        if host.is_empty() || host.contains(['/', '@', '?']) {
            return Err(bad("expected host names or addresses"));
        }
        out.push(format!("http://{host}:{port}"));
    }
    if out.is_empty() {
        return Err(bad("no member given"));
    }
    Ok(out)
}

fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn kv(v: &Value) -> Kv {
    Kv {
        key: bytes(&v["key"]),
        value: bytes(&v["value"]),
        mod_revision: number(&v["mod_revision"]),
    }
}

/// The first key after every key starting with `prefix` (etcd's range end
/// for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    pub fn new(endpoints: Vec<String>) -> Etcd {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Etcd {
            endpoints,
            agent,
            preferred: Cell::new(0),
        }
    }

    /// POSTs `body` to `/v3/{path}` on the first member that answers.
    /// When none does (members down, or the survivors electing a leader
    /// after the leader died: they answer 5xx or not at all meanwhile), the
    /// call is tried again for up to [`CALL_RETRY_FOR`].
    fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let deadline = Instant::now() + CALL_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.call_once(path, body) {
                Ok(v) => return Ok(v),
                Err(Failed::Refused(e)) => return Err(e),
                Err(Failed::Unavailable(e)) => {
                    if Instant::now() + pause >= deadline {
                        return Err(format!("no etcd member answered ({e})"));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// One try of [`Etcd::call`] on each member in turn.
    fn call_once(&self, path: &str, body: &Value) -> Result<Value, Failed> {
        let mut last = String::new();
        let n = self.endpoints.len();
        for i in 0..n {
            let at = (self.preferred.get() + i) % n;
            let url = format!("{}/v3/{path}", self.endpoints[at]);
            let sent = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string());
            match sent {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = match resp.body_mut().read_to_string() {
                        Ok(t) => t,
                        Err(e) => {
                            last = format!("{url}: {e}");
                            continue;
                        }
                    };
                    let value: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(e) => {
                            last = format!("{url}: not JSON ({e}): {text}");
                            continue;
                        }
                    };
                    if status == 200 {
                        self.preferred.set(at);
                        return Ok(value);
                    }
                    let message = value["error"].as_str().unwrap_or(&text).to_string();
                    last = format!("{url}: {status} {message}");
                    // A client error is the request's fault: another member
                    // would say the same.
                    if status < 500 {
                        return Err(Failed::Refused(last));
                    }
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(Failed::Unavailable(last))
    }

    /// One key, and the store's revision when read.
    pub fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), String> {
        let v = self.call("kv/range", &json!({ "key": B64.encode(key) }))?;
        let found = v["kvs"].as_array().and_then(|k| k.first()).map(kv);
        Ok((found, number(&v["header"]["revision"])))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<Kv>, String> {
        let v = self.call(
            "kv/range",
            &json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        Ok(v["kvs"]
            .as_array()
            .map(|k| k.iter().map(kv).collect())
            .unwrap_or_default())
    }

    /// Writes `puts` if every compare holds; whether it did.
    pub fn txn(
        &self,
        compares: &[Compare<'_>],
        puts: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<bool, String> {
        let compare = compares_json(compares);
        let success: Vec<Value> = puts
            .iter()
            .map(
                |(k, v)| json!({ "request_put": { "key": B64.encode(k), "value": B64.encode(v) } }),
            )
            .collect();
        let v = self.call("kv/txn", &json!({ "compare": compare, "success": success }))?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Deletes every key under each prefix if every compare holds; whether
    /// it did.
    pub fn delete_prefixes(
        &self,
        compares: &[Compare<'_>],
        prefixes: &[Vec<u8>],
    ) -> Result<bool, String> {
        let compare = compares_json(compares);
        let success: Vec<Value> = prefixes
            .iter()
            .map(|p| {
                json!({ "request_delete_range": { "key": B64.encode(p), "range_end": B64.encode(prefix_end(p)) } })
            })
            .collect();
        let v = self.call("kv/txn", &json!({ "compare": compare, "success": success }))?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Writes one key, attached to `lease` (0: none).
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<(), String> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("kv/put", &body).map(|_| ())
    }

    /// A lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: u64) -> Result<i64, String> {
        let v = self.call("lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        match number(&v["ID"]) {
            0 => Err(format!("lease grant: {v}")),
            id => Ok(id),
        }
    }

    /// Renews a lease; false when it has expired (its keys are gone).
    pub fn keep_alive(&self, lease: i64) -> Result<bool, String> {
        let v = self.call("lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        Ok(number(&v["result"]["TTL"]) > 0)
    }

    /// Waits up to `wait` for a change of `key` after `revision`; true when
    /// one came (false: the wait ran out, look again).
    pub fn watch(&self, key: &[u8], revision: i64, wait: Duration) -> Result<bool, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(wait))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/v3/watch", self.endpoints[self.preferred.get()]);
        let body = json!({ "create_request": { "key": B64.encode(key), "start_revision": (revision + 1).to_string() } });
        let sent = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let resp = match sent {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => return Err(format!("{url}: {}", r.status())),
            Err(e) => {
                // The next call starts at another member.
                self.preferred
                    .set((self.preferred.get() + 1) % self.endpoints.len());
                return Err(format!("{url}: {e}"));
            }
        };
        let reader = resp.into_body().into_reader();
        for message in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            match message {
                Ok(m)
                    if m["result"]["events"]
                        .as_array()
                        .is_some_and(|e| !e.is_empty()) =>
                {
                    return Ok(true)
                }
                Ok(m) if m["result"]["canceled"].as_bool() == Some(true) => return Ok(true),
                Ok(_) => continue,
                // The wait ran out (or the member went away): look again.
                Err(_) => return Ok(false),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_prefixes_end_where_they_should() {
        assert_eq!(
            parse_endpoints("etcd://10.0.0.1:2379,etcd-2:2379").unwrap(),
            vec!["http://10.0.0.1:2379", "http://etcd-2:2379"]
        );
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:0",
            "etcd://:5",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad}");
        }
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
