//! `passthru scan --archive FILE.tar.gz`: copies the files passthru reads into a tarball, so
//! any host can become a test fixture or be attached to a bug report (`--root` on the
//! unpacked tree reads the same snapshot).
//!
//! Safety rules, because this walks a live sysfs:
//! - `resource*` and `rom` are never read (an I/O BAR read touches device registers), nor
//!   more than the first 64 bytes of `config` (all a non-root reader gets anyway);
//! - in PCI device directories only the PCI core's own attributes are read, never a
//!   driver's (amdgpu's attributes, for one, wake a sleeping GPU);
//! - symlinks are stored as symlinks and never followed in `sys` (they loop);
//! - write-only files and failed reads become empty placeholders with their original mode,
//!   each listed with its reason in an `UNREADABLE` file at the top of the archive.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::root::HostRoot;
use crate::model::PciAddress;

/// Attributes of a PCI device directory that the PCI core itself provides.
const PCI_ATTRS: &[&str] = &[
    "class",
    "vendor",
    "device",
    "subsystem_vendor",
    "subsystem_device",
    "revision",
    "config",
    "driver_override",
    "boot_vga",
    "reset_method",
    "reset",
    "power_state",
    "d3cold_allowed",
    "numa_node",
    "local_cpulist",
    "current_link_speed",
    "current_link_width",
    "max_link_speed",
    "max_link_width",
    "secondary_bus_number",
    "subordinate_bus_number",
    "sriov_totalvfs",
    "sriov_numvfs",
    "sriov_offset",
    "sriov_stride",
    "sriov_vf_device",
    "sriov_drivers_autoprobe",
    "modalias",
    "enable",
    "irq",
    "resource",
    "msi_bus",
    "broken_parity_status",
    "consistent_dma_mask_bits",
    "dma_mask_bits",
    "ari_enabled",
    "label",
    "index",
    "acpi_index",
    "driver_override",
    "uevent",
];

/// Links of a PCI device directory worth keeping.
const PCI_LINKS: &[&str] = &[
    "driver",
    "iommu_group",
    "physfn",
    "subsystem",
    "firmware_node",
    "iommu",
];

/// Kernel module parameter directories passthru reads.
const MODULES: &[&str] = &[
    "vfio",
    "vfio_pci",
    "vfio_pci_core",
    "vfio_iommu_type1",
    "nvidia",
    "nvidia_drm",
    "amdgpu",
    "i915",
    "xe",
    "nouveau",
    "kvm",
    "kvm_intel",
    "kvm_amd",
];

/// Configuration files copied with their contents (symlinks followed: these are plain
/// files in etc, and only their meaning matters).
const CONFIG_FILES: &[&str] = &[
    "etc/os-release",
    "usr/lib/os-release",
    "etc/default/grub",
    "etc/kernel/cmdline",
    "etc/kernel/proxmox-boot-uuids",
    "etc/kernelstub/configuration",
    "etc/modules",
    "etc/initramfs-tools/modules",
    "etc/initramfs-tools/initramfs.conf",
    "etc/dracut.conf",
    "etc/mkinitcpio.conf",
    "etc/booster.yaml",
    "boot/grub/grub.cfg",
    "boot/loader/loader.conf",
    "boot/efi/loader/loader.conf",
    "efi/loader/loader.conf",
];

/// Directories whose files are copied (one level, contents followed).
const CONFIG_DIRS: &[&str] = &[
    "etc/default/grub.d",
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "lib/modprobe.d",
    "usr/lib/modprobe.d",
    "etc/modules-load.d",
    "usr/lib/modules-load.d",
    "etc/dracut.conf.d",
    "etc/mkinitcpio.conf.d",
    "boot/loader/entries",
    "boot/efi/loader/entries",
    "efi/loader/entries",
];

/// Paths whose existence alone is evidence (tools installed, Proxmox's cluster mount). Their
/// contents are never copied: etc/pve holds cluster secrets.
const MARKERS: &[&str] = &[
    "usr/sbin/update-initramfs",
    "usr/bin/dracut",
    "usr/bin/mkinitcpio",
    "usr/bin/booster",
    "usr/sbin/grubby",
    "usr/bin/grubby",
    "usr/sbin/update-grub",
    "usr/bin/pveversion",
    "usr/share/pve-manager",
    "etc/pve",
    "boot/grub2",
    "sys/firmware/efi",
];

const PROC_FILES: &[&str] = &[
    "proc/cmdline",
    "proc/modules",
    "proc/devices",
    "proc/interrupts",
    "proc/cpuinfo",
    "proc/version",
    "proc/sys/kernel/osrelease",
    "proc/driver/nvidia/version",
];

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
    let tmp = out_path.with_extension("partial");
    let file = File::create(&tmp).map_err(err)?;
    let result = (|| -> io::Result<ArchiveSummary> {
        let mut w = ArchiveWriter {
            root,
            tar: tar::Builder::new(GzEncoder::new(file, Compression::default())),
            summary: ArchiveSummary::default(),
            dirs_done: Default::default(),
        };
        w.collect()?;
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

struct ArchiveWriter<'a, W: Write> {
    root: &'a HostRoot,
    tar: tar::Builder<W>,
    summary: ArchiveSummary,
    dirs_done: std::collections::BTreeSet<String>,
}

impl<W: Write> ArchiveWriter<'_, W> {
    fn collect(&mut self) -> io::Result<()> {
        // PCI devices: the bus's links, and the device trees they point into.
        self.copy_links_in("sys/bus/pci/devices")?;
        for driver in self.list("sys/bus/pci/drivers") {
            let dir = format!("sys/bus/pci/drivers/{driver}");
            self.copy_links_in(&dir)?;
            // `driver/module` names the module through this link's target directory.
            if let Some(module) = self.root.resolve_link(&format!("{dir}/module")) {
                if module.starts_with("sys/module/") && self.root.is_dir(&module) {
                    self.add_dir(&module)?;
                }
            }
        }
        for top in self.list("sys/devices") {
            if top.starts_with("pci") {
                self.copy_pci_dir(&format!("sys/devices/{top}"))?;
            }
        }
        self.copy_tree("sys/kernel/iommu_groups", 4)?;
        self.copy_links_in("sys/class/iommu")?;
        self.copy_tree("sys/devices/virtual/iommu", 3)?;
        self.copy_links_in("sys/class/drm")?;
        for m in MODULES {
            self.copy_tree(&format!("sys/module/{m}/parameters"), 1)?;
        }
        self.add_dir("sys/firmware")?;
        for table in self.list("sys/firmware/acpi/tables") {
            let rel = format!("sys/firmware/acpi/tables/{table}");
            if self.root.join(&rel).is_file() {
                self.placeholder(&rel, "ACPI table: presence only")?;
            }
        }
        for p in PROC_FILES {
            self.copy_file(p, false)?;
        }
        if let Some(release) = self.read_small("proc/sys/kernel/osrelease") {
            let release = release.trim().to_string();
            for base in ["lib/modules", "usr/lib/modules"] {
                self.copy_file(&format!("{base}/{release}/modules.builtin"), true)?;
            }
            self.copy_file(&format!("boot/config-{release}"), true)?;
        }
        for p in CONFIG_FILES {
            self.copy_file(p, true)?;
        }
        for d in CONFIG_DIRS {
            for name in self.list(d) {
                self.copy_file(&format!("{d}/{name}"), true)?;
            }
        }
        for m in MARKERS {
            let path = self.root.join(m);
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.add_dir(m)?,
                Ok(_) => self.placeholder(m, "marker: presence only")?,
                Err(_) => {}
            }
        }
        self.copy_dpkg_status()?;
        self.copy_links_in("dev/dri/by-path")?;
        Ok(())
    }

    fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join(rel))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn read_small(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.root.join(rel)).ok()
    }

    /// A PCI device directory (or the `pciDDDD:BB` host bridge directory).
    fn copy_pci_dir(&mut self, rel: &str) -> io::Result<()> {
        self.add_dir(rel)?;
        for name in self.list(rel) {
            let child = format!("{rel}/{name}");
            let meta = match fs::symlink_metadata(self.root.join(&child)) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.file_type().is_symlink() {
                if PCI_LINKS.contains(&name.as_str()) || name.starts_with("virtfn") {
                    self.add_link(&child)?;
                }
            } else if meta.is_dir() {
                if name.parse::<PciAddress>().is_ok() || name.starts_with("pci") {
                    self.copy_pci_dir(&child)?;
                } else {
                    match name.as_str() {
                        "power" => {
                            self.add_dir(&child)?;
                            self.copy_file(&format!("{child}/runtime_status"), false)?;
                            self.copy_file(&format!("{child}/control"), false)?;
                        }
                        "pci_bus" => self.copy_tree_dirs_only(&child)?,
                        "mdev_supported_types" => self.copy_tree(&child, 2)?,
                        "iommu" => self.copy_tree(&child, 2)?,
                        "drm" => self.copy_drm(&child)?,
                        _ => {}
                    }
                }
            } else if name.starts_with("resource") && name != "resource" || name == "rom" {
                self.placeholder_with_mode(
                    &child,
                    meta.permissions().mode(),
                    "BAR or ROM: never read",
                )?;
            } else if PCI_ATTRS.contains(&name.as_str()) {
                self.copy_file(&child, false)?;
            }
        }
        Ok(())
    }

    /// A device's `drm/` directory: cards, render nodes and connector status, nothing a driver
    /// computes.
    fn copy_drm(&mut self, rel: &str) -> io::Result<()> {
        self.add_dir(rel)?;
        for node in self.list(rel) {
            let node_rel = format!("{rel}/{node}");
            if !self.root.join(&node_rel).is_dir() {
                continue;
            }
            self.add_dir(&node_rel)?;
            self.add_link(&format!("{node_rel}/device"))?;
            self.copy_file(&format!("{node_rel}/dev"), false)?;
            for conn in self.list(&node_rel) {
                if conn.starts_with(&format!("{node}-")) {
                    let c = format!("{node_rel}/{conn}");
                    self.add_dir(&c)?;
                    self.copy_file(&format!("{c}/status"), false)?;
                    self.copy_file(&format!("{c}/enabled"), false)?;
                }
            }
        }
        Ok(())
    }

    /// Every symlink directly in a directory.
    fn copy_links_in(&mut self, rel: &str) -> io::Result<()> {
        if !self.root.join(rel).is_dir() {
            return Ok(());
        }
        self.add_dir(rel)?;
        for name in self.list(rel) {
            let child = format!("{rel}/{name}");
            if fs::symlink_metadata(self.root.join(&child))
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                self.add_link(&child)?;
            }
        }
        Ok(())
    }

    /// A small tree, to a depth, links kept as links.
    fn copy_tree(&mut self, rel: &str, depth: usize) -> io::Result<()> {
        let Ok(meta) = fs::symlink_metadata(self.root.join(rel)) else {
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            return self.add_link(rel);
        }
        if meta.is_file() {
            return self.copy_file(rel, false);
        }
        self.add_dir(rel)?;
        if depth == 0 {
            return Ok(());
        }
        for name in self.list(rel) {
            self.copy_tree(&format!("{rel}/{name}"), depth - 1)?;
        }
        Ok(())
    }

    fn copy_tree_dirs_only(&mut self, rel: &str) -> io::Result<()> {
        self.add_dir(rel)?;
        for name in self.list(rel) {
            let child = format!("{rel}/{name}");
            if fs::symlink_metadata(self.root.join(&child)).is_ok_and(|m| m.is_dir()) {
                self.add_dir(&child)?;
            }
        }
        Ok(())
    }

    /// Only the Proxmox packages' paragraphs of the dpkg database: the rest is private and large.
    fn copy_dpkg_status(&mut self) -> io::Result<()> {
        let Some(status) = self.read_small("var/lib/dpkg/status") else {
            return Ok(());
        };
        let kept: Vec<&str> = status
            .split("\n\n")
            .filter(|p| {
                p.lines()
                    .any(|l| matches!(l.trim(), "Package: pve-manager" | "Package: proxmox-ve"))
            })
            .collect();
        if !kept.is_empty() {
            let text = format!("{}\n", kept.join("\n\n"));
            self.add_bytes("var/lib/dpkg/status", text.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// Copies one file. `follow` reads through symlinks (config files); otherwise a symlink
    /// is stored as one.
    fn copy_file(&mut self, rel: &str, follow: bool) -> io::Result<()> {
        let path = self.root.join(rel);
        let meta = if follow {
            fs::metadata(&path)
        } else {
            fs::symlink_metadata(&path)
        };
        let Ok(meta) = meta else {
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            return self.add_link(rel);
        }
        if !meta.is_file() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o444 == 0 {
            return self.placeholder_with_mode(rel, mode, "write-only");
        }
        let limit = if rel.ends_with("/config") && rel.starts_with("sys/") {
            64
        } else {
            1 << 20
        };
        match read_prefix(&path, limit) {
            Ok(bytes) => self.add_bytes(rel, &bytes, mode),
            Err(e) => self.placeholder_with_mode(rel, mode, &format!("read failed: {e}")),
        }
    }

    fn placeholder(&mut self, rel: &str, why: &str) -> io::Result<()> {
        self.placeholder_with_mode(rel, 0o444, why)
    }

    fn placeholder_with_mode(&mut self, rel: &str, mode: u32, why: &str) -> io::Result<()> {
        self.summary
            .unreadable
            .push((rel.to_string(), why.to_string()));
        self.add_bytes(rel, &[], mode & 0o7777)
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

    fn add_link(&mut self, rel: &str) -> io::Result<()> {
        let Ok(target) = fs::read_link(self.root.join(rel)) else {
            return Ok(());
        };
        self.ensure_parents(rel)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        self.tar.append_link(&mut h, rel, &target)?;
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
fn read_prefix(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(limit as u64).read_to_end(&mut out)?;
    Ok(out)
}
