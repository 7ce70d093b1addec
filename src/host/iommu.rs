//! IOMMU groups, active IOMMU units, firmware tables and interrupt-remapping evidence.
//! Read-only; nothing here needs root.

use crate::model::{
    compare_group_ids, IommuGroup, IommuState, IommuUnit, IommuVendor, IrqRemapping, Issue,
    PciAddress,
};

use super::root::{FileRead, HostRoot};

pub const IOMMU_GROUPS: &str = "sys/kernel/iommu_groups";

/// Reads `sys/kernel/iommu_groups/*`. Group names are opaque (`noiommu-0` exists), so they
/// are kept as strings and sorted numerically where they are numbers. A server has thousands
/// of groups, so they are read in parallel like the devices.
pub fn read_iommu_groups(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<IommuGroup> {
    let ids = root.list_dir(IOMMU_GROUPS, issues);
    let mut groups = Vec::with_capacity(ids.len());
    for (group, mut found) in super::par_map(&ids, |id| read_group(root, id)) {
        issues.append(&mut found);
        groups.extend(group);
    }
    groups.sort_by(|a, b| compare_group_ids(&a.id, &b.id));
    groups
}

fn read_group(root: &HostRoot, id: &str) -> (Option<IommuGroup>, Vec<Issue>) {
    let mut issues = Vec::new();
    let dir = format!("{IOMMU_GROUPS}/{id}");
    let devices_dir = format!("{dir}/devices");
    // Listing `devices` first also tells whether the group directory is sound, without a
    // separate stat per group.
    let entries = match root.read_dir_names(&devices_dir) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(20) => {
            issues.push(Issue::new(dir, "not a directory; skipped"));
            return (None, issues);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !root.is_dir(&dir) {
                issues.push(Issue::new(dir, "not a directory; skipped"));
                return (None, issues);
            }
            issues.push(Issue::new(
                &devices_dir,
                "missing: the group's members are unknown",
            ));
            Vec::new()
        }
        Err(e) => {
            issues.push(Issue::new(&devices_dir, format!("cannot list: {e}")));
            Vec::new()
        }
    };
    let mut devices = Vec::new();
    let mut mdevs = Vec::new();
    for entry in entries {
        match entry.parse::<PciAddress>() {
            Ok(a) => devices.push(a),
            Err(_) if root.exists(&format!("{}/{entry}", super::sharing::MDEV_DEVICES)) => {
                mdevs.push(entry)
            }
            Err(e) => issues.push(Issue::new(
                format!("{devices_dir}/{entry}"),
                format!("skipped: {e}"),
            )),
        }
    }
    devices.sort();
    let kind = root
        .read_noting(&format!("{dir}/type"), &mut issues)
        .map(|t| t.trim().to_string());
    let name = root
        .read_noting(&format!("{dir}/name"), &mut issues)
        .map(|t| t.trim().to_string());
    (
        Some(IommuGroup {
            id: id.to_string(),
            kind,
            name,
            devices,
            mdevs,
        }),
        issues,
    )
}

/// Reads the IOMMU state. `groups` are the groups already read (their count is evidence).
pub fn read_iommu_state(
    root: &HostRoot,
    groups: &[IommuGroup],
    issues: &mut Vec<Issue>,
) -> IommuState {
    let firmware_tables = ["DMAR", "IVRS"]
        .into_iter()
        .filter(|t| root.exists(&format!("sys/firmware/acpi/tables/{t}")))
        .map(str::to_string)
        .collect();

    let mut units = Vec::new();
    for name in root.list_dir("sys/class/iommu", issues) {
        let vendor = if name.starts_with("dmar") {
            IommuVendor::Intel
        } else if name.starts_with("ivhd") {
            IommuVendor::Amd
        } else {
            IommuVendor::Other
        };
        let ir_capable = if vendor == IommuVendor::Intel {
            read_ecap_ir(root, &name, issues)
        } else {
            None
        };
        units.push(IommuUnit {
            name,
            vendor,
            ir_capable,
        });
    }

    let (irq_remapping, irq_remapping_evidence) = read_irq_remapping(root, issues);
    let allow_unsafe_interrupts = root
        .read_noting(
            "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            issues,
        )
        .and_then(|t| match t.trim() {
            "Y" | "1" => Some(true),
            "N" | "0" => Some(false),
            other => {
                issues.push(Issue::new(
                    "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
                    format!("expected Y or N, found '{other}'"),
                ));
                None
            }
        });

    IommuState {
        firmware_tables,
        units,
        group_count: groups.iter().filter(|g| !g.is_noiommu()).count(),
        irq_remapping,
        irq_remapping_evidence,
        allow_unsafe_interrupts,
    }
}

/// Bit 3 of the VT-d extended capability register: the unit supports interrupt remapping.
fn read_ecap_ir(root: &HostRoot, unit: &str, issues: &mut Vec<Issue>) -> Option<bool> {
    let rel = format!("sys/class/iommu/{unit}/intel-iommu/ecap");
    let text = root.read_noting(&rel, issues)?;
    match u64::from_str_radix(text.trim().trim_start_matches("0x"), 16) {
        Ok(v) => Some(v & (1 << 3) != 0),
        Err(_) => {
            issues.push(Issue::new(
                rel,
                format!("not a hex number: '{}'", text.trim()),
            ));
            None
        }
    }
}

/// Interrupt remapping is in effect when interrupt chips are named `IR-...` in
/// `proc/interrupts` (readable without root, unlike dmesg on many hosts).
fn read_irq_remapping(root: &HostRoot, issues: &mut Vec<Issue>) -> (IrqRemapping, Option<String>) {
    let text = match root.read("proc/interrupts") {
        FileRead::Text(t) => t,
        FileRead::Missing => return (IrqRemapping::Unknown, None),
        FileRead::Failed(why) => {
            issues.push(Issue::new("proc/interrupts", why));
            return (IrqRemapping::Unknown, None);
        }
    };
    let mut saw_chip = None;
    for line in text.lines() {
        for word in line.split_whitespace() {
            if word.starts_with("IR-") {
                return (
                    IrqRemapping::Enabled,
                    Some(format!("proc/interrupts: chip {word}")),
                );
            }
            if saw_chip.is_none() && (word.contains("PCI-MSI") || word == "IO-APIC") {
                saw_chip = Some(word.to_string());
            }
        }
    }
    match saw_chip {
        Some(chip) => (
            IrqRemapping::NotSeen,
            Some(format!("proc/interrupts: chip {chip} without IR- prefix")),
        ),
        None => (IrqRemapping::Unknown, None),
    }
}
