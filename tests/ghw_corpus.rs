//! Real machines' trees from ghw's test data (../shared/corpus/sysfs/ghw, Apache-2.0; see
//! SOURCES.md). Expected values are the ones SOURCES.md records for each machine.

mod common;

use common::*;

fn ghw(name: &str) -> tempfile::TempDir {
    unpack(&corpus().join("sysfs/ghw").join(format!("{name}.tar.gz")))
}

#[test]
fn laptop_groups_come_from_the_device_links() {
    // The i7-1270P snapshot keeps iommu_group links but not sys/kernel/iommu_groups.
    let t = ghw("linux-amd64-415ee03b8c4d1c4f07ae2e9d8b3d3d6d");
    let snap = snapshot(t.path());
    let expected: &[(&str, &[&str])] = &[
        ("0", &["0000:00:02.0"]),
        ("1", &["0000:00:00.0"]),
        ("2", &["0000:00:04.0"]),
        ("3", &["0000:00:06.0"]),
        ("4", &["0000:00:07.0"]),
        ("5", &["0000:00:07.2"]),
        ("6", &["0000:00:08.0"]),
        ("7", &["0000:00:0a.0"]),
        ("8", &["0000:00:0d.0", "0000:00:0d.2", "0000:00:0d.3"]),
        ("9", &["0000:00:14.0", "0000:00:14.2"]),
        ("10", &["0000:00:14.3"]),
        ("11", &["0000:00:15.0", "0000:00:15.1"]),
        ("12", &["0000:00:16.0", "0000:00:16.3"]),
        (
            "13",
            &[
                "0000:00:1f.0",
                "0000:00:1f.3",
                "0000:00:1f.4",
                "0000:00:1f.5",
            ],
        ),
        ("14", &["0000:04:00.0"]),
    ];
    let got = group_listing(&snap);
    let want: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(g, d)| (g.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(got, want);
    assert!(
        snap.issues
            .iter()
            .any(|i| i.path == "sys/kernel/iommu_groups"),
        "the trimmed tree is reported"
    );
    let igpu = snap.gpus().next().unwrap();
    assert_eq!(
        igpu.names.name,
        "Intel Corporation Alder Lake-P Integrated Graphics Controller"
    );
    assert_eq!(igpu.driver.as_deref(), Some("i915"));
}

#[test]
fn datacenter_3d_controller_is_a_gpu_in_a_vm() {
    let t = ghw("linux-amd64-accel-nvidia");
    let snap = snapshot(t.path());
    let p100 = snap.device(&"0000:06:00.0".parse().unwrap()).unwrap();
    assert!(
        p100.is_gpu(),
        "class 0x0302 is a GPU even though its name says 3D controller"
    );
    assert_eq!(p100.class.unwrap().0, 0x030200);
    assert_eq!(
        p100.names.name,
        "NVIDIA Corporation GP100GL [Tesla P100 PCIe 16GB]"
    );
    assert_eq!(p100.driver.as_deref(), Some("nvidia"));
    assert!(snap.system.cpu.hypervisor);
    // The list says why there is no IOMMU: the host is a VM.
    let out = passthru(&["list", "--root", t.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("this host is itself a virtual machine"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn dual_socket_server_numa_and_vfs() {
    let t = ghw("linux-amd64-8581cf3a529e5d8b97ea876eade2f60d");
    let snap = snapshot(t.path());
    assert_eq!(snap.devices.len(), 82);
    let mut nodes: Vec<i32> = snap.devices.iter().filter_map(|d| d.numa_node).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes, vec![-1, 0, 1]);
    let vfs = snap
        .devices
        .iter()
        .filter(|d| d.driver.as_deref() == Some("igbvf"))
        .count();
    assert_eq!(vfs, 8);
    let bmc = snap.gpus().next().unwrap();
    assert_eq!(bmc.vendor.unwrap().0, 0x102b);
    assert_eq!(
        bmc.names.name,
        "Matrox Electronics Systems Ltd. MGA G200eW WPCM450"
    );
}

#[test]
fn desktop_radeon_has_a_drm_card() {
    let t = ghw("linux-amd64-61797caf7c0b6bca1725ad7975ed4773");
    let snap = snapshot(t.path());
    let gpu = snap.gpus().next().unwrap();
    assert_eq!(gpu.address.to_string(), "0000:0a:00.0");
    assert_eq!(
        gpu.names.device.as_deref(),
        Some("Turks XT [Radeon HD 6670/7670]")
    );
    assert_eq!(
        gpu.parents
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec!["0000:00:03.1"]
    );
    assert_eq!(snap.drm.len(), 1);
    assert_eq!(snap.drm[0].device, Some(gpu.address));
}

#[test]
fn a_machine_without_pci_lists_nothing_and_succeeds() {
    let t = ghw("linux-amd64-offlineCPUs");
    let out = passthru(&["list", "--root", t.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("No PCI devices found"),
        "{}",
        stdout(&out)
    );
}
