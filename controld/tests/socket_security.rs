//! The control socket refuses other users and survives hostile peers:
//! oversized, garbage and stalled frames are dropped without harming
//! anyone else. State-dir crash safety across a daemon restart.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use support::*;

/// An unprivileged uid for the "other user" (nobody).
const OTHER_UID: u32 = 65534;

fn peer_is_dropped(mut s: UnixStream) -> bool {
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn socket_is_private_and_other_users_are_refused() {
    let env = Env::new();
    let a = named_origin("A");
    let policy = env.policy("a.toml", a.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let mode = std::fs::metadata(env.socket())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    // The other user can reach the directory but not the socket.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    let as_other = || {
        Command::new(controld_bin())
            .args(["status", "--socket"])
            .arg(env.socket())
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output()
            .expect("run as other uid")
    };
    let out = as_other();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Even with the file opened up, SO_PEERCRED keeps the other user out.
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let out = as_other();
    assert!(
        !out.status.success(),
        "other uid must be refused by peer credentials"
    );
    // The owner is still served.
    assert_eq!(env.status()["current_version"].as_u64(), Some(1));
}

#[test]
fn members_of_the_socket_group_are_served_also_by_a_supplementary_group() {
    let env = Env::new();
    let a = named_origin("A");
    let policy = env.policy("a.toml", a.addr(), "");
    // Debian's `users` group (gid 100): the other user gets it only as a
    // supplementary group.
    let _controld = env.controld(&policy, &["--socket-group", "users"]);
    let meta = std::fs::metadata(env.socket()).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    let as_other = |groups: &'static [libc::gid_t]| {
        let mut cmd = Command::new(controld_bin());
        cmd.args(["status", "--socket"]).arg(env.socket());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(OTHER_UID) != 0
                    || libc::setuid(OTHER_UID) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.output().expect("run as other uid")
    };
    let out = as_other(&[100]);
    assert!(
        out.status.success(),
        "a member of the socket group is served: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_other(&[]);
    assert!(!out.status.success(), "not a member: refused");
}

#[test]
fn hostile_frames_are_dropped_and_others_keep_working() {
    let env = Env::new();
    let o = env.two_origins();
    let _controld = env.controld(&o.policy_a, &[]);
    let (_dp, addr) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);

    // A stalled peer: half a length prefix, then silence (held open).
    let mut stalled = UnixStream::connect(env.socket()).expect("connect");
    stalled.write_all(&[0x10, 0x00]).expect("write");

    // Oversized frame: refused before any allocation.
    let mut oversized = UnixStream::connect(env.socket()).expect("connect");
    oversized
        .write_all(&0x7fff_ffffu32.to_le_bytes())
        .expect("write");
    assert!(peer_is_dropped(oversized), "oversized frame dropped");

    // Garbage of a plausible length.
    let mut garbage = UnixStream::connect(env.socket()).expect("connect");
    garbage.write_all(&24u32.to_le_bytes()).expect("write");
    garbage.write_all(&[0xAB; 24]).expect("write");
    assert!(peer_is_dropped(garbage), "garbage frame dropped");

    // Zero-length frame.
    let mut empty = UnixStream::connect(env.socket()).expect("connect");
    empty.write_all(&[0, 0, 0, 0]).expect("write");
    assert!(peer_is_dropped(empty), "empty frame dropped");

    // Everyone else is unaffected: status, apply to both cores, traffic.
    assert_eq!(env.status()["cores"].as_array().map(Vec::len), Some(2));
    env.apply(&o.policy_b, "after the bad frames");
    assert_eq!(
        fetch(addr, "demo.test.proxy.test").expect("fetch"),
        (200, "B".to_string())
    );
    drop(stalled);
}

#[test]
fn stalled_frame_is_dropped_after_the_frame_timeout() {
    let env = Env::new();
    let a = named_origin("A");
    let policy = env.policy("a.toml", a.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let mut stalled = UnixStream::connect(env.socket()).expect("connect");
    stalled.write_all(&[0x10]).expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 8];
    // The daemon gives the rest of a started frame 10 s, then hangs up.
    assert!(matches!(stalled.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn torn_state_write_never_becomes_current_across_restart() {
    let env = Env::new();
    let o = env.two_origins();
    let controld = env.controld(&o.policy_a, &[]);
    controld.kill();
    // Simulate a crash while writing version 2: a truncated temp file that
    // was never renamed.
    let full = std::fs::read(env.path("state/snapshots/00000000000000000001.snap")).expect("v1");
    std::fs::write(
        env.path("state/snapshots/.00000000000000000002.snap.tmp999"),
        &full[..full.len() / 3],
    )
    .expect("torn");
    let controld = env.controld(&o.policy_a, &[]);
    assert!(
        controld
            .first_line
            .starts_with("controld: serving version 1"),
        "{}",
        controld.first_line
    );
    let status = env.status();
    assert_eq!(status["current_version"].as_u64(), Some(1));
    assert_eq!(status["history_versions"], serde_json::json!([1]));
    // The next apply still gets a fresh, valid version.
    let out = env.cli(&["apply", o.policy_b.to_str().expect("path"), "--json"]);
    assert!(out.status.success());
    let applied: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(applied["version"].as_u64(), Some(2));
}
