//! mkinitcpio (Arch): passthru's own `etc/mkinitcpio.conf.d/*.conf`, then `mkinitcpio -P`.

use super::OwnDropin;

pub const MKINITCPIO_FILE: &str = "etc/mkinitcpio.conf.d/90-passthru-vfio.conf";

/// Drop-ins are sourced after the main file and override it: keep its MODULES after ours,
/// so vfio loads before the GPU drivers.
// The `modconf` hook copies etc/modprobe.d; a udev rule it does not carry (not yet handled).
fn render(modules: &[&str], _carry: &[&str]) -> String {
    format!(
        "# Written by passthru: load vfio before the GPU drivers.\nMODULES=({} \"${{MODULES[@]}}\")\n",
        modules.join(" ")
    )
}

pub const MKINITCPIO: OwnDropin = OwnDropin {
    path: MKINITCPIO_FILE,
    render,
    reason: "load vfio before the GPU drivers",
    rebuild: &["mkinitcpio", "-P"],
};
