//! The one lock implementation: an exclusive `flock` on a file below the host root, held until
//! the [`Lock`] is dropped (the kernel releases it when the process dies, so a crash never
//! leaves a stale lock). passthru's own host lock is tried once; a Proxmox guest's lock is the
//! file `qm` and `pct` themselves `flock` (PVE::Tools::lock_file), waited for as they do.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::path;
use super::{ApplyError, STATE_DIR};

/// What a lock protects. The order (host, then VMs, then containers, each by id) is the one
/// in which passthru takes several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockTarget {
    /// passthru's own: one transaction at a time on this host.
    Host,
    /// A Proxmox VM's config (qemu-server `PVE::QemuConfig::config_file_lock`).
    QemuGuest(u32),
    /// A Proxmox container's config (pve-container `PVE::LXC::Config::config_file_lock`;
    /// `/run/lock` is where Debian's `/var/lock` points).
    LxcGuest(u32),
}

impl LockTarget {
    /// The lock file, relative to the host root.
    pub fn path(self) -> String {
        match self {
            LockTarget::Host => format!("{STATE_DIR}/lock"),
            LockTarget::QemuGuest(vmid) => format!("var/lock/qemu-server/lock-{vmid}.conf"),
            LockTarget::LxcGuest(ctid) => format!("run/lock/lxc/pve-config-{ctid}.lock"),
        }
    }

    /// How long to wait for it: Proxmox waits 10 s for a guest's lock before giving up; our
    /// own is refused after a second (another passthru is mid-transaction, waiting longer
    /// will not help). The second is for a child being spawned on another thread of this
    /// process: between its fork and its exec (the lock file is O_CLOEXEC) it shares the
    /// lock's open file description, and the lock just released reads as held. Tests that
    /// run transactions on many threads, each spawning commands, met it under load.
    fn wait(self) -> Duration {
        if let LockTarget::Host = self {
            return Duration::from_secs(1);
        }
        // Tests make the wait short (debug builds only).
        if cfg!(debug_assertions) {
            if let Some(ms) = std::env::var("PASSTHRU_TEST_LOCK_WAIT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                return Duration::from_millis(ms);
            }
        }
        Duration::from_secs(10)
    }

    fn holder(self) -> &'static str {
        match self {
            LockTarget::Host => "another passthru is changing this host",
            LockTarget::QemuGuest(_) => "a qm task (or another passthru) is changing this VM",
            LockTarget::LxcGuest(_) => {
                "a pct task (or another passthru) is changing this container"
            }
        }
    }
}

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    pub path: PathBuf,
    _file: fs::File,
}

/// Takes the lock, waiting as long as its target's owner would.
///
/// The lock file is reached through a confined path (nothing outside the root is opened or
/// created), never through a link at its own name, created 0600 whatever the umask, and
/// refused when another user owns it or could write it. passthru's own lock lives in its
/// state directory (0700, no links, see [`super::path`]); a guest's lock directory is
/// Proxmox's and is created 0755 when missing, as Proxmox does.
pub fn take_lock(root: &Path, target: LockTarget) -> Result<Lock, ApplyError> {
    let rel = target.path();
    let (dir, name) = path::split_file(&rel)?;
    let dir = match target {
        LockTarget::Host => path::ensure_dir(root, dir, 0o755, Some(path::state_private_from()))?,
        _ => path::ensure_dir(root, dir, 0o755, None)?,
    };
    let path = dir.real(name);
    let file = dir.open_lock_file(name, 0o600)?;
    let deadline = Instant::now() + target.wait();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { path, _file: file }),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ApplyError::Locked {
                    path,
                    holder: target.holder(),
                })
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(ApplyError::Io {
                    op: "locking",
                    path,
                    err: e,
                })
            }
        }
    }
}
