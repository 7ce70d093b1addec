//! `passthru scan --archive FILE.tar.gz`: copies the files passthru reads into a tarball, so
//! any host can become a test fixture or be attached to a bug report (`--root` on the
//! unpacked tree reads the same snapshot).
//!
//! What goes in is what the readers actually touched: the archive reads the host once through
//! a recording [`HostRoot`] (a full scan, a `check` read, and the files the plans edit) and
//! copies exactly the paths it noted, each as the reader used it: a read file with its bytes,
//! a listed directory with its entries (files among them as empty placeholders), a read link
//! as a link, a path only tested for existence as an empty placeholder. Every symlink met on
//! the way to a path is stored as a link and followed lexically, so `proc/mounts ->
//! self/mounts` or `sys/class/net/eth0 -> ../../devices/...` resolve the same way unpacked.
//! A list kept by hand would fall behind the readers (it once lost `proc/mounts`,
//! `proc/net/route` and `sys/class/{block,net,graphics}`: the boot-disk, network and
//! framebuffer facts).
//!
//! Safety rules, because this walks a live sysfs:
//! - `resource*` BARs and `rom` are never read (an I/O BAR read touches device registers),
//!   nor more than the first 64 bytes of `config` (all a non-root reader gets anyway);
//! - nothing is read that the readers did not read (a driver's attributes, for one, can wake
//!   a sleeping GPU): a listed file becomes an empty placeholder;
//! - privacy: `etc/pve` (cluster secrets) gives its layout only, the dpkg database only the
//!   Proxmox packages' paragraphs, and of other processes' open files only the GPU nodes
//!   passthru looks for;
//! - write-only files, failed reads and placeholders are empty files with their original
//!   mode, each listed with its reason in an `UNREADABLE` file at the top of the archive.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::root::{Access, HostRoot};
use crate::model::ReadDetail;
use crate::plan::source::FileSource;

/// Files the plans read and edit (setup, attach) that no snapshot reader opens whole: read
/// here through the same recording root, so that `setup --dry-run` on the unpacked tree plans
/// what it would plan on the host.
const PLAN_FILES: &[&str] = &[
    "etc/default/grub",
    "etc/kernel/cmdline",
    "etc/kernelstub/configuration",
    "etc/modules",
    "etc/initramfs-tools/modules",
    "etc/initramfs-tools/initramfs.conf",
    "etc/dracut.conf",
    "etc/mkinitcpio.conf",
    "etc/booster.yaml",
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "boot/loader/loader.conf",
    "boot/efi/loader/loader.conf",
    "efi/loader/loader.conf",
];

/// Directories whose files the plans read and edit.
const PLAN_DIRS: &[&str] = &[
    "etc/default/grub.d",
    "etc/modprobe.d",
    "etc/modules-load.d",
    "etc/dracut.conf.d",
    "etc/mkinitcpio.conf.d",
    "boot/loader/entries",
    "boot/efi/loader/entries",
    "efi/loader/entries",
];

/// Directories whose names only the plans read (the device nodes `lxc share` and `docker`
/// hand over).
const PLAN_LISTINGS: &[&str] = &["dev", "dev/nvidia-caps"];

/// Largest file copied whole; anything bigger is a placeholder (a truncated copy would read
/// back as a different file).
const MAX_COPY: u64 = 1 << 20;

/// Most symlinks followed on the way to one path (the kernel's own limit).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing archive {path}")]
    Write { path: PathBuf, source: io::Error },
}

/// What went into an archive.
#[derive(Debug, Default)]
pub struct ArchiveSummary {
    pub files: usize,
    pub links: usize,
    pub dirs: usize,
    /// Placeholders: (path, reason).
    pub unreadable: Vec<(String, String)>,
}

/// Writes the archive of `root` to `out_path` (gzip-compressed tar). The file is written to a
/// temporary name beside it and renamed when complete, so a failure leaves no half archive.
pub fn write_archive(root: &HostRoot, out_path: &Path) -> Result<ArchiveSummary, ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: out_path.to_path_buf(),
        source,
    };
    let entries = collect_entries(root);
    let tmp = out_path.with_extension("partial");
    let file = File::create(&tmp).map_err(err)?;
    let result = (|| -> io::Result<ArchiveSummary> {
        let mut w = TarWriter {
            tar: tar::Builder::new(GzEncoder::new(file, Compression::default())),
            summary: ArchiveSummary::default(),
            dirs_done: Default::default(),
        };
        for (rel, entry) in &entries {
            w.add(rel, entry)?;
        }
        let mut report = String::from("# Files present on the host but not read, and why.\n");
        for (p, why) in &w.summary.unreadable {
            report.push_str(&format!("{p}\t{why}\n"));
        }
        w.add_bytes("UNREADABLE", report.as_bytes(), 0o644)?;
        let manifest = format!(
            "passthru {} scan archive\nroot: {}\n",
            env!("CARGO_PKG_VERSION"),
            root.path().display()
        );
        w.add_bytes("PASSTHRU-ARCHIVE", manifest.as_bytes(), 0o644)?;
        let summary = std::mem::take(&mut w.summary);
        let gz = w.tar.into_inner()?;
        let file = gz.finish()?;
        file.sync_all()?;
        Ok(summary)
    })();
    match result {
        Ok(s) => {
            fs::rename(&tmp, out_path).map_err(err)?;
            Ok(s)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(err(e))
        }
    }
}

/// One path of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    Link(PathBuf),
    File {
        bytes: Vec<u8>,
        mode: u32,
    },
    /// An empty file standing for one that was not copied, and why.
    Placeholder {
        mode: u32,
        why: String,
    },
}

/// Reads the host as passthru does, through a recording root, and turns what was touched into
/// the archive's entries, by root-relative path.
fn collect_entries(root: &HostRoot) -> BTreeMap<String, Entry> {
    let rec = root.recording();
    // What `scan`, `list` and `check` read (a check reads some files a full scan does not
    // look at the same way), then what the plans edit.
    for detail in [ReadDetail::Full, ReadDetail::Check] {
        let _ = super::read_snapshot(&rec, None, detail);
    }
    let files = super::RootFiles::new(&rec);
    for f in PLAN_FILES {
        let _ = files.read(f);
    }
    for d in PLAN_DIRS {
        for name in files.list(d) {
            let _ = files.read(&format!("{d}/{name}"));
        }
    }
    for d in PLAN_LISTINGS {
        let _ = files.list(d);
    }
    let mut c = Collector {
        root,
        entries: BTreeMap::new(),
    };
    for (rel, how) in rec.recorded() {
        c.take(&rel, how);
    }
    c.entries
}

struct Collector<'a> {
    root: &'a HostRoot,
    entries: BTreeMap<String, Entry>,
}

impl Collector<'_> {
    /// Adds what a reader's access to `rel` needs.
    fn take(&mut self, rel: &str, how: Access) {
        let follow_last = matches!(how, Access::Read | Access::List | Access::StatThrough);
        let Some(phys) = self.walk(rel, follow_last) else {
            return;
        };
        let path = self.root.join(&phys);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            // Only when the final link was not to be followed (or it dangles).
            self.link(&phys);
            return;
        }
        if meta.is_dir() {
            self.put(&phys, Entry::Dir);
            if how == Access::List {
                self.take_listing(&phys);
            }
            return;
        }
        match how {
            Access::Read => {
                let entry = copy_file(&phys, &path, &meta);
                self.put(&phys, entry);
            }
            _ => self.presence(&phys, &meta, "presence only"),
        }
    }

    /// A listed directory's entries: links as links, directories empty, files as placeholders
    /// (the reader knew their names only).
    fn take_listing(&mut self, dir: &str) {
        let Ok(rd) = fs::read_dir(self.root.join(dir)) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child = format!("{dir}/{name}");
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                self.link(&child);
            } else if meta.is_dir() {
                self.put(&child, Entry::Dir);
            } else {
                self.presence(&child, &meta, "listed, not read");
            }
        }
    }

    fn presence(&mut self, rel: &str, meta: &fs::Metadata, why: &str) {
        let why = if is_bar_or_rom(rel) {
            "BAR or ROM: never read"
        } else if is_secret(rel) {
            "etc/pve: cluster configuration, never copied"
        } else {
            why
        };
        self.put(
            rel,
            Entry::Placeholder {
                mode: meta.permissions().mode() & 0o7777,
                why: why.to_string(),
            },
        );
    }

    fn link(&mut self, rel: &str) {
        if let Ok(target) = fs::read_link(self.root.join(rel)) {
            if keeps_link(rel, &target) {
                self.put(rel, Entry::Link(target));
            }
        }
    }

    /// Records an entry; copied bytes win over a placeholder for the same path.
    fn put(&mut self, rel: &str, entry: Entry) {
        if rel.is_empty() {
            return;
        }
        let keep_old = matches!(
            (self.entries.get(rel), &entry),
            (Some(Entry::File { .. }), Entry::Placeholder { .. })
        );
        if !keep_old {
            self.entries.insert(rel.to_string(), entry);
        }
    }

    /// Follows `rel` from the root one component at a time, as the kernel's path walk does,
    /// adding each symlink met on the way (the final one only with `follow_last`). Returns the
    /// path without links that it names, or `None` where a component is missing, a file is met
    /// mid-path, or the links loop. Absolute targets are taken as root-relative, as
    /// [`HostRoot::resolve_link`] takes them.
    fn walk(&mut self, rel: &str, follow_last: bool) -> Option<String> {
        let mut pending: VecDeque<String> = components(Path::new(rel)).into();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            let cur = done.join("/");
            let meta = fs::symlink_metadata(self.root.join(&cur)).ok()?;
            let last = pending.is_empty();
            if meta.file_type().is_symlink() && (follow_last || !last) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return None;
                }
                let target = fs::read_link(self.root.join(&cur)).ok()?;
                if !keeps_link(&cur, &target) {
                    return None;
                }
                self.put(&cur, Entry::Link(target.clone()));
                done.pop();
                if target.is_absolute() {
                    done.clear();
                }
                for t in components(&target).into_iter().rev() {
                    pending.push_front(t);
                }
            } else if !last && !meta.is_dir() {
                return None;
            }
        }
        Some(done.join("/"))
    }
}

/// A path's parts, `..` kept (it is resolved against what precedes it), `.` and `/` dropped.
fn components(p: &Path) -> Vec<String> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

/// Copies a file a reader read, under the safety and privacy rules.
fn copy_file(rel: &str, path: &Path, meta: &fs::Metadata) -> Entry {
    let mode = meta.permissions().mode() & 0o7777;
    let placeholder = |why: &str| Entry::Placeholder {
        mode,
        why: why.to_string(),
    };
    if !meta.is_file() {
        return placeholder("not a regular file");
    }
    if is_bar_or_rom(rel) {
        return placeholder("BAR or ROM: never read");
    }
    if is_secret(rel) {
        return placeholder("etc/pve: cluster configuration, never copied");
    }
    if mode & 0o444 == 0 {
        return placeholder("write-only");
    }
    // sysfs reports a size of 4096 for every attribute; only ordinary files are measured.
    if !rel.starts_with("sys/") && !rel.starts_with("proc/") && meta.len() > MAX_COPY {
        return placeholder(&format!("larger than {MAX_COPY} bytes: not copied"));
    }
    let limit = if rel.starts_with("sys/") && rel.ends_with("/config") {
        64
    } else {
        MAX_COPY
    };
    match read_prefix(path, limit) {
        Ok(bytes) if rel == "var/lib/dpkg/status" => Entry::File {
            bytes: proxmox_paragraphs(&bytes),
            mode,
        },
        Ok(bytes) => Entry::File { bytes, mode },
        Err(e) => placeholder(&format!("read failed: {e}")),
    }
}

/// `resource0`, `resource2_wc`, `rom` in sysfs: reading them touches the device.
fn is_bar_or_rom(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.starts_with("sys/")
        && (name == "rom" || (name.starts_with("resource") && name != "resource"))
}

/// Proxmox's cluster file system holds secrets (keys, tokens); only its layout is kept.
fn is_secret(rel: &str) -> bool {
    rel.starts_with("etc/pve/")
}

/// Of another process's open files only the GPU nodes passthru looks for are kept: the rest
/// would tell what the user has open.
fn keeps_link(rel: &str, target: &Path) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let is_fd = parts.len() == 4
        && parts[0] == "proc"
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && parts[2] == "fd";
    if !is_fd {
        return true;
    }
    let t = target.to_string_lossy();
    t.starts_with("/dev/dri/") || t.starts_with("/dev/nvidia")
}

/// Only the Proxmox packages' paragraphs of the dpkg database: the rest is private and large.
fn proxmox_paragraphs(status: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(status);
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(|p| {
            p.lines()
                .any(|l| matches!(l.trim(), "Package: pve-manager" | "Package: proxmox-ve"))
        })
        .collect();
    if kept.is_empty() {
        Vec::new()
    } else {
        format!("{}\n", kept.join("\n\n")).into_bytes()
    }
}

struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    summary: ArchiveSummary,
    dirs_done: std::collections::BTreeSet<String>,
}

impl<W: Write> TarWriter<W> {
    fn add(&mut self, rel: &str, entry: &Entry) -> io::Result<()> {
        match entry {
            Entry::Dir => self.add_dir(rel),
            Entry::Link(target) => self.add_link(rel, target),
            Entry::File { bytes, mode } => self.add_bytes(rel, bytes, *mode),
            Entry::Placeholder { mode, why } => {
                self.summary.unreadable.push((rel.to_string(), why.clone()));
                self.add_bytes(rel, &[], *mode)
            }
        }
    }

    fn ensure_parents(&mut self, rel: &str) -> io::Result<()> {
        if let Some(parent) = Path::new(rel).parent() {
            let p = parent.to_string_lossy().into_owned();
            if !p.is_empty() && !self.dirs_done.contains(&p) {
                self.add_dir(&p)?;
            }
        }
        Ok(())
    }

    fn add_dir(&mut self, rel: &str) -> io::Result<()> {
        if self.dirs_done.contains(rel) {
            return Ok(());
        }
        self.ensure_parents(rel)?;
        self.dirs_done.insert(rel.to_string());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        self.tar
            .append_data(&mut h, format!("{rel}/"), io::empty())?;
        self.summary.dirs += 1;
        Ok(())
    }

    fn add_link(&mut self, rel: &str, target: &Path) -> io::Result<()> {
        self.ensure_parents(rel)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        self.tar.append_link(&mut h, rel, target)?;
        self.summary.links += 1;
        Ok(())
    }

    fn add_bytes(&mut self, rel: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.ensure_parents(rel)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        self.tar.append_data(&mut h, rel, bytes)?;
        self.summary.files += 1;
        Ok(())
    }
}

/// Reads at most `limit` bytes.
fn read_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn host() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "sys/bus/pci/devices",
            "proc/77/fd",
            "etc/pve/priv",
            "var/lib/dpkg",
            "dev/dri",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("dev/dri/card0"), "").unwrap();
        symlink("/dev/dri/card0", r.join("proc/77/fd/3")).unwrap();
        symlink("/home/user/diary.txt", r.join("proc/77/fd/4")).unwrap();
        fs::write(r.join("proc/77/comm"), "Xorg\n").unwrap();
        fs::write(r.join("etc/pve/priv/authkey.key"), "SECRET").unwrap();
        fs::write(
            r.join("var/lib/dpkg/status"),
            "Package: openssh-server\nVersion: 1\n\nPackage: pve-manager\nVersion: 8.1.4\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn what_a_reader_touches_is_archived_as_it_touched_it() {
        let t = host();
        let root = HostRoot::new(t.path()).unwrap();
        let rec = root.recording();
        let _ = rec.read("etc/pve/priv/authkey.key");
        let _ = rec.read("var/lib/dpkg/status");
        let mut ignored = Vec::new();
        for fd in rec.list_dir("proc/77/fd", &mut ignored) {
            let _ = rec.read_link(&format!("proc/77/fd/{fd}"));
        }
        let _ = rec.read("proc/77/comm");
        let mut c = Collector {
            root: &root,
            entries: BTreeMap::new(),
        };
        for (rel, how) in rec.recorded() {
            c.take(&rel, how);
        }
        let e = &c.entries;
        assert_eq!(
            e.get("proc/77/fd/3"),
            Some(&Entry::Link("/dev/dri/card0".into())),
            "a GPU node held open is what passthru reports"
        );
        assert_eq!(e.get("proc/77/fd/4"), None, "another open file is private");
        assert!(
            matches!(e.get("proc/77/comm"), Some(Entry::File { bytes, .. }) if bytes == b"Xorg\n")
        );
        assert!(
            matches!(
                e.get("etc/pve/priv/authkey.key"),
                Some(Entry::Placeholder { .. })
            ),
            "cluster secrets are never copied: {:?}",
            e.get("etc/pve/priv/authkey.key")
        );
        match e.get("var/lib/dpkg/status") {
            Some(Entry::File { bytes, .. }) => {
                assert_eq!(
                    String::from_utf8_lossy(bytes),
                    "Package: pve-manager\nVersion: 8.1.4\n\n"
                )
            }
            other => panic!("{other:?}"),
        }
        // Nothing the reader did not touch.
        assert!(!e.contains_key("dev/dri/card0"));
    }

    #[test]
    fn links_on_the_way_are_kept_and_followed_and_loops_end() {
        let t = host();
        let r = t.path();
        fs::create_dir_all(r.join("proc/4242/net")).unwrap();
        fs::write(r.join("proc/4242/net/route"), "Iface\n").unwrap();
        symlink("4242", r.join("proc/self")).unwrap();
        symlink("self/net", r.join("proc/net")).unwrap();
        symlink("loop-b", r.join("proc/loop-a")).unwrap();
        symlink("loop-a", r.join("proc/loop-b")).unwrap();
        let root = HostRoot::new(r).unwrap();
        let mut c = Collector {
            root: &root,
            entries: BTreeMap::new(),
        };
        c.take("proc/net/route", Access::Read);
        c.take("proc/loop-a/x", Access::Read);
        let e = &c.entries;
        assert_eq!(e.get("proc/net"), Some(&Entry::Link("self/net".into())));
        assert_eq!(e.get("proc/self"), Some(&Entry::Link("4242".into())));
        assert!(matches!(
            e.get("proc/4242/net/route"),
            Some(Entry::File { .. })
        ));
        assert!(
            !e.contains_key("proc/net/route"),
            "stored once, where it is"
        );
    }
}
