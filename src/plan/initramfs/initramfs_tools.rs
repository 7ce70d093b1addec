//! initramfs-tools (Debian, Ubuntu, Proxmox): one module per line in
//! `etc/initramfs-tools/modules`, then `update-initramfs -u -k all`.

use super::super::files::edit_module_list;
use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::super::{file_edit, PlannedCommand, Steps};
use super::InitramfsTarget;

const MODULES_FILE: &str = "etc/initramfs-tools/modules";

pub struct InitramfsTools;

impl InitramfsTarget for InitramfsTools {
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        stale: &[&str],
        // mkinitramfs copies etc/modprobe.d and etc/udev/rules.d itself (the e2e lab's
        // lsinitramfs shows both).
        _carry: &[&str],
    ) -> Result<Steps, SetupError> {
        let text = src.read_text(MODULES_FILE)?.unwrap_or_default();
        let after = edit_module_list(&text, modules, stale);
        let mut out = Steps::default();
        out.edits.extend(file_edit(
            src,
            MODULES_FILE,
            Some(after.into_bytes()),
            0o644,
            "load vfio early, from the initramfs",
        )?);
        out.commands.push(PlannedCommand {
            why: "rebuild every initramfs with the vfio modules and modprobe.d".into(),
            ..self.rebuild()
        });
        Ok(out)
    }

    fn rebuild(&self) -> PlannedCommand {
        PlannedCommand {
            argv: ["update-initramfs", "-u", "-k", "all"]
                .map(String::from)
                .to_vec(),
            why: "rebuild every initramfs".into(),
        }
    }
}
