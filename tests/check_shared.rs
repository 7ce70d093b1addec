//! The `shared` use and the readers behind it: every sharing rule with a fixture where it
//! fires and one where it must stay silent (tests/check_rules.rs style), and what the
//! readers make of the files, garbled ones included. Fixtures: intel-adl-sriov (i915-sriov-dkms,
//! 2 VFs), nvidia-vgpu-mdev (mdev types), nvidia-vgpu-vfio (per-VF nvidia/), with the
//! plain intel-n100 and tesla-p40 as the "silent" hosts. A "fires" case made by changing one
//! fact of a snapshot says so next to it.

mod common;

use common::*;
use passthru::check::{check_host, CheckReport, CheckRequest, Effect, RuleId, Use, Verdict};
use passthru::model::{DkmsBuild, PciAddress, SecureBoot, Snapshot};

fn run(s: &Snapshot) -> CheckReport {
    check_host(s, &CheckRequest::default())
}

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn gpu<'r>(r: &'r CheckReport, addr: &str) -> &'r passthru::check::GpuCheck {
    r.gpus
        .iter()
        .find(|g| g.address == a(addr))
        .unwrap_or_else(|| panic!("{addr} in the report"))
}

fn fired(r: &CheckReport, addr: &str, id: RuleId) -> bool {
    gpu(r, addr).fired(id)
}

fn dev<'s>(s: &'s mut Snapshot, addr: &str) -> &'s mut passthru::model::PciDevice {
    let addr = a(addr);
    s.devices.iter_mut().find(|d| d.address == addr).unwrap()
}

/// The adl host with its VFs gone (`share vfs --count 0` done): sriov_numvfs 0, no virtfn.
fn without_vfs(mut s: Snapshot) -> Snapshot {
    let pf = dev(&mut s, "0000:00:02.0");
    let x = pf.sriov.as_mut().unwrap();
    x.num_vfs = Some(0);
    x.vfs.clear();
    s.devices.retain(|d| d.physfn.is_none());
    s
}

const PF: &str = "0000:00:02.0";

#[test]
fn readers_take_sriov_mdev_nvidia_dkms_and_secure_boot_from_the_files() {
    let s = check_snapshot_of("intel-adl-sriov");
    let pf = s.device(&a(PF)).unwrap();
    let x = pf.sriov.as_ref().unwrap();
    assert_eq!((x.total_vfs, x.num_vfs), (Some(7), Some(2)));
    assert_eq!(x.vfs, [a("0000:00:02.1"), a("0000:00:02.2")]);
    assert_eq!(x.drivers_autoprobe, Some(true));
    assert_eq!(x.vf_device.map(|d| d.0), Some(0x46d1));
    let vf = s.device(&a("0000:00:02.1")).unwrap();
    assert_eq!(vf.physfn, Some(a(PF)));
    assert_eq!(vf.driver_override.as_deref(), Some("vfio-pci"));
    assert_eq!(vf.iommu_group.as_deref(), Some("20"));
    let sh = &s.sharing;
    assert_eq!(
        sh.installed_kernels,
        ["6.8.0-31-generic", "6.8.0-45-generic"]
    );
    assert_eq!(sh.default_kernel.as_deref(), Some("6.8.0-45-generic"));
    assert_eq!(
        sh.dkms,
        [DkmsBuild {
            module: "i915-sriov-dkms".into(),
            version: "2025.07.22".into(),
            kernel: "6.8.0-31-generic".into()
        }]
    );
    assert_eq!(sh.secure_boot, Some(SecureBoot::On));
    let i915 = sh.sriov_module("i915").unwrap();
    assert_eq!(i915.max_vfs.as_deref(), Some("7"));
    assert_eq!(i915.enable_guc.as_deref(), Some("3"));
    assert_eq!(i915.file.as_deref(), Some("updates/dkms/i915.ko"));
    // The stock module: no max_vfs, and Secure Boot unreadable on this host means absent.
    let stock = check_snapshot_of("intel-n100");
    let m = stock.sharing.sriov_module("i915").unwrap();
    assert_eq!(m.max_vfs, None);
    assert_eq!(stock.sharing.secure_boot, Some(SecureBoot::Unavailable));

    let m = check_snapshot_of("nvidia-vgpu-mdev");
    let p40 = m.device(&a("0000:03:00.0")).unwrap();
    assert_eq!(p40.mdev_types, ["nvidia-46", "nvidia-47"]);
    let t = &p40.mdev_type_details[1];
    assert_eq!(t.name.as_deref(), Some("GRID P40-2Q"));
    assert_eq!(t.available_instances, Some(11));
    assert_eq!(t.device_api.as_deref(), Some("vfio-pci"));
    assert_eq!(t.devices, ["5f0c7a7e-3c1d-4b6e-9a2f-0e1d2c3b4a59"]);
    assert_eq!(p40.mdev_type_details[0].available_instances, Some(0));
    let live = &m.sharing.mdevs;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].parent, Some(a("0000:03:00.0")));
    assert_eq!(live[0].mdev_type.as_deref(), Some("nvidia-47"));
    let info = m.sharing.nvidia_gpu(&a("0000:03:00.0")).unwrap();
    assert_eq!(info.device_minor, Some(1));
    assert_eq!(
        info.uuid.as_deref(),
        Some("GPU-3b1c9a2e-7d4f-4e6a-8b5c-1f2e3d4c5b6a")
    );

    let v = check_snapshot_of("nvidia-vgpu-vfio");
    let held = v
        .device(&a("0000:05:00.4"))
        .unwrap()
        .nvidia_vgpu
        .clone()
        .unwrap();
    assert_eq!((held.current, held.creatable.len()), (Some(923), 0));
    let free = v
        .device(&a("0000:05:00.5"))
        .unwrap()
        .nvidia_vgpu
        .clone()
        .unwrap();
    assert_eq!(free.current, Some(0));
    assert_eq!(
        free.creatable,
        [
            (923, "NVIDIA L4-6Q".to_string()),
            (924, "NVIDIA L4-8Q".to_string())
        ]
    );
}

#[test]
fn garbled_sharing_files_are_issues_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("nvidia-vgpu-mdev", dir.path()).unwrap();
    let p = dir.path();
    let types = p.join("sys/bus/pci/devices/0000:03:00.0/mdev_supported_types");
    std::fs::write(types.join("nvidia-47/available_instances"), "eleven\n").unwrap();
    std::fs::write(
        p.join("proc/driver/nvidia/gpus/0000:03:00.0/information"),
        "Device Minor: x\n",
    )
    .unwrap();
    std::fs::create_dir_all(p.join("etc/cdi")).unwrap();
    std::fs::write(p.join("etc/cdi/nvidia.json"), "{not json").unwrap();
    std::fs::create_dir_all(p.join("sys/firmware/efi/efivars")).unwrap();
    std::fs::write(
        p.join("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e98c0304f9ce"),
        [6u8, 0],
    )
    .unwrap();
    let s = check_snapshot(p);
    let t = &s.device(&a("0000:03:00.0")).unwrap().mdev_type_details[1];
    assert_eq!(t.available_instances, None);
    let issues: Vec<String> = s
        .all_issues()
        .map(|i| format!("{}: {}", i.path, i.problem))
        .collect();
    let has = |needle: &str| issues.iter().any(|i| i.contains(needle));
    assert!(
        has("nvidia-47/available_instances: not a number"),
        "{issues:#?}"
    );
    assert!(
        has("gpus/0000:03:00.0/information: no 'Device Minor:'"),
        "{issues:#?}"
    );
    assert!(has("etc/cdi/nvidia.json: not JSON"), "{issues:#?}");
    assert!(has("SecureBoot-8be4df61"), "{issues:#?}");
    assert_eq!(s.sharing.secure_boot, None);
    // Check still judges the card.
    let r = run(&s);
    assert!(fired(&r, "0000:03:00.0", RuleId::SharedMdevTypes));
}

#[test]
fn a_snapshot_from_before_sharing_still_loads() {
    let s = check_snapshot_of("intel-adl-sriov");
    let mut v = serde_json::to_value(&s).unwrap();
    v.as_object_mut().unwrap().remove("sharing");
    for d in v["devices"].as_array_mut().unwrap() {
        let d = d.as_object_mut().unwrap();
        d.remove("mdev_type_details");
        d.remove("nvidia_vgpu");
        if let Some(x) = d.get_mut("sriov").and_then(|x| x.as_object_mut()) {
            x.remove("drivers_autoprobe");
            x.remove("vf_device");
        }
    }
    let old: Snapshot = serde_json::from_value(v).unwrap();
    assert!(old.sharing.dkms.is_empty());
    assert_eq!(
        old.device(&a(PF))
            .unwrap()
            .sriov
            .as_ref()
            .unwrap()
            .vfs
            .len(),
        2
    );
}

#[test]
fn the_pf_of_a_split_card_is_never_ready_for_a_vm() {
    let s = check_snapshot_of("intel-adl-sriov");
    // Forced, so the only-display block is a warning: what is left is the split.
    let forced = check_host(
        &s,
        &CheckRequest {
            gpus: vec![],
            force: true,
        },
    );
    let g = gpu(&forced, PF);
    assert!(g.fired(RuleId::SharedPfSplit));
    assert_eq!(g.verdicts[&Use::Vm], Verdict::Blocked);
    let f = g
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedPfSplit)
        .unwrap();
    assert_eq!(f.effect, Effect::Blocks);
    assert!(f.fix.as_deref().unwrap().contains("--vf auto"));
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .contains("share vfs 0000:00:02.0 --count 0"));
    // The card's functions are the PF alone: its VFs are cards of their own.
    assert_eq!(g.functions, [a(PF)]);
    let gone = without_vfs(s.clone());
    let r = check_host(
        &gone,
        &CheckRequest {
            gpus: vec![],
            force: true,
        },
    );
    assert!(!fired(&r, PF, RuleId::SharedPfSplit));
    assert!(!fired(
        &run(&check_snapshot_of("intel-n100")),
        PF,
        RuleId::SharedPfSplit
    ));
    // The NVIDIA L4 with VFs, too.
    let v = run(&check_snapshot_of("nvidia-vgpu-vfio"));
    assert!(fired(&v, "0000:05:00.0", RuleId::SharedPfSplit));
    assert_eq!(gpu(&v, "0000:05:00.0").verdicts[&Use::Vm], Verdict::Blocked);
}

#[test]
fn a_vf_is_its_own_card() {
    let r = run(&check_snapshot_of("intel-adl-sriov"));
    let vf = gpu(&r, "0000:00:02.1");
    assert!(vf.fired(RuleId::SharedIsVf));
    assert_eq!(vf.functions, [a("0000:00:02.1")]);
    assert_eq!(vf.verdicts[&Use::Vm], Verdict::Ready, "{:#?}", vf.findings);
    assert!(!fired(&r, PF, RuleId::SharedIsVf));
}

#[test]
fn vfs_listed_and_vfs_on_the_host_driver() {
    let s = check_snapshot_of("intel-adl-sriov");
    let r = run(&s);
    assert!(fired(&r, PF, RuleId::SharedVfs));
    let f = gpu(&r, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedVfs)
        .unwrap();
    assert!(
        f.evidence
            .contains("0000:00:02.1 (vfio-pci, group 20, override vfio-pci)"),
        "{}",
        f.evidence
    );
    assert!(fired(&r, PF, RuleId::SharedVfOnHostDriver));
    let mut bound = s.clone();
    dev(&mut bound, "0000:00:02.2").driver = Some("vfio-pci".into());
    let r = run(&bound);
    assert!(!fired(&r, PF, RuleId::SharedVfOnHostDriver));
    assert!(fired(&r, PF, RuleId::SharedVfs));
    assert!(!fired(
        &run(&check_snapshot_of("intel-n100")),
        PF,
        RuleId::SharedVfs
    ));
    // NVIDIA's VFs stay on nvidia by design: not a finding there.
    let v = run(&check_snapshot_of("nvidia-vgpu-vfio"));
    assert!(!fired(&v, "0000:05:00.0", RuleId::SharedVfOnHostDriver));
}

#[test]
fn intel_driver_flavour_parameters_and_vf_count() {
    // intel-n100 as the PCI core shows the iGPU on any driver: sriov_totalvfs 7. Its i915
    // is the stock one (no max_vfs): it cannot make them.
    let mut stock = check_snapshot_of("intel-n100");
    dev(&mut stock, PF).sriov = Some(passthru::model::SriovInfo {
        total_vfs: Some(7),
        num_vfs: Some(0),
        ..Default::default()
    });
    let r = run(&stock);
    assert!(fired(&r, PF, RuleId::SharedDriverCannot));
    assert_eq!(gpu(&r, PF).verdicts[&Use::Shared], Verdict::NeedsSetup);
    let f = gpu(&r, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedDriverCannot)
        .unwrap();
    assert!(
        f.evidence
            .contains("sys/module/i915/parameters: no max_vfs"),
        "{}",
        f.evidence
    );
    assert!(f.fix.as_deref().unwrap().contains("i915-sriov-dkms"));
    let adl = check_snapshot_of("intel-adl-sriov");
    assert!(!fired(&run(&adl), PF, RuleId::SharedDriverCannot));
    assert!(!fired(
        &run(&without_vfs(adl.clone())),
        PF,
        RuleId::SharedDriverCannot
    ));

    // The DKMS module without its parameters on the command line.
    let mut bare = without_vfs(adl.clone());
    bare.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("ro intel_iommu=on");
    let r = run(&bare);
    assert!(fired(&r, PF, RuleId::SharedParamsMissing));
    let f = gpu(&r, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedParamsMissing)
        .unwrap();
    assert!(
        f.message.contains("i915.enable_guc, i915.max_vfs"),
        "{}",
        f.message
    );
    assert_eq!(
        f.fix.as_deref(),
        Some("passthru share vfs 0000:00:02.0 --count 7")
    );
    assert!(!fired(&r, PF, RuleId::SharedVfsOff));
    // With them, and no VF yet: make them.
    let r = run(&without_vfs(adl.clone()));
    assert!(!fired(&r, PF, RuleId::SharedParamsMissing));
    assert!(fired(&r, PF, RuleId::SharedVfsOff));
    assert!(!fired(&run(&adl), PF, RuleId::SharedVfsOff));
}

#[test]
fn dkms_for_the_next_kernel_and_secure_boot() {
    let adl = check_snapshot_of("intel-adl-sriov");
    let r = run(&adl);
    assert!(fired(&r, PF, RuleId::SharedDkmsNextKernel));
    let f = gpu(&r, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedDkmsNextKernel)
        .unwrap();
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("dkms autoinstall -k 6.8.0-45-generic"));
    let mut built = adl.clone();
    built.sharing.dkms.push(DkmsBuild {
        module: "i915-sriov-dkms".into(),
        version: "2025.07.22".into(),
        kernel: "6.8.0-45-generic".into(),
    });
    assert!(!fired(&run(&built), PF, RuleId::SharedDkmsNextKernel));

    // Loaded under Secure Boot: information. Not loaded (stock i915 booted): unknown.
    let f = gpu(&r, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedSecureBoot)
        .unwrap();
    assert_eq!(f.effect, Effect::None);
    let mut not_loaded = without_vfs(adl.clone());
    not_loaded
        .sharing
        .sriov_modules
        .iter_mut()
        .for_each(|m| m.max_vfs = None);
    let r2 = run(&not_loaded);
    let f = gpu(&r2, PF)
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedSecureBoot)
        .unwrap();
    assert_eq!(f.effect, Effect::Unknown);
    let mut off = adl.clone();
    off.sharing.secure_boot = Some(SecureBoot::Off);
    assert!(!fired(&run(&off), PF, RuleId::SharedSecureBoot));
}

#[test]
fn mdev_types_nvidia_vgpu_and_cards_that_cannot_split() {
    let m = check_snapshot_of("nvidia-vgpu-mdev");
    let r = run(&m);
    let p40 = gpu(&r, "0000:03:00.0");
    assert!(p40.fired(RuleId::SharedMdevTypes));
    assert_eq!(p40.verdicts[&Use::Shared], Verdict::Ready);
    let f = p40
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedMdevTypes)
        .unwrap();
    assert!(
        f.message.contains("nvidia-47 \"GRID P40-2Q\" (11 free)"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("nvidia-46 \"GRID P40-1Q\" (0 free)"),
        "{}",
        f.message
    );
    assert!(!p40.fired(RuleId::SharedNone));
    let mut full = m.clone();
    dev(&mut full, "0000:03:00.0").mdev_type_details[1].available_instances = Some(0);
    let r = run(&full);
    assert_eq!(
        gpu(&r, "0000:03:00.0").verdicts[&Use::Shared],
        Verdict::Blocked
    );

    let p = run(&check_snapshot_of("tesla-p40"));
    assert!(!fired(&p, "0000:03:00.0", RuleId::SharedMdevTypes));
    assert!(fired(&p, "0000:03:00.0", RuleId::SharedNone));
    assert_eq!(
        gpu(&p, "0000:03:00.0").verdicts[&Use::Shared],
        Verdict::Blocked
    );

    let v = check_snapshot_of("nvidia-vgpu-vfio");
    let r = run(&v);
    let l4 = gpu(&r, "0000:05:00.0");
    assert!(l4.fired(RuleId::SharedNvidiaVgpu));
    let f = l4
        .findings
        .iter()
        .find(|f| f.id == RuleId::SharedNvidiaVgpu)
        .unwrap();
    assert!(f.message.contains("1 of 2 VFs free"), "{}", f.message);
    assert!(
        f.message.contains("nvidia-923 (NVIDIA L4-6Q)"),
        "{}",
        f.message
    );
    assert_eq!(l4.verdicts[&Use::Shared], Verdict::Ready);
    assert!(!fired(&r, "0000:03:00.0", RuleId::SharedNvidiaVgpu));
    let mut taken = v.clone();
    dev(&mut taken, "0000:05:00.5")
        .nvidia_vgpu
        .as_mut()
        .unwrap()
        .current = Some(924);
    assert_eq!(
        gpu(&run(&taken), "0000:05:00.0").verdicts[&Use::Shared],
        Verdict::Blocked
    );
}

/// A card that cannot be split is a fact in a plain check (info, "cannot split"), and a
/// block when the shared use is asked for.
#[test]
fn an_unsplittable_card_blocks_only_when_shared_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("nvidia-desktop", dir.path()).unwrap();
    let text = |args: &[&str]| {
        let o = passthru_fixed(dir.path(), args);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plain = text(&["check", "07:00.0"]);
    assert!(plain.contains("shared: cannot split"), "{plain}");
    assert!(plain.contains("[info] shared.none:"), "{plain}");
    assert!(!plain.contains("[BLOCKS] shared.none"), "{plain}");
    let asked = text(&["check", "07:00.0", "--for", "shared"]);
    assert!(asked.contains("shared: blocked"), "{asked}");
    assert!(asked.contains("[BLOCKS] shared.none:"), "{asked}");
    // A card that can be split keeps its verdict word in a plain check.
    let dir2 = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("intel-adl-sriov", dir2.path()).unwrap();
    let o = passthru_fixed(dir2.path(), &["check", "00:02.0"]);
    let split = String::from_utf8_lossy(&o.stdout);
    assert!(!split.contains("cannot split"), "{split}");
}

/// The mdev finding's fix names a type with an instance free and the command for the host:
/// libvirt needs the instance made first, Proxmox makes it at VM start. The fix runs.
#[test]
fn the_mdev_fix_fits_the_host_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named("nvidia-vgpu-mdev", root).unwrap();
    let fix = |root: &std::path::Path| {
        let o = passthru_fixed(root, &["check", "03:00.0", "--for", "shared", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["gpus"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "shared.mdev-types")
            .and_then(|f| f["fix"].as_str())
            .unwrap()
            .to_string()
    };
    let libvirt = fix(root);
    assert_eq!(
        libvirt,
        "passthru share mdev 0000:03:00.0 --type nvidia-47 --count 1 --now, then passthru libvirt attach DOMAIN 0000:03:00.0 --mdev nvidia-47"
    );
    let first = libvirt.split(", then ").next().unwrap();
    let args: Vec<&str> = first.split_whitespace().skip(1).collect();
    let o = passthru_fixed(root, &[args.as_slice(), &["--yes"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir_all(root.join("etc/pve")).unwrap();
    assert_eq!(
        fix(root),
        "passthru vm attach VMID 0000:03:00.0 --mdev nvidia-47"
    );
}
