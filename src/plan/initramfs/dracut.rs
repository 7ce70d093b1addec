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
///
/// `force_drivers` loads the modules before udev runs: right for ids=, wrong when a udev
/// rule binds the card by address (vfio-pci would load before the rule sets driver_override
/// and claim nothing). Then the modules are only put in the image (`add_drivers`) and the
/// softdep loads vfio-pci just before the card's host driver, after the rule.
fn render(modules: &[&str], carry: &[&str]) -> String {
    // The udev rule is carried exactly when setup binds a card by address.
    let by_address = carry
        .iter()
        .any(|f| f.trim_start_matches('/') == crate::plan::setup::UDEV_FILE);
    let mut text = if by_address {
        format!(
            "# Written by passthru: vfio in the initramfs, loaded by its softdep after udev has set\n# driver_override (the card is bound by address).\nadd_drivers+=\" {} \"\n",
            modules.join(" ")
        )
    } else {
        format!(
            "# Written by passthru: load vfio early.\nforce_drivers+=\" {} \"\n",
            modules.join(" ")
        )
    };
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
