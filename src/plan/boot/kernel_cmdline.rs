//! `etc/kernel/cmdline`: one line, read by proxmox-boot-tool (Proxmox with systemd-boot on
//! ZFS) and by kernel-install (systemd-boot elsewhere).

use crate::model::Snapshot;

use super::super::files::{edit_cmdline_file, ParamChange};
use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::super::{file_edit, PlannedCommand};
use super::{KernelParamTarget, Steps};

pub const KERNEL_CMDLINE: &str = "etc/kernel/cmdline";

/// `etc/kernel/cmdline` and the command that writes it into the boot entries.
pub struct KernelCmdlineFile {
    refresh: Refresh,
}

enum Refresh {
    /// One command that rewrites every entry.
    All(&'static [&'static str]),
    /// `kernel-install add VERSION IMAGE [INITRD]` for each installed kernel. Debian 12's
    /// kernel-install (systemd 252) has only add, remove and inspect: `add-all` came with
    /// systemd 255, and `add` per kernel works on every version.
    KernelInstallEach,
}

pub const PROXMOX_BOOT_TOOL: KernelCmdlineFile = KernelCmdlineFile {
    refresh: Refresh::All(&["proxmox-boot-tool", "refresh"]),
};
pub const KERNEL_INSTALL: KernelCmdlineFile = KernelCmdlineFile {
    refresh: Refresh::KernelInstallEach,
};

/// An installed kernel as kernel-install is given it: version, image, initramfs (absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledKernel {
    pub version: String,
    pub image: String,
    pub initrd: Option<String>,
}

/// The kernels with modules under `usr/lib/modules` (or `lib/modules`) and an image, in
/// version order: `boot/vmlinuz-V` (Debian, Ubuntu) or `usr/lib/modules/V/vmlinuz`
/// (Fedora, Arch); the initramfs `boot/initrd.img-V` (initramfs-tools, Debian's dracut) or
/// `boot/initramfs-V.img` (dracut elsewhere), when there is one.
pub fn read_installed_kernels(src: &dyn FileSource) -> Vec<InstalledKernel> {
    let boot = src.list("boot");
    let mut versions: Vec<(String, &str)> = Vec::new();
    for dir in ["usr/lib/modules", "lib/modules"] {
        for v in src.list(dir) {
            if !versions.iter().any(|(seen, _)| *seen == v) && src.is_dir(&format!("{dir}/{v}")) {
                versions.push((v, dir));
            }
        }
    }
    versions.sort_by_key(|(v, _)| version_key(v));
    versions
        .into_iter()
        .filter_map(|(v, dir)| {
            let image = if boot.contains(&format!("vmlinuz-{v}")) {
                format!("/boot/vmlinuz-{v}")
            } else if src
                .list(&format!("{dir}/{v}"))
                .iter()
                .any(|n| n == "vmlinuz")
            {
                format!("/{dir}/{v}/vmlinuz")
            } else {
                return None;
            };
            let initrd = [format!("initrd.img-{v}"), format!("initramfs-{v}.img")]
                .into_iter()
                .find(|n| boot.contains(n))
                .map(|n| format!("/boot/{n}"));
            Some(InstalledKernel {
                version: v,
                image,
                initrd,
            })
        })
        .collect()
}

/// Orders versions as `sort -V` does for kernel releases: runs of digits by value, the rest
/// as text (`6.1.0-9` before `6.1.0-10`).
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

impl KernelCmdlineFile {
    fn refresh_commands(&self, src: &dyn FileSource) -> Result<Vec<PlannedCommand>, SetupError> {
        let why = "write the new command line into the boot entries".to_string();
        match self.refresh {
            Refresh::All(argv) => Ok(vec![PlannedCommand {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                why,
            }]),
            Refresh::KernelInstallEach => {
                let kernels = read_installed_kernels(src);
                if kernels.is_empty() {
                    return Err(SetupError::NoInstalledKernel);
                }
                Ok(kernels
                    .into_iter()
                    .map(|k| PlannedCommand {
                        argv: ["kernel-install", "add", &k.version, &k.image]
                            .into_iter()
                            .map(String::from)
                            .chain(k.initrd)
                            .collect(),
                        why: format!("write the new command line into {}'s boot entry", k.version),
                    })
                    .collect())
            }
        }
    }
}

impl KernelParamTarget for KernelCmdlineFile {
    fn plan_params(
        &self,
        _: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError> {
        let text = src.read_text(KERNEL_CMDLINE)?.unwrap_or_default();
        let mut out = Steps::default();
        out.edits.extend(file_edit(
            src,
            KERNEL_CMDLINE,
            Some(edit_cmdline_file(&text, change).into_bytes()),
            0o644,
            "kernel parameters (one line, read by proxmox-boot-tool / kernel-install)",
        )?);
        out.commands.extend(self.refresh_commands(src)?);
        Ok(out)
    }
}
