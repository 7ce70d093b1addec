//! Real-kernel fixtures: sysfs trees a real Debian 6.1 kernel made under QEMU with an
//! emulated Intel or AMD IOMMU (scripts/qemu-lab). The expected values are what the *guest*
//! printed about itself (its own lspci and group listing), not anything passthru computed.

mod common;

use std::collections::BTreeMap;

use common::*;
use passthru::model::{IommuVendor, IrqRemapping};

/// `groups.txt`: `<group> <BDF>` per line, as the guest listed sys/kernel/iommu_groups.
fn expected_groups(dir: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(dir.join("groups.txt")).unwrap();
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (g, bdf) = line.split_once(' ').unwrap();
        m.entry(g.to_string()).or_default().push(bdf.to_string());
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

#[test]
fn groups_match_what_the_guest_kernel_listed() {
    for (name, dir) in qemu_fixtures() {
        let root = unpacked(&dir.join("root.tar.gz"));
        let snap = snapshot(&root);
        let got: BTreeMap<String, Vec<String>> = group_listing(&snap).into_iter().collect();
        assert_eq!(
            got,
            expected_groups(&dir),
            "{name}: groups differ from the guest's listing"
        );
        // And each device's own link agrees with its group's listing.
        for g in &snap.groups {
            for a in &g.devices {
                assert_eq!(
                    snap.device(a).unwrap().iommu_group.as_deref(),
                    Some(g.id.as_str()),
                    "{name} {a}"
                );
            }
        }
        let types = std::fs::read_to_string(dir.join("group-types.txt")).unwrap();
        for line in types.lines() {
            let (g, t) = line.split_once(' ').unwrap();
            assert_eq!(
                snap.group(g).unwrap().kind.as_deref(),
                Some(t),
                "{name} group {g} type"
            );
        }
    }
}

#[test]
fn names_classes_and_drivers_match_the_guests_lspci() {
    for (name, dir) in qemu_fixtures() {
        let root = unpacked(&dir.join("root.tar.gz"));
        let snap = snapshot(&root);
        let guest = parse_lspci_nnk(&std::fs::read_to_string(dir.join("lspci-nnk.txt")).unwrap());
        assert_eq!(guest.len(), snap.devices.len(), "{name}: device count");
        for (g, d) in guest.iter().zip(&snap.devices) {
            let ctx = format!("{name} {}", g.address);
            assert_eq!(d.address.to_string(), g.address, "{ctx}");
            assert_eq!(
                format!("{:04x}", d.class.unwrap().class16()),
                g.class4,
                "{ctx} class"
            );
            assert_eq!(d.names.class, g.class_name, "{ctx} class name");
            assert_eq!(d.names.name, g.name, "{ctx} name");
            assert_eq!(d.vendor.unwrap().to_string(), g.vendor, "{ctx} vendor");
            assert_eq!(d.device.unwrap().to_string(), g.device, "{ctx} device");
            assert_eq!(d.driver, g.driver, "{ctx} driver");
            assert_eq!(d.names.subsystem, g.subsystem, "{ctx} subsystem name");
            if let Some(rev) = &g.rev {
                assert_eq!(
                    format!("{:02x}", d.revision.unwrap()),
                    *rev,
                    "{ctx} revision"
                );
            }
        }
    }
}

#[test]
fn iommu_kind_units_and_interrupt_remapping_are_read() {
    for (name, dir) in qemu_fixtures() {
        let root = unpacked(&dir.join("root.tar.gz"));
        let snap = snapshot(&root);
        let iommu = &snap.iommu;
        assert!(iommu.active(), "{name}");
        assert_eq!(
            iommu.irq_remapping,
            IrqRemapping::Enabled,
            "{name}: the guest ran with intremap=on"
        );
        if name.starts_with("intel") {
            assert_eq!(iommu.vendor(), Some(IommuVendor::Intel), "{name}");
            assert_eq!(iommu.firmware_tables, vec!["DMAR"], "{name}");
            assert_eq!(iommu.units[0].name, "dmar0", "{name}");
        } else {
            assert_eq!(iommu.vendor(), Some(IommuVendor::Amd), "{name}");
            assert_eq!(iommu.firmware_tables, vec!["IVRS"], "{name}");
            assert_eq!(iommu.units[0].name, "ivhd0", "{name}");
            // The AMD IOMMU is itself a PCI function, and the only one in no group.
            let ungrouped: Vec<String> = snap.ungrouped().map(|d| d.address.to_string()).collect();
            assert_eq!(ungrouped, vec!["0000:00:01.0"], "{name}");
        }
        assert_eq!(
            snap.system.kernel_release.as_deref(),
            Some("6.1.0-57-amd64"),
            "{name}"
        );
        assert!(
            snap.system
                .cmdline_params
                .iter()
                .any(|p| p.key == "iommu" && p.value.as_deref() == Some("pt")),
            "{name}"
        );
        assert!(
            snap.system.module_loaded("vfio_pci").unwrap(),
            "{name}: the guest loaded vfio_pci"
        );
    }
}

#[test]
fn topology_parents_boot_vga_and_reset_methods() {
    let fixtures: BTreeMap<String, std::path::PathBuf> = qemu_fixtures().into_iter().collect();
    // Behind a PCIe switch: root port -> upstream port -> downstream port -> NVMe.
    let root = unpacked(&fixtures["intel-switch"].join("root.tar.gz"));
    let snap = snapshot(&root);
    let nvme = snap
        .devices
        .iter()
        .find(|d| d.class.is_some_and(|c| c.class16() == 0x0108))
        .unwrap();
    let chain: Vec<String> = nvme.parents.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        chain.len(),
        3,
        "root port, upstream and downstream port above {}: {chain:?}",
        nvme.address
    );
    assert!(nvme
        .parents
        .iter()
        .all(|p| snap.device(p).unwrap().is_bridge()));

    // Flat: the VGA is the boot device and has no reset method on the root complex;
    // bochs-display (0x0380) is a GPU without a boot_vga file.
    let root = unpacked(&fixtures["intel-flat"].join("root.tar.gz"));
    let snap = snapshot(&root);
    let vga = snap.device(&"0000:00:02.0".parse().unwrap()).unwrap();
    assert_eq!(vga.boot_vga, Some(true));
    assert_eq!(vga.reset.methods, None);
    assert!(vga.parents.is_empty());
    let bochs = snap
        .devices
        .iter()
        .find(|d| d.class.is_some_and(|c| c.0 == 0x038000))
        .unwrap();
    assert!(bochs.is_gpu());
    assert_eq!(bochs.boot_vga, None);
    let nvme = snap
        .devices
        .iter()
        .find(|d| d.driver.as_deref() == Some("nvme"))
        .unwrap();
    assert_eq!(
        nvme.reset.methods.as_deref(),
        Some(&["flr".to_string()][..])
    );

    // Behind a root port the kernel adds a bus reset.
    let root = unpacked(&fixtures["intel-rootports"].join("root.tar.gz"));
    let snap = snapshot(&root);
    let nvme = snap
        .devices
        .iter()
        .find(|d| d.driver.as_deref() == Some("nvme"))
        .unwrap();
    assert!(nvme
        .reset
        .methods
        .as_ref()
        .unwrap()
        .contains(&"bus".to_string()));

    // Conventional PCI behind a PCIe-to-PCI bridge: ati-vga has no driver and boot_vga 0.
    let root = unpacked(&fixtures["intel-bridges"].join("root.tar.gz"));
    let snap = snapshot(&root);
    let ati = snap
        .devices
        .iter()
        .find(|d| d.vendor.is_some_and(|v| v.0 == 0x1002))
        .unwrap();
    assert_eq!(ati.driver, None);
    assert_eq!(ati.boot_vga, Some(false));
}

#[test]
fn vfio_bound_functions_are_seen_as_such() {
    let fixtures: BTreeMap<String, std::path::PathBuf> = qemu_fixtures().into_iter().collect();
    let root = unpacked(&fixtures["intel-flat-vfio"].join("root.tar.gz"));
    let snap = snapshot(&root);
    for a in ["0000:00:02.0", "0000:00:02.1"] {
        let d = snap.device(&a.parse().unwrap()).unwrap();
        assert_eq!(d.driver.as_deref(), Some("vfio-pci"), "{a}");
        assert_eq!(d.driver_module.as_deref(), Some("vfio_pci"), "{a}");
        assert_eq!(d.driver_override.as_deref(), Some("vfio-pci"), "{a}");
    }
    // Unbound in the plain capture: no override.
    let root = unpacked(&fixtures["intel-flat"].join("root.tar.gz"));
    let snap = snapshot(&root);
    let d = snap.device(&"0000:00:02.0".parse().unwrap()).unwrap();
    assert_eq!(d.driver_override, None);
    assert_ne!(d.driver.as_deref(), Some("vfio-pci"));
}
