//! A fleet through etcd: a real 3-member etcd cluster (Debian
//! `etcd-server`) on loopback and three nodes, each a real controld
//! (`serve --fleet … --node …`) with its own data plane. A fleet apply
//! reaches every core of every node; a racing apply is refused; with one
//! etcd member killed applies still go through; a node whose controld was
//! killed catches up when restarted; a node cut from etcd keeps serving and
//! catches up when the link is back; a rollback reaches every node; a node
//! joining later gets the current version.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(60);

fn etcd_bin() -> PathBuf {
    let path = PathBuf::from(std::env::var("ETCD").unwrap_or("/usr/bin/etcd".into()));
    assert!(
        path.exists(),
        "{} is missing: install etcd-server (scripts/test does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn within(what: &str, cond: impl FnMut() -> bool) {
    palisade_bench::testing::eventually_within(what, LONG, Duration::from_millis(50), cond)
}

/// Three etcd members on loopback.
struct Cluster {
    members: Vec<Option<Child>>,
    client_ports: Vec<u16>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.iter_mut().flatten() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

impl Cluster {
    fn start(dir: &std::path::Path) -> Cluster {
        // A clear message when etcd is missing (etcd_member runs `etcd`
        // from PATH, or $ETCD).
        etcd_bin();
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let members = (0..3)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("etcd-m{i}.log"))).expect("log");
                Some(
                    palisade_bench::fleet::etcd_member(dir, i, &client_ports, &peer_ports)
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("start etcd"),
                )
            })
            .collect();
        let cluster = Cluster {
            members,
            client_ports,
        };
        for port in &cluster.client_ports {
            within(&format!("etcd member on {port} healthy"), || {
                http_get(&format!("http://127.0.0.1:{port}/health"))
                    .1
                    .contains("\"true\"")
            });
        }
        cluster
    }

    fn spec(&self) -> String {
        let members: Vec<String> = self
            .client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("etcd://{}", members.join(","))
    }

    /// etcd's maintenance status of member `i` (member id, leader id).
    fn status(&self, i: usize) -> Option<(String, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!(
            "http://127.0.0.1:{}/v3/maintenance/status",
            self.client_ports[i]
        );
        let text = agent
            .post(&url)
            .send("{}")
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((
            v["header"]["member_id"].as_str()?.to_string(),
            v["leader"].as_str()?.to_string(),
        ))
    }

    /// Makes member `target` the leader (so that killing it makes the
    /// others elect a new one: the hard case for clients).
    fn make_leader(&self, target: usize) {
        within(&format!("etcd member {target} leads"), || {
            let Some((target_id, leader_id)) = self.status(target) else {
                return false;
            };
            if target_id == leader_id {
                return true;
            }
            // Only the leader can hand over leadership.
            if let Some(leader) =
                (0..3).find(|i| self.status(*i).is_some_and(|(id, _)| id == leader_id))
            {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let _ = agent
                    .post(&format!(
                        "http://127.0.0.1:{}/v3/maintenance/transfer-leadership",
                        self.client_ports[leader]
                    ))
                    .send(format!("{{\"targetID\": \"{target_id}\"}}"));
            }
            false
        });
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// GET `url`: (status, body), or (0, "") while nothing answers.
fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// A TCP relay to one etcd member that the test can cut and restore.
struct Relay {
    port: u16,
    target: SocketAddr,
    running: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let relay = Relay {
            port: free_port(),
            target,
            running: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        relay.resume();
        relay
    }

    /// Listens again on the same port.
    fn resume(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("relay bind");
        listener.set_nonblocking(true).expect("nonblocking");
        self.running.store(true, Ordering::SeqCst);
        let (running, conns, target) = (self.running.clone(), self.conns.clone(), self.target);
        std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).expect("blocking");
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        let mut list = conns.lock().unwrap();
                        list.push(client.try_clone().expect("clone"));
                        list.push(server.try_clone().expect("clone"));
                        for (mut from, mut to) in [
                            (
                                client.try_clone().expect("clone"),
                                server.try_clone().expect("clone"),
                            ),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16384];
                                loop {
                                    match from.read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => {
                                            if to.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                    }
                                }
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // Dropping the listener closes the port.
        });
    }

    /// Closes the port and every relayed connection.
    fn cut(&self) {
        self.running.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        within("the relay port closed", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }
}

/// One node: controld following the fleet, and its data plane.
struct Node {
    env: Env,
    name: String,
    spec: String,
    policy: PathBuf,
    controld: Option<Proc>,
    _dataplane: Proc,
    proxy: SocketAddr,
}

impl Node {
    fn start(name: &str, spec: &str, origin: SocketAddr) -> Node {
        let env = Env::new();
        let policy = env.policy("bootstrap.toml", origin, "");
        let controld = env.controld(
            &policy,
            &["--fleet", spec, "--node", name, "--console", "127.0.0.1:0"],
        );
        let (dataplane, proxy) = env.dataplane(1, &[]);
        Node {
            env,
            name: name.into(),
            spec: spec.into(),
            policy,
            controld: Some(controld),
            _dataplane: dataplane,
            proxy,
        }
    }

    fn restart_controld(&mut self) {
        let args = [
            "--fleet",
            self.spec.as_str(),
            "--node",
            self.name.as_str(),
            "--console",
            "127.0.0.1:0",
        ];
        self.controld = Some(self.env.controld(&self.policy, &args));
    }

    /// The version the node's core serves (0 while none is connected).
    fn core_version(&self) -> u64 {
        let st = self.env.status();
        st["cores"][0]["version"].as_u64().unwrap_or(0)
    }

    fn wait_for_version(&self, version: u64) {
        within(
            &format!("node {} core at version {version}", self.name),
            || self.core_version() == version,
        );
    }

    fn serves_demo(&self) -> bool {
        fetch(self.proxy, "demo.test.proxy.test").is_ok_and(|(status, _)| status == 200)
    }
}

/// `controld` with `args`: (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(controld_bin())
        .args(args)
        .output()
        .expect("run controld");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A policy with `apps` extra apps (each one version's visible change).
fn policy_with(env: &Env, name: &str, origin: SocketAddr, apps: usize) -> PathBuf {
    let mut extra = String::new();
    for i in 0..apps {
        extra.push_str(&format!(
            "\n[[app]]\nname = \"extra{i}\"\ndomains = [\"extra{i}.test\"]\nupstream = \"http://127.0.0.1:9\"\n"
        ));
    }
    env.policy(name, origin, &extra)
}

fn fleet_status(spec: &str) -> serde_json::Value {
    let (ok, out, err) = cli(&["fleet", "status", "--fleet", spec, "--json"]);
    assert!(ok, "fleet status: {err}");
    serde_json::from_str(&out).expect("fleet status JSON")
}

#[test]
fn a_fleet_follows_etcd_through_races_member_loss_restarts_and_a_cut() {
    let work = Env::new();
    let mut cluster = Cluster::start(work.dir.path());
    let spec = cluster.spec();
    let origin = named_origin("fleet");
    // Node 3 reaches etcd only through a relay to member 0 (the test cuts
    // it); nodes 1 and 2 know every member.
    let relay = Relay::start(
        format!("127.0.0.1:{}", cluster.client_ports[0])
            .parse()
            .unwrap(),
    );
    let relay_spec = format!("etcd://127.0.0.1:{}", relay.port);
    let mut nodes = vec![
        Node::start("n1", &spec, origin.addr()),
        Node::start("n2", &spec, origin.addr()),
        Node::start("n3", &relay_spec, origin.addr()),
    ];
    for n in &nodes {
        n.env.wait_for_cores(1, 1);
    }
    // An apply waits for the nodes reporting when it publishes: let all
    // three (each with its core) report first, however loaded the machine.
    within("every node reporting to the fleet with its core", || {
        fleet_status(&spec)["nodes"].as_array().is_some_and(|n| {
            n.len() == 3
                && n.iter()
                    .all(|n| n["cores"].as_array().is_some_and(|c| c.len() == 1))
        })
    });

    // A fleet apply reaches every core of every node.
    let p1 = policy_with(&work, "v1.toml", origin.addr(), 1);
    let (ok, out, err) = cli(&["apply", p1.to_str().unwrap(), "--fleet", &spec, "--json"]);
    assert!(ok, "fleet apply: {out}{err}");
    let outcome: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(outcome["published"]["version"], 1);
    assert_eq!(outcome["all_ok"], true, "{outcome:#}");
    assert_eq!(
        outcome["nodes"].as_array().map(Vec::len),
        Some(3),
        "{outcome:#}"
    );
    for n in &nodes {
        assert_eq!(n.core_version(), 1, "node {}", n.name);
    }
    let st = fleet_status(&spec);
    assert_eq!(st["current"]["version"], 1);
    let mut names: Vec<&str> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["n1", "n2", "n3"]);
    // A local apply on a fleet node is refused.
    let local = nodes[0].env.cli(&["apply", p1.to_str().unwrap()]);
    assert!(!local.status.success());
    assert!(String::from_utf8_lossy(&local.stderr).contains("follows the fleet"));
    // The node's console shows the whole fleet, and refuses an apply too.
    {
        let node = &nodes[0];
        let console =
            support::console::Console::of(&node.controld.as_ref().expect("controld").first_line);
        let admin = console.sign_in_with_token(&node.env);
        let page = console.get("/", Some(&admin));
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains("<strong id=\"fleet-version\">1</strong>"),
            "{}",
            page.body
        );
        for name in ["n1", "n2", "n3"] {
            assert!(
                page.body.contains(&format!("<td>{name}</td>")),
                "{name} in the fleet table"
            );
        }
        let csrf = console.csrf(&admin);
        let text = std::fs::read_to_string(&p1).unwrap();
        let a = console.post(
            "/policies/apply",
            Some(&admin),
            &[("text", &text), ("csrf", &csrf)],
        );
        assert_eq!(a.status, 409, "{a:?}");
        assert!(a.body.contains("follows the fleet"));
    }

    // Two operators racing from version 1: exactly one publishes.
    let p2a = policy_with(&work, "v2a.toml", origin.addr(), 2);
    let p2b = policy_with(&work, "v2b.toml", origin.addr(), 3);
    let racers: Vec<_> = [&p2a, &p2b]
        .iter()
        .map(|p| {
            let (p, spec) = (p.to_str().unwrap().to_string(), spec.clone());
            std::thread::spawn(move || {
                cli(&["apply", &p, "--fleet", &spec, "--expect-version", "1"])
            })
        })
        .collect();
    let results: Vec<(bool, String, String)> =
        racers.into_iter().map(|r| r.join().unwrap()).collect();
    let winners = results.iter().filter(|r| r.0).count();
    assert_eq!(winners, 1, "{results:#?}");
    let loser = results.iter().find(|r| !r.0).unwrap();
    assert!(
        loser.2.contains("another apply"),
        "the loser is told: {}",
        loser.2
    );
    assert_eq!(fleet_status(&spec)["current"]["version"], 2);
    for n in &nodes {
        n.wait_for_version(2);
    }

    // One etcd member killed, the leader: applies still go through (the
    // CLI retries while the other two elect a new leader).
    cluster.make_leader(2);
    cluster.kill(2);
    let p3 = policy_with(&work, "v3.toml", origin.addr(), 4);
    let (ok, out, err) = cli(&["apply", p3.to_str().unwrap(), "--fleet", &spec]);
    assert!(ok, "apply with a member down: {out}{err}");
    assert!(out.contains("published version 3"), "{out}");
    for n in &nodes {
        assert_eq!(n.core_version(), 3, "node {}", n.name);
    }

    // Node 2's controld killed; a version published meanwhile; restarted,
    // it catches up (its data plane kept serving and reconnects).
    nodes[1].controld.take().unwrap().kill();
    let p4 = policy_with(&work, "v4.toml", origin.addr(), 5);
    let (_, out, _) = cli(&[
        "apply",
        p4.to_str().unwrap(),
        "--fleet",
        &spec,
        "--wait",
        "2",
    ]);
    assert!(out.contains("published version 4"), "{out}");
    assert!(
        nodes[1].serves_demo(),
        "node 2's data plane serves without controld"
    );
    nodes[0].wait_for_version(4);
    nodes[2].wait_for_version(4);
    nodes[1].restart_controld();
    // It resumes version 3 from its state directory (not the bootstrap
    // policy), then installs 4.
    let first = &nodes[1].controld.as_ref().unwrap().first_line;
    assert!(first.starts_with("controld: serving version 3 "), "{first}");
    nodes[1].wait_for_version(4);

    // Node 3 cut from etcd: it keeps serving version 4; the others take
    // version 5; back on the link, node 3 catches up.
    relay.cut();
    let p5 = policy_with(&work, "v5.toml", origin.addr(), 6);
    let (_, out, err) = cli(&[
        "apply",
        p5.to_str().unwrap(),
        "--fleet",
        &spec,
        "--wait",
        "2",
    ]);
    assert!(out.contains("published version 5"), "{out}{err}");
    nodes[0].wait_for_version(5);
    nodes[1].wait_for_version(5);
    assert!(nodes[2].serves_demo(), "node 3 serves while cut off");
    assert_eq!(nodes[2].core_version(), 4, "node 3 keeps what it had");
    relay.resume();
    nodes[2].wait_for_version(5);
    within("fleet status: every node at 5", || {
        let st = fleet_status(&spec);
        st["nodes"].as_array().is_some_and(|list| {
            list.len() == 3
                && list.iter().all(|n| {
                    n["cores"]
                        .as_array()
                        .is_some_and(|c| c.len() == 1 && c[0]["version"] == 5)
                })
        })
    });
    // Rollback through the fleet.
    let (ok, out, err) = cli(&["rollback", "3", "--fleet", &spec]);
    assert!(ok, "fleet rollback: {out}{err}");
    for n in &nodes {
        n.wait_for_version(3);
    }
    // A node joining now gets the current version (not its bootstrap).
    let joined = Node::start("n4", &spec, origin.addr());
    joined.wait_for_version(3);
    within("fleet status lists four nodes", || {
        fleet_status(&spec)["nodes"].as_array().map(Vec::len) == Some(4)
    });

    // Pruning keeps the newest two (4, 5) and the current one (3); rollback
    // then reaches only those, and the nodes keep serving.
    let (ok, out, err) = cli(&["fleet", "prune", "--fleet", &spec, "--keep", "2"]);
    assert!(ok, "fleet prune: {out}{err}");
    assert!(out.contains("pruned version(s) 1, 2"), "{out}");
    let (ok, _, err) = cli(&["rollback", "1", "--fleet", &spec]);
    assert!(!ok);
    assert!(err.contains("not in the fleet's history"), "{err}");
    let (ok, out, err) = cli(&["rollback", "4", "--fleet", &spec]);
    assert!(ok, "rollback to a kept version: {out}{err}");
    for n in nodes.iter().chain([&joined]) {
        n.wait_for_version(4);
    }
    let (ok, out, _) = cli(&["fleet", "prune", "--fleet", &spec, "--keep", "2"]);
    assert!(ok && out.contains("pruned version(s) 3"), "{out}");
}
