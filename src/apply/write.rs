//! Atomic file replacement below the host root: a fresh temporary file in the target's own
//! directory (`O_CREAT|O_EXCL|O_NOFOLLOW`), fsync, owner, extended attributes, mode, a last
//! check that the file still holds what the plan was made from, rename, fsync of the
//! directory. A crash leaves either the old file or the new one, never a torn one (at worst a
//! stray temporary file, which is never read and is removed by the next recovery). Every path
//! is reached through [`super::path`], so nothing is written outside the root.

use std::path::Path;

use super::path::{self, Dir, Expect, NewMeta};
use super::ApplyError;

/// The directory of a root-relative file, created (mode 0755) when missing.
fn target_dir(root: &Path, rel: &str) -> Result<(Dir, String), ApplyError> {
    let (dir, name) = path::split_file(rel)?;
    Ok((path::ensure_dir(root, dir, 0o755, None)?, name.to_string()))
}

/// Replaces the root-relative file `rel` with `bytes` and `meta`, after checking it still
/// holds `expect`.
pub fn atomic_write(
    root: &Path,
    rel: &str,
    bytes: &[u8],
    meta: &NewMeta,
    expect: Expect<'_>,
) -> Result<(), ApplyError> {
    let (dir, name) = target_dir(root, rel)?;
    dir.write_atomic(&name, bytes, meta, expect)
}

/// Removes the root-relative file `rel` (absent is fine) after checking it still holds
/// `expect`, and syncs its directory.
pub fn remove_file_synced(root: &Path, rel: &str, expect: Expect<'_>) -> Result<(), ApplyError> {
    let (dir, name) = path::split_file(rel)?;
    match path::open_dir(root, dir, None)? {
        Some(d) => d.remove(name, expect),
        None => Ok(()),
    }
}

/// Removes temporary files an interrupted `atomic_write` of `rel` may have left.
pub fn remove_stray_temporaries(root: &Path, rel: &str) {
    let Ok((dir, name)) = path::split_file(rel) else {
        return;
    };
    if let Ok(Some(d)) = path::open_dir(root, dir, None) {
        d.remove_temporaries(Some(name));
    }
}

/// Removes the directories a transaction created (given outermost first), innermost first,
/// each only when empty: what someone else put there since is kept, and so is its directory.
pub fn remove_created_dirs(root: &Path, dirs: &[String]) -> Result<(), ApplyError> {
    for rel in dirs.iter().rev() {
        let (parent, name) = path::split_file(rel)?;
        if let Some(d) = path::open_dir(root, parent, None)? {
            if let Some(sub) = d.subdir(name, false)? {
                sub.remove_temporaries(None);
            }
            d.remove_dir_if_empty(name)?;
        }
    }
    Ok(())
}

/// Replaces a file outside any host root (a path the user named, links followed there),
/// keeping its mode, owner and extended attributes; a new one gets `new_mode`.
pub fn write_plain(path: &Path, bytes: &[u8], new_mode: u32) -> Result<(), ApplyError> {
    let dir = Dir::open_plain(path.parent().unwrap_or(Path::new(".")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ApplyError::Refused(format!("{} names no file", path.display())))?;
    let meta = match dir.read(&name)? {
        Some(s) => NewMeta {
            mode: s.mode,
            owner: Some((s.uid, s.gid)),
            xattrs: s.xattrs,
        },
        None => NewMeta {
            mode: new_mode,
            owner: None,
            xattrs: Vec::new(),
        },
    };
    dir.write_atomic(&name, bytes, &meta, Expect::Any)
}
