//! `check` on whole hosts: the real-kernel QEMU trees give the verdicts their topology
//! implies, the real machines' snapshots get stated verdicts, the host-usage reader finds
//! the boot disk and the network behind the default route, and the CLI keeps its contract.

mod common;

use std::path::Path;

use common::*;
use passthru::check::{check_host, CheckReport, CheckRequest, RuleId, Use, Verdict};

fn qemu(name: &str) -> passthru::model::Snapshot {
    check_snapshot(&unpacked(
        &repo().join(format!("tests/fixtures/qemu/{name}/root.tar.gz")),
    ))
}

fn run(s: &passthru::model::Snapshot) -> CheckReport {
    check_host(s, &CheckRequest::default())
}

fn gpu<'a>(r: &'a CheckReport, addr: &str) -> &'a passthru::check::GpuCheck {
    r.gpus
        .iter()
        .find(|g| g.address.to_string() == addr)
        .unwrap_or_else(|| panic!("{addr} not in report"))
}

fn ids(g: &passthru::check::GpuCheck) -> Vec<RuleId> {
    g.findings.iter().map(|f| f.id).collect()
}

#[test]
fn real_kernel_topologies_give_their_verdicts() {
    for vendor in ["intel", "amd"] {
        // An endpoint behind its own root port is isolated; the VGA and its HDA function go
        // together (they share 03:00); only binding remains.
        let r = run(&qemu(&format!("{vendor}-rootports")));
        let g = gpu(&r, "0000:03:00.0");
        assert_eq!(
            g.functions
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["0000:03:00.0", "0000:03:00.1"]
        );
        assert!(
            ids(g).contains(&RuleId::GroupIsolated),
            "{vendor}: {:?}",
            ids(g)
        );
        assert_eq!(g.verdicts[&Use::Vm], Verdict::NeedsSetup, "{vendor}");

        // Conventional PCI behind a PCIe-to-PCI bridge: ati-vga shares its group with the
        // e1000 and rtl8139 on the same bridge, so it cannot be assigned alone.
        let r = run(&qemu(&format!("{vendor}-bridges")));
        let g = gpu(&r, "0000:02:03.0");
        assert_eq!(g.verdicts[&Use::Vm], Verdict::Blocked, "{vendor}");
        let shared = g
            .findings
            .iter()
            .find(|f| f.id == RuleId::GroupShared)
            .unwrap();
        assert!(
            shared.evidence.contains("0000:02:01.0") && shared.evidence.contains("0000:02:02.0"),
            "{}",
            shared.evidence
        );
        assert!(
            !shared.evidence.contains("0000:01:00.0"),
            "the bridge itself is no obstacle"
        );
        // The VGA on the root complex in the same host is fine.
        assert!(ids(gpu(&r, "0000:00:02.0")).contains(&RuleId::GroupIsolated));

        // Flat: the multifunction VGA+HDA at 02.0/02.1 is one group, and goes as a whole.
        let r = run(&qemu(&format!("{vendor}-flat")));
        let g = gpu(&r, "0000:00:02.0");
        assert_eq!(g.functions.len(), 2);
        assert!(ids(g).contains(&RuleId::GroupIsolated) && ids(g).contains(&RuleId::SlotFunctions));

        // Behind a PCIe switch's downstream port: isolated, but it is the only display.
        let r = run(&qemu(&format!("{vendor}-switch")));
        let g = gpu(&r, "0000:05:00.0");
        assert!(ids(g).contains(&RuleId::GroupIsolated));
        assert_eq!(g.verdicts[&Use::Vm], Verdict::Blocked);
        let forced = check_host(
            &qemu(&format!("{vendor}-switch")),
            &CheckRequest {
                gpus: vec![],
                force: true,
            },
        );
        assert_eq!(
            gpu(&forced, "0000:05:00.0").verdicts[&Use::Vm],
            Verdict::NeedsSetup
        );
    }
    // After binding (the guest bound 02.0 and 02.1 to vfio-pci before the capture): ready.
    let r = run(&qemu("intel-flat-vfio"));
    let g = gpu(&r, "0000:00:02.0");
    assert_eq!(g.verdicts[&Use::Vm], Verdict::Ready, "{:?}", g.findings);
    assert!(ids(g).contains(&RuleId::VfioBound));
    assert_eq!(g.verdicts[&Use::Host], Verdict::NeedsSetup);
}

#[test]
fn real_machines_get_stated_verdicts() {
    let ghw = |n: &str| unpack(&corpus().join(format!("sysfs/ghw/{n}.tar.gz")));

    // ThinkPad X1 Carbon (i7-1270P): the iGPU is alone in group 0 (from its iommu_group
    // link), so isolation holds; it is on i915, so a VM needs setup. The trimmed tree has no
    // boot_vga file, so the only-display guard cannot fire (a real laptop would trip it).
    let t = ghw("linux-amd64-415ee03b8c4d1c4f07ae2e9d8b3d3d6d");
    let r = run(&check_snapshot(t.path()));
    let g = gpu(&r, "0000:00:02.0");
    assert!(ids(g).contains(&RuleId::GroupIsolated));
    assert_eq!(g.verdicts[&Use::Vm], Verdict::NeedsSetup);

    // Ryzen 1600 desktop with a Radeon HD 6670: the snapshot has no IOMMU groups and no
    // ACPI tables, which reads as an IOMMU the firmware does not announce: blocked, fix in
    // the firmware setup (AMD CBS/NBIO).
    let t = ghw("linux-amd64-61797caf7c0b6bca1725ad7975ed4773");
    let r = run(&check_snapshot(t.path()));
    let g = gpu(&r, "0000:0a:00.0");
    assert_eq!(g.verdicts[&Use::Vm], Verdict::Blocked);
    let f = g
        .findings
        .iter()
        .find(|f| f.id == RuleId::IommuFirmwareOff)
        .unwrap();
    assert!(f.fix.as_deref().unwrap().contains("AMD"));

    // Dual Xeon L5640 server, Matrox BMC VGA: no groups, no tables: blocked the same way.
    let t = ghw("linux-amd64-8581cf3a529e5d8b97ea876eade2f60d");
    let r = run(&check_snapshot(t.path()));
    assert_eq!(gpu(&r, "0000:07:03.0").verdicts[&Use::Vm], Verdict::Blocked);

    // A KVM guest with a Tesla P100 passed through to it: it has no virtual IOMMU, so it
    // cannot pass the P100 on; the fix is on the hypervisor. Containers can use the P100
    // (nvidia driver bound), but this tree lacks proc/driver/nvidia: unknown for lxc.
    let t = ghw("linux-amd64-accel-nvidia");
    let r = run(&check_snapshot(t.path()));
    let g = gpu(&r, "0000:06:00.0");
    assert_eq!(g.verdicts[&Use::Vm], Verdict::Blocked);
    assert!(g.findings.iter().any(|f| f.id == RuleId::IommuFirmwareOff
        && f.fix.as_deref().unwrap().contains("emulated IOMMU")));
    assert_eq!(g.verdicts[&Use::Host], Verdict::Ready);
    assert_eq!(g.verdicts[&Use::Lxc], Verdict::Unknown);

    // A KVM guest whose only GPU is virtio-gpu: nothing to pass on without a virtual IOMMU.
    let t = ghw("linux-amd64-accel");
    let r = run(&check_snapshot(t.path()));
    assert_eq!(r.gpus.len(), 1);
    assert_eq!(r.gpus[0].verdicts[&Use::Vm], Verdict::Blocked);

    // prometheus/procfs's archive: its three PCI functions are a bridge, an NVMe disk and a
    // NIC (its Vega card sits only under sys/class/drm, not on the bus), so there is no GPU
    // to judge: check says so and exits 1.
    let t = unpack_ttar(&corpus().join("sysfs/procfs-fixtures.ttar"));
    let root = t.path().join("fixtures");
    assert!(run(&check_snapshot(&root)).gpus.is_empty());
    let out = passthru(&["check", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("No GPU found"));
}

/// Makes `link` (root-relative) a relative symlink to `target` (root-relative), as the kernel
/// does, creating the parents.
fn link(root: &Path, link: &str, target: &str) {
    let l = root.join(link);
    std::fs::create_dir_all(l.parent().unwrap()).unwrap();
    let depth = link.matches('/').count();
    let rel = format!("{}{}", "../".repeat(depth), target);
    std::os::unix::fs::symlink(rel, &l).unwrap();
}

fn real_dir(root: &Path, bdf: &str) -> String {
    let p = std::fs::canonicalize(root.join("sys/bus/pci/devices").join(bdf)).unwrap();
    p.strip_prefix(std::fs::canonicalize(root).unwrap())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn boot_disk_and_default_route_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named("nvidia-desktop", root).unwrap();
    let nvme = real_dir(root, "0000:01:00.0");
    let nic = real_dir(root, "0000:04:00.0");
    // Root filesystem on an NVMe partition, through a /dev/disk/by-uuid link.
    std::fs::create_dir_all(root.join(&nvme).join("nvme/nvme0/nvme0n1/nvme0n1p2")).unwrap();
    link(
        root,
        "sys/class/block/nvme0n1p2",
        &format!("{nvme}/nvme/nvme0/nvme0n1/nvme0n1p2"),
    );
    std::fs::create_dir_all(root.join("dev/disk/by-uuid")).unwrap();
    std::os::unix::fs::symlink("../../nvme0n1p2", root.join("dev/disk/by-uuid/3f2a")).unwrap();
    std::fs::write(
        root.join("proc/mounts"),
        "sysfs /sys sysfs rw 0 0\n/dev/disk/by-uuid/3f2a / ext4 rw,relatime 0 0\n",
    )
    .unwrap();
    // Default route on a Proxmox-style bridge over the I211 port.
    std::fs::create_dir_all(root.join("proc/net")).unwrap();
    std::fs::write(
        root.join("proc/net/route"),
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nvmbr0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\nvmbr0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("sys/class/net/vmbr0/brif/enp4s0")).unwrap();
    std::fs::create_dir_all(root.join(&nic).join("net/enp4s0")).unwrap();
    link(root, "sys/class/net/enp4s0", &format!("{nic}/net/enp4s0"));
    link(root, &format!("{nic}/net/enp4s0/device"), &nic);

    let s = check_snapshot(root);
    let u = &s.host_usage;
    assert_eq!(
        u.boot_disk_controllers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["0000:01:00.0"]
    );
    assert!(u
        .boot_disk_evidence
        .as_deref()
        .unwrap()
        .contains("nvme0n1p2"));
    assert_eq!(
        u.default_route_devices
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["0000:04:00.0"]
    );
    assert!(u
        .default_route_evidence
        .as_deref()
        .unwrap()
        .contains("vmbr0 -> enp4s0"));

    // A ZFS root cannot be followed in sysfs: every storage controller counts.
    std::fs::write(
        root.join("proc/mounts"),
        "rpool/ROOT/pve-1 / zfs rw,xattr,noacl 0 0\n",
    )
    .unwrap();
    let s = check_snapshot(root);
    let storage = s
        .devices
        .iter()
        .filter(|d| d.class.is_some_and(|c| c.base() == 1))
        .count();
    assert!(storage >= 2);
    assert_eq!(s.host_usage.boot_disk_controllers.len(), storage);
    assert!(s
        .host_usage
        .boot_disk_evidence
        .as_deref()
        .unwrap()
        .contains("zfs"));
}

#[test]
fn cli_exit_codes_selectors_and_json() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("twin-gpus", dir.path()).unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let ids_file = pci_ids();
    let ids_file = ids_file.to_str().unwrap();
    let check = |extra: &[&str]| {
        let mut a = vec!["check", "--root", &root, "--pci-ids", ids_file];
        a.extend(extra);
        passthru(&a)
    };
    let json: serde_json::Value = serde_json::from_slice(&check(&["--json"]).stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    let gpus = json["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    for g in gpus {
        assert!(g["address"].is_string() && g["functions"].is_array() && g["group"].is_string());
        for u in ["vm", "lxc", "host"] {
            assert!(["ready", "needs-setup", "blocked", "unknown"]
                .contains(&g["verdicts"][u].as_str().unwrap()));
        }
        for f in g["findings"].as_array().unwrap() {
            assert!(f["id"].is_string() && f["message"].is_string() && f["evidence"].is_string());
            assert!(["error", "warning", "info"].contains(&f["severity"].as_str().unwrap()));
            assert!(f["fix"].is_string() || f["fix"].is_null());
        }
    }
    let ready_addr = gpus
        .iter()
        .find(|g| g["verdicts"]["vm"] == "ready")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let other_addr = gpus
        .iter()
        .find(|g| g["verdicts"]["vm"] != "ready")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    // Exit 0 only when every selected GPU is ready for the judged use.
    assert_eq!(check(&[&ready_addr]).status.code(), Some(0));
    assert_eq!(check(&[&other_addr]).status.code(), Some(1));
    assert_eq!(check(&[]).status.code(), Some(1));
    // The other twin is on its host driver now, but the user's own ids= line takes it at
    // the next boot (docs/states.md: vfio.pending): not ready for the host.
    assert_eq!(
        check(&[&other_addr, "--for", "host"]).status.code(),
        Some(1)
    );
    // Short addresses, vendor:device and names select too.
    let short = &ready_addr[5..];
    assert_eq!(check(&[short]).status.code(), Some(0));
    let by_id = check(&["10de:2503", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&by_id.stdout).unwrap();
    assert_eq!(
        doc["gpus"].as_array().unwrap().len(),
        2,
        "both twins match their ids"
    );
    let by_name = check(&["rtx 3060", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&by_name.stdout).unwrap();
    assert_eq!(doc["gpus"].as_array().unwrap().len(), 2);
    let none = check(&["radeon"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stdout(&none).contains("No GPU matches 'radeon'"));
    // Errors stay 2.
    assert_eq!(
        passthru(&["check", "--root", "/nonexistent/root"])
            .status
            .code(),
        Some(2)
    );
    // The text report fits 80 columns.
    for name in ["twin-gpus", "apu-shared-group", "turing-usbc", "tesla-p40"] {
        let d = tempfile::tempdir().unwrap();
        passthru_testkit::build_named(name, d.path()).unwrap();
        let out = passthru(&["check", "--root", d.path().to_str().unwrap()]);
        for line in stdout(&out).lines() {
            let longest_word = line
                .split_whitespace()
                .map(|w| w.chars().count())
                .max()
                .unwrap_or(0);
            assert!(
                line.chars().count() <= 80 || longest_word > 70,
                "{name}: {line}"
            );
        }
    }
}

#[test]
fn every_vendor_reset_id_is_a_vendor_reset_family() {
    // The corpus lists the ids gnif/vendor-reset handles (src/device-db.h); our family table
    // must put each of them in a family vendor-reset covers.
    let csv = std::fs::read_to_string(corpus().join("gpu/vendor-reset-device-ids.csv")).unwrap();
    let mut n = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], "0x1002");
        let id = u16::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap();
        match passthru::check::amd_reset_family(id) {
            Some(passthru::check::ResetFamily::VendorReset(_)) => {}
            other => panic!("{} ({}) is {other:?}", f[1], f[2]),
        }
        n += 1;
    }
    assert_eq!(n, 67);
    // And the generations it does not cover are not claimed.
    for (id, what) in [
        (0x73bf, "RX 6800 XT"),
        (0x744c, "RX 7900 XTX"),
        (0x7550, "RX 9070 XT"),
    ] {
        assert!(
            matches!(
                passthru::check::amd_reset_family(id),
                Some(passthru::check::ResetFamily::NotCovered(_))
            ),
            "{what}"
        );
    }
}

/// One answer to "which functions are this card": the same slot (domain, bus, device),
/// whichever function is asked about; check, bind and setup all use it.
#[test]
fn the_functions_of_a_card_are_its_slot() {
    let mut s = check_snapshot_of("turing-usbc");
    let addr = |a: &str| a.parse::<passthru::model::PciAddress>().unwrap();
    let card: Vec<passthru::model::PciAddress> = [
        "0000:01:00.0",
        "0000:01:00.1",
        "0000:01:00.2",
        "0000:01:00.3",
    ]
    .map(addr)
    .to_vec();
    // A function at the same bus and slot in another PCI domain is another card.
    let mut other_domain = s.device(&addr("0000:01:00.1")).unwrap().clone();
    other_domain.address = addr("0001:01:00.1");
    other_domain.iommu_group = None;
    s.devices.push(other_domain);
    s.devices.sort_by_key(|d| d.address);
    for f in &card {
        let got: Vec<_> = s.card_functions(f).iter().map(|d| d.address).collect();
        assert_eq!(got, card, "asked about {f}");
    }
    // With the card to a VM goes its group: here the root port above it (group 1).
    let members = s.card_group_members(&card[2]);
    assert_eq!(members, [&[addr("0000:00:01.0")][..], &card].concat());
    // check lists the same functions, the GPU first.
    let r = run(&s);
    assert_eq!(gpu(&r, "0000:01:00.0").functions, card);
}

/// Whether `path` is what `pattern` names: the same path, or for `dir/*.ext` a file directly
/// in a directory ending in `dir` (`loader/entries/*.conf` names `boot/loader/entries/a.conf`).
fn names(pattern: &str, path: &str) -> bool {
    let Some((dir, ext)) = pattern.split_once('*') else {
        return pattern == path;
    };
    let Some((parent, file)) = path.rsplit_once('/') else {
        return false;
    };
    file.ends_with(ext) && format!("{parent}/").ends_with(dir)
}

/// `list` names where the boot loader takes the command line from, and setup edits exactly
/// there: the Arch fixture's systemd-boot has no etc/kernel/cmdline, so its BLS entry is
/// the source (the label used to say etc/kernel/cmdline whatever the host had).
#[test]
fn list_names_the_files_setup_edits_for_the_command_line() {
    for (pci, distro, gpu) in [
        ("nvidia-desktop", "debian12-grub", "07:00.0"),
        ("amd-navi", "proxmox8-grub", "03:00.0"),
        ("amd-navi", "proxmox8-zfs-systemd-boot", "03:00.0"),
        ("intel-n100", "ubuntu2404-grub", "00:02.0"),
        ("tesla-p40", "fedora40-grubby-dracut", "03:00.0"),
        ("nvidia-desktop", "arch-mkinitcpio", "07:00.0"),
        ("turing-usbc", "popos-kernelstub", "01:00.0"),
    ] {
        let t = compose_distro(pci, distro);
        let out = stdout(&passthru_fixed(t.path(), &["list"]));
        let boot = out
            .lines()
            .find(|l| l.starts_with("Boot "))
            .unwrap_or_else(|| panic!("{distro}: no Boot line in\n{out}"));
        // `Boot  EFI · systemd-boot (loader/entries/*.conf) · mkinitcpio`
        let loader = boot.split(" · ").nth(1).unwrap();
        let from: Vec<&str> = loader
            .rsplit_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .map(|files| files.split(", ").collect())
            .unwrap_or_default();
        let s = check_snapshot(t.path());
        let host = passthru::host::HostRoot::new(t.path()).unwrap();
        let req = passthru::plan::setup::SetupRequest {
            gpu: gpu.into(),
            force: true,
            ..Default::default()
        };
        let plan =
            passthru::plan::setup::plan_setup_vm(&s, &passthru::host::RootFiles::new(&host), &req)
                .unwrap();
        let edited: Vec<&str> = plan
            .edits
            .iter()
            .filter(|e| e.reason.contains("kernel parameters"))
            .map(|e| e.path.as_str())
            .collect();
        assert!(!edited.is_empty(), "{distro}: no kernel-parameter edit");
        for path in edited {
            assert!(
                from.iter().any(|p| names(p, path)),
                "{distro}: setup edits {path}, list says '{loader}'"
            );
        }
        for p in &from {
            if !p.contains('*') {
                assert!(
                    t.path().join(p).exists(),
                    "{distro}: list names {p}, which is absent"
                );
            }
        }
    }
}
