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
    refresh: &'static [&'static str],
}

pub const PROXMOX_BOOT_TOOL: KernelCmdlineFile = KernelCmdlineFile {
    refresh: &["proxmox-boot-tool", "refresh"],
};
pub const KERNEL_INSTALL: KernelCmdlineFile = KernelCmdlineFile {
    refresh: &["kernel-install", "add-all"],
};

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
        out.commands.push(PlannedCommand {
            argv: self.refresh.iter().map(|a| a.to_string()).collect(),
            why: "write the new command line into the boot entries".into(),
        });
        Ok(out)
    }
}
