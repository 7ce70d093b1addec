//! The host root every reader goes through, and the primitives that read sysfs-style files.
//!
//! No reader names an absolute path: everything is relative to a `HostRoot` (`/` live, a
//! fixture tree in tests, an unpacked `scan --archive` for a bug report).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::Issue;

/// Largest file a reader takes in. sysfs attributes are at most a page; config files are
/// small. Anything bigger is not what we expect and is reported instead of read.
pub const MAX_READ: usize = 4 << 20;

/// The directory that stands for `/`.
#[derive(Debug, Clone)]
pub struct HostRoot {
    path: PathBuf,
    /// When on, every path a reader touches, and how: what `scan --archive` copies.
    recording: Option<Arc<Mutex<Recorded>>>,
}

/// The paths touched through a recording root, and how.
type Recorded = BTreeSet<(String, Access)>;

/// How a reader touched a root-relative path; each needs a different part of it in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Opened and read (through links).
    Read,
    /// Listed: the names in it, through links.
    List,
    /// Its link target read, the link itself not followed.
    Link,
    /// Asked whether it exists, or what it is, without following a final link.
    Stat,
    /// Asked whether it exists, or what it is, through links (a dangling link does not).
    StatThrough,
}

/// A root that cannot be used at all. Everything below the root is data, never an error.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot use host root {path}")]
    Unusable { path: PathBuf, source: io::Error },
    #[error("host root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("host root {0} holds no host: it has neither sys/bus/pci nor proc (an empty directory, or the directory above the host's tree?)")]
    NoHost(PathBuf),
}

/// What a directory must hold to be read as a host. Every Linux host has both; trimmed
/// trees keep one (ghw's sysfs snapshots have no proc, the distro fixtures no PCI devices),
/// so either will do. Without both, every reader would find nothing and report it as facts:
/// "IOMMU off, enable VT-d", on a directory that is simply not a host.
const HOST_MARKERS: [&str; 2] = ["sys/bus/pci", "proc"];

/// What reading one file gave.
#[derive(Debug)]
pub enum FileRead {
    Text(String),
    Missing,
    /// Present but unreadable, not text, or too big: the reason.
    Failed(String),
}

impl HostRoot {
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, RootError> {
        let path = path.into();
        let meta = fs::metadata(&path).map_err(|source| RootError::Unusable {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(RootError::NotADirectory(path));
        }
        if !HOST_MARKERS.iter().any(|m| path.join(m).is_dir()) {
            return Err(RootError::NoHost(path));
        }
        Ok(HostRoot {
            path,
            recording: None,
        })
    }

    /// The same root, noting from now on every path read through it (and through its clones).
    pub fn recording(&self) -> HostRoot {
        HostRoot {
            path: self.path.clone(),
            recording: Some(Default::default()),
        }
    }

    /// What was touched since [`HostRoot::recording`], sorted; empty when not recording.
    pub fn recorded(&self) -> Vec<(String, Access)> {
        match &self.recording {
            Some(r) => r
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Notes a root-relative path a reader touched. Readers outside this file that go to the
    /// files directly (the plans' `RootFiles`) call it themselves.
    pub fn note(&self, rel: &str, how: Access) {
        if let Some(r) = &self.recording {
            let rel = rel.trim_matches('/').to_string();
            r.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert((rel, how));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The real path of a root-relative path (`sys/bus/pci`).
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.note(rel, Access::Stat);
        fs::symlink_metadata(self.join(rel)).is_ok()
    }

    /// Whether a path exists after following links (a dangling link does not).
    pub fn exists_through(&self, rel: &str) -> bool {
        self.metadata(rel).is_ok()
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        self.metadata(rel).is_ok_and(|m| m.is_dir())
    }

    /// What a path is, through links.
    pub fn metadata(&self, rel: &str) -> io::Result<fs::Metadata> {
        self.note(rel, Access::StatThrough);
        fs::metadata(self.join(rel))
    }

    /// Reads a whole file as text. sysfs attributes arrive whole in one read; procfs and
    /// ordinary files are read until end of file.
    pub fn read(&self, rel: &str) -> FileRead {
        self.note(rel, Access::Read);
        read_file(&self.join(rel), rel.starts_with("sys/"))
    }

    /// The names in a directory, unsorted, hidden ones included, or why it cannot be listed:
    /// for readers that tell the failures apart themselves.
    pub fn read_dir_names(&self, rel: &str) -> io::Result<Vec<String>> {
        self.note(rel, Access::List);
        Ok(fs::read_dir(self.join(rel))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Reads a file, recording a failure (not an absence) as an issue.
    pub fn read_noting(&self, rel: &str, issues: &mut Vec<Issue>) -> Option<String> {
        match self.read(rel) {
            FileRead::Text(t) => Some(t),
            FileRead::Missing => None,
            FileRead::Failed(why) => {
                issues.push(Issue::new(rel, why));
                None
            }
        }
    }

    /// Names of the entries of a directory, sorted; empty when it does not exist. A directory
    /// that exists but cannot be listed is an issue.
    pub fn list_dir(&self, rel: &str, issues: &mut Vec<Issue>) -> Vec<String> {
        self.note(rel, Access::List);
        let mut names = Vec::new();
        match fs::read_dir(self.join(rel)) {
            Ok(entries) => {
                for e in entries {
                    match e {
                        // The kernel never makes hidden entries; fixture trees kept in git
                        // hold `.gitkeep` files in otherwise empty directories.
                        Ok(e) if e.file_name().as_encoded_bytes().starts_with(b".") => {}
                        Ok(e) => names.push(e.file_name().to_string_lossy().into_owned()),
                        Err(err) => issues.push(Issue::new(rel, format!("listing failed: {err}"))),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(20) => {
                issues.push(Issue::new(rel, "expected a directory, found a file"))
            }
            Err(e) => issues.push(Issue::new(rel, format!("cannot list: {e}"))),
        }
        names.sort();
        names
    }

    /// The target of a symlink, as written (not resolved). `None` when it is not a link.
    pub fn read_link(&self, rel: &str) -> Option<PathBuf> {
        self.note(rel, Access::Link);
        fs::read_link(self.join(rel)).ok()
    }

    /// The final component of a symlink's target (`driver -> ../../bus/pci/drivers/nvidia`
    /// gives `nvidia`), and whether the target exists.
    pub fn link_name(&self, rel: &str) -> Option<(String, bool)> {
        let target = self.read_link(rel)?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        let exists = self.exists_through(rel);
        Some((name, exists))
    }

    /// Resolves a symlink lexically inside the root: the target's path relative to the root,
    /// without following further links and without leaving the root. Absolute targets are
    /// taken as root-relative (an archive of another host keeps them).
    pub fn resolve_link(&self, rel: &str) -> Option<String> {
        let target = self.read_link(rel)?;
        let base = Path::new(rel).parent().unwrap_or(Path::new(""));
        let joined = if target.is_absolute() {
            target
        } else {
            base.join(target)
        };
        let mut parts: Vec<String> = Vec::new();
        for c in joined.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        Some(parts.join("/"))
    }
}

/// Reads a file to its end. With `short_read_is_end`, a read that does not fill the buffer is
/// taken as the end: sysfs hands over a whole attribute in its first read, and skipping the
/// confirming empty read saves a system call per attribute (a quarter of a scan's calls).
/// procfs seq files may return less than asked before the end, so they read until 0.
pub fn read_file(path: &Path, short_read_is_end: bool) -> FileRead {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) if e.raw_os_error() == Some(20) => return FileRead::Missing, // ENOTDIR
        Err(e) => return FileRead::Failed(format!("cannot open: {e}")),
    };
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    if short_read_is_end {
                        break;
                    }
                    continue;
                }
                if buf.len() >= MAX_READ {
                    return FileRead::Failed(format!("larger than {MAX_READ} bytes; not read"));
                }
                buf.resize(buf.len() * 2, 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(21) => {
                return FileRead::Failed("is a directory".into())
            }
            Err(e) => return FileRead::Failed(format!("read failed: {e}")),
        }
    }
    buf.truncate(len);
    match String::from_utf8(buf) {
        Ok(s) => FileRead::Text(s),
        Err(e) => FileRead::Failed(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )),
    }
}
