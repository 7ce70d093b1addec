//! Kernel parameters, written where the boot loader in use reads them. One file per boot
//! loader, each a [`KernelParamTarget`]; adding a boot loader is one file here plus its
//! detection in `host/boot.rs`.

mod bls;
mod grub;
pub mod grub_defaults;
pub mod kernel_cmdline;
pub mod kernelstub;

use crate::model::{BootloaderKind, Snapshot};

use super::files::{render_param, ParamChange};
use super::setup::SetupError;
use super::source::FileSource;
pub use super::Steps;

/// Where one boot loader takes the kernel command line from.
pub trait KernelParamTarget {
    /// What to change so the next boot's command line has `change` applied.
    fn plan_params(
        &self,
        s: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError>;
}

/// Where the next boot's command line comes from: the one decision behind both the file
/// setup edits ([`target_for`]) and what `list` names (docs/domain-facts.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineSource {
    /// `etc/default/grub` and its `grub.d/*.cfg` drop-ins, through update-grub/grub-mkconfig.
    GrubDefaults,
    /// `etc/kernel/cmdline`, refreshed by proxmox-boot-tool.
    ProxmoxKernelCmdline,
    /// `etc/kernel/cmdline`, refreshed by kernel-install.
    KernelInstallCmdline,
    /// The `options` line of every BLS entry (`loader/entries/*.conf`): systemd-boot without
    /// `etc/kernel/cmdline`.
    BlsEntries,
    /// BLS entries, and `GRUB_CMDLINE_LINUX` for kernels installed later (Fedora/RHEL GRUB).
    GrubBls,
    /// `user.kernel_options` in `etc/kernelstub/configuration`.
    Kernelstub,
}

/// Where `kind` takes the command line from. `has_kernel_cmdline` (whether
/// `etc/kernel/cmdline` exists) matters only to the two setups that read that file when it
/// is there and their BLS entries otherwise.
pub fn cmdline_source(kind: BootloaderKind, has_kernel_cmdline: bool) -> CmdlineSource {
    match (kind, has_kernel_cmdline) {
        (BootloaderKind::Grub, _) => CmdlineSource::GrubDefaults,
        (BootloaderKind::ProxmoxBootTool, true) => CmdlineSource::ProxmoxKernelCmdline,
        (BootloaderKind::SystemdBoot, true) => CmdlineSource::KernelInstallCmdline,
        (BootloaderKind::ProxmoxBootTool | BootloaderKind::SystemdBoot, false) => {
            CmdlineSource::BlsEntries
        }
        (BootloaderKind::GrubBls, _) => CmdlineSource::GrubBls,
        (BootloaderKind::Kernelstub, _) => CmdlineSource::Kernelstub,
    }
}

impl CmdlineSource {
    /// The files the command line is taken from, as a user would look for them.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            CmdlineSource::GrubDefaults => &["etc/default/grub", "etc/default/grub.d/*.cfg"],
            CmdlineSource::ProxmoxKernelCmdline | CmdlineSource::KernelInstallCmdline => {
                &[kernel_cmdline::KERNEL_CMDLINE]
            }
            CmdlineSource::BlsEntries => &["loader/entries/*.conf"],
            CmdlineSource::GrubBls => &["loader/entries/*.conf", "etc/default/grub"],
            CmdlineSource::Kernelstub => &["etc/kernelstub/configuration"],
        }
    }
}

/// The target for the boot loader the snapshot found in use.
fn target_for(
    s: &Snapshot,
    kind: BootloaderKind,
    src: &dyn FileSource,
) -> Result<&'static dyn KernelParamTarget, SetupError> {
    // Read only where it decides: a GRUB host with an unreadable etc/kernel/cmdline is fine.
    let has_kernel_cmdline = matches!(
        kind,
        BootloaderKind::ProxmoxBootTool | BootloaderKind::SystemdBoot
    ) && src.read(kernel_cmdline::KERNEL_CMDLINE)?.is_some();
    let source = cmdline_source(kind, has_kernel_cmdline);
    // systemd-boot fed by kernel-install (Debian's systemd-boot package runs `kernel-install
    // add` from its kernel and initramfs hooks): the entries are rewritten from
    // etc/kernel/cmdline, or /proc/cmdline without it, so editing them would not last.
    if source == CmdlineSource::BlsEntries
        && kind == BootloaderKind::SystemdBoot
        && ["usr/bin", "bin"]
            .iter()
            .any(|d| src.list(d).iter().any(|n| n == "kernel-install"))
    {
        // The user pastes the command: one single-quoted word, whatever the options hold.
        let quoted = format!("'{}'", boot_options(s).replace('\'', r"'\''"));
        return Err(SetupError::KernelInstallWithoutCmdline(quoted));
    }
    Ok(match source {
        CmdlineSource::GrubDefaults => &grub::Grub,
        CmdlineSource::ProxmoxKernelCmdline => &kernel_cmdline::PROXMOX_BOOT_TOOL,
        CmdlineSource::KernelInstallCmdline => &kernel_cmdline::KERNEL_INSTALL,
        CmdlineSource::BlsEntries => &bls::BlsEntries,
        CmdlineSource::GrubBls => &bls::GrubBls,
        CmdlineSource::Kernelstub => &kernelstub::Kernelstub,
    })
}

/// The options kernel-install would write without etc/kernel/cmdline: the in-use entry's
/// options, else the running command line less what the boot loader adds (`BOOT_IMAGE=`,
/// `initrd=`), as its 90-loaderentry plugin takes /proc/cmdline.
fn boot_options(s: &Snapshot) -> String {
    let configured = s
        .boot
        .bootloaders
        .iter()
        .find(|b| Some(b.kind) == s.boot.in_use)
        .map(|b| b.configured_params.clone())
        .unwrap_or_default();
    let params = if configured.is_empty() {
        s.system.cmdline_params.clone()
    } else {
        configured
    };
    params
        .iter()
        // kernel-install adds systemd.machine_id= itself when entries are named by machine id.
        .filter(|p| {
            !matches!(
                p.key.as_str(),
                "BOOT_IMAGE" | "initrd" | "systemd.machine_id"
            )
        })
        .map(render_param)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Plans the command-line change for the boot loader in use.
pub fn plan_kernel_params(
    s: &Snapshot,
    src: &dyn FileSource,
    change: &ParamChange,
) -> Result<Steps, SetupError> {
    let Some(kind) = s.boot.in_use else {
        let words: Vec<String> = change.add.iter().map(render_param).collect();
        return Err(SetupError::NoBootloader(words.join(" ")));
    };
    target_for(s, kind, src)?.plan_params(s, src, change)
}
