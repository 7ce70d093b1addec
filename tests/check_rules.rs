//! Every check rule, with a fixture where it fires and one where it must stay silent. The
//! fixtures are synthetic hosts modelled on real boards (tests/fixtures/synthetic); where a
//! condition is a single fact, the "fires" case is that host's snapshot with the one fact
//! changed, which is said next to it.

mod common;

use common::*;
use passthru::check::{check_host, CheckReport, CheckRequest, Effect, RuleId, Use, Verdict};
use passthru::model::{IrqRemapping, PciAddress, Snapshot};

fn run(s: &Snapshot) -> CheckReport {
    check_host(s, &CheckRequest::default())
}

fn run_forced(s: &Snapshot) -> CheckReport {
    check_host(
        s,
        &CheckRequest {
            gpus: vec![],
            force: true,
        },
    )
}

/// The rule ids that fired for the GPU at `addr` (or the first GPU).
fn fired(r: &CheckReport, addr: Option<&str>) -> Vec<RuleId> {
    let g = match addr {
        Some(a) => r
            .gpus
            .iter()
            .find(|g| g.address.to_string() == a)
            .expect("GPU in report"),
        None => &r.gpus[0],
    };
    g.findings.iter().map(|f| f.id).collect()
}

fn has(r: &CheckReport, id: RuleId) -> bool {
    fired(r, None).contains(&id)
}

fn verdict(r: &CheckReport, u: Use) -> Verdict {
    r.gpus[0].verdicts[&u]
}

fn gpu_mut(s: &mut Snapshot) -> &mut passthru::model::PciDevice {
    s.devices.iter_mut().find(|d| d.is_gpu()).unwrap()
}

#[test]
fn cpu_virtualisation() {
    let vm_guest = run(&check_snapshot_of("no-iommu")); // a QEMU guest without nested virt
    assert!(has(&vm_guest, RuleId::CpuVirtMissing));
    assert_eq!(verdict(&vm_guest, Use::Vm), Verdict::Blocked);
    let desktop = check_snapshot_of("nvidia-desktop");
    assert!(!has(&run(&desktop), RuleId::CpuVirtMissing));
    let mut unread = desktop.clone();
    unread.system.cpu = Default::default(); // proc/cpuinfo unreadable
    assert!(has(&run(&unread), RuleId::CpuUnknown));
    assert!(!has(&run(&desktop), RuleId::CpuUnknown));
}

#[test]
fn iommu_firmware_kernel_and_parameters() {
    let none = run(&check_snapshot_of("no-iommu"));
    assert!(has(&none, RuleId::IommuFirmwareOff));
    let desktop = check_snapshot_of("nvidia-desktop");
    let r = run(&desktop);
    assert!(!has(&r, RuleId::IommuFirmwareOff) && !has(&r, RuleId::IommuKernelOff));

    // Firmware table present, kernel did not enable it (amd_iommu=off on the command line).
    let mut off = desktop.clone();
    off.iommu.units.clear();
    off.iommu.group_count = 0;
    off.groups.clear();
    off.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("quiet amd_iommu=off");
    let r = run(&off);
    assert!(has(&r, RuleId::IommuKernelOff));
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::IommuKernelOff)
        .unwrap();
    assert!(f.message.contains("amd_iommu=off") && f.effect == Effect::NeedsSetup);
    assert!(
        !f.fix.as_deref().unwrap().contains("amd_iommu=on "),
        "never suggests amd_iommu=on"
    );

    // No-IOMMU mode is not an IOMMU.
    let mut noiommu = off.clone();
    noiommu.groups.push(passthru::model::IommuGroup {
        id: "0".into(),
        kind: None,
        name: Some("vfio-noiommu".into()),
        devices: vec![],
        mdevs: Vec::new(),
    });
    assert!(has(&run(&noiommu), RuleId::IommuNoiommu));
    assert!(!has(&run(&desktop), RuleId::IommuNoiommu));

    // amd_iommu=on is not a valid value (the twin-GPU host has it).
    assert!(has(
        &run(&check_snapshot_of("twin-gpus")),
        RuleId::IommuInvalidParam
    ));
    assert!(!has(&r, RuleId::IommuInvalidParam));

    // iommu=pt: recommended where missing (desktop), silent where set (QEMU captures).
    assert!(has(&run(&desktop), RuleId::IommuPtRecommended));
    let qemu = check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"),
    ));
    assert!(!has(&run(&qemu), RuleId::IommuPtRecommended));

    // Intel on by the kernel's default (Debian 12: CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y)
    // is said when intel_iommu= is absent, and not when it is given.
    assert!(
        !has(&run(&qemu), RuleId::IommuIntelDefaultOn),
        "the QEMU guest booted with intel_iommu=on"
    );
    let mut default_on = qemu.clone();
    default_on
        .system
        .cmdline_params
        .retain(|p| p.key != "intel_iommu");
    assert!(has(&run(&default_on), RuleId::IommuIntelDefaultOn));
}

#[test]
fn interrupt_remapping() {
    let desktop = check_snapshot_of("nvidia-desktop");
    assert_eq!(desktop.iommu.irq_remapping, IrqRemapping::Enabled);
    let r = run(&desktop);
    assert!(
        !has(&r, RuleId::IrqRemappingMissing)
            && !has(&r, RuleId::IrqUnsafeAllowed)
            && !has(&r, RuleId::IrqUnknown)
    );
    let mut missing = desktop.clone();
    missing.iommu.irq_remapping = IrqRemapping::NotSeen; // proc/interrupts without IR- chips
    let r = run(&missing);
    assert!(has(&r, RuleId::IrqRemappingMissing));
    assert_eq!(verdict(&r, Use::Vm), Verdict::Blocked);
    let mut unsafe_ok = missing.clone();
    unsafe_ok.iommu.allow_unsafe_interrupts = Some(true);
    let r = run(&unsafe_ok);
    assert!(has(&r, RuleId::IrqUnsafeAllowed) && !has(&r, RuleId::IrqRemappingMissing));
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::IrqUnsafeAllowed)
        .unwrap();
    assert!(
        f.message.contains("inject"),
        "the security trade-off is said"
    );
    let mut unknown = desktop.clone();
    unknown.iommu.irq_remapping = IrqRemapping::Unknown;
    assert!(has(&run(&unknown), RuleId::IrqUnknown));
}

#[test]
fn vfio_modules() {
    let n100 = check_snapshot_of("intel-n100"); // Ubuntu-style kernel with vfio built in
    assert!(has(&run(&n100), RuleId::VfioBuiltin));
    let desktop = check_snapshot_of("nvidia-desktop");
    assert!(!has(&run(&desktop), RuleId::VfioBuiltin));
    assert!(has(&run(&desktop), RuleId::VfioNotLoaded));
    let qemu = check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"),
    ));
    assert!(
        !has(&run(&qemu), RuleId::VfioNotLoaded),
        "the guest loaded vfio_pci"
    );

    // vfio_virqfd listed: stale on 6.2+ (the N100 runs 6.8), fine on 6.1.
    let list = passthru::model::ModuleList {
        file: "etc/dracut.conf.d/vfio.conf".into(),
        kind: "dracut".into(),
        modules: vec!["vfio_pci".into(), "vfio_virqfd".into()],
        ignored_by_tool: false,
    };
    let mut stale = n100.clone();
    stale.vfio_config.module_lists.push(list.clone());
    assert!(has(&run(&stale), RuleId::VfioVirqfdStale));
    let mut old = desktop.clone(); // kernel 6.1
    old.vfio_config.module_lists.push(list.clone());
    assert!(!has(&run(&old), RuleId::VfioVirqfdStale));

    // A dracut file without .conf is ignored by dracut.
    let mut ignored = desktop.clone();
    ignored
        .vfio_config
        .module_lists
        .push(passthru::model::ModuleList {
            file: "etc/dracut.conf.d/vfio".into(),
            ignored_by_tool: true,
            ..list
        });
    assert!(has(&run(&ignored), RuleId::VfioDracutIgnored));
    assert!(!has(&run(&old), RuleId::VfioDracutIgnored));
}

#[test]
fn group_isolation_and_slot_functions() {
    let apu = run(&check_snapshot_of("apu-shared-group"));
    assert!(has(&apu, RuleId::GroupShared));
    let f = apu.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::GroupShared)
        .unwrap();
    assert!(
        f.evidence.contains("xhci") || f.evidence.contains("ahci"),
        "names the devices: {}",
        f.evidence
    );
    assert!(
        f.fix.as_deref().unwrap().contains("weakens"),
        "the ACS override is named for what it is"
    );
    assert_eq!(verdict(&apu, Use::Vm), Verdict::Blocked);

    let desktop = run(&check_snapshot_of("nvidia-desktop"));
    assert!(!has(&desktop, RuleId::GroupShared) && has(&desktop, RuleId::GroupIsolated));

    // All functions of the slot go together: the Turing card's audio, USB-C and UCSI.
    let turing = run(&check_snapshot_of("turing-usbc"));
    assert_eq!(turing.gpus[0].functions.len(), 4);
    assert!(has(&turing, RuleId::SlotFunctions));
    assert!(
        !has(&turing, RuleId::GroupShared),
        "the root port in its group is a bridge, no obstacle"
    );
    let n100 = run(&check_snapshot_of("intel-n100"));
    assert!(!has(&n100, RuleId::SlotFunctions));

    // A card whose audio function sits in a group of its own (Navi): both groups are named.
    let navi = run(&check_snapshot_of("amd-navi"));
    assert!(has(&navi, RuleId::SlotSplitGroups));
    assert!(!has(&desktop, RuleId::SlotSplitGroups));

    // IOMMU on but the GPU in no group.
    let mut nogroup = check_snapshot_of("nvidia-desktop");
    gpu_mut(&mut nogroup).iommu_group = None;
    assert!(has(&run(&nogroup), RuleId::GroupNone));
    assert!(!has(&desktop, RuleId::GroupNone));
}

#[test]
fn host_devices_are_protected() {
    let base = check_snapshot_of("apu-shared-group");
    let gpu_group = base.gpus().next().unwrap().iommu_group.clone().unwrap();
    let group_members: Vec<PciAddress> = base.group(&gpu_group).unwrap().devices.clone();
    let sata = *group_members
        .iter()
        .find(|a| {
            base.device(a)
                .unwrap()
                .class
                .is_some_and(|c| c.base() == 0x01)
        })
        .expect("the APU group holds the SATA controller");
    let mut disk = base.clone();
    disk.host_usage.boot_disk_controllers = vec![sata]; // the root filesystem on that SATA disk
    let r = run(&disk);
    assert!(has(&r, RuleId::SafetyBootDisk));
    assert!(!has(&run(&base), RuleId::SafetyBootDisk));
    let forced = run_forced(&disk);
    let f = forced.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::SafetyBootDisk)
        .unwrap();
    assert_eq!(
        f.effect,
        Effect::None,
        "--force turns the block into a warning"
    );

    let usb = *group_members
        .iter()
        .find(|a| {
            base.device(a)
                .unwrap()
                .class
                .is_some_and(|c| c.class16() == 0x0c03)
        })
        .unwrap();
    let mut net = base.clone();
    net.host_usage.default_route_devices = vec![usb]; // a USB NIC carries the default route
    assert!(has(&run(&net), RuleId::SafetyNetwork));
    assert!(!has(&run(&base), RuleId::SafetyNetwork));

    // The only display: fires on the single-GPU desktop, not where another GPU serves the host.
    let desktop = run(&check_snapshot_of("nvidia-desktop"));
    assert!(has(&desktop, RuleId::SafetyOnlyDisplay));
    assert_eq!(verdict(&desktop, Use::Vm), Verdict::Blocked);
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(!fired(&p40, Some("0000:03:00.0")).contains(&RuleId::SafetyOnlyDisplay));
}

#[test]
fn reset_methods_and_amd_families() {
    let n100 = run(&check_snapshot_of("intel-n100"));
    assert!(has(&n100, RuleId::ResetNone));
    let desktop_snap = check_snapshot_of("nvidia-desktop");
    let desktop = run(&desktop_snap);
    assert!(!has(&desktop, RuleId::ResetNone));
    assert!(
        has(&desktop, RuleId::ResetBusOnly),
        "bus only, two functions"
    );
    assert!(!has(&n100, RuleId::ResetBusOnly));

    let navi21 = run(&check_snapshot_of("amd-navi"));
    assert!(
        has(&navi21, RuleId::ResetAmdUnsupported),
        "RX 6800 XT: Navi 21 is not covered by vendor-reset"
    );
    assert!(!has(&navi21, RuleId::ResetAmdBug));
    assert!(!has(&desktop, RuleId::ResetAmdUnsupported) && !has(&desktop, RuleId::ResetAmdBug));
    let mut navi10 = check_snapshot_of("amd-navi");
    gpu_mut(&mut navi10).device = Some(passthru::model::PciId(0x731f)); // RX 5700 XT
    let r = run(&navi10);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::ResetAmdBug)
        .unwrap();
    assert!(f.fix.as_deref().unwrap().contains("device_specific"));
    // With vendor-reset loaded and selected, it is only information.
    let mut fixed = navi10.clone();
    fixed
        .system
        .loaded_modules
        .get_or_insert_with(Vec::new)
        .push(passthru::model::LoadedModule {
            name: "vendor_reset".into(),
            used_by: vec![],
        });
    gpu_mut(&mut fixed).reset.methods = Some(vec!["device_specific".into(), "bus".into()]);
    let f = run(&fixed).gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::ResetAmdBug)
        .cloned()
        .unwrap();
    assert_eq!(f.severity, passthru::check::Severity::Info);

    // D3cold: warned for AMD families with d3cold allowed, not for the NVIDIA card.
    assert!(has(&navi21, RuleId::PmD3coldRisk));
    assert!(!has(&desktop, RuleId::PmD3coldRisk));
    let mut asleep = desktop_snap.clone();
    gpu_mut(&mut asleep).power.runtime_status = Some("suspended".into());
    assert!(has(&run(&asleep), RuleId::PmSuspended));
    assert!(!has(&desktop, RuleId::PmSuspended));
    // The words follow the power state: asleep in D3cold, or idle in D0 (a device without PCI
    // power management; the e2e lab's emulated card said "suspended (power_state D0)").
    let message = |state: &str| {
        let mut s = asleep.clone();
        gpu_mut(&mut s).power.state = Some(state.into());
        run(&s).gpus[0]
            .findings
            .iter()
            .find(|f| f.id == RuleId::PmSuspended)
            .map(|f| f.message.clone())
            .unwrap()
    };
    assert!(message("D3cold").contains("asleep in D3cold"));
    let d0 = message("D0");
    assert!(
        d0.contains("stays in D0") && !d0.contains("asleep in"),
        "{d0}"
    );
}

#[test]
fn driver_state_blacklists_and_ids() {
    let desktop = run(&check_snapshot_of("nvidia-desktop"));
    assert!(has(&desktop, RuleId::VfioNotBound) && !has(&desktop, RuleId::VfioBound));
    let twins = run(&check_snapshot_of("twin-gpus"));
    // The second card is already on vfio-pci: ready for a VM, and needs setup for the host.
    let second = twins
        .gpus
        .iter()
        .find(|g| g.verdicts[&Use::Vm] == Verdict::Ready)
        .expect("one twin is on vfio-pci");
    assert!(second.findings.iter().any(|f| f.id == RuleId::VfioBound));
    assert!(second.findings.iter().any(|f| f.id == RuleId::HostOnVfio));
    assert_eq!(second.verdicts[&Use::Host], Verdict::NeedsSetup);
    // Effective: the next step is the attach command of the host's own VM manager.
    let mut snap = check_snapshot_of("twin-gpus");
    let addr = second.address;
    let step = |s: &Snapshot| passthru::state::card_state(s, &addr).next_step;
    snap.system.proxmox = None;
    assert!(
        step(&snap).contains("passthru libvirt attach DOMAIN"),
        "{}",
        step(&snap)
    );
    snap.system.proxmox = Some(Default::default());
    assert!(
        step(&snap).contains("passthru vm attach VMID"),
        "{}",
        step(&snap)
    );
    assert!(
        !step(&snap).contains("until the next boot"),
        "{}",
        step(&snap)
    );
    // On vfio-pci with no file binding it (passthru bind, or rolled back, not rebooted): it
    // lasts until the next boot, and check says how to keep it.
    snap.vfio_config = Default::default();
    assert!(
        step(&snap).contains("until the next boot"),
        "{}",
        step(&snap)
    );
    assert!(step(&snap).contains("passthru setup vm"), "{}", step(&snap));
    // Identical cards: an ids= line captures both, and the configured one already does.
    assert!(has(&twins, RuleId::IdsCapture) && has(&twins, RuleId::IdsConfiguredCapture));
    assert!(!has(&desktop, RuleId::IdsCapture) && !has(&desktop, RuleId::IdsConfiguredCapture));
    // Two P40s on one nvidia driver: blacklisting it would take the other too.
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(fired(&p40, Some("0000:03:00.0")).contains(&RuleId::DriverShared));
    assert!(!has(&desktop, RuleId::DriverShared));
    // A card without a driver cannot serve the host.
    let bridges = run(&check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-bridges/root.tar.gz"),
    )));
    assert!(fired(&bridges, Some("0000:02:03.0")).contains(&RuleId::HostNoDriver));
    assert!(!has(&desktop, RuleId::HostNoDriver) && !has(&desktop, RuleId::HostOnVfio));
}

#[test]
fn console_framebuffer_monitors_and_users() {
    let snap = check_snapshot_of("nvidia-desktop");
    let r = run(&snap);
    assert!(has(&r, RuleId::ConsoleMonitor));
    assert!(!has(&r, RuleId::ConsoleFramebuffer) && !has(&r, RuleId::ConsoleInUse));
    assert!(has(&r, RuleId::ConsoleBootVga));
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(
        !fired(&p40, Some("0000:03:00.0")).contains(&RuleId::ConsoleMonitor),
        "a 3D controller has no outputs"
    );

    // simpledrm holds the boot GPU's framebuffer (kernel 5.15+ sysfb).
    let mut fb = snap.clone();
    fb.host_usage.framebuffer_names = vec!["simpledrm".into()];
    let r = run(&fb);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::ConsoleFramebuffer)
        .unwrap();
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .contains("initcall_blacklist=sysfb_init"));
    assert!(
        f.fix.as_deref().unwrap().contains("does not fix"),
        "video=efifb:off is named as no fix"
    );
    let mut done = fb.clone();
    done.system
        .cmdline_params
        .push(passthru::model::CmdlineParam {
            key: "initcall_blacklist".into(),
            value: Some("sysfb_init".into()),
        });
    assert!(!has(&run(&done), RuleId::ConsoleFramebuffer));
    // The same from proc/iomem: BOOTFB inside the GPU's BAR (as root sees it).
    let mut iomem = snap.clone();
    gpu_mut(&mut iomem).bars = vec![(0xe0000000, 0xefffffff)];
    iomem.host_usage.boot_framebuffers = vec![(0xe0000000, 0xe07e8fff)];
    assert!(has(&run(&iomem), RuleId::ConsoleFramebuffer));

    // A process holding the card: reported with its pid, never stopped.
    let mut busy = snap.clone();
    busy.host_usage.device_users = Some(vec![passthru::model::DeviceUser {
        pid: 4242,
        command: Some("Xorg".into()),
        node: "/dev/nvidia0".into(),
    }]);
    let r = run(&busy);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::ConsoleInUse)
        .unwrap();
    assert!(f.evidence.contains("4242") && f.evidence.contains("Xorg"));
}

#[test]
fn container_use() {
    let desktop_snap = check_snapshot_of("nvidia-desktop");
    let r = run(&desktop_snap);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == RuleId::LxcNvidiaVersion)
        .unwrap();
    assert!(f.message.contains("550.54.14"));
    assert!(has(&r, RuleId::LxcNvidiaNodes) && !has(&r, RuleId::LxcNvidiaUvmMissing));
    assert_eq!(verdict(&r, Use::Lxc), Verdict::Ready);
    let mut no_uvm = desktop_snap.clone();
    no_uvm.system.char_majors.retain(|(_, n)| n != "nvidia-uvm");
    assert!(has(&run(&no_uvm), RuleId::LxcNvidiaUvmMissing));
    let mut no_version = desktop_snap.clone();
    no_version.system.nvidia_driver_version = None;
    let r2 = run(&no_version);
    assert!(has(&r2, RuleId::LxcNvidiaVersionUnknown));
    assert_eq!(verdict(&r2, Use::Lxc), Verdict::Unknown);

    let n100_snap = check_snapshot_of("intel-n100");
    let n100 = run(&n100_snap);
    assert!(has(&n100, RuleId::LxcRenderNode) && !has(&n100, RuleId::LxcNoRenderNode));
    assert!(!has(&n100, RuleId::LxcSriov));
    let mut sriov = n100_snap.clone();
    gpu_mut(&mut sriov).sriov = Some(passthru::model::SriovInfo {
        total_vfs: Some(7),
        num_vfs: Some(0),
        vfs: vec![],
        ..Default::default()
    });
    assert!(has(&run(&sriov), RuleId::LxcSriov));
    let mut no_render = n100_snap.clone();
    no_render.drm[0].render_node = None;
    assert!(has(&run(&no_render), RuleId::LxcNoRenderNode));
}

#[test]
fn unreadable_gpu_is_unknown() {
    let mut s = check_snapshot_of("nvidia-desktop");
    gpu_mut(&mut s).vendor = None;
    let r = run(&s);
    assert!(has(&r, RuleId::GpuUnreadable));
    assert!(r.gpus[0].verdicts.values().all(|v| *v >= Verdict::Unknown));
    assert!(!has(
        &run(&check_snapshot_of("nvidia-desktop")),
        RuleId::GpuUnreadable
    ));
}

#[test]
fn reset_disabled_and_no_drm_card() {
    let snap = check_snapshot_of("nvidia-desktop");
    let mut disabled = snap.clone();
    gpu_mut(&mut disabled).reset.methods = Some(vec![]); // `echo > reset_method` was done
    assert!(has(&run(&disabled), RuleId::ResetDisabled));
    assert!(!has(&run(&snap), RuleId::ResetDisabled));

    let n100 = check_snapshot_of("intel-n100");
    let mut no_drm = n100.clone();
    no_drm.drm.clear(); // i915 bound but registered no DRM card
    assert!(has(&run(&no_drm), RuleId::LxcNoDrm));
    assert!(!has(&run(&n100), RuleId::LxcNoDrm));
}

/// The fixtures, each read once: building and reading a host tree is the slow part.
struct Hosts(std::collections::HashMap<&'static str, Snapshot>);

impl Hosts {
    fn get(&mut self, name: &'static str) -> Snapshot {
        self.0
            .entry(name)
            .or_insert_with(|| match name.strip_prefix("qemu/") {
                Some(q) => check_snapshot(&unpacked(
                    &repo().join(format!("tests/fixtures/qemu/{q}/root.tar.gz")),
                )),
                None => check_snapshot_of(name),
            })
            .clone()
    }
}

/// A host and the GPU to look at (the first when `None`).
type Host = (Snapshot, Option<&'static str>);

/// One rule: a host where it fires, and one where it must stay silent.
struct Case {
    rule: RuleId,
    fires: Host,
    silent: Host,
}

/// Every rule's pair, built from the synthetic and QEMU fixtures with the one fact changed
/// that is said beside it. The table is checked against `RuleId::ALL`, so a new rule
/// without its pair fails `every_rule_fires_in_one_fixture_and_not_in_another`.
fn rule_cases() -> Vec<Case> {
    use RuleId::*;
    let mut h = Hosts(Default::default());
    let desktop = h.get("nvidia-desktop");
    let n100 = h.get("intel-n100");
    let navi = h.get("amd-navi");
    let apu = h.get("apu-shared-group");
    let twins = h.get("twin-gpus");
    let p40 = h.get("tesla-p40");
    let qemu = h.get("qemu/intel-flat");
    let adl = h.get("intel-adl-sriov");
    let mdev = h.get("nvidia-vgpu-mdev");
    let vgpu = h.get("nvidia-vgpu-vfio");
    let pf = Some("0000:00:02.0");
    // The adl host after `share vfs --count 0`: sriov_numvfs 0, no VF.
    let mut adl_novfs = adl.clone();
    if let Some(x) = adl_novfs
        .devices
        .iter_mut()
        .find(|d| d.address.to_string() == "0000:00:02.0")
        .and_then(|d| d.sriov.as_mut())
    {
        x.num_vfs = Some(0);
        x.vfs.clear();
    }
    adl_novfs.devices.retain(|d| d.physfn.is_none());
    let edit = |s: &Snapshot, f: &dyn Fn(&mut Snapshot)| {
        let mut s = s.clone();
        f(&mut s);
        s
    };
    let on_gpu = |s: &mut Snapshot, f: &dyn Fn(&mut passthru::model::PciDevice)| f(gpu_mut(s));
    // The firmware has the IOMMU, the kernel has none (amd_iommu=off on the command line).
    let kernel_off = edit(&desktop, &|s| {
        s.iommu.units.clear();
        s.iommu.group_count = 0;
        s.groups.clear();
        s.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("quiet amd_iommu=off");
    });
    let virqfd = passthru::model::ModuleList {
        file: "etc/dracut.conf.d/vfio.conf".into(),
        kind: "dracut".into(),
        modules: vec!["vfio_pci".into(), "vfio_virqfd".into()],
        ignored_by_tool: false,
    };
    let with_list = |s: &Snapshot, l: &passthru::model::ModuleList| {
        edit(s, &|s| s.vfio_config.module_lists.push(l.clone()))
    };
    let irq = |s: &Snapshot, v: IrqRemapping, unsafe_ok: Option<bool>| {
        edit(s, &|s| {
            s.iommu.irq_remapping = v;
            s.iommu.allow_unsafe_interrupts = unsafe_ok;
        })
    };
    // The APU's group holds its SATA controller and a USB controller.
    let apu_member = |class: u16| {
        let g = apu.gpus().next().unwrap().iommu_group.clone().unwrap();
        *apu.group(&g)
            .unwrap()
            .devices
            .iter()
            .find(|a| {
                apu.device(a)
                    .unwrap()
                    .class
                    .is_some_and(|c| c.class16() == class)
            })
            .unwrap()
    };
    let (sata, usb) = (apu_member(0x0106), apu_member(0x0c03));
    let no_uvm = edit(&desktop, &|s| {
        s.system.char_majors.retain(|(_, n)| n != "nvidia-uvm")
    });
    let no_nvidia_version = edit(&desktop, &|s| s.system.nvidia_driver_version = None);
    let no_render = edit(&n100, &|s| s.drm[0].render_node = None);
    let simpledrm = edit(&desktop, &|s| {
        s.host_usage.framebuffer_names = vec!["simpledrm".into()]
    });
    let intgpu_off = |s: &Snapshot| {
        edit(s, &|s| {
            s.system.kernel_config = vec![(
                "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF".into(),
                "y".into(),
            )]
        })
    };
    let second_twin = Some("0000:0c:00.0"); // already on vfio-pci
    let p40_card = Some("0000:03:00.0"); // a 3D controller, not the console
    let case = |rule, fires, silent| Case {
        rule,
        fires,
        silent,
    };
    vec![
        case(
            CpuUnknown,
            (edit(&desktop, &|s| s.system.cpu = Default::default()), None),
            (desktop.clone(), None),
        ),
        case(
            CpuVirtMissing,
            (h.get("no-iommu"), None),
            (desktop.clone(), None),
        ),
        case(
            IommuNoiommu,
            (
                edit(&kernel_off, &|s| {
                    s.groups.push(passthru::model::IommuGroup {
                        id: "0".into(),
                        kind: None,
                        name: Some("vfio-noiommu".into()),
                        devices: vec![],
                        mdevs: Vec::new(),
                    })
                }),
                None,
            ),
            (kernel_off.clone(), None),
        ),
        case(
            IommuFirmwareOff,
            (h.get("no-iommu"), None),
            (kernel_off.clone(), None),
        ),
        case(
            IommuKernelOff,
            (kernel_off.clone(), None),
            (desktop.clone(), None),
        ),
        case(
            IommuPtRecommended,
            (desktop.clone(), None),
            (qemu.clone(), None),
        ),
        case(
            IommuIntelDefaultOn,
            (
                edit(&qemu, &|s| {
                    s.system.cmdline_params.retain(|p| p.key != "intel_iommu")
                }),
                None,
            ),
            (qemu.clone(), None),
        ),
        // Debian's intgpu_off default on the N100's kernel (its iGPU is 00:02.0); the
        // upstream default (the N100 as it is) maps the iGPU.
        case(
            IommuIntgpuOff,
            (intgpu_off(&n100), None),
            (n100.clone(), None),
        ),
        case(
            IommuInvalidParam,
            (twins.clone(), None),
            (desktop.clone(), None),
        ),
        case(
            IrqUnsafeAllowed,
            (irq(&desktop, IrqRemapping::NotSeen, Some(true)), None),
            (irq(&desktop, IrqRemapping::NotSeen, Some(false)), None),
        ),
        case(
            IrqRemappingMissing,
            (irq(&desktop, IrqRemapping::NotSeen, None), None),
            (irq(&desktop, IrqRemapping::NotSeen, Some(true)), None),
        ),
        case(
            IrqUnknown,
            (irq(&desktop, IrqRemapping::Unknown, None), None),
            (desktop.clone(), None),
        ),
        case(VfioBuiltin, (n100.clone(), None), (desktop.clone(), None)),
        case(VfioNotLoaded, (desktop.clone(), None), (qemu.clone(), None)),
        // Stale on 6.2+ (the N100 runs 6.8), fine on 6.1 (the desktop).
        case(
            VfioVirqfdStale,
            (with_list(&n100, &virqfd), None),
            (with_list(&desktop, &virqfd), None),
        ),
        case(
            VfioDracutIgnored,
            (
                with_list(
                    &desktop,
                    &passthru::model::ModuleList {
                        file: "etc/dracut.conf.d/vfio".into(),
                        ignored_by_tool: true,
                        ..virqfd.clone()
                    },
                ),
                None,
            ),
            (with_list(&desktop, &virqfd), None),
        ),
        case(
            VfioBound,
            (twins.clone(), second_twin),
            (desktop.clone(), None),
        ),
        case(
            VfioNotBound,
            (desktop.clone(), None),
            (twins.clone(), second_twin),
        ),
        case(
            GpuUnreadable,
            (edit(&desktop, &|s| on_gpu(s, &|g| g.vendor = None)), None),
            (desktop.clone(), None),
        ),
        case(
            GroupNone,
            (
                edit(&desktop, &|s| on_gpu(s, &|g| g.iommu_group = None)),
                None,
            ),
            (desktop.clone(), None),
        ),
        case(
            SlotFunctions,
            (h.get("turing-usbc"), None),
            (n100.clone(), None),
        ),
        case(
            SlotSplitGroups,
            (navi.clone(), None),
            (desktop.clone(), None),
        ),
        case(GroupIsolated, (desktop.clone(), None), (apu.clone(), None)),
        case(GroupShared, (apu.clone(), None), (desktop.clone(), None)),
        // The root filesystem on the SATA disk in the APU's group; a USB NIC on its route.
        case(
            SafetyBootDisk,
            (
                edit(&apu, &|s| s.host_usage.boot_disk_controllers = vec![sata]),
                None,
            ),
            (apu.clone(), None),
        ),
        case(
            SafetyNetwork,
            (
                edit(&apu, &|s| s.host_usage.default_route_devices = vec![usb]),
                None,
            ),
            (apu.clone(), None),
        ),
        case(
            SafetyOnlyDisplay,
            (desktop.clone(), None),
            (p40.clone(), p40_card),
        ),
        case(ResetNone, (n100.clone(), None), (desktop.clone(), None)),
        case(
            ResetDisabled,
            (
                edit(&desktop, &|s| {
                    on_gpu(s, &|g| g.reset.methods = Some(vec![]))
                }),
                None,
            ),
            (desktop.clone(), None),
        ),
        case(ResetBusOnly, (desktop.clone(), None), (n100.clone(), None)),
        case(
            ResetMethods,
            (p40.clone(), p40_card),
            (desktop.clone(), None),
        ),
        // Navi 10 (RX 5700 XT) is a vendor-reset family; Navi 21 is not.
        case(
            ResetAmdBug,
            (
                edit(&navi, &|s| {
                    on_gpu(s, &|g| g.device = Some(passthru::model::PciId(0x731f)))
                }),
                None,
            ),
            (navi.clone(), None),
        ),
        case(
            ResetAmdUnsupported,
            (navi.clone(), None),
            (desktop.clone(), None),
        ),
        case(
            PmSuspended,
            (
                edit(&desktop, &|s| {
                    on_gpu(s, &|g| g.power.runtime_status = Some("suspended".into()))
                }),
                None,
            ),
            (desktop.clone(), None),
        ),
        case(PmD3coldRisk, (navi.clone(), None), (desktop.clone(), None)),
        case(
            DriverShared,
            (p40.clone(), p40_card),
            (desktop.clone(), None),
        ),
        case(IdsCapture, (twins.clone(), None), (desktop.clone(), None)),
        case(
            IdsConfiguredCapture,
            (twins.clone(), None),
            (desktop.clone(), None),
        ),
        case(
            HostOnVfio,
            (twins.clone(), second_twin),
            (desktop.clone(), None),
        ),
        case(
            // passthru's own ids= line for the desktop card, not yet booted with: the host
            // keeps it only until the next boot.
            VfioPending,
            (
                edit(&desktop, &|s| {
                    s.vfio_config
                        .modprobe
                        .push(passthru::model::ModprobeDirective {
                            file: "etc/modprobe.d/passthru-vfio.conf".into(),
                            line: 3,
                            command: "options".into(),
                            module: "vfio-pci".into(),
                            args: "ids=10de:2206,10de:1aef".into(),
                        })
                }),
                None,
            ),
            (desktop.clone(), None),
        ),
        case(
            HostNoDriver,
            (h.get("qemu/intel-bridges"), Some("0000:02:03.0")),
            (desktop.clone(), None),
        ),
        case(
            HostDriver,
            (desktop.clone(), None),
            (twins.clone(), second_twin),
        ),
        case(
            ConsoleFramebuffer,
            (simpledrm.clone(), None),
            (desktop.clone(), None),
        ),
        // The boot display without a firmware framebuffer on it is only information.
        case(
            ConsoleBootVga,
            (desktop.clone(), None),
            (simpledrm.clone(), None),
        ),
        case(
            ConsoleMonitor,
            (desktop.clone(), None),
            (p40.clone(), p40_card),
        ),
        case(
            ConsoleInUse,
            (
                edit(&desktop, &|s| {
                    s.host_usage.device_users = Some(vec![passthru::model::DeviceUser {
                        pid: 4242,
                        command: Some("Xorg".into()),
                        node: "/dev/nvidia0".into(),
                    }])
                }),
                None,
            ),
            (desktop.clone(), None),
        ),
        case(
            LxcNvidiaVersion,
            (desktop.clone(), None),
            (no_nvidia_version.clone(), None),
        ),
        case(
            LxcNvidiaVersionUnknown,
            (no_nvidia_version, None),
            (desktop.clone(), None),
        ),
        case(
            LxcNvidiaNodes,
            (desktop.clone(), None),
            (no_uvm.clone(), None),
        ),
        case(LxcNvidiaUvmMissing, (no_uvm, None), (desktop.clone(), None)),
        case(
            LxcRenderNode,
            (n100.clone(), None),
            (no_render.clone(), None),
        ),
        case(LxcNoRenderNode, (no_render, None), (n100.clone(), None)),
        case(
            LxcNoDrm,
            (edit(&n100, &|s| s.drm.clear()), None),
            (n100.clone(), None),
        ),
        case(
            LxcSriov,
            (
                edit(&n100, &|s| {
                    on_gpu(s, &|g| {
                        g.sriov = Some(passthru::model::SriovInfo {
                            total_vfs: Some(7),
                            num_vfs: Some(0),
                            vfs: vec![],
                            ..Default::default()
                        })
                    })
                }),
                None,
            ),
            (n100.clone(), None),
        ),
        // Sharing (tests/check_shared.rs has the details): the N100 with i915-sriov-dkms and
        // two VFs, the P40 with mdev types, the L4 with per-VF nvidia/ files.
        case(
            SharedIsVf,
            (adl.clone(), Some("0000:00:02.1")),
            (adl.clone(), pf),
        ),
        case(SharedPfSplit, (adl.clone(), pf), (adl_novfs.clone(), pf)),
        case(SharedVfs, (adl.clone(), pf), (n100.clone(), None)),
        case(
            SharedVfOnHostDriver,
            (adl.clone(), pf),
            (
                edit(&adl, &|s| {
                    if let Some(d) = s
                        .devices
                        .iter_mut()
                        .find(|d| d.address.to_string() == "0000:00:02.2")
                    {
                        d.driver = Some("vfio-pci".into());
                    }
                }),
                pf,
            ),
        ),
        case(SharedVfsOff, (adl_novfs.clone(), pf), (adl.clone(), pf)),
        case(
            SharedDriverCannot,
            (
                edit(&n100, &|s| {
                    on_gpu(s, &|g| {
                        g.sriov = Some(passthru::model::SriovInfo {
                            total_vfs: Some(7),
                            num_vfs: Some(0),
                            ..Default::default()
                        })
                    })
                }),
                None,
            ),
            (adl.clone(), pf),
        ),
        case(
            SharedParamsMissing,
            (
                edit(&adl_novfs, &|s| {
                    s.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("ro")
                }),
                pf,
            ),
            (adl_novfs.clone(), pf),
        ),
        case(
            SharedDkmsNextKernel,
            (adl.clone(), pf),
            (
                edit(&adl, &|s| {
                    s.sharing.dkms.push(passthru::model::DkmsBuild {
                        module: "i915-sriov-dkms".into(),
                        version: "2025.07.22".into(),
                        kernel: "6.8.0-45-generic".into(),
                    })
                }),
                pf,
            ),
        ),
        case(
            SharedSecureBoot,
            (adl.clone(), pf),
            (
                edit(&adl, &|s| {
                    s.sharing.secure_boot = Some(passthru::model::SecureBoot::Off)
                }),
                pf,
            ),
        ),
        case(
            SharedMdevTypes,
            (mdev.clone(), p40_card),
            (p40.clone(), p40_card),
        ),
        case(
            SharedNvidiaVgpu,
            (vgpu.clone(), Some("0000:05:00.0")),
            (vgpu.clone(), p40_card),
        ),
        case(
            SharedNone,
            (p40.clone(), p40_card),
            (mdev.clone(), p40_card),
        ),
    ]
}

/// The project's rule: each check rule has a fixture where it fires and one where it must not.
#[test]
fn every_rule_fires_in_one_fixture_and_not_in_another() {
    let cases = rule_cases();
    let mut failures = Vec::new();
    for rule in RuleId::ALL {
        let mine: Vec<&Case> = cases.iter().filter(|c| c.rule == *rule).collect();
        if mine.is_empty() {
            failures.push(format!("{rule}: no case"));
        }
        for c in mine {
            let (fires, at) = &c.fires;
            if !fired(&run(fires), *at).contains(rule) {
                failures.push(format!("{rule}: does not fire where it should"));
            }
            let (silent, at) = &c.silent;
            if fired(&run(silent), *at).contains(rule) {
                failures.push(format!("{rule}: fires where it must not"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The findings of the first GPU with `rule`.
fn finding(r: &CheckReport, rule: RuleId) -> Option<&passthru::check::Finding> {
    r.gpus[0].findings.iter().find(|f| f.id == rule)
}

/// An IOMMU state to judge: which firmware tables, which parameters, which kernel defaults.
#[derive(Debug, Clone)]
struct IommuCase {
    dmar: bool,
    ivrs: bool,
    active: bool,
    noiommu_groups: bool,
    params: Vec<&'static str>,
    hypervisor: bool,
    cpu: Option<&'static str>,
    intel_default_on: bool,
}

impl IommuCase {
    fn apply(&self, base: &Snapshot) -> Snapshot {
        let mut s = base.clone();
        let tables = [("DMAR", self.dmar), ("IVRS", self.ivrs)];
        s.iommu.firmware_tables = tables
            .iter()
            .filter(|(_, on)| *on)
            .map(|(t, _)| t.to_string())
            .collect();
        if !self.active {
            s.iommu.units.clear();
            s.iommu.group_count = 0;
            s.groups.clear();
            for d in &mut s.devices {
                d.iommu_group = None;
            }
        }
        if self.noiommu_groups {
            s.groups.push(passthru::model::IommuGroup {
                id: "noiommu-0".into(),
                kind: None,
                name: Some("vfio-noiommu".into()),
                devices: vec![],
                mdevs: Vec::new(),
            });
        }
        s.system.cmdline_params = passthru::formats::cmdline::parse_cmdline(&self.params.join(" "));
        s.system.cpu.hypervisor = self.hypervisor;
        s.system.cpu.vendor_id = self.cpu.map(str::to_string);
        s.system.kernel_config = if self.intel_default_on {
            vec![("CONFIG_INTEL_IOMMU_DEFAULT_ON".into(), "y".into())]
        } else {
            vec![("CONFIG_INTEL_IOMMU".into(), "y".into())]
        };
        s
    }
}

fn iommu_case() -> impl proptest::strategy::Strategy<Value = IommuCase> {
    use proptest::prelude::*;
    let param = prop::sample::select(vec![
        "iommu=off",
        "intel_iommu=off",
        "amd_iommu=off",
        "iommu=pt",
        "intel_iommu=on",
        "amd_iommu=on",
        "quiet",
    ]);
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(param, 0..4),
        any::<bool>(),
        prop::sample::select(vec![None, Some("GenuineIntel"), Some("AuthenticAMD")]),
        any::<bool>(),
    )
        .prop_map(
            |((dmar, ivrs, active, noiommu_groups), params, hypervisor, cpu, intel_default_on)| {
                IommuCase {
                    dmar,
                    ivrs,
                    active,
                    noiommu_groups,
                    params,
                    hypervisor,
                    cpu,
                    intel_default_on,
                }
            },
        )
}

/// `list`'s header and `check`'s findings give the same cause for an IOMMU that is off,
/// because both come from one diagnosis. Before it, a host with no DMAR/IVRS table and
/// `iommu=off` got "remove iommu=off" from list and "enable VT-d in the firmware" from check.
#[test]
fn list_and_check_agree_on_why_the_iommu_is_off() {
    use passthru::assess::{summarize_iommu, IommuStatus};
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let base = check_snapshot_of("nvidia-desktop");
    let mut runner = TestRunner::new(Config {
        cases: 300,
        rng_seed: RngSeed::Fixed(0x0069_6f6d_6d75),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&iommu_case(), |c| {
            let s = c.apply(&base);
            let list = summarize_iommu(&s);
            let r = run(&s);
            let reason = list.reason.clone().unwrap_or_default();
            let firmware = finding(&r, RuleId::IommuFirmwareOff);
            let kernel = finding(&r, RuleId::IommuKernelOff);
            let noiommu = finding(&r, RuleId::IommuNoiommu);
            // The same state.
            proptest::prop_assert_eq!(list.status == IommuStatus::On, s.iommu.active());
            proptest::prop_assert_eq!(list.status == IommuStatus::NoIommuMode, noiommu.is_some());
            proptest::prop_assert_eq!(
                list.status == IommuStatus::Off,
                firmware.is_some() != kernel.is_some(),
                "{:?} / {:?}",
                list,
                r.gpus[0].findings.iter().map(|f| f.id).collect::<Vec<_>>()
            );
            // The same cause: the firmware, or the parameter named.
            let list_blames_firmware =
                reason.contains("no ACPI DMAR or IVRS table") || reason.contains("virtual machine");
            proptest::prop_assert_eq!(firmware.is_some(), list_blames_firmware, "list: {}", reason);
            if let Some(k) = kernel {
                for p in ["iommu=off", "intel_iommu=off", "amd_iommu=off"] {
                    let named = |t: &str| {
                        t.split(|c: char| c.is_whitespace() || c == '(' || c == ',')
                            .any(|w| w == p)
                    };
                    proptest::prop_assert_eq!(
                        named(&k.message),
                        named(&reason),
                        "{}: check says '{}', list says '{}'",
                        p,
                        k.message,
                        reason
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

/// An AMD IOMMU left off with no parameter against it is not something setup fixes (it
/// needs no parameter): check does not send the user to setup for it.
#[test]
fn an_amd_iommu_left_off_without_a_parameter_is_not_a_setup_fix() {
    let mut s = check_snapshot_of("nvidia-desktop"); // AMD: IVRS
    s.iommu.units.clear();
    s.iommu.group_count = 0;
    s.groups.clear();
    let r = run(&s);
    let f = finding(&r, RuleId::IommuKernelOff).expect("kernel-off fires");
    assert_eq!(f.effect, Effect::Unknown, "{f:?}");
    assert_eq!(verdict(&r, Use::Vm), Verdict::Unknown);
    let fix = f.fix.as_deref().unwrap_or_default();
    assert!(
        !fix.starts_with("passthru setup") && fix.contains("dmesg"),
        "{fix}"
    );
    // With amd_iommu=off it is a setup fix again (setup removes the parameter).
    s.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("amd_iommu=off");
    let r = run(&s);
    assert_eq!(
        finding(&r, RuleId::IommuKernelOff).unwrap().effect,
        Effect::NeedsSetup
    );
}

/// The words setup's plan puts into the boot configuration that were not there before.
fn setup_adds_word(root: &std::path::Path, s: &Snapshot, word: &str) -> bool {
    let host = passthru::host::HostRoot::new(root).unwrap();
    let req = passthru::plan::setup::SetupRequest {
        gpu: s.gpus().next().unwrap().address.to_string(),
        force: true,
        ..Default::default()
    };
    let plan =
        passthru::plan::setup::plan_setup_vm(s, &passthru::host::RootFiles::new(&host), &req)
            .unwrap();
    let has = |b: &Option<Vec<u8>>| {
        String::from_utf8_lossy(b.as_deref().unwrap_or_default())
            .split(|c: char| c.is_whitespace() || c == '"')
            .any(|w| w == word)
    };
    plan.edits.iter().any(|e| has(&e.after) && !has(&e.before))
}

/// check's word on the Intel kernel default matches what setup then does: with the IOMMU on
/// by default, setup adds no `intel_iommu=on` (check used to say it "still records it");
/// without the default, setup adds it and check says nothing of a default.
#[test]
fn the_intel_default_finding_says_what_setup_does() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("intel-n100", dir.path()).unwrap(); // CONFIG_..._DEFAULT_ON=y
    let s = check_snapshot(dir.path());
    let r = run(&s);
    let f = finding(&r, RuleId::IommuIntelDefaultOn).expect("fires on the N100");
    assert!(!setup_adds_word(dir.path(), &s, "intel_iommu=on"));
    assert!(
        f.message.contains("setup adds no intel_iommu="),
        "{}",
        f.message
    );

    let mut no_default = s.clone();
    no_default.system.kernel_config.clear();
    assert!(finding(&run(&no_default), RuleId::IommuIntelDefaultOn).is_none());
    assert!(setup_adds_word(dir.path(), &no_default, "intel_iommu=on"));
}

/// The plan `setup vm GPU` makes for the GPU at `addr` on the host at `root`, judged from
/// `s` (the snapshot, possibly with one fact changed).
fn setup_plan(
    root: &std::path::Path,
    s: &Snapshot,
    req: passthru::plan::setup::SetupRequest,
) -> Result<passthru::plan::Plan, passthru::plan::setup::SetupError> {
    let host = passthru::host::HostRoot::new(root).unwrap();
    passthru::plan::setup::plan_setup_vm(s, &passthru::host::RootFiles::new(&host), &req)
}

fn forced(addr: &str) -> passthru::plan::setup::SetupRequest {
    passthru::plan::setup::SetupRequest {
        gpu: addr.into(),
        force: true,
        ..Default::default()
    }
}

/// The text a plan's edit of `path` leaves, or "" when the plan does not write it.
fn written(plan: &passthru::plan::Plan, path: &str) -> String {
    plan.edits
        .iter()
        .find(|e| e.path == path)
        .and_then(|e| e.after.as_deref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn built(name: &str) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    let s = check_snapshot(dir.path());
    (dir, s)
}

/// The Tesla server's boot display is the BMC's ASPEED VGA; the two P40s are 3D controllers
/// (class 0302) with no outputs. Giving the ASPEED to a VM leaves the host without a screen,
/// so it blocks; `other_display` used to count every GPU not on vfio-pci as a display.
#[test]
fn only_a_gpu_that_can_drive_a_display_keeps_the_host_screen() {
    let p40 = check_snapshot_of("tesla-p40");
    let aspeed = "0000:02:00.0";
    let blocked = |s: &Snapshot| {
        let r = run(s);
        let g = r
            .gpus
            .iter()
            .find(|g| g.address.to_string() == aspeed)
            .unwrap();
        g.fired(RuleId::SafetyOnlyDisplay) && g.verdicts[&Use::Vm] == Verdict::Blocked
    };
    assert!(blocked(&p40), "the P40s cannot show the host's console");
    let with_p40 = |f: &dyn Fn(&mut Snapshot, PciAddress)| {
        let mut s = p40.clone();
        let a: PciAddress = "0000:03:00.0".parse().unwrap();
        f(&mut s, a);
        s
    };
    let set_class = |s: &mut Snapshot, a: PciAddress, class: u32| {
        s.devices.iter_mut().find(|d| d.address == a).unwrap().class =
            Some(passthru::model::ClassCode(class));
    };
    // A VGA-class card on its host driver is another display.
    let vga = with_p40(&|s, a| set_class(s, a, 0x030000));
    assert!(!blocked(&vga));
    // ... but not without a driver, nor on vfio-pci.
    let no_driver = with_p40(&|s, a| {
        set_class(s, a, 0x030000);
        s.devices
            .iter_mut()
            .find(|d| d.address == a)
            .unwrap()
            .driver = None;
    });
    assert!(blocked(&no_driver));
    // A 0380 display controller counts when its DRM card has connectors, not otherwise.
    let other = with_p40(&|s, a| set_class(s, a, 0x038000));
    assert!(blocked(&other));
    let with_outputs = with_p40(&|s, a| {
        set_class(s, a, 0x038000);
        s.drm.push(passthru::model::DrmCard {
            name: "card9".into(),
            device: Some(a),
            render_node: None,
            connectors: vec![passthru::model::DrmConnector {
                name: "DP-1".into(),
                status: Some("disconnected".into()),
            }],
            by_path: vec![],
        });
    });
    assert!(!blocked(&with_outputs));
}

/// `setup vm --force` and `bind --force` state, before anything else, each block that
/// `--force` overrides; without a block there is nothing to state.
#[test]
fn a_forced_plan_states_each_block_it_overrides() {
    let (dir, s) = built("nvidia-desktop"); // its only GPU is the boot display
    let gpu = s.gpus().next().unwrap().address.to_string();
    let refused = setup_plan(
        dir.path(),
        &s,
        passthru::plan::setup::SetupRequest {
            gpu: gpu.clone(),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("(safety.only-display)"), "{refused}");
    let plan = setup_plan(dir.path(), &s, forced(&gpu)).unwrap();
    let mut out = Vec::new();
    passthru::plan::diff::render_plan(&mut out, &plan, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    let second = text.lines().nth(1).unwrap_or_default();
    assert!(
        second.starts_with("Warning: --force: this is the host's only display GPU")
            && second.ends_with("(safety.only-display)"),
        "{text}"
    );
    // The same words as the refusal it replaces.
    let reason = refused.split_once(": ").unwrap().1;
    assert_eq!(second, format!("Warning: --force: {reason}"));

    let bind = passthru::plan::runtime::plan_bind(&s, &gpu, true).unwrap();
    let mut out = Vec::new();
    passthru::plan::diff::render_runtime_plan(&mut out, &bind, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().nth(1), Some(second), "{text}");

    // Nothing overridden, nothing stated: the P40 is not the console.
    let (dir, s) = built("tesla-p40");
    let plan = setup_plan(dir.path(), &s, forced("0000:03:00.0")).unwrap();
    let mut out = Vec::new();
    passthru::plan::diff::render_plan(&mut out, &plan, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("Warning:"), "{text}");
}

/// driver.shared and ids.capture say how setup binds the card, and setup binds it that
/// way: by address for a P40 (its twin has the same ids), with ids= for the Turing card
/// (whose ids are its own). The softdep the fix names is the one setup writes.
#[test]
fn driver_findings_say_how_setup_binds_the_card() {
    use passthru::plan::setup::{MODPROBE_FILE, UDEV_FILE};
    for (host, addr) in [
        ("tesla-p40", "0000:03:00.0"),
        ("turing-usbc", "0000:01:00.0"),
    ] {
        let (dir, s) = built(host);
        let plan = setup_plan(dir.path(), &s, forced(addr)).unwrap();
        let modprobe = written(&plan, MODPROBE_FILE);
        let by_address = written(&plan, UDEV_FILE).contains("driver_override");
        // ids= in passthru's modprobe file, or vfio-pci.ids= on the command line when
        // vfio-pci is built in (the Turing host's kernel has it built in).
        let in_modprobe = modprobe
            .lines()
            .find(|l| l.starts_with("options vfio-pci ids="))
            .map(|l| {
                format!(
                    "options vfio-pci {}",
                    l["options vfio-pci ".len()..].split(' ').next().unwrap()
                )
            });
        let on_cmdline = plan.edits.iter().find_map(|e| {
            let text = String::from_utf8_lossy(e.after.as_deref().unwrap_or_default()).into_owned();
            let i = text.find("vfio-pci.ids=")?;
            let word = text[i..]
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()?;
            Some(word.to_string())
        });
        let ids_line = in_modprobe.or(on_cmdline);
        assert!(
            by_address != ids_line.is_some(),
            "{host}: one way or the other"
        );
        let r = run(&s);
        let g = r
            .gpus
            .iter()
            .find(|g| g.address.to_string() == addr)
            .unwrap();
        let shared: Vec<&passthru::check::Finding> = g
            .findings
            .iter()
            .filter(|f| f.id == RuleId::DriverShared)
            .collect();
        assert!(!shared.is_empty(), "{host}");
        for f in shared {
            match &ids_line {
                None => assert!(
                    f.message.contains("binds this card by address") && !f.message.contains("ids="),
                    "{host}: {}",
                    f.message
                ),
                Some(ids) => assert!(
                    f.message.contains(ids.as_str()) && !f.message.contains("by address"),
                    "{host}: {} / {ids}",
                    f.message
                ),
            }
            let fix = f.fix.as_deref().unwrap();
            let softdep = fix
                .split("writes ")
                .nth(1)
                .and_then(|t| t.split(',').next())
                .unwrap_or_default();
            assert!(
                softdep.starts_with("softdep ") && modprobe.lines().any(|l| l == softdep),
                "{host}: the fix names '{softdep}', setup writes:\n{modprobe}"
            );
        }
        assert_eq!(
            g.fired(RuleId::IdsCapture),
            by_address,
            "{host}: ids.capture fires exactly when setup binds by address"
        );
    }
}

/// Fixes that setup applies by itself say so, without a flag setup does not need:
/// `disable_idle_d3=1` for a D3cold-risk family, `initcall_blacklist=sysfb_init` for a
/// framebuffer on the boot GPU.
#[test]
fn fixes_say_what_setup_does_without_flags() {
    use passthru::plan::setup::SetupRequest;
    let (dir, navi) = built("amd-navi");
    let gpu = navi.gpus().next().unwrap().address.to_string();
    let r = run(&navi);
    let fix = finding(&r, RuleId::PmD3coldRisk)
        .and_then(|f| f.fix.clone())
        .expect("pm.d3cold-risk fires for Navi 21");
    assert!(
        fix.contains(&format!(
            "passthru setup vm {gpu} adds options vfio-pci disable_idle_d3=1"
        )) && !fix.contains("--disable-idle-d3"),
        "{fix}"
    );
    let plain = SetupRequest {
        gpu: gpu.clone(),
        force: true,
        ..Default::default()
    };
    let plan = setup_plan(dir.path(), &navi, plain).unwrap();
    let modprobe = written(&plan, passthru::plan::setup::MODPROBE_FILE);
    assert!(modprobe.contains("disable_idle_d3=1"), "{modprobe}");
    // Where it does not fire, setup adds nothing.
    let (dir, desktop) = built("nvidia-desktop");
    let gpu = desktop.gpus().next().unwrap().address.to_string();
    assert!(finding(&run(&desktop), RuleId::PmD3coldRisk).is_none());
    let plan = setup_plan(dir.path(), &desktop, forced(&gpu)).unwrap();
    assert!(!written(&plan, passthru::plan::setup::MODPROBE_FILE).contains("disable_idle_d3"));

    // A firmware framebuffer on the desktop's boot GPU: setup adds the parameter unasked.
    let mut fb = desktop.clone();
    fb.host_usage.framebuffer_names = vec!["simpledrm".into()];
    let fix = finding(&run(&fb), RuleId::ConsoleFramebuffer)
        .and_then(|f| f.fix.clone())
        .unwrap();
    assert!(
        fix.starts_with(&format!(
            "passthru setup vm {gpu} adds initcall_blacklist=sysfb_init"
        )) && !fix.contains("--boot-gpu"),
        "{fix}"
    );
    assert!(setup_adds_word(
        dir.path(),
        &fb,
        "initcall_blacklist=sysfb_init"
    ));
}

/// Every `passthru setup …` a finding suggests names the GPU's real address (the host-wide
/// rules printed a literal `GPU`), and counted nouns agree with their numbers ("1 of the
/// card's functions are", "1 more function(s)").
#[test]
fn every_fix_names_the_gpu_and_every_count_agrees() {
    let mut checked = 0;
    for name in [
        "amd-navi",
        "apu-in-use",
        "apu-shared-group",
        "intel-n100",
        "no-iommu",
        "nvidia-desktop",
        "sriov-nic",
        "tesla-p40",
        "turing-usbc",
        "twin-gpus",
    ] {
        let mut s = check_snapshot_of(name);
        // Unload vfio-pci so vfio.not-loaded fires wherever it can.
        s.system.loaded_modules = Some(vec![]);
        let r = run(&s);
        for g in &r.gpus {
            let addr = g.address.to_string();
            for f in &g.findings {
                for text in [Some(&f.message), f.fix.as_ref()].into_iter().flatten() {
                    for cmd in ["passthru setup vm ", "passthru setup host "] {
                        for (i, _) in text.match_indices(cmd) {
                            let word = text[i + cmd.len()..].split([' ', ',', ')']).next();
                            assert_eq!(word, Some(addr.as_str()), "{name} {}: {text}", f.id);
                            checked += 1;
                        }
                    }
                    assert!(!text.contains("(s)"), "{name} {}: {text}", f.id);
                    let words: Vec<&str> = text.split_whitespace().collect();
                    for (i, w) in words.iter().enumerate() {
                        // `1` as a count, not the name of group 1.
                        if *w == "1" && (i == 0 || words[i - 1] != "group") {
                            let next = &words[i + 1..words.len().min(i + 5)];
                            assert!(
                                !next
                                    .iter()
                                    .any(|n| matches!(*n, "are" | "functions" | "devices")),
                                "{name} {}: {text}",
                                f.id
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} commands seen");
}

/// Debian's `CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF` (`intel_iommu=on,intgpu_off`) leaves
/// the Intel integrated GPU, and only it, unmapped; `intel_iommu=on` maps it again
/// (docs/domain-facts.md §1). For the N100's iGPU setup adds intel_iommu=on and check says
/// so; for a P40 on such a kernel the default holds and setup adds none.
#[test]
fn the_intgpu_off_default_needs_intel_iommu_on_for_the_igpu_only() {
    let intgpu_off = |s: &mut Snapshot| {
        s.system.kernel_config = vec![(
            "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF".into(),
            "y".into(),
        )]
    };
    let (dir, mut n100) = built("intel-n100");
    intgpu_off(&mut n100);
    let igpu = n100.gpus().next().unwrap().address.to_string();
    assert_eq!(igpu, "0000:00:02.0");
    assert!(setup_adds_word(dir.path(), &n100, "intel_iommu=on"));
    let r = run(&n100);
    let says = r.gpus[0].findings.iter().any(|f| {
        f.fix
            .as_deref()
            .is_some_and(|x| x == format!("passthru setup vm {igpu} adds intel_iommu=on"))
    });
    assert!(says, "{:#?}", r.gpus[0].findings);
    assert!(
        !has(&r, RuleId::IommuIntelDefaultOn),
        "not 'adds no intel_iommu='"
    );

    // A Debian-style server: the P40 host on the Fedora files (no intel_iommu= anywhere).
    let t = compose_distro("tesla-p40", "fedora40-grubby-dracut");
    let mut p40 = check_snapshot(t.path());
    intgpu_off(&mut p40);
    let card = "0000:03:00.0";
    let plan = setup_plan(t.path(), &p40, forced(card)).unwrap();
    let adds = plan.edits.iter().any(|e| {
        String::from_utf8_lossy(e.after.as_deref().unwrap_or_default()).contains("intel_iommu=on")
    });
    assert!(!adds, "the default maps the P40");
    assert!(fired(&run(&p40), Some(card)).contains(&RuleId::IommuIntelDefaultOn));
    assert!(!fired(&run(&p40), Some(card)).contains(&RuleId::IommuIntgpuOff));
}

/// A card something blocks for a VM is not told to "run passthru setup vm" (setup refuses
/// it): its next step names what blocks it. Forced, the safety blocks are warnings and the
/// step is setup again.
#[test]
fn the_next_step_of_a_blocked_card_is_what_blocks_it() {
    let desktop = check_snapshot_of("nvidia-desktop");
    let r = run(&desktop);
    assert_eq!(verdict(&r, Use::Vm), Verdict::Blocked);
    let step = &r.gpus[0].state.next_step;
    assert!(
        step.starts_with("resolve what blocks the VM use first") && step.contains("safety."),
        "{step}"
    );
    let forced = run_forced(&desktop);
    assert_ne!(verdict(&forced, Use::Vm), Verdict::Blocked);
    assert!(
        forced.gpus[0]
            .state
            .next_step
            .starts_with("run passthru setup vm"),
        "{}",
        forced.gpus[0].state.next_step
    );
}
