//! Confined paths: every file apply/ reads or writes below the host root is reached from a
//! descriptor of the root directory, one component at a time, so that nothing below the root
//! (a planted symbolic link, a renamed directory) can send a read or a write outside it.
//!
//! The policy, in order:
//! - a root-relative path is checked first ([`check_rel`]): relative, no `..` or `.`
//!   component, no empty component, no NUL. A plan or a journal manifest that names another
//!   path is refused before anything is opened;
//! - each directory component is opened with `O_DIRECTORY|O_NOFOLLOW` relative to the one
//!   before. A symbolic link there is resolved *inside the root*: a relative target against
//!   the link's directory, an absolute one against the root (as for a process chrooted into
//!   it, and as [`crate::host::HostRoot::resolve_link`] reads links), and a `..` that would
//!   climb above the root is refused. Links are followed rather than refused because real
//!   hosts need them: Proxmox's `/etc/pve/qemu-server` is a link to
//!   `nodes/NODE/qemu-server`, and Debian's `/var/lock` one to `/run/lock`;
//! - a link whose target does not exist is refused, never created through;
//! - the final component is opened with `O_NOFOLLOW`: a symbolic link at a file passthru
//!   edits is refused with its name (editing through it would replace the link by a file);
//! - passthru's own state (`var/lib/passthru` and below) follows no link at all, and every
//!   directory of it must be owned by the effective user and writable by no one else: a
//!   journal another user could plant would be written back by root's next recovery.
//!
//! Missing directories are created with an explicit mode (set with `fchmod`, never left to
//! the umask) and their parent is fsynced, so that a created directory survives a crash as
//! surely as the file written into it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::{crash_point, ApplyError, STATE_DIR};

/// Links followed in one resolution before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Checks a root-relative path and returns its components: relative, no `.`, `..` or empty
/// component, no NUL. The reason is for a message that names where the path came from.
pub fn check_rel(rel: &str) -> Result<Vec<&str>, String> {
    if rel.is_empty() {
        return Err("it is empty".into());
    }
    if rel.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    if rel.starts_with('/') {
        return Err("it is absolute (paths are relative to the host root)".into());
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err("it has an empty component (`//` or a trailing `/`)".into()),
            "." => return Err("it has a `.` component".into()),
            ".." => return Err("it has a `..` component, which could leave the root".into()),
            _ => {}
        }
    }
    Ok(parts)
}

/// [`check_rel`], as the error apply/ reports for a path a plan names.
pub fn checked(rel: &str) -> Result<Vec<&str>, ApplyError> {
    check_rel(rel).map_err(|why| {
        ApplyError::Refused(format!(
            "refusing the path {rel:?}: {why}; passthru only writes below the host root"
        ))
    })
}

/// How many components of [`STATE_DIR`]'s parent there are: components from this index on
/// are passthru's own state.
pub fn state_private_from() -> usize {
    STATE_DIR.split('/').count() - 1
}

fn oserr(op: &'static str, path: PathBuf) -> impl FnOnce(Errno) -> ApplyError {
    move |e| ApplyError::Io {
        op,
        path,
        err: io::Error::from(e),
    }
}

/// One attribute: name and value, as the kernel holds them.
pub type Xattrs = Vec<(String, Vec<u8>)>;

/// A regular file as read through a confined path: bytes, mode, owner, extended attributes
/// (ACLs are `system.posix_acl_access`, SELinux labels `security.selinux`).
#[derive(Debug, Clone)]
pub struct FileState {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Xattrs,
}

/// What a replaced file gets besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewMeta {
    pub mode: u32,
    /// Owner and group; `None`: the writer's.
    pub owner: Option<(u32, u32)>,
    /// Extended attributes to set on the new file (the old file's, carried over).
    pub xattrs: Xattrs,
}

/// What the file must hold right before it is replaced or removed: the last check against a
/// change made by someone else since passthru read it.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// No check (passthru's own journal files).
    Any,
    /// These bytes; `None`: absent.
    Bytes(Option<&'a [u8]>),
}

/// An open directory below the root, with the names it is known by.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Root-relative path it was resolved to (links followed); `""` for the root.
    pub rel: String,
    /// The real path, for messages.
    pub real: PathBuf,
}

/// How a walk ended.
enum Walked {
    Found(Dir),
    /// `dir` is the deepest existing directory; `missing` the components below it, in order.
    Missing {
        dir: Dir,
        missing: Vec<String>,
    },
}

fn join_rel(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn open_root(root: &Path) -> Result<Dir, ApplyError> {
    let fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(oserr("opening the host root", root.to_path_buf()))?;
    Ok(Dir {
        fd,
        rel: String::new(),
        real: root.to_path_buf(),
    })
}

/// Refuses a directory of passthru's state that another user could write.
pub fn check_private(fd: BorrowedFd<'_>, real: &Path) -> Result<(), ApplyError> {
    let st = rfs::fstat(fd).map_err(oserr("reading metadata of", real.to_path_buf()))?;
    let euid = rustix::process::geteuid().as_raw();
    let mode = st.st_mode;
    if st.st_uid != euid {
        return Err(ApplyError::Refused(format!(
            "{} is owned by uid {}, not by the user running passthru (uid {euid}): anyone who owns it could plant a transaction that passthru would write back; check it, then `chown {euid}` it",
            real.display(),
            st.st_uid
        )));
    }
    if mode & 0o022 != 0 {
        return Err(ApplyError::Refused(format!(
            "{} is writable by {} (mode {:o}): anyone could plant a transaction that passthru would write back; check it, then `chmod go-w` it",
            real.display(),
            if mode & 0o002 != 0 { "everyone" } else { "its group" },
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Walks `rel` (a directory, `""` for the root) from the root, component by component (see
/// the module docs). Components from index `private_from` on are passthru's own state.
fn walk(root: &Path, rel: &str, private_from: Option<usize>) -> Result<Walked, ApplyError> {
    let comps = if rel.is_empty() {
        Vec::new()
    } else {
        checked(rel)?
    };
    let root_dir = open_root(root)?;
    let mut stack: Vec<Dir> = Vec::new();
    // Components still to resolve; `Some(i)`: the i-th of `rel`, `None`: from a link target.
    let mut pending: VecDeque<(String, Option<usize>)> = comps
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), Some(i)))
        .collect();
    let mut links = 0;
    // The last link followed, for messages: (its path, its target).
    let mut via: Option<(String, String)> = None;
    let via_text = |via: &Option<(String, String)>| {
        via.as_ref()
            .map(|(l, t)| format!(" (through the symbolic link {l} -> {t})"))
            .unwrap_or_default()
    };
    while let Some((c, origin)) = pending.pop_front() {
        let cur = stack.last().unwrap_or(&root_dir);
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if stack.pop().is_none() {
                    return Err(ApplyError::Refused(format!(
                        "refusing {rel}: it leads above the host root {}{}; passthru only writes below the root",
                        root.display(),
                        via_text(&via)
                    )));
                }
                continue;
            }
            _ => {}
        }
        let private = matches!((origin, private_from), (Some(i), Some(p)) if i >= p);
        let here = join_rel(&cur.rel, &c);
        let real = root.join(&here);
        match rfs::openat(
            cur.fd.as_fd(),
            c.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                if private {
                    check_private(fd.as_fd(), &real)?;
                }
                stack.push(Dir {
                    fd,
                    rel: here,
                    real,
                });
            }
            Err(Errno::NOENT) => {
                if origin.is_none() {
                    return Err(ApplyError::Refused(format!(
                        "refusing {rel}: {here} does not exist{}; passthru does not create directories through a link",
                        via_text(&via)
                    )));
                }
                let mut missing = vec![c];
                missing.extend(pending.into_iter().map(|(c, _)| c));
                let dir = stack.pop().unwrap_or(root_dir);
                return Ok(Walked::Missing { dir, missing });
            }
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let st = rfs::statat(cur.fd.as_fd(), c.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(oserr("reading metadata of", real.clone()))?;
                if FileType::from_raw_mode(st.st_mode as _) != FileType::Symlink {
                    return Err(ApplyError::Refused(format!(
                        "refusing {rel}: {} is not a directory",
                        real.display()
                    )));
                }
                let target = rfs::readlinkat(cur.fd.as_fd(), c.as_str(), Vec::new())
                    .map_err(oserr("reading the link", real.clone()))?;
                let target = target.to_string_lossy().into_owned();
                if private {
                    return Err(ApplyError::Refused(format!(
                        "refusing {}: it is a symbolic link (to {target}); passthru keeps its journal and lock only in a real directory below the root",
                        real.display()
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(ApplyError::Refused(format!(
                        "refusing {rel}: more than {MAX_LINKS} symbolic links (a loop?) at {here}"
                    )));
                }
                if target.starts_with('/') {
                    stack.clear();
                }
                for part in target.split('/').rev() {
                    pending.push_front((part.to_string(), None));
                }
                via = Some((here, target));
            }
            Err(e) => return Err(oserr("opening directory", real)(e)),
        }
    }
    Ok(Walked::Found(stack.pop().unwrap_or(root_dir)))
}

/// Opens a directory below the root; `None` when it (or a directory above it) is missing.
pub fn open_dir(
    root: &Path,
    rel: &str,
    private_from: Option<usize>,
) -> Result<Option<Dir>, ApplyError> {
    Ok(match walk(root, rel, private_from)? {
        Walked::Found(d) => Some(d),
        Walked::Missing { .. } => None,
    })
}

/// The directories below the root that writing into `rel` would create, outermost first.
pub fn missing_dirs(root: &Path, rel: &str) -> Result<Vec<String>, ApplyError> {
    Ok(match walk(root, rel, None)? {
        Walked::Found(_) => Vec::new(),
        Walked::Missing { dir, missing } => {
            let mut at = dir.rel;
            missing
                .into_iter()
                .map(|c| {
                    at = join_rel(&at, &c);
                    at.clone()
                })
                .collect()
        }
    })
}

/// Opens a directory below the root, creating what is missing: with `mode`, or 0700 for a
/// component at or past `private_from` (passthru's state). The parent of each directory made
/// is fsynced.
pub fn ensure_dir(
    root: &Path,
    rel: &str,
    mode: u32,
    private_from: Option<usize>,
) -> Result<Dir, ApplyError> {
    let (mut dir, missing) = match walk(root, rel, private_from)? {
        Walked::Found(d) => return Ok(d),
        Walked::Missing { dir, missing } => (dir, missing),
    };
    let first = rel.split('/').count() - missing.len();
    for (k, c) in missing.iter().enumerate() {
        let private = private_from.is_some_and(|p| first + k >= p);
        dir = dir.make_subdir(c, if private { 0o700 } else { mode }, private)?;
    }
    Ok(dir)
}

/// Splits a checked root-relative file path into its directory and its name.
pub fn split_file(rel: &str) -> Result<(&str, &str), ApplyError> {
    checked(rel)?;
    Ok(match rel.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", rel),
    })
}

/// Reads a root-relative file through a confined path; `None` when it (or its directory) is
/// missing.
pub fn read_file(root: &Path, rel: &str) -> Result<Option<FileState>, ApplyError> {
    let (dir, name) = split_file(rel)?;
    match open_dir(root, dir, None)? {
        Some(d) => d.read(name),
        None => Ok(None),
    }
}

fn read_xattrs(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
    let len = match rfs::flistxattr_query(fd) {
        Ok(n) => n,
        // A filesystem without extended attributes has none to carry over.
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; len];
    let len = rfs::flistxattr(fd, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let vlen = match rfs::fgetxattr_query(fd, name.as_str()) {
            Ok(n) => n,
            // Gone since the list was read.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; vlen];
        let n = if vlen == 0 {
            0
        } else {
            rfs::fgetxattr(fd, name.as_str(), &mut value[..])?
        };
        value.truncate(n);
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

/// Debug builds only: `PASSTHRU_TEST_BEFORE_REPLACE=CMD` runs `sh -c CMD sh REAL_PATH` right
/// before the last check of a file passthru is about to replace or remove, so that a test
/// can make an edit land in the window between planning and the rename.
fn test_hook_before_replace(real: &Path) {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Ok(cmd) = std::env::var("PASSTHRU_TEST_BEFORE_REPLACE") {
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .arg("sh")
            .arg(real)
            .status();
    }
}

fn show_digest(b: Option<&[u8]>) -> String {
    b.map_or("absent".to_string(), |b| {
        format!("sha256 {}", &crate::plan::digest(b)[..12])
    })
}

impl Dir {
    /// Opens a directory by its real path, following links: for files outside any host root
    /// that the user named (the Prometheus textfile).
    pub fn open_plain(path: &Path) -> Result<Dir, ApplyError> {
        open_root(path)
    }

    /// The real path of an entry, for messages.
    pub fn real(&self, name: &str) -> PathBuf {
        self.real.join(name)
    }

    fn rel_of(&self, name: &str) -> String {
        join_rel(&self.rel, name)
    }

    /// Creates (or, made meanwhile, opens) a subdirectory with exactly `mode`, fsyncing this
    /// directory so the new entry is durable.
    pub fn make_subdir(&self, name: &str, mode: u32, private: bool) -> Result<Dir, ApplyError> {
        let real = self.real(name);
        let made = match rfs::mkdirat(self.fd.as_fd(), name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(oserr("creating directory", real)(e)),
        };
        let fd = rfs::openat(
            self.fd.as_fd(),
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(oserr("opening directory", real.clone()))?;
        if made {
            // The umask narrowed the mode given to mkdir; set it whole.
            rfs::fchmod(fd.as_fd(), Mode::from_raw_mode(mode & 0o7777))
                .map_err(oserr("setting the mode of", real.clone()))?;
            self.sync()?;
        }
        if private {
            check_private(fd.as_fd(), &real)?;
        }
        Ok(Dir {
            fd,
            rel: self.rel_of(name),
            real,
        })
    }

    /// Creates a new private subdirectory with exactly `mode`; `None` when the name is taken.
    pub fn make_new_subdir(&self, name: &str, mode: u32) -> Result<Option<Dir>, ApplyError> {
        match rfs::mkdirat(self.fd.as_fd(), name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Ok(None),
            Err(e) => return Err(oserr("creating directory", self.real(name))(e)),
        }
        let real = self.real(name);
        let fd = rfs::openat(
            self.fd.as_fd(),
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(oserr("opening directory", real.clone()))?;
        rfs::fchmod(fd.as_fd(), Mode::from_raw_mode(mode & 0o7777))
            .map_err(oserr("setting the mode of", real.clone()))?;
        self.sync()?;
        Ok(Some(Dir {
            fd,
            rel: self.rel_of(name),
            real,
        }))
    }

    /// Opens (creating it with `mode` when missing, never following a link) a file for a
    /// lock; refused unless owned by the effective user and writable by no one else.
    pub fn open_lock_file(&self, name: &str, mode: u32) -> Result<File, ApplyError> {
        let real = self.real(name);
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(
            self.fd.as_fd(),
            name,
            flags | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => {
                rfs::fchmod(fd.as_fd(), Mode::from_raw_mode(mode & 0o7777))
                    .map_err(oserr("setting the mode of", real.clone()))?;
                fd
            }
            Err(Errno::EXIST) => match rfs::openat(self.fd.as_fd(), name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::LOOP) => {
                    return Err(ApplyError::Refused(format!(
                        "refusing the lock {}: it is a symbolic link",
                        real.display()
                    )))
                }
                Err(e) => return Err(oserr("opening lock", real)(e)),
            },
            Err(e) => return Err(oserr("creating lock", real)(e)),
        };
        check_private(fd.as_fd(), &real)?;
        Ok(File::from(fd))
    }

    /// Opens an existing subdirectory without following a link; `None` when missing.
    pub fn subdir(&self, name: &str, private: bool) -> Result<Option<Dir>, ApplyError> {
        let real = self.real(name);
        match rfs::openat(
            self.fd.as_fd(),
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                if private {
                    check_private(fd.as_fd(), &real)?;
                }
                Ok(Some(Dir {
                    fd,
                    rel: self.rel_of(name),
                    real,
                }))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => Err(ApplyError::Refused(format!(
                "refusing {}: it is not a directory (or a symbolic link)",
                real.display()
            ))),
            Err(e) => Err(oserr("opening directory", real)(e)),
        }
    }

    pub fn sync(&self) -> Result<(), ApplyError> {
        rfs::fsync(self.fd.as_fd()).map_err(oserr("syncing directory", self.real.clone()))
    }

    /// The names in this directory (not `.` and `..`), sorted.
    pub fn names(&self) -> Result<Vec<String>, ApplyError> {
        let err = || oserr("listing", self.real.clone());
        let mut out = Vec::new();
        for e in rfs::Dir::read_from(self.fd.as_fd()).map_err(err())? {
            let e = e.map_err(err())?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens an entry for reading without following a link; `None` when absent.
    fn open_file(&self, name: &str) -> Result<Option<(File, rfs::Stat)>, ApplyError> {
        let real = self.real(name);
        let fd = match rfs::openat(
            self.fd.as_fd(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                let target = rfs::readlinkat(self.fd.as_fd(), name, Vec::new())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "?".into());
                return Err(ApplyError::Refused(format!(
                    "{} is a symbolic link (to {target}); passthru does not replace or follow links at the files it edits: edit the file it points to, or replace the link by that file",
                    real.display()
                )));
            }
            Err(e) => return Err(oserr("opening", real)(e)),
        };
        let st = rfs::fstat(fd.as_fd()).map_err(oserr("reading metadata of", real.clone()))?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
            return Err(ApplyError::Refused(format!(
                "{} is not a regular file; passthru only edits regular files",
                real.display()
            )));
        }
        Ok(Some((File::from(fd), st)))
    }

    /// Reads a regular file: bytes, mode, owner, extended attributes.
    pub fn read(&self, name: &str) -> Result<Option<FileState>, ApplyError> {
        let real = self.real(name);
        let Some((mut f, st)) = self.open_file(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|source| ApplyError::Io {
            op: "reading",
            path: real.clone(),
            err: source,
        })?;
        let xattrs = read_xattrs(f.as_fd()).map_err(|source| ApplyError::Io {
            op: "reading the extended attributes of",
            path: real,
            err: source,
        })?;
        Ok(Some(FileState {
            bytes,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            xattrs,
        }))
    }

    /// Reads a file of passthru's own state: refused unless owned by the effective user and
    /// writable by no one else.
    pub fn read_private(&self, name: &str) -> Result<Option<Vec<u8>>, ApplyError> {
        let Some((mut f, _)) = self.open_file(name)? else {
            return Ok(None);
        };
        check_private(f.as_fd(), &self.real(name))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|source| ApplyError::Io {
            op: "reading",
            path: self.real(name),
            err: source,
        })?;
        Ok(Some(bytes))
    }

    /// The last check before a replace or a remove: the file still holds what the plan was
    /// made from.
    fn check_expected(&self, name: &str, expect: Expect<'_>) -> Result<(), ApplyError> {
        let Expect::Bytes(want) = expect else {
            return Ok(());
        };
        test_hook_before_replace(&self.real(name));
        let now = self.read(name)?.map(|s| s.bytes);
        if now.as_deref() != want {
            return Err(ApplyError::DigestChanged {
                path: self.rel_of(name),
                expected: show_digest(want),
                found: show_digest(now.as_deref()),
            });
        }
        Ok(())
    }

    /// A fresh temporary file beside `name`, created with `O_EXCL|O_NOFOLLOW` so that
    /// nothing planted under its name (a link to another file) is ever opened.
    fn create_temporary(&self, name: &str) -> Result<(String, File), ApplyError> {
        let pid = std::process::id();
        for n in 0..1000u32 {
            let tmp = if n == 0 {
                format!(".{name}.passthru-{pid}")
            } else {
                format!(".{name}.passthru-{pid}-{n}")
            };
            match rfs::openat(
                self.fd.as_fd(),
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((tmp, File::from(fd))),
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(ApplyError::Io {
                        op: "creating a temporary file to replace",
                        path: self.real(name),
                        err: e.into(),
                    })
                }
            }
        }
        Err(ApplyError::Refused(format!(
            "cannot create a temporary file beside {}: 1000 names taken",
            self.real(name).display()
        )))
    }

    /// Replaces `name` with `bytes` atomically: a fresh temporary file beside it, fsynced,
    /// owner, extended attributes, then mode (in that order: `chown` clears setuid, setgid
    /// and file capabilities), the last check of `expect`, rename, fsync of the directory.
    pub fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        meta: &NewMeta,
        expect: Expect<'_>,
    ) -> Result<(), ApplyError> {
        let real = self.real(name);
        let (tmp, mut f) = self.create_temporary(name)?;
        let fill = |f: &mut File| -> Result<(), (&'static str, io::Error)> {
            f.write_all(bytes)
                .map_err(|e| ("writing the new contents of", e))?;
            if let Some((uid, gid)) = meta.owner {
                // Only root may give a file away; an unprivileged run under a fixture root
                // owns everything it writes anyway.
                match rfs::fchown(
                    f.as_fd(),
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                ) {
                    Ok(()) | Err(Errno::PERM) => {}
                    Err(e) => return Err(("setting the owner of the new", e.into())),
                }
            }
            for (k, v) in &meta.xattrs {
                rfs::fsetxattr(f.as_fd(), k.as_str(), v, XattrFlags::empty()).map_err(|e| {
                    (
                        "carrying an extended attribute to the new",
                        io::Error::new(io::Error::from(e).kind(), format!("{k}: {e}")),
                    )
                })?;
            }
            rfs::fchmod(f.as_fd(), Mode::from_raw_mode(meta.mode & 0o7777))
                .map_err(|e| ("setting the mode of the new", e.into()))?;
            f.sync_all()
                .map_err(|e| ("syncing the new contents of", e))?;
            Ok(())
        };
        let filled = fill(&mut f);
        drop(f);
        if let Err((op, source)) = filled {
            let _ = rfs::unlinkat(self.fd.as_fd(), tmp.as_str(), AtFlags::empty());
            return Err(ApplyError::Io {
                op,
                path: real,
                err: source,
            });
        }
        crash_point("temporary written");
        if let Err(e) = self.check_expected(name, expect) {
            let _ = rfs::unlinkat(self.fd.as_fd(), tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        if let Err(e) = rfs::renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name) {
            let _ = rfs::unlinkat(self.fd.as_fd(), tmp.as_str(), AtFlags::empty());
            return Err(oserr("renaming into place", real)(e));
        }
        self.sync()
    }

    /// Removes `name` (absent is fine) after the last check of `expect`, and syncs the
    /// directory.
    pub fn remove(&self, name: &str, expect: Expect<'_>) -> Result<(), ApplyError> {
        self.check_expected(name, expect)?;
        match rfs::unlinkat(self.fd.as_fd(), name, AtFlags::empty()) {
            Ok(()) => self.sync(),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(oserr("removing", self.real(name))(e)),
        }
    }

    /// Removes an empty subdirectory; a missing or non-empty one is left (someone else's now).
    pub fn remove_dir_if_empty(&self, name: &str) -> Result<(), ApplyError> {
        match rfs::unlinkat(self.fd.as_fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) => self.sync(),
            Err(Errno::NOENT) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(oserr("removing directory", self.real(name))(e)),
        }
    }

    /// Removes the temporary files an interrupted write left here: of `name` only, or every
    /// one (`None`). They are never read; removing them is housekeeping, so failures are
    /// ignored.
    pub fn remove_temporaries(&self, name: Option<&str>) {
        let Ok(names) = self.names() else {
            return;
        };
        for n in names {
            let ours = match name {
                Some(name) => n.starts_with(&format!(".{name}.passthru-")),
                None => n.starts_with('.') && n.contains(".passthru-"),
            };
            if ours {
                let _ = rfs::unlinkat(self.fd.as_fd(), n.as_str(), AtFlags::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_root_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../../outside/pwned",
            "etc/../../x",
            "etc/./x",
            "etc//x",
            "etc/x/",
            "etc/\0x",
            "..",
        ] {
            assert!(check_rel(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            check_rel("etc/cron.d/x").unwrap(),
            vec!["etc", "cron.d", "x"]
        );
        assert_eq!(check_rel("etc/..x").unwrap(), vec!["etc", "..x"]);
    }
}
