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
    /// `carry`: passthru's binding files (absolute paths) the initramfs must hold for
    /// vfio-pci to take the card before its host driver does.
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        stale: &[&str],
        carry: &[&str],
    ) -> Result<Steps, SetupError>;
    /// When the binding files change without the modules (`setup host`): what names them
    /// again, so that none that is gone stays named. Nothing where none is named.
    fn plan_carry(
        &self,
        _src: &dyn FileSource,
        _modules: &[&str],
        _carry: &[&str],
    ) -> Result<Steps, SetupError> {
        Ok(Steps::default())
    }
    /// The command that rebuilds every initramfs (after modprobe.d changes too).
    fn rebuild(&self) -> PlannedCommand;
}

/// An initramfs system configured by a drop-in passthru owns (dracut.conf.d,
/// mkinitcpio.conf.d): the whole file is passthru's, then every initramfs is rebuilt.
pub struct OwnDropin {
    pub path: &'static str,
    /// The whole file, from the modules and the files to carry.
    pub render: fn(&[&str], &[&str]) -> String,
    pub reason: &'static str,
    pub rebuild: &'static [&'static str],
}

impl InitramfsTarget for OwnDropin {
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        _stale: &[&str],
        carry: &[&str],
    ) -> Result<Steps, SetupError> {
        let text = (self.render)(modules, carry);
        Ok(Steps {
            edits: super::file_edit(src, self.path, Some(text.into_bytes()), 0o644, self.reason)?
                .into_iter()
                .collect(),
            commands: vec![self.rebuild()],
            notes: Vec::new(),
        })
    }

    fn plan_carry(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        carry: &[&str],
    ) -> Result<Steps, SetupError> {
        if src.read(self.path)?.is_none() {
            return Ok(Steps::default());
        }
        let text = (self.render)(modules, carry);
        Ok(Steps {
            edits: super::file_edit(src, self.path, Some(text.into_bytes()), 0o644, self.reason)?
                .into_iter()
                .collect(),
            ..Steps::default()
        })
    }

    fn rebuild(&self) -> PlannedCommand {
        PlannedCommand {
            argv: self.rebuild.iter().map(|a| a.to_string()).collect(),
            why: "rebuild every initramfs".into(),
        }
    }
}

/// Booster has no drop-in passthru can own: the user is told what to add.
struct Booster;

impl InitramfsTarget for Booster {
    fn plan_modules(
        &self,
        _: &dyn FileSource,
        _: &[&str],
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
        Some(InitramfsKind::Dracut) => &dracut::DRACUT,
        Some(InitramfsKind::Mkinitcpio) => &mkinitcpio::MKINITCPIO,
        Some(InitramfsKind::Booster) => &Booster,
    }
}
