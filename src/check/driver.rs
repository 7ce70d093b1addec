//! Driver state: what each function is bound to, whether the group is viable for vfio, what
//! a blacklist or an `ids=` line would also hit, and what host and container use need.

use super::{describe, Ctx, Effect, Finding, RuleId, Severity, Use};

const VM: &[Use] = &[Use::Vm];

fn on_vfio(d: &crate::model::PciDevice) -> bool {
    d.driver.as_deref() == Some("vfio-pci")
}

pub(super) fn check_driver(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let s = c.s;
    let bound: Vec<String> = c
        .functions
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.address,
                d.driver.as_deref().unwrap_or("no driver")
            )
        })
        .collect();

    // VM: every function on vfio-pci, and the groups viable (no member on a host driver).
    let not_vfio: Vec<&crate::model::PciDevice> = c
        .functions
        .iter()
        .copied()
        .filter(|d| !on_vfio(d))
        .collect();
    if not_vfio.is_empty() {
        let members = c.group_members();
        let blocking: Vec<String> = members
            .iter()
            .filter_map(|a| s.device(a))
            .filter(|d| {
                !d.is_bridge()
                    && !on_vfio(d)
                    && d.driver.as_deref().is_some_and(|drv| drv != "pci-stub")
            })
            .map(|d| describe(s, &d.address))
            .collect();
        if blocking.is_empty() {
            f.push(
                Finding::new(
                    RuleId::VfioBound,
                    Severity::Info,
                    Effect::None,
                    VM,
                    "every function of the card is bound to vfio-pci and its groups are viable",
                )
                .evidence(bound.join("; ")),
            );
        }
        // A non-viable group is reported by group.shared already.
    } else {
        f.push(
            Finding::new(
                RuleId::VfioNotBound,
                Severity::Warning,
                Effect::NeedsSetup,
                VM,
                format!(
                    "{} of the card's functions are not bound to vfio-pci yet",
                    not_vfio.len()
                ),
            )
            .evidence(bound.join("; "))
            .fix(format!("passthru setup vm {}", c.gpu.address)),
        );
    }

    // The GPU's host driver also serves devices outside this card: a blacklist would take it
    // from them too.
    for func in &c.functions {
        let Some(drv) = func.driver.as_deref().filter(|d| *d != "vfio-pci") else {
            continue;
        };
        let others: Vec<String> = s
            .devices
            .iter()
            .filter(|d| !d.address.same_slot(&c.gpu.address) && d.driver.as_deref() == Some(drv))
            .map(|d| describe(s, &d.address))
            .collect();
        if !others.is_empty() {
            f.push(
                Finding::new(RuleId::DriverShared, Severity::Warning, Effect::None, VM, format!("{drv} also drives {} other device(s): blacklisting {drv} would take it from them; passthru binds this card by address instead", others.len()))
                    .evidence(others.join("; "))
                    .fix(format!("never blacklist {drv}; passthru setup uses softdep {drv} pre: vfio-pci with per-device binding")),
            );
        }
    }

    // What an ids= line for this card would also capture (identical cards, shared audio ids).
    let mut captured = Vec::new();
    for func in &c.functions {
        let Some(vd) = func.vendor_device() else {
            continue;
        };
        for d in s
            .devices
            .iter()
            .filter(|d| !d.address.same_slot(&c.gpu.address))
        {
            if d.vendor_device().as_deref() == Some(vd.as_str()) {
                captured.push(format!("{vd}: {}", describe(s, &d.address)));
            }
        }
    }
    if !captured.is_empty() {
        f.push(
            Finding::new(RuleId::IdsCapture, Severity::Warning, Effect::None, VM, "vfio-pci ids= for this card would also capture other devices with the same ids; passthru binds by address (driver_override) instead")
                .evidence(captured.join("; ")),
        );
    }
    // Existing ids= configuration that captures devices beyond this card.
    let configured = &s.vfio_config.vfio_pci_ids;
    if !configured.is_empty() {
        let extra: Vec<String> = s
            .devices
            .iter()
            .filter(|d| !d.address.same_slot(&c.gpu.address))
            .filter(|d| d.vendor_device().is_some_and(|vd| configured.contains(&vd)))
            .map(|d| describe(s, &d.address))
            .collect();
        if !extra.is_empty() {
            let files: Vec<String> = s
                .vfio_config
                .modprobe
                .iter()
                .filter(|m| m.args.contains("ids="))
                .map(|m| format!("{}:{}", m.file, m.line))
                .collect();
            f.push(
                Finding::new(RuleId::IdsConfiguredCapture, Severity::Warning, Effect::None, &[Use::Vm, Use::Lxc, Use::Host], format!("the vfio-pci ids already configured ({}) also claim devices outside this card", configured.join(",")))
                    .evidence(format!("{}; {}", files.join(", "), extra.join("; ")))
                    .fix("replace the ids= line with per-device binding (passthru setup vm GPU does)"),
            );
        }
    }

    // Host and container use need the card on its own driver.
    let gpu_drv = c.gpu.driver.as_deref();
    let host_uses = &[Use::Lxc, Use::Host];
    match gpu_drv {
        Some("vfio-pci") => f.push(
            Finding::new(RuleId::HostOnVfio, Severity::Warning, Effect::NeedsSetup, host_uses, "the GPU is bound to vfio-pci, so the host cannot use it")
                .evidence(format!("sys/bus/pci/devices/{}/driver -> vfio-pci", c.gpu.address))
                .fix(format!("passthru setup host {}", c.gpu.address)),
        ),
        None => f.push(
            Finding::new(RuleId::HostNoDriver, Severity::Warning, Effect::Blocks, host_uses, "no driver is bound to the GPU: the host cannot use it until its driver is installed and loaded")
                .evidence(format!("sys/bus/pci/devices/{}/driver: absent", c.gpu.address))
                .fix(match c.gpu.vendor.map(|v| v.0) {
                    Some(0x10de) => "install the NVIDIA driver (or nouveau), then passthru setup host GPU",
                    Some(0x1002) => "load amdgpu (firmware-amd-graphics on Debian), then passthru setup host GPU",
                    Some(0x8086) => "load i915 or xe, then passthru setup host GPU",
                    _ => "install and load the GPU's driver",
                }),
        ),
        Some(d) => f.push(
            Finding::new(RuleId::HostDriver, Severity::Info, Effect::None, host_uses, format!("the GPU is on its host driver ({d})"))
                .evidence(format!("sys/bus/pci/devices/{}/driver -> {d}", c.gpu.address)),
        ),
    }
    f
}
