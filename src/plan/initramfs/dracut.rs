//! dracut (Fedora, RHEL, openSUSE): passthru's own `etc/dracut.conf.d/*.conf`, then
//! `dracut --regenerate-all --force`.

use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::super::{PlannedCommand, Steps};
use super::{own_dropin, InitramfsTarget};

pub const DRACUT_FILE: &str = "etc/dracut.conf.d/90-passthru-vfio.conf";

pub struct Dracut;

impl InitramfsTarget for Dracut {
    fn plan_modules(
        &self,
        src: &dyn FileSource,
        modules: &[&str],
        _stale: &[&str],
    ) -> Result<Steps, SetupError> {
        // dracut reads only *.conf in dracut.conf.d, and wants spaces inside the quotes
        // (values are concatenated with other files' += values).
        let text = format!(
            "# Written by passthru: load vfio early.\nforce_drivers+=\" {} \"\n",
            modules.join(" ")
        );
        own_dropin(
            self,
            src,
            DRACUT_FILE,
            text,
            "load vfio early, from the initramfs",
        )
    }

    fn rebuild(&self) -> PlannedCommand {
        PlannedCommand {
            argv: ["dracut", "--regenerate-all", "--force"]
                .map(String::from)
                .to_vec(),
            why: "rebuild every initramfs".into(),
        }
    }
}
