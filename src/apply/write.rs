//! Atomic file replacement: a temporary file in the same directory, fsync, mode and owner,
//! rename, fsync of the directory. A crash leaves either the old file or the new one, never a
//! torn one (at worst a stray temporary file, which is never read).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{crash_point, io_err, ApplyError};

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Replaces `path` with `bytes`, giving it `mode` and, when given, `owner` (uid, gid).
pub fn atomic_write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), ApplyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.passthru-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        if let Some((uid, gid)) = owner {
            // Only root may give a file away; an unprivileged run under a fixture root owns
            // everything it writes anyway.
            match std::os::unix::fs::fchown(&f, Some(uid), Some(gid)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(ApplyError::Io {
            op: "writing",
            path: tmp,
            source: e,
        });
    }
    crash_point("temporary written");
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ApplyError::Io {
            op: "renaming into place",
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    sync_dir(dir)
}

/// Removes a file (absent is fine) and syncs its directory.
pub fn remove_file_synced(path: &Path) -> Result<(), ApplyError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ApplyError::Io {
                op: "removing",
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Removes temporary files an interrupted `atomic_write` of `path` may have left.
pub fn remove_stray_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.passthru-", name.to_string_lossy());
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
