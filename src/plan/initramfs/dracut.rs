//! dracut (Fedora, RHEL, openSUSE): passthru's own `etc/dracut.conf.d/*.conf`, then
//! `dracut --regenerate-all --force`.

use super::OwnDropin;

pub const DRACUT_FILE: &str = "etc/dracut.conf.d/90-passthru-vfio.conf";

/// dracut reads only `*.conf` in dracut.conf.d, and wants spaces inside the quotes (values
/// are concatenated with other files' `+=` values).
fn render(modules: &[&str]) -> String {
    format!(
        "# Written by passthru: load vfio early.\nforce_drivers+=\" {} \"\n",
        modules.join(" ")
    )
}

pub const DRACUT: OwnDropin = OwnDropin {
    path: DRACUT_FILE,
    render,
    reason: "load vfio early, from the initramfs",
    rebuild: &["dracut", "--regenerate-all", "--force"],
};
