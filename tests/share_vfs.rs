//! `passthru share vfs`: the rule and parameters it plans, exact undo by `--count 0` and by
//! `rollback`, the runtime writes of `--now`, and what it refuses. Fixture roots only (the
//! real kernel is scripts/qemu-lab/sriov-test.sh).

mod common;

use std::path::Path;

use common::*;
use passthru::plan::share::{plan_share_vfs, plan_share_vfs_now, sriov_rule_file, ShareVfsRequest};

fn built(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn req(device: &str, count: u32) -> ShareVfsRequest {
    ShareVfsRequest {
        device: device.into(),
        count,
    }
}

fn full_snapshot(root: &Path) -> passthru::model::Snapshot {
    let r = passthru::host::HostRoot::new(root).unwrap();
    passthru::host::read_snapshot(&r, None, passthru::model::ReadDetail::Full)
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

const RULE: &str = "etc/udev/rules.d/61-passthru-sriov-0000:00:02.0.rules";

#[test]
fn the_rule_turns_autoprobe_off_before_the_count_and_binds_each_vf_by_address() {
    let host = built("intel-adl-sriov");
    let s = full_snapshot(host.path());
    let hr = passthru::host::HostRoot::new(host.path()).unwrap();
    let files = passthru::host::RootFiles::new(&hr);
    let plan = plan_share_vfs(&s, &files, &req("00:02.0", 3)).unwrap();
    assert_eq!(sriov_rule_file(&"0000:00:02.0".parse().unwrap()), RULE);
    let rule = plan
        .edits
        .iter()
        .find(|e| e.path == RULE)
        .expect("the rule");
    assert_eq!(rule.before, None);
    let text = String::from_utf8(rule.after.clone().unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains(r#"KERNEL=="0000:00:02.0""#)
            && lines[0].contains(r#"ATTR{sriov_drivers_autoprobe}="0""#)
    );
    assert!(
        lines[1].contains(r#"ATTR{sriov_numvfs}="3""#),
        "{}",
        lines[1]
    );
    // The VFs the two that exist show: offset 1, stride 1 -> 00:02.1, .2, .3.
    for (l, vf) in lines[2..]
        .iter()
        .zip(["0000:00:02.1", "0000:00:02.2", "0000:00:02.3"])
    {
        assert!(l.contains(&format!(r#"KERNEL=="{vf}""#)), "{l}");
        assert!(l.contains(r#"ATTR{device}=="0x46d1""#), "{l}");
        assert!(l.contains(r#"ATTR{driver_override}="vfio-pci""#), "{l}");
        // passthru's own reader of vfio override rules sees the binding.
        assert_eq!(
            passthru::formats::udev::parse_vfio_override(l)
                .unwrap()
                .address,
            vf
        );
    }
    let grub = plan
        .edits
        .iter()
        .find(|e| e.path == "etc/default/grub")
        .expect("grub");
    let after = String::from_utf8(grub.after.clone().unwrap()).unwrap();
    assert!(
        after.contains(
            r#"GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on i915.enable_guc=3 i915.max_vfs=3""#
        ),
        "{after}"
    );
}

#[test]
fn count_zero_and_rollback_undo_exactly() {
    let host = built("intel-adl-sriov");
    let root = host.path();
    let grub_before = read(root, "etc/default/grub").unwrap();
    let o = passthru_fixed(root, &["share", "vfs", "00:02.0", "--count", "3", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(read(root, RULE)
        .unwrap()
        .contains(r#"ATTR{sriov_numvfs}="3""#));
    assert!(read(root, "etc/default/grub")
        .unwrap()
        .contains("i915.max_vfs=3"));
    let o = passthru_fixed(root, &["rollback", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read(root, RULE), None);
    assert_eq!(read(root, "etc/default/grub").unwrap(), grub_before);

    // Again, then --count 0: the rule goes and the flavour's parameters come off the line.
    let o = passthru_fixed(root, &["share", "vfs", "00:02.0", "--count", "2", "--yes"]);
    assert!(o.status.success());
    let o = passthru_fixed(root, &["share", "vfs", "00:02.0", "--count", "0", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read(root, RULE), None);
    let grub = read(root, "etc/default/grub").unwrap();
    assert!(
        grub.contains(r#"GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on""#),
        "{grub}"
    );
    // And the --count 0 is itself undone by rollback, back to the 2-VF state.
    let o = passthru_fixed(root, &["rollback", "--yes"]);
    assert!(o.status.success());
    assert!(read(root, RULE)
        .unwrap()
        .contains(r#"ATTR{sriov_numvfs}="2""#));
}

#[test]
fn a_generic_pf_needs_its_capability_for_addresses_and_gets_no_parameters() {
    // sriov-nic's PF 1 (18:00.1) has SR-IOV and no VF yet; its config space as a non-root
    // reader sees it is 64 bytes, so where the VFs go is unknown.
    let host = built("sriov-nic");
    let root = host.path();
    let files_root = passthru::host::HostRoot::new(root).unwrap();
    let files = passthru::host::RootFiles::new(&files_root);
    let err = plan_share_vfs(&full_snapshot(root), &files, &req("0000:18:00.1", 2)).unwrap_err();
    assert!(err.to_string().contains("readable only by root"), "{err}");
    // With the SR-IOV capability at 0x160 (First VF Offset 0x8f, stride 1, as an X710's
    // PF 1 has it), as root reads it.
    let mut config = vec![0u8; 4096];
    config[0x100..0x104].copy_from_slice(&(0x0001u32 | (0x160 << 20)).to_le_bytes()); // AER, next 0x160
    config[0x160..0x164].copy_from_slice(&0x0001_0010u32.to_le_bytes()); // SR-IOV, last
    config[0x160 + 0x14..0x160 + 0x16].copy_from_slice(&0x8fu16.to_le_bytes());
    config[0x160 + 0x16..0x160 + 0x18].copy_from_slice(&1u16.to_le_bytes());
    std::fs::write(
        root.join("sys/bus/pci/devices/0000:18:00.1/config"),
        &config,
    )
    .unwrap();
    let s = full_snapshot(root);
    let plan = plan_share_vfs(&s, &files, &req("0000:18:00.1", 2)).unwrap();
    assert_eq!(plan.edits.len(), 1, "no kernel parameters for a NIC");
    let text = String::from_utf8(plan.edits[0].after.clone().unwrap()).unwrap();
    // 18:00.1 is routing id 0x1801; + 0x8f = 0x1890 = 18:12.0, then 18:12.1.
    assert!(text.contains(r#"KERNEL=="0000:18:12.0""#), "{text}");
    assert!(text.contains(r#"KERNEL=="0000:18:12.1""#), "{text}");

    let now = plan_share_vfs_now(&s, &req("0000:18:00.1", 2)).unwrap();
    let writes: Vec<(String, String)> = now
        .writes
        .iter()
        .map(|w| (w.path.clone(), w.value.clone()))
        .collect();
    let pf = "sys/bus/pci/devices/0000:18:00.1";
    assert_eq!(
        writes,
        [
            (format!("{pf}/sriov_drivers_autoprobe"), "0".into()),
            (format!("{pf}/sriov_numvfs"), "2".into()),
            (
                "sys/bus/pci/devices/0000:18:12.0/driver_override".into(),
                "vfio-pci".into()
            ),
            ("sys/bus/pci/drivers_probe".into(), "0000:18:12.0".into()),
            (
                "sys/bus/pci/devices/0000:18:12.1/driver_override".into(),
                "vfio-pci".into()
            ),
            ("sys/bus/pci/drivers_probe".into(), "0000:18:12.1".into()),
        ]
    );
    assert_eq!(now.modprobe, ["vfio-pci"]);
    // PF 0 has 64 VFs: another count only through 0; 0 writes just the count.
    let err = plan_share_vfs_now(&s, &req("0000:18:00.0", 8)).unwrap_err();
    assert!(err.to_string().contains("--count 0 --now first"), "{err}");
    let zero = plan_share_vfs_now(&s, &req("0000:18:00.0", 0)).unwrap();
    assert_eq!(zero.writes.len(), 1);
    assert_eq!(zero.writes[0].value, "0");
}

#[test]
fn refusals_name_the_reason() {
    let cases = [
        ("nvidia-vgpu-vfio", "0000:05:00.0", 2, "sriov-manage"),
        (
            "intel-adl-sriov",
            "0000:00:02.1",
            1,
            "it is a virtual function",
        ),
        (
            "intel-adl-sriov",
            "0000:00:02.0",
            8,
            "more than its sriov_totalvfs 7",
        ),
        ("tesla-p40", "0000:03:00.0", 1, "offers no SR-IOV"),
    ];
    for (host, dev, count, why) in cases {
        let h = built(host);
        let count = count.to_string();
        let o = passthru_fixed(
            h.path(),
            &["share", "vfs", dev, "--count", &count, "--dry-run"],
        );
        assert_eq!(o.status.code(), Some(2), "{host} {dev}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{host} {dev}: {err}");
    }
}

#[test]
fn offset_and_stride_come_from_the_extended_capability_list() {
    use passthru::host::pci::parse_sriov_offset_stride;
    let mut c = vec![0u8; 0x200];
    assert_eq!(parse_sriov_offset_stride(&c), None, "no capability");
    assert_eq!(parse_sriov_offset_stride(&c[..64]), None, "a non-root read");
    c[0x100..0x104].copy_from_slice(&(0x0010u32 | (1 << 16)).to_le_bytes());
    c[0x114..0x116].copy_from_slice(&2u16.to_le_bytes());
    c[0x116..0x118].copy_from_slice(&4u16.to_le_bytes());
    assert_eq!(parse_sriov_offset_stride(&c), Some((2, 4)));
    // A list that points back at itself ends.
    let mut looped = vec![0u8; 0x200];
    looped[0x100..0x104].copy_from_slice(&(0x0001u32 | (0x100 << 20)).to_le_bytes());
    assert_eq!(parse_sriov_offset_stride(&looped), None);
}

#[test]
fn the_stock_i915_is_warned_about() {
    // intel-n100's iGPU as the PCI core shows it on any driver (sriov_totalvfs 7), with the
    // stock i915 loaded (no max_vfs parameter).
    let host = built("intel-n100");
    let pf = host.path().join("sys/bus/pci/devices/0000:00:02.0");
    std::fs::write(pf.join("sriov_totalvfs"), "7\n").unwrap();
    std::fs::write(pf.join("sriov_numvfs"), "0\n").unwrap();
    // The SR-IOV capability at 0x100 as root reads it: VFs at 00:02.1, stride 1.
    let mut config = vec![0u8; 4096];
    config[0x100..0x104].copy_from_slice(&0x0001_0010u32.to_le_bytes());
    config[0x114..0x116].copy_from_slice(&1u16.to_le_bytes());
    config[0x116..0x118].copy_from_slice(&1u16.to_le_bytes());
    std::fs::write(pf.join("config"), &config).unwrap();
    let o = passthru_fixed(
        host.path(),
        &["share", "vfs", "00:02.0", "--count", "2", "--dry-run"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(
        text.contains("the loaded i915 has no max_vfs parameter"),
        "{text}"
    );
    assert!(text.contains(r#"KERNEL=="0000:00:02.2""#), "{text}");
    let adl = built("intel-adl-sriov");
    let o = passthru_fixed(
        adl.path(),
        &["share", "vfs", "00:02.0", "--count", "2", "--dry-run"],
    );
    assert!(!stdout(&o).contains("no max_vfs parameter"));
}
