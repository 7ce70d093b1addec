//! Helpers shared by the integration tests: fixture locations, unpacking, running the
//! binary, and parsing lspci's output (the oracle).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The third-party corpus beside the repository (`../shared/corpus`), present on every
/// developer machine and in CI. A missing corpus is a broken setup, not a reason to pass.
pub fn corpus() -> PathBuf {
    let p = repo().join("../shared/corpus");
    assert!(
        p.is_dir(),
        "the shared corpus is missing at {} (see README)",
        p.display()
    );
    p
}

/// The pci.ids every test names devices with: Debian 12's, from the corpus, so expected
/// names do not depend on the machine.
pub fn pci_ids() -> PathBuf {
    corpus().join("pci.ids")
}

pub fn qemu_fixtures() -> Vec<(String, PathBuf)> {
    let dir = repo().join("tests/fixtures/qemu");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("root.tar.gz").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    assert!(
        out.len() >= 8,
        "expected the QEMU captures in {}",
        dir.display()
    );
    out
}

/// Unpacks a .tar.gz into a fresh temporary directory, keeping symlinks as symlinks.
pub fn unpack(archive: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file =
        std::fs::File::open(archive).unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    ar.set_preserve_permissions(true);
    ar.unpack(dir.path())
        .unwrap_or_else(|e| panic!("unpacking {}: {e}", archive.display()));
    dir
}

/// Unpacks a fixture archive once per build into the target directory and returns the tree.
/// Test binaries run in parallel, so each unpacks into a private directory and renames it
/// into place; the loser of a race just uses the winner's tree.
pub fn unpacked(archive: &Path) -> PathBuf {
    let meta = std::fs::metadata(archive).unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = format!(
        "{}-{}-{mtime}",
        archive
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        meta.len()
    );
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    let dest = cache.join(&key);
    if !dest.is_dir() {
        std::fs::create_dir_all(&cache).unwrap();
        let tmp = unpack(archive).keep();
        let staged = cache.join(format!("{key}.{}", std::process::id()));
        std::fs::rename(&tmp, &staged)
            .or_else(|_| copy_dir(&tmp, &staged))
            .unwrap();
        if std::fs::rename(&staged, &dest).is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
    }
    dest
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    assert!(status.success());
    std::fs::remove_dir_all(from)
}

pub fn passthru(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .env_remove("PASSTHRU_ROOT")
        .env("NO_COLOR", "1")
        .output()
        .expect("running passthru")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// Reads a snapshot of a root through the library, naming devices from the corpus pci.ids.
pub fn snapshot(root: &Path) -> passthru::model::Snapshot {
    let root = passthru::host::HostRoot::new(root).unwrap();
    let ids = passthru::pciids::PciIds::load(&pci_ids()).unwrap();
    passthru::host::read_snapshot(&root, Some(&ids), passthru::model::ReadDetail::Full)
}

/// The snapshot's groups as `(id, [BDF...])` in the snapshot's order.
pub fn group_listing(snap: &passthru::model::Snapshot) -> Vec<(String, Vec<String>)> {
    snap.groups
        .iter()
        .map(|g| {
            (
                g.id.clone(),
                g.devices.iter().map(|d| d.to_string()).collect(),
            )
        })
        .collect()
}

/// One device as `lspci -nnk -D` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LspciDevice {
    pub address: String,
    pub class_name: String,
    /// 4 hex digits (`0300`).
    pub class4: String,
    pub name: String,
    pub vendor: String,
    pub device: String,
    pub rev: Option<String>,
    pub subsystem: Option<String>,
    pub subsystem_ids: Option<String>,
    pub driver: Option<String>,
}

/// Parses `lspci -nnk -D` output. Device lines look like
/// `0000:00:02.0 VGA compatible controller [0300]: NAME [8086:46a6] (rev 0c)`; the name may
/// itself hold brackets, so the id bracket is taken from the right.
pub fn parse_lspci_nnk(text: &str) -> Vec<LspciDevice> {
    let mut out: Vec<LspciDevice> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            let cur = out.last_mut().expect("detail line before any device");
            if let Some(d) = rest.strip_prefix("Kernel driver in use: ") {
                cur.driver = Some(d.to_string());
            } else if let Some(s) = rest.strip_prefix("Subsystem: ") {
                let (name, ids) = split_ids(s);
                cur.subsystem = Some(name);
                cur.subsystem_ids = Some(ids);
            }
            continue;
        }
        if line.is_empty() || line.starts_with("lspci:") || line.starts_with("pcilib:") {
            continue;
        }
        let (address, rest) = line.split_once(' ').unwrap();
        let (class_part, rest) = rest.split_once("]: ").unwrap();
        let (class_name, class4) = class_part.rsplit_once(" [").unwrap();
        let mut rest = rest.to_string();
        let mut rev = None;
        if let Some(i) = rest.rfind(" (rev ") {
            rev = Some(rest[i + 6..i + 8].to_string());
            rest.truncate(i);
        }
        let (name, ids) = split_ids(&rest);
        let (vendor, device) = ids.split_once(':').unwrap();
        out.push(LspciDevice {
            address: address.to_string(),
            class_name: class_name.to_string(),
            class4: class4.to_string(),
            name,
            vendor: vendor.to_string(),
            device: device.to_string(),
            rev,
            subsystem: None,
            subsystem_ids: None,
            driver: None,
        });
    }
    out
}

fn split_ids(s: &str) -> (String, String) {
    let i = s
        .rfind(" [")
        .unwrap_or_else(|| panic!("no id bracket in '{s}'"));
    (s[..i].to_string(), s[i + 2..s.len() - 1].to_string())
}

/// Whether lspci can be run. Tests that need it fail when it is missing (CI installs
/// pciutils), unless PASSTHRU_SKIP_LSPCI=1 says the developer knows.
pub fn require_lspci() -> bool {
    if Command::new("lspci").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var_os("PASSTHRU_SKIP_LSPCI").is_some() {
        eprintln!("lspci not installed: oracle comparison skipped (PASSTHRU_SKIP_LSPCI)");
        return false;
    }
    panic!("lspci (Debian package pciutils) is needed for the oracle tests; install it or set PASSTHRU_SKIP_LSPCI=1");
}

/// Runs this machine's lspci over a fixture tree, with the corpus pci.ids and without udev's
/// hwdb (which otherwise fills unknown subsystems with device names).
pub fn lspci_over(root: &Path) -> String {
    let out = Command::new("lspci")
        .args(["-nnk", "-D", "-A", "linux-sysfs", "-O"])
        .arg(format!("sysfs.path={}", root.join("sys/bus/pci").display()))
        .args(["-O", "hwdb.disable=1", "-i"])
        .arg(pci_ids())
        .output()
        .expect("running lspci");
    assert!(
        out.status.success(),
        "lspci failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Unpacks a "ttar" text archive (prometheus/procfs's fixture format) into a fresh temporary
/// directory. Records are `Directory: P`, `Path: P` + `Lines: N` + N lines, or `Path: P` +
/// `SymlinkTo: T`, each followed by `Mode: octal`. In content, `NULLBYTE` stands for a NUL and a
/// final `EOF` marks a last line without a newline.
pub fn unpack_ttar(archive: &Path) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(archive).unwrap();
    let mut lines = text.lines();
    let mut last_path: Option<PathBuf> = None;
    while let Some(line) = lines.next() {
        if let Some(p) = line.strip_prefix("Directory: ") {
            let p = dir.path().join(p);
            std::fs::create_dir_all(&p).unwrap();
            last_path = Some(p);
        } else if let Some(p) = line.strip_prefix("Path: ") {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let next = lines.next().unwrap();
            if let Some(target) = next.strip_prefix("SymlinkTo: ") {
                std::os::unix::fs::symlink(target, &path).unwrap();
                last_path = None;
                continue;
            }
            let n: usize = next.strip_prefix("Lines: ").unwrap().parse().unwrap();
            let mut content = String::new();
            for _ in 0..n {
                content.push_str(lines.next().unwrap());
                content.push('\n');
            }
            if content.ends_with("EOF\n") {
                content.truncate(content.len() - 4);
            }
            std::fs::write(&path, content.replace("NULLBYTE", "\0")).unwrap();
            last_path = Some(path);
        } else if let Some(m) = line.strip_prefix("Mode: ") {
            if let Some(p) = last_path.take() {
                let mode = u32::from_str_radix(m, 8).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o200))
                    .unwrap();
            }
        }
    }
    dir
}

/// A check-level snapshot of a synthetic host built for the test.
pub fn check_snapshot_of(name: &str) -> passthru::model::Snapshot {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    check_snapshot(dir.path())
}

pub fn check_snapshot(root: &Path) -> passthru::model::Snapshot {
    let root = passthru::host::HostRoot::new(root).unwrap();
    let ids = passthru::pciids::PciIds::load(&pci_ids()).unwrap();
    passthru::host::read_snapshot(&root, Some(&ids), passthru::model::ReadDetail::Check)
}

/// A synthetic PCI host (`tests/fixtures/synthetic/NAME.toml`) with a distribution's files
/// (`tests/fixtures/distros/DISTRO`) in place of its own.
pub fn compose_distro(pci: &str, distro: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named(pci, root).unwrap();
    for stale in [
        "etc",
        "boot",
        "usr",
        "lib/modules",
        "var",
        "proc/cmdline",
        "proc/sys/kernel/osrelease",
    ] {
        let p = root.join(stale);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
    let src = repo().join("tests/fixtures/distros").join(distro);
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(root)
        .status()
        .unwrap();
    assert!(ok.success());
    dir
}

/// Runs passthru on `root` the way the golden tests need it: the same output on every
/// machine. The environment is emptied but for a fixed PATH and the C locale, colour is off,
/// and names come from the corpus pci.ids rather than the machine's.
pub fn passthru_fixed(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .arg("--root")
        .arg(root)
        .arg("--pci-ids")
        .arg(pci_ids())
        .args(["--color", "never"])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .env("NO_COLOR", "1")
        .output()
        .expect("running passthru")
}

/// A test part that needs a capability this machine lacks (root, a mount, chattr, strace):
/// on a developer's machine it is skipped with a note; under CI (`CI=true`, where `.ci/run`
/// installs and runs as root) a skipped check is a failure, never a silent pass.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot run under CI: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// Whether strace can trace a child here (it cannot under some ptrace restrictions); a
/// failure of the traced passthru is then passthru's own.
pub fn strace_works() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}
