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

// ---------------------------------------------------------------------------------------------
// The pool mapping: `--vf auto --mapping NAME` and `mapping create NAME PF --vfs`
// ---------------------------------------------------------------------------------------------

const MAPPING: &str = "etc/pve/mapping/pci.cfg";

/// The intel-adl-sriov VFs as the fixture's sysfs gives them, written out by hand: 00:02.1
/// and 00:02.2, both 8086:46d1 with subsystem 8086:7270, in IOMMU groups 20 and 21, keys in
/// the GUI's sorted order, no `mdev` line (neither VF has mdev_supported_types/ or nvidia/).
const VF1_PVE1: &str =
    "\tmap id=8086:46d1,iommugroup=20,node=pve1,path=0000:00:02.1,subsystem-id=8086:7270\n";
const VF2_PVE1: &str =
    "\tmap id=8086:46d1,iommugroup=21,node=pve1,path=0000:00:02.2,subsystem-id=8086:7270\n";

fn pool_host(fixture: &str) -> tempfile::TempDir {
    let h = host_with_vms(fixture);
    std::fs::write(h.path().join("etc/hostname"), "pve1\n").unwrap();
    h
}

fn mapping_text(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(MAPPING)).ok()
}

fn write_mapping(root: &Path, text: &str) {
    std::fs::create_dir_all(root.join("etc/pve/mapping")).unwrap();
    std::fs::write(root.join(MAPPING), text).unwrap();
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn vf_auto_with_a_new_mapping_makes_the_pool_and_rollback_undoes_it() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    let o = passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--yes",
        ],
    );
    ok(&o);
    assert_eq!(
        mapping_text(root).unwrap(),
        format!("vgpu\n{VF1_PVE1}{VF2_PVE1}\n")
    );
    let vm = conf(root, 101);
    assert!(vm.contains("hostpci0: mapping=vgpu,pcie=1\n"), "{vm}");
    assert!(
        !vm.contains("0000:00:02"),
        "the VM names the pool, no VF: {vm}"
    );
    assert_eq!(conf(root, 100), VM100);
    // 00:02.2 is on i915: Proxmox rebinds the one it picks.
    assert!(stdout(&o).contains("0000:00:02.2 (i915)"), "{}", stdout(&o));

    // The pool is one entry per VM: a second is refused.
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
                "--mapping",
                "vgpu",
                "--dry-run",
            ],
        ),
        "VM 101 already names pool 'vgpu' (hostpci0)",
    );

    // One transaction: the new mapping file and the VM config go back together.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(mapping_text(root), None);
    assert_eq!(conf(root, 101), VM101);
    assert_eq!(conf(root, 100), VM100);
}

#[test]
fn an_existing_pool_is_reused_and_given_the_vfs_it_lacks() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    // Hand-written: VF 1 on this node, another node's entry, a description.
    let before = format!(
        "# pools\nvgpu\n{VF1_PVE1}\tmap id=8086:46d1,iommugroup=7,node=pve2,path=0000:00:02.1\n\tdescription N100 VFs\n\n"
    );
    write_mapping(root, &before);
    let o = passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--yes",
        ],
    );
    ok(&o);
    // VF 2 is added after the mapping's last line; pve2's entry and the rest stay as written.
    assert_eq!(
        mapping_text(root).unwrap(),
        format!(
            "# pools\nvgpu\n{VF1_PVE1}\tmap id=8086:46d1,iommugroup=7,node=pve2,path=0000:00:02.1\n\tdescription N100 VFs\n{VF2_PVE1}\n"
        )
    );
    assert!(stdout(&o).contains("gets the VFs it lacked: 0000:00:02.2"));
    assert!(conf(root, 101).contains("hostpci0: mapping=vgpu,pcie=1\n"));

    // A complete pool is used as it is: VM 100 joins without touching the file.
    let full = mapping_text(root).unwrap();
    ok(&passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "100",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--yes",
        ],
    ));
    assert_eq!(mapping_text(root).unwrap(), full);
    assert!(conf(root, 100).contains("hostpci1: mapping=vgpu,pcie=1\n"));

    // A third VM on a pool of two: told that only two can run at once.
    std::fs::write(root.join("etc/pve/qemu-server/102.conf"), VM101).unwrap();
    let o = passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "102",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--dry-run",
        ],
    );
    ok(&o);
    assert!(
        stdout(&o).contains("3 VMs name pool vgpu of 2 VFs: at most 2 can run at once (Proxmox: could not find a free device)"),
        "{}",
        stdout(&o)
    );

    // list --gpus: VMs 100 and 101 are the pool's users; no VF is named as theirs by it
    // (VM 100's own hostpci0 still names VF 00:02.1).
    let o = passthru_fixed(root, &["list", "--gpus"]);
    ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains("    pool vgpu (2 VFs): VM 100, VM 101\n"),
        "{text}"
    );
    assert!(
        text.contains("0000:00:02.2  i915  group 21  free\n"),
        "{text}"
    );

    // A VF taken by address while VMs name its pool: told they compete for it.
    let o = passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "102",
            "00:02.0",
            "--vf",
            "auto",
            "--dry-run",
        ],
    );
    ok(&o);
    assert!(
        stdout(&o).contains("VF 0000:00:02.2 is also in pool vgpu (VM 100, VM 101)"),
        "{}",
        stdout(&o)
    );

    // Both attaches roll back to the hand-written bytes.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(mapping_text(root).unwrap(), before);
    assert_eq!(conf(root, 100), VM100);
    assert_eq!(conf(root, 101), VM101);
}

#[test]
fn a_pool_with_a_foreign_or_stale_entry_is_refused() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    let attach = [
        "vm",
        "attach",
        "101",
        "00:02.0",
        "--vf",
        "auto",
        "--mapping",
        "vgpu",
        "--dry-run",
    ];
    // The NIC at 01:00.0 is not a VF of the iGPU.
    write_mapping(
        root,
        &format!("vgpu\n{VF1_PVE1}\tmap id=10ec:8125,iommugroup=5,node=pve1,path=0000:01:00.0,subsystem-id=10ec:0123\n\n"),
    );
    refused(
        &passthru_fixed(root, &attach),
        "mapping 'vgpu' in etc/pve/mapping/pci.cfg has the entry `map id=10ec:8125,iommugroup=5,node=pve1,path=0000:01:00.0,subsystem-id=10ec:0123` for node pve1, which is not a VF of 0000:00:02.0",
    );
    // The PF itself is not one of its VFs either.
    write_mapping(
        root,
        "vgpu\n\tmap id=8086:46d1,iommugroup=0,node=pve1,path=0000:00:02.0\n\n",
    );
    refused(
        &passthru_fixed(root, &attach),
        "which is not a VF of 0000:00:02.0",
    );
    // A VF entry Proxmox's start check would reject (the group moved): refused, not kept.
    write_mapping(
        root,
        "vgpu\n\tmap id=8086:46d1,iommugroup=9,node=pve1,path=0000:00:02.1,subsystem-id=8086:7270\n\n",
    );
    refused(
        &passthru_fixed(root, &attach),
        "does not match VF 0000:00:02.1: iommugroup=9, but the hardware says 20",
    );
    // An entry on another node only is no obstacle, whatever it names.
    write_mapping(
        root,
        "vgpu\n\tmap id=10de:2204,node=pve2,path=0000:41:00.0\n\n",
    );
    ok(&passthru_fixed(root, &attach));
    assert_eq!(conf(root, 101), VM101, "a dry run writes nothing");
}

#[test]
fn a_pool_takes_only_vf_auto_and_needs_vfs() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    refused(
        &passthru_fixed(
            root,
            &[
                "vm",
                "attach",
                "101",
                "00:02.0",
                "--vf",
                "1",
                "--mapping",
                "vgpu",
                "--dry-run",
            ],
        ),
        "use --vf auto",
    );
    assert_eq!(mapping_text(root), None);
    // The N100 without i915-sriov-dkms: no VFs.
    let h = pool_host("intel-n100");
    refused(
        &passthru_fixed(
            h.path(),
            &[
                "vm",
                "attach",
                "101",
                "00:02.0",
                "--vf",
                "auto",
                "--mapping",
                "vgpu",
                "--force",
                "--dry-run",
            ],
        ),
        "passthru share vfs 0000:00:02.0 --count N",
    );
    refused(
        &passthru_fixed(
            h.path(),
            &["mapping", "create", "vgpu", "00:02.0", "--vfs", "--dry-run"],
        ),
        "has no virtual functions now",
    );
}

#[test]
fn detach_removes_the_pool_entry_and_keeps_the_mapping() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--yes",
        ],
    ));
    let pool = mapping_text(root).unwrap();
    let attached = conf(root, 101);
    let o = passthru_fixed(root, &["vm", "detach", "101", "00:02.0", "--yes"]);
    ok(&o);
    assert!(!conf(root, 101).contains("hostpci"), "{}", conf(root, 101));
    assert!(
        stdout(&o).contains("mapping 'vgpu' stays"),
        "{}",
        stdout(&o)
    );
    assert_eq!(mapping_text(root).unwrap(), pool);
    // Detaching one VF does not take the pool entry: the pool is more than that VF.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(conf(root, 101), attached);
    assert!(stdout(&passthru_fixed(
        root,
        &["vm", "detach", "101", "00:02.2", "--dry-run"]
    ))
    .contains("Nothing to change"));
    // Both transactions undone: the host as it was.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(conf(root, 101), VM101);
    assert_eq!(mapping_text(root), None);
}

#[test]
fn mapping_create_vfs_makes_the_pool_the_parser_reads_back() {
    let h = pool_host("intel-adl-sriov");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &["mapping", "create", "vgpu", "00:02.0", "--vfs", "--yes"],
    ));
    let text = mapping_text(root).unwrap();
    assert_eq!(text, format!("vgpu\n{VF1_PVE1}{VF2_PVE1}\n"));
    assert!(stdout(&passthru_fixed(
        root,
        &["mapping", "create", "vgpu", "00:02.0", "--vfs", "--yes"]
    ))
    .contains("Nothing to change"));
    assert!(conf(root, 101) == VM101, "mapping create touches no VM");

    // The repo's own parser reads it back as one mapping of two entries, each with exactly
    // Proxmox's keys in the order the GUI/API writes them (sorted), and renders it back.
    let maps = passthru::formats::pve_config::parse_pci_mappings(&text).unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].id, "vgpu");
    assert!(maps[0].other.is_empty(), "no mdev line for plain VFs");
    for (entry, (group, path)) in maps[0]
        .maps
        .iter()
        .zip([("20", "0000:00:02.1"), ("21", "0000:00:02.2")])
    {
        let keys: Vec<&str> = entry.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["id", "iommugroup", "node", "path", "subsystem-id"]);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let values: Vec<&str> = entry.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["8086:46d1", group, "pve1", path, "8086:7270"]);
    }
    assert_eq!(
        passthru::formats::pve_config::render_pci_mappings(&maps),
        text
    );
    // And a VM can then name it.
    ok(&passthru_fixed(
        root,
        &[
            "vm",
            "attach",
            "101",
            "00:02.0",
            "--vf",
            "auto",
            "--mapping",
            "vgpu",
            "--yes",
        ],
    ));
    assert_eq!(mapping_text(root).unwrap(), text);
}

#[test]
fn a_pool_of_nvidia_vfio_vfs_says_mdev_1() {
    // nvidia-vgpu-vfio: VFs 05:00.4 and 05:00.5, 10de:27b8, subsystem 10de:16ca, groups 32
    // and 33, each with an nvidia/ directory, which Proxmox counts as mdev-capable.
    let h = pool_host("nvidia-vgpu-vfio");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &["mapping", "create", "l4", "05:00.0", "--vfs", "--yes"],
    ));
    assert_eq!(
        mapping_text(root).unwrap(),
        "l4\n\tmap id=10de:27b8,iommugroup=32,node=pve1,path=0000:05:00.4,subsystem-id=10de:16ca\n\tmap id=10de:27b8,iommugroup=33,node=pve1,path=0000:05:00.5,subsystem-id=10de:16ca\n\tmdev 1\n\n"
    );
    // Such a pool entry cannot carry the vGPU type: the VM attach is refused.
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
                "--mapping",
                "l4",
                "--dry-run",
            ],
        ),
        "NVIDIA's VFs carry a vGPU type",
    );
}

#[test]
fn a_card_mapping_of_an_mdev_capable_card_says_mdev_1() {
    // 03:00.0 has mdev_supported_types/: Proxmox expects the mapping's mdev to be 1.
    let h = pool_host("nvidia-vgpu-mdev");
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &["mapping", "create", "grid", "03:00.0", "--yes"],
    ));
    let text = mapping_text(root).unwrap();
    assert!(text.starts_with("grid\n\tmap id=10de:"), "{text}");
    assert!(text.ends_with("\tmdev 1\n\n"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("\tmap ")).count(), 1);
}
