//! Reset: what the kernel offers, the AMD reset bug, and idle power states.

use serde::Serialize;

use super::{Ctx, Effect, Finding, RuleId, Severity, Use};

const VM: &[Use] = &[Use::Vm];

/// AMD GPU generations and what is known about resetting them for passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResetFamily {
    /// Polaris, Vega, Navi 10/12/14: the "AMD reset bug"; gnif/vendor-reset covers them.
    VendorReset(&'static str),
    /// Newer generations vendor-reset does not cover, with what users report.
    NotCovered(&'static str),
}

/// The family of an AMD (`1002`) GPU device id. The ranges are the generations' device-id
/// blocks (pci.ids); tests/reset_families.rs checks that every id vendor-reset lists lands
/// in a vendor-reset family here.
pub fn amd_reset_family(device: u16) -> Option<ResetFamily> {
    use ResetFamily::*;
    Some(match device {
        0x67c0..=0x67df | 0x6fdf => VendorReset("Polaris 10"),
        0x67e0..=0x67ff => VendorReset("Polaris 11"),
        0x6980..=0x699f => VendorReset("Polaris 12"),
        0x6860..=0x687f => VendorReset("Vega 10"),
        0x66a0..=0x66af => VendorReset("Vega 20"),
        0x738c => VendorReset("Arcturus (MI100)"),
        0x7310..=0x731f => VendorReset("Navi 10"),
        0x7360..=0x7362 => VendorReset("Navi 12"),
        0x7340..=0x734f => VendorReset("Navi 14"),
        0x73a0..=0x73ff => NotCovered("Navi 2x (RX 6000)"),
        0x7440..=0x747f => NotCovered("Navi 3x (RX 7000)"),
        0x7550..=0x75ff => NotCovered("Navi 4x (RX 9000)"),
        0x15bf | 0x15c8 | 0x1900 => NotCovered("Phoenix iGPU (780M)"),
        _ => return None,
    })
}

pub(super) fn check_reset(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let g = c.gpu;
    let path = format!("sys/bus/pci/devices/{}", g.address);
    if g.detailed {
        match g.reset.methods.as_deref() {
            None if !g.reset.reset_file => f.push(
                Finding::new(RuleId::ResetNone, Severity::Warning, Effect::None, VM, "the kernel offers no reset method for this GPU: it cannot be reset between VM runs, so a VM may start only once per host boot")
                    .evidence(format!("{path}/reset_method: absent"))
                    .fix("test a start-stop-start of the VM; a slot behind its own root port gets a bus reset"),
            ),
            Some([]) => f.push(
                Finding::new(RuleId::ResetDisabled, Severity::Warning, Effect::None, VM, "reset is disabled for this GPU (empty reset_method)")
                    .evidence(format!("{path}/reset_method: empty"))
                    .fix(format!("echo default > /{path}/reset_method")),
            ),
            Some(m) if m == ["bus"] && c.functions.len() > 1 => f.push(
                Finding::new(RuleId::ResetBusOnly, Severity::Info, Effect::None, VM, "only a bus reset is available, which resets every function of the card at once: pass all of them to the same VM")
                    .evidence(format!("{path}/reset_method: bus")),
            ),
            Some(m) => f.push(
                Finding::new(RuleId::ResetMethods, Severity::Info, Effect::None, VM, format!("reset methods offered: {}", m.join(", ")))
                    .evidence(format!("{path}/reset_method")),
            ),
            None => {}
        }
    }
    if g.vendor.map(|v| v.0) == Some(0x1002) {
        if let Some(fam) = g.device.and_then(|d| amd_reset_family(d.0)) {
            match fam {
                ResetFamily::VendorReset(name) => {
                    let loaded = c.s.system.module_loaded("vendor_reset") == Some(true);
                    let device_specific = g.reset.methods.as_ref().is_some_and(|m| m.first().map(String::as_str) == Some("device_specific"));
                    let (sev, msg, fix) = if loaded && device_specific {
                        (Severity::Info, format!("{name}: AMD reset-bug family; vendor-reset is loaded and selected for this GPU"), None)
                    } else if loaded {
                        (
                            Severity::Warning,
                            format!("{name}: AMD reset-bug family; vendor-reset is loaded but not selected for this GPU (kernel 5.15+ needs device_specific in reset_method)"),
                            Some(format!("echo device_specific > /{path}/reset_method (vendor-reset ships udev/99-vendor-reset.rules to do it at boot)")),
                        )
                    } else {
                        (
                            Severity::Warning,
                            format!("{name}: AMD reset-bug family: without vendor-reset the GPU often fails to start a second time after a VM stops"),
                            Some("install vendor-reset (DKMS: github.com/gnif/vendor-reset), load it early (etc/modules-load.d), and on kernel 5.15+ select it with device_specific in reset_method (its udev rule does this); rebuild it after kernel upgrades".into()),
                        )
                    };
                    let mut finding = Finding::new(RuleId::ResetAmdBug, sev, Effect::None, VM, msg)
                        .evidence(format!("{path}: {}; vendor_reset loaded: {loaded}", g.vendor_device().unwrap_or_default()));
                    if let Some(fix) = fix {
                        finding = finding.fix(fix);
                    }
                    f.push(finding);
                }
                ResetFamily::NotCovered(name) => f.push(
                    Finding::new(RuleId::ResetAmdUnsupported, Severity::Warning, Effect::None, VM, format!("{name}: vendor-reset does not cover this generation; users report GPUs that do not come back after a VM stops, until the host reboots"))
                        .evidence(format!("{path}: {}", g.vendor_device().unwrap_or_default()))
                        .fix("test start, stop and start of the VM before relying on it"),
                ),
            }
        }
    }
    // Idle power: vfio-pci puts unused devices in D3, and some GPUs never come back from D3cold.
    if let Some(st) = g
        .power
        .runtime_status
        .as_deref()
        .filter(|s| *s == "suspended")
    {
        f.push(
            Finding::new(
                RuleId::PmSuspended,
                Severity::Info,
                Effect::None,
                &[Use::Vm, Use::Lxc, Use::Host],
                suspended_message(g.power.state.as_deref()),
            )
            .evidence(format!(
                "{path}/power/runtime_status: {st}; {path}/power_state: {}",
                g.power.state.as_deref().unwrap_or("unreadable")
            )),
        );
    }
    // The risk is there until vfio-pci is told to keep the card out of D3 (setup does so
    // whenever the card needs it: the same `needs_disable_idle_d3`).
    if needs_disable_idle_d3(g) && !disable_idle_d3_configured(c.s) {
        f.push(
            Finding::new(RuleId::PmD3coldRisk, Severity::Warning, Effect::None, VM, "GPUs of this family are reported not to return from D3cold once vfio-pci idles them")
                .evidence(format!("{path}/d3cold_allowed: 1"))
                .setup_fix(g.address, &format!("adds {}", crate::plan::setup::describe_vfio_option(c.s, "disable_idle_d3=1"))),
        );
    }
    f
}

/// Whether vfio-pci must keep this card out of D3cold (`disable_idle_d3=1`): an AMD card of a
/// family with the reset bug, whose D3cold the kernel allows.
pub fn needs_disable_idle_d3(g: &crate::model::PciDevice) -> bool {
    let amd_family = g.vendor.map(|v| v.0) == Some(0x1002)
        && g.device.and_then(|d| amd_reset_family(d.0)).is_some();
    amd_family && g.power.d3cold_allowed == Some(true)
}

/// Whether the host's vfio-pci configuration (modprobe.d, or the booted command line where
/// vfio-pci is built in) already gives `disable_idle_d3=1`.
fn disable_idle_d3_configured(s: &crate::model::Snapshot) -> bool {
    let v = &s.vfio_config;
    v.modprobe.iter().any(|d| {
        d.command == "options"
            && crate::formats::modprobe::same_module(&d.module, "vfio-pci")
            && d.args.split_whitespace().any(|a| a == "disable_idle_d3=1")
    }) || v.cmdline_params.iter().any(|p| {
        p.key.replace('-', "_") == "vfio_pci.disable_idle_d3" && p.value.as_deref() == Some("1")
    })
}

/// What a runtime-suspended GPU's power state means. The kernel marks a device without PCI
/// power management suspended too, and it stays in D0 (the e2e lab's emulated card): it is
/// then idle to the kernel, not asleep, and "suspended (power_state D0)" would contradict
/// itself.
fn suspended_message(power_state: Option<&str>) -> String {
    match power_state {
        Some(d3) if d3.starts_with("D3") => format!("the GPU is runtime-suspended, asleep in {d3}"),
        Some(d) => format!(
            "the kernel has runtime-suspended the GPU, but it stays in {d}: it has no lower power state to enter, so it is idle, not asleep"
        ),
        None => "the GPU is runtime-suspended; its power state could not be read".to_string(),
    }
}
