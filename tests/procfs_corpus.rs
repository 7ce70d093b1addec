//! prometheus/procfs's fixture archive (../shared/corpus/sysfs/procfs-fixtures.ttar,
//! Apache-2.0): real attribute files for three PCI functions that ghw's trees lack (config,
//! reset_method, power, link speeds, SR-IOV). Expected values are those SOURCES.md records.

mod common;

use common::*;

#[test]
fn three_functions_with_reset_link_and_sriov_attributes() {
    let t = unpack_ttar(&corpus().join("sysfs/procfs-fixtures.ttar"));
    let root = t.path().join("fixtures");
    let snap = snapshot(&root);
    let addrs: Vec<String> = snap.devices.iter().map(|d| d.address.to_string()).collect();
    assert_eq!(addrs, vec!["0000:00:02.1", "0000:01:00.0", "0000:a2:00.0"]);

    let bridge = &snap.devices[0];
    assert_eq!(bridge.class.unwrap().0, 0x060400);
    assert!(bridge.is_bridge());
    assert_eq!(bridge.vendor_device().as_deref(), Some("1022:1634"));
    assert_eq!(
        (
            bridge.subsystem_vendor.unwrap().0,
            bridge.subsystem_device.unwrap().0
        ),
        (0x17aa, 0x5095)
    );
    assert_eq!(bridge.driver.as_deref(), Some("pcieport"));
    assert_eq!(bridge.iommu_group.as_deref(), Some("2"));
    assert_eq!(bridge.reset.methods, Some(vec!["pm".to_string()]));

    let nvme = &snap.devices[1];
    assert_eq!(nvme.class.unwrap().0, 0x010802);
    assert_eq!(nvme.driver.as_deref(), Some("nvme"));
    assert_eq!(nvme.iommu_group.as_deref(), Some("11"));
    assert_eq!(
        nvme.reset.methods,
        Some(vec!["flr".to_string(), "bus".to_string()])
    );
    assert_eq!(nvme.link.current_speed.as_deref(), Some("8.0 GT/s PCIe"));
    assert_eq!(nvme.link.current_width.as_deref(), Some("4"));

    let nic = &snap.devices[2];
    assert_eq!(nic.vendor_device().as_deref(), Some("8086:159b"));
    assert_eq!(nic.driver.as_deref(), Some("ice"));
    assert_eq!(nic.sriov.as_ref().and_then(|s| s.total_vfs), Some(128));
    assert_eq!(nic.link.current_speed.as_deref(), Some("16.0 GT/s PCIe"));
    assert_eq!(nic.link.current_width.as_deref(), Some("8"));

    // The archive has no sys/kernel: groups come from the links, and say so.
    assert_eq!(
        snap.groups
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        vec!["2", "11"]
    );
    assert!(snap
        .issues
        .iter()
        .any(|i| i.path == "sys/kernel/iommu_groups"));
    // Only drivers/amdgpu and drivers/i915 exist in the archive: the nvme and ice links
    // dangle, which is reported while the driver is still named.
    for d in [nvme, nic] {
        assert!(
            d.issues
                .iter()
                .any(|i| i.path.ends_with("/driver") && i.problem.contains("points to nothing")),
            "{}: {:?}",
            d.address,
            d.issues
        );
    }
    // And list runs to the end on it.
    let out = passthru(&["list", "--root", root.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("0000:a2:00.0"));
}
