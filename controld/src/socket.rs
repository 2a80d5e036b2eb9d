//! The control socket's access control: created with mode 0600 (0660 and an
//! operators' group with `--socket-group`), and every peer's credentials
//! checked with SO_PEERCRED, so file permissions are not the only gate.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Who may talk to the daemon.
#[derive(Clone, Debug)]
pub struct Access {
    /// User ids allowed besides the daemon's own and root.
    pub uids: Vec<u32>,
    /// Members of this group (the peer's primary or a supplementary
    /// group) are allowed.
    pub gid: Option<u32>,
}

/// Credentials of a connected peer.
#[derive(Clone, Debug)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as they were when it connected.
    pub groups: Vec<u32>,
}

/// Reads the peer's credentials (Linux `SO_PEERCRED`).
pub fn peer_credentials(stream: &UnixStream) -> std::io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // properly sized and aligned ucred that outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(stream)?,
    })
}

/// The peer's supplementary groups (Linux 4.13 `SO_PEERGROUPS`: taken at
/// connect time, so no race with the peer changing or exiting): an
/// operator added to the socket's group is let in by membership, not only
/// when it is their primary group.
fn peer_groups(stream: &UnixStream) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into the buffer,
        // and sets `len` to what it needs when the buffer is too small.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() {
            groups.resize(needed, 0);
            continue;
        }
        return Err(err);
    }
}

impl Access {
    /// True when `peer` may use the socket.
    pub fn allows(&self, peer: &Peer) -> bool {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        peer.uid == me
            || peer.uid == 0
            || self.uids.contains(&peer.uid)
            || self
                .gid
                .is_some_and(|g| g == peer.gid || peer.groups.contains(&g))
    }
}

/// Resolves a group name to its gid.
pub fn group_id(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("bad group name {name:?}"))?;
    // SAFETY: getgrnam reads a NUL-terminated string and returns a pointer
    // to static storage (or NULL), which we read immediately.
    let group = unsafe { libc::getgrnam(c.as_ptr()) };
    if group.is_null() {
        return Err(format!("no such group {name:?}"));
    }
    // SAFETY: non-null pointer returned by getgrnam.
    Ok(unsafe { (*group).gr_gid })
}

/// Binds the control socket at `path`: refuses if a live daemon already
/// listens there, replaces a stale socket file, and creates the socket with
/// mode 0600 (or 0660 and group `gid`) with no window where it is wider.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another controld is already listening",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("{}: cannot remove stale socket: {e}", path.display()))?;
    }
    // SAFETY: umask only changes this process's file-creation mask; it is
    // restored right after bind. No other thread creates files meanwhile
    // (the daemon binds before starting any).
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(gid) = gid {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| "socket path has a NUL".to_string())?;
        // SAFETY: chown/chmod on a NUL-terminated path we just created.
        let rc = unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) };
        if rc != 0 {
            return Err(format!(
                "{}: chown: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| format!("{}: chmod: {e}", path.display()))?;
    }
    Ok(listener)
}
