//! Every check rule, with a fixture where it fires and one where it must stay silent. The
//! fixtures are synthetic hosts modelled on real boards (tests/fixtures/synthetic); where a
//! condition is a single fact, the "fires" case is that host's snapshot with the one fact
//! changed, which is said next to it.

mod common;

use common::*;
use passthru::check::{check_host, CheckReport, CheckRequest, Effect, Use, Verdict};
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
fn fired(r: &CheckReport, addr: Option<&str>) -> Vec<&'static str> {
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

fn has(r: &CheckReport, id: &str) -> bool {
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
    assert!(has(&vm_guest, "cpu.virt-missing"));
    assert_eq!(verdict(&vm_guest, Use::Vm), Verdict::Blocked);
    let desktop = check_snapshot_of("nvidia-desktop");
    assert!(!has(&run(&desktop), "cpu.virt-missing"));
    let mut unread = desktop.clone();
    unread.system.cpu = Default::default(); // proc/cpuinfo unreadable
    assert!(has(&run(&unread), "cpu.unknown"));
    assert!(!has(&run(&desktop), "cpu.unknown"));
}

#[test]
fn iommu_firmware_kernel_and_parameters() {
    let none = run(&check_snapshot_of("no-iommu"));
    assert!(has(&none, "iommu.firmware-off"));
    let desktop = check_snapshot_of("nvidia-desktop");
    let r = run(&desktop);
    assert!(!has(&r, "iommu.firmware-off") && !has(&r, "iommu.kernel-off"));

    // Firmware table present, kernel did not enable it (amd_iommu=off on the command line).
    let mut off = desktop.clone();
    off.iommu.units.clear();
    off.iommu.group_count = 0;
    off.groups.clear();
    off.system.cmdline_params = passthru::formats::cmdline::parse_cmdline("quiet amd_iommu=off");
    let r = run(&off);
    assert!(has(&r, "iommu.kernel-off"));
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "iommu.kernel-off")
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
    });
    assert!(has(&run(&noiommu), "iommu.noiommu"));
    assert!(!has(&run(&desktop), "iommu.noiommu"));

    // amd_iommu=on is not a valid value (the twin-GPU host has it).
    assert!(has(
        &run(&check_snapshot_of("twin-gpus")),
        "iommu.invalid-param"
    ));
    assert!(!has(&r, "iommu.invalid-param"));

    // iommu=pt: recommended where missing (desktop), silent where set (QEMU captures).
    assert!(has(&run(&desktop), "iommu.pt-recommended"));
    let qemu = check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"),
    ));
    assert!(!has(&run(&qemu), "iommu.pt-recommended"));

    // Intel on by the kernel's default (Debian 12: CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y)
    // is said when intel_iommu= is absent, and not when it is given.
    assert!(
        !has(&run(&qemu), "iommu.intel-default-on"),
        "the QEMU guest booted with intel_iommu=on"
    );
    let mut default_on = qemu.clone();
    default_on
        .system
        .cmdline_params
        .retain(|p| p.key != "intel_iommu");
    assert!(has(&run(&default_on), "iommu.intel-default-on"));
}

#[test]
fn interrupt_remapping() {
    let desktop = check_snapshot_of("nvidia-desktop");
    assert_eq!(desktop.iommu.irq_remapping, IrqRemapping::Enabled);
    let r = run(&desktop);
    assert!(
        !has(&r, "irq.remapping-missing")
            && !has(&r, "irq.unsafe-allowed")
            && !has(&r, "irq.unknown")
    );
    let mut missing = desktop.clone();
    missing.iommu.irq_remapping = IrqRemapping::NotSeen; // proc/interrupts without IR- chips
    let r = run(&missing);
    assert!(has(&r, "irq.remapping-missing"));
    assert_eq!(verdict(&r, Use::Vm), Verdict::Blocked);
    let mut unsafe_ok = missing.clone();
    unsafe_ok.iommu.allow_unsafe_interrupts = Some(true);
    let r = run(&unsafe_ok);
    assert!(has(&r, "irq.unsafe-allowed") && !has(&r, "irq.remapping-missing"));
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "irq.unsafe-allowed")
        .unwrap();
    assert!(
        f.message.contains("inject"),
        "the security trade-off is said"
    );
    let mut unknown = desktop.clone();
    unknown.iommu.irq_remapping = IrqRemapping::Unknown;
    assert!(has(&run(&unknown), "irq.unknown"));
}

#[test]
fn vfio_modules() {
    let n100 = check_snapshot_of("intel-n100"); // Ubuntu-style kernel with vfio built in
    assert!(has(&run(&n100), "vfio.builtin"));
    let desktop = check_snapshot_of("nvidia-desktop");
    assert!(!has(&run(&desktop), "vfio.builtin"));
    assert!(has(&run(&desktop), "vfio.not-loaded"));
    let qemu = check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"),
    ));
    assert!(
        !has(&run(&qemu), "vfio.not-loaded"),
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
    assert!(has(&run(&stale), "vfio.virqfd-stale"));
    let mut old = desktop.clone(); // kernel 6.1
    old.vfio_config.module_lists.push(list.clone());
    assert!(!has(&run(&old), "vfio.virqfd-stale"));

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
    assert!(has(&run(&ignored), "vfio.dracut-ignored"));
    assert!(!has(&run(&old), "vfio.dracut-ignored"));
}

#[test]
fn group_isolation_and_slot_functions() {
    let apu = run(&check_snapshot_of("apu-shared-group"));
    assert!(has(&apu, "group.shared"));
    let f = apu.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "group.shared")
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
    assert!(!has(&desktop, "group.shared") && has(&desktop, "group.isolated"));

    // All functions of the slot go together: the Turing card's audio, USB-C and UCSI.
    let turing = run(&check_snapshot_of("turing-usbc"));
    assert_eq!(turing.gpus[0].functions.len(), 4);
    assert!(has(&turing, "slot.functions"));
    assert!(
        !has(&turing, "group.shared"),
        "the root port in its group is a bridge, no obstacle"
    );
    let n100 = run(&check_snapshot_of("intel-n100"));
    assert!(!has(&n100, "slot.functions"));

    // A card whose audio function sits in a group of its own (Navi): both groups are named.
    let navi = run(&check_snapshot_of("amd-navi"));
    assert!(has(&navi, "slot.split-groups"));
    assert!(!has(&desktop, "slot.split-groups"));

    // IOMMU on but the GPU in no group.
    let mut nogroup = check_snapshot_of("nvidia-desktop");
    gpu_mut(&mut nogroup).iommu_group = None;
    assert!(has(&run(&nogroup), "group.none"));
    assert!(!has(&desktop, "group.none"));
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
    assert!(has(&r, "safety.boot-disk"));
    assert!(!has(&run(&base), "safety.boot-disk"));
    let forced = run_forced(&disk);
    let f = forced.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "safety.boot-disk")
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
    assert!(has(&run(&net), "safety.network"));
    assert!(!has(&run(&base), "safety.network"));

    // The only display: fires on the single-GPU desktop, not where another GPU serves the host.
    let desktop = run(&check_snapshot_of("nvidia-desktop"));
    assert!(has(&desktop, "safety.only-display"));
    assert_eq!(verdict(&desktop, Use::Vm), Verdict::Blocked);
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(!fired(&p40, Some("0000:03:00.0")).contains(&"safety.only-display"));
}

#[test]
fn reset_methods_and_amd_families() {
    let n100 = run(&check_snapshot_of("intel-n100"));
    assert!(has(&n100, "reset.none"));
    let desktop_snap = check_snapshot_of("nvidia-desktop");
    let desktop = run(&desktop_snap);
    assert!(!has(&desktop, "reset.none"));
    assert!(has(&desktop, "reset.bus-only"), "bus only, two functions");
    assert!(!has(&n100, "reset.bus-only"));

    let navi21 = run(&check_snapshot_of("amd-navi"));
    assert!(
        has(&navi21, "reset.amd-unsupported"),
        "RX 6800 XT: Navi 21 is not covered by vendor-reset"
    );
    assert!(!has(&navi21, "reset.amd-bug"));
    assert!(!has(&desktop, "reset.amd-unsupported") && !has(&desktop, "reset.amd-bug"));
    let mut navi10 = check_snapshot_of("amd-navi");
    gpu_mut(&mut navi10).device = Some(passthru::model::PciId(0x731f)); // RX 5700 XT
    let r = run(&navi10);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "reset.amd-bug")
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
        .find(|f| f.id == "reset.amd-bug")
        .cloned()
        .unwrap();
    assert_eq!(f.severity, passthru::check::Severity::Info);

    // D3cold: warned for AMD families with d3cold allowed, not for the NVIDIA card.
    assert!(has(&navi21, "pm.d3cold-risk"));
    assert!(!has(&desktop, "pm.d3cold-risk"));
    let mut asleep = desktop_snap.clone();
    gpu_mut(&mut asleep).power.runtime_status = Some("suspended".into());
    assert!(has(&run(&asleep), "pm.suspended"));
    assert!(!has(&desktop, "pm.suspended"));
}

#[test]
fn driver_state_blacklists_and_ids() {
    let desktop = run(&check_snapshot_of("nvidia-desktop"));
    assert!(has(&desktop, "vfio.not-bound") && !has(&desktop, "vfio.bound"));
    let twins = run(&check_snapshot_of("twin-gpus"));
    // The second card is already on vfio-pci: ready for a VM, and needs setup for the host.
    let second = twins
        .gpus
        .iter()
        .find(|g| g.verdicts[&Use::Vm] == Verdict::Ready)
        .expect("one twin is on vfio-pci");
    assert!(second.findings.iter().any(|f| f.id == "vfio.bound"));
    assert!(second.findings.iter().any(|f| f.id == "host.on-vfio"));
    assert_eq!(second.verdicts[&Use::Host], Verdict::NeedsSetup);
    // Identical cards: an ids= line captures both, and the configured one already does.
    assert!(has(&twins, "ids.capture") && has(&twins, "ids.configured-capture"));
    assert!(!has(&desktop, "ids.capture") && !has(&desktop, "ids.configured-capture"));
    // Two P40s on one nvidia driver: blacklisting it would take the other too.
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(fired(&p40, Some("0000:03:00.0")).contains(&"driver.shared"));
    assert!(!has(&desktop, "driver.shared"));
    // A card without a driver cannot serve the host.
    let bridges = run(&check_snapshot(&unpacked(
        &repo().join("tests/fixtures/qemu/intel-bridges/root.tar.gz"),
    )));
    assert!(fired(&bridges, Some("0000:02:03.0")).contains(&"host.no-driver"));
    assert!(!has(&desktop, "host.no-driver") && !has(&desktop, "host.on-vfio"));
}

#[test]
fn console_framebuffer_monitors_and_users() {
    let snap = check_snapshot_of("nvidia-desktop");
    let r = run(&snap);
    assert!(has(&r, "console.monitor"));
    assert!(!has(&r, "console.framebuffer") && !has(&r, "console.in-use"));
    assert!(has(&r, "console.boot-vga"));
    let p40 = run(&check_snapshot_of("tesla-p40"));
    assert!(
        !fired(&p40, Some("0000:03:00.0")).contains(&"console.monitor"),
        "a 3D controller has no outputs"
    );

    // simpledrm holds the boot GPU's framebuffer (kernel 5.15+ sysfb).
    let mut fb = snap.clone();
    fb.host_usage.framebuffer_names = vec!["simpledrm".into()];
    let r = run(&fb);
    let f = r.gpus[0]
        .findings
        .iter()
        .find(|f| f.id == "console.framebuffer")
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
    assert!(!has(&run(&done), "console.framebuffer"));
    // The same from proc/iomem: BOOTFB inside the GPU's BAR (as root sees it).
    let mut iomem = snap.clone();
    gpu_mut(&mut iomem).bars = vec![(0xe0000000, 0xefffffff)];
    iomem.host_usage.boot_framebuffers = vec![(0xe0000000, 0xe07e8fff)];
    assert!(has(&run(&iomem), "console.framebuffer"));

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
        .find(|f| f.id == "console.in-use")
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
        .find(|f| f.id == "lxc.nvidia-version")
        .unwrap();
    assert!(f.message.contains("550.54.14"));
    assert!(has(&r, "lxc.nvidia-nodes") && !has(&r, "lxc.nvidia-uvm-missing"));
    assert_eq!(verdict(&r, Use::Lxc), Verdict::Ready);
    let mut no_uvm = desktop_snap.clone();
    no_uvm.system.char_majors.retain(|(_, n)| n != "nvidia-uvm");
    assert!(has(&run(&no_uvm), "lxc.nvidia-uvm-missing"));
    let mut no_version = desktop_snap.clone();
    no_version.system.nvidia_driver_version = None;
    let r2 = run(&no_version);
    assert!(has(&r2, "lxc.nvidia-version-unknown"));
    assert_eq!(verdict(&r2, Use::Lxc), Verdict::Unknown);

    let n100_snap = check_snapshot_of("intel-n100");
    let n100 = run(&n100_snap);
    assert!(has(&n100, "lxc.render-node") && !has(&n100, "lxc.no-render-node"));
    assert!(!has(&n100, "lxc.sriov"));
    let mut sriov = n100_snap.clone();
    gpu_mut(&mut sriov).sriov = Some(passthru::model::SriovInfo {
        total_vfs: Some(7),
        num_vfs: Some(0),
        vfs: vec![],
    });
    assert!(has(&run(&sriov), "lxc.sriov"));
    let mut no_render = n100_snap.clone();
    no_render.drm[0].render_node = None;
    assert!(has(&run(&no_render), "lxc.no-render-node"));
}

#[test]
fn unreadable_gpu_is_unknown() {
    let mut s = check_snapshot_of("nvidia-desktop");
    gpu_mut(&mut s).vendor = None;
    let r = run(&s);
    assert!(has(&r, "gpu.unreadable"));
    assert!(r.gpus[0].verdicts.values().all(|v| *v >= Verdict::Unknown));
    assert!(!has(
        &run(&check_snapshot_of("nvidia-desktop")),
        "gpu.unreadable"
    ));
}

#[test]
fn reset_disabled_and_no_drm_card() {
    let snap = check_snapshot_of("nvidia-desktop");
    let mut disabled = snap.clone();
    gpu_mut(&mut disabled).reset.methods = Some(vec![]); // `echo > reset_method` was done
    assert!(has(&run(&disabled), "reset.disabled"));
    assert!(!has(&run(&snap), "reset.disabled"));

    let n100 = check_snapshot_of("intel-n100");
    let mut no_drm = n100.clone();
    no_drm.drm.clear(); // i915 bound but registered no DRM card
    assert!(has(&run(&no_drm), "lxc.no-drm"));
    assert!(!has(&run(&n100), "lxc.no-drm"));
}
