//! `vm attach --vf/--mdev` and the detach of a VF, on fixture roots with Proxmox guest
//! configs written beside them: which VF is picked, what is refused, and that rollback puts
//! the configs back byte for byte.

mod common;

use std::path::Path;

use common::*;

const VM100: &str = "boot: order=scsi0\ncores: 4\nmachine: q35\nbios: ovmf\nmemory: 4096\nname: desk\nostype: l26\nhostpci0: 0000:00:02.1,pcie=1\nscsi0: local-lvm:vm-100-disk-0,size=32G\n";
const VM101: &str = "cores: 2\nmachine: q35\nbios: ovmf\nmemory: 2048\nname: media\nostype: l26\nscsi0: local-lvm:vm-101-disk-0,size=32G\n";

fn host_with_vms(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    let q = dir.path().join("etc/pve/qemu-server");
    std::fs::create_dir_all(&q).unwrap();
    std::fs::write(q.join("100.conf"), VM100).unwrap();
    std::fs::write(q.join("101.conf"), VM101).unwrap();
    dir
}

fn conf(root: &Path, vmid: u32) -> String {
    std::fs::read_to_string(root.join(format!("etc/pve/qemu-server/{vmid}.conf"))).unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn refused(o: &std::process::Output, why: &str) {
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(why), "{err}");
}

#[test]
fn vf_auto_picks_a_vf_no_vm_names_and_rollback_undoes_it() {
    let h = host_with_vms("intel-adl-sriov");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &["vm", "attach", "101", "00:02.0", "--vf", "auto", "--yes"],
    ));
    // VM 100 has 00:02.1: the next one, exactly by function.
    assert!(
        conf(root, 101).contains("hostpci0: 0000:00:02.2,pcie=1\n"),
        "{}",
        conf(root, 101)
    );
    assert_eq!(conf(root, 100), VM100);
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(conf(root, 101), VM101);

    // By number: VF 0 is VM 100's.
    refused(
        &passthru_fixed(
            root,
            &["vm", "attach", "101", "00:02.0", "--vf", "0", "--dry-run"],
        ),
        "VF 0000:00:02.1 is already used by VM 100",
    );
    refused(
        &passthru_fixed(
            root,
            &["vm", "attach", "101", "00:02.0", "--vf", "5", "--dry-run"],
        ),
        "has 2 VFs (virtfn0..virtfn1): no virtfn5",
    );
    // Both taken: auto has nothing left.
    ok(&passthru_fixed(
        root,
        &["vm", "attach", "101", "00:02.0", "--vf", "1", "--yes"],
    ));
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "00:02.0",
                "--vf",
                "auto",
                "--dry-run",
            ],
        ),
        "no free VF of 0000:00:02.0",
    );
    // The PF itself is refused while it has VFs.
    refused(
        &passthru_fixed(
            root,
            &["vm", "attach", "101", "00:02.0", "--force", "--dry-run"],
        ),
        "shared.pf-split",
    );
    // Detaching VF 2 from VM 101 leaves VM 100's VF 1 (same slot) alone.
    ok(&passthru_fixed(
        root,
        &["vm", "detach", "101", "00:02.2", "--yes"],
    ));
    assert!(!conf(root, 101).contains("hostpci"));
    assert_eq!(conf(root, 100), VM100);
}

#[test]
fn mdev_types_need_a_free_instance() {
    let h = host_with_vms("nvidia-vgpu-mdev");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "03:00.0",
            "--mdev",
            "nvidia-47",
            "--yes",
        ],
    ));
    assert!(conf(root, 101).contains("hostpci0: 0000:03:00.0,pcie=1,mdev=nvidia-47\n"));
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "03:00.0",
                "--mdev",
                "nvidia-46",
                "--dry-run",
            ],
        ),
        "nvidia-46 on 0000:03:00.0 has no instance free (available_instances 0)",
    );
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "03:00.0",
                "--mdev",
                "nvidia-99",
                "--dry-run",
            ],
        ),
        "offers no mdev type 'nvidia-99'; it offers nvidia-46, nvidia-47",
    );
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "81:00.0",
                "--mdev",
                "nvidia-47",
                "--dry-run",
            ],
        ),
        "(it offers none)",
    );
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(conf(root, 101), VM101);
}

#[test]
fn nvidia_vgpu_types_go_on_a_free_vf_that_can_take_them() {
    let h = host_with_vms("nvidia-vgpu-vfio");
    let root = h.path();
    // 05:00.4 holds type 923 already; 05:00.5 is free and lists 923 and 924.
    ok(&passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "05:00.0",
            "--mdev",
            "nvidia-924",
            "--yes",
        ],
    ));
    assert!(conf(root, 101).contains("hostpci0: 0000:05:00.5,pcie=1,mdev=nvidia-924\n"));
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "05:00.0",
                "--mdev",
                "nvidia-924",
                "--vf",
                "0",
                "--dry-run",
            ],
        ),
        "VF 0000:05:00.4 cannot take the requested type now",
    );
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "05:00.0",
                "--vf",
                "auto",
                "--dry-run",
            ],
        ),
        "NVIDIA's VFs carry a vGPU type: give --mdev nvidia-ID",
    );
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "05:00.0",
                "--mdev",
                "grid-1",
                "--dry-run",
            ],
        ),
        "is not an NVIDIA vGPU type",
    );
}

#[test]
fn list_gpus_shows_each_pf_with_its_vfs_and_their_users() {
    let h = host_with_vms("intel-adl-sriov");
    let o = passthru_fixed(h.path(), &["list", "--gpus"]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("    2 virtual functions:\n      0000:00:02.1  vfio-pci  group 20  used by VM 100\n      0000:00:02.2  i915  group 21  free\n"), "{text}");
    // A VF is listed under its PF, not as a GPU of its own.
    assert!(!text.contains("* 0000:00:02.1"), "{text}");
    let o = passthru_fixed(h.path(), &["list", "--gpus", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["gpus"].as_array().unwrap().len(), 1);
    assert_eq!(v["gpus"][0]["vfs"][0]["users"][0], "VM 100");
    assert_eq!(v["gpus"][0]["vfs"][1]["iommu_group"], "21");
}
