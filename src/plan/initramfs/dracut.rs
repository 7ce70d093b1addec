//! dracut (Fedora, RHEL, openSUSE): passthru's own `etc/dracut.conf.d/*.conf`, then
//! `dracut --regenerate-all --force`.

use super::OwnDropin;

pub const DRACUT_FILE: &str = "etc/dracut.conf.d/90-passthru-vfio.conf";

/// dracut reads only `*.conf` in dracut.conf.d, and wants spaces inside the quotes (values
/// are concatenated with other files' `+=` values).
///
/// dracut copies etc/modprobe.d into the image only when hostonly (90kernel-modules'
/// module-setup.sh: `[[ $hostonly ]] && inst_multiple -H -o /etc/modprobe.d/*.conf`;
/// Debian's default is not hostonly) and etc/udev/rules.d never (95udev-rules installs
/// named rules only): without `install_items`, the udev rule that binds the card by
/// address and the softdep that loads vfio-pci first are missing where they matter, and
/// the host driver takes the card. A file that does not exist must not be named (dracut
/// fails to install it), so only the files setup leaves are.
fn render(modules: &[&str], carry: &[&str]) -> String {
    let mut text = format!(
        "# Written by passthru: load vfio early.\nforce_drivers+=\" {} \"\n",
        modules.join(" ")
    );
    if !carry.is_empty() {
        text.push_str(&format!(
            "# and carry passthru's vfio binding into the initramfs.\ninstall_items+=\" {} \"\n",
            carry.join(" ")
        ));
    }
    text
}

pub const DRACUT: OwnDropin = OwnDropin {
    path: DRACUT_FILE,
    render,
    reason: "load vfio early, from the initramfs",
    rebuild: &["dracut", "--regenerate-all", "--force"],
};
