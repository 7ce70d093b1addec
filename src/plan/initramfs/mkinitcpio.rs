//! mkinitcpio (Arch): passthru's own `etc/mkinitcpio.conf.d/*.conf`, then `mkinitcpio -P`.

use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::super::{PlannedCommand, Steps};
use super::{own_dropin, InitramfsTarget};

pub const MKINITCPIO_FILE: &str = "etc/mkinitcpio.conf.d/90-passthru-vfio.conf";

pub struct Mkinitcpio;

impl InitramfsTarget for Mkinitcpio {
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        _stale: &[&str],
    ) -> Result<Steps, SetupError> {
        // Drop-ins are sourced after the main file and override it: keep its MODULES after
        // ours, so vfio loads before the GPU drivers.
        let text = format!(
            "# Written by passthru: load vfio before the GPU drivers.\nMODULES=({} \"${{MODULES[@]}}\")\n",
            modules.join(" ")
        );
        own_dropin(
            self,
            src,
            MKINITCPIO_FILE,
            text,
            "load vfio before the GPU drivers",
        )
    }

    fn rebuild(&self) -> PlannedCommand {
        PlannedCommand {
            argv: vec!["mkinitcpio".into(), "-P".into()],
            why: "rebuild every initramfs".into(),
        }
    }
}
