//! Group isolation, the card's functions, and the host's own devices.
//!
//! The kernel's groups are the verdict (docs/domain-facts.md §5): a GPU can be assigned when
//! other member of its groups is one of its own functions or a bridge; bridges and root ports
//! are never obstacles (flagging them is a known false positive of other tools).

use super::{describe, Ctx, Effect, Finding, RuleId, Severity, Use};
use crate::model::{PciDevice, Snapshot};
use crate::output::words::{agree, count};

const VM: &[Use] = &[Use::Vm];

pub(super) fn check_isolation(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let s = c.s;
    if !s.iommu.active() {
        return f; // platform rules already block VM use
    }
    let Some(group) = c.gpu.iommu_group.as_deref() else {
        f.push(
            Finding::new(
                RuleId::GroupNone,
                Severity::Error,
                Effect::Unknown,
                VM,
                "the IOMMU is on but this GPU is in no IOMMU group",
            )
            .evidence(format!(
                "sys/bus/pci/devices/{}/iommu_group: absent",
                c.gpu.address
            )),
        );
        return f;
    };

    // The card's other functions go with it.
    let others: Vec<String> = c
        .functions
        .iter()
        .skip(1)
        .map(|d| describe(s, &d.address))
        .collect();
    if !others.is_empty() {
        f.push(
            Finding::new(
                RuleId::SlotFunctions,
                Severity::Info,
                Effect::None,
                VM,
                format!(
                    "the card has {}; {} to the VM together with the GPU",
                    count(others.len(), "more function", "more functions"),
                    agree(others.len(), "it goes", "they go")
                ),
            )
            .evidence(others.join("; ")),
        );
    }
    let groups = c.groups();
    if groups.len() > 1 {
        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        f.push(
            Finding::new(
                RuleId::SlotSplitGroups,
                Severity::Info,
                Effect::None,
                VM,
                format!(
                    "the card's functions are in {} groups ({}); each must be clean",
                    groups.len(),
                    ids.join(", ")
                ),
            )
            .evidence("iommu_group links of the card's functions"),
        );
    }

    // Other endpoints in any of those groups.
    let mut intruders = Vec::new();
    for g in &groups {
        for a in &g.devices {
            if a.same_slot(&c.gpu.address) {
                continue;
            }
            match s.device(a) {
                Some(d) if d.is_bridge() => {}
                _ => intruders.push((g.id.clone(), *a)),
            }
        }
    }
    if intruders.is_empty() {
        f.push(
            Finding::new(
                RuleId::GroupIsolated,
                Severity::Info,
                Effect::None,
                VM,
                format!("IOMMU group {group} holds only this card's functions and bridges"),
            )
            .evidence(format!("sys/kernel/iommu_groups/{group}/devices")),
        );
    } else {
        let list: Vec<String> = intruders
            .iter()
            .map(|(g, a)| format!("group {g}: {}", describe(s, a)))
            .collect();
        f.push(
            Finding::new(RuleId::GroupShared, Severity::Error, Effect::Blocks, VM, format!(
                "the card shares its IOMMU group with {}: {} would have to go to the VM too",
                count(intruders.len(), "other device", "other devices"),
                agree(intruders.len(), "it", "all of them")
            ))
                .evidence(list.join("; "))
                .fix("put the card in a slot wired to the CPU (one whose root port forms its own group), or give the VM every listed device as well. The ACS override (pcie_acs_override=, an out-of-tree patch carried by Proxmox kernels) only pretends the devices are isolated: it weakens the isolation between the VM and them"),
        );
    }

    // The host's own devices.
    let members = c.group_members();
    let u = &s.host_usage;
    let safety = |id: RuleId, msg: String, evidence: String, force: bool| {
        debug_assert!(id.forceable());
        let (sev, eff) = if force {
            (Severity::Warning, Effect::None)
        } else {
            (Severity::Error, Effect::Blocks)
        };
        Finding::new(id, sev, eff, VM, msg).evidence(evidence)
    };
    // The host's boot disk controller and the network device of its default route.
    let host_devices = [
        (
            RuleId::SafetyBootDisk,
            &u.boot_disk_controllers,
            &u.boot_disk_evidence,
            "the card's group holds the controller of the host's root filesystem: giving it to a VM takes the host's boot disk away",
            "move the card or the disk to another slot so they are in different groups (--force overrides this check)",
        ),
        (
            RuleId::SafetyNetwork,
            &u.default_route_devices,
            &u.default_route_evidence,
            "the card's group holds the network device of the host's default route: the host would lose its network",
            "use another network port or slot so they are in different groups (--force overrides this check)",
        ),
    ];
    for (rule, devices, evidence, msg, fix) in host_devices {
        let taken: Vec<String> = devices
            .iter()
            .filter(|a| members.contains(a))
            .map(|a| describe(s, a))
            .collect();
        if !taken.is_empty() {
            let evidence = format!(
                "{}; {}",
                taken.join("; "),
                evidence.clone().unwrap_or_default()
            );
            f.push(safety(rule, msg.into(), evidence, c.force).fix(fix));
        }
    }
    // Another GPU keeps the host's screen only if it can drive one and has a host driver: a
    // 3D controller (class 0302, a Tesla P40) has no outputs, and a GPU on vfio-pci or with
    // no driver shows nothing.
    let other_display = s.gpus().any(|g| {
        !g.address.same_slot(&c.gpu.address)
            && g.driver
                .as_deref()
                .is_some_and(|d| d != "vfio-pci" && d != "pci-stub")
            && drives_a_display(s, g)
    });
    let is_console = c.gpu.boot_vga == Some(true);
    if is_console && !other_display {
        f.push(
            safety(
                RuleId::SafetyOnlyDisplay,
                "this is the host's only display GPU and its boot console: passing it through leaves the host without a screen".into(),
                format!("sys/bus/pci/devices/{}/boot_vga: 1; no other GPU that can drive a display (VGA class, or a DRM card with connectors) has a host driver", c.gpu.address),
                c.force,
            )
            .fix("add a second GPU (or enable the CPU's iGPU) for the host; or, for single-GPU passthrough, use --force and manage the host over the network"),
        );
    }
    f
}

/// Whether the host can show a screen on `d`: a VGA-class device (0300), or any other GPU
/// whose DRM card has connectors (a 0380 display controller with outputs). docs/domain-facts.md
/// §4: only VGA-class devices get `boot_vga`, so the connectors are the other evidence.
fn drives_a_display(s: &Snapshot, d: &PciDevice) -> bool {
    d.class.is_some_and(|c| c.is_vga())
        || s.drm
            .iter()
            .any(|card| card.device == Some(d.address) && !card.connectors.is_empty())
}
