//! The vfio modules in the initramfs, for the initramfs system in use. One file per system,
//! each an [`InitramfsTarget`]; adding one is one file here plus its detection in
//! `host/boot.rs`.

mod dracut;
mod initramfs_tools;
mod mkinitcpio;

pub use dracut::DRACUT_FILE;
pub use mkinitcpio::MKINITCPIO_FILE;

use crate::model::{InitramfsKind, Snapshot};

use super::setup::SetupError;
use super::source::FileSource;
use super::{PlannedCommand, Steps};

/// How one initramfs system is told to load modules early, and rebuilt.
pub trait InitramfsTarget {
    /// Edits that load `modules` from the initramfs (and drop `stale` ones), with the rebuild.
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        stale: &[&str],
    ) -> Result<Steps, SetupError>;
    /// The command that rebuilds every initramfs (after modprobe.d changes too).
    fn rebuild(&self) -> PlannedCommand;
}

/// Steps that write passthru's own drop-in `path` (dracut.conf.d, mkinitcpio.conf.d) and
/// rebuild.
fn own_dropin(
    target: &dyn InitramfsTarget,
    src: &dyn FileSource,
    path: &str,
    text: String,
    reason: &str,
) -> Result<Steps, SetupError> {
    Ok(Steps {
        edits: super::file_edit(src, path, Some(text.into_bytes()), 0o644, reason)?
            .into_iter()
            .collect(),
        commands: vec![target.rebuild()],
        notes: Vec::new(),
    })
}

/// Booster has no drop-in passthru can own: the user is told what to add.
struct Booster;

impl InitramfsTarget for Booster {
    fn plan_modules(
        &self,
        _: &dyn FileSource,
        _: &[&str],
        _: &[&str],
    ) -> Result<Steps, SetupError> {
        Ok(Steps {
            notes: vec!["booster: add vfio_pci vfio vfio_iommu_type1 to modules_force_load in /etc/booster.yaml by hand".into()],
            ..Steps::default()
        })
    }
    fn rebuild(&self) -> PlannedCommand {
        PlannedCommand {
            argv: vec!["/usr/lib/booster/regenerate_images".into()],
            why: "rebuild the initramfs".into(),
        }
    }
}

/// The initramfs system the snapshot found (initramfs-tools when none was found: Debian's).
pub fn initramfs_for(s: &Snapshot) -> &'static dyn InitramfsTarget {
    match s.boot.initramfs.first().map(|i| i.kind) {
        Some(InitramfsKind::InitramfsTools) | None => &initramfs_tools::InitramfsTools,
        Some(InitramfsKind::Dracut) => &dracut::Dracut,
        Some(InitramfsKind::Mkinitcpio) => &mkinitcpio::Mkinitcpio,
        Some(InitramfsKind::Booster) => &Booster,
    }
}
