//! Kernel parameters, written where the boot loader in use reads them. One file per boot
//! loader, each a [`KernelParamTarget`]; adding a boot loader is one file here plus its
//! detection in `host/boot.rs`.

mod bls;
mod grub;
pub mod grub_defaults;
mod kernel_cmdline;
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

/// The target for the boot loader the snapshot found in use.
fn target_for(
    kind: BootloaderKind,
    src: &dyn FileSource,
) -> Result<&'static dyn KernelParamTarget, SetupError> {
    Ok(match kind {
        BootloaderKind::Grub => &grub::Grub,
        BootloaderKind::ProxmoxBootTool | BootloaderKind::SystemdBoot
            if src.read(kernel_cmdline::KERNEL_CMDLINE)?.is_some() =>
        {
            if kind == BootloaderKind::ProxmoxBootTool {
                &kernel_cmdline::PROXMOX_BOOT_TOOL
            } else {
                &kernel_cmdline::KERNEL_INSTALL
            }
        }
        BootloaderKind::SystemdBoot | BootloaderKind::ProxmoxBootTool => &bls::BlsEntries,
        BootloaderKind::GrubBls => &bls::GrubBls,
        BootloaderKind::Kernelstub => &kernelstub::Kernelstub,
    })
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
    target_for(kind, src)?.plan_params(s, src, change)
}
